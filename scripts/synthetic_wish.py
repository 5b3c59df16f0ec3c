"""Measure the WISH pipeline on the synthetic world: recovery vs narration noise, shuffled control, and the
pseudo-label source (narration | motion | fused at several fuse weights).

    python scripts/synthetic_wish.py [--n 300] [--seeds 2] [--rule expected_iou|matching|both|contact]
"""
from __future__ import annotations

import argparse

import pandas as pd
import torch

from pipeline.params import PseudolabelParams
from pipeline.synth_wish import FAST_ALIGN, FAST_HEADS, Encoders, make_world, run_wish


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--rule", default=FAST_HEADS.rule, help="heads.rule: which head decides (default: params')")
    args = ap.parse_args()
    torch.set_num_threads(1)
    enc = Encoders()
    test = make_world(200, 0.0, seed=999, enc=enc)
    align, heads = FAST_ALIGN.model_copy(update=dict(epochs=15, lr=1e-2)), FAST_HEADS.model_copy(update=dict(epochs=40, rule=args.rule))
    runs = [(noise, False, "narration", 0.5) for noise in (0.0, 0.25, 0.49, 0.75)] + [(0.49, True, "narration", 0.5)]
    runs += [(0.49, False, "motion", 0.5)] + [(0.49, False, "fused", w) for w in (0.25, 0.5)]
    rows = []
    for seed in range(args.seeds):
        for noise, shuffle, source, w in runs:
            train = make_world(args.n, noise, 1 + seed, shuffle, enc)
            pseudo = PseudolabelParams(source=source, fuse_weight=w)
            r = run_wish(train, test, align, pseudo, heads, seed)
            rows.append(dict(seed=seed, noise=noise, shuffled=shuffle, source=source, fuse_weight=w, **r))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows).drop(columns=["seed"])
    print(df.groupby(["noise", "shuffled", "source", "fuse_weight"]).mean().round(3).to_string())


if __name__ == "__main__":
    main()

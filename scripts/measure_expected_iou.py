"""Does the `expected_iou` decision (pipeline.expected_iou) beat the matching head's argmax away from dev? Per seed,
hold out a share of the TRAINING videos, train the matching head on the rest (as the heads stage does, with its own
inner split and refit), estimate the target ratio on those training frames, and score both decisions on the
held-out videos against their pseudo-labels (the region masks the rule chose, "none" = no object), with the
score's dataset-level IoU (sum I / sum U per side class, then the mean of the classes), and against the weak labels
(how often the named hand of a stable-grasp clip or extra frame is said to hold something vs the other hand). No
eval frame is read.

    python scripts/measure_expected_iou.py [--root artifacts] [--seeds 4] [--fraction 0.3]

The pseudo-labels are noisy (notes/pseudolabels.md), so this measures how well each decision reproduces the
labels on new videos, not the truth; dev is measured by `python scripts/measure_heads_seeds.py --variants
rule=expected_iou` (wish = expected_iou, wish_matching_only = argmax).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def held_out_iou(heads, val, rho: float | None, named: dict[str, str]) -> tuple[float, float, float]:
    """(mean over sides of sum |pred & label| / sum |pred | label|, named-hand holds rate, other-hand holds rate)
    on the held-out samples; rho None: the argmax."""
    from pipeline import rle as rle_utils
    from pipeline.expected_iou import Belief, frame_overlaps
    from pipeline.heads import decide

    inter = {s: 0.0 for s in ("left", "right")}
    union = dict(inter)
    cache: dict[int, np.ndarray] = {}
    weak: list[tuple[bool, bool]] = []
    for s, pm in zip(val, heads.match_probs(val)):
        fr = s.frame
        if rho is None:
            r, holds = decide(None, pm, 0.0)  # the matching rule: argmax over regions and none
        else:
            cache.setdefault(id(fr), frame_overlaps(fr))
            r, holds = Belief(pm, fr.areas, cache[id(fr)]).decide(rho)
        pred = rle_utils.decode(fr.rles[r], fr.height, fr.width) if holds else np.zeros((fr.height, fr.width), bool)
        gt = rle_utils.decode(fr.rles[s.target], fr.height, fr.width) if s.target >= 0 else np.zeros_like(pred)
        inter[s.side] += float((pred & gt).sum())
        union[s.side] += float((pred | gt).sum())
        if fr.frame_id in named:
            weak.append((named[fr.frame_id] == s.side, holds))
    rate = [float(np.mean([h for is_named, h in weak if is_named == want] or [np.nan])) for want in (True, False)]
    return float(np.mean([inter[k] / union[k] for k in inter if union[k] > 0])), rate[0], rate[1]


def main(root: Path = Path("artifacts"), params: Path = Path("params.yaml"), seeds: int = 4,
         fraction: float = 0.3) -> None:
    from measure_heads_seeds import training_samples
    from pipeline.expected_iou import estimate_target_iou
    from pipeline.heads import split_by_video, train_heads
    from pipeline.params import load_params
    from pipeline.plcheck import weak_hands

    p = load_params(params)
    samples, frames, videos = training_samples(p, root)
    named = weak_hands(frames, p.frames.clips_csv, p.pseudolabel.weak_csv)
    hp = p.heads.model_copy(update={"contact": False, "rule": "matching"})
    rows = []
    for seed in range(seeds):
        train, val = split_by_video(samples, videos, fraction, 1000 + seed)
        heads, _ = train_heads(train, hp, seed, "cpu", videos)
        rho = estimate_target_iou(heads, train)
        arg, eiou = held_out_iou(heads, val, None, named), held_out_iou(heads, val, rho, named)
        rows.append((rho, arg[0], eiou[0], *arg[1:], *eiou[1:]))
        typer.echo(f"seed {seed}: {len(train)} training / {len(val)} held-out hands, target {rho:.3f}: "
                   f"argmax {arg[0]:.3f} (named / other hand holds {arg[1]:.2f} / {arg[2]:.2f}), "
                   f"expected_iou {eiou[0]:.3f} ({eiou[1]:.2f} / {eiou[2]:.2f})")
    a = np.array(rows)
    typer.echo(f"mean over {seeds} seeds: target {a[:, 0].mean():.3f}, held-out IoU vs pseudo-labels: argmax "
               f"{a[:, 1].mean():.3f} ± {a[:, 1].std(ddof=1) if seeds > 1 else 0:.3f}, expected_iou "
               f"{a[:, 2].mean():.3f} ± {a[:, 2].std(ddof=1) if seeds > 1 else 0:.3f}; expected_iou higher in "
               f"{int((a[:, 2] > a[:, 1]).sum())} of {seeds}; named / other hand holds: argmax {np.nanmean(a[:, 3]):.2f} / "
               f"{np.nanmean(a[:, 4]):.2f}, expected_iou {np.nanmean(a[:, 5]):.2f} / {np.nanmean(a[:, 6]):.2f}")


if __name__ == "__main__":
    typer.run(main)

"""Cost per frame of the perception stages (hands + masks), before and after the perception work, in ONE run on
the same real frames (so machine load affects both alike): the landed configuration (MediaPipe on the frame and
a padded copy; superpixel hand masks) against the defaults (view cascade; GrabCut hand + forearm masks).

    python scripts/bench_perception.py [--frames 12] [--evalset ../shared/data/evalset]

Prints wall and CPU seconds per frame of hands and of masks (single process; the stage spreads masks over
masks.offline.workers processes) and the ratio new/old.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, items) -> tuple[list, float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = [fn(x) for x in items]
    return out, (time.perf_counter() - t) / len(items), (time.process_time() - c) / len(items)


def main(evalset: Path = Path("../shared/data/evalset"), frames: int = 12, params: Path = Path("params.yaml")) -> None:
    from pipeline.data.evalset import load_evalset
    from pipeline.hands import HandDetector
    from pipeline.masks import build_proposer
    from pipeline.masks.run import frame_proposals
    from pipeline.params import load_params

    p = load_params(params)
    es = load_evalset(evalset)
    images = [es.image(f) for f in es.frames[:frames]]
    old_hands = p.hands.model_copy(update={"cascade": [["full", "pad25"]]})
    old_masks = p.masks.model_copy(update={"hand_mask": p.masks.hand_mask.model_copy(update={"method": "superpixel"})})
    rows = {}
    for name, hp, mp in (("landed", old_hands, old_masks), ("now", p.hands, p.masks)):
        with HandDetector(hp) as det:
            det.detect(images[0])  # MediaPipe builds its graph on the first call
            hands, hw, hc = timed(det.detect, images)
        proposer = build_proposer(mp, p.common)
        _, mw, mc = timed(lambda ih, prop=proposer, m=mp: frame_proposals(prop, ih[0], ih[1], m),
                          list(zip(images, hands)))
        rows[name] = (hw, hc, mw, mc)
        print(f"{name:7s} hands {hw:.3f} s wall {hc:.3f} s CPU | masks {mw:.3f} s wall {mc:.3f} s CPU | "
              f"total {hw + mw:.3f} s wall {hc + mc:.3f} s CPU per frame")
    (ow, oc), (nw, nc) = [(r[0] + r[2], r[1] + r[3]) for r in rows.values()]
    print(f"ratio now/landed: wall {nw / ow:.2f}x, CPU {nc / oc:.2f}x ({len(images)} frames)")


if __name__ == "__main__":
    typer.run(main)

"""Size of the held object relative to its hand, measured on VISOR training videos (no eval video):
log(object area / hand area) of every in-contact (hand, object) pair, rasterised at 480x854 (the frames' size).
The pseudo-label rule's size prior (pseudolabel.size_log_mean / size_log_std) comes from here.

    python scripts/visor_object_priors.py [--max-frames 3000]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(source: Path = Path("../shared/data/visor/visor_sparse_compact.tar.xz"),
         evalset: Path = Path("../shared/data/evalset"), max_frames: int = 3000, every: int = 5) -> None:
    from pipeline.data.evalset import eval_video_ids
    from pipeline.data.visor import iter_visor_frames

    held_out = eval_video_ids([str(evalset)])
    ratios, sides, n_frames, videos = [], {"left": [0, 0], "right": [0, 0]}, 0, set()
    for i, frame in enumerate(iter_visor_frames(source)):
        if frame.video_id in held_out or i % every:
            continue
        n_frames += 1
        videos.add(frame.video_id)
        for hand in frame.hands:
            obj = frame.contact_object(hand)
            sides[hand.side][1] += 1
            if obj is None:
                continue
            sides[hand.side][0] += 1
            h, o = hand.mask(480, 854).sum(), obj.mask(480, 854).sum()
            if h > 0 and o > 0:
                ratios.append(np.log(o / h))
        if n_frames >= max_frames:
            break
    r = np.asarray(ratios)
    print(f"{n_frames} frames of {len(videos)} VISOR videos (eval videos excluded), {len(r)} in-contact pairs")
    print(f"log(object/hand area): mean {r.mean():.3f} std {r.std():.3f} median {np.median(r):.3f} "
          f"p10 {np.percentile(r, 10):.3f} p90 {np.percentile(r, 90):.3f}")
    for s, (c, n) in sides.items():
        print(f"{s} hand in contact: {c}/{n} = {c / max(n, 1):.3f}")


if __name__ == "__main__":
    typer.run(main)

"""Time the responsibility stage's core (`stages.responsibility._compute`) of any checkout on the same frames,
so that today's main and this tree are compared on one machine in one sitting.

    git archive main | tar -x -C /tmp/base
    python scripts/time_responsibility.py --tree /tmp/base --root artifacts --frames 24
    python scripts/time_responsibility.py --tree . --root artifacts --frames 24 [--preset fast]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, required=True, help="checkout whose code is timed")
    ap.add_argument("--root", type=Path, default=Path("artifacts"), help="frames, hands, masks artifacts")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--preset", default=None, help="responsibility.flow_preset (trees that have it)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    import numpy as np

    from pipeline.io import read_table
    from pipeline.responsibility_io import hands_by_frame, masks_by_frame
    from pipeline.params import Params
    from pipeline.schemas import FRAMES, HANDS, MASKS
    from stages.responsibility import _compute

    frames = read_table(args.root / "frames" / "frames.parquet", FRAMES)
    idx = np.unique(np.linspace(0, len(frames) - 1, min(args.frames, len(frames))).round().astype(int))
    frames = frames.iloc[idx]
    hands = hands_by_frame(read_table(args.root / "hands" / "hands.parquet", HANDS))
    masks = masks_by_frame(read_table(args.root / "masks" / "masks.parquet", MASKS))
    rp = Params().responsibility
    if args.preset:
        rp = rp.model_copy(update={"flow_preset": args.preset})
    start = time.perf_counter()
    _, _, rows = _compute(frames, hands, masks, rp)
    s = time.perf_counter() - start
    print(f"{args.tree}: {len(frames)} frames in {s:.2f} s = {len(frames) / s:.3f} frames/s "
          f"(preset {args.preset or 'tree default'}), {len(rows)} rows")


if __name__ == "__main__":
    main()

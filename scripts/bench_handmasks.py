"""GrabCut hand masks (masks.hand_mask) on N frames spread over an artifacts root: CPU seconds and a sha1 of every
mask, so an optimisation of that code can be shown to give the same pixels in less time.

    python scripts/bench_handmasks.py [--root artifacts] [--frames 40]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.hands import rows_to_hands  # noqa: E402
from pipeline.io import read_image, read_table  # noqa: E402
from pipeline.masks.grabcut import grabcut_hand_masks  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.schemas import FRAMES, HANDS  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=Path("artifacts"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)  # as in the masks stage's workers
    p = load_params(args.params)
    frames = read_table(args.root / "frames" / "frames.parquet", FRAMES)
    by_frame = {f: g for f, g in read_table(args.root / "hands" / "hands.parquet", HANDS).groupby("frame_id")}
    idx = np.unique(np.linspace(0, len(frames) - 1, args.frames).round().astype(int))
    digest, cpu, n = hashlib.sha1(), 0.0, 0
    for fid, rel in zip(frames["frame_id"].iloc[idx], frames["image_path"].iloc[idx]):
        if fid not in by_frame:
            continue
        image, hands = read_image(args.root / "frames" / rel), rows_to_hands(by_frame[fid])
        start = time.process_time()
        masks = grabcut_hand_masks(image, hands, p.masks.hand_mask)
        cpu += time.process_time() - start
        n += len(masks)
        for m in masks:
            digest.update(np.packbits(m).tobytes())
    print(f"{n} hand masks: sha1 {digest.hexdigest()}, {cpu:.2f} CPU s ({cpu / max(n, 1):.3f} s per hand)")


if __name__ == "__main__":
    main()

"""COCO RLE through pycocotools: the one way masks are stored and compared."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> str:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle["counts"].decode("ascii")


def decode(counts: str, height: int, width: int) -> np.ndarray:
    return mask_utils.decode({"size": [int(height), int(width)], "counts": counts.encode("ascii")}).astype(bool)


def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Pairwise IoU between two lists of boolean masks of the same size, shape (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    ra = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in a]
    rb = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in b]
    return np.asarray(mask_utils.iou(ra, rb, [0] * len(rb)), dtype=float).reshape(len(a), len(b))


def box(mask: np.ndarray) -> tuple[float, float, float, float]:
    # rows/columns that hold a pixel: the same box as np.nonzero's extremes, ~10x faster on a full frame
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)

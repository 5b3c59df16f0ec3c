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


def rle_runs(counts: str) -> np.ndarray:
    """Run lengths of a COCO compressed RLE string (pycocotools' rleFrString), zeros first, alternating.

    Each count is 5-bit groups, low first, in chars from 48; 0x20 = another char follows, 0x10 in the last char
    = negative; counts after the first two are deltas to the count two places back. Vectorised, since a frame
    has ~100 masks of hundreds of chars."""
    v = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    if not len(v):
        return np.zeros(0, np.int64)
    last = (v & 0x20) == 0
    group = np.concatenate([[0], np.cumsum(last)[:-1]])  # which count each char belongs to
    first = np.concatenate([[0], np.flatnonzero(last)[:-1] + 1])
    k = np.arange(len(v)) - first[group]  # position of the char inside its count
    x = np.bincount(group, weights=(v & 0x1F) << (5 * k)).astype(np.int64)
    ends = np.flatnonzero(last)
    negative = (v[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (k[ends][negative] + 1))
    x[1::2] = np.cumsum(x[1::2])  # undo the deltas: odd and even positions chain separately ...
    x[2::2] = np.cumsum(x[2::2])  # ... from counts 1 and 2 on
    return x


def run_bounds(rles: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of ones of every mask: (2K,) interleaved [start, stop) column-major pixel offsets of the K
    non-empty runs, (M',) index of each non-empty mask's first run, (M',) which masks those are."""
    bounds, first, owner = [], [], []
    n_runs = 0
    for j, counts in enumerate(rles):
        ends = np.cumsum(rle_runs(counts))
        starts, stops = ends[0:-1:2], ends[1::2]  # ones span [end of a zeros run, end of the next ones run)
        keep = stops > starts
        if keep.any():
            bounds.append(np.stack([starts[keep], stops[keep]], 1).ravel())
            first.append(n_runs)
            owner.append(j)
            n_runs += int(keep.sum())
    if not bounds:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(bounds), np.asarray(first, np.int64), np.asarray(owner, np.int64)


def masked_min(values: np.ndarray, runs: tuple[np.ndarray, np.ndarray, np.ndarray], n_masks: int,
               empty: float) -> np.ndarray:
    """(n_masks,) minimum of an (H, W) map over each mask's pixels (`empty` for an empty mask), from the masks'
    run_bounds: O(runs) per mask instead of decoding ~100 masks to full frames and gathering under each."""
    bounds, first, owner = runs
    out = np.full(n_masks, empty, values.dtype)
    if len(bounds):
        # sentinel: a run may end at the last pixel, and reduceat needs a valid index there
        flat = np.append(np.asarray(values).ravel(order="F"), np.asarray(empty, values.dtype))
        run_min = np.minimum.reduceat(flat, bounds)[0::2]  # min over [start, stop) of each run
        out[owner] = np.minimum.reduceat(run_min, first)
    return out

"""Mean responsibility inside ~100 proposals per frame without decoding or resampling one mask at a time.

pipeline.responsibility.region_motion_scores (the reference) resamples each full-resolution mask to the work resolution
(cv2 INTER_AREA), multiplies by the maps and sums: ~60% of the responsibility stage's time. INTER_AREA is a
linear map A(m) = Ry m Rx^T with sparse area-overlap matrices, so

    sum_p A(m)(p) g(p) = sum_{P in m} G(P),   G = Ry^T g Rx   (one full-resolution map per weighting g),

and a sum of G over a mask's pixels is a difference of prefix sums at the ends of its COCO RLE runs
(column-major, like G's Fortran order). Per frame that is a few full-size maps plus O(runs) per mask; the result
equals the reference up to float rounding (tests/test_speed.py checks it against cv2 on real masks).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import sparse

from pipeline.rle import rle_runs


@functools.lru_cache(maxsize=16)
def area_matrix(n_in: int, n_out: int) -> sparse.csr_matrix:
    """(n_out, n_in) weights of OpenCV's INTER_AREA downscaling along one axis (computeResizeAreaTab)."""
    scale = n_in / n_out
    entries: list[tuple[int, int, float]] = []  # (row, col, weight)
    for d in range(n_out):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, n_in - f1)
        s1, s2 = math.ceil(f1), math.floor(f2)
        s2 = min(s2, n_in - 1)
        s1 = min(s1, s2)
        if s1 - f1 > 1e-3:
            entries.append((d, s1 - 1, (s1 - f1) / cell))
        entries += [(d, s, 1.0 / cell) for s in range(s1, s2)]
        if f2 - s2 > 1e-3:
            entries.append((d, s2, min(min(f2 - s2, 1.0), cell) / cell))
    rows, cols, vals = ([e[k] for e in entries] for k in range(3))
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))


def adjoint_maps(gs: np.ndarray, full: tuple[int, int]) -> np.ndarray:
    """(K, H*W + 1) prefix sums, in column-major pixel order, of G_k = Ry^T g_k Rx for work-size maps gs (K, h, w)."""
    H, W = full
    h, w = gs.shape[1:]
    ry, rx = area_matrix(H, h), area_matrix(W, w)
    out = np.zeros((len(gs), H * W + 1), np.float64)
    for k, g in enumerate(gs):
        G = ry.T @ (rx.T @ g.astype(np.float64).T).T  # (H, W)
        np.cumsum(G.T.ravel(), out=out[k, 1:])  # G.T row-major = G column-major, the RLE's order
    return out


def run_sums(prefix: np.ndarray, counts: str) -> np.ndarray:
    """(K,) sums of each prefix-summed map over the pixels of one RLE mask."""
    ends = np.cumsum(rle_runs(counts))
    starts, stops = ends[0::2], ends[1::2]  # a run of ones spans [end of zeros, end of ones)
    starts = starts[:len(stops)]
    return (prefix[:, stops] - prefix[:, starts]).sum(axis=1)


def pooled_scores(maps: np.ndarray, rles: list[str], full: tuple[int, int], keep: np.ndarray | None) -> np.ndarray:
    """(2, M) = region_motion_scores(maps, decoded rles, exclude) with keep = 1 - coverage(exclude) (or None)."""
    keep = np.ones(maps.shape[1:], np.float32) if keep is None else keep
    prefix = adjoint_maps(np.concatenate([maps * keep, keep[None]]), full)
    out = np.zeros((len(maps), len(rles)), np.float32)
    for j, counts in enumerate(rles):
        sums = run_sums(prefix, counts)
        if sums[-1] > 1e-6:
            out[:, j] = sums[:-1] / sums[-1]
    return out

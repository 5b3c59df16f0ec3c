"""Helpers shared by proposal backends: working resolution, atoms (the common refinement of several
segmentations), region statistics from membership bitsets, cues and mask NMS.

Every region is a boolean row over *atoms*: the pixels that all segmentations agree on. Region areas,
boundaries and overlaps then come from matrix products over a few thousand atoms instead of full-size masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline import rle
from pipeline.types import Proposal


def work_image(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is `side` (0 or larger than the image keeps it); returns (image, scale)."""
    h, w = image.shape[:2]
    scale = 1.0 if side <= 0 or max(h, w) <= side else side / max(h, w)
    if scale == 1.0:
        return image, 1.0
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), scale


def gradient(image: np.ndarray) -> np.ndarray:
    """Colour gradient magnitude in Lab (max over channels), scaled to [0, 1] by its 99th percentile."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    # numpy, not cv2.magnitude: OpenCV's SIMD path rounds differently with the buffers' memory alignment, so the
    # same image gave gradients (and proposal scores) differing in the last bit from call to call (measured)
    mags = [np.sqrt(np.square(cv2.Sobel(c, cv2.CV_32F, 1, 0)) + np.square(cv2.Sobel(c, cv2.CV_32F, 0, 1)))
            for c in cv2.split(lab)]
    g = np.max(mags, axis=0)
    return np.clip(g / max(float(np.percentile(g, 99)), 1e-6), 0, 1)


def skin_mask(image: np.ndarray) -> np.ndarray:
    """Generic skin colour (YCrCb box of Chai & Ngan): the hand cue when no hand was detected."""
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    return cv2.inRange(ycc, (40, 135, 85), (250, 175, 130)) > 0


# Fixed odd 64-bit multipliers: hashing label tuples or bitsets with them is one pass instead of one sort per map.
_MULT = np.random.default_rng(12345).integers(1, 2**62, 4096, dtype=np.int64) | 1


def relabel(maps: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Atoms = the pieces where all label maps agree. Returns (atom map, per map: atom -> its label).
    Label tuples are hashed with wrapping 64-bit arithmetic (a collision is ~n^2 / 2^64: never in practice)."""
    code = np.zeros(maps[0].size, np.int64)
    with np.errstate(over="ignore"):
        for m, k in zip(maps, _MULT):
            code += (m.ravel().astype(np.int64) + 1) * k
    _, first, atoms = np.unique(code, return_index=True, return_inverse=True)
    atoms = atoms.reshape(maps[0].shape).astype(np.int32)
    return atoms, [m.ravel()[first].astype(np.int32) for m in maps]


@dataclass
class Graph:
    """Adjacency of the pieces of a label map: 4-neighbour pixel pairs on each shared boundary."""
    edges: np.ndarray  # (E, 2) int, i < j
    length: np.ndarray  # (E,) boundary length in pixel pairs
    grad: np.ndarray  # (E,) summed gradient over those pairs
    border: np.ndarray  # (n,) pixels on the image border
    area: np.ndarray  # (n,) pixels


def build_graph(labels: np.ndarray, grad: np.ndarray) -> Graph:
    n = int(labels.max()) + 1
    pairs, weights = [], []
    for a, b, ga, gb in ((labels[:, :-1], labels[:, 1:], grad[:, :-1], grad[:, 1:]),
                         (labels[:-1], labels[1:], grad[:-1], grad[1:])):
        cut = a != b
        pairs.append(np.stack([np.minimum(a[cut], b[cut]), np.maximum(a[cut], b[cut])], 1))
        weights.append(np.maximum(ga[cut], gb[cut]))
    pairs, weights = np.concatenate(pairs), np.concatenate(weights)
    code = pairs[:, 0].astype(np.int64) * n + pairs[:, 1]
    uniq, inv = np.unique(code, return_inverse=True)
    edge_mask = np.zeros(labels.shape, bool)
    edge_mask[[0, -1], :] = True
    edge_mask[:, [0, -1]] = True
    return Graph(np.stack([uniq // n, uniq % n], 1), np.bincount(inv).astype(np.float32),
                 np.bincount(inv, weights).astype(np.float32),
                 np.bincount(labels[edge_mask], minlength=n).astype(np.float32),
                 np.bincount(labels.ravel(), minlength=n).astype(np.float32))


def cut_sums(members: np.ndarray, graph: Graph, weights: np.ndarray, far: np.ndarray | None = None,
             chunk: int = 256) -> np.ndarray:
    """Per region (row of `members`) and per column of `weights` (E, k): the sum over the region's boundary
    edges of weight x `far` of the end outside the region (far = 1: boundary length or gradient; far = hand
    share per atom: length of boundary along a hand). Vectorised over (region, edge) bitsets in chunks."""
    n_atoms = members.shape[1]
    far = np.ones(n_atoms, np.float32) if far is None else far.astype(np.float32)
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    # explicit column count: a uniform frame is one superpixel, a graph with no edges, and reshape(0, -1) fails
    w = weights.reshape(len(i), 1 if weights.ndim == 1 else weights.shape[1]).astype(np.float32)
    out = np.empty((len(members), w.shape[1]), np.float32)
    for s in range(0, len(members), chunk):
        mi, mj = members[s: s + chunk, i], members[s: s + chunk, j]
        out[s: s + chunk] = (mi & ~mj).astype(np.float32) @ (w * far[j, None]) \
            + (mj & ~mi).astype(np.float32) @ (w * far[i, None])
    return out


def pixel_sums(atoms: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per-atom sum of a per-pixel value."""
    return np.bincount(atoms.ravel(), value.ravel().astype(np.float64), minlength=int(atoms.max()) + 1)


def unique_rows(members: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct membership row (rows hashed as 64-bit words)."""
    packed = np.packbits(members, axis=1)
    packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8))).view(np.uint64).astype(np.int64)
    with np.errstate(over="ignore"):
        h = (packed * np.resize(_MULT, packed.shape[1])).sum(1)
    _, first = np.unique(h, return_index=True)
    return np.sort(first)


def mask_nms(members: np.ndarray, area: np.ndarray, order: np.ndarray, iou: float, keep: int) -> list[int]:
    """Greedy mask NMS over atom bitsets, visiting rows in `order`; at most `keep` survivors. Each visit
    gathers only the visited region's atoms from the kept rows (regions are a small share of all atoms)."""
    kept: list[int] = []
    kept_area = np.zeros((keep, members.shape[1]), np.float32)  # per kept row: its atoms' areas
    area = area.astype(np.float32)
    sizes = members.astype(np.float32) @ area
    for r in order:
        idx = np.flatnonzero(members[r])
        if kept:
            inter = kept_area[: len(kept), idx].sum(1)
            if np.any(inter > iou * (sizes[kept] + sizes[r] - inter)):
                continue
        kept_area[len(kept), idx] = area[idx]
        kept.append(int(r))
        if len(kept) == keep:
            break
    return kept


def upscale_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if labels.shape == tuple(shape):
        return labels
    return cv2.resize(labels, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def proposals_to_rows(frame_id: str, proposals: list[Proposal], backend: str) -> list[dict]:
    """MASKS rows for one frame; mask_id is the position in `proposals` (unique within the frame)."""
    rows = []
    for k, p in enumerate(proposals):
        x0, y0, x1, y1 = rle.box(p.mask)
        rows.append(dict(frame_id=frame_id, mask_id=k, kind=p.kind, side=p.side, hand_id=p.hand_id,
                         height=p.mask.shape[0], width=p.mask.shape[1], rle=rle.encode(p.mask),
                         x0=x0, y0=y0, x1=x1, y1=y1, area=int(p.mask.sum()), score=float(p.score), backend=backend))
    return rows

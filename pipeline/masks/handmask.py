"""Hand masks from detected hands, for every backend: GrabCut with a forearm prior (pipeline.masks.grabcut,
the default) or the landmark hull grown into superpixels of the hand's own colour (below).

The hull of the 21 landmarks covers the palm and fingers but not the forearm, which VISOR/EgoHOS hand masks
include; growing through adjacent superpixels whose colour matches the hull's recovers the bare forearm
without spilling into a differently coloured background. Any backend can call `hand_masks`.
"""
from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp

from pipeline.masks.common import Graph, build_graph, gradient, pixel_sums, upscale_labels, work_image
from pipeline.types import Hand, Proposal


def hand_seed(hand: Hand, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Convex hull of the landmarks (box ellipse without landmarks), dilated by 10% of the hand size."""
    seed = np.zeros(shape, np.uint8)
    x0, y0, x1, y1 = (v * scale for v in hand.box)
    size = max(x1 - x0, y1 - y0, 2.0)
    if len(hand.landmarks) >= 3:
        hull = cv2.convexHull(np.round(hand.landmarks * scale).astype(np.int32))
        cv2.fillConvexPoly(seed, hull, 1)
    else:
        centre, axes = (round((x0 + x1) / 2), round((y0 + y1) / 2)), (max(round((x1 - x0) / 2), 1), max(round((y1 - y0) / 2), 1))
        cv2.ellipse(seed, centre, axes, 0, 0, 360, 1, -1)
    r = max(int(0.1 * size), 1)
    return cv2.dilate(seed, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


def grow(seed: np.ndarray, labels: np.ndarray, graph: Graph, lab: np.ndarray, colour_k: float,
         reach: float, max_growth: float = 4.0) -> np.ndarray:
    """Superpixels mostly inside the seed, plus those reachable through colour-matching neighbours."""
    inside = pixel_sums(labels, seed) / np.maximum(graph.area, 1)
    px = lab[seed]
    # median/MAD: the hull also covers background between fingers, which must not widen the colour model
    mean = np.median(px, 0)
    std = 1.4826 * np.median(np.abs(px - mean), 0) + 3.0
    sp_mean = np.stack([pixel_sums(labels, lab[..., c]) for c in range(3)], 1) / np.maximum(graph.area, 1)[:, None]
    close = np.sqrt((((sp_mean - mean) / std) ** 2).mean(1)) <= colour_k
    # a held object often lies inside the landmark hull: only hand-coloured superpixels start the mask
    chosen = (inside >= 0.5) & close
    if not chosen.any():
        chosen = inside >= inside.max()
    ys, xs = np.nonzero(seed)
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    cy = pixel_sums(labels, yy) / np.maximum(graph.area, 1)
    cx = pixel_sums(labels, xx) / np.maximum(graph.area, 1)
    size = max(np.ptp(ys), np.ptp(xs), 1)
    near = np.hypot(cy - ys.mean(), cx - xs.mean()) <= reach * size
    n = len(graph.area)
    adj = sp.coo_matrix((np.ones(len(graph.edges)), (graph.edges[:, 0], graph.edges[:, 1])), shape=(n, n)).tocsr()
    adj = adj + adj.T
    allowed, limit = close & near, max_growth * max(float(seed.sum()), 1.0)
    while True:  # breadth-first through allowed neighbours; a ring that overshoots the area limit is dropped
        new = (adj @ chosen.astype(np.float32) > 0) & allowed & ~chosen
        if not new.any() or graph.area[chosen | new].sum() > limit:
            return chosen
        chosen |= new


def hand_regions(image: np.ndarray, hands: list[Hand], scale: float, labels: np.ndarray, graph: Graph,
                 colour_k: float = 1.0, reach: float = 2.0, max_growth: float = 4.0) -> list[np.ndarray]:
    """Work-resolution boolean masks, one per hand; where two hands claim a pixel, its own seed wins."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    seeds = [hand_seed(h, labels.shape, scale) for h in hands]
    masks = [grow(s, labels, graph, lab, colour_k, reach, max_growth)[labels] for s in seeds]
    for i, m in enumerate(masks):
        for j, s in enumerate(seeds):
            if j != i:
                m &= ~(s & ~seeds[i])
    return masks


def hand_masks(image: np.ndarray, hands: list[Hand], masks_params=None) -> list[Proposal]:
    """Full-resolution hand Proposals (kind="hand") for any backend, drawn as `masks_params.hand_mask` says
    (defaults: MasksParams())."""
    if not hands:
        return []
    if masks_params is None:
        from pipeline.params import MasksParams

        masks_params = MasksParams()
    if masks_params.hand_mask.method == "grabcut":
        from pipeline.masks.grabcut import grabcut_hand_masks

        full = grabcut_hand_masks(image, hands, masks_params.hand_mask)
        return [Proposal(m, float(np.clip(h.score, 0, 1)), kind="hand", side=h.side, hand_id=h.hand_id)
                for m, h in zip(full, hands)]
    op = masks_params.offline
    small, scale = work_image(image, op.work_side)
    seg = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=op.sigma, k=100, min_size=50)
    labels = seg.processImage(cv2.cvtColor(small, cv2.COLOR_RGB2BGR)).astype(np.int32)
    graph = build_graph(labels, gradient(small))
    regions = hand_regions(small, hands, scale, labels, graph, op.hand_colour_k, op.hand_reach, op.hand_max_growth)
    return [to_proposal(m, h, image.shape[:2]) for m, h in zip(regions, hands)]


def to_proposal(mask: np.ndarray, hand: Hand, shape: tuple[int, int]) -> Proposal:
    full = upscale_labels(mask.astype(np.uint8), shape) > 0
    return Proposal(full, float(np.clip(hand.score, 0, 1)), kind="hand", side=hand.side, hand_id=hand.hand_id)


def hand_from_mask(mask: np.ndarray, side: str, hand_id: int, n_points: int = 21) -> Hand:
    """A Hand standing in for a detection, from a ground-truth hand mask: its box, and `n_points` k-means
    centres of its pixels as landmarks (deterministic), so the hull approximates the mask."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float32)
    k = min(n_points, len(pts))
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(pts, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5), 1,
                               cv2.KMEANS_PP_CENTERS)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return Hand(hand_id=hand_id, side=side, score=1.0, box=box, landmarks=centres.astype(np.float32))

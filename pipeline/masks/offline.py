"""Weight-free object proposals: a selective-search merge hierarchy over Felzenszwalb superpixels, every merged
region kept as a mask, ranked by where the detected hands are.

Hierarchies run over the whole image and, with finer superpixels, in a window around each detected hand:
held objects are small (0.1-2% of the frame) and sit there. Ranking decides what survives the budget
(../shared/notes/proposals.md). The cues: the share of a region's boundary that runs along a hand mask or a
fingertip landmark on or near it (held objects are bordered by fingers), little hand inside it, a strong image
edge along its boundary, and not touching the frame edge. Without detected hands, skin colour stands in.
"""
from __future__ import annotations

import heapq

import cv2
import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

from pipeline.masks.common import (Graph, build_graph, cut_sums, gradient, mask_nms, pixel_sums, relabel,
                                   skin_mask, unique_rows, upscale_labels, work_image)
from pipeline.masks.handmask import hand_regions
from pipeline.types import Hand, Proposal, contact_part, tip_distance_map

# (colour space, similarity set) in the order `strategies` takes them. Similarities: c colour histogram,
# s small regions first, f fill (compact merges), g weak gradient along the shared boundary.
STRATEGIES = [("hsv", "csfg"), ("lab", "sfg"), ("rgb", "csfg"), ("lab", "csf"),
              ("hsv", "sg"), ("ycrcb", "csfg"), ("rgb", "sfg"), ("ycrcb", "csf")]
CONVERT = {"hsv": cv2.COLOR_RGB2HSV, "lab": cv2.COLOR_RGB2LAB, "ycrcb": cv2.COLOR_RGB2YCrCb}
BINS = 25


def to_space(image: np.ndarray, space: str) -> np.ndarray:
    return image if space == "rgb" else cv2.cvtColor(image, CONVERT[space])


def colour_hist(img: np.ndarray, labels: np.ndarray, n: int, space: str) -> np.ndarray:
    """Per-superpixel L1-normalised histogram, BINS per channel, channels concatenated (sums to 1)."""
    hists = []
    for c in range(3):
        top = 180 if (space == "hsv" and c == 0) else 256
        b = np.minimum(img[..., c].astype(np.int64) * BINS // top, BINS - 1)
        h = np.bincount((labels.astype(np.int64) * BINS + b).ravel(), minlength=n * BINS).reshape(n, BINS)
        hists.append(h / np.maximum(h.sum(1, keepdims=True), 1))
    return np.concatenate(hists, 1).astype(np.float32) / 3


def boxes(labels: np.ndarray, n: int) -> list[list[int]]:
    return [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(labels + 1, n)]


class Hierarchy:
    """Greedy pairwise merging of adjacent regions (selective search); records every merge."""

    def __init__(self, graph: Graph, hist: np.ndarray, bxs: list[list[int]], sims: str, im_area: float):
        self.size, self.hist, self.box = list(graph.area), list(hist), bxs
        self.sims, self.im = sims, im_area
        self.nbr: list[dict[int, list[float]]] = [dict() for _ in graph.area]
        for (i, j), length, g in zip(graph.edges.tolist(), graph.length, graph.grad):
            self.nbr[i][j] = self.nbr[j][i] = [float(length), float(g)]

    def sim(self, a: int, b: int) -> float:
        total, s = 0.0, self.sims
        if "c" in s:
            total += float(np.minimum(self.hist[a], self.hist[b]).sum())
        if "s" in s:
            total += 1 - (self.size[a] + self.size[b]) / self.im
        if "f" in s:
            ba, bb = self.box[a], self.box[b]
            box = (max(ba[2], bb[2]) - min(ba[0], bb[0])) * (max(ba[3], bb[3]) - min(ba[1], bb[1]))
            total += 1 - (box - self.size[a] - self.size[b]) / self.im
        if "g" in s:
            length, g = self.nbr[a][b]
            total += 1 - g / max(length, 1)
        return total / len(s)

    def merge(self, a: int, b: int) -> None:
        sa, sb = self.size[a], self.size[b]
        self.size.append(sa + sb)
        self.hist.append((self.hist[a] * sa + self.hist[b] * sb) / (sa + sb))
        ba, bb = self.box[a], self.box[b]
        self.box.append([min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3])])
        t, joined = len(self.size) - 1, {}
        for old in (a, b):
            for r, (length, g) in self.nbr[old].items():
                if r in (a, b):
                    continue
                acc = joined.setdefault(r, [0.0, 0.0])
                acc[0] += length
                acc[1] += g
                self.nbr[r].pop(old)
        self.nbr.append(joined)
        for r, e in joined.items():
            self.nbr[r][t] = e

    def run(self) -> np.ndarray:
        """Membership (2n-1 at most, n) of every region ever formed, the n superpixels first."""
        n = len(self.nbr)
        heap = [(-self.sim(i, j), i, j) for i in range(n) for j in self.nbr[i] if i < j]
        heapq.heapify(heap)
        alive, pairs = [True] * n, []
        while heap:
            _, a, b = heapq.heappop(heap)
            if not (alive[a] and alive[b]):
                continue
            self.merge(a, b)
            alive[a] = alive[b] = False
            alive.append(True)
            pairs.append((a, b))
            t = len(alive) - 1
            for r in self.nbr[t]:
                heapq.heappush(heap, (-self.sim(t, r), t, r))
        members = np.zeros((n + len(pairs), n), bool)
        members[np.arange(n), np.arange(n)] = True
        for t, (a, b) in enumerate(pairs, start=n):
            members[t] = members[a] | members[b]
        return members


def segment(image: np.ndarray, space: str, k: float, sigma: float, min_size: int) -> np.ndarray:
    seg = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=sigma, k=k, min_size=min_size)
    return seg.processImage(to_space(image, space)).astype(np.int32)


def hand_windows(hands: list[Hand], scale: float, shape: tuple[int, int], extent: float) -> list[tuple[int, ...]]:
    """Work-resolution boxes (x0, y0, x1, y1) around each hand: its box grown by `extent` hand sizes a side."""
    out = []
    for h in hands:
        x0, y0, x1, y1 = (v * scale for v in h.box)
        pad = extent * max(x1 - x0, y1 - y0)
        box = (int(max(x0 - pad, 0)), int(max(y0 - pad, 0)), int(min(x1 + pad, shape[1])), int(min(y1 + pad, shape[0])))
        if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
            out.append(box)
    return out


def windowed(image: np.ndarray, box: tuple[int, ...], space: str, k: float, sigma: float, min_size: int) -> np.ndarray:
    """Superpixels of one window pasted into a full-size map: label 0 is everything outside the window."""
    x0, y0, x1, y1 = box
    out = np.zeros(image.shape[:2], np.int32)
    out[y0:y1, x0:x1] = segment(np.ascontiguousarray(image[y0:y1, x0:x1]), space, k, sigma, min_size) + 1
    return out


def inner(graph: Graph) -> Graph:
    """The graph without label 0 (outside a window): the hierarchy must never merge across the window edge."""
    keep = graph.edges[:, 0] != 0
    return Graph(graph.edges[keep], graph.length[keep], graph.grad[keep], graph.border, graph.area)


class Regions:
    """All candidate regions of one image: per hierarchy its superpixel graph and memberships (cues are
    cheapest there), and all of them as deduplicated atom bitsets (for NMS and the output masks).
    Hierarchies run over the whole image at `scales` and, finer, inside a window around each hand."""

    def __init__(self, small: np.ndarray, op, windows: list[tuple[int, ...]] = ()):
        grad = gradient(small)
        strategies = STRATEGIES[: op.strategies]
        spaces = list(dict.fromkeys(s for s, _ in strategies))
        keys = [(s, k, None) for s in spaces for k in op.scales]
        keys += [(s, k, w) for w in windows for s in spaces for k in op.window_scales]
        maps = [segment(small, s, k, op.sigma, op.min_size) if w is None
                else windowed(small, w, s, k, op.sigma, op.window_min_size) for s, k, w in keys]
        graphs = [build_graph(m, grad) for m in maps]
        self.atoms, lookup = relabel(maps)
        self.area = pixel_sums(self.atoms, np.ones(self.atoms.shape, np.float32)).astype(np.float32)
        finest = int(np.argmin([k for _, k, _ in keys[: len(spaces) * len(op.scales)]]))
        self.fine, self.fine_graph = maps[finest], graphs[finest]
        im_area = float(small.shape[0] * small.shape[1])
        self.parts = []
        for space, sims in strategies:
            img = to_space(small, space)
            for idx, (s, _k, w) in enumerate(keys):
                if s != space:
                    continue
                labels, graph, n = maps[idx], graphs[idx], len(graphs[idx].area)
                area = im_area if w is None else float((w[2] - w[0]) * (w[3] - w[1]))
                members = Hierarchy(graph if w is None else inner(graph), colour_hist(img, labels, n, space),
                                    boxes(labels, n), sims, area).run()
                if w is not None:
                    members = members[1:]  # the outside of the window, never merged
                frac = members.astype(np.float32) @ graph.area / im_area
                members = members[(frac >= op.min_area_frac) & (frac <= op.max_area_frac)]
                self.parts.append((labels, graph, members, lookup[idx]))

    def rows(self, order: np.ndarray) -> np.ndarray:
        """Atom bitsets of the regions at `order` (indices into the parts' concatenated rows)."""
        ends = np.cumsum([len(m) for _, _, m, _ in self.parts])
        part = np.searchsorted(ends, order, side="right")
        out = np.empty((len(order), len(self.area)), bool)
        for k, (_, _, members, lookup) in enumerate(self.parts):
            sel = np.nonzero(part == k)[0]
            if len(sel):
                out[sel] = members[order[sel] - (ends[k] - len(members))][:, lookup]
        return out

    def cues(self, on_hand: np.ndarray, reach: np.ndarray, on_contact: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Cues of every kept region, given a boolean per-pixel hand map, a per-pixel fingertip distance and the
        part of the hand map that counts for contact (default: all of it)."""
        parts, atom_reach = [], atom_min(self.atoms, reach)
        for labels, graph, members, lookup in self.parts:
            hand_frac = (pixel_sums(labels, on_hand) / np.maximum(graph.area, 1)).astype(np.float32)
            contact_frac = hand_frac if on_contact is None else \
                (pixel_sums(labels, on_contact) / np.maximum(graph.area, 1)).astype(np.float32)
            near = np.full(len(graph.area), np.inf, np.float32)
            np.minimum.at(near, lookup, atom_reach)
            c = cues(members, graph, hand_frac, contact_frac)
            c["reach"] = np.where(members, near[None], np.inf).min(1)
            parts.append(c)
        return {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}


def atom_min(atoms: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per-atom minimum of a per-pixel value (atoms are numbered 0..n-1, all present)."""
    order = np.argsort(atoms.ravel(), kind="stable")
    starts = np.searchsorted(atoms.ravel()[order], np.arange(int(atoms.max()) + 1))
    return np.minimum.reduceat(value.ravel()[order], starts).astype(np.float32)


def hand_map(small: np.ndarray, hand_masks: list[np.ndarray]) -> np.ndarray:
    """Pixels on a detected hand; skin colour stands in when no hand was detected."""
    if hand_masks:
        return np.any(hand_masks, axis=0)
    return cv2.morphologyEx(skin_mask(small).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0


def cues(members: np.ndarray, graph: Graph, hand_frac: np.ndarray, contact_frac: np.ndarray) -> dict[str, np.ndarray]:
    """Per region: boundary share along a hand's contact part (`contact_frac`), hand share inside (`hand_frac`),
    mean boundary gradient, frame-edge share."""
    m = members.astype(np.float32)
    area = m @ graph.area
    length, grad = cut_sums(members, graph, np.stack([graph.length, graph.grad], 1)).T
    along_hand = cut_sums(members, graph, graph.length, contact_frac)[:, 0]
    frame = m @ graph.border
    perimeter = length + frame
    return dict(
        area=area,
        touch=along_hand / np.maximum(perimeter, 1),
        hand_in=(m @ (hand_frac * graph.area)) / np.maximum(area, 1),
        edge=grad / np.maximum(length, 1),
        frame=frame / np.maximum(perimeter, 1),
    )


def reach_map(shape: tuple[int, int], hands: list[Hand], scale: float) -> np.ndarray:
    """Per pixel: distance to the nearest fingertip, in sizes of that hand (inf without landmarks)."""
    out = np.full(shape, np.inf, np.float32)
    for h in hands:
        d = tip_distance_map(shape, h.landmarks, h.box, scale)
        if d is not None:
            out = np.minimum(out, d)
    return out


def score(c: dict[str, np.ndarray], touch_full: float, reach_scale: float) -> np.ndarray:
    """Hand-made product of cues in [0, 1]; regions away from hands keep a small floor (missed detections).
    Held: a boundary along the hand mask or a fingertip on or near the region (the hand mask misses thin
    fingers over the object, the landmarks do not)."""
    touch = np.clip(c["touch"] / touch_full, 0, 1)
    if reach_scale > 0:
        touch = np.maximum(touch, np.exp(-(c["reach"] / reach_scale) ** 2))
    touch = 0.05 + 0.95 * touch
    not_hand = np.clip(1 - c["hand_in"], 0, 1)  # linear: hand masks are rough, a steeper penalty lost objects
    return touch * not_hand * np.clip(c["edge"], 0, 1) * (1 - c["frame"])


def propose(image: np.ndarray, hands: list[Hand], op, max_proposals: int, hp=None) -> list[Proposal]:
    """Ranked object proposals (best first) followed by one hand mask per hand, all at full resolution.
    hp: HandMaskParams (None or method "superpixel": hulls grown through this image's finest superpixels)."""
    # One BLAS thread: OpenBLAS sums a float32 product in another order with another thread count, so the
    # stage's worker processes (default threads) and the Ray actors (1 thread) wrote proposal scores that
    # differed in the last bit (15 of 25,580 on the demo). The parallelism is over frames anyway; ~2 ms a call.
    with threadpool_limits(limits=1, user_api="blas"):
        return _propose(image, hands, op, max_proposals, hp)


def _propose(image: np.ndarray, hands: list[Hand], op, max_proposals: int, hp) -> list[Proposal]:
    small, scale = work_image(image, op.work_side)
    regions = Regions(small, op, hand_windows(hands, scale, small.shape[:2], op.window_extent))
    if hp is not None and hp.method == "grabcut" and hands:
        from pipeline.masks.grabcut import grabcut_hand_masks

        full = grabcut_hand_masks(image, hands, hp)
        hand_small = [cv2.resize(m.astype(np.uint8), small.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
                      for m in full]
    else:
        hand_small = hand_regions(small, hands, scale, regions.fine, regions.fine_graph, op.hand_colour_k,
                                  op.hand_reach, op.hand_max_growth)
        full = [upscale_labels(m.astype(np.uint8), image.shape[:2]) > 0 for m in hand_small]
    # touching the forearm is not holding: the contact cue uses each mask's part near its hand
    contact = [contact_part(m, h.landmarks, h.box, scale) for m, h in zip(hand_small, hands)]
    s = score(regions.cues(hand_map(small, hand_small), reach_map(small.shape[:2], hands, scale),
                           np.any(contact, axis=0) if contact else None), op.touch_full, op.reach_scale)
    order = np.argsort(-s, kind="stable")[: op.pool]
    members = regions.rows(order)
    first = unique_rows(members)  # rows come best first, so each first copy is the best-scored one
    members, order = members[first], order[first]
    keep = mask_nms(members, regions.area, np.arange(len(order)), op.nms_iou, max_proposals)
    atoms = upscale_labels(regions.atoms, image.shape[:2])
    objects = [Proposal(members[r][atoms], float(s[order[r]])) for r in keep]
    return objects + [Proposal(m, float(np.clip(h.score, 0, 1)), kind="hand", side=h.side, hand_id=h.hand_id)
                      for m, h in zip(full, hands)]


def build(masks_params, common_params):
    op, budget, hp = masks_params.offline, masks_params.max_proposals, masks_params.hand_mask
    cv2.setNumThreads(common_params.num_threads)

    def proposer(image: np.ndarray, hands: list[Hand]) -> list[Proposal]:
        return propose(image, hands, op, budget, hp)
    return proposer

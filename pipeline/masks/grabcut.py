"""Weight-free hand + forearm masks and hand-adjacent object candidates with OpenCV GrabCut.

VISOR and EgoHOS hand masks include the visible forearm, which the 21 MediaPipe landmarks do not reach: 64% of
a dev GT hand mask lies outside the landmark hull. The forearm leaves the wrist away from the fingers, along
the middle-finger-base -> wrist direction, towards the frame edge (../shared/notes/perception-scout.md: this
corridor is the one big gain). GrabCut then separates hand from a similarly coloured counter by colour
models fitted inside the image, with the landmark skeleton as sure foreground.

Every GrabCut runs on a downscaled crop around its seeds (cost ~ the crop, not the frame), with
cv2.setRNGSeed before each call: its GMM initialisation is random and moves masks by ~0.03 IoU otherwise.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.types import Hand

# MediaPipe landmark chains: thumb, four fingers (each from the wrist), and the palm outline.
BONES = [(0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20)]
PALM = (0, 1, 5, 9, 13, 17)
WRIST, MIDDLE_BASE, INDEX_BASE, PINKY_BASE = 0, 9, 5, 17


def hand_size(hand: Hand) -> float:
    x0, y0, x1, y1 = hand.box
    return max(x1 - x0, y1 - y0, 2.0)


def skeleton(shape: tuple[int, int], lm: np.ndarray, thickness: int) -> np.ndarray:
    """Landmark bones drawn as thick lines plus the filled palm polygon: pixels that are surely hand."""
    out = np.zeros(shape, np.uint8)
    pts = np.round(lm).astype(np.int32)
    cv2.fillPoly(out, [pts[list(PALM)]], 1)
    for chain in BONES:
        cv2.polylines(out, [pts[list(chain)]], False, 1, max(thickness, 1))
    return out > 0


def forearm(shape: tuple[int, int], lm: np.ndarray, width_k: float, length_k: float,
            direction: np.ndarray | None = None) -> np.ndarray:
    """A corridor from the wrist away from the fingers, `width_k` palm widths wide, `length_k` hand sizes long
    (large values run it to the frame edge), along `direction` (unit vector; default: middle-finger base ->
    wrist, see `arm_direction`)."""
    out = np.zeros(shape, np.uint8)
    wrist = lm[WRIST]
    d = landmark_direction(lm) if direction is None else np.asarray(direction, np.float32)
    if d is None:
        return out > 0
    n = float(np.hypot(*(wrist - lm[MIDDLE_BASE])))
    palm = max(float(np.hypot(*(lm[INDEX_BASE] - lm[PINKY_BASE]))), 0.5 * n)
    size = float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]), 2.0))
    end = wrist + d * length_k * size
    half = 0.5 * width_k * palm
    normal = np.array([-d[1], d[0]], np.float32)
    # slightly wider at the elbow end: forearms widen and perspective enlarges what is nearer the camera
    poly = np.array([wrist + normal * half, end + normal * half * 1.3, end - normal * half * 1.3,
                     wrist - normal * half], np.float32)
    cv2.fillConvexPoly(out, np.round(poly).astype(np.int32), 1)
    return out > 0


def landmark_direction(lm: np.ndarray) -> np.ndarray | None:
    """Unit vector middle-finger base -> wrist (None for a degenerate hand)."""
    d = (lm[WRIST] - lm[MIDDLE_BASE]).astype(np.float32)
    n = float(np.hypot(*d))
    return d / n if n >= 1e-3 else None


# Ties between fan directions go to the one nearest the landmark direction: this much score per degree.
FAN_TIE_PER_DEG = 0.002


def arm_direction(lab: np.ndarray, lm: np.ndarray, sure: np.ndarray, fan: float, step: float,
                  start: float, length_k: float) -> np.ndarray | None:
    """The forearm's direction: of the directions within +-`fan` degrees of the landmark one (every `step`),
    the one along which the most pixels have the colour of the hand's own skeleton (Lab median / MAD,
    z <= 2), sampled from `start` hand sizes past the wrist (beyond the hand itself) to `length_k` hand sizes.
    Why: a bent wrist or a hand seen edge-on turns the landmark direction away from the forearm (dev: the
    corridor crossed a counter instead of the arm) and the forearm then ends up as background."""
    d0 = landmark_direction(lm)
    if d0 is None or fan <= 0 or not sure.any():
        return d0
    px = lab[sure]
    mu = np.median(px, 0)
    sd = 1.4826 * np.median(np.abs(px - mu), 0) + 3.0
    size = float(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]), 2.0))
    palm = float(np.hypot(*(lm[INDEX_BASE] - lm[PINKY_BASE])))
    along = np.linspace(start, length_k, 24)[:, None] * size
    across = np.linspace(-0.5, 0.5, 5)[None, :] * max(palm, 0.25 * size)
    H, W = lab.shape[:2]
    a0, best, best_v = float(np.arctan2(d0[1], d0[0])), d0, -np.inf
    turns = np.arange(0.0, fan + 1e-6, max(step, 1e-3))  # 0 (the landmark direction) is always tried
    for da in np.concatenate([-turns[:0:-1], turns]):
        a = a0 + np.deg2rad(da)
        d, nrm = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        pts = lm[WRIST] + along[..., None] * d + across[..., None] * nrm  # (24, 5, 2) x, y
        x, y = np.round(pts[..., 0]).astype(int).ravel(), np.round(pts[..., 1]).astype(int).ravel()
        inside = (x >= 0) & (x < W) & (y >= 0) & (y < H)
        if not inside.any():
            continue
        z = np.sqrt((((lab[y[inside], x[inside]] - mu) / sd) ** 2).mean(1))
        v = float(np.mean(z <= 2.0)) - FAN_TIE_PER_DEG * abs(da)
        if v > best_v:
            best, best_v = d.astype(np.float32), v
    return best


def disk(r: float) -> np.ndarray:
    r = max(int(r), 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def dilate_near(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """cv2.dilate of a uint8 mask computed only on the bounding box of its pixels grown by the kernel's radius:
    the same result (pixels farther away stay 0), but a hand's disks at full resolution dilated whole
    1920x1080 frames (~9% of the masks stage)."""
    out = np.zeros_like(mask)
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return out
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    y0, y1 = max(y - ry, 0), min(y + h + ry, mask.shape[0])
    x0, x1 = max(x - rx, 0), min(x + w + rx, mask.shape[1])
    out[y0:y1, x0:x1] = cv2.dilate(np.ascontiguousarray(mask[y0:y1, x0:x1]), kernel)
    return out


def run_grabcut(image: np.ndarray, trimap: np.ndarray, work_side: int, iterations: int) -> np.ndarray:
    """GrabCut on the bounding box of the trimap's non-background part (plus a margin), downscaled so its longer
    side is at most `work_side`. trimap uses cv2.GC_* values; returns a full-size boolean foreground."""
    ys, xs = np.nonzero(trimap != cv2.GC_BGD)
    out = np.zeros(trimap.shape, bool)
    if not len(ys):
        return out
    H, W = trimap.shape
    m = int(0.1 * max(np.ptp(ys), np.ptp(xs)) + 4)
    y0, y1, x0, x1 = max(ys.min() - m, 0), min(ys.max() + m + 1, H), max(xs.min() - m, 0), min(xs.max() + m + 1, W)
    crop, tri = image[y0:y1, x0:x1], trimap[y0:y1, x0:x1]
    s = min(1.0, work_side / max(crop.shape[:2]))
    if s < 1.0:
        size = (max(round(crop.shape[1] * s), 1), max(round(crop.shape[0] * s), 1))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        tri = cv2.resize(tri, size, interpolation=cv2.INTER_NEAREST)
    fg_seed = (tri == cv2.GC_FGD) | (tri == cv2.GC_PR_FGD)
    bg_seed = (tri == cv2.GC_BGD) | (tri == cv2.GC_PR_BGD)
    if fg_seed.sum() < 2 or bg_seed.sum() < 2:
        res = fg_seed
    else:
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        mask = tri.copy()
        cv2.grabCut(np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)), mask, None, bgd, fgd,
                    iterations, cv2.GC_INIT_WITH_MASK)
        res = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if s < 1.0:
        res = cv2.resize(res.astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) > 0
    out[y0:y1, x0:x1] = res
    return out


def keep_connected(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components of `mask` that touch `seed` (GrabCut leaves stray same-colour blobs)."""
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    keep = np.unique(lab[seed & mask])
    keep = keep[keep > 0]
    return np.isin(lab, keep) if len(keep) else mask & seed


def hand_trimap(shape: tuple[int, int], hand: Hand, others: list[Hand], hp,
                lab: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GrabCut trimap of one hand and its sure-foreground skeleton. Probable foreground: the forearm corridor;
    probable background: the landmark hull grown by `band` hand sizes (GrabCut's colour models take the
    skin there and leave a held object between the fingers out: as probable foreground the hull swallowed
    it, dev hand mIoU 0.649 vs 0.669) and a margin of half a hand size around; sure background: everything
    further away and the other hands' skeletons."""
    size = hand_size(hand)
    tri = np.full(shape, cv2.GC_BGD, np.uint8)
    sure = skeleton(shape, hand.landmarks, int(hp.skeleton_thickness * size))
    hull = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(hand.landmarks).astype(np.int32)), 1)
    near = dilate_near(hull, disk(hp.band * size)) > 0
    direction = None
    if lab is not None:  # the corridor follows the skin-coloured direction within the fan (arm_direction)
        direction = arm_direction(lab, hand.landmarks, sure, hp.forearm_fan, hp.forearm_fan_step,
                                  hp.band, hp.forearm_length)
    arm = forearm(shape, hand.landmarks, hp.forearm_width, hp.forearm_length, direction)
    tri[dilate_near((near | arm).astype(np.uint8), disk(0.5 * size)) > 0] = cv2.GC_PR_BGD
    tri[arm] = cv2.GC_PR_FGD
    tri[sure] = cv2.GC_FGD
    for o in others:
        tri[skeleton(shape, o.landmarks, int(hp.skeleton_thickness * hand_size(o)))] = cv2.GC_BGD
    return tri, sure


def grabcut_hand_masks(image: np.ndarray, hands: list[Hand], hp) -> list[np.ndarray]:
    """Full-resolution boolean hand + forearm masks, one per hand (hands without 21 landmarks get their box)."""
    out = []
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32) if hp.forearm_fan > 0 else None
    for i, hand in enumerate(hands):
        if len(hand.landmarks) < 21:
            m = np.zeros(image.shape[:2], bool)
            x0, y0, x1, y1 = (int(round(v)) for v in hand.box)
            m[max(y0, 0):y1, max(x0, 0):x1] = True
            out.append(m)
            continue
        tri, sure = hand_trimap(image.shape[:2], hand, [o for j, o in enumerate(hands) if j != i], hp, lab)
        mask = run_grabcut(image, tri, hp.work_side, hp.iterations)
        out.append(keep_connected(mask, sure) | sure)
    for i, m in enumerate(out):  # a pixel both hands claim stays with the hand whose skeleton is nearer
        for j in range(i + 1, len(out)):
            both = m & out[j]
            if both.any():
                shape = (int(image.shape[0]), int(image.shape[1]))
                di = cv2.distanceTransform((~skeleton(shape, hands[i].landmarks, 1)).astype(np.uint8), cv2.DIST_L2, 3)
                dj = cv2.distanceTransform((~skeleton(shape, hands[j].landmarks, 1)).astype(np.uint8), cv2.DIST_L2, 3)
                m &= ~(both & (dj < di))
                out[j] &= ~(both & (di <= dj))
    return out

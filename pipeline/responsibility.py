"""COHESIV motion responsibility (Shan, Higgins, Fouhey, NeurIPS 2021): an object held in a hand moves with it.

Per frame t and neighbour t+k: dense optical flow t -> t+k, one homography per hand fitted with RANSAC to where
the flow carries the hand's points, and per pixel a softmax over exp(-d / temperature), d = distance between the
observed flow and each model's predicted flow. The background model is zero flow (COHESIV) or, with camera
compensation, a homography fitted on points outside the hands. Maps are averaged over the offsets.

Everything here is a pure function on arrays in work-resolution pixels; I/O lives in pipeline/responsibility_io.py.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.types import SIDES, Hand

OK, NO_HAND, STATIC_HAND, FEW_POINTS, NO_NEIGHBOURS = "ok", "no_hand", "static_hand", "few_points", "no_neighbours"
STATUSES = (OK, NO_HAND, STATIC_HAND, FEW_POINTS, NO_NEIGHBOURS)


@dataclass(frozen=True)
class MotionConfig:
    """The responsibility params that the math needs (pipeline.params.ResponsibilityParams maps onto it)."""
    temperature: float = 2.0
    flow: str = "dis"
    ransac_reproj_threshold: float = 3.0
    min_hand_points: int = 8
    static_motion: float = 0.5  # px per clip frame at work resolution
    camera_compensation: bool = True
    hand_samples: int = 64
    flow_preset: str = "medium"  # DIS preset (DIS_PRESETS)


@dataclass
class SideResult:
    """One hand side of one frame: its responsibility map (zeros unless ok), status and motion."""
    status: str
    resp: np.ndarray
    hand_motion: float = float("nan")


@dataclass
class FrameMotion:
    sides: dict[str, SideResult] = field(default_factory=dict)

    def maps(self) -> np.ndarray:
        """(2, H, W) float32: left then right responsibility."""
        return np.stack([self.sides[s].resp for s in SIDES])


# --- flow and point sampling -------------------------------------------------------------------------------

def to_gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
_local = threading.local()  # one DIS object per thread and preset: creating one costs as much as a small flow


def _dis(preset: str):
    cache = _local.__dict__.setdefault("dis", {})
    if preset not in cache:
        cache[preset] = cv2.DISOpticalFlow.create(DIS_PRESETS[preset])
    return cache[preset]


def flow(a: np.ndarray, b: np.ndarray, method: str = "dis", preset: str = "medium") -> np.ndarray:
    """Dense flow (H, W, 2) float32 such that pixel p of `a` is seen at p + flow[p] in `b`."""
    ga, gb = to_gray(a), to_gray(b)
    if method == "dis":
        return _dis(preset).calc(ga, gb, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 21, 3, 5, 1.1, 0)
    raise ValueError(f"unknown flow method {method!r} (dis | farneback)")


def sample_flow(fl: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Flow at sub-pixel points (N, 2) x, y, bilinear, clamped at the border."""
    xs = points[:, 0].astype(np.float32).reshape(1, -1)
    ys = points[:, 1].astype(np.float32).reshape(1, -1)
    out = cv2.remap(fl, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 2)


def hand_region(hand: Hand, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the hand at work resolution: the landmarks' convex hull, else its box."""
    mask = np.zeros(shape, np.uint8)
    lm = np.asarray(hand.landmarks, np.float32).reshape(-1, 2) * scale
    if len(lm) >= 3:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.rint(lm).astype(np.int32)), 1)
    if not mask.any():
        x0, y0, x1, y1 = (np.asarray(hand.box, np.float32) * scale).round().astype(int)
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
    return mask.astype(bool)


def hand_points(hand: Hand, scale: float, shape: tuple[int, int], n_samples: int) -> np.ndarray:
    """Landmarks (scaled to work resolution) plus a regular grid of points inside the hand region.

    Landmarks lie on the hand's outline where flow is least reliable; interior points make the fit robust.
    """
    lm = np.asarray(hand.landmarks, np.float32).reshape(-1, 2) * scale
    ys, xs = np.nonzero(hand_region(hand, scale, shape))
    if len(xs):
        step = max(1, len(xs) // max(n_samples, 1))
        interior = np.stack([xs[::step], ys[::step]], 1).astype(np.float32)
        lm = np.concatenate([lm, interior])
    h, w = shape
    inside = (lm[:, 0] >= 0) & (lm[:, 0] <= w - 1) & (lm[:, 1] >= 0) & (lm[:, 1] <= h - 1)
    return lm[inside]


def background_points(exclude: np.ndarray, step: int = 8) -> np.ndarray:
    """Grid points outside the (dilated) hand regions, for the camera-motion homography."""
    h, w = exclude.shape
    grown = cv2.dilate(exclude.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    keep = ~grown[ys, xs]
    return np.stack([xs[keep], ys[keep]], 1).astype(np.float32)


# --- models ------------------------------------------------------------------------------------------------

def fit_hand_homography(points: np.ndarray, fl: np.ndarray, ransac_threshold: float = 3.0,
                        min_points: int = 8) -> np.ndarray | None:
    """Homography (3, 3) mapping `points` to where the flow carries them; None if too few points or degenerate."""
    if len(points) < max(min_points, 4):
        return None
    dst = points + sample_flow(fl, points)
    H, inliers = cv2.findHomography(points, dst, cv2.RANSAC, ransac_threshold)
    if H is None or inliers is None or int(inliers.sum()) < max(min_points, 4):
        return None
    return H if _plausible(H) else None


def _plausible(H: np.ndarray) -> bool:
    """Reject fits that fold or blow up the image: a hand moves, it does not flip or shrink tenfold."""
    if not np.isfinite(H).all() or abs(H[2, 2]) < 1e-8:
        return False
    A = H[:2, :2] / H[2, 2]
    det = float(np.linalg.det(A))
    return 0.25 < det < 4.0 and float(np.abs(H[2, :2] / H[2, 2]).max()) < 5e-3


def predicted_flow(H: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 2) flow a homography predicts at every pixel (zeros for None: the static background)."""
    h, w = shape
    if H is None:
        return np.zeros((h, w, 2), np.float32)
    grid = _pixel_grid(h, w)
    warped = cv2.perspectiveTransform(grid, H.astype(np.float64)).reshape(h, w, 2)
    return (warped - grid.reshape(h, w, 2)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    """(h*w, 1, 2) float32 pixel coordinates x, y (read-only: shared between calls)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = np.stack([xs, ys], -1).reshape(-1, 1, 2)
    grid.setflags(write=False)
    return grid


def responsibility(fl: np.ndarray, models: list[np.ndarray], t: float = 2.0,
                   background: np.ndarray | None = None) -> np.ndarray:
    """(K+1, H, W) softmax over exp(-d/t), d = |observed flow - model flow|; 0..K-1 = `models`, K = background.

    The background predicts zero flow (COHESIV) unless given (camera compensation: the camera's flow).
    """
    bg = np.zeros_like(fl) if background is None else background
    d = np.stack([_distance(fl, m) for m in [*models, bg]])
    logits = -d / t
    logits -= logits.max(axis=0, keepdims=True)  # numerically safe softmax
    e = np.exp(logits)
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| over the last axis (2 components), float32; hypot avoids linalg.norm's temporaries."""
    return np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1]).astype(np.float32, copy=False)


def point_motion(H: np.ndarray, H_bg: np.ndarray | None, points: np.ndarray) -> float:
    """Mean displacement of `points` under H relative to the background model, in pixels."""
    src = points.reshape(-1, 1, 2).astype(np.float64)
    moved = cv2.perspectiveTransform(src, H.astype(np.float64))
    base = src if H_bg is None else cv2.perspectiveTransform(src, H_bg.astype(np.float64))
    return float(np.linalg.norm((moved - base).reshape(-1, 2), axis=1).mean())


# --- one frame: all offsets, both hands --------------------------------------------------------------------

def frame_motion(frame: np.ndarray, neighbours: dict[int, np.ndarray], hands: dict[str, Hand], scale: float,
                 cfg: MotionConfig) -> FrameMotion:
    """Responsibility of each hand side averaged over the available offsets (k -> neighbour image, both signs).

    `frame`/`neighbours` are at work resolution; hands are in stored-frame pixels, `scale` maps them to work.
    A missing neighbour (clip end) just drops its offset; a hand whose fit fails or that does not move relative
    to the background in an offset is left out of that offset's softmax, since its model says nothing there.
    """
    shape = frame.shape[:2]
    pts = {s: hand_points(h, scale, shape, cfg.hand_samples) for s, h in hands.items()}
    acc = _Accumulator(shape, list(hands))
    if hands and neighbours:
        hand_area = np.logical_or.reduce([hand_region(h, scale, shape) for h in hands.values()])
        bg_pts = background_points(hand_area) if cfg.camera_compensation else None
        for k, nb in sorted(neighbours.items()):
            _one_offset(frame, nb, k, pts, bg_pts, cfg, acc)
    return acc.result(bool(neighbours))


def _one_offset(frame: np.ndarray, nb: np.ndarray, k: int, pts: dict[str, np.ndarray], bg_pts: np.ndarray | None,
                cfg: MotionConfig, acc: "_Accumulator") -> None:
    fl = flow(frame, nb, cfg.flow, cfg.flow_preset)
    H_bg = None if bg_pts is None else fit_hand_homography(bg_pts, fl, cfg.ransac_reproj_threshold, cfg.min_hand_points)
    moving: dict[str, np.ndarray] = {}
    for side, p in pts.items():
        H = fit_hand_homography(p, fl, cfg.ransac_reproj_threshold, cfg.min_hand_points)
        if H is None:
            acc.failed[side] += 1
            continue
        motion = point_motion(H, H_bg, p) / abs(k)  # per clip frame, so one threshold serves every offset
        acc.motion[side].append(motion)
        if motion >= cfg.static_motion:
            moving[side] = H
    if moving:
        bg = None if H_bg is None else predicted_flow(H_bg, fl.shape[:2])
        r = responsibility(fl, [predicted_flow(H, fl.shape[:2]) for H in moving.values()], cfg.temperature, bg)
        for i, side in enumerate(moving):
            acc.add(side, r[i])


class _Accumulator:
    def __init__(self, shape: tuple[int, int], present: list[str]):
        self.shape, self.present = shape, present
        self.sum = {s: np.zeros(shape, np.float32) for s in SIDES}
        self.count = dict.fromkeys(SIDES, 0)
        self.failed = dict.fromkeys(SIDES, 0)
        self.motion: dict[str, list[float]] = {s: [] for s in SIDES}

    def add(self, side: str, r: np.ndarray) -> None:
        self.sum[side] += r
        self.count[side] += 1

    def result(self, has_neighbours: bool) -> FrameMotion:
        return FrameMotion({s: self._side(s, has_neighbours) for s in SIDES})

    def _side(self, side: str, has_neighbours: bool) -> SideResult:
        motion = float(np.mean(self.motion[side])) if self.motion[side] else float("nan")
        if self.count[side]:
            return SideResult(OK, self.sum[side] / self.count[side], motion)
        status = (NO_HAND if side not in self.present else NO_NEIGHBOURS if not has_neighbours
                  else STATIC_HAND if self.motion[side] else FEW_POINTS)
        return SideResult(status, np.zeros(self.shape, np.float32), motion)


# --- regions and storage -----------------------------------------------------------------------------------

def region_motion_scores(maps: np.ndarray, masks: list[np.ndarray], exclude: np.ndarray | None = None) -> np.ndarray:
    """(2, M) mean responsibility of each side inside each mask (masks at any resolution, resampled by area).

    Pixels in `exclude` (the hands' own masks) do not count: a proposal overlapping the hand would otherwise
    score high merely for containing hand pixels. A mask entirely inside `exclude` scores 0.
    """
    h, w = maps.shape[1:]
    keep = 1.0 if exclude is None else 1.0 - _coverage(exclude, (h, w))
    out = np.zeros((len(maps), len(masks)), np.float32)
    for j, m in enumerate(masks):
        wgt = _coverage(m, (h, w)) * keep
        total = float(wgt.sum())
        if total > 1e-6:
            out[:, j] = (maps * wgt).reshape(len(maps), -1).sum(1) / total
    return out


def _coverage(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fraction of each work pixel covered by a boolean mask of any size."""
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def quantise(maps: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(maps, 0.0, 1.0) * 255.0).astype(np.uint8)


def dequantise(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) / 255.0

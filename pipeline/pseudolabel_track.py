"""Temporal consistency of pseudo-labels: the held object persists across neighbouring frames of a clip and moves
with the hand (COHESIV's premise), so each hand's picks along a run of frames are chosen jointly (Viterbi).

The transition between the picks of consecutive frames rewards
  - appearance: cosine of the two regions' embeddings (`temporal_weight`), and
  - place: the IoU of the earlier region, shifted by the hand's displacement between the two frames, with the
    later one (`link_iou_weight`). The hand's own motion stands in for dense flow: frames of a clip are a few
    hundredths of a second apart and the object moves rigidly with the hand holding it.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline import rle as rle_utils
from pipeline.regions import FrameRegions, HandView
from pipeline.types import SIDES

# Masks are compared at this longer side: enough for the IoU of hand-sized regions, 25x fewer pixels.
LINK_SIDE = 160


def link_track(scores: list[np.ndarray], feats: list[np.ndarray], weight: float,
               ious: list[np.ndarray] | None = None, iou_weight: float = 0.0) -> list[int]:
    """Viterbi over consecutive frames of one hand: maximise sum of per-frame scores (-inf = not a candidate) +
    weight * cosine(features of consecutive picks) + iou_weight * ious[t-1][prev, cur]. One index per frame."""
    unit = [f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6) for f in feats]
    acc, back = np.where(np.isfinite(scores[0]), scores[0], -1e9), []
    for t in range(1, len(scores)):
        trans = weight * unit[t - 1] @ unit[t].T  # (R_prev, R_t)
        if ious is not None and iou_weight > 0:
            trans = trans + iou_weight * ious[t - 1]
        total = acc[:, None] + trans
        back.append(np.argmax(total, 0))
        acc = total.max(0) + np.where(np.isfinite(scores[t]), scores[t], -1e9)
    path = [int(np.argmax(acc))]
    for b in reversed(back):
        path.append(int(b[path[-1]]))
    return path[::-1]


class SmallMasks:
    """Frames' candidate masks at LINK_SIDE, (R, h, w) bool per frame (zeros for regions not asked for yet); each
    region is decoded once, whichever hand's candidates ask for it first."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}

    def get(self, fr: FrameRegions, keep: np.ndarray) -> tuple[np.ndarray, float]:
        """(masks (R, h, w) bool with every `keep` region decoded, scale from full-size pixels to these)."""
        if fr.frame_id not in self._cache:
            scale = LINK_SIDE / max(fr.height, fr.width)
            h, w = max(1, round(fr.height * scale)), max(1, round(fr.width * scale))
            self._cache[fr.frame_id] = (np.zeros((fr.n_regions, h, w), bool), np.zeros(fr.n_regions, bool), scale)
        out, done, scale = self._cache[fr.frame_id]
        h, w = out.shape[1:]
        for i in np.flatnonzero(keep & ~done):
            m = rle_utils.decode(fr.rles[i], fr.height, fr.width).astype(np.uint8)
            out[i] = cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) > 0  # thin objects survive
            done[i] = True
        return out, scale


def hand_centre(hand: HandView) -> np.ndarray:
    """Landmarks' mean when the detector gave them (steadier than a box cut by the frame edge), else box centre."""
    if hand.landmarks is not None:
        return np.asarray(hand.landmarks, np.float32).mean(0)
    return (hand.box[:2] + hand.box[2:]).astype(np.float32) / 2


def shift(masks: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(R, h, w) masks moved by (dx, dy) pixels, zero-filled."""
    out = np.zeros_like(masks)
    h, w = masks.shape[1:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src = masks[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[:, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


def warped_ious(a: FrameRegions, b: FrameRegions, side: str, keep_a: np.ndarray, keep_b: np.ndarray,
                cache: SmallMasks) -> np.ndarray:
    """(R_a, R_b) IoU of a's regions shifted by `side` hand's displacement from a to b with b's regions; only
    candidate rows/columns (keep_a, keep_b) are computed, the rest are 0."""
    ma, scale = cache.get(a, keep_a)
    mb, _ = cache.get(b, keep_b)
    if ma.shape[1:] != mb.shape[1:]:
        return np.zeros((a.n_regions, b.n_regions), np.float32)
    dx, dy = np.round((hand_centre(b.hands[side]) - hand_centre(a.hands[side])) * scale).astype(int)
    fa = shift(ma, int(dx), int(dy)).reshape(len(ma), -1).astype(np.float32)
    fb = mb.reshape(len(mb), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0).astype(np.float32)


def temporal_picks(frames: dict[str, FrameRegions], scored: dict[str, dict], params,
                   tracks: list[list[str]]) -> dict[str, dict[str, int]]:
    """{frame_id: {side: region index}} from linking each hand's held picks along each track (frame ids of one
    clip in time order). scored: {frame_id: pipeline.pseudolabel.side_scores(...)}. Runs of consecutive holding
    frames are linked; a non-holding frame breaks the run."""
    picks: dict[str, dict[str, int]] = {}
    for track in tracks:
        cache = SmallMasks()  # a track's frames only: memory stays one clip's worth
        for s in SIDES:
            run: list[str] = []
            for f in [*track, None]:
                if f is not None and f in scored and scored[f][s][0]:
                    run.append(f)
                    continue
                if len(run) > 1:
                    for g, r in zip(run, _link_run(frames, scored, run, s, params, cache)):
                        picks.setdefault(g, {})[s] = r
                run = []
    return picks


def _link_run(frames: dict[str, FrameRegions], scored: dict, run: list[str], side: str, params,
              cache: SmallMasks) -> list[int]:
    scores = [scored[g][side][1] for g in run]
    ious = None
    if params.link_iou_weight > 0:
        ious = [warped_ious(frames[g], frames[h], side, np.isfinite(sg), np.isfinite(sh), cache)
                for g, h, sg, sh in zip(run, run[1:], scores, scores[1:])]
    return link_track(scores, [frames[g].features for g in run], params.temporal_weight, ious,
                      params.link_iou_weight)

"""What a held object looks like before any narration is read: per (hand, region) a candidate filter and a prior
score from geometry alone (pipeline.regions.GEOM_NAMES), used by the pseudo-label rule for every source.

Candidates: regions that are not the hand itself (at most `max_hand_in` of the region under this hand's mask)
nor the other hand, and that touch this hand's mask or come within `max_tip_dist` hand sizes of a fingertip.
Score: a log-normal prior on the region's area relative to the hand mask (mean and spread measured on VISOR
training videos: scripts/visor_object_priors.py), plus contact (touch), fingertip proximity and compactness,
minus `part_penalty` for a region that lies inside a larger candidate of plausible size (whole objects beat
their sub-pieces: the landed rule's picks were fragments).
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from pipeline.regions import GEOM_NAMES, FrameRegions, coco_rles

_G = {n: i for i, n in enumerate(GEOM_NAMES)}


def containment(fr: FrameRegions) -> np.ndarray:
    """(R, R) |r_i ∩ r_j| / |r_i| (iscrowd on the second argument makes pycocotools return that)."""
    if fr.n_regions == 0:
        return np.zeros((0, 0), np.float32)
    rles = coco_rles(fr)
    return np.asarray(mask_utils.iou(rles, rles, [1] * len(rles)), np.float32).reshape(fr.n_regions, fr.n_regions)


def size_z(fr: FrameRegions, side: str, pp) -> np.ndarray:
    g = fr.geometry(side)
    return (g[:, _G["log_mask_ratio"]] * 5.0 - pp.size_log_mean) / pp.size_log_std


def candidates(fr: FrameRegions, side: str, pp) -> np.ndarray:
    """(R,) bool: regions this hand could be holding."""
    if not fr.hands[side].present or fr.n_regions == 0:
        return np.zeros(fr.n_regions, bool)
    g = fr.geometry(side)
    near = (g[:, _G["touch"]] > 0) | (g[:, _G["tip_dist"]] <= pp.max_tip_dist)
    return near & (g[:, _G["hand_in"]] <= pp.max_hand_in) & (g[:, _G["other_in"]] <= pp.max_other_in)


def prior_scores(fr: FrameRegions, side: str, pp, contain: np.ndarray | None = None) -> np.ndarray:
    """(R,) prior log-score of "this hand holds this region"; -inf outside the candidates."""
    ok = candidates(fr, side, pp)
    out = np.full(fr.n_regions, -np.inf, np.float32)
    if not ok.any():
        return out
    g = fr.geometry(side)
    z = size_z(fr, side, pp)
    s = (-0.5 * z ** 2 + pp.touch_weight * g[:, _G["touch"]] - pp.tip_weight * g[:, _G["tip_dist"]]
         + pp.compact_weight * g[:, _G["compact"]])
    if pp.part_penalty > 0:
        c = containment(fr) if contain is None else contain
        bigger = fr.areas[None, :] > 1.3 * fr.areas[:, None]
        whole = ok[None, :] & (np.abs(z)[None, :] <= 2.0) & bigger & (c >= 0.9)
        np.fill_diagonal(whole, False)
        s = s - pp.part_penalty * whole.any(1)
    out[ok] = s[ok]
    return out

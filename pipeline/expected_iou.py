"""Stage 2's `expected_iou` decision: pick the region (or none) that best raises the IoU the score accumulates.

The score sums intersections and unions over all frames of a class (pipeline.metrics) and divides once, so a
prediction helps or hurts by its pixels, not by being "the argmax". Adding region r (area a_r) for a hand whose
held object is g moves the running ratio rho = sum I / sum U up iff

    |r & g| > rho * (a_r - |r & g|)    <=>    (1 + rho) |r & g| - rho * a_r > 0.

The matching head gives a belief over the hand's regions and "none" (p_r'), so E|r & g| = sum_r' p_r' |r & r'|
(overlapping proposals share credit: a region that contains the likely ones gains from all of them). Decision:
r* = argmax_r (1 + rho) E|r & g| - rho a_r, and the hand holds r* iff that gain is > 0. A large region the head
is unsure of loses to "none"; argmax over regions would pay its full area into the union whenever it is wrong.

rho is the ratio the decisions will reach. `self_consistent_ratio` estimates it without labels, as the fixed point
of rho = E[sum I] / E[sum U] under the same beliefs over a set of frames (Dinkelbach's iteration for a ratio
objective); the heads stage runs it on the training frames and stores it in the checkpoint (heads.target_iou).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


def frame_overlaps(fr) -> np.ndarray:
    """(R, R) pixel intersections |r_i & r_j| of a FrameRegions' regions: the prior's containment |r_i & r_j| / |r_i|
    times |r_i|."""
    from pipeline.priors import containment

    return containment(fr).astype(float) * np.asarray(fr.areas, float)[:, None]


@dataclass
class Belief:
    """One hand's matching distribution (R + 1, none last) with its frame's region areas (R,) and overlaps (R, R)."""
    p_match: np.ndarray
    areas: np.ndarray
    inter: np.ndarray

    def expected_intersection(self) -> np.ndarray:
        return self.inter @ self.p_match[:-1]

    def gains(self, rho: float) -> np.ndarray:
        """(R,) expected change of rho-weighted I - U for predicting each region."""
        return (1.0 + rho) * self.expected_intersection() - rho * np.asarray(self.areas, float)

    def decide(self, rho: float) -> tuple[int, bool]:
        """(best region index, holds?)."""
        g = self.gains(rho)
        r = int(np.argmax(g))
        return r, bool(g[r] > 0)


def self_consistent_ratio(beliefs: list[Belief], start: float = 0.3, tol: float = 1e-5, max_iter: int = 100) -> float:
    """The rho that the decisions made with rho reach in expectation under the beliefs themselves: E[sum I] over
    the predicted regions / E[sum U], where E[U] adds the expected object area (sum_r p_r a_r, none = 0) and each
    prediction's expected area outside the object. 0 when no belief predicts anything."""
    rho = float(start)
    object_area = sum(float(b.p_match[:-1] @ np.asarray(b.areas, float)) for b in beliefs)  # whatever is decided
    for _ in range(max_iter):
        e_i, e_u = 0.0, object_area
        for b in beliefs:
            p = b.p_match[:-1]
            r, holds = b.decide(rho)
            if holds:
                ei = float(b.inter[r] @ p)
                e_i, e_u = e_i + ei, e_u + float(b.areas[r]) - ei
        new = e_i / e_u if e_u > 0 else 0.0
        if abs(new - rho) < tol:
            return new
        rho = new
    return rho


def estimate_target_iou(heads, samples, batch: int = 64) -> float:
    """self_consistent_ratio of the matching head's beliefs about every (frame, side) of the training samples:
    no label is read, only what the heads predict on the frames they were trained on."""
    cache: dict[int, np.ndarray] = {}
    beliefs = []
    for s, pm in zip(samples, heads.match_probs(samples, batch)):
        fr = s.frame
        if id(fr) not in cache:
            cache[id(fr)] = frame_overlaps(fr)
        beliefs.append(Belief(pm, fr.areas, cache[id(fr)]))
    return self_consistent_ratio(beliefs)


def set_target_iou(out, samples, params) -> None:
    """heads.rule expected_iou: heads.target_iou, or (None) the ratio the heads expect on their training frames."""
    if out.cfg.rule == "expected_iou" and out.matching is not None:
        target = params.target_iou if params.target_iou is not None else estimate_target_iou(out, samples)
        out.cfg = replace(out.cfg, target_iou=float(target))

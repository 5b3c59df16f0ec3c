"""The expected-IoU decision of Stage 2 (pipeline.expected_iou) on beliefs whose best answer is known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.expected_iou import Belief, frame_overlaps, self_consistent_ratio


def _disjoint(areas, p) -> Belief:
    a = np.asarray(areas, float)
    return Belief(np.asarray(p, float), a, np.diag(a))


def test_unsure_large_region_loses_to_none_and_a_sure_small_one_is_kept():
    # the argmax region (p 0.4) is large and unsure: at rho 0.5 its expected intersection 0.4 a is worth
    # 1.5 * 0.4 = 0.6 a against a cost of 0.5 a -> kept; at rho 0.8 (1.8 * 0.4 = 0.72 < 0.8) -> none
    b = _disjoint([10_000, 300], [0.4, 0.1, 0.5])
    assert b.decide(0.5) == (0, True)
    assert not b.decide(0.8)[1]
    assert _disjoint([300], [0.9, 0.1]).decide(0.8) == (0, True)


def test_a_region_containing_the_likely_pieces_collects_their_credit():
    # regions 0 and 1 are halves of region 2; the head splits its belief between the halves
    a = np.array([100.0, 100.0, 200.0])
    inter = np.array([[100, 0, 100], [0, 100, 100], [100, 100, 200]], float)
    b = Belief(np.array([0.45, 0.45, 0.0, 0.1]), a, inter)
    assert b.decide(0.5)[0] == 2  # the whole: E|r & g| = 90 for it, 45 for either half


def test_decision_maximises_the_expected_gain_by_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = int(rng.integers(1, 6))
        a = rng.uniform(10, 1000, r)
        inter = np.minimum(a[:, None], a[None]) * (rng.uniform(size=(r, r)) < 0.3)
        inter = np.triu(inter, 1) + np.triu(inter, 1).T + np.diag(a)
        p = rng.dirichlet(np.ones(r + 1))
        rho = float(rng.uniform(0.05, 0.9))
        b = Belief(p, a, inter)
        options = [0.0] + [(1 + rho) * float(inter[k] @ p[:-1]) - rho * a[k] for k in range(r)]
        k, holds = b.decide(rho)
        assert (options[k + 1] if holds else 0.0) == pytest.approx(max(options))


def test_self_consistent_ratio_is_a_fixed_point():
    # one hand, p 0.5 on one region: predicting it gives E[I] = 0.5 a, E[U] = 0.5 a (object) + 0.5 a -> 0.5
    assert self_consistent_ratio([_disjoint([400], [0.5, 0.5])]) == pytest.approx(0.5)
    assert self_consistent_ratio([_disjoint([400], [1.0, 0.0])]) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    beliefs = [_disjoint(rng.uniform(50, 5000, 4), rng.dirichlet(np.full(5, 0.5))) for _ in range(30)]
    rho = self_consistent_ratio(beliefs)
    e_i = e_u = 0.0
    for b in beliefs:
        e_u += float(b.p_match[:-1] @ b.areas)
        k, holds = b.decide(rho)
        if holds:
            e_i += float(b.inter[k] @ b.p_match[:-1])
            e_u += b.areas[k] - float(b.inter[k] @ b.p_match[:-1])
    assert 0 < rho < 1 and e_i / e_u == pytest.approx(rho, abs=1e-4)


def test_frame_overlaps_are_pixel_intersections():
    from pipeline import rle as rle_utils
    from pipeline.regions import FrameRegions, HandView

    masks = [np.zeros((20, 30), bool) for _ in range(3)]
    masks[0][2:10, 3:12] = True
    masks[1][5:15, 8:20] = True
    masks[2][16:19, 25:29] = True
    absent = HandView(False, np.zeros(4, np.float32), np.zeros(4, np.float32))
    fr = FrameRegions("f", 20, 30, np.arange(3), np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32),
                      np.array([m.sum() for m in masks], float), [rle_utils.encode(m) for m in masks],
                      {"left": absent, "right": absent})
    want = np.array([[(x & y).sum() for y in masks] for x in masks], float)
    assert np.allclose(frame_overlaps(fr), want)

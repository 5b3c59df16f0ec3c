"""EgoHOS contact boundary on label maps whose band is counted by hand, and its IoU in the metrics."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.boundary import boundary_counts, contact_boundary
from pipeline.metrics import score_maps
from test_metrics import _map as label_map


def _map(**rects) -> np.ndarray:
    return label_map(40, 60, **rects)


def test_band_where_a_hand_meets_its_object():
    # left hand cols 0-9 rows 20-39, its object cols 10-15 rows 25-34: with r=1 the dilations overlap on
    # cols 9-10 and rows 24-35 -> 2 x 12 = 24 px
    m = _map(hand=(1, 20, 40, 0, 10), obj=(3, 25, 35, 10, 16))
    b = contact_boundary(m, radius=1)
    assert b.sum() == 24 and b[24:36, 9:11].all()
    assert contact_boundary(m, radius=2).sum() == 4 * 14  # cols 8-11, rows 23-36


def test_no_boundary_without_contact_or_with_the_other_hands_object():
    apart = _map(hand=(1, 20, 40, 0, 10), obj=(3, 25, 35, 20, 26))
    assert not contact_boundary(apart, 2).any()
    other = _map(hand=(1, 20, 40, 0, 10), obj=(4, 25, 35, 10, 16))  # the right hand's object touching the left hand
    assert not contact_boundary(other, 2).any()
    both = _map(hand=(2, 20, 40, 50, 60), obj=(5, 25, 35, 44, 50))  # a both-hands object counts for each hand
    assert contact_boundary(both, 1).sum() == 24


def test_boundary_iou_is_accumulated_and_none_when_never_present():
    gt = _map(hand=(1, 20, 40, 0, 10), obj=(3, 25, 35, 10, 16))
    shifted = _map(hand=(1, 20, 40, 0, 10), obj=(3, 31, 41, 10, 16))  # contact rows 30-39 instead of 24-35
    inter, union = boundary_counts(shifted, gt, 1)
    assert (inter, union) == (2 * 6, 2 * 12 + 2 * 10 - 2 * 6)  # rows 30-35 shared
    r = score_maps([(shifted, gt), (gt, gt)])  # default radius 2 in score_maps' Scorer
    i1, u1 = boundary_counts(shifted, gt, 2)
    i2, u2 = boundary_counts(gt, gt, 2)
    assert r["contact_boundary_iou"] == pytest.approx((i1 + i2) / (u1 + u2))
    assert score_maps([(_map(), _map(hand=(1, 0, 5, 0, 5)))])["contact_boundary_iou"] is None

"""Metrics on small synthetic label maps whose answers are computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import Scorer, holds, score_frame, score_maps


def _map(h: int = 10, w: int = 10, **rects) -> np.ndarray:
    """Label map with rectangles: name=(value, y0, y1, x0, x1)."""
    m = np.zeros((h, w), np.uint8)
    for value, y0, y1, x0, x1 in rects.values():
        m[y0:y1, x0:x1] = value
    return m


def test_perfect_prediction_gives_iou_one_and_absent_classes_none():
    gt = _map(lh=(1, 0, 5, 0, 3), rh=(2, 0, 5, 7, 10), lo=(3, 6, 8, 0, 2))
    r = score_maps([(gt.copy(), gt)])
    assert r["iou.left_hand"] == r["iou.right_hand"] == r["iou.left_object"] == 1.0
    assert r["iou.right_object"] is None and r["iou.both_object"] is None  # absent everywhere: undefined
    assert r["object_miou"] == 1.0 and r["hand_miou"] == 1.0
    assert r["hand_side_accuracy"] == 1.0 and r["contact_accuracy"] == 1.0
    assert (r["n_frames"], r["n_gt_hands"], r["n_gt_hands_matched"], r["n_gt_hands_holding"]) == (1, 2, 2, 1)


def test_iou_is_accumulated_over_frames_not_averaged():
    # frame A: GT object 4 px, prediction covers 2 of them -> 2/4; frame B: GT 16 px, pred 16 px shifted by 2
    # columns of 4 -> inter 8, union 24. Dataset IoU = (2 + 8) / (4 + 24) = 10/28, per-frame mean would differ.
    gt_a, pred_a = _map(o=(4, 0, 2, 0, 2)), _map(o=(4, 0, 1, 0, 2))
    gt_b, pred_b = _map(o=(4, 0, 4, 0, 4)), _map(o=(4, 0, 4, 2, 6))
    r = score_maps([(pred_a, gt_a), (pred_b, gt_b)])
    assert r["iou.right_object"] == pytest.approx(10 / 28)
    assert r["object_miou"] == pytest.approx(10 / 28)  # only class 4 is present in GT


def test_class_absent_from_gt_but_predicted_is_zero_and_excluded_from_miou():
    gt = _map(lo=(3, 0, 2, 0, 5))  # 10 px
    pred = _map(lo=(3, 0, 1, 0, 5), both=(5, 5, 7, 5, 7))  # 5 px right, plus a false "both hands" object
    r = score_maps([(pred, gt)])
    assert r["iou.left_object"] == pytest.approx(0.5)
    assert r["iou.both_object"] == 0.0
    assert r["object_miou"] == pytest.approx(0.5)
    assert r["gt_pixels.both_object"] == 0 and r["pred_pixels.both_object"] == 4


def test_both_hands_object_counts_as_held_by_each_hand():
    gt = _map(lh=(1, 0, 4, 0, 3), rh=(2, 0, 4, 7, 10), both=(5, 5, 8, 3, 7))
    pred = gt.copy()
    pred[pred == 5] = 3  # predicted as held by the left hand only
    r = score_maps([(pred, gt)])
    assert r["iou.both_object"] == 0.0 and r["iou.left_object"] == 0.0
    assert r["object_miou"] == 0.0  # only class 5 is present in GT
    assert r["n_gt_hands_holding"] == 2
    assert r["contact_accuracy"] == 0.5  # left agrees (holds), right does not (pred says empty)
    assert holds(gt, 1) and holds(gt, 2) and holds(pred, 1) and not holds(pred, 2)


def test_swapped_sides_are_matched_but_wrong():
    gt = _map(lh=(1, 0, 4, 0, 4), rh=(2, 6, 10, 6, 10))
    pred = _map(lh=(2, 0, 4, 0, 4), rh=(1, 6, 10, 6, 10))
    r = score_maps([(pred, gt)])
    assert r["n_gt_hands_matched"] == 2 and r["hand_side_accuracy"] == 0.0
    assert r["iou.left_hand"] == 0.0 and r["hand_miou"] == 0.0


def test_hand_match_needs_iou_half():
    gt = _map(lh=(1, 0, 4, 0, 4))  # 16 px
    pred = _map(lh=(1, 0, 4, 0, 2))  # 8 px inside: IoU 0.5 exactly -> matched
    assert score_frame(pred, gt).hands[0]["matched"]
    pred = _map(lh=(1, 0, 3, 0, 2))  # 6 px: IoU 0.375 -> not matched: a miss, so its side counts as wrong
    r = score_maps([(pred, gt)])
    assert r["n_gt_hands_matched"] == 0 and r["hand_recall"] == 0.0
    assert r["hand_side_accuracy"] == 0.0 and r["hand_side_accuracy_matched"] is None


def test_side_accuracy_counts_missed_hands_as_wrong():
    gt = _map(lh=(1, 0, 4, 0, 4), rh=(2, 6, 10, 6, 10))
    pred = _map(lh=(1, 0, 4, 0, 4))  # right hand missed
    r = score_maps([(pred, gt)])
    assert r["hand_recall"] == 0.5 and r["hand_side_accuracy"] == 0.5 and r["hand_side_accuracy_matched"] == 1.0


def test_contact_accuracy_counts_missed_hands_as_empty():
    gt = _map(lh=(1, 0, 4, 0, 4), lo=(3, 5, 7, 0, 2), rh=(2, 0, 4, 6, 10))
    pred = np.zeros_like(gt)  # nothing found: left disagrees (GT holds), right agrees (neither holds)
    r = score_maps([(pred, gt)])
    assert r["contact_accuracy"] == 0.5
    assert r["iou.left_object"] == 0.0 and r["object_miou"] == 0.0


def test_empty_dataset_and_empty_gt():
    assert Scorer().result()["object_miou"] is None
    r = score_maps([(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))])
    assert r["object_miou"] is None and r["contact_accuracy"] is None and r["n_gt_hands"] == 0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        score_frame(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))

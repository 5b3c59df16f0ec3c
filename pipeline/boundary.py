"""EgoHOS contact boundary: the band where a hand and the object it touches meet.

EgoHOS (Zhang et al., ECCV 2022) adds a "contact boundary" label to its hand / interacting-object maps: the
pixels within a few pixels of where a hand mask meets the mask of the object that hand holds. We derive it from
any EgoHOS label map (ours or GT) the same way, so GT and prediction boundaries are comparable:

    boundary = ⋃_hand  dilate(hand, r) ∧ dilate(its objects, r)

with a hand's objects = its own object class (3 for the left hand 1, 4 for the right hand 2) plus class 5
(held by both). Label maps draw hands over objects, so hand and object never overlap and the intersection of
the two dilations is a band about 2r+1 pixels wide centred on the contact line (empty when they do not touch).
A square (2r+1)x(2r+1) structuring element keeps it cheap and exact on tiny synthetic maps.
"""
from __future__ import annotations

import numpy as np

# EgoHOS ids (as in pipeline.metrics, which imports this module): hand -> its object class; 5 = both hands
OBJECT_OF_HAND = {1: 3, 2: 4}
BOTH = 5


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    if radius <= 0:
        return mask
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def contact_boundary(label_map: np.ndarray, radius: int = 2) -> np.ndarray:
    """Boolean (H, W) contact-boundary mask of an EgoHOS label map (0..5)."""
    out = np.zeros(label_map.shape, bool)
    for hand, obj in OBJECT_OF_HAND.items():
        hand_mask = label_map == hand
        obj_mask = (label_map == obj) | (label_map == BOTH)
        if hand_mask.any() and obj_mask.any():
            out |= _dilate(hand_mask, radius) & _dilate(obj_mask, radius)
    return out


def boundary_counts(pred: np.ndarray, gt: np.ndarray, radius: int = 2) -> tuple[int, int]:
    """(intersection, union) pixels of the predicted and GT contact boundaries of one frame."""
    p, g = contact_boundary(pred, radius), contact_boundary(gt, radius)
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))

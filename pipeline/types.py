"""Small value types passed between stages in memory (the Parquet schemas are their on-disk form)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SIDES = ("left", "right")
TIPS = [4, 8, 12, 16, 20]  # MediaPipe landmark ids of the thumb and finger tips


def tip_distance_map(shape: tuple[int, int], landmarks: np.ndarray | None, box, scale: float = 1.0) -> np.ndarray | None:
    """Per pixel of an image of `shape` (landmarks and box in pixels of an image `scale` times smaller): distance
    to the nearest of the hand's fingertips, in hand sizes (the box's longer side). None without a fingertip in
    the image. The one definition of the fingertip cue (region geometry and the offline proposer's ranking)."""
    import cv2

    if landmarks is None or len(landmarks) <= max(TIPS):
        return None
    src = np.ones(shape, np.uint8)
    for x, y in np.round(np.asarray(landmarks)[TIPS] * scale).astype(int):
        if 0 <= y < shape[0] and 0 <= x < shape[1]:
            src[y, x] = 0
    if src.all():
        return None
    size = max(box[2] - box[0], box[3] - box[1], 1.0) * scale
    return cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_5) / size


# Contact cues (does a region touch the hand?) use the hand mask only this many hand sizes around the landmark
# hull: the drawn mask runs along the forearm to the frame edge (as VISOR/EgoHOS draw it), and counters and
# floors along a forearm are not held (dev, forearm-following masks: `wish` 0.189 -> 0.064 with the whole mask).
CONTACT_REACH = 0.3


def contact_part(mask: np.ndarray, landmarks: np.ndarray | None, box, scale: float = 1.0) -> np.ndarray:
    """The part of a hand(+forearm) mask near the hand itself: `mask` within CONTACT_REACH hand sizes of the
    landmark hull (landmarks and box in pixels of an image `scale` times smaller). The whole mask without
    landmarks."""
    import cv2

    if landmarks is None or len(landmarks) < 3:
        return mask
    pts = np.round(np.asarray(landmarks) * scale).astype(np.int32)
    r = max(int(CONTACT_REACH * max(box[2] - box[0], box[3] - box[1], 1.0) * scale), 1)
    # the dilation runs on the hull's box grown by r, not the frame: exact, and ~5x cheaper for the regions'
    # geometry (a 60-120 px disk over a full frame per hand and frame)
    h, w = mask.shape
    x0, y0 = max(int(pts[:, 0].min()) - r, 0), max(int(pts[:, 1].min()) - r, 0)
    x1, y1 = min(int(pts[:, 0].max()) + r + 1, w), min(int(pts[:, 1].max()) + r + 1, h)
    near = np.zeros(mask.shape, bool)
    if x0 >= x1 or y0 >= y1:  # landmarks (and their reach) entirely off the image
        return mask & near
    hull = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts - np.array([x0, y0], np.int32)), 1)
    near[y0:y1, x0:x1] = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    return mask & near


@dataclass
class Hand:
    """A detected hand in pixel coordinates of the image it was found in."""
    hand_id: int
    side: str  # final side used downstream: "left" | "right"
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (21, 2) x, y
    side_model: str = ""
    side_model_score: float = float("nan")
    side_position: str = ""


@dataclass
class Proposal:
    """A region: boolean mask (H, W) with a score; hand masks carry their side and hand_id."""
    mask: np.ndarray
    score: float
    kind: str = "object"  # "object" | "hand"
    side: str = ""
    hand_id: int = -1

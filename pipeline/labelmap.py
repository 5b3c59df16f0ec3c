"""Per-hand decisions → EgoHOS label map (0 bg, 1/2 left/right hand, 3/4 left/right object, 5 both), and
drawing label maps over images.

Composition rule (matches how the eval GT is rasterised: where a VISOR hand mask and its object mask
overlap, the GT pixel is the hand): held objects are drawn first, hands over them. Left and right held
objects that are the same proposal, or overlap with IoU > `both_iou`, become one class-5 object (their
union); otherwise the more confident hand's object is drawn last, so it wins contested pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.metrics import BOTH, mask_iou

HAND_LABEL = {"left": 1, "right": 2}
OBJECT_LABEL = {"left": 3, "right": 4}
# RGB per class, chosen to stay distinct on kitchen colours.
PALETTE = np.array([[0, 0, 0], [40, 120, 255], [40, 220, 80], [255, 200, 0], [255, 40, 200], [255, 40, 40]], np.uint8)


@dataclass
class Decision:
    """What one method says about one hand side of one frame. mask_id indexes the frame's object proposals."""
    side: str
    hand_found: bool
    mask_id: int = -1
    contact_prob: float = math.nan
    match_prob: float = math.nan

    @property
    def holds(self) -> bool:
        return self.mask_id >= 0

    @property
    def confidence(self) -> float:
        vals = [v for v in (self.contact_prob, self.match_prob) if not math.isnan(v)]
        return float(np.prod(vals)) if vals else 0.0


def object_masks(decisions: dict[str, Decision], objects: list[np.ndarray], both_iou: float) -> list[tuple[int, np.ndarray]]:
    """(label, mask) pairs in drawing order for the held objects of both hands."""
    held = {s: d for s, d in decisions.items() if d.holds}
    if len(held) == 2:
        left, right = objects[held["left"].mask_id], objects[held["right"].mask_id]
        if held["left"].mask_id == held["right"].mask_id or mask_iou(left, right) > both_iou:
            return [(BOTH, left | right)]
    order = sorted(held.values(), key=lambda d: d.confidence)
    return [(OBJECT_LABEL[d.side], objects[d.mask_id]) for d in order]


def compose(shape: tuple[int, int], hand_masks: dict[str, np.ndarray], decisions: dict[str, Decision],
            objects: list[np.ndarray], both_iou: float = 0.5) -> np.ndarray:
    """EgoHOS label map from hand masks (per side) and each side's decision about the object proposals."""
    out = np.zeros(shape, np.uint8)
    for label, mask in object_masks(decisions, objects, both_iou):
        out[mask] = label
    for side in ("left", "right"):
        if side in hand_masks and decisions.get(side, Decision(side, False)).hand_found:
            out[hand_masks[side]] = HAND_LABEL[side]
    return out


def colorize(label_map: np.ndarray) -> np.ndarray:
    return PALETTE[np.clip(label_map, 0, len(PALETTE) - 1)]


def overlay(image: np.ndarray, label_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Image with the label map blended in and each class outlined."""
    import cv2

    out = image.copy()
    fg = label_map > 0
    out[fg] = ((1 - alpha) * image[fg] + alpha * colorize(label_map)[fg]).astype(np.uint8)
    for c in np.unique(label_map[fg]):
        contours, _ = cv2.findContours((label_map == c).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(v) for v in PALETTE[c]), 2)
    return out


def side_by_side(image: np.ndarray, maps: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Overlays of several label maps (e.g. GT, model) next to each other, each captioned."""
    import cv2

    panels = []
    for caption, m in maps:
        panel = overlay(image, m)
        cv2.putText(panel, caption, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        panels.append(panel)
    return np.concatenate(panels, axis=1)

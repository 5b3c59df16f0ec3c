"""Small value types passed between stages in memory (the Parquet schemas are their on-disk form)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SIDES = ("left", "right")
TIPS = [4, 8, 12, 16, 20]  # MediaPipe landmark ids of the thumb and finger tips


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

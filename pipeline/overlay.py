"""Drawing helpers for pseudo-label and prediction overlays (RGB uint8 images in, new images out).

Colours follow the EgoHOS habit: left hand / its object in red tones, right hand / its object in blue tones.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline import rle as rle_utils
from pipeline.regions import FrameRegions

COLORS = {"left": (230, 60, 60), "right": (60, 110, 235)}
OBJECT_COLORS = {"left": (255, 170, 40), "right": (40, 220, 220)}


def fill_mask(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.45) -> np.ndarray:
    """Blend `color` into the masked pixels and outline the mask."""
    out = img.copy()
    m = mask.astype(bool)
    out[m] = (out[m] * (1 - alpha) + np.asarray(color) * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, color, 2)
    return out


def draw_box(img: np.ndarray, box, color: tuple[int, int, int], label: str = "") -> np.ndarray:
    out = img.copy()
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
    if label:
        put_label(out, label, (x0, max(y0 - 4, 12)), color)
    return out


def put_label(img: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int]) -> None:
    """Text with a dark outline so it reads on any background (draws in place)."""
    scale = max(0.4, img.shape[1] / 1400)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def fit_to(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an image to the frame size the regions were computed at (no-op when it already matches)."""
    if img.shape[:2] == (height, width):
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def hand_object_overlay(img: np.ndarray, fr: FrameRegions, choice: dict[str, tuple[int, str]]) -> np.ndarray:
    """Hand boxes, the chosen region of each side filled, and a caption per side.

    choice: {side: (mask_id or -1, caption)} — e.g. the pseudo-label's phrase or a prediction's probability.
    """
    out = fit_to(img, fr.height, fr.width)
    for side, (mask_id, caption) in choice.items():
        i = fr.index_of(mask_id) if mask_id >= 0 else -1
        if i >= 0:
            out = fill_mask(out, rle_utils.decode(fr.rles[i], fr.height, fr.width), OBJECT_COLORS[side])
        hand = fr.hands[side]
        if hand.present:
            out = draw_box(out, hand.box, COLORS[side], f"{side}: {caption}")
    y = 18
    for side, (mask_id, caption) in choice.items():
        put_label(out, f"{side} -> {caption if mask_id >= 0 else 'none'}", (6, y), COLORS[side])
        y += 20
    return out

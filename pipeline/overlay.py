"""Drawing helpers for pseudo-label and prediction overlays (RGB uint8 images in, new images out).

Colours follow the EgoHOS habit: left hand / its object in red tones, right hand / its object in blue tones.
Every overlay carries a legend strip below the image (never over it): what is shown (method, per-frame IoU when
a ground truth is known) and which colour is which hand / object class.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pipeline import rle as rle_utils
from pipeline.labelmap import PALETTE
from pipeline.metrics import CLASS_NAMES
from pipeline.regions import FrameRegions

COLORS = {"left": (230, 60, 60), "right": (60, 110, 235)}
OBJECT_COLORS = {"left": (255, 170, 40), "right": (40, 220, 220)}

# Legend of EgoHOS label-map overlays (pipeline.labelmap.PALETTE), in class order.
LEGEND_NAMES = {"left_hand": "left hand", "right_hand": "right hand", "left_object": "left-hand object",
                "right_object": "right-hand object", "both_object": "both-hands object"}
LABEL_LEGEND = [(LEGEND_NAMES[CLASS_NAMES[c]], tuple(int(v) for v in PALETTE[c])) for c in sorted(CLASS_NAMES)]
# Legend of hand_object_overlay: hand boxes and the region chosen for each hand.
HAND_OBJECT_LEGEND = [("left hand (box)", COLORS["left"]), ("left-hand object", OBJECT_COLORS["left"]),
                      ("right hand (box)", COLORS["right"]), ("right-hand object", OBJECT_COLORS["right"])]
# Legend of pipeline.responsibility_io.overlay: each hand's motion responsibility blended in its channel.
RESPONSIBILITY_LEGEND = [("moves with the left hand", (255, 0, 0)), ("moves with the right hand", (0, 255, 0))]
SHORT = {"left_hand": "L-hand", "right_hand": "R-hand", "left_object": "L-obj", "right_object": "R-obj",
         "both_object": "both-obj"}
STRIP_BG = (30, 30, 30)


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


def hand_object_overlay(img: np.ndarray, fr: FrameRegions, choice: dict[str, tuple[int, str]],
                        title: str = "") -> np.ndarray:
    """Hand boxes, the chosen region of each side filled, a caption per side, and the legend (`title` first).

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
    return with_legend(out, HAND_OBJECT_LEGEND, title)


def iou_caption(inter, union) -> str:
    """Per-class IoU of one frame ("L-obj 0.41  R-hand 0.80"), for the classes in its GT or prediction."""
    parts = [f"{SHORT[name]} {inter[c] / union[c]:.2f}" for c, name in CLASS_NAMES.items() if union[c]]
    return "frame IoU: " + ("  ".join(parts) if parts else "no hand or object in GT or prediction")


def with_legend(img: np.ndarray, entries: Sequence[tuple[str, tuple[int, ...]]], title: str = "") -> np.ndarray:
    """`img` above a legend strip: the title line (if any), then a colour swatch and a name per entry, wrapped."""
    w = img.shape[1]
    scale = max(0.4, min(0.6, w / 1600))
    (_, th), _ = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    line, pad, sw = th + 10, 6, th + 2
    # lay the entries out first (x, row) so the strip height is known before drawing
    spots, x, row = [], pad, 1 if title else 0
    for name, _ in entries:
        tw = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] + sw + 2 * pad
        if x + tw > w and x > pad:
            x, row = pad, row + 1
        spots.append((x, row))
        x += tw + pad
    rows = (max(r for _, r in spots) + 1) if spots else int(bool(title))
    strip = np.full((rows * line + pad, w, 3), STRIP_BG, np.uint8)
    if title:
        cv2.putText(strip, title, (pad, line - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    for (name, color), (x, r) in zip(entries, spots):
        y = r * line + line - 6
        cv2.rectangle(strip, (x, y - sw + 2), (x + sw, y + 2), tuple(int(v) for v in color), -1)
        cv2.putText(strip, name, (x + sw + pad, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([img, strip], axis=0)

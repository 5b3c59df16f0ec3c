"""Dense region features: one EfficientNet-Lite0 feature map per frame, mask-pooled per region.

The crop path runs the network once per region (a 160 px crop each); here the frame goes through once and each
region's feature is the mean of the final 1280-d feature map (conv_head, stride 32) over the cells the mask
covers, weighted by coverage — the restriction of the network's own global average pool to the mask, as
open-vocabulary segmenters pool dense features (MaskCLIP, FC-CLIP). The ImageNet classifier is linear after that
pool, so class logits of a region are the classifier applied to its pooled feature, as for a crop.

What changes against crops: a region sees its surroundings through the receptive field (no grey background),
and a region smaller than a cell (32 px at the dense resolution) shares its cells' features with neighbours.
"""
from __future__ import annotations

import cv2
import numpy as np


def dense_size(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) with the longer side `side` (0 or a larger side: the image's own size)."""
    if side <= 0 or max(h, w) <= side:
        return h, w
    s = side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def frame_array(image: np.ndarray, side: int) -> np.ndarray:
    """(1, h, w, 3) uint8, the longer side resized to `side` (the runtimes normalise)."""
    h, w = dense_size(image.shape[0], image.shape[1], side)
    if (h, w) != image.shape[:2]:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)[None]


def pooling_weights(masks: list[np.ndarray], grid: tuple[int, int]) -> np.ndarray:
    """(M, gh*gw) float32 rows summing to 1: each mask's coverage of the feature cells (area resampling).

    An empty mask pools the whole frame, as the crop path gives an empty mask the whole (grey) frame."""
    gh, gw = grid
    out = np.empty((len(masks), gh * gw), np.float32)
    for i, m in enumerate(masks):
        cover = cv2.resize(m.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA).ravel()
        total = float(cover.sum())
        out[i] = cover / total if total > 1e-8 else 1.0 / (gh * gw)
    return out


def dense_pool(net, classifier: tuple[np.ndarray, np.ndarray], image: np.ndarray, masks: list[np.ndarray],
               side: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (M, C) and ImageNet logits (M, 1000) of `masks` (image-sized booleans) in one forward.

    `net` is a pipeline.embed.runtime runtime; `classifier` the (weight, bias) of the model's linear head."""
    fmap = net.feature_map(frame_array(image, side))  # (1, C, gh, gw)
    c, gh, gw = fmap.shape[1:]
    if not masks:
        return np.zeros((0, c), np.float32), np.zeros((0, len(classifier[1])), np.float32)
    pooled = pooling_weights(masks, (gh, gw)) @ fmap[0].reshape(c, gh * gw).T
    weight, bias = classifier
    return pooled.astype(np.float32), (pooled @ weight.T + bias).astype(np.float32)

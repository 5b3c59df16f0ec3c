"""Region and text encoders behind one interface (registry, like pipeline.masks).

    regions, texts = build_encoders(params.embed, params.common)
    feats = regions.encode(image_rgb, [mask, ...])   # (N, D) float32
    tfeats = texts.encode(["knife in contact with the left hand", ...])  # (M, D') float32
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from pipeline.registry import Backend, Registry


class RegionEncoder(Protocol):
    weights_id: str  # identifies backbone + weights + preprocessing; part of the cache key
    dim: int

    def encode(self, image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray: ...


class TextEncoder(Protocol):
    weights_id: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


BACKENDS = Registry("embed", {
    "offline": Backend("pipeline.embed.offline:build"),
    "clip": Backend("pipeline.embed.clip:build"),
})
REGISTRY = BACKENDS.loaded  # resolved builders; tests substitute their own


def build_encoders(embed_params, common_params) -> tuple[RegionEncoder, TextEncoder]:
    return BACKENDS.builder(embed_params.backend)(embed_params, common_params)

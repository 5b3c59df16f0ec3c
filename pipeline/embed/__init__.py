"""Region and text encoders behind one interface (registry, like pipeline.masks).

    regions, texts = build_encoders(params.embed, params.common)
    feats = regions.encode(image_rgb, [mask, ...])   # (N, D) float32
    tfeats = texts.encode(["knife in contact with the left hand", ...])  # (M, D') float32
"""
from __future__ import annotations

import importlib
from typing import Callable, Protocol

import numpy as np


class RegionEncoder(Protocol):
    weights_id: str  # identifies backbone + weights + preprocessing; part of the cache key
    dim: int

    def encode(self, image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray: ...


class TextEncoder(Protocol):
    weights_id: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


REGISTRY: dict[str, Callable[..., tuple[RegionEncoder, TextEncoder]]] = {}
MODULES = {"offline": "pipeline.embed.offline", "clip": "pipeline.embed.clip"}


def register(name: str):
    def deco(builder):
        REGISTRY[name] = builder
        return builder
    return deco


def build_encoders(embed_params, common_params) -> tuple[RegionEncoder, TextEncoder]:
    name = embed_params.backend
    if name not in REGISTRY and name in MODULES:
        importlib.import_module(MODULES[name])
    if name not in REGISTRY:
        raise KeyError(f"unknown embed backend {name!r}; known: {sorted(MODULES)}")
    return REGISTRY[name](embed_params, common_params)

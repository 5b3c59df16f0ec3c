"""Region proposals behind one interface: a registry of builders (segment-anything style).

    proposer = build_proposer(params.masks, params.common)
    proposals = proposer(image_rgb, hands)   # list[Proposal], object proposals ranked best first

Backends register themselves with @register("name"); each builder takes (MasksParams, CommonParams).
"""
from __future__ import annotations

import importlib
from typing import Callable, Protocol

import numpy as np

from pipeline.types import Hand, Proposal


class Proposer(Protocol):
    def __call__(self, image: np.ndarray, hands: list[Hand]) -> list[Proposal]: ...


REGISTRY: dict[str, Callable[..., Proposer]] = {}
# backend name -> module that registers it (imported on demand so heavy deps load only when used)
MODULES = {"offline": "pipeline.masks.offline", "sam": "pipeline.masks.sam", "sam_hands": "pipeline.masks.sam",
           "gsam": "pipeline.masks.gsam"}


def register(name: str):
    def deco(builder: Callable[..., Proposer]) -> Callable[..., Proposer]:
        REGISTRY[name] = builder
        return builder
    return deco


def build_proposer(masks_params, common_params) -> Proposer:
    name = masks_params.backend
    if name not in REGISTRY and name in MODULES:
        importlib.import_module(MODULES[name])
    if name not in REGISTRY:
        raise KeyError(f"unknown masks backend {name!r}; known: {sorted(MODULES)}")
    return REGISTRY[name](masks_params, common_params)

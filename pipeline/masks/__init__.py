"""Region proposals behind one interface: a registry of builders (segment-anything style).

    proposer = build_proposer(params.masks, params.common)
    proposals = proposer(image_rgb, hands)   # list[Proposal], object proposals ranked best first

Backends are named once, in BACKENDS (with their metadata); each builder takes (MasksParams, CommonParams).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from pipeline.registry import Backend, Registry
from pipeline.types import Hand, Proposal


class Proposer(Protocol):
    def __call__(self, image: np.ndarray, hands: list[Hand]) -> list[Proposal]: ...


BACKENDS = Registry("masks", {
    "offline": Backend("pipeline.masks.offline:build", parallel=True),
    "sam": Backend("pipeline.masks.sam:build_sam_grid"),
    "sam_hands": Backend("pipeline.masks.sam:build_sam_hands"),
    "gsam": Backend("pipeline.masks.gsam:build_gsam"),
})


def build_proposer(masks_params, common_params) -> Proposer:
    return BACKENDS.builder(masks_params.backend)(masks_params, common_params)

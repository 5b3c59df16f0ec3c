"""Resolve the `common.device` param once, the same way in every model stage."""
from __future__ import annotations

import random

import numpy as np
import torch

from pipeline.errors import WishError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise WishError(None, "common.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int, num_threads: int | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if num_threads:
        torch.set_num_threads(num_threads)

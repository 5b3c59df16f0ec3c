"""Resolve the `common.device` param once, the same way in every model stage.

torch is imported inside the functions: stages that never run a model (frames, nouns, inspect) must not pay
its import time (seconds on this machine).
"""
from __future__ import annotations

import contextlib
import random
import sys
from typing import TYPE_CHECKING, Iterator

import numpy as np

from pipeline.errors import WishError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> "torch.device":
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise WishError(None, "common.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int, num_threads: int | None = None, torch: bool = True) -> None:
    """Seed Python and NumPy, and torch (with its thread count) unless `torch=False` (a stage without models)."""
    random.seed(seed)
    np.random.seed(seed)
    if not torch:
        return
    import torch as _torch

    _torch.manual_seed(seed)
    if num_threads:
        _torch.set_num_threads(num_threads)


@contextlib.contextmanager
def torch_refused() -> Iterator[None]:
    """Inside, `import torch` fails unless torch is already loaded: libraries that only probe for it (thinc,
    under spaCy) then skip it instead of spending seconds importing it. Outside, nothing changes."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # None in sys.modules = ImportError on import
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]

"""Pluggable backends named once: each registry maps a name to where its builder lives, plus its metadata.

Params validate a backend name against the registry (no copied Literal), the stage reads its metadata (can it
be spread over worker processes?), and the builder's module is imported only when that backend is used, so heavy
optional dependencies (segment-anything, open_clip) load only on demand.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Backend:
    builder: str  # "package.module:function"
    # Worker processes may each build their own copy (weight-free backends only: a model backend would
    # load its weights once per worker).
    parallel: bool = False

    def load(self) -> Callable:
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(module), func)


class Registry:
    def __init__(self, kind: str, backends: dict[str, Backend]):
        self.kind, self.backends = kind, backends
        # builders resolved so far (tests substitute their own here)
        self.loaded: dict[str, Callable] = {}

    def names(self) -> list[str]:
        return list(self.backends)

    def check(self, name: str) -> str:
        """Pydantic validator body: an unknown name is a ValueError listing the known ones."""
        if name not in self.backends:
            raise ValueError(f"unknown {self.kind} backend {name!r}; known: {self.names()}")
        return name

    def builder(self, name: str) -> Callable:
        if name not in self.loaded:
            self.loaded[name] = self.backends[self.check(name)].load()
        return self.loaded[name]

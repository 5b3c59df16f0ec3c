"""One error type for bad input: it always names the file and the problem."""
from __future__ import annotations

from pathlib import Path


class WishError(Exception):
    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)

    def __reduce__(self):  # raised in a worker process, it must unpickle as itself in the stage
        return (type(self), (self.path, self.problem))

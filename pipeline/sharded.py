"""What the per-frame stages' shard adapters for pipeline.executor (what `common.executor: processes` and `ray`
run) share.

Each stage's adapter lives next to the stage (pipeline/hands_shards.py, pipeline/masks/shards.py,
pipeline/embed/shards.py, pipeline/responsibility_shards.py), so a stage's code deps stay its own. Each cuts the
stage's input into shards, lets the executor run the stage's own per-frame function on them and merges the results
in shard order, which is the order the local stage visits frames: the artifact is the local one row for row.
Paths are made absolute so workers need not share the driver's cwd.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from pipeline.executor import Shard, frame_ranges, shard_id


def common_key(common) -> dict:
    """The common params that can change a result (not where or how it is computed)."""
    return common.model_dump(mode="json", exclude={"executor", "workers", "ray", "num_threads"})


def frame_shards(frames: pd.DataFrame, size: int, payload_of: Callable[[pd.DataFrame], object],
                 first: int = 0) -> list[Shard]:
    """Shards of consecutive rows of one video (at most `size`), numbered from `first`."""
    ranges = frame_ranges(frames["video_id"], size)
    return [Shard(shard_id(first + i, v, a), payload_of(frames.iloc[a:b]), b - a) for i, (v, a, b) in enumerate(ranges)]


def frame_jobs(frames: pd.DataFrame, frames_dir: Path) -> list[tuple[str, str]]:
    return [(str(f), str(frames_dir / r)) for f, r in zip(frames["frame_id"], frames["image_path"])]


def digest(items: list[str]) -> str:
    import hashlib

    return hashlib.sha1("\n".join(items).encode()).hexdigest()

"""The `hands` stage as shard tasks for pipeline.executor (`common.executor: processes` or `ray`); see
pipeline/sharded.py."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.executor import RunInfo, Task, run_key, run_shards
from pipeline.sharded import frame_jobs, frame_shards


def hands_setup(hands_params):
    from pipeline.hands import HandDetector

    return hands_params, HandDetector(hands_params)  # the MediaPipe graph, once per worker


def hands_shard(state, jobs: list[tuple[str, str]]) -> list[dict]:
    from pipeline.hands import hands_to_rows
    from pipeline.io import read_image

    hp, det = state
    return [r for fid, path in jobs for r in hands_to_rows(fid, det.detect(read_image(path)), hp.backend)]


def hands_sharded(frames: pd.DataFrame, frames_dir: Path, p) -> tuple[pd.DataFrame, RunInfo]:
    """HANDS rows of every frame (frames.parquet order), computed on the executor."""
    from pipeline.schemas import HANDS

    frames_dir = Path(frames_dir).resolve()
    shards = frame_shards(frames, p.common.ray.shard_frames, lambda g: frame_jobs(g, frames_dir))
    key = run_key("hands", p.hands, [frames_dir / "frames.parquet"], p.common.ray.shard_frames)
    results, info = run_shards(Task("hands", hands_setup, hands_shard, (p.hands,)), shards, p.common, key)
    return pd.DataFrame([r for rows in results for r in rows], columns=HANDS.columns), info

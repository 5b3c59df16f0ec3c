"""The `masks` stage as shard tasks for pipeline.executor (`common.executor: processes` or `ray`); see
pipeline/sharded.py."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from pipeline.executor import Task, run_key, run_shards
from pipeline.sharded import common_key, frame_jobs, frame_shards


def masks_setup(backend: str, masks_params, common_params) -> None:
    import os

    from pipeline.masks.run import _init_worker

    # the stage's own per-worker proposer; the actor's parent is Ray's raylet, whose death ends the actor too
    _init_worker(backend, masks_params, common_params, os.getppid())


def masks_shard(_, jobs: list) -> list:
    from pipeline.masks.run import one_frame

    return [one_frame(job) for job in jobs]


def masks_sharded(frames: pd.DataFrame, frames_dir: Path, hands: pd.DataFrame, p) -> tuple[pd.DataFrame, dict]:
    """MASKS rows and the stage's timing stats, like pipeline.masks.run.propose_frames."""
    from pipeline.schemas import MASKS

    frames_dir = Path(frames_dir).resolve()
    by_frame = {fid: rows for fid, rows in hands.groupby("frame_id", sort=False)}
    payload = lambda g: [(f, Path(path), by_frame.get(f)) for f, path in frame_jobs(g, frames_dir)]  # noqa: E731
    shards = frame_shards(frames, p.common.ray.shard_frames, payload)
    key = run_key("masks", [p.masks, common_key(p.common)],
                  [frames_dir / "frames.parquet", frames_dir.parent / "hands" / "hands.parquet"],
                  p.common.ray.shard_frames)
    task = Task("masks", masks_setup, masks_shard, (p.masks.backend, p.masks, p.common),
                uses_gpu=p.masks.backend != "offline")
    start = time.perf_counter()
    results, info = run_shards(task, shards, p.common, key)
    wall = time.perf_counter() - start
    per_frame = [r for shard in results for r in shard]
    df = pd.DataFrame([row for rows, _, _ in per_frame for row in rows], columns=MASKS.columns)
    n = max(len(frames), 1)
    objects = int((df["kind"] == "object").sum()) if len(df) else 0
    return df, dict(frames=len(frames), proposals_per_frame=round(objects / n, 2), hand_masks=int(len(df) - objects),
                    workers=info.workers, s_per_frame=round(wall / n, 3),
                    cpu_s_per_frame=round(sum(c for _, _, c in per_frame) / n, 3), executor=p.common.executor,
                    shards_resumed=len(info.resumed))

"""The `embed` stage as shard tasks for pipeline.executor (`common.executor: processes` or `ray`); see
pipeline/sharded.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.executor import Task, run_key, run_shards
from pipeline.sharded import common_key, digest, frame_shards


def embed_setup(embed_params, common_params):
    from pipeline.embed import build_encoders

    return build_encoders(embed_params, common_params)[0]


def embed_shard(encoder, payload) -> tuple[list[str], np.ndarray]:
    from pipeline.embed.build import embed_regions

    frames, masks, frames_dir, attrs = payload
    cache, _ = embed_regions(encoder, frames, masks, Path(frames_dir), None, attrs)
    return cache.keys, cache.features


def embed_sharded(frames: pd.DataFrame, masks: pd.DataFrame, frames_dir: Path, previous, weights_id: str,
                 attrs: dict, p):
    """A cache holding `previous` plus every region it lacks, encoded on the executor; and how many that was.

    Workers never touch regions.h5: each returns its shard's (keys, features), the driver alone writes the
    cache (atomically), so concurrent workers cannot corrupt it. Passed to embed_regions as `previous`, the
    result makes the stage encode nothing more and assemble the file in masks.parquet order."""
    from pipeline.embed.cache import Cache, region_key

    frames_dir = Path(frames_dir).resolve()
    known = set(previous.keys) if previous is not None else set()
    keys = [region_key(f, r, weights_id) for f, r in zip(masks["frame_id"], masks["rle"])]
    todo = masks[[k not in known for k in keys]]
    need = frames[frames["frame_id"].isin(set(todo["frame_id"]))]
    if need.empty:
        return previous, 0
    by_frame = {fid: rows for fid, rows in todo.groupby("frame_id", sort=False)}
    payload = lambda g: (g, pd.concat([by_frame[f] for f in g["frame_id"]]), str(frames_dir), attrs)  # noqa: E731
    shards = frame_shards(need, p.common.ray.shard_frames, payload)
    key = run_key("embed", [p.embed, common_key(p.common), weights_id], [frames_dir / "frames.parquet"],
                  [p.common.ray.shard_frames, digest(sorted(set(keys) - known))])
    task = Task("embed", embed_setup, embed_shard, (p.embed, p.common), uses_gpu=True)
    results, _ = run_shards(task, shards, p.common, key)
    new_keys = [k for ks, _ in results for k in ks]
    feats = [f for _, f in results] + ([previous.features] if previous is not None else [])
    old_keys = list(previous.keys) if previous is not None else []
    return Cache(new_keys + old_keys, np.concatenate(feats).astype(np.float16), dict(attrs)), len(new_keys)

"""The per-frame stages as shard tasks for pipeline.executor (what `common.executor: ray` runs).

Each adapter cuts the stage's input into shards, lets the executor run the stage's own per-frame function on
them (HandDetector.detect, masks.run.one_frame, embed.build.embed_regions, the responsibility stage's
per-source loop) and merges the results in shard order, which is the order the local stage visits frames:
the artifact is the local one row for row. Paths are made absolute so workers need not share the driver's cwd.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.executor import RunInfo, Shard, Task, frame_ranges, run_key, run_shards, shard_id


def _common_key(common) -> dict:
    """The common params that can change a result (not where or how it is computed)."""
    return common.model_dump(mode="json", exclude={"executor", "ray", "num_threads"})


def frame_shards(frames: pd.DataFrame, size: int, payload_of: Callable[[pd.DataFrame], object],
                 first: int = 0) -> list[Shard]:
    """Shards of consecutive rows of one video (at most `size`), numbered from `first`."""
    ranges = frame_ranges(frames["video_id"], size)
    return [Shard(shard_id(first + i, v, a), payload_of(frames.iloc[a:b]), b - a) for i, (v, a, b) in enumerate(ranges)]


def _jobs(frames: pd.DataFrame, frames_dir: Path) -> list[tuple[str, str]]:
    return [(str(f), str(frames_dir / r)) for f, r in zip(frames["frame_id"], frames["image_path"])]


def _digest(items: list[str]) -> str:
    import hashlib

    return hashlib.sha1("\n".join(items).encode()).hexdigest()


# ---- hands ---------------------------------------------------------------------------------------------
def hands_setup(hands_params):
    from pipeline.hands import HandDetector

    return hands_params, HandDetector(hands_params)  # the MediaPipe graph, once per worker


def hands_shard(state, jobs: list[tuple[str, str]]) -> list[dict]:
    from pipeline.hands import hands_to_rows
    from pipeline.io import read_image

    hp, det = state
    return [r for fid, path in jobs for r in hands_to_rows(fid, det.detect(read_image(path)), hp.backend)]


def hands_on_ray(frames: pd.DataFrame, frames_dir: Path, p) -> tuple[pd.DataFrame, RunInfo]:
    """HANDS rows of every frame (frames.parquet order), computed on the executor."""
    from pipeline.schemas import HANDS

    frames_dir = Path(frames_dir).resolve()
    shards = frame_shards(frames, p.common.ray.shard_frames, lambda g: _jobs(g, frames_dir))
    key = run_key("hands", p.hands, [frames_dir / "frames.parquet"], p.common.ray.shard_frames)
    results, info = run_shards(Task("hands", hands_setup, hands_shard, (p.hands,)), shards, p.common, key)
    return pd.DataFrame([r for rows in results for r in rows], columns=HANDS.columns), info


# ---- masks ---------------------------------------------------------------------------------------------
def masks_setup(backend: str, masks_params, common_params) -> None:
    import os

    from pipeline.masks.run import _init_worker

    # the stage's own per-worker proposer; the actor's parent is Ray's raylet, whose death ends the actor too
    _init_worker(backend, masks_params, common_params, os.getppid())


def masks_shard(_, jobs: list) -> list:
    from pipeline.masks.run import one_frame

    return [one_frame(job) for job in jobs]


def masks_on_ray(frames: pd.DataFrame, frames_dir: Path, hands: pd.DataFrame, p) -> tuple[pd.DataFrame, dict]:
    """MASKS rows and the stage's timing stats, like pipeline.masks.run.propose_frames."""
    from pipeline.schemas import MASKS

    frames_dir = Path(frames_dir).resolve()
    by_frame = {fid: rows for fid, rows in hands.groupby("frame_id", sort=False)}
    payload = lambda g: [(f, Path(path), by_frame.get(f)) for f, path in _jobs(g, frames_dir)]  # noqa: E731
    shards = frame_shards(frames, p.common.ray.shard_frames, payload)
    key = run_key("masks", [p.masks, _common_key(p.common)],
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
                    cpu_s_per_frame=round(sum(c for _, _, c in per_frame) / n, 3), executor="ray",
                    shards_resumed=len(info.resumed))


# ---- embed ---------------------------------------------------------------------------------------------
def embed_setup(embed_params, common_params):
    from pipeline.embed import build_encoders

    return build_encoders(embed_params, common_params)[0]


def embed_shard(encoder, payload) -> tuple[list[str], np.ndarray]:
    from pipeline.embed.build import embed_regions

    frames, masks, frames_dir, attrs = payload
    cache, _ = embed_regions(encoder, frames, masks, Path(frames_dir), None, attrs)
    return cache.keys, cache.features


def embed_on_ray(frames: pd.DataFrame, masks: pd.DataFrame, frames_dir: Path, previous, weights_id: str,
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
    key = run_key("embed", [p.embed, _common_key(p.common), weights_id], [frames_dir / "frames.parquet"],
                  [p.common.ray.shard_frames, _digest(sorted(set(keys) - known))])
    task = Task("embed", embed_setup, embed_shard, (p.embed, p.common), uses_gpu=True)
    results, _ = run_shards(task, shards, p.common, key)
    new_keys = [k for ks, _ in results for k in ks]
    feats = [f for _, f in results] + ([previous.features] if previous is not None else [])
    old_keys = list(previous.keys) if previous is not None else []
    return Cache(new_keys + old_keys, np.concatenate(feats).astype(np.float16), dict(attrs)), len(new_keys)


# ---- responsibility ------------------------------------------------------------------------------------
def _identity(x):
    return x


def responsibility_shard(one_source, payload) -> list[tuple]:
    source, group, hands, masks, rp, cfg = payload
    return list(one_source(Path(source), group, hands, masks, rp, cfg))


def responsibility_on_ray(frames: pd.DataFrame, hands: dict, masks: dict, rp, cfg, one_source, p,
                          inputs: list[Path]) -> tuple[list[str], list, list[dict]]:
    """(ids, maps, rows) like the stage's own loop: sources in sorted order, frame ranges within each.

    `one_source` is the stage's per-source generator (shipped to the workers by reference)."""
    shards: list[Shard] = []
    for source, group in frames.groupby("source", sort=True):
        def payload(g, source=source):
            ids = [f for f in g["frame_id"]]
            return (str(Path(source).resolve()), g, {f: hands[f] for f in ids if f in hands},
                    {f: masks[f] for f in ids if f in masks}, rp, cfg)
        shards += frame_shards(group, p.common.ray.shard_frames, payload, first=len(shards))
    key = run_key("responsibility", rp, inputs, p.common.ray.shard_frames)
    results, _ = run_shards(Task("responsibility", _identity, responsibility_shard, (one_source,)), shards,
                            p.common, key)
    flat = [item for shard in results for item in shard]
    return [f for f, _, _ in flat], [q for _, q, _ in flat], [r for _, _, rows in flat for r in rows]

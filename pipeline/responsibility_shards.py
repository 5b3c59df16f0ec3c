"""The `responsibility` stage as shard tasks for pipeline.executor (`common.executor: processes` or `ray`); see
pipeline/sharded.py."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.executor import Shard, Task, run_key, run_shards
from pipeline.sharded import frame_shards


def _identity(x):
    return x


def responsibility_shard(one_source, payload) -> list[tuple]:
    source, group, hands, masks, rp, cfg = payload
    return list(one_source(Path(source), group, hands, masks, rp, cfg))


def responsibility_sharded(frames: pd.DataFrame, hands: dict, masks: dict, rp, cfg, one_source, p,
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

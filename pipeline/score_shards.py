"""`score` / `wish evaluate` / `wish predict` perception on the executor (`common.executor: ray`).

Perceiving an image (hands -> hand masks -> proposals -> region embeddings: Models.perceive) is where inference
spends its time; the methods that choose among the proposals are cheap. So with `ray`, actors that load the
perception models once perceive shards of images, and the driver assembles the FrameContexts and runs the methods
exactly as the local loop does: same contexts, same decisions, same metrics. Masks travel as COCO RLE (a frame's
100 dense masks are ~40 MB, their RLEs a few hundred kB) and are decoded back bit for bit. Images are read by the
driver and sent in chunks of `workers x shard_frames`, so memory stays bounded on long videos; the actors (and
their models) live across chunks.
"""
from __future__ import annotations

import hashlib
from itertools import islice
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from pipeline import rle
from pipeline.executor import ActorPool, Shard, Task, run_key, run_shards, shard_id
from pipeline.predict import FrameContext, Models, Perception
from pipeline.sharded import common_key

Item = tuple[str, np.ndarray, "pd.DataFrame | None"]  # (image_id, RGB image, the frame's narrations or None)


def perceive_setup(params, root: str) -> Models:
    return Models(params, root)


def perceive_shard(models: Models, payload: tuple[list[np.ndarray], bool]) -> list[tuple]:
    images, with_regions = payload
    return [pack(models.perceive(image, with_regions)) for image in images]


def pack(seen: Perception) -> tuple:
    props = [(rle.encode(q.mask), q.score, q.kind, q.side, q.hand_id) for q in seen.proposals]
    return seen.hands, props, seen.features


def unpack(packed: tuple, shape: tuple[int, int]) -> Perception:
    from pipeline.types import Proposal

    hands, props, feats = packed
    return Perception(hands, [Proposal(rle.decode(r, *shape), score, kind, side, hand_id)
                              for r, score, kind, side, hand_id in props], feats)


def iter_contexts(items: Iterable[Item], models: Models, params, with_regions: bool) -> Iterator[FrameContext]:
    """FrameContexts of `items`, in order: perceived here (`executor: local`) or on the executor's actors."""
    if params.common.executor != "ray":
        for image_id, image, narrations in items:
            yield models.context(image_id, image, narrations, with_regions)
        return
    rp = params.common.ray
    chunk_size = max(1, rp.workers) * max(1, rp.shard_frames)
    task = Task("score", perceive_setup, perceive_shard, (params, str(models.root)), uses_gpu=True)
    it = iter(items)
    with ActorPool(task, params.common) as pool:  # one set of actors (models loaded once) for every chunk
        while chunk := list(islice(it, chunk_size)):
            # a short chunk (a 12-frame eval set) is still spread over every worker
            size = min(rp.shard_frames, -(-len(chunk) // max(1, rp.workers)))
            shards = [Shard(shard_id(i, chunk[a][0], a), ([x[1] for x in chunk[a:a + size]], with_regions),
                            len(chunk[a:a + size]))
                      for i, a in enumerate(range(0, len(chunk), size))]
            results, _ = run_shards(task, shards, params.common, _key(params, chunk, with_regions), pool)
            packed = [p for shard in results for p in shard]
            for (image_id, image, narrations), p in zip(chunk, packed):
                yield models.assemble(image_id, image, unpack(p, image.shape[:2]), narrations)


def _key(params, chunk: list[Item], with_regions: bool) -> str:
    """The run key of one chunk: perception params and the images' bytes (a resumed run must see the same)."""
    h = hashlib.sha1()
    for image_id, image, _ in chunk:
        h.update(image_id.encode())
        h.update(np.ascontiguousarray(image).tobytes())
    perception = [params.hands, params.masks, params.embed, common_key(params.common), with_regions]
    return run_key("score", perception, [], h.hexdigest())

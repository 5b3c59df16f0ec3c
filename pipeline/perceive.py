"""Perception: what the models see in an image (hands -> hand masks -> proposals -> region embeddings), here or
on the executor's actors, and stage `perceive`, which writes it once for every frame of score.evalset.

Perception of the eval frames depends on the hands / masks / embed params and the images, never on what Stage 1
or Stage 2 learned; without the stage every `dvc exp run -S heads.…` (or align, pseudolabel) sweep redid it in
`score` (about two thirds of that stage). Files under ROOT/perceive/:
  hands.parquet   HANDS rows (frame_id = the eval image id)
  masks.parquet   MASKS rows, object proposals first (mask_id = rank), then hand masks, exactly as Perceiver.perceive
  features.h5     region embeddings, one row per MASKS row in the same order (float32, not the training cache's
                  float16: `score` gives the same numbers with or without this stage)
The parquet metadata holds the perception key (the params that shape perception) and each image's sha1, so the
files are never used for other params or other pixels (`score` then perceives those frames itself).

With `common.executor: ray`, actors that load the perception models once perceive shards of images; masks travel
as COCO RLE (a frame's 100 dense masks are ~40 MB, their RLEs a few hundred kB) and are decoded back bit for bit.
Images are sent in chunks of `workers x shard_frames`, so memory stays bounded on long videos.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np
import pandas as pd

from pipeline import rle
from pipeline.errors import WishError
from pipeline.io import atomic_path, h5_check, read_table, table_meta, write_table
from pipeline.schemas import HANDS, MASKS, PERCEPTION_FEATURES
from pipeline.types import Hand, Proposal

Item = tuple[str, np.ndarray, "pd.DataFrame | None"]  # (image_id, RGB image, the frame's narrations or None)


@dataclass
class Perception:
    """Hands, proposals (objects first) and their region embeddings (None: not computed) of one image."""
    hands: list[Hand]
    proposals: list[Proposal]
    features: np.ndarray | None = None


class Perceiver:
    """The perception models, built lazily (the nearest-proposal baseline needs no region encoder)."""

    def __init__(self, params):
        self.p = params

    @cached_property
    def detector(self):
        from pipeline.hands import HandDetector

        return HandDetector(self.p.hands)

    @cached_property
    def proposer(self):
        from pipeline.masks import build_proposer

        return build_proposer(self.p.masks, self.p.common)

    @cached_property
    def encoders(self):
        from pipeline.embed import build_encoders

        return build_encoders(self.p.embed, self.p.common)

    def perceive(self, image: np.ndarray, with_regions: bool = True) -> Perception:
        """Hands, proposals (the masks stage's own path: objects first, so a region's mask_id is its index in
        FrameContext.objects) and, with_regions, their embeddings."""
        from pipeline.masks.run import frame_proposals

        hands = self.detector.detect(image)
        proposals = frame_proposals(self.proposer, image, hands, self.p.masks)
        feats = None
        if with_regions:
            feats = self.encoders[0].encode(image, [q.mask for q in proposals]) if proposals else np.zeros((0, 1))
            feats = np.asarray(feats, np.float32).reshape(len(proposals), -1)
        return Perception(hands, proposals, feats)


# ---------------------------------------------------------------------------------------------- on the executor

def perceive_setup(params) -> Perceiver:
    return Perceiver(params)


def perceive_shard(perceiver: Perceiver, payload: tuple[list[np.ndarray], bool]) -> list[tuple]:
    images, with_regions = payload
    return [pack(perceiver.perceive(image, with_regions)) for image in images]


def pack(seen: Perception) -> tuple:
    props = [(rle.encode(q.mask), q.score, q.kind, q.side, q.hand_id) for q in seen.proposals]
    return seen.hands, props, seen.features


def unpack(packed: tuple, shape: tuple[int, int]) -> Perception:
    hands, props, feats = packed
    return Perception(hands, [Proposal(rle.decode(r, *shape), score, kind, side, hand_id)
                              for r, score, kind, side, hand_id in props], feats)


def iter_perceptions(items: Iterable[Item], perceiver, params, with_regions: bool
                     ) -> Iterator[tuple[Item, Perception]]:
    """(item, Perception) of `items`, in order: perceived by `perceiver` (anything with .perceive) here, or with
    `common.executor: ray` on actors that build their own Perceiver."""
    if params.common.executor != "ray":
        for item in items:
            yield item, perceiver.perceive(item[1], with_regions)
        return
    from pipeline.executor import ActorPool, Shard, Task, run_shards, shard_id

    rp = params.common.ray
    chunk_size = max(1, rp.workers) * max(1, rp.shard_frames)
    task = Task("perceive", perceive_setup, perceive_shard, (params,), uses_gpu=True)
    it = iter(items)
    with ActorPool(task, params.common) as pool:  # one set of actors (models loaded once) for every chunk
        while chunk := list(islice(it, chunk_size)):
            # a short chunk (a 12-frame eval set) is still spread over every worker
            size = min(rp.shard_frames, -(-len(chunk) // max(1, rp.workers)))
            shards = [Shard(shard_id(i, chunk[a][0], a), ([x[1] for x in chunk[a:a + size]], with_regions),
                            len(chunk[a:a + size]))
                      for i, a in enumerate(range(0, len(chunk), size))]
            results, _ = run_shards(task, shards, params.common, _chunk_key(params, chunk, with_regions), pool)
            packed = [p for shard in results for p in shard]
            for item, p in zip(chunk, packed):
                yield item, unpack(p, item[1].shape[:2])


def _chunk_key(params, chunk: list[Item], with_regions: bool) -> str:
    """The run key of one chunk: perception params and the images' bytes (a resumed run must see the same)."""
    h = hashlib.sha1(perception_key(params).encode())
    for image_id, image, _ in chunk:
        h.update(image_id.encode())
        h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:16] + ("r" if with_regions else "")


def perception_key(params) -> str:
    """sha1 of everything that shapes what Perceiver.perceive returns, apart from the image."""
    from pipeline.executor import run_key
    from pipeline.sharded import common_key

    return run_key("perceive", [params.hands, params.masks, params.embed, common_key(params.common)], [])


def image_sha1(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- stage `perceive`

HANDS_FILE, MASKS_FILE, FEATURES_FILE = "hands.parquet", "masks.parquet", "features.h5"


def write_perception(out: Path, seen: list[tuple[str, str, Perception]], key: str) -> None:
    """Write (image_id, image sha1, Perception with features) of every image into `out` (a temp dir)."""
    from pipeline.hands import hands_to_rows
    from pipeline.masks.common import proposals_to_rows

    hands = [r for iid, _, s in seen for r in hands_to_rows(iid, s.hands)]
    masks = [r for iid, _, s in seen for r in proposals_to_rows(iid, s.proposals, "perceive")]
    dims = {s.features.shape[1] for _, _, s in seen if s.features is not None and len(s.proposals)}
    dim = dims.pop() if len(dims) == 1 else 1
    feats = [np.asarray(s.features, np.float32).reshape(len(s.proposals), dim) if len(s.proposals)
             else np.zeros((0, dim), np.float32) for _, _, s in seen]
    meta = {"perception_key": key, "images": json.dumps({iid: sha for iid, sha, _ in seen})}
    write_table(pd.DataFrame(hands, columns=HANDS.columns), HANDS, out / HANDS_FILE, meta)
    write_table(pd.DataFrame(masks, columns=MASKS.columns), MASKS, out / MASKS_FILE, meta)
    with atomic_path(out / FEATURES_FILE, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=np.concatenate(feats) if feats else np.zeros((0, dim), np.float32))
        f.attrs.update(schema_name=PERCEPTION_FEATURES.name, schema_version=PERCEPTION_FEATURES.version,
                       perception_key=key)


@dataclass
class PerceptionCache:
    """ROOT/perceive read back: Perception of an image when its id, pixels and the perception key all match. Masks
    stay RLE until an image is asked for (an eval set's dense masks would not fit in memory at once)."""
    key: str
    images: dict[str, str]
    packed: dict[str, tuple[tuple, tuple[int, int]]]  # image_id -> (pack() tuple, (height, width))

    def missing(self, images: Iterable[tuple[str, np.ndarray]], key: str) -> list[str]:
        """Ids of `images` this cache cannot stand for (all of them when it was made with other params)."""
        return [iid for iid, image in images
                if key != self.key or iid not in self.packed or self.images.get(iid) != image_sha1(image)]

    def perception(self, image_id: str) -> Perception:
        packed, shape = self.packed[image_id]
        return unpack(packed, shape)


def load_perception(directory: str | Path) -> PerceptionCache:
    """Read ROOT/perceive; a missing, foreign or inconsistent file is a WishError."""
    from pipeline.hands import rows_to_hands

    d = Path(directory)
    hands, masks = read_table(d / HANDS_FILE, HANDS), read_table(d / MASKS_FILE, MASKS)
    meta = table_meta(d / MASKS_FILE)
    try:
        with h5py.File(d / FEATURES_FILE, "r") as f:
            h5_check(f, PERCEPTION_FEATURES, d / FEATURES_FILE)
            feats, fkey = f["features"][()], str(f.attrs.get("perception_key"))
    except OSError as e:
        raise WishError(d / FEATURES_FILE, f"not a readable HDF5 file: {e}") from e
    if len(feats) != len(masks) or fkey != meta.get("perception_key"):
        raise WishError(d / FEATURES_FILE, f"{len(feats)} feature rows for {len(masks)} masks, or another run's file")
    images = json.loads(meta.get("images", "{}"))
    packed, start = {}, 0
    hand_groups = dict(tuple(hands.groupby("frame_id", sort=False)))
    mask_groups = dict(tuple(masks.groupby("frame_id", sort=False)))
    for iid in images:  # masks.parquet holds the images in this (their write) order
        g = mask_groups.get(iid, masks.iloc[:0])
        hg = hand_groups.get(iid)
        props = list(zip(g["rle"], g["score"].astype(float), g["kind"], g["side"], g["hand_id"].astype(int)))
        shape = (int(g["height"].iloc[0]), int(g["width"].iloc[0])) if len(g) else (0, 0)
        packed[iid] = ((rows_to_hands(hg) if hg is not None else [], props,
                        feats[start:start + len(g)].astype(np.float32)), shape)
        start += len(g)
    return PerceptionCache(meta.get("perception_key", ""), images, packed)


def perceive_evalset(es, perceiver, params, progress: bool = True) -> list[tuple[str, str, Perception]]:
    """(image_id, image sha1, Perception with region embeddings) of every frame of an opened eval set."""
    from tqdm import tqdm

    items = ((f.image_id, es.image(f), None) for f in es.frames)
    return [(iid, image_sha1(image), seen) for (iid, image, _), seen in
            tqdm(iter_perceptions(items, perceiver, params, True), desc="perceive", unit="frame", total=len(es.frames),
                 disable=not progress)]


def usable_perception(directory: str | Path, es, params) -> tuple[PerceptionCache | None, str]:
    """Stage `perceive`'s output when it stands for every frame of `es` with these params, else (None, why)."""
    d = Path(directory)
    if not (d / MASKS_FILE).is_file():
        return None, f"no {d}: perceiving the eval frames here"
    cache = load_perception(d)
    missing = cache.missing(((f.image_id, es.image(f)) for f in es.frames), perception_key(params))
    if missing:
        return None, f"{d} does not match {len(missing)} of {len(es.frames)} eval frames or these params: perceiving here"
    return cache, f"perception of {len(es.frames)} eval frames from {d}"

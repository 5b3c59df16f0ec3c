"""Content-keyed HDF5 caches of region and text embeddings (artifacts/embed/regions.h5, texts.h5).

A row's key is the sha1 of what was encoded plus the encoder's `weights_id`, so a cache made by another
backend, other weights or other preprocessing can never be mistaken for this one: its keys simply miss.
Files carry attrs schema_name, schema_version, backend, weights_id, params_hash, dim; features are float16.

    feats = lookup_regions("artifacts/embed/regions.h5", masks.frame_id, masks.rle)   # (N, D) float32
    tfeats = lookup_texts("artifacts/embed/texts.h5", phrases.text_left)             # (M, D') float32
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from pipeline.errors import WishError
from pipeline.io import atomic_path, h5_check
from pipeline.schemas import REGION_EMBEDDINGS, TEXT_EMBEDDINGS, H5Schema

KEY_DTYPE = "S40"  # sha1 hex digest


def region_key(frame_id: str, rle: str, weights_id: str) -> str:
    """Key of one region: which frame, which pixels (COCO RLE counts), which encoder."""
    return _sha1("region", weights_id, frame_id, rle)


def text_key(text: str, weights_id: str) -> str:
    return _sha1("text", weights_id, text)


def _sha1(*parts: str) -> str:
    # NUL separators: no two different part lists hash the same concatenation
    return hashlib.sha1("\0".join(parts).encode("utf-8")).hexdigest()


@dataclass
class Cache:
    """An embedding file's content in memory: keys (N,), features (N, D) float16, optional texts, attrs."""
    keys: list[str]
    features: np.ndarray
    attrs: dict = field(default_factory=dict)
    texts: list[str] | None = None

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


def write_cache(path: str | Path, cache: Cache, schema: H5Schema) -> Path:
    """Write atomically: a temp file next to `path`, renamed over it only when complete."""
    feats = np.asarray(cache.features, dtype=np.float16)
    if feats.ndim != 2 or feats.shape[0] != len(cache.keys):
        raise ValueError(f"features {feats.shape} do not fit {len(cache.keys)} keys")
    attrs = {**cache.attrs, "schema_name": schema.name, "schema_version": schema.version, "dim": feats.shape[1]}
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("keys", data=np.array(cache.keys, dtype=KEY_DTYPE))
            f.create_dataset("features", data=feats)
            if "texts" in schema.datasets:
                f.create_dataset("texts", data=list(cache.texts or []), dtype=h5py.string_dtype("utf-8"))
            for k, v in attrs.items():
                f.attrs[k] = v
    return Path(path)


def read_cache(path: str | Path, schema: H5Schema) -> Cache:
    """Read and validate a cache file; anything wrong (missing, corrupt, foreign schema) is a WishError."""
    path = Path(path)
    if not path.is_file():
        raise WishError(path, f"missing {schema.name} artifact (run the embed stage)")
    try:
        with h5py.File(path, "r") as f:
            h5_check(f, schema, path)
            keys = [k.decode("ascii") for k in f["keys"][()]]
            feats = f["features"][()]
            texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in f["texts"][()]] if "texts" in f else None
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError, ValueError, UnicodeDecodeError) as e:
        raise WishError(path, f"not a readable {schema.name} HDF5 file: {e}") from e
    _check_shapes(path, keys, feats, texts, attrs)
    return Cache(keys, feats, attrs, texts)


def _check_shapes(path: Path, keys: list[str], feats: np.ndarray, texts: list[str] | None, attrs: dict) -> None:
    if feats.ndim != 2 or feats.shape[0] != len(keys) or (texts is not None and len(texts) != len(keys)):
        raise WishError(path, f"inconsistent datasets: {len(keys)} keys, features {feats.shape}")
    if int(attrs.get("dim", -1)) != feats.shape[1]:
        raise WishError(path, f"attr dim={attrs.get('dim')} but features have {feats.shape[1]} columns")


def reusable(path: str | Path, schema: H5Schema, weights_id: str) -> tuple[Cache | None, str]:
    """An existing cache that may seed a new run, or (None, why not). Never trusts a file it cannot validate."""
    path = Path(path)
    if not path.exists():
        return None, "no previous cache"
    try:
        cache = read_cache(path, schema)
    except WishError as e:
        return None, f"previous cache ignored and rebuilt ({e.problem})"
    if cache.attrs.get("weights_id") != weights_id:
        return None, f"previous cache is from {cache.attrs.get('weights_id')!r}, rebuilt for {weights_id!r}"
    return cache, f"reusing {len(cache.keys)} cached rows"


def lookup(path: str | Path, schema: H5Schema, items: list, key_of, describe) -> np.ndarray:
    """Features (float32) of `items` in order, keys computed with the file's own weights_id.

    A missing key is an error naming the file and the item: the cache is stale for these inputs.
    """
    cache = read_cache(path, schema)
    weights_id = str(cache.attrs.get("weights_id", ""))
    index = cache.index()
    rows = []
    for item in items:
        key = key_of(item, weights_id)
        if key not in index:
            raise WishError(path, f"no embedding for {describe(item)} (stale cache: re-run the embed stage)")
        rows.append(index[key])
    feats = cache.features[np.asarray(rows, dtype=np.int64)].astype(np.float32)
    return feats.reshape(len(rows), cache.features.shape[1])


def lookup_regions(path: str | Path, frame_ids: Iterable[str], rles: Iterable[str]) -> np.ndarray:
    """Embeddings of masks.parquet rows (frame_id, rle), (N, D) float32."""
    items = list(zip(map(str, frame_ids), map(str, rles)))
    return lookup(path, REGION_EMBEDDINGS, items, lambda it, w: region_key(it[0], it[1], w),
                  lambda it: f"a region of frame {it[0]}")


def lookup_texts(path: str | Path, texts: Iterable[str]) -> np.ndarray:
    """Embeddings of texts, (M, D') float32."""
    return lookup(path, TEXT_EMBEDDINGS, [str(t) for t in texts], text_key, repr)

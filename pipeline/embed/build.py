"""What the embed stage computes: every region of masks.parquet and every phrase text, reusing cached rows.

Reuse is by content key (pipeline.embed.cache), so re-running with more frames encodes only the new regions.
The written cache holds exactly the current inputs' rows, in input order: the artifact depends on the
inputs and params only, never on what an earlier run happened to cache.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import rle
from pipeline.embed.cache import Cache, region_key, text_key
from pipeline.errors import WishError
from pipeline.io import read_image

TEXT_COLUMNS = ("text_left", "text_right", "text_none")


def params_hash(section) -> str:
    return hashlib.sha1(json.dumps(section.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


def phrase_texts(phrases: pd.DataFrame) -> list[str]:
    """Every distinct non-empty text of the phrase templates, sorted (a stable row order)."""
    texts = set()
    for col in TEXT_COLUMNS:
        texts |= {str(t) for t in phrases[col].dropna() if str(t).strip()}
    return sorted(texts)


def _reuse(keys: list[str], previous: Cache | None) -> dict[str, np.ndarray]:
    if previous is None:
        return {}
    index = previous.index()
    return {k: previous.features[index[k]] for k in keys if k in index}


def _assemble(keys: list[str], found: dict[str, np.ndarray], dim: int) -> np.ndarray:
    out = np.zeros((len(keys), dim), dtype=np.float16)
    for i, k in enumerate(keys):
        out[i] = found[k]
    return out


def embed_texts(encoder, texts: list[str], previous: Cache | None, attrs: dict) -> tuple[Cache, int]:
    """Cache of `texts` (distinct) and how many had to be encoded."""
    keys = [text_key(t, encoder.weights_id) for t in texts]
    found = _reuse(keys, previous)
    todo = [(k, t) for k, t in zip(keys, texts) if k not in found]
    if todo:
        feats = encoder.encode([t for _, t in todo])
        found.update({k: f for (k, _), f in zip(todo, feats)})
    return Cache(keys, _assemble(keys, found, encoder.dim), attrs, list(texts)), len(todo)


def embed_regions(encoder, frames: pd.DataFrame, masks: pd.DataFrame, frames_dir: Path,
                  previous: Cache | None, attrs: dict) -> tuple[Cache, int]:
    """Cache of every distinct region in `masks` (masks.parquet order) and how many had to be encoded.

    Work is grouped by frame so each image is read once."""
    masks = masks.assign(_key=[region_key(f, r, encoder.weights_id) for f, r in zip(masks["frame_id"], masks["rle"])])
    keys = list(dict.fromkeys(masks["_key"]))
    found = _reuse(keys, previous)
    todo = masks[~masks["_key"].isin(found)].drop_duplicates("_key")
    paths = dict(zip(frames["frame_id"], frames["image_path"]))
    for frame_id, rows in tqdm(todo.groupby("frame_id", sort=True), desc="embed regions", unit="frame"):
        if frame_id not in paths:
            raise WishError(None, f"masks.parquet names frame {frame_id!r}, which frames.parquet does not list")
        image = read_image(frames_dir / paths[frame_id])
        found.update(zip(rows["_key"], encoder.encode(image, _decode(rows, image, frames_dir / paths[frame_id]))))
    return Cache(keys, _assemble(keys, found, encoder.dim), attrs), len(todo)


def _decode(rows: pd.DataFrame, image: np.ndarray, image_path: Path) -> list[np.ndarray]:
    h, w = image.shape[:2]
    if not ((rows["height"] == h) & (rows["width"] == w)).all():
        raise WishError(image_path, f"image is {h}x{w} but masks.parquet has masks of another size for it")
    return [rle.decode(r, h, w) for r in rows["rle"]]

"""Every artifact's schema, in one place: pyarrow schemas for Parquet, dataset lists for HDF5.

Bump a schema's version whenever its meaning changes; readers refuse other versions, so a stale artifact
fails with a clear message instead of being misread.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.errors import WishError

STR, I32, I64, F32, F64, BOOL = pa.string(), pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.bool_()


@dataclass(frozen=True)
class ArtifactSchema:
    name: str
    version: int
    schema: pa.Schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def metadata(self, extra: dict | None = None) -> dict[bytes, bytes]:
        meta = {"schema_name": self.name, "schema_version": str(self.version), **(extra or {})}
        return {k.encode(): str(v).encode() for k, v in meta.items()}

    def to_table(self, df: pd.DataFrame, extra_meta: dict | None = None) -> pa.Table:
        missing = [c for c in self.columns if c not in df.columns]
        unexpected = [c for c in df.columns if c not in self.columns]
        if missing or unexpected:
            raise WishError(None, f"{self.name}: frame does not match schema (missing {missing}, unexpected {unexpected})")
        table = pa.Table.from_pandas(df[self.columns], schema=self.schema, preserve_index=False)
        return table.replace_schema_metadata(self.metadata(extra_meta))

    def check(self, table: pa.Table, path: str | Path) -> None:
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        name, version = meta.get("schema_name"), meta.get("schema_version")
        if name != self.name or version != str(self.version):
            raise WishError(path, f"expected artifact {self.name} v{self.version}, found {name} v{version}")
        have = {f.name: f.type for f in table.schema}
        bad = [f"{f.name} ({f.type})" for f in self.schema if have.get(f.name) != f.type]
        if bad:
            raise WishError(path, f"{self.name}: missing or mistyped columns {bad}")


@dataclass(frozen=True)
class H5Schema:
    name: str
    version: int
    datasets: tuple[str, ...] = field(default_factory=tuple)


def _s(name: str, version: int, *fields: tuple[str, pa.DataType]) -> ArtifactSchema:
    return ArtifactSchema(name, version, pa.schema([pa.field(n, t) for n, t in fields]))


# frames: one row per decoded frame. split: train | val (eval videos are never written).
FRAMES = _s(
    "wish.frames", 1,
    ("frame_id", STR), ("video_id", STR), ("source", STR), ("clip_index", I32), ("epic_frame", I64),
    ("time_s", F64), ("image_path", STR), ("width", I32), ("height", I32),
    ("narration_ids", pa.list_(STR)), ("split", STR),
)

# nouns: one row per noun phrase of a narration; hand = explicit hand mention (none/left/right/both);
# noun_class/noun_key = EPIC noun class (v2 taxonomy) or -1/"" when unknown; source = spacy | epic_noun (fallback).
PHRASES = _s(
    "wish.phrases", 1,
    ("narration_id", STR), ("video_id", STR), ("narration", STR), ("phrase_idx", I32), ("phrase", STR),
    ("head_lemma", STR), ("noun_class", I32), ("noun_key", STR), ("hand", STR), ("source", STR),
    ("text_left", STR), ("text_right", STR), ("text_none", STR),
)

# hands: one row per detected hand. Box in pixels of the stored frame; landmarks = 21 x (x, y) in pixels.
HANDS = _s(
    "wish.hands", 1,
    ("frame_id", STR), ("hand_id", I32), ("side", STR), ("side_model", STR), ("side_model_score", F32),
    ("side_position", STR), ("score", F32), ("x0", F32), ("y0", F32), ("x1", F32), ("y1", F32),
    ("landmarks", pa.list_(F32)), ("backend", STR),
)

# masks: object proposals and hand masks as COCO RLE (pycocotools, counts as utf-8 string).
MASKS = _s(
    "wish.masks", 1,
    ("frame_id", STR), ("mask_id", I32), ("kind", STR), ("side", STR), ("hand_id", I32),
    ("height", I32), ("width", I32), ("rle", STR), ("x0", F32), ("y0", F32), ("x1", F32), ("y1", F32),
    ("area", I64), ("score", F32), ("backend", STR),
)

# pseudolabel: one row per (frame, hand side). mask_id = -1 means "holds nothing". candidate_ids/_scores: every
# region the hand could hold and the rule's log-score for it (Stage 2's soft targets; empty without candidates).
PSEUDOLABELS = _s(
    "wish.pseudolabels", 2,
    ("frame_id", STR), ("side", STR), ("mask_id", I32), ("contact_score", F32), ("match_score", F32),
    ("label", BOOL), ("narration_id", STR), ("phrase", STR), ("motion_score", F32), ("source", STR),
    ("candidate_ids", pa.list_(I32)), ("candidate_scores", pa.list_(F32)),
)

# predictions (predict/score): one row per (image, method, hand side). method: "wish" or a baseline name.
# mask_id indexes the frame's object proposals (-1: holds nothing); label = EgoHOS id the object was drawn
# with (3/4/5, 0 if none); RLEs (COCO, "" if none) are at height x width of the image.
PREDICTIONS = _s(
    "wish.predictions", 2,
    ("image_id", STR), ("method", STR), ("side", STR), ("hand_found", BOOL), ("mask_id", I32),
    ("contact_prob", F32), ("match_prob", F32), ("holds", BOOL), ("label", I32), ("object_rle", STR),
    ("hand_rle", STR), ("height", I32), ("width", I32),
)

# responsibility: per (frame, hand side, proposal) mean responsibility of that hand inside the proposal.
MOTION_SCORES = _s(
    "wish.motion_scores", 1,
    ("frame_id", STR), ("side", STR), ("mask_id", I32), ("motion_score", F32), ("hand_motion", F32),
    ("status", STR),
)

# HDF5 caches. keys: content hashes (see pipeline.embed.cache); features: float16 (N, D).
REGION_EMBEDDINGS = H5Schema("wish.region_embeddings", 1, ("keys", "features"))
# perceive: float32 region embeddings of the eval frames, one row per row of perceive/masks.parquet, same order.
PERCEPTION_FEATURES = H5Schema("wish.perception_features", 1, ("features",))
TEXT_EMBEDDINGS = H5Schema("wish.text_embeddings", 1, ("keys", "texts", "features"))
# responsibility: maps uint8 (N, 2, Hmax, Wmax) = round(255 * p), left then right, zero-padded; shapes (N, 2) = each
# frame's (h, w) at work resolution. attrs: temperature, offsets, flow, camera_compensation, work_side.
RESPONSIBILITY_MAPS = H5Schema("wish.responsibility_maps", 1, ("frame_ids", "maps", "shapes"))

PARQUET_SCHEMAS = {s.name: s for s in (FRAMES, PHRASES, HANDS, MASKS, PSEUDOLABELS, PREDICTIONS, MOTION_SCORES)}
H5_SCHEMAS = {s.name: s for s in (REGION_EMBEDDINGS, TEXT_EMBEDDINGS, RESPONSIBILITY_MAPS)}

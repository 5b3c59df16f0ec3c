"""Narration-free inference on any images: hands → proposals (+ hand masks) → region embeddings → FrameRegions
→ heads → EgoHOS label map (composition rule in pipeline.labelmap).

    models = build_models(params, root)               # trained artifacts under ROOT/{align,heads}
    for image_id, image in iter_inputs(path, ...):    # folder of images, eval-format dir or video file
        ctx = models.context(image_id, image)
        decisions = pipeline.score_methods.METHODS["wish"](ctx, models, params)   # {side: Decision}

Everything learned is reached through `Models`, so tests (and other backends) can swap in their own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from pipeline import rle
from pipeline.errors import WishError
from pipeline.frames import VIDEO_SUFFIXES
from pipeline.labelmap import Decision
from pipeline.perceive import Perception, Perceiver
from pipeline.types import SIDES, Hand, Proposal

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class FrameContext:
    """Everything a method may look at for one image. `objects` are the object proposals, ranked; mask_ids in
    decisions index this list. `regions` is the FrameRegions of the learned parts (None if not built)."""
    image_id: str
    image: np.ndarray
    hands: list[Hand]
    hand_masks: dict[str, np.ndarray]
    objects: list[np.ndarray]
    regions: object | None = None
    # the frame's narrations (eval-set narrations.csv rows); only narration-based baselines read them
    narrations: pd.DataFrame = field(default_factory=pd.DataFrame)
    # the GT label map when scoring; only the oracle ceilings (score_methods.NEEDS_GT) read it
    gt: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[:2]

    def hand(self, side: str) -> Hand | None:
        same = [h for h in self.hands if h.side == side]
        return max(same, key=lambda h: h.score) if same else None


# ---------------------------------------------------------------------------------------------- inputs


def iter_inputs(path: str | Path, stride: int = 10, max_side: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """(image_id, RGB image) from an eval-format dir, a folder of images or a video file."""
    path = Path(path)
    if path.is_dir() and (path / "manifest.csv").is_file():
        from pipeline.data.evalset import load_evalset

        es = load_evalset(path)
        return ((f.image_id, es.image(f)) for f in es.frames)
    if path.is_dir():
        return _iter_folder(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _iter_video(path, stride, max_side)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        from pipeline.io import read_image

        return iter([(path.stem, read_image(path))])
    raise WishError(path, "input must be an image, a folder of images, an eval-format dir or a video file")


def _iter_folder(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    from pipeline.io import read_image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise WishError(path, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return ((p.stem, read_image(p)) for p in files)


def _iter_video(path: Path, stride: int, max_side: int) -> Iterator[tuple[str, np.ndarray]]:
    import cv2

    from pipeline.masks.common import work_image

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise WishError(path, "not a readable video")
    index, found = 0, False
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % stride == 0:
                found = True
                yield f"{path.stem}_frame_{index:06d}", work_image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), max_side)[0]
            index += 1
    finally:
        cap.release()
    if not found:
        raise WishError(path, "video has no decodable frames")


# ---------------------------------------------------------------------------------------------- models


class Models:
    """The trained system, built lazily so a method only loads what it uses (the nearest-proposal baseline
    needs no embeddings, heads or adapters)."""

    def __init__(self, params, root: str | Path):
        self.p, self.root = params, Path(root)
        self._narrations: dict[tuple, list] = {}

    @cached_property
    def perceiver(self) -> Perceiver:
        return Perceiver(self.p)

    @property
    def encoders(self):
        return self.perceiver.encoders

    @cached_property
    def heads(self):
        from pipeline.heads import load_heads

        return load_heads(self.root / "heads" / "heads.pt")

    @cached_property
    def adapters(self):
        from pipeline.align import load_adapters

        return load_adapters(self.root / "align" / "adapters.pt")

    def context(self, image_id: str, image: np.ndarray, narrations: pd.DataFrame | None = None,
                with_regions: bool = True) -> FrameContext:
        return self.assemble(image_id, image, self.perceive(image, with_regions), narrations)

    def perceive(self, image: np.ndarray, with_regions: bool = True) -> Perception:
        return self.perceiver.perceive(image, with_regions)

    def assemble(self, image_id: str, image: np.ndarray, seen: Perception,
                 narrations: pd.DataFrame | None = None) -> FrameContext:
        """The FrameContext of a perceived image (here, on an executor worker or from stage `perceive`: pipeline/perceive.py)."""
        from pipeline.regions import FrameRegions

        objects = [q.mask for q in seen.proposals if q.kind == "object"]
        ctx = FrameContext(image_id, image, seen.hands, _hand_masks_by_side(seen.hands, seen.proposals), objects,
                           narrations=pd.DataFrame() if narrations is None else narrations)
        if seen.features is not None:
            h, w = ctx.shape
            ctx.regions = FrameRegions.from_proposals(image_id, h, w, seen.hands, seen.proposals, seen.features)
        return ctx

    def text_features(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoders[1].encode(texts), np.float32)

    @cached_property
    def phrase_extractor(self):
        from pipeline import nouns

        n = self.p.nouns
        return nouns.PhraseExtractor(nouns.load_spacy(n.spacy_model), nouns.load_noun_taxonomy(n.noun_classes_csv),
                                     nouns.load_verb_lexicon(n.verb_classes_csv), n.imperative)

    def narration_texts(self, narrations: pd.DataFrame) -> list:
        """The narrations' noun phrases with hand-templated text features, built as the nouns stage builds
        them (pipeline.align.NarrationTexts, one per narration)."""
        if narrations.empty:
            return []
        # Several methods (baseline_narration, pseudolabel, pseudolabel_priors) read the same frame's narrations:
        # parse and encode them once (spaCy + MiniLM were ~10% of `wish score`).
        key = (tuple(narrations.columns), tuple(map(tuple, narrations.astype(str).to_numpy().tolist())))
        if key not in self._narrations:
            self._narrations.clear()  # frames come one at a time: keep only the current frame's
            self._narrations[key] = self._narration_texts(narrations)
        return list(self._narrations[key])

    def _narration_texts(self, narrations: pd.DataFrame) -> list:
        from pipeline.align import narration_texts
        from pipeline.nouns import build_phrases

        n = self.p.nouns
        templates = {"left": n.template_left, "right": n.template_right, "none": n.template_none}
        phrases, _ = build_phrases(narrations, self.phrase_extractor, templates)
        return list(narration_texts(phrases, self.text_features).values()) if len(phrases) else []


def _hand_masks_by_side(hands: list[Hand], proposals: list[Proposal]) -> dict[str, np.ndarray]:
    """One mask per side: the best-scoring hand of that side (one object per hand is the method's premise)."""
    out = {}
    by_id = {q.hand_id: q.mask for q in proposals if q.kind == "hand"}
    for side in SIDES:
        same = sorted((h for h in hands if h.side == side and h.hand_id in by_id), key=lambda h: -h.score)
        if same:
            out[side] = by_id[same[0].hand_id]
    return out


def build_models(params, root: str | Path) -> Models:
    return Models(params, root)


# ---------------------------------------------------------------------------------------------- outputs


def prediction_rows(ctx: FrameContext, method: str, decisions: dict[str, Decision], label_map: np.ndarray) -> list[dict]:
    """PREDICTIONS rows, one per side, for one frame and method."""
    h, w = ctx.shape
    rows = []
    for side in SIDES:
        d = decisions.get(side, Decision(side, False))
        drawn = np.unique(label_map[ctx.objects[d.mask_id]]) if d.holds else np.array([], np.uint8)
        label = int(max((v for v in drawn if v >= 3), default=0))
        rows.append(dict(
            image_id=ctx.image_id, method=method, side=side, hand_found=bool(d.hand_found), mask_id=int(d.mask_id),
            contact_prob=_f(d.contact_prob), match_prob=_f(d.match_prob), holds=d.holds, label=label,
            object_rle=rle.encode(ctx.objects[d.mask_id]) if d.holds else "",
            hand_rle=rle.encode(ctx.hand_masks[side]) if side in ctx.hand_masks else "", height=h, width=w))
    return rows


def _f(v: float) -> float:
    return float("nan") if v is None or math.isnan(v) else float(v)


def predictions_frame(rows: list[dict]) -> pd.DataFrame:
    from pipeline.schemas import PREDICTIONS

    return pd.DataFrame(rows, columns=PREDICTIONS.columns)

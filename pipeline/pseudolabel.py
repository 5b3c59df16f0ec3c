"""Pseudo-labels: per frame and hand side, the region that hand holds, or none.

Every source starts from the geometric prior (pipeline.priors): only regions next to the hand, not the hand
itself, can be held, and a size / contact / whole-object prior scores them. Then (pseudolabel.source):
  priors:    each detected hand with a candidate holds its best-prior candidate (no narration: what geometry
             alone gives);
  narration: the frame's narrations decide WHICH hand holds (a phrase naming a hand goes to it, "both" to both,
             a phrase naming none to the detected side whose best candidate matches it better: a narrated
             object is held by one hand) and, through the Stage 1 adapters, which candidate (z-scored cosine
             added to the prior with text_weight); a hand no phrase went to is "none";
  motion:    COHESIV: a hand holds when its best candidate's responsibility exceeds motion_threshold; the
             z-scored motion score is added to the prior with fuse_weight;
  fused:     narration and motion scores both added; a hand holds when either says so.
Temporal consistency (frames of one clip in order; pipeline.pseudolabel_track): per hand, the picks of consecutive
labelled frames are chosen jointly (Viterbi) with a bonus for appearance similarity (temporal_weight) and for
overlap after following the hand's motion (link_iou_weight) of consecutive picks.

contact_score: softmax probability of the chosen region among the hand's candidates (a confidence);
match_score: the chosen phrase's cosine with the chosen region (NaN without narration);
candidate_ids / candidate_scores: every candidate of the hand and its score (the rule's belief, which Stage 2 can
learn as a soft target instead of the one pick).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pipeline.align import Adapters, NarrationTexts
from pipeline.priors import containment, prior_scores
from pipeline.pseudolabel_track import temporal_picks
from pipeline.regions import FrameRegions
from pipeline.types import SIDES

ROW_KEYS = ("frame_id", "side", "mask_id", "contact_score", "match_score", "label", "narration_id", "phrase",
            "motion_score", "source", "candidate_ids", "candidate_scores")
TEXT_SOURCES, MOTION_SOURCES = {"narration", "fused"}, {"motion", "fused"}
# Ego4D's actor markers ("#C C picks the knife"): the verb follows them.
_ACTOR_WORDS = {"#c", "c"}


def narration_verb(text: str) -> str:
    """The narration's leading verb, stemmed ("checking" -> "check"): EPIC narrations are verb-first imperatives
    ("open fridge"), Ego4D's start with the camera wearer's marker, which is skipped."""
    words = [w for w in re.findall(r"[#\w]+", str(text).lower()) if w not in _ACTOR_WORDS]
    return re.sub(r"(ing|es|s|ed)$", "", words[0]) if words else ""


def holding_narrations(narrations: pd.DataFrame, no_hold_verbs: list[str]) -> pd.Series:
    """(N,) bool: does the narration say a hand holds its object? Not when its verb is one of no_hold_verbs
    ("look at the pan", "check the oven": the object is named but nothing is in the hand)."""
    stems = {narration_verb(v) for v in no_hold_verbs}
    return ~narrations["narration"].map(lambda t: narration_verb(t) in stems).astype(bool)


def _row(fr: FrameRegions, side: str, source: str, idx: int = -1, contact: float = np.nan, match: float = np.nan,
         nid: str = "", phrase: str = "", motion: float = np.nan, score: np.ndarray | None = None) -> dict:
    mask_id = int(fr.mask_ids[idx]) if idx >= 0 else -1
    ok = np.isfinite(score) if score is not None else np.zeros(fr.n_regions, bool)  # -inf: not a candidate
    return dict(frame_id=fr.frame_id, side=side, mask_id=mask_id, contact_score=float(contact),
                match_score=float(match), label=idx >= 0, narration_id=nid, phrase=phrase, motion_score=float(motion),
                source=source, candidate_ids=np.asarray(fr.mask_ids, np.int64)[ok].tolist(),
                candidate_scores=np.asarray(score, np.float64)[ok].tolist() if score is not None else [])


def _z(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """z-score over the candidates (NaN -> the candidates' minimum); zeros elsewhere."""
    out = np.zeros(len(x), np.float32)
    v = np.asarray(x, np.float32)[ok]
    if not len(v) or not np.isfinite(v).any():
        return out
    v = np.nan_to_num(v, nan=float(np.nanmin(v)))
    out[ok] = (v - v.mean()) / max(float(v.std()), 1e-3)
    return out


def phrase_scores(fr: FrameRegions, texts: list[NarrationTexts], adapters: Adapters) -> list[tuple]:
    """(narration_id, phrase, hand, {side: (R,) cosine}) for every phrase of the frame's narrations."""
    out = []
    for t in texts:
        sims = adapters.pair_scores(fr, t.side_feats())
        for j, (phrase, hand) in enumerate(zip(t.phrases, t.hands)):
            out.append((t.narration_id, phrase, hand, {s: sims[s][:, j] for s in SIDES}))
    return out


def assign_phrases(fr: FrameRegions, scored: list[tuple], prior: dict[str, np.ndarray], text_weight: float,
                   min_score: float) -> dict[str, tuple | None]:
    """{side: (narration_id, phrase, (R,) cosine, (R,) prior + text score) or None}: the phrase each side gets."""
    ok = {s: np.isfinite(prior[s]) for s in SIDES}
    best: dict[str, tuple | None] = {s: None for s in SIDES}
    for nid, phrase, hand, sims in scored:
        mix = {s: np.where(ok[s], prior[s] + text_weight * _z(sims[s], ok[s]), -np.inf) for s in SIDES}
        usable = [s for s in SIDES if ok[s].any() and np.max(np.where(ok[s], sims[s], -np.inf)) >= min_score]
        if hand in ("left", "right"):
            sides = [hand] if hand in usable else []
        elif hand == "both":
            sides = usable
        else:
            sides = [max(usable, key=lambda s: mix[s].max())] if usable else []
        for s in sides:
            if best[s] is None or mix[s].max() > best[s][3].max():
                best[s] = (nid, phrase, sims[s], mix[s])
    return best


def _softmax_at(x: np.ndarray, i: int) -> float:
    ok = np.isfinite(x)
    z = np.exp(x[ok] - x[ok].max())
    return float(np.exp(x[i] - x[ok].max()) / z.sum())


def side_scores(fr: FrameRegions, texts: list[NarrationTexts], adapters: Adapters, params,
                motion: dict[str, np.ndarray] | None = None) -> dict[str, tuple]:
    """{side: (holds?, (R,) score over candidates, -inf elsewhere, narration_id, phrase, (R,) cosine | None)}."""
    contain = containment(fr) if params.part_penalty > 0 else None
    prior = {s: prior_scores(fr, s, params, contain) for s in SIDES}
    if params.prior_weight > 0:
        bias = params.prior_weight * np.log(fr.prior_scores() + 1e-3)
        prior = {s: prior[s] + bias for s in SIDES}
    src = params.source
    narr = (assign_phrases(fr, phrase_scores(fr, texts, adapters), prior, params.text_weight, params.min_score)
            if src in TEXT_SOURCES and texts else {s: None for s in SIDES})
    out = {}
    for s in SIDES:
        ok = np.isfinite(prior[s])
        score, holds = prior[s].copy(), bool(ok.any())
        m = None if motion is None else motion.get(s)
        moving = False
        if src in MOTION_SOURCES and m is not None and np.isfinite(m[ok]).any():
            score = np.where(ok, score + params.fuse_weight * _z(m, ok), -np.inf)
            moving = bool(np.nanmax(np.where(ok, m, np.nan)) > params.motion_threshold)
        if src in TEXT_SOURCES and narr[s] is not None:
            text = np.zeros_like(score)
            text[ok] = narr[s][3][ok] - prior[s][ok]  # the text part of the phrase's mix
            score = np.where(ok, score + text, -np.inf)
        if src == "narration":
            holds = holds and narr[s] is not None
        elif src == "motion":
            holds = holds and moving
        elif src == "fused":
            holds = holds and (narr[s] is not None or moving)
        nid, phrase, cos = narr[s][:3] if narr[s] is not None else ("", "", None)
        out[s] = (holds, score, nid, phrase, cos)
    return out


def pseudolabel_frame(fr: FrameRegions, texts: list[NarrationTexts], adapters: Adapters, params,
                      motion: dict[str, np.ndarray] | None = None, pick: dict[str, int] | None = None,
                      scored: dict[str, tuple] | None = None) -> list[dict]:
    """PSEUDOLABELS rows (one per side) for one frame. texts: the frame's narrations
    (pipeline.align.narration_texts); motion: {side: (R,) motion score aligned with fr.mask_ids, NaN where
    unknown}; pick: {side: region index} to use instead of the frame's own argmax (temporal linking); scored:
    this frame's side_scores when already computed (for the linking)."""
    if fr.n_regions == 0:
        return [_row(fr, s, params.source) for s in SIDES]
    rows = []
    scored = scored if scored is not None else side_scores(fr, texts, adapters, params, motion)
    for s, (holds, score, nid, phrase, cos) in scored.items():
        m = None if motion is None else motion.get(s)
        if not holds:
            rows.append(_row(fr, s, params.source, nid=nid, phrase=phrase, score=score))
            continue
        r = pick[s] if pick and s in pick else int(np.argmax(score))
        rows.append(_row(fr, s, params.source, r, _softmax_at(score, r), np.nan if cos is None else float(cos[r]),
                         nid, phrase, np.nan if m is None else float(m[r]), score))
    return rows


def motion_by_frame(df: pd.DataFrame, frames: dict[str, FrameRegions]) -> dict[str, dict[str, np.ndarray]]:
    """MOTION_SCORES rows -> {frame_id: {side: (R,) aligned with mask_ids, NaN where missing}}."""
    out: dict[str, dict[str, np.ndarray]] = {}
    ok = df[df["status"] == "ok"] if "status" in df else df
    for (fid, side), g in ok.groupby(["frame_id", "side"]):
        fr = frames.get(str(fid))
        if fr is None:
            continue
        vec = np.full(fr.n_regions, np.nan, np.float32)
        for mid, score in zip(g["mask_id"], g["motion_score"]):
            i = fr.index_of(int(mid))
            if i >= 0:
                vec[i] = score
        out.setdefault(str(fid), {})[str(side)] = vec
    return out


def pseudolabel_frames(frames: dict[str, FrameRegions], frame_texts: dict[str, list[NarrationTexts]],
                       adapters: Adapters, params, motion: dict | None = None, progress: bool = False,
                       tracks: list[list[str]] | None = None) -> pd.DataFrame:
    """PSEUDOLABELS rows of every frame; `tracks` (frame ids of each clip in time order) turn on temporal linking."""
    from tqdm import tqdm

    picks: dict[str, dict[str, int]] = {}
    scored: dict[str, dict[str, tuple]] = {}  # side_scores of the linked frames, reused for their rows
    if tracks and (params.temporal_weight > 0 or params.link_iou_weight > 0):
        in_tracks = {f for t in tracks for f in t if frames[f].n_regions}
        scored = {f: side_scores(frames[f], frame_texts.get(f, []), adapters, params,
                                 None if motion is None else motion.get(f)) for f in sorted(in_tracks)}
        picks = temporal_picks(frames, scored, params, tracks)
    rows = []
    for fid in tqdm(sorted(frames), desc="pseudolabel", disable=not progress):
        rows += pseudolabel_frame(frames[fid], frame_texts.get(fid, []), adapters, params,
                                  None if motion is None else motion.get(fid), picks.get(fid), scored.get(fid))
    return pd.DataFrame(rows, columns=list(ROW_KEYS))

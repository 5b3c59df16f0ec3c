"""Pseudo-labels: per frame and hand side, the region that hand holds, or none.

Narration rule (source="narration"), chosen to follow the one-object-per-hand premise of Stage 1:
  1. every phrase of the frame's narrations is scored against every (side, region) pair by the adapters;
  2. a phrase naming a hand ("... with the left hand") goes to that side, "both" to both sides, and a phrase
     naming no hand goes to the detected side whose best region matches it better (the relative rule:
     a narrated object is held by one hand, so the other hand gets no label from that phrase);
  3. a side takes its best-scoring assigned phrase and that phrase's best region; a side with no assigned
     phrase, an undetected hand, or a best cosine below pseudolabel.min_score is "none".
Motion rule (source="motion"): COHESIV's thresholded responsibility: argmax motion_score if > motion_threshold.
Fused rule (source="fused"): per side, z-scored narration similarity (best over phrases) and z-scored motion
score are mixed with weight fuse_weight; the side holds when either rule says it holds.

contact_score: softmax probability of the chosen region among the hand's regions (at the adapters' learned
temperature), a confidence; match_score: the raw cosine of the chosen region with the chosen phrase.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.align import Adapters, NarrationTexts
from pipeline.regions import FrameRegions
from pipeline.types import SIDES

ROW_KEYS = ("frame_id", "side", "mask_id", "contact_score", "match_score", "label", "narration_id", "phrase",
            "motion_score", "source")


def _row(fr: FrameRegions, side: str, source: str, idx: int = -1, contact: float = np.nan, match: float = np.nan,
         nid: str = "", phrase: str = "", motion: float = np.nan) -> dict:
    mask_id = int(fr.mask_ids[idx]) if idx >= 0 else -1
    return dict(frame_id=fr.frame_id, side=side, mask_id=mask_id, contact_score=float(contact),
                match_score=float(match), label=idx >= 0, narration_id=nid, phrase=phrase, motion_score=float(motion),
                source=source)


def phrase_scores(fr: FrameRegions, texts: list[NarrationTexts], adapters: Adapters,
                  prior_weight: float = 0.0) -> list[tuple]:
    """(narration_id, phrase, hand, {side: (R,) score}) for every phrase of the frame's narrations.

    score = cosine + prior_weight * log(prior) / scale: at the adapters' temperature this multiplies the text
    softmax by prior**prior_weight (a product of experts), so a region the narration names AND the proposer
    ranks as hand-held wins over a look-alike far from the hand.
    """
    bias = prior_weight * np.log(fr.prior_scores() + 1e-3) / float(adapters.scale.detach())
    out = []
    for t in texts:
        sims = adapters.pair_scores(fr, t.side_feats())
        for j, (phrase, hand) in enumerate(zip(t.phrases, t.hands)):
            out.append((t.narration_id, phrase, hand, {s: sims[s][:, j] + bias for s in SIDES}))
    return out


def assign_phrases(fr: FrameRegions, scored: list[tuple], min_score: float) -> dict[str, tuple | None]:
    """Step 2-3 of the narration rule: {side: (narration_id, phrase, region index, cosine) or None}."""
    present = [s for s in SIDES if fr.hands[s].present]
    best: dict[str, tuple | None] = {s: None for s in SIDES}
    for nid, phrase, hand, sims in scored:
        if hand in ("left", "right"):
            sides = [hand]
        elif hand == "both":
            sides = list(SIDES)
        else:
            sides = [max(present, key=lambda s: sims[s].max())] if present else []
        for s in sides:
            r = int(np.argmax(sims[s]))
            if fr.hands[s].present and sims[s][r] >= min_score and (best[s] is None or sims[s][r] > best[s][3]):
                best[s] = (nid, phrase, r, float(sims[s][r]))
    return best


def _softmax_at(x: np.ndarray, i: int, scale: float) -> float:
    z = np.exp((x - x.max()) * scale)
    return float(z[i] / z.sum())


def pseudolabel_frame(fr: FrameRegions, texts: list[NarrationTexts], adapters: Adapters, params,
                      motion: dict[str, np.ndarray] | None = None) -> list[dict]:
    """PSEUDOLABELS rows (one per side) for one frame.

    texts: the frame's narrations (pipeline.align.narration_texts); motion: optional {side: (R,) motion score
    aligned with fr.mask_ids, NaN where unknown}; params: PseudolabelParams.
    """
    if fr.n_regions == 0:
        return [_row(fr, s, params.source) for s in SIDES]
    scored = phrase_scores(fr, texts, adapters, params.prior_weight) if texts else []
    narr = assign_phrases(fr, scored, params.min_score)
    scale = float(adapters.scale.detach())
    rows = []
    for s in SIDES:
        m = None if motion is None else motion.get(s)
        if params.source == "motion":
            rows.append(_motion_row(fr, s, m, params.motion_threshold))
        elif params.source == "fused":
            rows.append(_fused_row(fr, s, scored, narr[s], m, params, scale))
        else:
            rows.append(_narration_row(fr, s, scored, narr[s], scale, m))
    return rows


def _narration_row(fr: FrameRegions, s: str, scored: list[tuple], pick: tuple | None, scale: float,
                   motion: np.ndarray | None) -> dict:
    if pick is None:
        return _row(fr, s, "narration")
    nid, phrase, r, cos = pick
    sims = next(sc[s] for n, p, _, sc in scored if n == nid and p == phrase)
    mot = np.nan if motion is None else motion[r]
    return _row(fr, s, "narration", r, _softmax_at(sims, r, scale), cos, nid, phrase, mot)


def _motion_row(fr: FrameRegions, s: str, motion: np.ndarray | None, threshold: float) -> dict:
    if motion is None or not fr.hands[s].present or np.all(np.isnan(motion)):
        return _row(fr, s, "motion")
    r = int(np.nanargmax(motion))
    if motion[r] <= threshold:
        return _row(fr, s, "motion", motion=float(motion[r]))
    return _row(fr, s, "motion", r, float(motion[r]), np.nan, motion=float(motion[r]))


def _z(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(x, nan=np.nanmin(x) if np.isfinite(x).any() else 0.0)
    return (x - x.mean()) / max(float(x.std()), 1e-3)


def _fused_row(fr: FrameRegions, s: str, scored: list[tuple], pick: tuple | None, motion: np.ndarray | None,
               params, scale: float) -> dict:
    usable = motion is not None and fr.hands[s].present and np.isfinite(motion).any()
    if not usable:
        row = _narration_row(fr, s, scored, pick, scale, None)
        return {**row, "source": "fused"}
    text = np.max([sc[s] for *_, sc in scored], axis=0) if scored else np.zeros(fr.n_regions)
    mix = (1 - params.fuse_weight) * _z(text) + params.fuse_weight * _z(motion)
    r = int(np.argmax(mix))
    holds = pick is not None or np.nanmax(motion) > params.motion_threshold
    if not holds:
        return _row(fr, s, "fused", motion=float(np.nanmax(motion)))
    nid, phrase = (pick[0], pick[1]) if pick is not None else ("", "")
    return _row(fr, s, "fused", r, _softmax_at(mix, r, 1.0), float(text[r]), nid, phrase, float(motion[r]))


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
                       adapters: Adapters, params, motion: dict | None = None, progress: bool = False) -> pd.DataFrame:
    from tqdm import tqdm

    rows = []
    for fid in tqdm(sorted(frames), desc="pseudolabel", disable=not progress):
        rows += pseudolabel_frame(frames[fid], frame_texts.get(fid, []), adapters, params,
                                  None if motion is None else motion.get(fid))
    return pd.DataFrame(rows, columns=list(ROW_KEYS))

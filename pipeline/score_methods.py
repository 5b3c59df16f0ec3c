"""The model and its reference methods, each a function (FrameContext, Models, Params) → {side: Decision}, so
all of them are turned into label maps by the same composition rule and scored by the same scorer on the
same frames and proposals.

- ``wish``: the Stage-2 heads decided by heads.rule (default expected_iou: the matching head's distribution,
  decided for the dataset-level IoU, pipeline.expected_iou). Narration-free.
- ``wish_contact_only`` / ``wish_matching_only``: inference-time ablations of the independently trained heads,
  each with its own plain rule (the contact head's calibrated threshold; the matching head's argmax), see
  `_ablate`. Narration-free.
- ``baseline_nearest``: no learning; the proposal nearest to each hand mask's part near the hand (not the
  forearm: pipeline.types.contact_part), "held" if it comes within ``score.nearest_dilation`` × the hand box's
  longer side.
- ``baseline_narration``: the Stage-1 aligned embeddings score the proposals against the frame's own
  narration at test time (uses the eval set's narrations.csv: an upper-ish reference, not a fair competitor).
- ``pseudolabel_priors``: the same rule without narration (geometry priors alone).
- ``oracle_selection``: the ceiling of the choice: per detected hand, the available proposal with the best IoU
  with that hand's GT object (after the hand masks are drawn over it), contact taken from the GT. What a
  method loses below it is lost by choosing, not by perception.
- ``pseudolabel``: WISH without Stage 2, i.e. the pseudo-labels the configured rule (pseudolabel.source) gives
  these frames with their narrations; its scores are the pseudo-label quality.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from pipeline.labelmap import Decision
from pipeline.predict import FrameContext
from pipeline.types import SIDES, contact_part

Method = Callable[[FrameContext, object, object], dict[str, Decision]]


@dataclass(frozen=True)
class MethodSpec:
    """A method and what it needs from Models, so the scorer builds (and checks up front) only that."""
    fn: Method
    regions: bool = True  # FrameRegions (embeddings of every proposal)
    narrations: bool = False  # the frame's own narrations (eval set narrations.csv)
    checkpoints: tuple[str, ...] = ()  # Models attributes that load a trained checkpoint
    gt: bool = False  # reads the ground truth (FrameContext.gt): only `wish evaluate` / `score` can run it


def _absent(side: str) -> Decision:
    return Decision(side, hand_found=False)


# ------------------------------------------------------------------------------------------ nearest proposal


def nearest(ctx: FrameContext, models, params) -> dict[str, Decision]:
    return {side: _nearest_side(ctx, side, params.score) for side in SIDES}


def _nearest_side(ctx: FrameContext, side: str, sp) -> Decision:
    hand = ctx.hand(side)
    if hand is None:
        return _absent(side)
    hand_mask = ctx.hand_masks.get(side)
    if hand_mask is None or not hand_mask.any():
        hand_mask = _box_mask(hand.box, ctx.shape)
    near_hand = contact_part(hand_mask, hand.landmarks, hand.box)  # nearest to the hand, not to the forearm
    reach = sp.nearest_dilation * max(hand.box[2] - hand.box[0], hand.box[3] - hand.box[1])
    dist = cv2.distanceTransform((~near_hand).astype(np.uint8), cv2.DIST_L2, 3)
    best, best_d = -1, math.inf
    for i, obj in enumerate(ctx.objects):
        area = np.count_nonzero(obj)
        if not area or np.count_nonzero(obj & hand_mask) / area > sp.nearest_max_inside_hand:
            continue  # mostly the hand itself
        d = float(dist[obj].min())
        if d < best_d:  # ties keep the better-ranked proposal
            best, best_d = i, d
    touches = best >= 0 and best_d <= reach
    return Decision(side, True, best if touches else -1, contact_prob=float(touches))


def _box_mask(box: tuple[float, float, float, float], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return m


# ------------------------------------------------------------------------------------------ WISH and ablations


def _from_heads(ctx: FrameContext, out: dict) -> dict[str, Decision]:
    """Heads' {side: (mask_id | -1, contact_prob, match_prob)} as Decisions."""
    decisions = {}
    for side in SIDES:
        if ctx.hand(side) is None or side not in out:
            decisions[side] = _absent(side)
            continue
        mask_id, contact, match = out[side]
        decisions[side] = Decision(side, True, int(mask_id), float(contact), float(match))
    return decisions


def wish(ctx: FrameContext, models, params) -> dict[str, Decision]:
    return _from_heads(ctx, models.heads.predict(ctx.regions))


def _ablate(heads, contact: bool, matching: bool):
    """The trained heads with one switched off: they have separate weights and seeds (pipeline.heads), so this
    is the model trained with that head alone, up to the other head's absence at training time."""
    from dataclasses import replace

    from pipeline.errors import WishError
    from pipeline.heads import Heads

    if (contact and heads.contact is None) or (matching and heads.matching is None):
        raise WishError(None, "the trained heads lack the head this ablation keeps (see heads.contact/matching)")
    # each ablation is that head with its own rule: the matching head's argmax (so under heads.rule expected_iou
    # wish_matching_only shows what the decision adds), the contact head with its own threshold
    cfg = replace(heads.cfg, contact=contact, matching=matching, rule="contact" if contact and not matching else
                  "matching" if matching and not contact else heads.cfg.rule)
    if contact and not matching:
        cfg = replace(cfg, contact_threshold=heads.cfg.contact_alone_threshold)  # calibrated for this rule
    return Heads(cfg, heads.contact if contact else None, heads.matching if matching else None)


def wish_contact_only(ctx: FrameContext, models, params) -> dict[str, Decision]:
    return _from_heads(ctx, _ablate(models.heads, True, False).predict(ctx.regions))


def wish_matching_only(ctx: FrameContext, models, params) -> dict[str, Decision]:
    return _from_heads(ctx, _ablate(models.heads, False, True).predict(ctx.regions))


# ------------------------------------------------------------------------------------------ narration-based


def narration(ctx: FrameContext, models, params) -> dict[str, Decision]:
    """Each hand independently takes the (phrase, region) pair the adapters score highest for that side,
    with no one-object-per-hand assignment between the hands; "holds" iff that cosine >= pseudolabel.min_score."""
    texts = models.narration_texts(ctx.narrations)
    fr = ctx.regions
    best = {side: (-np.inf, -1) for side in SIDES}
    for t in texts if fr.n_regions else []:
        sims = models.adapters.pair_scores(fr, t.side_feats())
        for side in SIDES:
            r, j = np.unravel_index(int(np.argmax(sims[side])), sims[side].shape)
            if sims[side][r, j] > best[side][0]:
                best[side] = (float(sims[side][r, j]), int(r))
    out = {}
    for side in SIDES:
        cos, r = best[side]
        if ctx.hand(side) is None:
            out[side] = _absent(side)
            continue
        held = r >= 0 and cos >= params.pseudolabel.min_score
        out[side] = Decision(side, True, int(fr.mask_ids[r]) if held else -1, match_prob=cos if r >= 0 else math.nan)
    return out


def pseudolabel(ctx: FrameContext, models, params, source: str | None = None) -> dict[str, Decision]:
    """Stage-1 pseudo-labels of this frame from its own narrations (WISH without Stage 2), by the configured
    rule (pseudolabel.source). Eval frames are single images without neighbours, so what needs them is
    dropped: motion (fused is priors + narration here, and motion is priors: its holds decision needs motion)
    and temporal linking."""
    from pipeline.pseudolabel import TEXT_SOURCES, holding_narrations, pseudolabel_frame

    source = source or params.pseudolabel.source
    source = "priors" if source == "motion" else source
    pl_params = params.pseudolabel.model_copy(update={"source": source})
    narrs = ctx.narrations
    if source in TEXT_SOURCES and not narrs.empty:
        narrs = narrs[holding_narrations(narrs, params.pseudolabel.no_hold_verbs)]
    texts = models.narration_texts(narrs) if source in TEXT_SOURCES else []
    rows = pseudolabel_frame(ctx.regions, texts, models.adapters if texts else None, pl_params)
    out = {}
    for r in rows:
        side = r["side"]
        found = ctx.hand(side) is not None
        out[side] = Decision(side, found, int(r["mask_id"]) if found else -1, r["contact_score"], r["match_score"])
    return out


def pseudolabel_priors(ctx: FrameContext, models, params) -> dict[str, Decision]:
    """The pseudo-label rule with geometry alone (pseudolabel.source=priors): what the narration adds is the
    difference to ``pseudolabel``."""
    return pseudolabel(ctx, models, params, source="priors")


def oracle_selection(ctx: FrameContext, models, params) -> dict[str, Decision]:
    from pipeline.errors import WishError
    from pipeline.metrics import BOTH, mask_iou

    if ctx.gt is None:
        raise WishError(None, "oracle_selection reads the ground truth: run it with `wish evaluate` or `score`")
    drawn = np.any(list(ctx.hand_masks.values()), axis=0) if ctx.hand_masks else np.zeros(ctx.shape, bool)
    out = {}
    for side, label in (("left", 3), ("right", 4)):
        if ctx.hand(side) is None:
            out[side] = _absent(side)
            continue
        target = (ctx.gt == label) | (ctx.gt == BOTH)
        ious = [mask_iou(o & ~drawn, target) for o in ctx.objects] if target.any() else []
        best = int(np.argmax(ious)) if ious else -1
        held = best >= 0 and ious[best] > 0
        out[side] = Decision(side, True, best if held else -1, contact_prob=float(target.any()),
                             match_prob=float(ious[best]) if held else math.nan)
    return out


# The one list of methods: params (score.methods), `wish predict --method` and the scorer all read it.
SPECS: dict[str, MethodSpec] = {
    "wish": MethodSpec(wish, checkpoints=("heads",)),
    "wish_contact_only": MethodSpec(wish_contact_only, checkpoints=("heads",)),
    "wish_matching_only": MethodSpec(wish_matching_only, checkpoints=("heads",)),
    "baseline_nearest": MethodSpec(nearest, regions=False),
    "baseline_narration": MethodSpec(narration, narrations=True, checkpoints=("adapters",)),
    "pseudolabel": MethodSpec(pseudolabel, narrations=True, checkpoints=("adapters",)),
    "pseudolabel_priors": MethodSpec(pseudolabel_priors),
    "oracle_selection": MethodSpec(oracle_selection, regions=False, gt=True),
}
METHODS: dict[str, Method] = {name: spec.fn for name, spec in SPECS.items()}
NEEDS_REGIONS = {name for name, spec in SPECS.items() if spec.regions}
NEEDS_NARRATIONS = {name for name, spec in SPECS.items() if spec.narrations}
NEEDS_GT = {name for name, spec in SPECS.items() if spec.gt}


def load_checkpoints(models, methods: list[str]) -> None:
    """Load every checkpoint `methods` use now, so a missing or corrupt one fails before the first image."""
    for name in dict.fromkeys(c for m in methods for c in SPECS[m].checkpoints):
        getattr(models, name)

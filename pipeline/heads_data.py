"""Stage 2's training data: one Sample per pseudo-labelled detected hand, padded batches of them, and the two
heads' losses against their (hard or soft) targets. pipeline.heads trains and applies the heads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pipeline.align import pair_inputs
from pipeline.regions import GEOM_DIM, FrameRegions
from pipeline.types import SIDES


@dataclass
class Sample:
    frame: FrameRegions
    side: str
    target: int  # region index, -1 for none
    # the pseudo-label rule's log-score of each region (R,), -inf off its candidates; None: unknown (soft targets)
    rule_scores: np.ndarray | None = None


def _rule_scores(fr: FrameRegions, row) -> np.ndarray | None:
    """A PSEUDOLABELS row's candidate scores aligned with fr's regions (labels from before v2 have none)."""
    ids, scores = getattr(row, "candidate_ids", None), getattr(row, "candidate_scores", None)
    if ids is None or scores is None or len(ids) == 0:
        return None
    out = np.full(fr.n_regions, -np.inf, np.float32)
    for mid, v in zip(ids, scores):
        i = fr.index_of(int(mid))
        if i >= 0:
            out[i] = v
    return out if np.isfinite(out).any() else None


def make_samples(frames: dict[str, FrameRegions], labels: pd.DataFrame, silent_as_none: bool = True) -> list[Sample]:
    """One sample per pseudo-labelled detected hand in a frame with regions.

    silent_as_none=False drops narration rows where no phrase went to this hand: a narration names one object,
    so its silence about the other hand is no evidence that the hand is empty.
    """
    out = []
    for r in labels.itertuples():
        fr = frames.get(r.frame_id)
        if fr is None or fr.n_regions == 0 or not fr.hands[r.side].present:
            continue
        if not silent_as_none and not r.label and r.source == "narration" and not r.narration_id:
            continue
        idx = fr.index_of(int(r.mask_id)) if r.label else -1
        if r.label and idx < 0:
            continue  # the labelled region is not among this frame's regions (stale artifacts)
        out.append(Sample(fr, r.side, idx, _rule_scores(fr, r)))
    return out


def collate(samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Padded (B, R_max) tensors of the samples, region and hand features unit-norm (PairHead's inputs)."""
    r_max = max(s.frame.n_regions for s in samples)
    d = samples[0].frame.features.shape[1]
    b = len(samples)
    obj, geom = torch.zeros(b, r_max, d), torch.zeros(b, r_max, GEOM_DIM)
    rmask = torch.zeros(b, r_max, dtype=torch.bool)
    hand, side = torch.zeros(b, d), torch.zeros(b, 2)
    rule = torch.full((b, r_max), -torch.inf)
    for i, s in enumerate(samples):
        o, h, g = pair_inputs(s.frame)
        k, n = SIDES.index(s.side), s.frame.n_regions
        obj[i, :n], geom[i, :n], rmask[i, :n], hand[i], side[i, k] = o, g[k], True, h[k], 1.0
        if s.rule_scores is not None:
            rule[i, :n] = torch.from_numpy(s.rule_scores)
    target = torch.tensor([s.target for s in samples])
    return dict(obj=F.normalize(obj, dim=-1), hand=F.normalize(hand, dim=-1), geom=geom, side=side, rmask=rmask,
                target=target, rule=rule)


def target_regions(b: dict, n_slots: int, soft: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """(B, n_slots) training targets: one-hot at the pseudo-label (at the "none" slot, last, when n_slots exceeds
    the regions and the hand holds nothing; all zero without that slot). soft = (alpha, temperature): a holding
    hand's target becomes (1 - alpha) one-hot + alpha softmax(rule scores / temperature) over its candidates: the
    rule's pick is one guess among near-ties (fragments of one object, its neighbours), its scores say how sure."""
    target, r = b["target"], b["rmask"].shape[1]
    y = torch.zeros(len(target), n_slots)
    held = target >= 0
    rows = torch.arange(len(target))
    if n_slots > r:
        y[rows, torch.where(held, target, torch.full_like(target, n_slots - 1))] = 1.0
    else:
        y[rows[held], target[held]] = 1.0
    alpha, temperature = soft
    rule = b.get("rule")
    if alpha > 0 and rule is not None:
        known = held & torch.isfinite(rule).any(1)
        belief = torch.softmax(rule[known] / temperature, 1)  # -inf (not a candidate, padding) -> 0
        y[known, :r] = (1 - alpha) * y[known, :r] + alpha * belief
    return y


def contact_loss(head, b: dict, smoothing: float = 0.0,
                 soft: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, float]:
    logits = head(b["obj"], b["hand"], b["geom"], b["side"], b["rmask"])
    y = target_regions(b, logits.shape[1])
    goal = target_regions(b, logits.shape[1], soft) if soft[0] > 0 else y
    goal = goal * (1 - smoothing) + smoothing / 2  # pseudo-labels are noisy: never push a pair to 0 or 1
    loss = F.binary_cross_entropy_with_logits(logits[b["rmask"]], goal[b["rmask"]])
    acc = ((logits[b["rmask"]] > 0) == (y[b["rmask"]] > 0)).float().mean().item()
    return loss, acc


def match_loss(head, b: dict, smoothing: float = 0.0,
               soft: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, float]:
    logits = head(b["obj"], b["hand"], b["geom"], b["side"], b["rmask"])
    none_slot = logits.shape[1] - 1
    target = torch.where(b["target"] >= 0, b["target"], torch.full_like(b["target"], none_slot))
    valid = torch.cat([b["rmask"], torch.ones_like(b["rmask"][:, :1])], 1)
    # label smoothing over the hand's own slots only (padding stays impossible)
    goal = target_regions(b, logits.shape[1], soft) * (1 - smoothing) \
        + valid.float() * smoothing / valid.sum(1, keepdim=True).clamp(min=1)
    loss = -(goal * torch.log_softmax(logits, 1).masked_fill(~valid, 0)).sum(1).mean()
    return loss, (logits.argmax(1) == target).float().mean().item()

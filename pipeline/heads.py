"""Stage 2 of WISH: visual-only heads trained on pseudo-labels; no text at train or test time.

Inputs per (hand side, region) pair: region feature, hand feature, pair geometry, side (pipeline.regions).
  contactness: binary "hand touches region" per pair (BCE; positives = pseudo-labelled pairs, negatives = the
               hand's other regions, all of them when the pseudo-label is "none");
  matching:    softmax over the hand's regions plus a "none" slot (cross-entropy).
The two heads have separate weights, optimisers and seeds, so turning one off (heads.contact / heads.matching)
is an exact ablation. Prediction per detected hand, by heads.rule (default "matching"):
  both:          r* = argmax_r p_match(r) * p_contact(r); holds iff (p_contact(r*) + 1 - p_match(none)) / 2 >=
                 contact_threshold (each head votes with its own "holds something" confidence);
  contact:       r* = argmax p_contact; holds iff p_contact(r*) >= contact_threshold (its own, calibrated);
  matching:      r* = argmax over regions and none; holds iff r* is a region;
  expected_iou:  the matching head's distribution, decided for the dataset-level IoU the score accumulates
                 (pipeline.expected_iou: a region is predicted only when its expected intersection outweighs its
                 expected cost in the union at the target ratio heads.target_iou, estimated on the training frames).
With heads.folds > 1 each head is an ensemble of per-fold members whose probabilities are averaged.

    heads = load_heads("artifacts/heads/heads.pt")
    heads.predict(frame_regions) -> {side: (mask_id or -1, contact_prob, match_prob)}   (NaN for a head that is off)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.align import mlp
from pipeline.expected_iou import Belief, frame_overlaps, set_target_iou
# samples, batches and losses live in heads_data; re-exported: callers build samples through this module
from pipeline.heads_data import Sample, collate, contact_loss, make_samples, match_loss, target_regions  # noqa: F401
from pipeline.params import HeadsParams
from pipeline.regions import GEOM_DIM, FrameRegions
from pipeline.types import SIDES

# heads.rule's values, read off the param's Literal: one list for params.yaml and for checkpoints
RULES: tuple[str, ...] = get_args(HeadsParams.model_fields["rule"].annotation)


@dataclass(frozen=True)
class HeadsConfig:
    region_dim: int
    hidden: int = 256
    contact: bool = True
    matching: bool = True
    contact_threshold: float = 0.5
    # appearance enters through a dropout + linear bottleneck of this width (0: geometry and side only)
    feature_dim: int = 0
    feature_dropout: float = 0.0
    full_features: bool = True  # checkpoints from before the bottleneck: raw features into the trunk
    # the contact head's own threshold when it decides alone (wish_contact_only); None: contact_threshold
    contact_only_threshold: float | None = None
    # which trained head(s) decide `predict` (heads.rule); checkpoints from before the param decided by "both"
    rule: str = "both"
    # the ratio sum I / sum U the expected_iou rule weighs a region's cost at (set by training: heads.target_iou)
    target_iou: float = 0.3

    def __post_init__(self) -> None:
        # a checkpoint carries its rule; an unknown one must not fall through _decide to "both" silently
        if self.rule not in RULES:
            raise ValueError(f"rule {self.rule!r} is not one of {', '.join(RULES)}")

    @property
    def contact_alone_threshold(self) -> float:
        """The contact head's threshold when it decides alone: its own calibrated one, else contact_threshold."""
        return self.contact_threshold if self.contact_only_threshold is None else self.contact_only_threshold


class FastDropout(nn.Dropout):
    """nn.Dropout's element-wise Bernoulli(1 - p) keep mask, scaled by 1 / (1 - p), drawn from 16-bit random words
    (four per torch.randint int64) instead of torch's per-element bernoulli_: on a batch's (64, 100, 1280) region
    features the stock op took ~60% of a training step, this one ~4x less. Same distribution (p is quantised to
    1/65536; 0.5 is exact), other draws for a given seed. No parameters: checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return torch.zeros_like(x)
        n = x.numel()
        words = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.int16)[:n].view(x.shape) < int(round((1 - self.p) * 65536)) - 32768
        return x * keep * (1.0 / (1 - self.p))


class PairHead(nn.Module):
    """Pair trunk shared by both head types: [region, hand, geometry, side] -> hidden -> one logit per pair.

    Region and hand embeddings pass a dropout + linear bottleneck (feature_dim) first: 1280-d appearance over a
    few hundred pseudo-labels is enough to memorise them, the geometry (size relative to the hand, contact,
    fingertip distance) is what transfers to new kitchens."""

    def __init__(self, region_dim: int, hidden: int, with_none: bool, feature_dim: int | None = None,
                 feature_dropout: float = 0.0):
        super().__init__()
        self.proj = None
        width = region_dim
        if feature_dim is not None:
            width = feature_dim
            self.proj = nn.Sequential(FastDropout(feature_dropout), nn.Linear(region_dim, feature_dim)) \
                if feature_dim > 0 else None
        self.trunk = mlp(2 * width + GEOM_DIM + 2, hidden, hidden, 0.0)
        self.out = nn.Linear(hidden, 1)
        self.none = nn.Linear(2 * hidden, 1) if with_none else None

    def forward(self, obj: torch.Tensor, hand: torch.Tensor, geom: torch.Tensor, side: torch.Tensor,
                rmask: torch.Tensor) -> torch.Tensor:
        """obj (B, R, D), hand (B, D) unit-norm (collate normalises them once, not every batch of every epoch),
        geom (B, R, G), side (B, 2), rmask (B, R) -> logits (B, R[+1])."""
        if self.proj is not None:
            obj, hand = self.proj(obj), self.proj(hand)
        elif self.trunk[0].in_features == GEOM_DIM + 2:  # feature_dim 0: no appearance at all
            obj, hand = obj[..., :0], hand[..., :0]
        x = torch.cat([obj, hand[:, None].expand_as(obj), geom, side[:, None].expand(-1, obj.shape[1], -1)], -1)
        h = F.gelu(self.trunk(x))
        logits = self.out(h).squeeze(-1)
        if self.none is None:
            return logits
        m = rmask[..., None].float()
        pooled = torch.cat([(h * m).sum(1) / m.sum(1).clamp(min=1), h.masked_fill(~rmask[..., None], -1e4).amax(1)], -1)
        return torch.cat([logits.masked_fill(~rmask, -1e4), self.none(pooled)], 1)  # none slot last


def _new_head(kind: str, cfg: HeadsConfig) -> PairHead:
    return PairHead(cfg.region_dim, cfg.hidden, kind == "matching", None if cfg.full_features else cfg.feature_dim,
                    cfg.feature_dropout)


def train_one(kind: str, data: dict, cfg: HeadsConfig, params, seed: int, device, epochs: int,
               val: dict | None = None, keep_best: bool = False) -> tuple:
    """Train one head for `epochs`; with `val` (held-out videos' samples) also return the best epoch by val loss
    (and, keep_best, the head with that epoch's weights instead of the last)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = _new_head(kind, cfg).to(device).train()
    opt = torch.optim.AdamW(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    loss_fn = contact_loss if kind == "contact" else match_loss
    soft = (params.soft_targets, params.soft_temperature)
    rows, best_state, best_loss = [], None, float("inf")
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(data["target"]), generator=gen)
        losses, accs = [], []
        for start in range(0, len(order), params.batch_size):
            b = {k: v[order[start: start + params.batch_size]] for k, v in data.items()}
            loss, acc = loss_fn(head, b, params.label_smoothing, soft)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            accs.append(acc)
        row = dict(epoch=epoch, head=kind, loss=float(np.mean(losses)), train_acc=float(np.mean(accs)))
        if val is not None:
            head.eval()
            with torch.no_grad():
                vl, va = loss_fn(head, val, params.label_smoothing, soft)
            row |= dict(val_loss=float(vl), val_acc=float(va))
            if float(vl) < best_loss:  # the early-stopped weights, for heads.refit: false
                best_loss, best_state = float(vl), {k: v.detach().clone() for k, v in head.state_dict().items()}
        rows.append(row)
    best = int(np.argmin([r["val_loss"] for r in rows])) + 1 if val is not None else epochs
    if best_state is not None and keep_best:
        head.load_state_dict(best_state)
    return head.cpu().eval(), rows, best


def split_by_video(samples: list[Sample], videos: dict[str, str] | None, fraction: float,
                   seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, held-out) samples, holding out a `fraction` of the videos (never frames of a kept video)."""
    if videos is None or fraction <= 0:
        return samples, []
    names = sorted({videos.get(s.frame.frame_id, s.frame.frame_id) for s in samples})
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(names)[: int(round(fraction * len(names)))].tolist())
    train = [s for s in samples if videos.get(s.frame.frame_id, s.frame.frame_id) not in held]
    val = [s for s in samples if videos.get(s.frame.frame_id, s.frame.frame_id) in held]
    return (train, val) if train and val else (samples, [])


def train_heads(samples: list[Sample], params, seed: int = 0, device: torch.device | str = "cpu",
                videos: dict[str, str] | None = None):
    """Train the enabled heads independently; returns (Heads, curve DataFrame with epoch, head, loss, train_acc
    [, val_loss, val_acc]). With `videos` ({frame_id: video}) and heads.val_fraction > 0, each head's epoch
    count is chosen by its loss on held-out training videos (never eval frames), then it is refit on all."""
    if not (params.contact or params.matching):
        raise ValueError("heads.contact and heads.matching are both off: nothing to train")
    if not samples:
        raise ValueError("no pseudo-labelled detected hand to train on")
    cfg = HeadsConfig(samples[0].frame.features.shape[1], params.hidden, params.contact, params.matching,
                      params.contact_threshold, params.feature_dim, params.feature_dropout, full_features=False,
                      rule=params.rule)
    data = {k: v.to(device) for k, v in collate(samples).items()}  # padded once; batches are index lookups
    if params.folds > 1 and videos is not None:
        from pipeline.heads_folds import train_folds

        return train_folds(samples, data, cfg, params, seed, device, videos)
    train, val = split_by_video(samples, videos, params.val_fraction, seed)
    # the selection run's splits are rows of the same padded tensors, not two more collations
    position = {id(s): i for i, s in enumerate(samples)}
    tr, va = ({k: v[torch.tensor([position[id(s)] for s in part], dtype=torch.long)] for k, v in data.items()}
              for part in (train, val))
    heads: dict[str, PairHead | None] = {"contact": None, "matching": None}
    rows: list[dict] = []
    for offset, kind in enumerate(("contact", "matching")):
        if not getattr(cfg, kind):
            continue
        epochs = params.epochs
        if val:
            early, r, epochs = train_one(kind, tr, cfg, params, seed + offset, device, params.epochs, va,
                                          keep_best=not params.refit)
            rows += [x | {"stage": "select", "fold": 0} for x in r]
            if not params.refit:  # keep the early-stopped head, trained without the held-out videos
                heads[kind] = early
                continue
        heads[kind], r, _ = train_one(kind, data, cfg, params, seed + offset, device, epochs)
        rows += [x | {"stage": "refit", "fold": 0} for x in r]
    out = Heads(cfg, heads["contact"], heads["matching"])
    if val and params.calibrate_threshold:
        # thresholds for each decision rule, on the held-out videos, with the heads that are returned: their
        # probability scale is what a threshold must fit (refit heads were trained on those videos too, so
        # their agreement there is optimistic; without refit it is a clean held-out estimate)
        set_thresholds(out, [(out, val)])
    set_target_iou(out, samples, params)
    return out, pd.DataFrame(rows)


def set_thresholds(out: "Heads", held_out: list[tuple["Heads", list[Sample]]]) -> None:
    """Set the two-head rule's and the contact head's own thresholds from (heads, their held-out samples) pairs."""
    cfg = out.cfg
    both = calibrate_threshold(held_out)
    alone = calibrate_threshold([(Heads(replace(h.cfg, matching=False), h.contact, None), v) for h, v in held_out]) \
        if cfg.contact and cfg.matching else both
    out.cfg = replace(cfg, contact_threshold=both, contact_only_threshold=alone)


def calibrate_threshold(held_out: list[tuple["Heads", list[Sample]]]) -> float:
    """The "holds something" threshold that best agrees with the held-out videos' pseudo-labels, each sample
    judged by the heads that did not train on it: the heads' probabilities are not calibrated (one positive among
    ~100 regions, label smoothing), so 0.5 is arbitrary."""
    probs = [heads.probs(s.frame, s.side) for heads, val in held_out for s in val]
    held = np.array([s.target >= 0 for _, val in held_out for s in val])
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    agree = [np.mean([decide(pc, pm, t)[1] for pc, pm in probs] == held) for t in grid]
    return float(grid[int(np.argmax(agree))])


class Members(nn.ModuleList):
    """Heads of one kind, one per fold of the training videos (heads.folds): their probabilities are averaged."""


def _mean_prob(head: PairHead | Members, args: tuple, fn) -> np.ndarray:
    """(B, ...) probabilities of a collated batch, averaged over an ensemble's members."""
    heads = list(head) if isinstance(head, Members) else [head]
    return np.mean([fn(h(*args)).numpy() for h in heads], 0)


def _batch_args(samples: list[Sample]) -> tuple:
    b = collate(samples)
    return b["obj"], b["hand"], b["geom"], b["side"], b["rmask"]


class Heads:
    def __init__(self, cfg: HeadsConfig, contact: PairHead | Members | None, matching: PairHead | Members | None):
        self.cfg, self.contact, self.matching = cfg, contact, matching

    @torch.no_grad()
    def probs(self, fr: FrameRegions, side: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(p_contact (R,), p_match (R+1,) with none last); None for a head that is off."""
        args = _batch_args([Sample(fr, side, -1)])
        pc = _mean_prob(self.contact, args, torch.sigmoid)[0] if self.contact is not None else None
        pm = _mean_prob(self.matching, args, lambda x: torch.softmax(x, 1))[0] if self.matching is not None else None
        return pc, pm

    @torch.no_grad()
    def match_probs(self, samples: list[Sample], batch: int = 64) -> list[np.ndarray]:
        """probs()'s p_match of each sample, `batch` samples at a time (one by one was ~23 ms a hand): padded
        regions get logit -1e4, so a sample's softmax equals its unpadded one."""
        out = []
        for start in range(0, len(samples), batch):
            part = samples[start: start + batch]
            p = _mean_prob(self.matching, _batch_args(part), lambda x: torch.softmax(x, 1))
            out += [np.append(row[: s.frame.n_regions], row[-1]) for row, s in zip(p, part)]
        return out

    def decide_frame(self, fr: FrameRegions) -> dict[str, tuple[int, bool, float, float]]:
        """{side: (best region's mask_id or -1 without hand/regions, holds?, contact_prob, match_prob)}."""
        out, inter = {}, None
        for side in SIDES:
            if not fr.hands[side].present or fr.n_regions == 0:
                out[side] = (-1, False, 0.0, 0.0)
                continue
            pc, pm = self.probs(fr, side)
            if self.cfg.rule == "expected_iou" and pm is not None:
                inter = frame_overlaps(fr) if inter is None else inter  # both hands share the frame's overlaps
                r, holds = Belief(pm, fr.areas, inter).decide(self.cfg.target_iou)
            else:
                r, holds = self._decide(pc, pm)
            out[side] = (int(fr.mask_ids[r]), holds, float(pc[r]) if pc is not None else np.nan,
                         float(pm[r]) if pm is not None else np.nan)
        return out

    def _decide(self, pc: np.ndarray | None, pm: np.ndarray | None) -> tuple[int, bool]:
        """decide() under cfg.rule: "matching" / "contact" let that head alone decide (when it is there: an
        ablation that removed it falls back to the other one), "both" combines them."""
        cfg = self.cfg
        if cfg.rule == "matching" and pm is not None:
            return decide(None, pm, cfg.contact_threshold)
        if cfg.rule == "contact" and pc is not None:
            return decide(pc, None, cfg.contact_alone_threshold)
        return decide(pc, pm, cfg.contact_threshold)

    def predict(self, fr: FrameRegions) -> dict[str, tuple[int, float, float]]:
        return {s: (m if holds else -1, pc, pm) for s, (m, holds, pc, pm) in self.decide_frame(fr).items()}

    def save(self, path: str | Path) -> None:
        from pipeline.io import save_torch

        save_torch({"config": asdict(self.cfg),
                    "contact": _state(self.contact), "matching": _state(self.matching)}, path)


def _state(head: PairHead | Members | None) -> dict | list[dict] | None:
    """A head's state_dict; an ensemble's as a list of its members' (one-model checkpoints stay as they were)."""
    if head is None:
        return None
    return [h.state_dict() for h in head] if isinstance(head, Members) else head.state_dict()


def decide(pc: np.ndarray | None, pm: np.ndarray | None, threshold: float) -> tuple[int, bool]:
    """The combination rule of the module doc: (best region index, holds?)."""
    if pm is None:
        r = int(np.argmax(pc))
        return r, bool(pc[r] >= threshold)
    if pc is None:
        r = int(np.argmax(pm))
        return (r, True) if r < len(pm) - 1 else (int(np.argmax(pm[:-1])), False)
    r = int(np.argmax(pm[:-1] * pc))
    return r, bool((pc[r] + 1.0 - pm[-1]) / 2 >= threshold)


def load_heads(path: str | Path) -> Heads:
    from pipeline.weights import build_from_blob, load_blob

    blob = load_blob(path, "heads", ("config", "contact", "matching"), "heads")

    def build() -> Heads:
        cfg = HeadsConfig(**blob["config"])
        heads: list[PairHead | None] = []
        for kind in ("contact", "matching"):
            if blob[kind] is None:
                heads.append(None)
                continue
            states = blob[kind] if isinstance(blob[kind], list) else [blob[kind]]
            members = [_new_head(kind, cfg) for _ in states]
            for h, st in zip(members, states):
                h.load_state_dict(st)
                h.eval()
            heads.append(Members(members).eval() if isinstance(blob[kind], list) else members[0])
        return Heads(cfg, *heads)
    return build_from_blob(path, "heads", build)

"""Stage 2 of WISH: visual-only heads trained on pseudo-labels; no text at train or test time.

Inputs per (hand side, region) pair: region feature, hand feature, pair geometry, side (pipeline.regions).
  contactness: binary "hand touches region" per pair (BCE; positives = pseudo-labelled pairs, negatives = the
               hand's other regions, all of them when the pseudo-label is "none");
  matching:    softmax over the hand's regions plus a "none" slot (cross-entropy).
The two heads have separate weights, optimisers and seeds, so turning one off (heads.contact / heads.matching)
is an exact ablation. Prediction per detected hand:
  both on:       r* = argmax_r p_match(r) * p_contact(r); holds iff (p_contact(r*) + 1 - p_match(none)) / 2 >=
                 contact_threshold (each head votes with its own "holds something" confidence);
  contact only:  r* = argmax p_contact; holds iff p_contact(r*) >= contact_threshold;
  matching only: r* = argmax over regions and none; holds iff r* is a region.

    heads = load_heads("artifacts/heads/heads.pt")
    heads.predict(frame_regions) -> {side: (mask_id or -1, contact_prob, match_prob)}   (NaN for a head that is off)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.align import mlp, pair_inputs
from pipeline.regions import GEOM_DIM, FrameRegions
from pipeline.types import SIDES


@dataclass(frozen=True)
class HeadsConfig:
    region_dim: int
    hidden: int = 256
    contact: bool = True
    matching: bool = True
    contact_threshold: float = 0.5


class PairHead(nn.Module):
    """Pair trunk shared by both head types: [region, hand, geometry, side] -> hidden -> one logit per pair."""

    def __init__(self, region_dim: int, hidden: int, with_none: bool):
        super().__init__()
        self.trunk = mlp(2 * region_dim + GEOM_DIM + 2, hidden, hidden, 0.0)
        self.out = nn.Linear(hidden, 1)
        self.none = nn.Linear(2 * hidden, 1) if with_none else None

    def forward(self, obj: torch.Tensor, hand: torch.Tensor, geom: torch.Tensor, side: torch.Tensor,
                rmask: torch.Tensor) -> torch.Tensor:
        """obj (B, R, D), hand (B, D), geom (B, R, G), side (B, 2), rmask (B, R) -> logits (B, R[+1])."""
        obj, hand = F.normalize(obj, dim=-1), F.normalize(hand, dim=-1)
        x = torch.cat([obj, hand[:, None].expand_as(obj), geom, side[:, None].expand(-1, obj.shape[1], -1)], -1)
        h = F.gelu(self.trunk(x))
        logits = self.out(h).squeeze(-1)
        if self.none is None:
            return logits
        m = rmask[..., None].float()
        pooled = torch.cat([(h * m).sum(1) / m.sum(1).clamp(min=1), h.masked_fill(~rmask[..., None], -1e4).amax(1)], -1)
        return torch.cat([logits.masked_fill(~rmask, -1e4), self.none(pooled)], 1)  # none slot last


@dataclass
class Sample:
    frame: FrameRegions
    side: str
    target: int  # region index, -1 for none


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
        out.append(Sample(fr, r.side, idx))
    return out


def collate(samples: list[Sample]) -> dict[str, torch.Tensor]:
    r_max = max(s.frame.n_regions for s in samples)
    d = samples[0].frame.features.shape[1]
    b = len(samples)
    obj, geom = torch.zeros(b, r_max, d), torch.zeros(b, r_max, GEOM_DIM)
    rmask = torch.zeros(b, r_max, dtype=torch.bool)
    hand, side = torch.zeros(b, d), torch.zeros(b, 2)
    for i, s in enumerate(samples):
        o, h, g = pair_inputs(s.frame)
        k, n = SIDES.index(s.side), s.frame.n_regions
        obj[i, :n], geom[i, :n], rmask[i, :n], hand[i], side[i, k] = o, g[k], True, h[k], 1.0
    target = torch.tensor([s.target for s in samples])
    return dict(obj=obj, hand=hand, geom=geom, side=side, rmask=rmask, target=target)


def contact_loss(head: PairHead, b: dict) -> tuple[torch.Tensor, float]:
    logits = head(b["obj"], b["hand"], b["geom"], b["side"], b["rmask"])
    y = torch.zeros_like(logits)
    held = b["target"] >= 0
    y[held.nonzero().squeeze(1), b["target"][held]] = 1.0
    loss = F.binary_cross_entropy_with_logits(logits[b["rmask"]], y[b["rmask"]])
    acc = ((logits[b["rmask"]] > 0) == (y[b["rmask"]] > 0)).float().mean().item()
    return loss, acc


def match_loss(head: PairHead, b: dict) -> tuple[torch.Tensor, float]:
    logits = head(b["obj"], b["hand"], b["geom"], b["side"], b["rmask"])
    none_slot = logits.shape[1] - 1
    target = torch.where(b["target"] >= 0, b["target"], torch.full_like(b["target"], none_slot))
    return F.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean().item()


def _train_one(kind: str, data: dict, cfg: HeadsConfig, params, seed: int, device) -> tuple:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = PairHead(cfg.region_dim, cfg.hidden, with_none=kind == "matching").to(device).train()
    opt = torch.optim.AdamW(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    loss_fn = contact_loss if kind == "contact" else match_loss
    rows = []
    for epoch in range(params.epochs):
        order = torch.randperm(len(data["target"]), generator=gen)
        losses, accs = [], []
        for start in range(0, len(order), params.batch_size):
            b = {k: v[order[start: start + params.batch_size]] for k, v in data.items()}
            loss, acc = loss_fn(head, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            accs.append(acc)
        rows.append(dict(epoch=epoch, head=kind, loss=float(np.mean(losses)), train_acc=float(np.mean(accs))))
    return head.cpu().eval(), rows


def train_heads(samples: list[Sample], params, seed: int = 0, device: torch.device | str = "cpu"):
    """Train the enabled heads independently; returns (Heads, curve DataFrame with epoch, head, loss, train_acc)."""
    if not (params.contact or params.matching):
        raise ValueError("heads.contact and heads.matching are both off: nothing to train")
    if not samples:
        raise ValueError("no pseudo-labelled detected hand to train on")
    cfg = HeadsConfig(samples[0].frame.features.shape[1], params.hidden, params.contact, params.matching,
                      params.contact_threshold)
    data = {k: v.to(device) for k, v in collate(samples).items()}  # padded once; batches are index lookups
    contact = match = None
    rows: list[dict] = []
    if cfg.contact:
        contact, r = _train_one("contact", data, cfg, params, seed, device)
        rows += r
    if cfg.matching:
        match, r = _train_one("matching", data, cfg, params, seed + 1, device)
        rows += r
    return Heads(cfg, contact, match), pd.DataFrame(rows)


class Heads:
    def __init__(self, cfg: HeadsConfig, contact: PairHead | None, matching: PairHead | None):
        self.cfg, self.contact, self.matching = cfg, contact, matching

    @torch.no_grad()
    def probs(self, fr: FrameRegions, side: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(p_contact (R,), p_match (R+1,) with none last); None for a head that is off."""
        b = collate([Sample(fr, side, -1)])
        args = (b["obj"], b["hand"], b["geom"], b["side"], b["rmask"])
        pc = torch.sigmoid(self.contact(*args))[0].numpy() if self.contact is not None else None
        pm = torch.softmax(self.matching(*args), 1)[0].numpy() if self.matching is not None else None
        return pc, pm

    def decide_frame(self, fr: FrameRegions) -> dict[str, tuple[int, bool, float, float]]:
        """{side: (best region's mask_id or -1 without hand/regions, holds?, contact_prob, match_prob)}."""
        out = {}
        for side in SIDES:
            if not fr.hands[side].present or fr.n_regions == 0:
                out[side] = (-1, False, 0.0, 0.0)
                continue
            pc, pm = self.probs(fr, side)
            r, holds = decide(pc, pm, self.cfg.contact_threshold)
            out[side] = (int(fr.mask_ids[r]), holds, float(pc[r]) if pc is not None else np.nan,
                         float(pm[r]) if pm is not None else np.nan)
        return out

    def predict(self, fr: FrameRegions) -> dict[str, tuple[int, float, float]]:
        return {s: (m if holds else -1, pc, pm) for s, (m, holds, pc, pm) in self.decide_frame(fr).items()}

    def save(self, path: str | Path) -> None:
        from pipeline.io import save_torch

        save_torch({"config": asdict(self.cfg),
                    "contact": None if self.contact is None else self.contact.state_dict(),
                    "matching": None if self.matching is None else self.matching.state_dict()}, path)


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
            h = PairHead(cfg.region_dim, cfg.hidden, with_none=kind == "matching")
            h.load_state_dict(blob[kind])
            heads.append(h.eval())
        return Heads(cfg, *heads)
    return build_from_blob(path, "heads", build)

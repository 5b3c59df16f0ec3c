"""Stage 1 of WISH: MLP adapters over frozen region/text embeddings, trained with symmetric InfoNCE.

The region side is hand-aware: a (region, hand side) pair is embedded from the region feature plus a context
branch that sees [region, hand feature, pair geometry, side], so that "knife in contact with the left hand"
can prefer the region the left hand touches. A frame scores a narration under the one-object-per-hand
assumption: per phrase and hand side, the best region; per phrase, the best allowed side (the mean of both for
"both hands"); per narration, the mean over its phrases.

    model = load_adapters("artifacts/align/adapters.pt")
    model.embed_regions(x) (N, D) -> (N, E); model.embed_texts(t) (M, D') -> (M, E)   (unit norm)
    model.pair_scores(frame_regions, {"left": (P, D'), "right": (P, D')}) -> {side: (R, P) cosine}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.regions import GEOM_DIM, FrameRegions
from pipeline.types import SIDES

HAND_SIDES = {"none": (1, 1), "left": (1, 0), "right": (0, 1), "both": (1, 1)}


@dataclass(frozen=True)
class AdapterConfig:
    region_dim: int
    text_dim: int
    hidden: int = 128
    out_dim: int = 256
    dropout: float = 0.1
    temperature: float = 0.07
    learn_temperature: bool = True
    pool_temperature: float = 0.05


def mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


class Adapters(nn.Module):
    def __init__(self, cfg: AdapterConfig):
        super().__init__()
        self.cfg = cfg
        h, e = cfg.hidden, cfg.out_dim
        self.region = mlp(cfg.region_dim, h, e, cfg.dropout)
        self.context = mlp(2 * cfg.region_dim + GEOM_DIM + 2, h, e, cfg.dropout)
        self.text = mlp(cfg.text_dim, h, e, cfg.dropout)
        scale = torch.tensor(float(np.log(1.0 / cfg.temperature)))
        self.log_scale = nn.Parameter(scale, requires_grad=cfg.learn_temperature)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=float(np.log(100.0))).exp()

    def embed_regions(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Hand-free region embedding (for ranking nouns against a region)."""
        x = F.normalize(_t(x), dim=-1)
        return F.normalize(self.region(x), dim=-1)

    def embed_texts(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        return F.normalize(self.text(F.normalize(_t(x), dim=-1)), dim=-1)

    def embed_pairs(self, obj: torch.Tensor, hand: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
        """obj (..., R, D), hand (..., S, D), geom (..., S, R, G) with S = 2 sides -> (..., S, R, E).

        The region branch and the context branch's first layer see each (side, region) pair's input
        [region, hand, geometry, side]; both first layers are linear, so the region and hand terms are computed
        once per region and once per hand and broadcast over the pairs (the hand term ~100x, the region terms 2x
        fewer rows: ~60% of a training step before). The same function up to float rounding, with the same
        dropout draws (the dropouts still see one (S, R) hidden per pair)."""
        obj, hand = F.normalize(obj, dim=-1), F.normalize(hand, dim=-1)
        pair_shape = geom.shape[:-1]  # (..., S, R)
        reg = self.region[1](self.region[0](obj)).unsqueeze(-3).expand(*pair_shape, self.cfg.hidden)
        reg = self.region[3](self.region[2](reg))
        first = cast(nn.Linear, self.context[0])
        d, g = obj.shape[-1], geom.shape[-1]
        w_obj, w_hand, w_geom, w_side = first.weight.split([d, d, g, 2], dim=1)
        side = w_side.T[: pair_shape[-2]].unsqueeze(-2)  # side one-hot of pair (s, r) picks column s: (S, 1, H)
        ctx = ((obj @ w_obj.T).unsqueeze(-3) + (hand @ w_hand.T).unsqueeze(-2) + geom @ w_geom.T + side
               + first.bias)
        ctx = self.context[3](self.context[2](self.context[1](ctx)))
        return F.normalize(reg + ctx, dim=-1)

    @torch.no_grad()
    def pair_scores(self, fr: FrameRegions, text_feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cosine similarity of every (side, region) pair with that side's phrase texts: {side: (R, P)}."""
        was = self.training
        self.eval()
        obj, hand, geom = pair_inputs(fr)
        pairs = self.embed_pairs(obj, hand, geom)  # (2, R, E)
        out = {s: (pairs[i] @ self.embed_texts(text_feats[s]).T).numpy() for i, s in enumerate(SIDES)}
        self.train(was)
        return out


def _t(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x.float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, np.float32))


def pair_inputs(fr: FrameRegions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(R, D) region features, (2, D) hand features, (2, R, G) geometry, sides in SIDES order."""
    obj = torch.as_tensor(fr.features, dtype=torch.float32)
    hand = torch.as_tensor(np.stack([fr.hands[s].feature for s in SIDES]), dtype=torch.float32)
    geom = torch.as_tensor(np.stack([fr.geometry(s) for s in SIDES]), dtype=torch.float32)
    return obj, hand, geom


@dataclass
class NarrationTexts:
    """A narration's phrases with their hand-specific text features (P, 2, D') in SIDES order."""
    narration_id: str
    key: str  # identical phrase lists are the same caption: never negatives of each other
    phrases: list[str]
    hands: list[str]
    feats: np.ndarray

    def side_feats(self) -> dict[str, np.ndarray]:
        return {s: self.feats[:, i] for i, s in enumerate(SIDES)}


def narration_texts(phrases, text_lookup) -> dict[str, NarrationTexts]:
    """Group PHRASES rows by narration; text_lookup(list[str]) -> (N, D') features."""
    feats_l = text_lookup(phrases["text_left"].astype(str).tolist())
    feats_r = text_lookup(phrases["text_right"].astype(str).tolist())
    both = np.stack([np.asarray(feats_l, np.float32), np.asarray(feats_r, np.float32)], axis=1)
    phrases = phrases.reset_index(drop=True)
    out = {}
    for nid, g in phrases.groupby("narration_id", sort=True):
        rows = g.index.to_numpy()
        hands = [h if h in HAND_SIDES else "none" for h in g["hand"].astype(str)]
        key = "|".join(sorted(f"{p}@{h}" for p, h in zip(g["phrase"].astype(str), hands)))
        out[str(nid)] = NarrationTexts(str(nid), key, g["phrase"].astype(str).tolist(), hands, both[rows])
    return out


def collate_frames(frames: list[FrameRegions], cand_params=None) -> dict[str, torch.Tensor]:
    """Pad a batch of frames to the largest region count. `cand` (B, 2, R): the regions each side may pool over:
    its hand-adjacent candidates (pipeline.priors, with cand_params) where it has any, else every region."""
    from pipeline.priors import candidates

    r_max = max(f.n_regions for f in frames)
    d = frames[0].features.shape[1]
    obj = torch.zeros(len(frames), r_max, d)
    geom = torch.zeros(len(frames), 2, r_max, GEOM_DIM)
    rmask = torch.zeros(len(frames), r_max, dtype=torch.bool)
    cand = torch.zeros(len(frames), 2, r_max, dtype=torch.bool)
    hand = torch.zeros(len(frames), 2, d)
    for i, f in enumerate(frames):
        o, hand[i], g = pair_inputs(f)
        obj[i, : f.n_regions], geom[i, :, : f.n_regions], rmask[i, : f.n_regions] = o, g, True
        for k, s in enumerate(SIDES):
            c = candidates(f, s, cand_params) if cand_params is not None else np.zeros(f.n_regions, bool)
            cand[i, k, : f.n_regions] = torch.as_tensor(c if c.any() else np.ones(f.n_regions, bool))
    present = torch.tensor([[f.hands[s].present for s in SIDES] for f in frames])
    return dict(obj=obj, hand=hand, geom=geom, rmask=rmask, cand=cand, present=present)


def collate_texts(texts: list[NarrationTexts]) -> dict[str, torch.Tensor]:
    p_max = max(len(t.phrases) for t in texts)
    feats = torch.zeros(len(texts), p_max, 2, texts[0].feats.shape[-1])
    side_mask = torch.zeros(len(texts), p_max, 2, dtype=torch.bool)
    both = torch.zeros(len(texts), p_max, dtype=torch.bool)
    for i, t in enumerate(texts):
        n = len(t.phrases)
        feats[i, :n] = torch.as_tensor(t.feats)
        side_mask[i, :n] = torch.tensor([HAND_SIDES[h] for h in t.hands], dtype=torch.bool)
        both[i, :n] = torch.tensor([h == "both" for h in t.hands])
    return dict(feats=feats, side_mask=side_mask, both=both, pmask=side_mask.any(-1))


def frame_text_scores(model: Adapters, fb: dict, tb: dict) -> torch.Tensor:
    """(B frames, N narrations) scores under the one-object-per-hand assumption (see module doc)."""
    pairs = model.embed_pairs(fb["obj"], fb["hand"], fb["geom"])  # (B, 2, R, E)
    texts = F.normalize(model.text(F.normalize(tb["feats"], dim=-1)), dim=-1)  # (N, P, 2, E)
    sim = torch.einsum("bsre,npse->bnpsr", pairs, texts)
    allowed = fb["rmask"][:, None, :] & fb["cand"] if "cand" in fb else fb["rmask"][:, None, :].expand(-1, 2, -1)
    sim = sim.masked_fill(~allowed[:, None, None], -1e4)
    # Soft maximum over regions: a hard max sends gradient to one (at first random) region per frame and
    # the multiple-instance problem starts very slowly; pool -> max as pool_temperature -> 0.
    t = model.cfg.pool_temperature
    sim = t * torch.logsumexp(sim / t, -1) if t > 0 else sim.amax(-1)  # (B, N, P, 2)
    side_ok = tb["side_mask"][None] & fb["present"][:, None, None, :]
    # A phrase whose hand was not detected still counts against the side it names.
    side_ok = torch.where(side_ok.any(-1, keepdim=True), side_ok, tb["side_mask"][None].expand_as(side_ok))
    best = sim.masked_fill(~side_ok, -2.0).amax(-1)
    mean = (sim * tb["side_mask"][None]).sum(-1) / tb["side_mask"][None].sum(-1).clamp(min=1)
    per_phrase = torch.where(tb["both"][None], mean, best)
    pm = tb["pmask"][None].float()
    return (per_phrase * pm).sum(-1) / pm.sum(-1).clamp(min=1)


def info_nce(scores: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Symmetric multi-positive InfoNCE; pos (B, N) marks every caption true of a frame."""
    logits = scores * scale
    neg_inf = torch.finfo(logits.dtype).min
    row = torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~pos, neg_inf), 1)
    col = torch.logsumexp(logits, 0) - torch.logsumexp(logits.masked_fill(~pos, neg_inf), 0)
    acc = pos[torch.arange(len(pos)), logits.argmax(1)].float().mean().item()
    return (row.mean() + col.mean()) / 2, acc


def save_adapters(model: Adapters, path: str | Path) -> None:
    from pipeline.io import save_torch

    save_torch({"config": asdict(model.cfg), "state_dict": model.state_dict()}, path)


def load_adapters(path: str | Path) -> Adapters:
    from pipeline.weights import build_from_blob, load_blob

    blob = load_blob(path, "adapters", ("config", "state_dict"), "align")

    def build() -> Adapters:
        model = Adapters(AdapterConfig(**blob["config"]))
        model.load_state_dict(blob["state_dict"])
        return model.eval()
    return build_from_blob(path, "adapters", build)


def train_adapters(frames: list[FrameRegions], frame_narrations: list[list[str]], texts: dict[str, NarrationTexts],
                   params, seed: int = 0, device: torch.device | str = "cpu", progress: bool = False,
                   cand_params=None, videos: list[str] | None = None):
    """Train adapters on frames (each with the ids of its narrations that have phrases). cand_params: the
    candidate filter (PseudolabelParams) when align.candidates_only; videos: each frame's video, for batches
    drawn from few videos (align.batch_by_video: negatives from the same kitchen force looking at the object).

    Returns (model on CPU in eval mode, curve DataFrame with epoch, step, loss, retrieval_acc, temperature).
    """
    import pandas as pd
    from tqdm import tqdm

    keep = [i for i, (f, n) in enumerate(zip(frames, frame_narrations)) if f.n_regions and n]
    if not keep:
        raise ValueError("no training frame has both regions and a narration with phrases")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cfg = AdapterConfig(frames[keep[0]].features.shape[1], next(iter(texts.values())).feats.shape[-1],
                        params.hidden, params.out_dim, params.dropout, params.temperature, params.learn_temperature,
                        params.pool_temperature)
    model = Adapters(cfg).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.lr,
                            weight_decay=params.weight_decay)
    frames, frame_narrations = [frames[i] for i in keep], [frame_narrations[i] for i in keep]
    videos = [videos[i] for i in keep] if videos is not None and params.batch_by_video else None
    # Pad every frame and caption once: batches are then index lookups, not Python loops.
    fb_all = {k: v.to(device) for k, v in
              collate_frames(frames, cand_params if params.candidates_only else None).items()}
    keys = list(dict.fromkeys(t.key for t in texts.values()))
    key_index = {k: i for i, k in enumerate(keys)}
    by_key = {t.key: t for t in texts.values()}
    tb_all = {k: v.to(device) for k, v in collate_texts([by_key[k] for k in keys]).items()}
    frame_keys = [[key_index[texts[n].key] for n in ns] for ns in frame_narrations]
    rows, step = [], 0
    for epoch in tqdm(range(params.epochs), desc="align", disable=not progress):
        order = epoch_order(len(frames), videos, gen)
        for start in range(0, len(order), params.batch_size):
            batch = order[start: start + params.batch_size]
            if len(batch) < 2:
                continue
            loss, acc = _step(model, fb_all, tb_all, [frame_keys[i] for i in batch], batch, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            rows.append(dict(epoch=epoch, step=step, loss=loss.item(), retrieval_acc=acc,
                             temperature=1.0 / model.scale.item()))
    curve = pd.DataFrame(rows).groupby("epoch", as_index=False).agg(
        step=("step", "max"), loss=("loss", "mean"), retrieval_acc=("retrieval_acc", "mean"),
        temperature=("temperature", "last"))
    return model.cpu().eval(), curve


def epoch_order(n: int, videos: list[str] | None, gen: torch.Generator) -> list[int]:
    """A random frame order; with `videos`, frames of one video stay together (videos in random order, frames
    shuffled within), so a batch holds few kitchens and its negatives are other narrations of the same scene."""
    perm = torch.randperm(n, generator=gen).tolist()
    if videos is None:
        return perm
    names = sorted(set(videos))
    rank = {v: r for r, v in enumerate(torch.randperm(len(names), generator=gen).tolist())}
    return sorted(perm, key=lambda i: rank[names.index(videos[i])])


def _step(model: Adapters, fb_all: dict, tb_all: dict, frame_keys: list[list[int]], batch: list[int],
          gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """One batch: each frame samples one of its captions; columns are the distinct captions sampled."""
    picked = [ks[int(torch.randint(len(ks), (1,), generator=gen))] for ks in frame_keys]
    cols = list(dict.fromkeys(picked))
    pos = torch.tensor([[c in ks for c in cols] for ks in frame_keys], dtype=torch.bool)
    idx = torch.tensor(batch)
    fb = {k: v[idx] for k, v in fb_all.items()}
    tb = {k: v[torch.tensor(cols)] for k, v in tb_all.items()}
    scores = frame_text_scores(model, fb, tb)
    return info_nce(scores, pos.to(scores.device), model.scale)


def training_narrations(frames, phrases, eval_videos: set[str], path=None) -> dict[str, list[str]]:
    """{frame_id: narration_ids with phrases} for split == "train" frames; refuses any eval-video frame."""
    from pipeline.data.evalset import refuse_eval_videos

    refuse_eval_videos(frames["video_id"], eval_videos, path, "refusing to train")
    with_phrases = set(phrases["narration_id"].astype(str))
    out = {}
    for r in frames[frames["split"] == "train"].itertuples():
        nids = [str(n) for n in r.narration_ids if str(n) in with_phrases]
        if nids:
            out[str(r.frame_id)] = nids
    return out

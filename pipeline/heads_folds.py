"""heads.folds > 1: Stage 2 as an ensemble over folds of the training videos (pipeline.heads.train_heads calls it).

Each head kind gets one member per fold, trained on the other folds and early-stopped at its best loss on its own;
the members' probabilities are averaged (pipeline.heads.Members) and the thresholds come from out-of-fold
predictions. Measured against the one-model default in notes/pseudolabels.md (sixth round).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pipeline.expected_iou import set_target_iou
from pipeline.heads import Heads, HeadsConfig, Members, PairHead, Sample, set_thresholds, train_one


def video_folds(samples: list[Sample], videos: dict[str, str], folds: int, seed: int) -> list[np.ndarray]:
    """`folds` disjoint index arrays of held-out samples: the videos in a seeded random order, dealt round-robin
    (never frames of one video in two folds). Fewer videos than folds: one fold per video."""
    names = sorted({videos.get(s.frame.frame_id, s.frame.frame_id) for s in samples})
    order = np.random.default_rng(seed).permutation(names).tolist()
    fold_of = {v: i % min(folds, len(order)) for i, v in enumerate(order)}
    of = np.array([fold_of[videos.get(s.frame.frame_id, s.frame.frame_id)] for s in samples])
    return [np.nonzero(of == k)[0] for k in range(int(of.max()) + 1)]


def train_folds(samples: list[Sample], data: dict, cfg: HeadsConfig, params, seed: int, device,
                 videos: dict[str, str]) -> tuple["Heads", pd.DataFrame]:
    """heads.folds > 1: one early-stopped head per kind and fold of the training VIDEOS (trained on the other
    folds, stopped at its best loss on its own), averaged at prediction. An ensemble over folds is the standard
    answer to noisy labels and to a single run's variance (one seed moved dev `wish` by 0.05-0.1); every video
    is held out once, so the thresholds are calibrated on out-of-fold probabilities, a clean held-out estimate."""
    folds = video_folds(samples, videos, params.folds, seed)
    members: dict[str, list[PairHead]] = {"contact": [], "matching": []}
    rows: list[dict] = []
    for k, held in enumerate(folds):
        keep = torch.as_tensor(np.setdiff1d(np.arange(len(samples)), held), dtype=torch.long)
        tr = {n: v[keep] for n, v in data.items()}
        va = {n: v[torch.as_tensor(held, dtype=torch.long)] for n, v in data.items()}
        for offset, kind in enumerate(("contact", "matching")):
            if getattr(cfg, kind):
                head, r, _ = train_one(kind, tr, cfg, params, seed + 2 * k + offset, device, params.epochs, va,
                                        keep_best=True)
                members[kind].append(head)
                rows += [x | {"stage": "select", "fold": k} for x in r]
    out = Heads(cfg, Members(members["contact"]) if cfg.contact else None,
                Members(members["matching"]) if cfg.matching else None)
    if params.calibrate_threshold:
        per_fold = [(Heads(cfg, members["contact"][k] if cfg.contact else None,
                           members["matching"][k] if cfg.matching else None), [samples[i] for i in held])
                    for k, held in enumerate(folds)]
        set_thresholds(out, per_fold)
    set_target_iou(out, samples, params)
    return out, pd.DataFrame(rows)

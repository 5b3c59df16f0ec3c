"""Stage `heads` (WISH Stage 2): visual-only contactness and matching heads trained on the pseudo-labels."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Train ROOT/heads/{heads.pt,curve.csv,summary.json} from ROOT/pseudolabel and the region artifacts."""
    from pipeline.device import resolve_device
    from pipeline.errors import WishError
    from pipeline.heads import make_samples, train_heads
    from pipeline.io import atomic_dir, atomic_path, read_table, write_csv, write_json
    from pipeline.regions import load_frame_regions
    from pipeline.schemas import FRAMES, PSEUDOLABELS

    p = setup(params)
    labels_path = root / "pseudolabel" / "pseudolabels.parquet"
    labels = read_table(labels_path, PSEUDOLABELS)
    if not (p.heads.contact or p.heads.matching):
        raise WishError(params, "heads.contact and heads.matching are both false: nothing to train")
    regions = load_frame_regions(root, sorted(set(labels["frame_id"])))
    samples = make_samples(regions, labels, p.heads.silent_as_none)
    if not samples:
        raise WishError(labels_path, "no pseudo-labelled detected hand matches the region artifacts")
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    videos = dict(zip(frames["frame_id"].astype(str), frames["video_id"].astype(str)))
    heads, curve = train_heads(samples, p.heads, p.common.seed, resolve_device(p.common.device), videos)
    with atomic_dir(root / "heads") as out:
        with atomic_path(out / "heads.pt", ".pt") as tmp:
            heads.save(tmp)
        write_csv(curve, out / "curve.csv")
        select = curve[curve["stage"] == "select"]
        # each head's (and, with heads.folds, each fold's) early-stopped epoch; averaged over folds
        best = select.loc[select.groupby(["head", "fold"])["val_loss"].idxmin()] if len(select) else select
        if (curve["stage"] == "refit").any():
            last = curve[curve["stage"] == "refit"].groupby("head").tail(1).set_index("head")
        else:  # heads.refit: false or heads.folds > 1 keep the early-stopped epochs
            last = best.groupby("head")[["loss", "train_acc", "epoch"]].mean()
        summary = {"samples": len(samples), "positives": sum(s.target >= 0 for s in samples),
                   **{f"{h}_loss": float(r["loss"]) for h, r in last.iterrows()},
                   **{f"{h}_train_acc": float(r["train_acc"]) for h, r in last.iterrows()},
                   **{f"{h}_epochs": _num(float(r["epoch"]) + 1) for h, r in last.iterrows()},
                   "contact_threshold": heads.cfg.contact_threshold,
                   "contact_only_threshold": heads.cfg.contact_only_threshold, "folds": p.heads.folds,
                   "rule": heads.cfg.rule,
                   "target_iou": heads.cfg.target_iou if heads.cfg.rule == "expected_iou" else None}
        for h, g in best.groupby("head"):
            summary |= {f"{h}_val_loss": float(g["val_loss"].mean()), f"{h}_val_acc": float(g["val_acc"].mean())}
        write_json(summary, out / "summary.json")
    typer.echo(f"heads: {len(samples)} hands ({summary['positives']} holding); " +
               ", ".join(f"{h} loss {r['loss']:.3f}" for h, r in last.iterrows()))


def _num(x: float) -> int | float:
    return int(x) if x.is_integer() else round(x, 2)

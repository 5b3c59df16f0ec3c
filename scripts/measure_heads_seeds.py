"""How much of a dev difference is noise: retrain Stage 2 (the heads) with several seeds on the pipeline's own
pseudo-labels and score `wish` (and its two ablations) on the eval set each time. The eval frames' contexts
(hands, proposals, regions) are built once; only the heads change between seeds.

    python scripts/measure_heads_seeds.py [--root artifacts] [--seeds 5] [--variants refit=false ...]

Prints one row per (variant, seed) and the mean and standard deviation of each method's object mIoU; a variant
is comma-separated heads.* overrides ("" = params.yaml as is).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("wish", "wish_matching_only", "wish_contact_only")


def _contexts(p, root: Path):
    from pipeline.data.evalset import load_evalset
    from pipeline.predict import build_models

    es = load_evalset(p.score.evalset)
    models = build_models(p, root)
    out = []
    for f in es.frames:
        ctx = models.context(f.image_id, es.image(f), es.narrations_for(f.image_id), with_regions=True)
        ctx.gt = es.labels(f)
        out.append(ctx)
    return models, out


def dev_miou(models, ctxs, p, methods) -> dict[str, float]:
    """Each method's dev object mIoU with the models as they are now (the score stage's own composition)."""
    from pipeline.labelmap import compose
    from pipeline.metrics import Scorer
    from pipeline.score_methods import METHODS as FNS

    out = {}
    for m in methods:
        sc = Scorer()
        for ctx in ctxs:
            sc.add(compose(ctx.shape, ctx.hand_masks, FNS[m](ctx, models, p), ctx.objects, p.score.both_iou), ctx.gt)
        out[m] = float(sc.result()["object_miou"] or 0.0)
    return out


def training_samples(p, root: Path):
    """(Stage-2 samples from the pipeline's pseudo-labels, FRAMES table, {frame_id: video_id})."""
    from pipeline.heads import make_samples
    from pipeline.io import read_table
    from pipeline.regions import load_frame_regions
    from pipeline.schemas import FRAMES, PSEUDOLABELS

    labels = read_table(root / "pseudolabel" / "pseudolabels.parquet", PSEUDOLABELS)
    regions = load_frame_regions(root, sorted(set(labels["frame_id"])))
    samples = make_samples(regions, labels, p.heads.silent_as_none)
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    return samples, frames, dict(zip(frames["frame_id"].astype(str), frames["video_id"].astype(str)))


def main(root: Path = Path("artifacts"), params: Path = Path("params.yaml"), seeds: int = 5,
         variants: list[str] = typer.Option([""])) -> None:
    from pipeline.device import resolve_device
    from pipeline.heads import train_heads
    from pipeline.params import load_params

    p = load_params(params)
    samples, _, videos = training_samples(p, root)
    models, ctxs = _contexts(p, root)
    import time

    import yaml

    for variant in variants:
        hp = p.heads.model_copy(update={k: yaml.safe_load(v) for k, v in (kv.split("=") for kv in variant.split(",") if kv)})
        scores: dict[str, list[float]] = {m: [] for m in METHODS}
        for seed in range(seeds):
            start = time.perf_counter()
            heads, _ = train_heads(samples, hp, seed, resolve_device(p.common.device), videos)
            took = time.perf_counter() - start
            models.__dict__["heads"] = heads  # Models.heads is a cached property: this seed's heads replace it
            for m, v in dev_miou(models, ctxs, p, METHODS).items():
                scores[m].append(v)
            typer.echo(f"[{variant or 'params.yaml'}] seed {seed}: " + ", ".join(f"{m} {scores[m][-1]:.3f}" for m in METHODS)
                       + f" (threshold {heads.cfg.contact_threshold:.2f}, training {took:.0f} s)")
        for m in METHODS:
            v = np.asarray(scores[m])
            typer.echo(f"[{variant or 'params.yaml'}] {m}: mean {v.mean():.3f} sd {v.std(ddof=1) if len(v) > 1 else 0.0:.3f} "
                       f"min {v.min():.3f} max {v.max():.3f} over {len(v)} seeds")


if __name__ == "__main__":
    typer.run(main)

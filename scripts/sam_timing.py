"""Seconds per frame of hand-guided SAM (`sam_hands`) vs SAM's full-grid generator, random-init weights.

    python scripts/sam_timing.py [--model-type vit_b] [--image ../shared/data/evalset/images/<id>.png]

Weights do not change the cost, so random init measures the real thing. The grid cost is estimated from
`--grid-batches` point batches (points_per_batch each) scaled to points_per_side^2 points, plus the encoder.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch
import typer
from segment_anything import sam_model_registry

from pipeline.masks.mobile_sam import build_mobile_sam
from pipeline.masks.sam import CachedPredictor, SamHandsProposer, predict_prompts
from pipeline.params import MasksParams, SamParams
from pipeline.types import Hand

EVAL_IMAGES = Path("../shared/data/evalset/images")


def _hands(h: int, w: int) -> list[Hand]:
    """Two hand boxes where egocentric hands usually are: lower left and lower right."""
    s = 0.18 * w
    return [Hand(hand_id=0, side="left", score=1.0, box=(0.2 * w, 0.6 * h, 0.2 * w + s, 0.6 * h + s)),
            Hand(hand_id=1, side="right", score=1.0, box=(0.6 * w, 0.55 * h, 0.6 * w + s, 0.55 * h + s))]


def _timed(fn) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(model_type: str = "vit_b", image: Path | None = None, grid_batches: int = 2, threads: int = 2) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    path = image or sorted(EVAL_IMAGES.glob("*.png"))[0]
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    model = build_mobile_sam() if model_type == "mobile_sam" else sam_model_registry[model_type](checkpoint=None)
    params = SamParams(model_type=model_type)
    hands = _hands(*img.shape[:2])
    with torch.inference_mode():
        proposer = SamHandsProposer(model.eval(), MasksParams(backend="sam_hands", sam=params))
        props, t_hands = _timed(lambda: proposer(img, hands))
        pred = CachedPredictor(model)
        _, t_embed = _timed(lambda: pred.set_image(img))
        rng = np.random.default_rng(0)
        pts = rng.uniform([0, 0], [img.shape[1], img.shape[0]], (params.points_per_batch, 2)).astype(np.float32)
        t_batch = min(_timed(lambda: predict_prompts(pred, pts))[1] for _ in range(grid_batches))
    n_batches = int(np.ceil(params.points_per_side ** 2 / params.points_per_batch))
    print(f"image {path.name} {img.shape[1]}x{img.shape[0]}, {model_type} random init, {threads} threads")
    print(f"sam_hands: {t_hands:.1f} s/frame ({len(hands)} hands, "
          f"{len(hands) * len(params.hand_rings) * params.hand_points_per_ring} point prompts, {len(props)} masks)")
    print(f"image encoder alone: {t_embed:.1f} s; one batch of {params.points_per_batch} points: {t_batch:.2f} s")
    print(f"full grid ({params.points_per_side}x{params.points_per_side} = {n_batches} batches) estimate: "
          f"{t_embed + n_batches * t_batch:.1f} s/frame")


if __name__ == "__main__":
    typer.run(main)

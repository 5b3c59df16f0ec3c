"""Measure object proposals and hand masks on an eval-format directory.

    python scripts/measure_proposals.py [EVAL_DIR] [--params params.yaml] [--backend offline ...] [--hands both]

Per backend and hand source (MediaPipe detections, or hands derived from the GT hand masks as an upper bound):
recall of GT in-hand objects (left_object/right_object/both_object) at IoU >= 0.5 and >= 0.3 within the top
100 and 50 object proposals, mean best IoU within 100, proposals/frame, s/frame, and hand-mask IoU against
the GT hand mask of the same side (hands found on that side only; `found` says how many were).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import rle  # noqa: E402
from pipeline.data.evalset import load_evalset  # noqa: E402
from pipeline.masks import build_proposer  # noqa: E402
from pipeline.masks.handmask import hand_from_mask  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.types import Hand  # noqa: E402

OBJECT_LABELS = ("left_object", "right_object", "both_object")


def gt_hands(es, frame) -> list[Hand]:
    hands = []
    for side in ("left", "right"):
        for m in es.masks(frame, f"{side}_hand"):
            hands.append(hand_from_mask(m, side, len(hands)))
    return hands


def frame_stats(es, frame, proposals, seconds: float) -> dict:
    objects = [p.mask for p in proposals if p.kind == "object"]
    gt = [m for label in OBJECT_LABELS for m in es.masks(frame, label)]
    best = {k: (rle.iou_matrix(gt, objects[:k]).max(1) if objects and gt else np.zeros(len(gt))) for k in (50, 100)}
    hand_iou = []
    for side in ("left", "right"):
        gt_side = es.masks(frame, f"{side}_hand")
        found = [p.mask for p in proposals if p.kind == "hand" and p.side == side]
        if gt_side:
            hand_iou.append(float(rle.iou_matrix(found[:1], gt_side[:1]).max()) if found else None)
    return dict(best50=best[50].tolist(), best100=best[100].tolist(), n=len(objects), seconds=seconds, hand_iou=hand_iou)


def summarise(stats: list[dict]) -> dict:
    b100 = np.concatenate([s["best100"] for s in stats])
    b50 = np.concatenate([s["best50"] for s in stats])
    hands = [h for s in stats for h in s["hand_iou"]]
    found = [h for h in hands if h is not None]
    return {"objects": len(b100), "recall@100_iou0.5": float((b100 >= 0.5).mean()),
            "recall@100_iou0.3": float((b100 >= 0.3).mean()), "recall@50_iou0.5": float((b50 >= 0.5).mean()),
            "recall@50_iou0.3": float((b50 >= 0.3).mean()), "mean_best_iou@100": float(b100.mean()),
            "proposals_per_frame": float(np.mean([s["n"] for s in stats])),
            "s_per_frame": float(np.mean([s["seconds"] for s in stats])),
            "cpu_s_per_frame": float(np.mean([s["cpu"] for s in stats])),
            "gt_hands": len(hands), "hands_found": len(found), "hand_iou_found": float(np.mean(found)) if found else 0.0}


def measure(es, proposer, hands_of) -> dict:
    stats = []
    for frame in es.frames:
        image = es.image(frame)
        hands = hands_of(frame, image)
        t, c = time.perf_counter(), time.process_time()
        proposals = proposer(image, hands)
        stats.append(frame_stats(es, frame, proposals, time.perf_counter() - t) | {"cpu": time.process_time() - c})
    return summarise(stats)


def main(eval_dir: Path = typer.Argument(Path("../shared/data/evalset")),
         params: Path = typer.Option(Path("params.yaml")),
         backend: list[str] = typer.Option(["offline"]),
         hands: str = typer.Option("both", help="detected | gt | both"),
         out: Path | None = typer.Option(None, help="write the results as JSON here")) -> None:
    p = load_params(params)
    es = load_evalset(eval_dir)
    sources = {}
    if hands in ("detected", "both"):
        from pipeline.hands import HandDetector

        detector = HandDetector(p.hands)
        sources["detected"] = lambda frame, image: detector.detect(image)
    if hands in ("gt", "both"):
        sources["gt"] = lambda frame, image: gt_hands(es, frame)
    results = {}
    for name in backend:
        proposer = build_proposer(p.masks.model_copy(update={"backend": name}), p.common)
        for src, hands_of in sources.items():
            results[f"{name}/{src}"] = r = measure(es, proposer, hands_of)
            typer.echo(f"{name:8s} hands={src:8s} " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                        for k, v in r.items()))
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)

"""Run methods over images, compose label maps, score them against an eval set and write everything.

Layout written into OUT (by `wish evaluate`, the `score` stage and, without GT, `wish predict`):
    metrics.json                flat {"<method>.<metric>": value}, rounded to 4 decimals (None = undefined)
    per_class.csv               method, class, iou, gt_pixels, pred_pixels
    per_frame.csv               image_id, method, class, intersection, union (to find the frames that hurt)
    predictions.parquet         PREDICTIONS rows of every method
    labels/<method>/<id>.png    EgoHOS label maps (predict: labels/<id>.png)
    boundary/<method|gt>/<id>.png  EgoHOS contact-boundary maps, 0/1 (pipeline.boundary; predict: boundary/<id>.png)
    overlays/<id>.png           GT | first method (predict: the prediction alone)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.errors import WishError
from pipeline.io import write_csv, write_image, write_json, write_table
from pipeline.labelmap import compose, overlay, side_by_side
from pipeline.metrics import CLASS_NAMES, OBJECT_CLASSES, Scorer
from pipeline.overlay import LABEL_LEGEND, iou_caption, with_legend
from pipeline.predict import FrameContext, prediction_rows, predictions_frame
from pipeline.schemas import PREDICTIONS

DECIMALS = 4


def run_methods(ctx: FrameContext, methods: list[str], models, params) -> dict[str, tuple[dict, np.ndarray]]:
    """{method: (decisions, label map)} for one frame."""
    from pipeline.score_methods import METHODS

    out = {}
    for m in methods:
        decisions = METHODS[m](ctx, models, params)
        out[m] = decisions, compose(ctx.shape, ctx.hand_masks, decisions, ctx.objects, params.score.both_iou)
    return out


def usable_methods(methods: list[str], has_narrations: bool) -> tuple[list[str], list[str]]:
    """(methods to run, methods skipped because the eval set has no narrations)."""
    from pipeline.score_methods import NEEDS_NARRATIONS

    skipped = [m for m in methods if m in NEEDS_NARRATIONS and not has_narrations]
    return [m for m in methods if m not in skipped], skipped


def evaluate(evalset_dir, methods: list[str], models, params, out: Path, perception=None) -> dict:
    """Score `methods` on every frame of an eval-format dir (or an already opened EvalSet-like source, e.g.
    pipeline.data.visor.VisorEvalSet); writes the layout above into `out`. perception: stage `perceive`'s
    PerceptionCache covering every frame (then nothing is perceived here)."""
    from pipeline.score_methods import NEEDS_REGIONS
    from pipeline.boundary import contact_boundary
    from pipeline.data.evalset import load_evalset
    from pipeline.score_shards import iter_contexts

    es = load_evalset(evalset_dir) if isinstance(evalset_dir, (str, Path)) else evalset_dir
    evalset_dir = es.root
    methods, skipped = usable_methods(methods, not es.narrations.empty)
    if not methods:
        raise WishError(Path(evalset_dir) / "narrations.csv", f"every requested method needs narrations: {skipped}")
    bpx = params.score.boundary_px
    scorers = {m: Scorer(boundary_px=bpx) for m in methods}
    recall = ProposalRecall()
    rows, per_frame = [], []
    items = ((f.image_id, es.image(f), es.narrations_for(f.image_id)) for f in es.frames)
    contexts = iter_contexts(items, models, params, bool(NEEDS_REGIONS & set(methods)), perception)
    for frame, ctx in tqdm(zip(es.frames, contexts), desc="evaluate", unit="frame", total=len(es.frames)):
        gt, image = es.labels(frame), ctx.image
        if gt.shape != image.shape[:2]:
            raise WishError(frame.label_path, f"label map {gt.shape} does not match image {image.shape[:2]}")
        ctx.gt = gt
        recall.add(ctx)
        results = run_methods(ctx, methods, models, params)
        frame_scores = {}
        for m, (decisions, label_map) in results.items():
            fs = frame_scores[m] = scorers[m].add(label_map, gt)
            per_frame += [dict(image_id=frame.image_id, method=m, **{"class": CLASS_NAMES[c]},
                               intersection=int(fs.inter[c]), union=int(fs.union[c])) for c in CLASS_NAMES]
            rows += prediction_rows(ctx, m, decisions, label_map)
            write_image(label_map, out / "labels" / m / f"{frame.image_id}.png")
            write_image(contact_boundary(label_map, bpx).astype(np.uint8), out / "boundary" / m / f"{frame.image_id}.png")
        write_image(contact_boundary(gt, bpx).astype(np.uint8), out / "boundary" / "gt" / f"{frame.image_id}.png")
        if params.score.overlays:
            panels = [("GT", gt), (methods[0], results[methods[0]][1])]
            fs = frame_scores[methods[0]]
            title = f"left: GT   right: {methods[0]}   {iou_caption(fs.inter, fs.union)}"
            write_image(with_legend(side_by_side(image, panels), LABEL_LEGEND, title),
                        out / "overlays" / f"{frame.image_id}.png")
    metrics = flat_metrics({m: s.result() for m, s in scorers.items()} | {"proposals": recall.result()})
    meta = dict(evalset=str(evalset_dir), methods=",".join(methods), skipped=",".join(skipped))
    write_table(predictions_frame(rows), PREDICTIONS, out / "predictions.parquet", meta)
    write_json(metrics, out / "metrics.json")
    write_csv(per_class_table(scorers), out / "per_class.csv")
    write_csv(pd.DataFrame(per_frame), out / "per_frame.csv")
    return metrics


class ProposalRecall:
    """What the proposals allow, before any choice: per GT object class (3/4/5, one target per class and frame)
    the best IoU of an object proposal with it after the predicted hand masks are drawn over the proposal (as
    the label map draws them). Written as "proposals.*": recall at IoU >= 0.5 per class and overall, mean best IoU."""

    def __init__(self) -> None:
        self.best: dict[int, list[float]] = {c: [] for c in OBJECT_CLASSES}

    def add(self, ctx: FrameContext) -> None:
        from pipeline.metrics import mask_iou

        drawn = np.zeros(ctx.shape, bool)
        for hand in ctx.hand_masks.values():
            drawn |= hand
        visible = [o & ~drawn for o in ctx.objects]
        for c in OBJECT_CLASSES:
            target = np.asarray(ctx.gt == c)
            if target.any():
                self.best[c].append(max((mask_iou(v, target) for v in visible), default=0.0))

    def result(self) -> dict:
        out: dict = {}
        every = [v for c in OBJECT_CLASSES for v in self.best[c]]
        for c in OBJECT_CLASSES:
            if self.best[c]:
                out[f"recall_iou0.5.{CLASS_NAMES[c]}"] = float(np.mean(np.asarray(self.best[c]) >= 0.5))
        out["recall_iou0.5"] = float(np.mean(np.asarray(every) >= 0.5)) if every else None
        out["mean_best_iou"] = float(np.mean(every)) if every else None
        out["n_gt_objects"] = len(every)
        return out


def flat_metrics(results: dict[str, dict]) -> dict:
    """{"method.metric": value}, floats rounded so that CI comparisons are stable."""
    flat = {}
    for method, res in results.items():
        for key, v in res.items():
            flat[f"{method}.{key}"] = round(v, DECIMALS) if isinstance(v, float) else v
    return flat


HEADLINE = ("object_miou", "hand_miou", "hand_recall", "hand_side_accuracy", "contact_accuracy",
            "contact_boundary_iou")
GT_COUNTS = ("n_frames", "n_gt_hands", "n_gt_hands_holding")


def dvc_metrics(flat: dict) -> dict:
    """The subset tracked by DVC (metrics/score.json), chosen to be comparable across runs with an absolute
    tolerance: headline rates and class IoUs per method, the eval set's GT counts once as "evalset.*".
    Left out: prediction-dependent pixel/hand counts (they move by more than any tolerance on a one-pixel
    change), IoUs of classes absent from the GT (false positives only), and undefined values (None)."""
    out = {k: v for k, v in flat.items() if k.startswith("proposals.") and v is not None}
    methods = [m for m in dict.fromkeys(k.split(".", 1)[0] for k in flat) if m != "proposals"]
    out |= {f"evalset.{c}": flat[f"{methods[0]}.{c}"] for c in GT_COUNTS} if methods else {}
    for m in methods:
        present = [n for c, n in CLASS_NAMES.items() if flat.get(f"{m}.gt_pixels.{n}", 0) > 0]
        for key in [*HEADLINE, *(f"iou.{n}" for n in present)]:
            if flat.get(f"{m}.{key}") is not None:
                out[f"{m}.{key}"] = flat[f"{m}.{key}"]
    return out


def per_class_table(scorers: dict[str, Scorer]) -> pd.DataFrame:
    rows = []
    for m, s in scorers.items():
        iou = s.class_iou()
        for c, name in CLASS_NAMES.items():
            rows.append(dict(method=m, **{"class": name}, iou=None if (v := iou[c]) is None else round(v, DECIMALS),
                             gt_pixels=int(s.gt_px[c]), pred_pixels=int(s.pred_px[c])))
    return pd.DataFrame(rows, columns=["method", "class", "iou", "gt_pixels", "pred_pixels"])


def predict(inputs, method: str, models, params, out: Path, overlays: bool = True, write_labels: bool = True,
            on_frame=None) -> pd.DataFrame:
    """Narration-free prediction on (image_id, image) pairs; writes labels/ and boundary/ (EgoHOS PNGs, unless
    write_labels is off), overlays/, predictions.parquet. on_frame(ctx, rows, label_map) sees every frame (the
    COCO export and the HTML report collect through it)."""
    from pipeline.boundary import contact_boundary
    from pipeline.score_methods import NEEDS_GT, NEEDS_NARRATIONS, NEEDS_REGIONS
    from pipeline.score_shards import iter_contexts

    if method in NEEDS_NARRATIONS | NEEDS_GT:
        raise WishError(None, f"method {method!r} needs narrations or ground truth; `wish predict` has neither")
    rows = []
    items = ((image_id, image, None) for image_id, image in inputs)
    for ctx in tqdm(iter_contexts(items, models, params, with_regions=method in NEEDS_REGIONS), desc="predict",
                    unit="image"):
        image_id, image = ctx.image_id, ctx.image
        decisions, label_map = run_methods(ctx, [method], models, params)[method]
        frame_rows = prediction_rows(ctx, method, decisions, label_map)
        rows += frame_rows
        if write_labels:
            write_image(label_map, out / "labels" / f"{image_id}.png")
            write_image(contact_boundary(label_map, params.score.boundary_px).astype(np.uint8),
                        out / "boundary" / f"{image_id}.png")
        if on_frame is not None:
            on_frame(ctx, frame_rows, label_map)
        if overlays:
            write_image(with_legend(overlay(image, label_map), LABEL_LEGEND, f"{method} (no ground truth)"),
                        out / "overlays" / f"{image_id}.png")
    df = predictions_frame(rows)
    write_table(df, PREDICTIONS, out / "predictions.parquet", dict(method=method))
    return df

"""`wish predict` (narration-free inference on any images or video) and `wish evaluate` (score on any eval set)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages.common import ParamsOpt, RootOpt, setup

OUR_FILES = ("predictions.parquet", "metrics.json")


def predict(
    input: Path = typer.Argument(..., help="image, folder of images, eval-format dir or video file"),
    out: Path = typer.Option(..., "--out", help="output dir: labels/<id>.png, overlays/<id>.png, predictions.parquet"),
    params: Path = ParamsOpt,
    root: Path = RootOpt,
    method: str = typer.Option("wish", "--method", help="a method of score.methods (pipeline.score_methods.SPECS)"),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="video: every N-th frame (default score.video_stride)"),
    out_format: str = typer.Option("egohos", "--format", help="egohos: labels/<id>.png (default); coco: predictions.coco.json"),
    report: bool = typer.Option(True, "--report/--no-report", help="also write OUT/report.html (frames in order, hand timeline)"),
) -> None:
    """Segment the object held in each hand of every input image (no narration needed)."""
    from pipeline import predict as pp
    from pipeline.score_methods import load_checkpoints
    from pipeline.coco import CocoWriter, class_scores
    from pipeline.errors import WishError
    from pipeline.score import predict as run_predict
    from pipeline.io import atomic_dir
    from pipeline.report_sheets import PredictReport

    if not input.exists():
        raise WishError(input, "not found")
    if out_format not in ("egohos", "coco"):
        raise WishError(None, f"--format must be egohos or coco, not {out_format!r}")
    p = setup(params)
    check_methods([method])
    _check_out(out)
    inputs = pp.iter_inputs(input, stride or p.score.video_stride, p.frames.max_side)
    models = pp.build_models(p, root)
    load_checkpoints(models, [method])
    coco, page = CocoWriter(f"wish predict --method {method} {input}"), PredictReport(p.score)

    def on_frame(ctx, rows, label_map):
        if out_format == "coco":
            hand_scores = {s: ctx.hand(s).score for s in ("left", "right") if ctx.hand(s) is not None}
            coco.add(ctx.image_id, label_map, class_scores(hand_scores, {r["side"]: r for r in rows}))
        if report:
            page.add(ctx, rows, label_map)

    with atomic_dir(out) as tmp:
        df = run_predict(inputs, method, models, p, tmp, p.score.overlays, out_format == "egohos", on_frame)
        if out_format == "coco":
            coco.write(tmp / "predictions.coco.json")
        if report:
            page.write(tmp / "report.html", method)
    n_img = df["image_id"].nunique()
    typer.echo(f"predict: {n_img} images, {int(df['hand_found'].sum())} hands, {int(df['holds'].sum())} held objects "
               f"-> {out}")


def evaluate(
    evalset: Optional[Path] = typer.Option(None, "--evalset", help="eval-format dir (images/, labels/, manifest.csv, ...)"),
    visor: Optional[Path] = typer.Option(None, "--visor", help="VISOR annotation JSON(s), a dir or tar"),
    images: Optional[Path] = typer.Option(None, "--images", help="with --visor: EPIC frames, <video>/frame_XXXXXXXXXX.jpg"),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="with --visor: visor-frame-mapping.json"),
    exhaustive_only: bool = typer.Option(False, "--exhaustive-only", help="with --visor: only exhaustive frames"),
    out: Optional[Path] = typer.Option(None, "--out", help="output dir (default ROOT/evaluate/<evalset name>)"),
    params: Path = ParamsOpt,
    root: Path = RootOpt,
    methods: Optional[str] = typer.Option(None, "--methods", help="comma-separated (default score.methods)"),
    report: bool = typer.Option(True, "--report/--no-report", help="also write OUT/report.html"),
) -> None:
    """Score the model and the baselines on an eval set: metrics.json, per_class.csv, labels/, overlays/, report.html."""
    from pipeline import predict as pp
    from pipeline.score_methods import load_checkpoints
    from pipeline.score import evaluate as run_evaluate
    from pipeline.io import atomic_dir

    p = setup(params)
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else list(p.score.methods)
    check_methods(names)
    source = _eval_source(evalset, visor, images, mapping, exhaustive_only)
    out = out or root / "evaluate" / (evalset or visor).name.split(".")[0]
    _check_out(out)
    models = pp.build_models(p, root)
    load_checkpoints(models, names)
    with atomic_dir(out) as tmp:
        metrics = run_evaluate(source, names, models, p, tmp)
        if report:
            from pipeline.score import dvc_metrics
            from pipeline.report import write_eval_report

            write_eval_report(tmp, source, dvc_metrics(metrics), p.score, tmp / "report.html")
    typer.echo(summary(metrics))
    typer.echo(f"evaluate: metrics -> {out / 'metrics.json'}" + (f", report -> {out / 'report.html'}" if report else ""))


def _eval_source(evalset: Path | None, visor: Path | None, images: Path | None, mapping: Path | None,
                 exhaustive_only: bool):
    """An eval-format dir, or VISOR annotations + EPIC frames opened as the same kind of source."""
    from pipeline.data.evalset import load_evalset
    from pipeline.errors import WishError

    if (evalset is None) == (visor is None):
        raise WishError(None, "give exactly one of --evalset DIR or --visor ANNOTATIONS.json --images DIR")
    if evalset is not None:
        return load_evalset(evalset)
    if images is None:
        raise WishError(visor, "--visor needs --images DIR (the EPIC frames the annotations refer to)")
    from pipeline.data.visor import load_visor_evalset

    source = load_visor_evalset(visor, images, mapping, exhaustive_only)
    typer.echo(f"evaluate: {len(source.frames)} VISOR frames with images ({source.missing} without, "
               f"{source.not_exhaustive} not exhaustive)")
    return source


def check_methods(names: list[str]) -> None:
    from pipeline.score_methods import METHODS
    from pipeline.errors import WishError

    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise WishError(None, f"unknown method(s) {unknown}; known: {sorted(METHODS)}")


def _check_out(out: Path) -> None:
    """The output dir is replaced as a whole, so refuse to replace a non-empty dir we did not write."""
    from pipeline.errors import WishError

    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not any((out / f).exists() for f in OUR_FILES))):
        raise WishError(out, "exists and is not a wish output dir; it would be replaced: choose another --out")


def summary(metrics: dict) -> str:
    """One line per method with the headline numbers."""
    methods = [m for m in dict.fromkeys(k.split(".", 1)[0] for k in metrics) if m != "proposals"]
    cols = ("object_miou", "hand_miou", "hand_recall", "hand_side_accuracy", "contact_accuracy")
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [f"{'method':<20}" + "".join(f"{c:>20}" for c in cols)]
    for m in methods:
        lines.append(f"{m:<20}" + "".join(f"{fmt(metrics.get(f'{m}.{c}')):>20}" for c in cols))
    if metrics.get("proposals.mean_best_iou") is not None:
        lines.append(f"proposals: recall@IoU0.5 {metrics['proposals.recall_iou0.5']:.3f}, mean best IoU "
                     f"{metrics['proposals.mean_best_iou']:.3f} over {metrics['proposals.n_gt_objects']} GT objects")
    return "\n".join(lines)

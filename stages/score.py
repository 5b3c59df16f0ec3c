"""Stage `score`: the trained model and every baseline on score.evalset, scored the same way.

Writes ROOT/score/ (metrics.json with every number, predictions.parquet, labels/<method>/, overlays/,
per_frame.csv, boundary/) and the DVC files METRICS_DIR/score.json (flat "method.metric" keys, the stable subset chosen by
pipeline.score.dvc_metrics), METRICS_DIR/per_class.csv (method, class, iou: for `dvc plots`) and
METRICS_DIR/report.html (pipeline.report: every eval frame side by side, the table of score.json, pseudo-labels).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages.common import ParamsOpt, RootOpt, setup

DVC_ROOT, DVC_METRICS = Path("artifacts"), Path("metrics")
MetricsOpt = typer.Option(None, "--out", "--metrics-dir",
                          help="where score.json and per_class.csv go (default: ./metrics with the pipeline's "
                               "--root artifacts, as dvc.yaml declares; ROOT/metrics with any other --root)")


def run(params: Path = ParamsOpt, root: Path = RootOpt, metrics_dir: Optional[Path] = MetricsOpt) -> None:
    """Evaluate score.methods on score.evalset with the artifacts under ROOT; every output stays under ROOT
    unless --out says otherwise (the DVC pipeline's default root keeps its committed ./metrics)."""
    import pandas as pd

    from pipeline import predict as pp
    from pipeline.data.evalset import load_evalset
    from pipeline.perceive import usable_perception
    from pipeline.score_methods import load_checkpoints
    from pipeline.score import dvc_metrics, evaluate
    from pipeline.io import atomic_dir, write_csv, write_json
    from stages.predict import check_methods, summary

    metrics_dir = metrics_dir or default_metrics_dir(root)
    p = setup(params)
    methods = list(p.score.methods)
    check_methods(methods)
    check_no_leak(root, p.score.evalset)
    models = pp.build_models(p, root)
    load_checkpoints(models, methods)
    es = load_evalset(p.score.evalset)
    perception, how = usable_perception(root / "perceive", es, p)
    typer.echo(f"score: {how}")
    with atomic_dir(root / "score") as out:
        metrics = evaluate(es, methods, models, p, out, perception)
    tracked = dvc_metrics(metrics)
    write_json(tracked, metrics_dir / "score.json")
    write_report(root, p, tracked, metrics_dir / "report.html")
    per_class = pd.read_csv(root / "score" / "per_class.csv")[["method", "class", "iou"]].dropna()  # undefined IoUs
    write_csv(per_class, metrics_dir / "per_class.csv")
    typer.echo(summary(metrics))
    typer.echo(f"score: {metrics_dir / 'score.json'}, {metrics_dir / 'per_class.csv'}, {metrics_dir / 'report.html'}, "
               f"{root / 'score'}/")


def write_report(root: Path, p, tracked: dict, path: Path) -> None:
    """The HTML report of ROOT/score with the numbers of score.json and the training pseudo-label sheet
    (`wish report ROOT/score --metrics score.json --sheet` writes the same bytes)."""
    from pipeline.data.evalset import load_evalset
    from pipeline.report import write_eval_report
    from pipeline.report_sheets import pseudolabel_sheet

    write_eval_report(root / "score", load_evalset(p.score.evalset), tracked, p.score, path, pseudolabel_sheet(root, p.score))


def default_metrics_dir(root: Path) -> Path:
    return DVC_METRICS if root == DVC_ROOT else root / "metrics"


def check_no_leak(root: Path, evalset: str) -> None:
    """Refuse to score on videos the model was trained on (ROOT/frames/frames.parquet, when present)."""
    from pipeline.data.evalset import eval_video_ids, refuse_eval_videos
    from pipeline.io import read_table
    from pipeline.schemas import FRAMES

    frames_path = root / "frames" / "frames.parquet"
    if not frames_path.is_file():
        return
    refuse_eval_videos(read_table(frames_path, FRAMES)["video_id"], eval_video_ids([evalset]), frames_path,
                       "scores would be inflated")

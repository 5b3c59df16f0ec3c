"""`wish report`: the HTML report of an existing `wish evaluate` / `score` output dir, or of a `wish predict` one.

    wish report artifacts/score --metrics metrics/score.json --sheet --out report.html   # = metrics/report.html
    wish report eval/visor_val --visor val/ --images EPIC-KITCHENS/                      # a VISOR-direct evaluation
    wish report preds/ --input video.mp4                                                 # a predict dir (re-reads frames)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(
    result: Path = typer.Argument(..., help="output dir of wish evaluate, the score stage or wish predict"),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default RESULT/report.html)"),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="flat metrics JSON for the table (default: from RESULT/metrics.json)"),
    evalset: Optional[Path] = typer.Option(None, "--evalset", help="the eval set RESULT was scored on (default: as recorded)"),
    visor: Optional[Path] = typer.Option(None, "--visor", help="or the VISOR annotations it was scored on ..."),
    images: Optional[Path] = typer.Option(None, "--images", help="... with their EPIC frames"),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="visor-frame-mapping.json, as given to evaluate"),
    input: Optional[Path] = typer.Option(None, "--input", help="predict dirs: the images / video that were predicted"),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="predict dirs on a video: as given to predict"),
    sheet: bool = typer.Option(False, "--sheet", help="add the pseudo-label sheet of the training frames under ROOT"),
    params: Path = ParamsOpt,
    root: Path = RootOpt,
) -> None:
    """Write the self-contained HTML report of RESULT."""
    from pipeline.errors import WishError
    from pipeline.io import table_meta

    p = setup(params)
    out = out or result / "report.html"
    if not (result / "predictions.parquet").is_file():
        raise WishError(result, "not a wish output dir (no predictions.parquet)")
    if not (result / "metrics.json").is_file():
        _predict_report(result, input, stride, p, out, table_meta(result / "predictions.parquet").get("method", ""))
    else:
        _eval_report(result, metrics, evalset, visor, images, mapping, sheet, p, root, out)
    typer.echo(f"report: {out}")


def _eval_report(result, metrics, evalset, visor, images, mapping, sheet, p, root, out) -> None:
    from pipeline.errors import WishError
    from pipeline.score import dvc_metrics
    from pipeline.io import table_meta
    from pipeline.report import write_eval_report
    from pipeline.report_sheets import pseudolabel_sheet
    from stages.predict import _eval_source

    if evalset is None and visor is None:
        evalset = Path(table_meta(result / "predictions.parquet").get("evalset", ""))
        if not (evalset / "manifest.csv").is_file():
            raise WishError(result, f"scored on {evalset}, not an eval-format dir: give --evalset or --visor/--images")
    source = _eval_source(evalset, visor, images, mapping, False)
    path = metrics or result / "metrics.json"
    numbers = json.loads(path.read_text())
    table = numbers if metrics else dvc_metrics(numbers)
    write_eval_report(result, source, table, p.score, out, pseudolabel_sheet(root, p.score) if sheet else "")


def _predict_report(result, input, stride, p, out, method) -> None:
    """Re-read the predicted frames (PNG label maps and rows come from RESULT) and write the predict page."""
    import numpy as np
    from PIL import Image

    from pipeline import predict as pp
    from pipeline.errors import WishError
    from pipeline.io import read_table
    from pipeline.report_sheets import PredictReport
    from pipeline.schemas import PREDICTIONS

    if input is None:
        raise WishError(result, "a predict dir: give --input (the images or video that were predicted)")
    rows = read_table(result / "predictions.parquet", PREDICTIONS)
    by_image = {k: g.to_dict("records") for k, g in rows.groupby("image_id")}
    page = PredictReport(p.score)
    for image_id, image in pp.iter_inputs(input, stride or p.score.video_stride, p.frames.max_side):
        label_path = result / "labels" / f"{image_id}.png"
        if image_id not in by_image or not label_path.is_file():
            raise WishError(label_path, f"{image_id} of {input} has no prediction here (--format coco dirs: re-run predict)")
        page.add(pp.FrameContext(image_id, image, [], {}, []), by_image[image_id], np.array(Image.open(label_path)))
    page.write(out, method)

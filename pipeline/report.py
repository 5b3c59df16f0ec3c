"""Self-contained HTML reports: one static page, every image inlined as a small JPEG (no server, no network).

- `write_eval_report`: after pipeline.score.evaluate. The metrics table renders every "method.metric" key of
  the given metrics dict (metrics/score.json for the `score` stage), whatever methods it has; then per eval frame
  the image, GT and each method side by side (contact boundary in white), per-class and contact-boundary IoU, the
  chosen region's scores per hand, and failure kinds; sortable / filterable by method, IoU and failure kind.
  Optionally the pseudo-label sheet of the training frames, per clip (pipeline.report_sheets).
- `PredictReport`: collects `wish predict` frames in order and writes a page with a per-video timeline of
  which hand holds what.

Failure kinds, per method, frame and GT hand (the rules of pipeline.metrics):
  missed_hand   no predicted hand mask reaches IoU 0.5 with the GT hand
  wrong_side    the best-matching predicted hand mask has the other side
  wrong_contact the prediction says the hand holds something and GT does not, or the reverse
  wrong_region  both say it holds something but the predicted object of that hand has IoU < 0.5 with GT's
"""
from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pipeline.metrics import BOTH, CLASS_NAMES, MATCH_IOU, OBJECT_OF_HAND, SIDE_OF_HAND, mask_iou, score_frame

FAILURES = ("missed_hand", "wrong_side", "wrong_contact", "wrong_region")
GT_ROW = "evalset"  # pipeline.score.dvc_metrics puts the eval set's GT counts under this prefix


# ---------------------------------------------------------------------------------------------- images


def thumbnail(img: np.ndarray, side: int, quality: int) -> str:
    """data: URI of `img` (RGB uint8) as a JPEG whose longer side is at most `side`."""
    import cv2

    h, w = img.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a report thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def labelled_overlay(image: np.ndarray, label_map: np.ndarray, boundary_px: int) -> np.ndarray:
    """The label map over the image (pipeline.labelmap.overlay), its contact boundary painted white."""
    from pipeline.boundary import contact_boundary
    from pipeline.labelmap import overlay

    out = overlay(image, label_map)
    out[contact_boundary(label_map, boundary_px)] = 255
    return out


# ---------------------------------------------------------------------------------------------- numbers


def fmt(v) -> str:
    """Numbers as metrics/score.json holds them (4 decimals there), '–' when undefined."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool) or isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.4f}"


def frame_numbers(pred: np.ndarray, gt: np.ndarray, boundary_px: int) -> dict:
    """Per-frame IoU of every class (None where both are empty), contact-boundary IoU and failures."""
    fs = score_frame(pred, gt, boundary_px)
    iou = {CLASS_NAMES[c]: (float(fs.inter[c] / fs.union[c]) if fs.union[c] else None) for c in CLASS_NAMES}
    bi, bu = fs.boundary
    present = [v for c in (3, 4, 5) if fs.gt_px[c] and (v := iou[CLASS_NAMES[c]]) is not None]  # GT: IoU defined
    failures = []
    for h in fs.hands:
        side = SIDE_OF_HAND[h["hand_class"]]
        if not h["matched"]:
            failures.append(("missed_hand", side))
        elif not h["side_correct"]:
            failures.append(("wrong_side", side))
        if h["gt_holds"] != h["pred_holds"]:
            failures.append(("wrong_contact", side))
        elif h["gt_holds"]:
            obj = OBJECT_OF_HAND[h["hand_class"]]
            if mask_iou((pred == obj) | (pred == BOTH), (gt == obj) | (gt == BOTH)) < MATCH_IOU:
                failures.append(("wrong_region", side))
    return dict(iou=iou, boundary_iou=bi / bu if bu else None, object_iou=float(np.mean(present)) if present else None,
                failures=failures)


def metric_rows(metrics: dict, methods: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(row prefixes, column suffixes) of flat "row.metric" keys, in an order that does not depend on the dict's
    (score.json is written sorted): scored methods in their order, other rows sorted, the GT counts row last;
    headline metrics first, the others sorted."""
    from pipeline.score import HEADLINE

    found = {k.split(".", 1)[0] for k in metrics}
    rows = [m for m in methods if m in found] + sorted(found - set(methods) - {GT_ROW}) + sorted(found & {GT_ROW})
    suffixes = {k.split(".", 1)[1] for k in metrics if "." in k}
    cols = [c for c in HEADLINE if c in suffixes] + sorted(suffixes - set(HEADLINE))
    return rows, cols


def metrics_table(metrics: dict, methods: Sequence[str] = ()) -> str:
    """Every key of `metrics` in one table (a row per prefix, a column per metric); cells carry data-key."""
    rows, cols = metric_rows(metrics, methods)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = "".join(f'<td data-key="{html.escape(f"{r}.{c}")}">{fmt(metrics[f"{r}.{c}"])}</td>'
                        if f"{r}.{c}" in metrics else "<td></td>" for c in cols)
        body.append(f'<tr data-row="{html.escape(r)}"><th>{html.escape(r)}</th>{cells}</tr>')
    return f'<table id="metrics"><thead><tr><th>method</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


# ---------------------------------------------------------------------------------------------- eval report


def _choice_text(row) -> str:
    if row is None or not row.hand_found:
        return "no hand"
    if not row.holds:
        return f"none (contact {fmt(row.contact_prob)})"
    drawn = CLASS_NAMES.get(int(row.label), "not drawn")
    return f"region {row.mask_id} as {drawn} (contact {fmt(row.contact_prob)}, match {fmt(row.match_prob)})"


def frame_card(image_id: str, video_id: str, panels: list[tuple[str, str]], numbers: dict[str, dict],
               choices: dict[str, dict]) -> str:
    """One eval frame: panels = (caption, data URI) for image, GT and each method; a table of numbers."""
    attrs = "".join(f' data-iou-{html.escape(m)}="{"" if n["object_iou"] is None else round(n["object_iou"], 4)}"'
                    f' data-fail-{html.escape(m)}="{" ".join(sorted({k for k, _ in n["failures"]}))}"'
                    for m, n in numbers.items())
    figs = "".join(f'<figure><img loading="lazy" decoding="async" src="{uri}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}</figcaption>'
                   f"</figure>" for cap, uri in panels)
    classes = list(CLASS_NAMES.values())
    head = "".join(f"<th>{c}</th>" for c in [*classes, "contact_boundary", "left hand", "right hand", "failures"])
    rows = []
    for m, n in numbers.items():
        # data-frame-key, not data-key: only the metrics table holds dataset numbers (those of score.json)
        ious = "".join(f'<td data-frame-key="{m}.iou.{c}">{fmt(n["iou"][c])}</td>' for c in classes)
        fails = ", ".join(f"{k} ({s})" for k, s in n["failures"]) or "–"
        rows.append(f'<tr><th>{html.escape(m)}</th>{ious}<td data-frame-key="{m}.contact_boundary_iou">'
                    f'{fmt(n["boundary_iou"])}</td><td>{html.escape(choices[m]["left"])}</td>'
                    f'<td>{html.escape(choices[m]["right"])}</td><td class="fail">{html.escape(fails)}</td></tr>')
    return (f'<section class="frame" id="f-{html.escape(image_id)}" data-id="{html.escape(image_id)}"{attrs}>'
            f"<h3>{html.escape(image_id)} <small>{html.escape(video_id)}</small></h3><div class=\"panels\">{figs}</div>"
            f'<table class="per-frame"><thead><tr><th>method</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table></section>")


def eval_cards(out_dir: Path, source, methods: list[str], sp) -> list[str]:
    """A frame card per frame of `source`, from OUT's labels/<method>/ and predictions.parquet."""
    from tqdm import tqdm

    from pipeline.io import read_table
    from pipeline.schemas import PREDICTIONS

    preds = read_table(out_dir / "predictions.parquet", PREDICTIONS)
    by_key = {(r.image_id, r.method, r.side): r for r in preds.itertuples()}
    cards = []
    for frame in tqdm(shown_frames(source.frames, sp.report_max_frames), desc="report", unit="frame"):
        image, gt = source.image(frame), source.labels(frame)
        panels = [("image", thumbnail(image, sp.report_side, sp.report_quality)),
                  ("GT", thumbnail(labelled_overlay(image, gt, sp.boundary_px), sp.report_side, sp.report_quality))]
        numbers, choices = {}, {}
        for m in methods:
            pred = _read_label_map(out_dir / "labels" / m / f"{frame.image_id}.png")
            panels.append((m, thumbnail(labelled_overlay(image, pred, sp.boundary_px), sp.report_side, sp.report_quality)))
            numbers[m] = frame_numbers(pred, gt, sp.boundary_px)
            choices[m] = {s: _choice_text(by_key.get((frame.image_id, m, s))) for s in ("left", "right")}
        cards.append(frame_card(frame.image_id, frame.video_id, panels, numbers, choices))
    return cards


def shown_frames(frames: list, limit: int) -> list:
    """All frames, or an evenly spaced sample of `limit` of them."""
    if len(frames) <= limit:
        return list(frames)
    return [frames[i] for i in np.unique(np.linspace(0, len(frames) - 1, limit).astype(int))]


def _read_label_map(path: Path) -> np.ndarray:
    from PIL import Image

    from pipeline.errors import WishError

    if not path.is_file():
        raise WishError(path, "label map missing (was the method scored?)")
    return np.array(Image.open(path))


def write_eval_report(out_dir: str | Path, source, metrics: dict, sp, path: str | Path,
                      sheet_html: str = "", title: str = "wish evaluation") -> Path:
    """The evaluation page for an evaluate() output dir; `metrics` fills the table (e.g. dvc_metrics(...))."""
    from pipeline.io import table_meta

    out_dir = Path(out_dir)
    methods = [m for m in table_meta(out_dir / "predictions.parquet").get("methods", "").split(",") if m]
    controls = _controls(methods)
    n, shown = len(source.frames), min(len(source.frames), sp.report_max_frames)
    sample = f" ({shown} evenly spaced ones shown: score.report_max_frames)" if shown < n else ""
    body = (f"<h1>{html.escape(title)}</h1><p>{n} frames of {html.escape(str(source.root))}{sample}; "
            f"colours: left hand blue, right hand green, left object yellow, right object magenta, both red; "
            f"contact boundary white ({sp.boundary_px} px).</p>"
            f"<h2>Metrics</h2>{metrics_table(metrics, methods)}<h2>Frames</h2>{controls}"
            f'<div id="frames">{"".join(eval_cards(out_dir, source, methods, sp))}</div>{sheet_html}')
    return write_page(path, title, body)


def _controls(methods: list[str]) -> str:
    opts = "".join(f'<option value="{html.escape(m)}">{html.escape(m)}</option>' for m in methods)
    fails = "".join(f'<option value="{f}">{f.replace("_", " ")}</option>' for f in FAILURES)
    return (f'<div id="controls">method <select id="method">{opts}</select> sort '
            '<select id="order"><option value="asc">object IoU ↑</option><option value="desc">object IoU ↓</option>'
            '<option value="id">frame id</option></select> failure <select id="failure"><option value="">any</option>'
            f'{fails}<option value="none">none</option></select> IoU ≤ <input id="maxiou" type="number" min="0" '
            'max="1" step="0.05" value="1"> <span id="shown"></span></div>')


def write_page(path: str | Path, title: str, body: str) -> Path:
    """The page shell (inline CSS and JS from pipeline.report_assets), written atomically."""
    from pipeline.io import atomic_path

    from pipeline.report_assets import CSS, JS

    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}<script>{JS}</script></body></html>")
    with atomic_path(path, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)

"""The report's other pages and sections: the pseudo-label sheet of the training frames (per clip) and the
`wish predict` page (frames of each video in order, with a timeline of which hand holds what)."""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from pipeline.report import fmt, labelled_overlay, thumbnail, write_page

# Training clips can have hundreds of frames; an evenly spaced sample keeps the page small (< 20 MB target).
SHEET_FRAMES_PER_CLIP = 24
STATE_COLORS = {"no hand": "#dddddd", "free": "#9fb3c8", "left": "#ffc800", "right": "#ff28c8", "both": "#ff2828"}


def pseudolabel_sheet(root: str | Path, sp) -> str:
    """HTML section: per training clip, frames with each hand's pseudo-labelled region and its phrase/score.
    Reads ROOT/{pseudolabel/pseudolabels.parquet, frames/frames.parquet, masks/masks.parquet}."""
    from pipeline.io import read_table
    from pipeline.schemas import FRAMES, MASKS, PSEUDOLABELS

    root = Path(root)
    paths = [root / "pseudolabel" / "pseudolabels.parquet", root / "frames" / "frames.parquet", root / "masks" / "masks.parquet"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        return f"<h2>Pseudo-labels</h2><p>Not shown: {html.escape(', '.join(missing))} missing.</p>"
    labels, frames = read_table(paths[0], PSEUDOLABELS), read_table(paths[1], FRAMES)
    frames = frames[frames["frame_id"].isin(set(labels["frame_id"]))]
    ids = set(frames["frame_id"])
    masks = read_table(paths[2], MASKS)
    masks = masks[masks["frame_id"].isin(ids)]
    by_frame = {f: g for f, g in labels.groupby("frame_id")}
    rles = {(r.frame_id, r.kind, r.mask_id if r.kind == "object" else r.side): r for r in masks.itertuples()}
    clips = []
    for source, g in frames.sort_values(["source", "clip_index"]).groupby("source", sort=True):
        pick = np.unique(np.linspace(0, len(g) - 1, min(len(g), SHEET_FRAMES_PER_CLIP)).astype(int))
        figs = "".join(_sheet_figure(root, r, by_frame[r.frame_id], rles, sp) for r in g.iloc[pick].itertuples())
        clips.append(f'<section class="clip"><h3>{html.escape(Path(str(source)).name)} <small>{len(g)} frames, '
                     f'{len(pick)} shown</small></h3><div class="panels sheet">{figs}</div></section>')
    return (f"<h2>Pseudo-labels (training frames)</h2><p>{len(ids)} frames in {len(clips)} clips; filled: the region "
            f"each hand is labelled as holding (left orange, right cyan), with the phrase and score.</p>{''.join(clips)}")


def _sheet_figure(root: Path, frame, rows, rles: dict, sp) -> str:
    from pipeline import rle as rle_utils
    from pipeline.io import read_image
    from pipeline.overlay import COLORS, OBJECT_COLORS, fill_mask, fit_to

    img = fit_to(read_image(root / "frames" / frame.image_path), int(frame.height), int(frame.width))
    captions = []
    for r in rows.sort_values("side").itertuples():
        hand = rles.get((frame.frame_id, "hand", r.side))
        if hand is not None:
            img = fill_mask(img, rle_utils.decode(hand.rle, hand.height, hand.width), COLORS[r.side], 0.25)
        obj = rles.get((frame.frame_id, "object", int(r.mask_id))) if r.mask_id >= 0 else None
        if obj is not None:
            img = fill_mask(img, rle_utils.decode(obj.rle, obj.height, obj.width), OBJECT_COLORS[r.side])
        what = f"{r.phrase or r.source} {fmt(r.match_score)}" if r.mask_id >= 0 else "none"
        captions.append(f"{r.side[0].upper()}: {what}")
    cap = html.escape(f"{frame.clip_index}: " + " | ".join(captions))
    uri = thumbnail(img, max(64, sp.report_side // 2), sp.report_quality)
    return f'<figure><img loading="lazy" decoding="async" src="{uri}" alt="{html.escape(frame.frame_id)}"><figcaption>{cap}</figcaption></figure>'


# ---------------------------------------------------------------------------------------------- predict page


def hand_state(row: dict) -> str:
    """no hand / free / left / right / both: what a prediction row says its hand holds (label = EgoHOS id)."""
    if not row["hand_found"]:
        return "no hand"
    if not row["holds"]:
        return "free"
    return {3: "left", 4: "right", 5: "both"}.get(int(row["label"]), "free")


def video_of(image_id: str) -> str:
    """Frames of `wish predict` on a video are named <video stem>_frame_NNNNNN; other inputs form one group."""
    return image_id.rsplit("_frame_", 1)[0] if "_frame_" in image_id else "images"


class PredictReport:
    """Collects predicted frames (pipeline.score.predict's on_frame) and writes the predict page."""

    def __init__(self, sp):
        self.sp = sp
        self.frames: list[tuple[str, str, dict[str, dict]]] = []  # (image_id, thumbnail, {side: row})

    def add(self, ctx, rows: list[dict], label_map: np.ndarray) -> None:
        uri = thumbnail(labelled_overlay(ctx.image, label_map, self.sp.boundary_px), self.sp.report_side,
                        self.sp.report_quality)
        self.frames.append((ctx.image_id, uri, {r["side"]: r for r in rows}))

    def write(self, path: str | Path, method: str) -> Path:
        groups: dict[str, list] = {}
        for item in self.frames:
            groups.setdefault(video_of(item[0]), []).append(item)
        legend = " ".join(f'<span style="background:{c};padding:0 6px">{html.escape(s)}</span>'
                          for s, c in STATE_COLORS.items())
        body = [f"<h1>wish predict ({html.escape(method)})</h1><p>{len(self.frames)} frames, {len(groups)} "
                f"video(s) or folder(s). Timeline: per hand, what it holds in each frame (click a cell for the frame): {legend}; "
                f"'left'/'right' = drawn as that hand's object, 'both' = one object in both hands.</p>"]
        for name, items in groups.items():
            body.append(f'<section class="video"><h2>{html.escape(name)}</h2>{timeline(items)}'
                        f'<div class="panels">{"".join(_predict_figure(i) for i in items)}</div></section>')
        return write_page(path, f"wish predict: {method}", "".join(body))


def timeline(items: list) -> str:
    """SVG: one row per hand side, one cell per frame (in input order), coloured by hand_state."""
    cell, label_w, n = 14, 44, len(items)
    width = label_w + cell * max(n, 1)
    parts = [f'<svg class="timeline" width="{width}" height="{2 * cell + 16}" viewBox="0 0 {width} {2 * cell + 16}">']
    for k, side in enumerate(("left", "right")):
        y = 2 + k * (cell + 2)
        parts.append(f'<text x="0" y="{y + cell - 3}">{side}</text>')
        for i, (image_id, _, rows) in enumerate(items):
            row = rows.get(side, dict(hand_found=False, holds=False, label=0))
            state = hand_state(row)
            tip = f"{image_id} {side}: {state}" + (f" region {row['mask_id']} p={_p(row)}" if row.get("holds") else "")
            parts.append(f'<a href="#f-{html.escape(image_id)}"><rect data-state="{state}" x="{label_w + i * cell}" '
                         f'y="{y}" width="{cell}" height="{cell}" fill="{STATE_COLORS[state]}">'
                         f"<title>{html.escape(tip)}</title></rect></a>")
    parts.append("</svg>")
    return "".join(parts)


def _p(row: dict) -> str:
    vals = [v for v in (row.get("contact_prob"), row.get("match_prob")) if v is not None and not math.isnan(v)]
    return fmt(float(np.prod(vals))) if vals else "–"


def _side_caption(row: dict) -> str:
    state = hand_state(row)
    if state in ("no hand", "free"):
        return state
    return f"region {row['mask_id']} as {'both-hands' if state == 'both' else state + '-hand'} object, p {_p(row)}"


def _predict_figure(item) -> str:
    image_id, uri, rows = item
    cap = " | ".join(f"{s[0].upper()}: {_side_caption(rows[s])}" for s in ("left", "right") if s in rows)
    name = image_id.rsplit("_frame_", 1)[1] if "_frame_" in image_id else image_id  # the group names the video
    return (f'<figure class="frame" id="f-{html.escape(image_id)}"><img loading="lazy" decoding="async" src="{uri}" alt="{html.escape(image_id)}">'
            f"<figcaption>frame {html.escape(name)}<br>{html.escape(cap)}</figcaption></figure>")

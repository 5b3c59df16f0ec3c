"""Pseudo-label quality where it can be measured without masks: the weak labels of training frames, temporal
consistency within a clip, what the picks look like (size, proposer rank), and a by-eye sheet per clip.

Weak labels (never used to make the labels): clips.csv stable-grasp clips (the named `hand` holds
`object_category` through the whole clip) and extra_frames.csv (`weak_hand` holds `weak_object` during
[weak_segment_start, weak_segment_end]). Measured: how often the named hand is labelled as holding something,
and how often the other hand is (a rule that labels every hand scores 1.0 on both and tells nothing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import rle as rle_utils
from pipeline.regions import FrameRegions

OTHER = {"left": "right", "right": "left"}


def weak_hands(frames: pd.DataFrame, clips_csv: str | Path | None, extra_csv: str | Path | None) -> dict[str, str]:
    """{frame_id: named hand} for training frames that have a weak label."""
    out: dict[str, str] = {}
    if clips_csv and Path(clips_csv).is_file():
        clips = pd.read_csv(clips_csv)
        named = {Path(f).name: h for f, k, h in zip(clips["file"], clips["kind"], clips["hand"]) if k == "stablegrasp"}
        for fid, src in zip(frames["frame_id"], frames["source"]):
            if Path(src).name in named:
                out[str(fid)] = named[Path(src).name]
    if extra_csv and Path(extra_csv).is_file():
        ex = pd.read_csv(extra_csv)
        ex = ex[ex["weak_hand"].isin(["left", "right"])]
        key = {(v, int(n)): h for v, n, h in zip(ex["video_id"], ex["epic_frame"], ex["weak_hand"])}
        for fid, v, n in zip(frames["frame_id"], frames["video_id"], frames["epic_frame"]):
            if (v, int(n)) in key:
                out[str(fid)] = key[(v, int(n))]
    return out


def weak_label_rates(labels: pd.DataFrame, named: dict[str, str]) -> dict:
    held = {(r.frame_id, r.side): bool(r.label) for r in labels.itertuples()}
    ids = [f for f in named if (f, "left") in held]
    if not ids:
        return {"weak_frames": 0}
    return {"weak_frames": len(ids),
            "named_hand_holds": float(np.mean([held[(f, named[f])] for f in ids])),
            "other_hand_holds": float(np.mean([held[(f, OTHER[named[f]])] for f in ids]))}


def consecutive_ious(labels: pd.DataFrame, regions: dict[str, FrameRegions], tracks: list[list[str]]) -> list[float]:
    """Mask IoU of the region chosen for the same hand in consecutive labelled frames of a clip."""
    pick = {(r.frame_id, r.side): int(r.mask_id) for r in labels.itertuples() if r.label}
    out = []
    for track in tracks:
        for a, b in zip(track, track[1:]):
            for side in ("left", "right"):
                if (a, side) in pick and (b, side) in pick:
                    fa, fb = regions[a], regions[b]
                    ma = rle_utils.decode(fa.rles[fa.index_of(pick[(a, side)])], fa.height, fa.width)
                    mb = rle_utils.decode(fb.rles[fb.index_of(pick[(b, side)])], fb.height, fb.width)
                    if ma.shape == mb.shape:
                        union = np.count_nonzero(ma | mb)
                        out.append(np.count_nonzero(ma & mb) / union if union else 0.0)
    return out


def pick_stats(labels: pd.DataFrame, regions: dict[str, FrameRegions]) -> dict:
    """Median area of the picked region relative to its hand's mask, and its median proposer rank (mask_id)."""
    from pycocotools import mask as mask_utils

    ratios, ranks = [], []
    for r in labels[labels["label"]].itertuples():
        fr = regions[r.frame_id]
        hand = fr.hands[r.side]
        i = fr.index_of(int(r.mask_id))
        if i < 0 or hand.rle is None:
            continue
        area = float(mask_utils.area({"size": [fr.height, fr.width], "counts": hand.rle.encode("ascii")}))
        ratios.append(fr.areas[i] / max(area, 1.0))
        ranks.append(int(r.mask_id))
    return {"pick_area_over_hand_median": float(np.median(ratios)) if ratios else None,
            "pick_rank_median": float(np.median(ranks)) if ranks else None}


def quality(labels: pd.DataFrame, regions: dict[str, FrameRegions], frames: pd.DataFrame, tracks: list[list[str]],
            clips_csv=None, extra_csv=None) -> dict:
    ious = consecutive_ious(labels, regions, tracks)
    return {**weak_label_rates(labels, weak_hands(frames, clips_csv, extra_csv)),
            "consecutive_iou_median": float(np.median(ious)) if ious else None, "consecutive_pairs": len(ious),
            **pick_stats(labels, regions)}


def clip_sheet(images: list[np.ndarray], regions: list[FrameRegions], rows: list[pd.DataFrame],
               crop: int = 160) -> np.ndarray:
    """One row per hand side, one column per frame: a crop around the hand with the picked region filled
    (orange/cyan) and the hand box outlined, for looking at a clip's pseudo-labels by eye."""
    import cv2

    from pipeline.overlay import COLORS, OBJECT_COLORS, draw_box, fill_mask, fit_to

    lines = []
    for side in ("left", "right"):
        cells = []
        for img, fr, g in zip(images, regions, rows):
            img = fit_to(img, fr.height, fr.width)
            hand = fr.hands[side]
            r = g[g["side"] == side]
            if len(r) and bool(r["label"].iloc[0]):
                i = fr.index_of(int(r["mask_id"].iloc[0]))
                if i >= 0:
                    img = fill_mask(img, rle_utils.decode(fr.rles[i], fr.height, fr.width), OBJECT_COLORS[side])
            if hand.present:
                img = draw_box(img, hand.box, COLORS[side])
                cx, cy = (hand.box[:2] + hand.box[2:]) / 2
                half = max(hand.box[2] - hand.box[0], hand.box[3] - hand.box[1])
            else:
                cx, cy, half = fr.width / 2, fr.height / 2, fr.height / 2
            x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
            cell = img[y0:int(cy + half), x0:int(cx + half)]
            cells.append(cv2.resize(cell if cell.size else img, (crop, crop), interpolation=cv2.INTER_AREA))
        lines.append(np.concatenate(cells, 1))
    return np.concatenate(lines, 0)

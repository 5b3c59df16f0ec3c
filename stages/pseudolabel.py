"""Stage `pseudolabel`: per training frame and hand side, the region it holds (or none), from the narration
through Stage 1 adapters, from motion responsibility, or both fused (pseudolabel.source)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Write ROOT/pseudolabel/{pseudolabels.parquet,summary.json,overlays/*.png}."""
    from pipeline.align import load_adapters, narration_texts, training_narrations
    from pipeline.data.evalset import eval_video_ids
    from pipeline.embed.cache import lookup_texts
    from pipeline.errors import WishError
    from pipeline.io import atomic_dir, read_table, write_json, write_table
    from pipeline.plcheck import quality
    from pipeline.pseudolabel import holding_narrations, motion_by_frame, pseudolabel_frames
    from pipeline.regions import load_frame_regions
    from pipeline.schemas import FRAMES, MOTION_SCORES, PHRASES, PSEUDOLABELS

    p = setup(params)
    pl = p.pseudolabel
    frames_path = root / "frames" / "frames.parquet"
    frames = read_table(frames_path, FRAMES)
    phrases = read_table(root / "nouns" / "phrases.parquet", PHRASES)
    narrated = training_narrations(frames, phrases, eval_video_ids(p.common.eval_dirs), frames_path)
    # a frame narrated only by "look at the pan" stays in (narrated) with no texts: no hand holds anything
    holding = set(phrases.loc[holding_narrations(phrases, pl.no_hold_verbs), "narration_id"].astype(str))
    narrs = {f: [n for n in nids if n in holding] for f, nids in narrated.items()}
    motion_df = None
    train = frames[(frames["split"] == "train") & ~frames["video_id"].isin(eval_video_ids(p.common.eval_dirs))]
    ids = set(narrated) if pl.source == "narration" else set(train["frame_id"])
    if pl.source in ("motion", "fused"):
        motion_df = read_table(root / "responsibility" / "motion_scores.parquet", MOTION_SCORES)
    if not ids:
        raise WishError(frames_path, f"no training frame has a label source for pseudolabel.source={pl.source}")
    regions = load_frame_regions(root, sorted(ids))
    texts = narration_texts(phrases[phrases["narration_id"].isin({n for v in narrs.values() for n in v})],
                            lambda t: lookup_texts(root / "embed" / "texts.h5", t)) if narrs else {}
    frame_texts = {f: [texts[n] for n in narrs.get(f, []) if n in texts] for f in regions}
    adapters = load_adapters(root / "align" / "adapters.pt")
    motion = None if motion_df is None else motion_by_frame(motion_df, regions)
    tracks = clip_tracks(frames, set(regions))
    labels = pseudolabel_frames(regions, frame_texts, adapters, pl, motion, progress=True, tracks=tracks)
    with atomic_dir(root / "pseudolabel") as out:
        write_table(labels, PSEUDOLABELS, out / "pseudolabels.parquet", dict(source=pl.source, min_score=pl.min_score))
        summary = _summary(labels) | quality(labels, regions, frames, tracks, p.frames.clips_csv, p.pseudolabel.weak_csv)
        write_json(summary, out / "summary.json")
        _overlays(root, frames, regions, labels, pl.overlays, out / "overlays")
        _sheets(root, frames, regions, labels, tracks, out / "sheets")
    typer.echo(f"pseudolabel ({pl.source}): {len(regions)} frames; holds: " +
               ", ".join(f"{s} {summary[f'holds_{s}']:.0%}" for s in ("left", "right")) +
               f"; weak-label frames: named hand holds {summary.get('named_hand_holds', float('nan')):.2f}, "
               f"other hand {summary.get('other_hand_holds', float('nan')):.2f}; consecutive-pick IoU median "
               f"{summary['consecutive_iou_median'] or 0:.2f}")


def clip_tracks(frames, keep: set[str], max_gap: int = 300) -> list[list[str]]:
    """Frame ids of each source clip / frame folder in time order (the temporal-consistency tracks), split where
    consecutive frames are more than `max_gap` EPIC frames (~5 s) apart: a frame folder's frames may come from
    different actions."""
    sub = frames[frames["frame_id"].isin(keep)].sort_values(["source", "epic_frame"])
    tracks = []
    for _, g in sub.groupby("source", sort=True):
        split = np.flatnonzero(np.diff(g["epic_frame"].to_numpy()) > max_gap) + 1
        tracks += [t.tolist() for t in np.split(g["frame_id"].astype(str).to_numpy(), split) if len(t) > 1]
    return tracks


def _summary(labels) -> dict:
    out = {"frames": int(labels["frame_id"].nunique()), "rows": len(labels)}
    for side, g in labels.groupby("side"):
        out[f"holds_{side}"] = float(g["label"].mean())
        out[f"mean_match_{side}"] = float(g.loc[g["label"], "match_score"].mean()) if g["label"].any() else 0.0
    return out


def _overlays(root: Path, frames, regions, labels, n: int, out: Path) -> None:
    """Evenly spaced sample of labelled frames: hand boxes, chosen region per side, the matched phrase."""
    from pipeline.io import read_image, write_image
    from pipeline.overlay import hand_object_overlay

    ids = sorted(regions)
    if n <= 0 or not ids:
        return
    paths = dict(zip(frames["frame_id"], frames["image_path"]))
    out.mkdir(parents=True, exist_ok=True)
    by_frame = {f: g for f, g in labels.groupby("frame_id")}
    for fid in [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, n).astype(int))]:
        img = read_image(root / "frames" / paths[fid])
        rows = by_frame[fid]
        choice = {r.side: (int(r.mask_id), f"{r.phrase or r.source} {r.match_score:.2f}") for r in rows.itertuples()}
        title = f"pseudo-label ({', '.join(sorted(set(rows['source'])))})  {fid}"
        write_image(hand_object_overlay(img, regions[fid], choice, title), out / f"{fid}.png")


def _sheets(root: Path, frames, regions, labels, tracks: list[list[str]], out: Path, per_sheet: int = 8) -> None:
    """One by-eye sheet per track (clip): crops around each hand with its pseudo-label, frames in time order."""
    from pipeline.io import read_image, write_image
    from pipeline.plcheck import clip_sheet

    paths = dict(zip(frames["frame_id"], frames["image_path"]))
    by_frame = {f: g for f, g in labels.groupby("frame_id")}
    out.mkdir(parents=True, exist_ok=True)
    for track in tracks:
        ids = [track[i] for i in np.unique(np.linspace(0, len(track) - 1, per_sheet).astype(int))]
        sheet = clip_sheet([read_image(root / "frames" / paths[f]) for f in ids], [regions[f] for f in ids],
                           [by_frame[f] for f in ids])
        write_image(sheet, out / f"{ids[0]}.png")

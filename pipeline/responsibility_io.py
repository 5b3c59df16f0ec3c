"""I/O around pipeline.responsibility: neighbour frames from the source videos, hands and masks per frame, the
responsibility HDF5, MOTION_SCORES rows and overlays.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd

from pipeline.data.epic import EPIC_FRAME
from pipeline.errors import WishError
from pipeline.responsibility import OK, FrameMotion, dequantise, quantise
from pipeline.schemas import RESPONSIBILITY_MAPS
from pipeline.types import SIDES, Hand



def work_geometry(width: int, height: int, work_side: int) -> tuple[tuple[int, int], float]:
    """((h, w), scale) of the work resolution for a stored frame; work_side <= 0 keeps the stored size."""
    s = 1.0 if work_side <= 0 or max(width, height) <= work_side else work_side / max(width, height)
    return (max(1, round(height * s)), max(1, round(width * s))), s


def wanted_indices(clip_indices: list[int], offsets: list[int]) -> set[int]:
    """Every clip index a set of frames needs: themselves and their neighbours at +-offsets."""
    around = {i + sign * k for i in clip_indices for k in offsets for sign in (1, -1)}
    return {i for i in around if i >= 0} | set(clip_indices)


def read_source_frames(source: Path, indices: set[int], shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """Grey frames of a video file or EPIC frame folder at `indices`, resized to `shape`; indices past the
    clip's end are simply absent (their offsets drop out)."""
    if source.suffix.lower() == ".tar":  # EPIC's per-video frame tar, indexed like its folder
        from pipeline.frames import frame_files, read_frame_files

        names = [n for _, n in frame_files(source)]
        wanted = [i for i in sorted(indices) if i < len(names)]
        return {i: _grey(b, shape) for i, b in zip(wanted, read_frame_files(source, [names[i] for i in wanted]))}
    if source.is_dir():
        files = sorted(c for c in source.iterdir() if EPIC_FRAME.match(c.name))
        return {i: _grey(cv2.imread(str(files[i]), cv2.IMREAD_COLOR), shape) for i in sorted(indices) if i < len(files)}
    if not source.is_file():
        raise WishError(source, "source video of a stored frame not found (frames artifact is stale?)")
    cap = cv2.VideoCapture(str(source))
    out: dict[int, np.ndarray] = {}
    try:
        for i in range(max(indices) + 1):
            if i not in indices:
                if not cap.grab():  # grab skips the colour conversion of frames nobody needs
                    break
                continue
            ok, bgr = cap.read()
            if not ok:
                break
            out[i] = _grey(bgr, shape)
    finally:
        cap.release()
    if not out:
        raise WishError(source, "no decodable frames")
    return out


def _grey(bgr: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if bgr is None:
        raise WishError(None, "unreadable EPIC frame file")
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def neighbours_of(frames: dict[int, np.ndarray], index: int, offsets: list[int]) -> dict[int, np.ndarray]:
    return {sign * k: frames[index + sign * k] for k in offsets for sign in (-1, 1) if index + sign * k in frames}


# --- hands and masks ---------------------------------------------------------------------------------------

def hands_by_frame(df: pd.DataFrame) -> dict[str, dict[str, Hand]]:
    """frame_id -> side -> the most confident hand of that side."""
    from pipeline.hands import rows_to_hands

    out: dict[str, dict[str, Hand]] = {}
    for fid, rows in df.groupby("frame_id", sort=False):
        best: dict[str, Hand] = {}
        for h in rows_to_hands(rows):
            if h.side in SIDES and (h.side not in best or h.score > best[h.side].score):
                best[h.side] = h
        out[str(fid)] = best
    return out


def masks_by_frame(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {str(fid): rows for fid, rows in df.groupby("frame_id", sort=False)}


def score_rows(frame_id: str, fm: FrameMotion, masks: pd.DataFrame | None) -> list[dict]:
    """MOTION_SCORES rows: per usable side one row per mask; otherwise (or without masks) one mask_id -1 row."""
    ids, scores = mask_scores(fm, masks)
    rows = []
    for si, side in enumerate(SIDES):
        res = fm.sides[side]
        base = dict(frame_id=frame_id, side=side, hand_motion=res.hand_motion, status=res.status)
        if res.status != OK or not ids:
            rows.append(dict(base, mask_id=-1, motion_score=float("nan")))
        else:
            rows.extend(dict(base, mask_id=m, motion_score=float(scores[si, j])) for j, m in enumerate(ids))
    return rows


def mask_scores(fm: FrameMotion, masks: pd.DataFrame | None) -> tuple[list[int], np.ndarray]:
    """(mask ids, (2, M) scores): object masks ignore hand-mask pixels, hand masks are scored whole.

    Same numbers as region_motion_scores on the decoded masks, computed from the RLEs (pipeline.responsibility_pool)."""
    from pipeline import rle
    from pipeline.responsibility import _coverage
    from pipeline.responsibility_pool import pooled_scores

    if masks is None or masks.empty:
        return [], np.zeros((2, 0), np.float32)
    full = (int(masks["height"].iloc[0]), int(masks["width"].iloc[0]))
    if not ((masks["height"] == full[0]) & (masks["width"] == full[1])).all():
        raise WishError(None, f"masks of frame {masks['frame_id'].iloc[0]} disagree in size")
    is_hand = (masks["kind"] == "hand").to_numpy()
    rles = [str(r) for r in masks["rle"]]
    hand_rles = [r for r, h in zip(rles, is_hand) if h]
    maps = fm.maps()
    keep = None
    if hand_rles:
        exclude = np.logical_or.reduce([rle.decode(r, *full) for r in hand_rles])
        keep = 1.0 - _coverage(exclude, maps.shape[1:])
    scores = pooled_scores(maps, rles, full, keep)
    if hand_rles:
        scores[:, is_hand] = pooled_scores(maps, hand_rles, full, None)
    return [int(m) for m in masks["mask_id"]], scores


# --- HDF5 --------------------------------------------------------------------------------------------------

def write_maps(path: Path, frame_ids: list[str], maps: list[np.ndarray], attrs: dict) -> None:
    """Maps (float in [0, 1], or already quantised uint8) as (N, 2, Hmax, Wmax) uint8, zero-padded;
    `shapes` (N, 2) holds each frame's (h, w)."""
    hmax = max((m.shape[1] for m in maps), default=0)
    wmax = max((m.shape[2] for m in maps), default=0)
    with h5py.File(path, "w") as f:
        f.attrs.update(schema_name=RESPONSIBILITY_MAPS.name, schema_version=RESPONSIBILITY_MAPS.version, **attrs)
        f.create_dataset("frame_ids", data=np.array(frame_ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("shapes", data=np.array([m.shape[1:] for m in maps], np.int32).reshape(-1, 2))
        ds = f.create_dataset("maps", (len(maps), 2, hmax, wmax), np.uint8, compression="gzip",
                              chunks=(1, 2, max(hmax, 1), max(wmax, 1)) if maps else None)
        for i, m in enumerate(maps):
            ds[i, :, :m.shape[1], :m.shape[2]] = m if m.dtype == np.uint8 else quantise(m)


def read_maps(path: str | Path) -> dict[str, np.ndarray]:
    """frame_id -> (2, h, w) float32 responsibility (left, right) in [0, 1]."""
    from pipeline.io import h5_check

    path = Path(path)
    if not path.is_file():
        raise WishError(path, f"missing {RESPONSIBILITY_MAPS.name} artifact (run the responsibility stage)")
    with h5py.File(path, "r") as f:
        h5_check(f, RESPONSIBILITY_MAPS, path)
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["frame_ids"][()]]
        shapes, maps = f["shapes"][()], f["maps"]
        return {fid: dequantise(maps[i, :, :h, :w]) for i, (fid, (h, w)) in enumerate(zip(ids, shapes))}


# --- overlays ----------------------------------------------------------------------------------------------

def overlay(image: np.ndarray, maps: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """RGB image with red = left responsibility, green = right, blended in proportion to responsibility."""
    h, w = image.shape[:2]
    up = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps], -1)
    colour = np.zeros((h, w, 3), np.float32)
    colour[..., 0], colour[..., 1] = up[..., 0], up[..., 1]
    weight = alpha * np.clip(up.max(-1, keepdims=True), 0, 1)
    out = image.astype(np.float32) * (1 - weight) + 255.0 * colour * weight
    return np.clip(out, 0, 255).astype(np.uint8)


def overlay_picks(frame_ids: list[str], usable: set[str], n: int) -> list[str]:
    """n frames spread evenly over those with a usable side (deterministic)."""
    cands = [f for f in frame_ids if f in usable] or frame_ids
    if n <= 0 or not cands:
        return []
    idx = np.unique(np.linspace(0, len(cands) - 1, min(n, len(cands))).round().astype(int))
    return [cands[i] for i in idx]


def status_counts(rows: pd.DataFrame) -> dict[str, int]:
    per_side = rows.drop_duplicates(["frame_id", "side"])
    return {str(k): int(v) for k, v in per_side["status"].value_counts().items()}


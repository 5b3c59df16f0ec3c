"""Frames from video (or EPIC-style frame folders), each mapped to its EPIC frame, time and narrations."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.data import epic
from pipeline.data.epic import EPIC_FRAME
from pipeline.errors import WishError

# Video files decoded by `frames`, `responsibility` and `wish predict` alike.
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
EPIC_VIDEO = re.compile(r"^(P\d{2}_\d{2,3})")


@dataclass(frozen=True)
class Source:
    """One video file or one folder of EPIC frames, with what we know about its place in EPIC."""
    path: Path
    video_id: str
    epic_start: int | None = None  # first/last EPIC frame the clip spans (clips.csv)
    epic_end: int | None = None
    is_folder: bool = False


def discover(dirs: list[str], clips: pd.DataFrame | None) -> list[Source]:
    """Every video file and EPIC frame folder under the source dirs, in a stable order."""
    by_name = {} if clips is None else {r["name"]: r for _, r in clips.iterrows()}
    found: list[Source] = []
    for d in map(Path, dirs):
        if not d.exists():
            raise WishError(d, "frames source directory not found")
        candidates = [d] if d.is_file() else sorted(d.rglob("*"))
        for p in candidates:
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                row = by_name.get(p.name)
                if row is not None:
                    found.append(Source(p, str(row["video_id"]), int(row["epic_start_frame"]), int(row["epic_end_frame"])))
                else:
                    m = EPIC_VIDEO.match(p.stem)
                    found.append(Source(p, m.group(1) if m else p.stem))
            elif p.is_dir() and any(EPIC_FRAME.match(c.name) for c in p.iterdir()):
                found.append(Source(p, p.name, is_folder=True))
        if d.is_dir() and any(EPIC_FRAME.match(c.name) for c in d.iterdir()):
            found.append(Source(d, d.name, is_folder=True))
    if not found:
        raise WishError(Path(dirs[0]) if dirs else None, "no videos or EPIC frame folders found in frames.sources")
    return found


def read_video(path: Path) -> list[np.ndarray]:
    """All frames of a video as RGB arrays; a missing, empty or undecodable file is an error naming it."""
    if not path.is_file():
        raise WishError(path, "video file not found")
    if path.stat().st_size == 0:
        raise WishError(path, "video file is empty (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise WishError(path, "no decodable frames (corrupt or unsupported video)")
    return frames


def clip_to_epic(n: int, start: int, end: int) -> np.ndarray:
    """Clip frame i of n maps linearly onto the EPIC range [start, end]."""
    if n == 1:
        return np.array([start])
    return np.rint(start + np.arange(n) * (end - start) / (n - 1)).astype(np.int64)


def resize_max_side(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def epic_frame_rate(video_fps: float) -> float:
    """EPIC-100 numbers frames at 50/s for 50 fps videos and at 60/s for all others (59.94, 29.97, 90 fps):
    start_frame == floor(start time * rate) for all 49,589 shared narrations, but only 39% with the video fps."""
    return 50.0 if abs(video_fps - 50.0) < 0.5 else 60.0


def iter_source(src: Source, stride: int, fps: dict[str, float],
                folder_stride: int = 1) -> Iterator[tuple[int, int, float, np.ndarray]]:
    """(clip index, EPIC frame or -1, time in seconds or NaN, RGB image) for every `stride`-th frame of a video
    and every `folder_stride`-th file of an EPIC frame folder (such folders hold sparse, chosen frames)."""
    from pipeline.io import read_image

    video_fps = fps.get(src.video_id)
    rate = epic_frame_rate(video_fps) if video_fps else None
    if src.is_folder:
        files = sorted(c for c in src.path.iterdir() if EPIC_FRAME.match(c.name))
        for i, f in enumerate(files[::folder_stride]):
            n = int(EPIC_FRAME.match(f.name).group(1))
            yield i * folder_stride, n, (n / rate if rate else float("nan")), read_image(f)
        return
    images = read_video(src.path)
    if src.epic_start is not None:
        if video_fps is None:
            raise WishError(src.path, f"video id {src.video_id!r} (from clips.csv) is not in the EPIC video info CSV")
        numbers = clip_to_epic(len(images), src.epic_start, src.epic_end)
    else:
        numbers = np.full(len(images), -1)
    for i in range(0, len(images), stride):
        n = int(numbers[i])
        yield i, n, (n / rate if n >= 0 and rate else float("nan")), images[i]


def frame_id(video_id: str, epic_frame: int, source: Path, clip_index: int) -> str:
    if epic_frame >= 0:
        return f"{video_id}_frame_{epic_frame:010d}"
    return f"{video_id}_{source.stem}_{clip_index:06d}"


def extract(sources: list[Source], stride: int, max_side: int, fps: dict[str, float], narrations: pd.DataFrame,
            excluded_videos: set[str], val_videos: set[str], image_dir: Path,
            folder_stride: int = 1) -> tuple[pd.DataFrame, dict]:
    """Decode, subsample, store images under image_dir and return the frames table (FRAMES schema)."""
    from pipeline.io import write_image

    rows, seen, skipped = [], set(), {"eval_video_sources": 0, "duplicate_frames": 0}
    for src in tqdm(sources, desc="frames", unit="source"):
        if src.video_id in excluded_videos:
            skipped["eval_video_sources"] += 1  # never decode, never store: no eval frame can leak
            continue
        items = list(iter_source(src, stride, fps, folder_stride))
        times = np.array([t for _, _, t, _ in items], dtype=float)
        covers = epic.covering(narrations, src.video_id, times)
        for (i, n, t, img), narr in zip(items, covers):
            fid = frame_id(src.video_id, n, src.path, i)
            if fid in seen:
                skipped["duplicate_frames"] += 1
                continue
            seen.add(fid)
            img = resize_max_side(img, max_side)
            rel = Path("images") / src.video_id / f"{fid}.jpg"
            write_image(img, image_dir / rel)
            rows.append(dict(frame_id=fid, video_id=src.video_id, source=str(src.path), clip_index=i, epic_frame=n,
                             time_s=t, image_path=str(rel), width=img.shape[1], height=img.shape[0],
                             narration_ids=narr, split="val" if src.video_id in val_videos else "train"))
    df = pd.DataFrame(rows, columns=["frame_id", "video_id", "source", "clip_index", "epic_frame", "time_s",
                                     "image_path", "width", "height", "narration_ids", "split"])
    return df, skipped

"""Frames from video (or EPIC-style frame folders), each mapped to its EPIC frame, time and narrations."""
from __future__ import annotations

import itertools
import os
import re
import tarfile
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
    is_folder: bool = False  # a folder of frame_XXXXXXXXXX.jpg, or EPIC's per-video tar of them
    full_video: bool = False  # a whole EPIC video (P01_01.MP4): clip frame i is EPIC frame ~ i * rate / fps + 1


def discover(dirs: list[str], clips: pd.DataFrame | None) -> list[Source]:
    """Every video file, EPIC frame folder and EPIC per-video frame tar under the source dirs, in a stable order.

    Native EPIC layouts work as they ship: P01/rgb_frames/P01_01/frame_0000000001.jpg, P01/rgb_frames/P01_01.tar
    and P01/videos/P01_01.MP4. The walk never lists a frame folder past its first frame (20M frames at full
    size), and a frame folder's contents are never searched for videos."""
    by_name = {} if clips is None else {r["name"]: r for _, r in clips.iterrows()}
    found: list[Source] = []
    for d in map(Path, dirs):
        if not d.exists():
            raise WishError(d, "frames source directory not found")
        if d.is_file():
            found += _file_source(d, by_name)
            continue
        root_is_folder = _has_frames(d)
        for p in ([] if root_is_folder else _walk(d)):
            found += [Source(p, p.name, is_folder=True)] if p.is_dir() else _file_source(p, by_name)
        if root_is_folder:
            found.append(Source(d, d.name, is_folder=True))
    if not found:
        raise WishError(Path(dirs[0]) if dirs else None, "no videos or EPIC frame folders found in frames.sources")
    return found


def _has_frames(d: Path) -> bool:
    with os.scandir(d) as it:
        return any(e.is_file() and EPIC_FRAME.match(e.name) for e in it)


def _walk(d: Path) -> Iterator[Path]:
    """Files and frame folders below d, depth first in sorted order (the order of sorted(d.rglob("*")))."""
    with os.scandir(d) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        p = Path(e.path)
        if e.is_dir():
            if _has_frames(p):
                yield p
            else:
                yield from _walk(p)
        elif e.is_file():
            yield p


def _file_source(p: Path, by_name: dict) -> list[Source]:
    suffix = p.suffix.lower()
    if suffix == ".tar" and EPIC_VIDEO.match(p.stem):
        return [Source(p, p.stem, is_folder=True)]  # EPIC's per-video frame tar, read like its folder
    if suffix not in VIDEO_SUFFIXES:
        return []
    row = by_name.get(p.name)
    if row is not None:
        return [Source(p, str(row["video_id"]), int(row["epic_start_frame"]), int(row["epic_end_frame"]))]
    m = EPIC_VIDEO.match(p.stem)
    return [Source(p, m.group(1) if m else p.stem, full_video=bool(m and m.group(1) == p.stem))]


def frame_files(src: Path) -> list[tuple[int, str]]:
    """(EPIC frame number, member or file name) of a frame folder or per-video tar, in frame order."""
    if src.is_dir():
        names = [c.name for c in src.iterdir()]
    else:
        with tarfile.open(src) as tar:
            names = tar.getnames()
    found = [(int(m.group(1)), n) for n in names if (m := EPIC_FRAME.match(Path(n).name))]
    return sorted(found)


def read_frame_files(src: Path, names: list[str], flag: int = cv2.IMREAD_COLOR) -> Iterator[np.ndarray]:
    """Decoded frames (BGR, or grey with IMREAD_GRAYSCALE) of a frame folder or tar, in the order asked."""
    if src.is_dir():
        for n in names:
            yield _decode_or_fail(np.fromfile(src / n, np.uint8), src / n, flag)
        return
    with tarfile.open(src) as tar:
        for n in names:
            f = tar.extractfile(n)
            if f is None:
                raise WishError(src, f"tar member {n!r} is not a file")
            yield _decode_or_fail(np.frombuffer(f.read(), np.uint8), src / n, flag)


def _decode_or_fail(buf: np.ndarray, where: Path, flag: int) -> np.ndarray:
    img = cv2.imdecode(buf, flag) if buf.size else None
    if img is None:
        raise WishError(where, "not a readable image (empty or corrupt)")
    return img


def iter_video(path: Path, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) of every stride-th frame, streamed: a full-length video never sits in memory."""
    _check_video_file(path)
    cap = cv2.VideoCapture(str(path))
    try:
        i, any_frame = 0, False
        while True:
            if i % stride:
                if not cap.grab():  # skipped frames are not colour-converted
                    break
            else:
                ok, bgr = cap.read()
                if not ok:
                    break
                any_frame = True
                yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    if not any_frame:
        raise WishError(path, "no decodable frames (corrupt or unsupported video)")


def container_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def _check_video_file(path: Path) -> None:
    if not path.is_file():
        raise WishError(path, "video file not found")
    if path.stat().st_size == 0:
        raise WishError(path, "video file is empty (0 bytes)")


def read_video(path: Path) -> list[np.ndarray]:
    """All frames of a video as RGB arrays; a missing, empty or undecodable file is an error naming it."""
    _check_video_file(path)
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
    video_fps = fps.get(src.video_id)
    rate = epic_frame_rate(video_fps) if video_fps else None
    if src.is_folder:
        files = frame_files(src.path)[::folder_stride]
        for k, ((n, _), bgr) in enumerate(zip(files, read_frame_files(src.path, [f for _, f in files]))):
            yield k * folder_stride, n, (n / rate if rate else float("nan")), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    # a short clip of an EPIC video (clips.csv): mapped linearly onto its range
    if src.epic_start is not None and src.epic_end is not None:
        if video_fps is None:
            raise WishError(src.path, f"video id {src.video_id!r} (from clips.csv) is not in the EPIC video info CSV")
        images = read_video(src.path)
        numbers = clip_to_epic(len(images), src.epic_start, src.epic_end)
        for i in range(0, len(images), stride):
            yield i, int(numbers[i]), int(numbers[i]) / epic_frame_rate(video_fps), images[i]
        return
    if src.full_video and video_fps and rate:  # a whole EPIC video: EPIC numbers its frames from 1 at `rate` per second
        for i, img in iter_video(src.path, stride):
            n = int(round(i * rate / video_fps)) + 1
            yield i, n, n / rate, img
        return
    # any other video: times only where they cannot be mistaken for an EPIC video's (Ego4D full_scale videos
    # are named by their video_uid, and their narrations are timed from the start of that very file)
    own = 0.0 if EPIC_VIDEO.match(src.path.stem) else container_fps(src.path)
    for i, img in iter_video(src.path, stride):
        yield i, -1, (i / own if own > 0 else float("nan")), img


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


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
    by_video = {v: g for v, g in narrations.groupby("video_id", sort=False)}  # 90k narrations: split once
    for src in tqdm(sources, desc="frames", unit="source"):
        if src.video_id in excluded_videos:
            skipped["eval_video_sources"] += 1  # never decode, never store: no eval frame can leak
            continue
        sub = by_video.get(src.video_id, narrations.iloc[:0])
        # in chunks: a full-length video is streamed, never held in memory whole
        for items in _chunks(iter_source(src, stride, fps, folder_stride), 64):
            covers = epic.covering(sub, src.video_id, np.array([t for _, _, t, _ in items], dtype=float))
            for (i, n, t, img), narr in zip(items, covers):
                fid = frame_id(src.video_id, n, src.path, i)
                if fid in seen:
                    skipped["duplicate_frames"] += 1
                    continue
                seen.add(fid)
                img = resize_max_side(img, max_side)
                rel = Path("images") / src.video_id / f"{fid}.jpg"
                write_image(img, image_dir / rel)
                rows.append(dict(frame_id=fid, video_id=src.video_id, source=str(src.path), clip_index=i,
                                 epic_frame=n, time_s=t, image_path=str(rel), width=img.shape[1],
                                 height=img.shape[0], narration_ids=narr,
                                 split="val" if src.video_id in val_videos else "train"))
    df = pd.DataFrame(rows, columns=["frame_id", "video_id", "source", "clip_index", "epic_frame", "time_s",
                                     "image_path", "width", "height", "narration_ids", "split"])
    return df, skipped

"""EPIC-KITCHENS-100 annotation CSVs: narrations, video info, clip ranges."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import WishError

NARRATION_COLUMNS = ["narration_id", "video_id", "start_timestamp", "stop_timestamp", "narration", "noun", "noun_class", "all_nouns"]
VIDEO_INFO_COLUMNS = ["video_id", "fps"]
CLIPS_COLUMNS = ["file", "video_id", "epic_start_frame", "epic_end_frame"]
# An EPIC frame file name (rgb_frames/<video>/frame_0000000123.jpg); its number is the video's native frame index.
EPIC_FRAME = re.compile(r"^frame_(\d{10})\.jpg$")


def read_csv(path: str | Path, required: list[str]) -> pd.DataFrame:
    """Read a CSV and insist on its columns; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise WishError(path, "CSV not found")
    if path.stat().st_size == 0:
        raise WishError(path, "CSV is empty (0 bytes)")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise WishError(path, f"not a readable CSV: {e}") from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise WishError(path, f"missing required column(s) {missing}; has {list(df.columns)}")
    return df


def timestamp_to_seconds(ts: pd.Series) -> np.ndarray:
    """EPIC 'HH:MM:SS.ff' timestamps to float seconds."""
    parts = ts.astype(str).str.split(":", expand=True)
    if parts.shape[1] != 3:
        raise ValueError("timestamps must look like HH:MM:SS.ff")
    return (parts[0].astype(float) * 3600 + parts[1].astype(float) * 60 + parts[2].astype(float)).to_numpy()


def parse_list(cell: object) -> list:
    """EPIC stores lists as Python literals ("['cup:tea']"); empty cells become []."""
    if isinstance(cell, list):
        return cell
    if cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell).strip() == "":
        return []
    value = ast.literal_eval(str(cell))
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_narrations(path: str | Path | list) -> pd.DataFrame:
    """Narrations with start_s/stop_s seconds; one row per narration_id.

    `path` may be a list (the full EPIC-100 EPIC_100_train.csv + EPIC_100_validation.csv, same columns), and a
    .json file is read as Ego4D's narration.json (pipeline.data.ego4d)."""
    if isinstance(path, (list, tuple)):
        if not path:
            raise WishError(None, "frames.narrations_csv is an empty list")
        return pd.concat([load_narrations(p) for p in path], ignore_index=True).drop_duplicates(
            "narration_id").reset_index(drop=True)
    if Path(path).suffix.lower() == ".json":
        from pipeline.data.ego4d import load_narrations_table

        df = load_narrations_table(path)
    else:
        df = read_csv(path, NARRATION_COLUMNS)
    try:
        df["start_s"] = timestamp_to_seconds(df["start_timestamp"])
        df["stop_s"] = timestamp_to_seconds(df["stop_timestamp"])
    except ValueError as e:
        raise WishError(path, f"bad start/stop timestamp: {e}") from e
    df["narration"] = df["narration"].fillna("").astype(str)
    return df.drop_duplicates("narration_id").reset_index(drop=True)


def load_video_info(path: str | Path) -> dict[str, float]:
    """video_id -> fps."""
    df = read_csv(path, VIDEO_INFO_COLUMNS)
    return dict(zip(df["video_id"].astype(str), df["fps"].astype(float)))


def load_clips(path: str | Path) -> pd.DataFrame:
    df = read_csv(path, CLIPS_COLUMNS)
    df["name"] = df["file"].map(lambda f: Path(f).name)
    return df


def covering(narrations: pd.DataFrame, video_id: str, times: np.ndarray) -> list[list[str]]:
    """For each time (seconds) in a video, the ids of narrations whose [start, stop] covers it."""
    sub = narrations[narrations["video_id"] == video_id]
    if sub.empty:
        return [[] for _ in times]
    start, stop, ids = sub["start_s"].to_numpy(), sub["stop_s"].to_numpy(), sub["narration_id"].to_numpy()
    inside = (times[:, None] >= start[None, :]) & (times[:, None] <= stop[None, :])
    return [list(ids[row]) for row in inside]

"""Ego4D narrations (narration.json) as an EPIC-style narrations table, and Ego4D's video layout.

narration.json maps each video_uid to its annotation passes:
    {"<video_uid>": {"narration_pass_1": {"narrations": [{"timestamp_sec": 4.08, "timestamp_frame": 122,
        "narration_text": "#C C picks the knife with his right hand", "annotation_uid": "..."}, ...],
        "summaries": [...]}, "narration_pass_2": {...}}, ...}
Videos are `<ego4d root>/v1/full_scale/<video_uid>.mp4` (v2 likewise); timestamps count from the start of that
file, so `frames.sources: [<root>/v1/full_scale]` gives frames whose times match the narrations (the frames
stage times non-EPIC videos from their own frame rate). Ego4D narrations are instants, not intervals: each
becomes [t - w, t + w] with w half the mean gap between consecutive narrations of its video (EgoVLP's rule
with beta = 1), so every frame between two narrations is covered by the nearer ones.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import WishError

PASSES = ("narration_pass_1", "narration_pass_2")  # the first pass that a video has is used


def _hms(seconds: float) -> str:
    """EPIC's 'HH:MM:SS.ff' (what pipeline.data.epic parses back)."""
    seconds = max(float(seconds), 0.0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:05.2f}"


def _read(path: Path) -> dict:
    if not path.is_file():
        raise WishError(path, "Ego4D narrations JSON not found")
    if path.stat().st_size == 0:
        raise WishError(path, "Ego4D narrations JSON is empty (0 bytes)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WishError(path, f"not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise WishError(path, "expected an object keyed by video_uid")
    return data


def video_narrations(uid: str, video: dict, path: Path) -> list[dict]:
    """EPIC-style narration rows of one video (first pass present; empty for redacted/unannotated videos)."""
    passes = [(name, video[name]) for name in PASSES if isinstance(video, dict) and isinstance(video.get(name), dict)]
    if not passes:
        return []
    name, narr_pass = passes[0]
    items = narr_pass.get("narrations") or []
    try:
        times = np.array([float(n["timestamp_sec"]) for n in items], float)
        texts = [str(n["narration_text"]) for n in items]
    except (KeyError, TypeError, ValueError) as e:
        raise WishError(path, f"video {uid}: narration without timestamp_sec/narration_text ({e})") from e
    order = np.argsort(times, kind="stable")
    gaps = np.diff(times[order])
    half = float(gaps.mean()) / 2 if len(gaps) and gaps.mean() > 0 else 1.0
    return [dict(narration_id=f"{uid}_{name[-1]}_{k}", participant_id="", video_id=uid,
                 narration_timestamp=_hms(times[i]), start_timestamp=_hms(times[i] - half),
                 stop_timestamp=_hms(times[i] + half), narration=texts[i], noun="", noun_class=-1, all_nouns="[]")
            for k, i in enumerate(order)]


def load_narrations_table(path: str | Path) -> pd.DataFrame:
    """All videos' narrations with EPIC's narration columns (pipeline.data.epic.NARRATION_COLUMNS)."""
    path = Path(path)
    data = _read(path)
    rows = [r for uid in sorted(data) for r in video_narrations(str(uid), data[uid], path)]
    if not rows:
        raise WishError(path, "no narrations found (expected video_uid -> narration_pass_1 -> narrations)")
    return pd.DataFrame(rows)

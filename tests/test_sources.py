"""Inputs at full size: the native EPIC-KITCHENS layout (frame folders, per-video tars, whole videos), the full
EPIC-100 narration CSVs, and Ego4D's narration.json with its full_scale videos. Small fixtures of each format."""
from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import DATA, ROOT
from pipeline.data import ego4d, epic
from pipeline.errors import WishError
from pipeline.frames import discover, frame_files
from pipeline.io import read_table
from pipeline.schemas import FRAMES

FIXTURES = ROOT / "tests" / "data"
EPIC_TRAIN = FIXTURES / "epic100" / "EPIC_100_train.csv"  # the official file's columns, 7 real rows
EPIC_VAL = DATA / "epic" / "annotations" / "EPIC_100_validation.csv"  # the full official validation file
EGO4D = FIXTURES / "ego4d" / "narration.json"
EGO_UID = "1a2b3c4d-0000-4000-8000-00000000e4d0"
RGB = DATA / "epic" / "rgb_frames"
CLIP = DATA / "epic" / "clips" / "P01_01_left_hand_7430_7541_action_raw854x480.mp4"


def _write_video(path: Path, n: int, fps: float) -> None:
    """n real frames (from a shared clip) as a video at `fps`."""
    cap = cv2.VideoCapture(str(CLIP))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (854, 480))
    for _ in range(n):
        ok, bgr = cap.read()
        assert ok
        out.write(bgr)
    out.release()
    cap.release()


def _native_epic(root: Path) -> Path:
    """EPIC as it ships: P28/rgb_frames/P28_101/frame_*.jpg, P02/rgb_frames/P02_09.tar, P01/videos/P01_01.MP4."""
    (root / "P28" / "rgb_frames").mkdir(parents=True)
    os.symlink(RGB / "P28_101", root / "P28" / "rgb_frames" / "P28_101")
    (root / "P02" / "rgb_frames").mkdir(parents=True)
    with tarfile.open(root / "P02" / "rgb_frames" / "P02_09.tar", "w") as tar:
        for f in sorted((RGB / "P02_09").glob("frame_*.jpg")):
            tar.add(f, arcname=f"./{f.name}")  # EPIC's tars hold ./frame_0000000001.jpg ...
    (root / "P01" / "videos").mkdir(parents=True)
    _write_video(root / "P01" / "videos" / "P01_01.MP4", 30, 59.94006)
    return root


def _frames(write_params, run_cli, root: Path, sources: list, narrations, **frames) -> pd.DataFrame:
    params = write_params({"common": {"eval_dirs": []},
                           "frames": {"sources": [str(s) for s in sources], "narrations_csv": narrations,
                                      "clips_csv": None, "max_side": 160, **frames}}, f"{root.name}.yaml")
    code, _, err = run_cli("frames", "--params", params, "--root", root)
    assert code == 0, err
    return read_table(root / "frames" / "frames.parquet", FRAMES)


def test_native_epic_layout_with_tars_videos_and_the_full_narration_csvs(tmp_path, write_params, run_cli):
    layout = _native_epic(tmp_path / "EPIC-KITCHENS")
    sources = discover([str(layout)], None)
    assert [(s.video_id, s.path.name) for s in sources] == [
        ("P01_01", "P01_01.MP4"), ("P02_09", "P02_09.tar"), ("P28_101", "P28_101")]
    both = [str(EPIC_TRAIN), str(EPIC_VAL)]
    df = _frames(write_params, run_cli, tmp_path / "a", [layout], both, stride=1)
    # the per-video tar gives exactly what its folder gives (ids, EPIC numbers, times, narrations, pixels)
    folder = _frames(write_params, run_cli, tmp_path / "b", [RGB / "P02_09"], both, stride=1)
    tar_rows = df[df["video_id"] == "P02_09"].reset_index(drop=True)
    cols = ["frame_id", "clip_index", "epic_frame", "time_s", "narration_ids", "width", "height"]
    pd.testing.assert_frame_equal(tar_rows[cols], folder[cols])
    assert [list(ids) for ids in tar_rows["narration_ids"]] == [["P02_09_178"], ["P02_09_178"]]
    for rel_a, rel_b in zip(tar_rows["image_path"], folder["image_path"]):
        assert (tmp_path / "a" / "frames" / rel_a).read_bytes() == (tmp_path / "b" / "frames" / rel_b).read_bytes()
    # a whole EPIC video: frame i is EPIC frame round(i * 60 / 59.94) + 1 (EPIC numbers at 60/s), t = n / 60
    video = df[df["video_id"] == "P01_01"]
    n = np.rint(np.arange(30) * 60 / 59.94006).astype(int) + 1
    assert video["clip_index"].tolist() == list(range(30)) and video["epic_frame"].tolist() == n.tolist()
    np.testing.assert_allclose(video["time_s"], n / 60.0)
    covered = [list(ids) == ["P01_01_0"] for ids in video["narration_ids"]]
    assert covered == [t >= 0.14 for t in video["time_s"]]  # P01_01_0 runs 00:00:00.14 - 00:00:03.37
    assert video["frame_id"].iloc[0] == "P01_01_frame_0000000001"


def test_full_epic100_narration_csvs_load_as_one_table():
    train, val = epic.load_narrations(EPIC_TRAIN), epic.load_narrations(EPIC_VAL)
    both = epic.load_narrations([str(EPIC_TRAIN), str(EPIC_VAL)])
    assert len(both) == len(train) + len(val) == 7 + 9668
    assert set(epic.NARRATION_COLUMNS) <= set(both.columns) and both["narration_id"].is_unique
    assert both.loc[both["narration_id"] == "P02_09_178", "start_s"].item() == pytest.approx(11 * 60 + 20.22)
    with pytest.raises(WishError, match="empty list"):
        epic.load_narrations([])


def test_ego4d_narrations_become_intervals_and_match_full_scale_video_frames(tmp_path, write_params, run_cli):
    table = ego4d.load_narrations_table(EGO4D)
    assert list(table["narration_id"]) == [f"{EGO_UID}_1_{k}" for k in range(3)]  # pass 1 only; redacted: none
    assert list(table["narration"])[0] == "#C C picks the knife with his right hand"  # sorted by time
    loaded = epic.load_narrations(EGO4D)
    # instants 0.2, 0.8, 1.4 s: half the mean gap (0.3 s) each side
    np.testing.assert_allclose(loaded["start_s"], [0.0, 0.5, 1.1], atol=1e-9)
    np.testing.assert_allclose(loaded["stop_s"], [0.5, 1.1, 1.7], atol=1e-9)
    full_scale = tmp_path / "ego4d_data" / "v1" / "full_scale"
    full_scale.mkdir(parents=True)
    _write_video(full_scale / f"{EGO_UID}.mp4", 30, 20.0)
    df = _frames(write_params, run_cli, tmp_path / "e", [full_scale], str(EGO4D), stride=3)
    assert set(df["video_id"]) == {EGO_UID} and (df["epic_frame"] == -1).all()
    np.testing.assert_allclose(df["time_s"], df["clip_index"] / 20.0)  # timed from the video's own frame rate
    for t, ids in zip(df["time_s"], df["narration_ids"]):
        expected = [i for i, (a, b) in enumerate([(0.0, 0.5), (0.5, 1.1), (1.1, 1.7)]) if a <= t <= b]
        assert list(ids) == [f"{EGO_UID}_1_{k}" for k in expected]


def test_bad_ego4d_json_is_a_wish_error(tmp_path):
    bad = tmp_path / "narration.json"
    bad.write_text("{not json")
    with pytest.raises(WishError, match="not valid JSON"):
        epic.load_narrations(bad)
    bad.write_text(json.dumps({"uid": {"narration_pass_1": {"narrations": [{"narration_text": "#C C x"}]}}}))
    with pytest.raises(WishError, match="timestamp_sec"):
        epic.load_narrations(bad)


def test_frame_files_of_a_tar_and_a_folder_agree(tmp_path):
    tar_path = tmp_path / "P28_101.tar"
    with tarfile.open(tar_path, "w") as tar:
        for f in (RGB / "P28_101").glob("frame_*.jpg"):
            tar.add(f, arcname=f"./{f.name}")
    names = frame_files(RGB / "P28_101")
    assert [n for n, _ in frame_files(tar_path)] == [n for n, _ in names] == sorted(n for n, _ in names)

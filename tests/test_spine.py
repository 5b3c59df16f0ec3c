"""The spine on real shared data: frames stage end to end, eval exclusion, bad input, `wish inspect`, atomic io."""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from pipeline.errors import WishError
from pipeline.io import atomic_dir, read_table, table_meta, write_table
from pipeline.schemas import FRAMES, PHRASES

CLIPS = DATA / "epic" / "clips"
PLATE = "P01_09_left_plate_93267_94233_raw682x384.mp4"  # 90 frames, narrations cover about 2/3 of them
SHORT = "P02_09_left_hand_67864_67947_action_raw854x480.mp4"  # 19 frames
NARRATIONS = DATA / "epic" / "annotations" / "EPIC_100_narrations_union_partial.csv"
VIDEO_INFO = DATA / "epic" / "annotations" / "EPIC_100_video_info.csv"


def decoded_count(path) -> int:
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def source_dir(tmp_path, *names: str):
    d = tmp_path / "src"
    d.mkdir()
    for name in names:
        os.symlink(CLIPS / name, d / name)
    return d


def frames_params(write_params, src, **frames) -> object:
    return write_params({"common": {"eval_dirs": []},
                         "frames": {"sources": [str(src)], "max_side": 320, **frames}})


def clip_row(name: str) -> pd.Series:
    clips = pd.read_csv(DATA / "epic" / "clips.csv")
    return clips[clips["file"].str.endswith(name)].iloc[0]


@pytest.fixture(scope="module")
def narrations() -> pd.DataFrame:
    """The narration CSV with times parsed independently of pipeline.data.epic."""
    df = pd.read_csv(NARRATIONS, usecols=["narration_id", "video_id", "start_timestamp", "stop_timestamp",
                                                  "start_frame", "stop_frame"])
    df["start"] = pd.to_timedelta(df["start_timestamp"]).dt.total_seconds()
    df["stop"] = pd.to_timedelta(df["stop_timestamp"]).dt.total_seconds()
    return df


def test_frames_stage_maps_clip_onto_epic_frames_times_and_narrations(tmp_path, write_params, run_cli, narrations):
    params = frames_params(write_params, source_dir(tmp_path, PLATE), stride=4, val_videos=["P01_09"])
    code, out, err = run_cli("frames", "--params", params, "--root", tmp_path / "art")
    assert code == 0, err
    df = read_table(tmp_path / "art" / "frames" / "frames.parquet", FRAMES)
    row, n = clip_row(PLATE), decoded_count(CLIPS / PLATE)
    assert len(df) == math.ceil(n / 4) == 23
    assert df["clip_index"].tolist() == list(range(0, n, 4))
    assert df["epic_frame"].iloc[0] == row["epic_start_frame"]
    assert df["epic_frame"].is_monotonic_increasing and df["epic_frame"].max() <= row["epic_end_frame"]
    # EPIC numbers frames of 59.94 fps videos at 60/s (narration start_frame = floor(start time * 60)).
    assert pd.read_csv(VIDEO_INFO).set_index("video_id").loc["P01_09", "fps"] == pytest.approx(59.94, abs=0.01)
    np.testing.assert_allclose(df["time_s"], df["epic_frame"] / 60.0)
    assert set(df["split"]) == {"val"} and set(df["video_id"]) == {"P01_09"}
    sub = narrations[narrations["video_id"] == "P01_09"]
    for t, n, ids in zip(df["time_s"], df["epic_frame"], df["narration_ids"]):
        expected = sub[(sub["start"] <= t) & (sub["stop"] >= t)]
        assert sorted(ids) == sorted(expected["narration_id"])
        # and in EPIC's own frame numbering (floor(time * 60), so within a frame)
        assert ((expected["start_frame"] - 1 <= n) & (n <= expected["stop_frame"] + 1)).all()
    covered = df["narration_ids"].map(len).gt(0)
    assert 0 < covered.sum() < len(df)  # this clip has both narrated and unnarrated frames
    for rel, w, h in zip(df["image_path"], df["width"], df["height"]):
        img = cv2.imread(str(tmp_path / "art" / "frames" / rel))
        assert img.shape[:2] == (h, w) and max(h, w) == 320


def test_stride_one_ends_on_epic_end_frame(tmp_path, write_params, run_cli):
    params = frames_params(write_params, source_dir(tmp_path, SHORT), stride=1)
    assert run_cli("frames", "--params", params, "--root", tmp_path)[0] == 0
    df = read_table(tmp_path / "frames" / "frames.parquet", FRAMES)
    row = clip_row(SHORT)
    assert len(df) == decoded_count(CLIPS / SHORT) == 19
    assert (df["epic_frame"].iloc[0], df["epic_frame"].iloc[-1]) == (row["epic_start_frame"], row["epic_end_frame"])
    assert set(df["split"]) == {"train"}


def test_videos_listed_by_an_eval_manifest_are_never_written(tmp_path, write_params, run_cli):
    evaldir = tmp_path / "eval"
    evaldir.mkdir()
    pd.DataFrame({"image_id": ["x"], "video_id": ["P01_09"]}).to_csv(evaldir / "manifest.csv", index=False)
    params = write_params({"common": {"eval_dirs": [str(evaldir)]},
                           "frames": {"sources": [str(source_dir(tmp_path, PLATE, SHORT))], "stride": 8, "max_side": 160}})
    assert run_cli("frames", "--params", params, "--root", tmp_path)[0] == 0
    df = read_table(tmp_path / "frames" / "frames.parquet", FRAMES)
    assert set(df["video_id"]) == {"P02_09"} and len(df) == math.ceil(19 / 8)
    assert not (tmp_path / "frames" / "images" / "P01_09").exists()
    meta = table_meta(tmp_path / "frames" / "frames.parquet")
    assert meta["excluded_eval_videos"] == "P01_09" and meta["eval_video_sources"] == "1"


def test_epic_frame_folder_source_takes_frame_numbers_from_file_names(tmp_path, write_params, run_cli):
    folder = DATA / "epic" / "rgb_frames" / "P28_101"
    params = write_params({"frames": {"sources": [str(folder)], "stride": 1, "max_side": 0}})
    assert run_cli("frames", "--params", params, "--root", tmp_path)[0] == 0
    df = read_table(tmp_path / "frames" / "frames.parquet", FRAMES)
    numbers = sorted(int(p.stem.split("_")[1]) for p in folder.glob("frame_*.jpg"))
    assert len(df) == 8 and df["epic_frame"].tolist() == numbers
    np.testing.assert_allclose(df["time_s"], np.array(numbers) / 50.0)  # P28_101 is a 50 fps video
    assert set(zip(df["width"], df["height"])) == {(456, 256)}
    assert df["frame_id"].iloc[0] == f"P28_101_frame_{numbers[0]:010d}"


# ---- bad input: clear message naming the file, exit 2, no artifact left behind, old artifact untouched ----

def _bad_clip(tmp_path, content: bytes):
    d = tmp_path / "src"
    d.mkdir()
    (d / "P01_09_broken.mp4").write_bytes(content)
    return {"frames": {"sources": [str(d)]}}, "P01_09_broken.mp4"


def _missing_dir(tmp_path):
    return {"frames": {"sources": [str(tmp_path / "nope")]}}, "nope"


def _empty_video(tmp_path):
    return _bad_clip(tmp_path, b"")


def _corrupt_video(tmp_path):
    return _bad_clip(tmp_path, np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())


def _unknown_video_id(tmp_path):
    clips = pd.read_csv(DATA / "epic" / "clips.csv")
    clips.loc[clips["file"].str.endswith(SHORT), "video_id"] = "P99_99"
    clips.to_csv(tmp_path / "clips.csv", index=False)
    return {"frames": {"sources": [str(source_dir(tmp_path, SHORT))], "clips_csv": str(tmp_path / "clips.csv")}}, "P99_99"


def _narrations_missing_column(tmp_path):
    path = tmp_path / "narr.csv"
    pd.read_csv(NARRATIONS, nrows=20).drop(columns=["stop_timestamp"]).to_csv(path, index=False)
    return {"frames": {"narrations_csv": str(path)}}, "narr.csv"


BAD_INPUTS = {"missing_video_dir": _missing_dir, "empty_mp4": _empty_video, "corrupt_mp4": _corrupt_video,
              "unknown_video_id": _unknown_video_id, "narrations_missing_column": _narrations_missing_column}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_with_no_artifact(case, tmp_path, write_params, run_cli):
    overrides, named = BAD_INPUTS[case](tmp_path)
    params = write_params({"common": {"eval_dirs": []}, **overrides})
    code, _, err = run_cli("frames", "--params", params, "--root", tmp_path / "art")
    assert code == 2 and "wish: error: " in err and named in err.split("wish: error: ")[1]
    art = tmp_path / "art"
    assert (sorted(p.name for p in art.iterdir()) if art.exists() else []) == []  # no frames/, no temp dir


@pytest.mark.parametrize("text, named", [("frames:\n  stride: 2\n  bogus: 1\n", "frames.bogus"),
                                         ("frames: [unclosed\n", "not valid YAML")])
def test_bad_params_fail_before_touching_existing_artifacts(text, named, tmp_path, run_cli):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    old = tmp_path / "frames"
    old.mkdir()
    (old / "frames.parquet").write_bytes(b"previous run")
    code, _, err = run_cli("frames", "--params", params, "--root", tmp_path)
    assert code == 2 and named in err and "params.yaml" in err
    assert (old / "frames.parquet").read_bytes() == b"previous run" and sorted(p.name for p in tmp_path.iterdir()) == ["frames", "params.yaml"]


def test_failed_run_keeps_previous_frames_artifact(tmp_path, write_params, run_cli):
    overrides, named = _corrupt_video(tmp_path)
    old = tmp_path / "art" / "frames"
    old.mkdir(parents=True)
    (old / "frames.parquet").write_bytes(b"previous run")
    code, _, err = run_cli("frames", "--params", write_params(overrides), "--root", tmp_path / "art")
    assert code == 2 and named in err
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == ["frames"]
    assert (old / "frames.parquet").read_bytes() == b"previous run"


# ---- wish inspect ----

def test_inspect_prints_schema_version_and_rows(tmp_path, run_cli):
    df = pd.DataFrame([dict(frame_id="f0", video_id="P01_01", source="s", clip_index=0, epic_frame=10, time_s=0.5,
                            image_path="images/f0.jpg", width=4, height=3, narration_ids=["P01_01_0"], split="train")])
    path = write_table(df, FRAMES, tmp_path / "frames.parquet", {"stride": 4})
    code, out, _ = run_cli("inspect", path)
    assert code == 0
    assert "schema: wish.frames v1" in out and "rows: 1" in out and '"stride": "4"' in out and "P01_01_0" in out


def test_inspect_garbage_file_exits_2(tmp_path, run_cli):
    bad = tmp_path / "junk.parquet"
    bad.write_bytes(b"not parquet at all" * 10)
    code, _, err = run_cli("inspect", bad)
    assert code == 2 and "junk.parquet" in err


# ---- atomic, schema-checked io ----

def test_read_table_refuses_another_schema(tmp_path):
    df = pd.DataFrame([dict(frame_id="f0", video_id="v", source="s", clip_index=0, epic_frame=-1, time_s=np.nan,
                            image_path="x.jpg", width=1, height=1, narration_ids=[], split="train")])
    path = write_table(df, FRAMES, tmp_path / "f.parquet")
    assert read_table(path, FRAMES)["narration_ids"].map(len).tolist() == [0]
    with pytest.raises(WishError, match="expected artifact wish.phrases v1, found wish.frames v1"):
        read_table(path, PHRASES)
    with pytest.raises(WishError, match="missing"):
        write_table(df.drop(columns=["split"]), FRAMES, tmp_path / "g.parquet")
    assert not (tmp_path / "g.parquet").exists()


def test_atomic_dir_leaves_previous_content_when_the_block_fails(tmp_path):
    target = tmp_path / "stage"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as out:
            (out / "a.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["stage"]
    with atomic_dir(target) as out:
        (out / "b.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["b.txt"]

"""Data adapters on the real shared files: EPIC narrations / video info / clips, and the eval-set format."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from pipeline.data import epic
from pipeline.data.evalset import LABEL_NAMES, eval_video_ids, load_evalset
from pipeline.errors import WishError
from pipeline.frames import epic_frame_rate

ANN = DATA / "epic" / "annotations"
EVALSET = DATA / "evalset"


@pytest.fixture(scope="module")
def narrations() -> pd.DataFrame:
    return epic.load_narrations(ANN / "EPIC_100_narrations_union_partial.csv")


@pytest.fixture(scope="module")
def evalset():
    return load_evalset(EVALSET)


def test_load_narrations_parses_every_timestamp(narrations):
    assert len(narrations) == 49_589 and narrations["narration_id"].is_unique
    first = narrations.set_index("narration_id").loc["P01_11_1"]  # 00:00:01.56 -> 00:00:02.45
    assert (first["start_s"], first["stop_s"]) == pytest.approx((1.56, 2.45))
    assert narrations["start_s"].notna().all() and (narrations["stop_s"] >= narrations["start_s"]).all()
    # EPIC frame numbers count at 50/s (50 fps videos) or 60/s (all others): seconds and frames must agree.
    fps = epic.load_video_info(ANN / "EPIC_100_video_info.csv")
    rate = narrations["video_id"].map(fps).map(epic_frame_rate)
    for col, frame in (("start_s", "start_frame"), ("stop_s", "stop_frame")):
        residual = narrations[frame] - narrations[col] * rate
        assert residual.between(-1, 1).all()
    assert (rate == 60).sum() > (rate == 50).sum() > 10_000


def test_parse_list_and_timestamps():
    assert epic.parse_list("['cup:tea', 'plate']") == ["cup:tea", "plate"]
    assert epic.parse_list("") == [] and epic.parse_list(float("nan")) == [] and epic.parse_list("[3]") == [3]
    secs = epic.timestamp_to_seconds(pd.Series(["00:00:01.50", "01:02:03.25"]))
    np.testing.assert_allclose(secs, [1.5, 3723.25])
    with pytest.raises(ValueError):
        epic.timestamp_to_seconds(pd.Series(["12.5"]))


def test_load_video_info_real():
    fps = epic.load_video_info(ANN / "EPIC_100_video_info.csv")
    assert len(fps) == 700 and fps["P28_101"] == 50.0 and fps["P01_01"] == pytest.approx(59.94, abs=1e-3)


def test_covering_finds_narrations_whose_interval_holds_the_time(narrations):
    ids = epic.covering(narrations, "P01_11", np.array([0.5, 1.7, 10_000.0]))
    assert "P01_11_0" in ids[0] and "P01_11_1" not in ids[0]
    assert {"P01_11_0", "P01_11_1"} <= set(ids[1]) and ids[2] == []
    assert epic.covering(narrations, "P99_99", np.array([1.0])) == [[]]


def test_load_clips_real():
    clips = epic.load_clips(DATA / "epic" / "clips.csv")
    assert len(clips) == 23 and (clips["epic_end_frame"] > clips["epic_start_frame"]).all()
    assert all((DATA / "epic" / "clips" / name).is_file() for name in clips["name"])


def test_read_csv_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(WishError, match="empty.csv: CSV is empty"):
        epic.read_csv(empty, ["a"])
    partial = tmp_path / "partial.csv"
    partial.write_text("video_id,duration\nP01_01,3.0\n")
    with pytest.raises(WishError, match=r"partial.csv: missing required column\(s\) \['fps'\]"):
        epic.load_video_info(partial)
    with pytest.raises(WishError, match="CSV not found"):
        epic.read_csv(tmp_path / "nope.csv", [])


def test_load_evalset_real(evalset):
    assert len(evalset.frames) == 12
    assert evalset.video_ids == {"P01_104", "P02_01", "P02_101"}
    frame = next(f for f in evalset.frames if f.image_id == "P02_101_frame_0000011665")
    image, labels = evalset.image(frame), evalset.labels(frame)
    assert image.shape == (480, 854, 3) and labels.shape == (480, 854)
    assert evalset.narrations_for(frame.image_id)["narration"].tolist() == ["put mug down"]


def test_eval_masks_agree_with_label_maps(evalset):
    """Each label id is exactly its masks' pixels, except where another labelled mask overlaps."""
    label_id = {name: k for k, name in LABEL_NAMES.items()}
    for frame in evalset.frames:
        labels = evalset.labels(frame)
        assert set(np.unique(labels)) <= set(range(6))
        unions = {n: np.logical_or.reduce(evalset.masks(frame, n)) for n in label_id if evalset.masks(frame, n)}
        for name, k in label_id.items():
            if name not in unions:
                assert not (labels == k).any(), (frame.image_id, name)
                continue
            own, others = unions[name], [u for n, u in unions.items() if n != name]
            alone = own & ~np.logical_or.reduce(others) if others else own
            assert alone.any() and (labels[alone] == k).all(), (frame.image_id, name)
            assert not ((labels == k) & ~own).any(), (frame.image_id, name)


def test_eval_video_ids_and_missing_dir(tmp_path):
    assert eval_video_ids([str(EVALSET)]) == {"P01_104", "P02_01", "P02_101"}
    assert eval_video_ids([]) == set()
    with pytest.raises(WishError, match="manifest.csv"):
        eval_video_ids([str(tmp_path)])
    with pytest.raises(WishError, match="eval set directory not found"):
        load_evalset(tmp_path / "nope")


def test_evalset_with_missing_image_names_it(tmp_path):
    (tmp_path / "manifest.csv").write_text("image_id,image_path,mask_path,label,video_id\n"
                                           "a,images/a.png,,left_hand,P01_01\n")
    with pytest.raises(WishError, match="a.png"):
        load_evalset(tmp_path)

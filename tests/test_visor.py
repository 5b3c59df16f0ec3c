"""VISOR adapter on the real sparse annotations (tar.xz) and on small synthetic JSONs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.visor import (epic_frame_number, iter_visor_frames, load_frame_mapping, load_visor_video,
                                 polygons_to_mask)
from pipeline.errors import WishError

VISOR = Path(__file__).resolve().parents[1] / "../shared/data/visor"
TAR = VISOR / "visor_sparse_compact.tar.xz"


@pytest.fixture(scope="module")
def p01_104():
    return load_visor_video(TAR, "P01_104")


def test_real_video_hands_and_contact(p01_104):
    assert len(p01_104) == 113 and all(f.video_id == "P01_104" for f in p01_104)
    first = p01_104[0]
    assert first.name == "P01_104_frame_0000008873.jpg"
    sides = {h.side: h for h in first.hands}
    assert set(sides) == {"left", "right"}
    touched = first.contact_object(sides["left"])
    assert touched is not None and touched.name == "sponge" and touched.id == sides["left"].in_contact_object
    assert sides["right"].in_contact_object == "inconclusive" and first.contact_object(sides["right"]) is None


def test_real_masks_scale_with_output_size(p01_104):
    hand = p01_104[0].hands[0]
    small, big = hand.mask(270, 480), hand.mask(1080, 1920)
    assert small.dtype == bool and small.shape == (270, 480) and small.sum() > 0
    assert big.sum() / small.sum() == pytest.approx(16, rel=0.1)


def test_every_real_contact_id_resolves(p01_104):
    statuses = {"hand-not-in-contact", "none-of-the-above", "inconclusive", "glove-not-in-contact"}
    for frame in p01_104:
        for hand in frame.hands:
            if hand.in_contact_object not in statuses:
                assert frame.contact_object(hand) is not None, (frame.name, hand.in_contact_object)


def test_frame_mapping_lookups():
    mapping = load_frame_mapping(VISOR / "visor-frame-mapping.json")
    assert epic_frame_number(mapping, "P01_01", "P01_01_frame_0000000140.jpg") == 138
    assert epic_frame_number(mapping, "P01_104", "P01_104_frame_0000008873.jpg") == 8873
    with pytest.raises(KeyError):
        epic_frame_number(mapping, "P01_104", "P01_104_frame_9999999999.jpg")


def test_polygon_raster_known_area():
    square = [np.array([[0, 0], [960, 0], [960, 540], [0, 540]], np.float32)]  # top-left quarter at 1920x1080
    m = polygons_to_mask(square, 100, 200)
    assert m[:50, :100].all() and m.sum() == pytest.approx(51 * 101, rel=0.05)
    assert not polygons_to_mask([np.array([[0, 0], [5, 5]], np.float32)], 10, 10).any()  # degenerate


def _doc(video: str, contact: str) -> dict:
    hand = {"id": "h1", "name": "right hand", "class_id": 301, "exhaustive": "y", "in_contact_object": contact,
            "segments": [[[0, 0], [100, 0], [100, 100]]]}
    cup = {"id": "c1", "name": "cup", "class_id": 13, "exhaustive": "y", "segments": [[[5, 5], [50, 5], [50, 50]]]}
    return {"video_annotations": [{"image": {"name": f"{video}_frame_0000000001.jpg", "video": video, "subsequence": "s"},
                                   "annotations": [hand, cup]}]}


def test_directory_source_and_statuses(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "V.json").write_text(json.dumps(_doc("V", "c1")))
    (tmp_path / "W.json").write_text(json.dumps(_doc("W", "hand-not-in-contact")))
    assert sorted(f.video_id for f in iter_visor_frames(tmp_path)) == ["V", "W"]
    by_video = {p.stem: list(iter_visor_frames(tmp_path, {p.stem}))[0] for p in tmp_path.rglob("*.json")}
    assert by_video["V"].contact_object(by_video["V"].hands[0]).name == "cup"
    assert by_video["W"].contact_object(by_video["W"].hands[0]) is None


def test_bad_inputs_raise_wish_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(WishError, match="not valid JSON"):
        list(iter_visor_frames(tmp_path))
    (tmp_path / "bad.json").write_text(json.dumps({"other": 1}))
    with pytest.raises(WishError, match="not a VISOR annotation"):
        list(iter_visor_frames(tmp_path))
    with pytest.raises(WishError):
        list(iter_visor_frames(tmp_path / "missing.tar.xz"))
    with pytest.raises(WishError, match="no VISOR annotations"):
        load_visor_video(tmp_path, "P99_99")


def test_overlapping_polygons_of_one_entity_are_unioned():
    a = np.array([[0, 0], [1200, 0], [1200, 1080], [0, 1080]], np.float32)  # left 5/8 of the frame
    b = np.array([[720, 0], [1920, 0], [1920, 1080], [720, 1080]], np.float32)  # right 5/8, overlapping
    assert polygons_to_mask([a, b], 27, 48).all()  # even-odd filling would leave the overlap empty

"""Hands: MediaPipe detector on real eval frames, side rules, HANDS rows, and the stage end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.data.evalset import load_evalset
from pipeline.hands import (HandDetector, _wearer_side, assign_sides, hands_to_rows, landmark_box,
                            position_side, rows_to_hands)
from pipeline.io import read_image, read_table, table_meta, write_image, write_table
from pipeline.params import HandsParams
from pipeline.schemas import FRAMES, HANDS
from pipeline.types import Hand

EVALSET = Path(__file__).resolve().parents[1] / "../shared/data/evalset"
BOTH_HANDS_FRAME = "P01_104_frame_0000001771"  # GT: left hand at x~300, right hand at x~440


@pytest.fixture(scope="module")
def evalset():
    return load_evalset(EVALSET)


@pytest.fixture(scope="module")
def detector():
    with HandDetector(HandsParams()) as det:
        yield det


def _frame(ev, image_id):
    return next(f for f in ev.frames if f.image_id == image_id)


def _gt_side(ev, frame, hand: Hand) -> str | None:
    """Side of the GT hand mask holding most of the hand's landmarks (None if none holds half)."""
    xy = np.clip(np.round(hand.landmarks).astype(int), 0, None)
    best, best_frac = None, 0.5
    for side in ("left", "right"):
        for m in ev.masks(frame, f"{side}_hand"):
            frac = m[np.minimum(xy[:, 1], m.shape[0] - 1), np.minimum(xy[:, 0], m.shape[1] - 1)].mean()
            if frac >= best_frac:
                best, best_frac = side, frac
    return best


def test_detector_finds_hands_with_gt_side(evalset, detector):
    frame = _frame(evalset, BOTH_HANDS_FRAME)
    img = evalset.image(frame)
    hands = detector.detect(img)
    assert len(hands) >= 1
    matched = [(hd, _gt_side(evalset, frame, hd)) for hd in hands]
    assert any(gt for _, gt in matched), "no detection lies on a GT hand"
    for hd, gt in matched:
        assert hd.landmarks.shape == (21, 2) and hd.landmarks.dtype == np.float32
        x0, y0, x1, y1 = hd.box
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        assert 0 < hd.score <= 1
        if gt:
            assert hd.side == gt and hd.side_model == gt


def test_mirror_off_gives_same_sides(evalset):
    """Unflipped input with swapped labels must name the wearer's hands like flipped input does."""
    frame = _frame(evalset, BOTH_HANDS_FRAME)
    with HandDetector(HandsParams(mirror_input=False)) as det:
        hands = det.detect(evalset.image(frame))
    sides = [(hd.side_model, _gt_side(evalset, frame, hd)) for hd in hands]
    assert any(gt for _, gt in sides)
    assert all(model == gt for model, gt in sides if gt)


def test_blank_image_has_no_hands(detector):
    assert detector.detect(np.full((240, 320, 3), 127, np.uint8)) == []


def _hand(x: float, side_model: str, score: float, width: int = 100) -> Hand:
    lm = np.stack([np.full(21, x), np.linspace(10, 30, 21)], 1).astype(np.float32)
    return Hand(-1, "", score, landmark_box(lm, width, 100, 0.0), lm, side_model, score, position_side(lm, width))


def test_side_sources_on_synthetic_hands():
    hands = assign_sides([_hand(80, "left", 0.6), _hand(20, "left", 0.95)], "position", 0.8)
    assert [h.side for h in hands] == ["left", "right"]
    assert [(h.hand_id, h.landmarks[0, 0]) for h in hands] == [(0, 20), (1, 80)]  # numbered left to right
    hands = assign_sides([_hand(80, "left", 0.6), _hand(20, "left", 0.95)], "model", 0.8)
    assert [h.side for h in hands] == ["left", "left"]
    # fused: the confident hand keeps "left", the unsure one falls back to its position (right half)
    hands = assign_sides([_hand(80, "left", 0.6), _hand(20, "left", 0.95)], "fused", 0.8)
    assert [(h.landmarks[0, 0], h.side) for h in hands] == [(20, "left"), (80, "right")]
    # fused, both confidently "right": split by x order
    hands = assign_sides([_hand(70, "right", 0.9), _hand(60, "right", 0.99)], "fused", 0.8)
    assert [h.side for h in hands] == ["left", "right"] and hands[0].landmarks[0, 0] == 60


def test_wearer_side_swaps_only_unmirrored_labels():
    assert _wearer_side("Left", mirrored=True) == "left"
    assert _wearer_side("Left", mirrored=False) == "right"
    assert _wearer_side("Right", mirrored=False) == "left"


def test_landmark_box_margin_and_clip():
    lm = np.array([[10, 20], [50, 60]], np.float32)
    assert landmark_box(lm, 100, 100, 0.25) == (0.0, 10.0, 60.0, 70.0)
    assert landmark_box(lm, 55, 65, 0.25) == (0.0, 10.0, 55.0, 65.0)


def test_rows_round_trip_through_parquet(tmp_path):
    rng = np.random.default_rng(0)
    hands = [Hand(i, s, 0.9 - i / 10, (1.0, 2.0, 30.0, 40.0), rng.uniform(0, 50, (21, 2)).astype(np.float32),
                  s, 0.7, "left") for i, s in enumerate(("left", "right"))]
    rows = hands_to_rows("f1", hands)
    write_table(pd.DataFrame(rows), HANDS, tmp_path / "h.parquet")
    back = rows_to_hands(read_table(tmp_path / "h.parquet", HANDS))
    for a, b in zip(hands, back):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        assert (a.hand_id, a.side, a.side_model, a.side_position) == (b.hand_id, b.side, b.side_model, b.side_position)
        assert a.box == b.box and a.score == pytest.approx(b.score) and b.side_model_score == pytest.approx(0.7)
    assert rows_to_hands(rows)[1].side == "right"


def _tiny_frames_root(tmp_path: Path, ev, image_ids: list[str]) -> Path:
    root = tmp_path / "artifacts"
    rows = []
    for i, image_id in enumerate(image_ids):
        frame = _frame(ev, image_id)
        img = read_image(frame.image_path)
        rel = f"images/{frame.video_id}/{image_id}.jpg"
        write_image(img, root / "frames" / rel)
        rows.append(dict(frame_id=image_id, video_id=frame.video_id, source="test", clip_index=i, epic_frame=i,
                         time_s=float(i), image_path=rel, width=img.shape[1], height=img.shape[0],
                         narration_ids=[], split="train"))
    write_table(pd.DataFrame(rows), FRAMES, root / "frames" / "frames.parquet")
    return root


def test_stage_end_to_end(tmp_path, evalset):
    from stages.cli import main

    ids = [BOTH_HANDS_FRAME, "P02_101_frame_0000011665", "P01_104_frame_0000001894"]
    root = _tiny_frames_root(tmp_path, evalset, ids)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"hands": {"side_source": "fused"}}))
    assert main(["hands", "--params", str(params), "--root", str(root)]) == 0
    out = root / "hands" / "hands.parquet"
    df = read_table(out, HANDS)
    assert set(df["frame_id"]) <= set(ids) and len(df) >= 2
    assert df.groupby("frame_id")["hand_id"].apply(lambda s: sorted(s) == list(range(len(s)))).all()
    assert set(df["side"]) <= {"left", "right"} and (df["landmarks"].map(len) == 42).all()
    meta = table_meta(out)
    assert int(meta["frames"]) == 3 and int(meta["hands"]) == len(df)
    assert sum(int(meta[f"frames_{k}"]) for k in range(3)) == 3


def test_stage_missing_frames_is_an_error(tmp_path):
    from stages.cli import main

    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    assert main(["hands", "--params", str(params), "--root", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "nothing" / "hands").exists()

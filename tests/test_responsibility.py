"""COHESIV motion responsibility: synthetic sequences with known answers, storage, and the stage on a real clip."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import responsibility as M
from pipeline import responsibility_io as MIO
from pipeline import rle
from pipeline.io import read_table, write_image, write_table
from pipeline.schemas import FRAMES, HANDS, MASKS, MOTION_SCORES
from pipeline.types import Hand

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIP = DATA / "epic" / "clips" / "P01_01_left_hand_7430_7541_action_raw854x480.mp4"
H, W = 160, 240
OFFSETS = (-3, -2, -1, 1, 2, 3)


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed).random((h // 4, w // 4)).astype(np.float32)
    return cv2.resize(cv2.GaussianBlur(r, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_CUBIC)


BG, HAND_TEX, OBJ_TEX = _texture(H + 80, W + 80, 1), _texture(40, 40, 2) * 0.5 + 0.5, _texture(36, 44, 3) * 0.5


def render(t: int, hand_v=(3, 1), pan=(0, 0), hx=60, hy=50) -> np.ndarray:
    """Static textured background (shifted by `pan` per frame), a textured hand and, right of it, a held object."""
    ox, oy = 40 + pan[0] * t, 40 + pan[1] * t
    img = BG[oy:oy + H, ox:ox + W].copy()
    x, y = hx + hand_v[0] * t, hy + hand_v[1] * t
    img[y:y + 40, x:x + 40] = HAND_TEX
    img[y + 2:y + 38, x + 40:x + 84] = OBJ_TEX
    return (img * 255).clip(0, 255).astype(np.uint8)


def hand_at(t: int, hand_v=(3, 1), side="left", hx=60, hy=50) -> Hand:
    x, y = hx + hand_v[0] * t, hy + hand_v[1] * t
    lm = np.array([[x + 4 + (i % 5) * 8, y + 4 + (i // 5) * 8] for i in range(21)], np.float32)
    return Hand(0, side, 0.9, (x, y, x + 40, y + 40), lm)


def run_sequence(hand_v=(3, 1), pan=(0, 0), hands=True, **cfg) -> tuple[M.FrameMotion, tuple[int, int]]:
    t = 3
    nbs = {k: render(t + k, hand_v, pan) for k in OFFSETS}
    hs = {"left": hand_at(t, hand_v)} if hands else {}
    fm = M.frame_motion(render(t, hand_v, pan), nbs, hs, 1.0, M.MotionConfig(**cfg))
    return fm, (60 + hand_v[0] * t, 50 + hand_v[1] * t)


def object_and_background(resp: np.ndarray, xy: tuple[int, int]) -> tuple[float, float]:
    x, y = xy
    obj = resp[y + 6:y + 34, x + 46:x + 80].mean()
    far = np.ones_like(resp, bool)
    far[max(y - 20, 0):y + 60, max(x - 20, 0):x + 110] = False
    return float(obj), float(resp[far].mean())


@pytest.mark.parametrize("compensate", [False, True])
def test_held_object_gets_the_hands_responsibility(compensate):
    fm, xy = run_sequence(camera_compensation=compensate)
    left = fm.sides["left"]
    assert left.status == M.OK and left.hand_motion == pytest.approx(np.hypot(3, 1), rel=0.15)
    obj, bg = object_and_background(left.resp, xy)
    assert obj > 0.8 and bg < 0.15
    assert fm.sides["right"].status == M.NO_HAND and not fm.sides["right"].resp.any()


def test_static_hand_and_missing_hand_and_neighbours():
    fm, _ = run_sequence(hand_v=(0, 0))
    assert fm.sides["left"].status == M.STATIC_HAND and fm.sides["left"].hand_motion < 0.5
    assert not fm.sides["left"].resp.any()
    fm, _ = run_sequence(hands=False)
    assert {s.status for s in fm.sides.values()} == {M.NO_HAND}
    alone = M.frame_motion(render(0), {}, {"left": hand_at(0)}, 1.0, M.MotionConfig())
    assert alone.sides["left"].status == M.NO_NEIGHBOURS and alone.sides["right"].status == M.NO_HAND


def test_hand_without_usable_points_is_few_points():
    tiny = Hand(0, "right", 0.9, (10, 10, 11, 11), np.zeros((0, 2), np.float32))
    fm = M.frame_motion(render(3), {1: render(4)}, {"right": tiny}, 1.0, M.MotionConfig())
    assert fm.sides["right"].status == M.FEW_POINTS


def test_camera_pan_is_compensated_and_zero_flow_background_is_not():
    """Camera pans so the background moves with the hand in the image (hand still relative to the scene).

    COHESIV's zero-flow background hands the whole moving background to the hand; with camera compensation
    the hand does not move relative to the background, so it is static_hand and claims nothing.
    """
    pan_along = dict(hand_v=(-2, 0), pan=(2, 0))  # background content moves -2 px/frame, like the hand
    fm, xy = run_sequence(**pan_along, camera_compensation=False)
    assert fm.sides["left"].status == M.OK and object_and_background(fm.sides["left"].resp, xy)[1] > 0.5
    fm, _ = run_sequence(**pan_along, camera_compensation=True)
    assert fm.sides["left"].status == M.STATIC_HAND
    fm, xy = run_sequence(hand_v=(3, 1), pan=(2, 0), camera_compensation=True)  # pan plus real hand motion
    obj, bg = object_and_background(fm.sides["left"].resp, xy)
    assert fm.sides["left"].status == M.OK and obj > 0.8 and bg < 0.15


def test_homography_recovers_translation_and_rejects_bad_input():
    fl = np.zeros((H, W, 2), np.float32)
    fl[..., 0], fl[..., 1] = 4.5, -2.0
    pts = np.stack(np.meshgrid(np.arange(20, 120, 10), np.arange(20, 100, 10)), -1).reshape(-1, 2).astype(np.float32)
    Hm = M.fit_hand_homography(pts, fl, 3.0, 8)
    np.testing.assert_allclose(Hm / Hm[2, 2], [[1, 0, 4.5], [0, 1, -2.0], [0, 0, 1]], atol=1e-3)
    pred = M.predicted_flow(Hm, (H, W))
    np.testing.assert_allclose(pred[50, 70], [4.5, -2.0], atol=1e-3)
    assert M.fit_hand_homography(pts[:5], fl, 3.0, 8) is None
    assert M.fit_hand_homography(np.repeat(pts[:1], 30, 0), fl, 3.0, 8) is None


def test_responsibility_is_a_softmax_over_models_and_background():
    fl = np.zeros((4, 6, 2), np.float32)
    fl[:, :3] = (5.0, 0.0)
    model = np.full_like(fl, 0.0)
    model[...] = (5.0, 0.0)
    r = M.responsibility(fl, [model], t=2.0)
    assert r.shape == (2, 4, 6)
    np.testing.assert_allclose(r.sum(0), 1.0, atol=1e-6)
    np.testing.assert_allclose(r[0, :, :3], 1 / (1 + np.exp(-2.5)), atol=1e-6)
    np.testing.assert_allclose(r[1, :, 3:], 1 / (1 + np.exp(-2.5)), atol=1e-6)


def test_region_scores_and_hand_exclusion():
    maps = np.zeros((2, 20, 30), np.float32)
    maps[0, :, :10] = 1.0
    inside = np.zeros((40, 60), bool)
    inside[:, :20] = True
    half = np.zeros((40, 60), bool)
    half[:, 10:30] = True
    s = M.region_motion_scores(maps, [inside, half])
    np.testing.assert_allclose(s, [[1.0, 0.5], [0.0, 0.0]], atol=1e-6)
    s = M.region_motion_scores(maps, [inside, half], exclude=inside)
    np.testing.assert_allclose(s[0], [0.0, 0.0], atol=1e-6)  # only hand pixels carried the score


def test_quantisation_round_trip_through_hdf5(tmp_path):
    rng = np.random.default_rng(0)
    maps = [rng.random((2, 24, 40)).astype(np.float32), rng.random((2, 30, 20)).astype(np.float32)]
    np.testing.assert_array_less(np.abs(M.dequantise(M.quantise(maps[0])) - maps[0]), 1 / 510 + 1e-7)
    MIO.write_maps(tmp_path / "r.h5", ["a", "b"], maps, dict(temperature=2.0))
    back = MIO.read_maps(tmp_path / "r.h5")
    assert list(back) == ["a", "b"] and back["b"].shape == (2, 30, 20)
    np.testing.assert_array_less(np.abs(back["b"] - maps[1]), 1 / 510 + 1e-7)


def test_neighbours_drop_at_clip_ends_for_videos_and_frame_folders():
    frames = MIO.read_source_frames(CLIP, MIO.wanted_indices([0, 30], [1, 2]), (60, 107))
    assert sorted(frames) == [0, 1, 2, 28, 29, 30] and frames[0].shape == (60, 107)  # 31 frames: 31, 32 absent
    assert sorted(MIO.neighbours_of(frames, 30, [1, 2])) == [-2, -1]
    folder = MIO.read_source_frames(DATA / "epic" / "rgb_frames" / "P28_101", {0, 1, 7, 8}, (32, 57))
    assert sorted(folder) == [0, 1, 7]


# --- the stage end to end on a real clip --------------------------------------------------------------------

def _tiny_root(tmp: Path) -> Path:
    """frames: clip indices 0 (no neighbours before), 4 (real moving left hand), 30 (last frame) of one real clip."""
    root = tmp / "artifacts"
    cap, images = cv2.VideoCapture(str(CLIP)), []
    while (ok_img := cap.read())[0]:
        images.append(cv2.cvtColor(ok_img[1], cv2.COLOR_BGR2RGB))
    cap.release()
    rows = []
    for i in (0, 4, 30):
        fid = f"P01_01_test_{i:03d}"
        write_image(images[i], root / "frames" / "images" / f"{fid}.jpg")
        rows.append(dict(frame_id=fid, video_id="P01_01", source=str(CLIP), clip_index=i, epic_frame=-1,
                         time_s=float("nan"), image_path=f"images/{fid}.jpg", width=854, height=480,
                         narration_ids=[], split="train"))
    write_table(pd.DataFrame(rows), FRAMES, root / "frames" / "frames.parquet")
    _write_hands_and_masks(root)
    return root


def _write_hands_and_masks(root: Path) -> None:
    box = (207.6, 77.6, 333.2, 178.6)  # where the left hand is in clip frame 4 (checked by eye)
    lm = np.array([[box[0] + 10 + (i % 5) * 25, box[1] + 10 + (i // 5) * 20] for i in range(21)], np.float32)
    hands = [dict(frame_id=f, hand_id=0, side="left", side_model="left", side_model_score=0.9, side_position="left",
                  score=0.9, x0=box[0], y0=box[1], x1=box[2], y1=box[3], landmarks=lm.ravel().tolist(),
                  backend="synthetic") for f in ("P01_01_test_004", "P01_01_test_030")]
    write_table(pd.DataFrame(hands), HANDS, root / "hands" / "hands.parquet")
    rows = []
    for f in ("P01_01_test_004", "P01_01_test_030"):
        for mid, (kind, (x0, y0, x1, y1)) in enumerate([("hand", box), ("object", (100, 0, 300, 120)),
                                                       ("object", (600, 300, 800, 460))]):
            m = np.zeros((480, 854), bool)
            m[int(y0):int(y1), int(x0):int(x1)] = True
            is_hand = kind == "hand"
            rows.append(dict(frame_id=f, mask_id=mid, kind=kind, side="left" if is_hand else "",
                             hand_id=0 if is_hand else -1, height=480, width=854, rle=rle.encode(m), x0=x0, y0=y0,
                             x1=x1, y1=y1, area=int(m.sum()), score=1.0, backend="synthetic"))
    write_table(pd.DataFrame(rows), MASKS, root / "masks" / "masks.parquet")


def test_stage_end_to_end_on_a_real_clip(tmp_path):
    from stages.cli import main

    root = _tiny_root(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"responsibility": {"overlays": 2}}))
    assert main(["responsibility", "--params", str(params), "--root", str(root)]) == 0
    out = root / "responsibility"
    scores = read_table(out / "motion_scores.parquet", MOTION_SCORES)
    status = scores.drop_duplicates(["frame_id", "side"]).set_index(["frame_id", "side"])["status"]
    assert status[("P01_01_test_000", "left")] == "no_hand" and status[("P01_01_test_004", "right")] == "no_hand"
    assert status[("P01_01_test_004", "left")] == "ok"
    assert set(status) <= set(M.STATUSES)
    moving = scores[(scores.frame_id == "P01_01_test_004") & (scores.side == "left")].set_index("mask_id")
    assert sorted(moving.index) == [0, 1, 2] and moving.loc[0, "motion_score"] > moving.loc[2, "motion_score"]
    maps = MIO.read_maps(out / "responsibility.h5")
    assert list(maps) == ["P01_01_test_000", "P01_01_test_004", "P01_01_test_030"]
    assert maps["P01_01_test_004"].shape == (2, 240, 427) and not maps["P01_01_test_000"].any()
    assert [f.stem for f in (out / "overlays").glob("*.png")] == ["P01_01_test_004"]  # only frames with motion


def test_stage_missing_source_video_is_an_error(tmp_path, capsys):
    from stages.cli import main

    root = _tiny_root(tmp_path)
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    frames["source"] = str(tmp_path / "gone.mp4")
    write_table(frames, FRAMES, root / "frames" / "frames.parquet")
    assert main(["responsibility", "--root", str(root), "--params", str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "p.yaml").write_text("{}\n")
    assert main(["responsibility", "--root", str(root), "--params", str(tmp_path / "p.yaml")]) == 2
    assert "gone.mp4: source video of a stored frame not found" in capsys.readouterr().err
    assert not (root / "responsibility").exists()

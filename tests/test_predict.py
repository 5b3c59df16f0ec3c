"""`wish evaluate` / `wish predict` end to end on a tiny synthetic eval-format dir, with a test double standing in
for the learned parts (hands, proposals, heads); label composition and the nearest baseline on known maps."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import predict as pp
from pipeline.score_methods import nearest
from pipeline.errors import WishError
from pipeline.io import read_table
from pipeline.labelmap import Decision, compose
from pipeline.params import Params
from pipeline.predict import FrameContext
from pipeline.rle import box
from pipeline.schemas import PREDICTIONS
from pipeline.types import Hand
from stages.cli import main

H, W = 40, 60


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# Frame A: left hand holds an object just right of it, right hand holds nothing. Frame B: both hands, the
# right one holds an object; the left one holds a different object.
GT = {
    "vid_a_frame_1": {1: _rect(20, 40, 0, 10), 3: _rect(25, 35, 10, 16), 2: _rect(20, 40, 50, 60)},
    "vid_b_frame_2": {1: _rect(20, 40, 0, 10), 3: _rect(30, 34, 10, 14), 2: _rect(20, 40, 48, 60), 4: _rect(26, 36, 40, 48)},
}
DISTRACTOR = _rect(0, 6, 25, 35)  # 60 px, far from both hands


def _label_map(classes: dict[int, np.ndarray]) -> np.ndarray:
    out = np.zeros((H, W), np.uint8)
    for c, m in classes.items():
        out[m] = c
    return out


def _write_evalset(root, *, drop_column: str | None = None, drop_label: str | None = None):
    rng = np.random.default_rng(0)
    rows = []
    for image_id, classes in GT.items():
        for sub in ("images", "labels", "masks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{image_id}.png")
        if image_id != drop_label:
            Image.fromarray(_label_map(classes)).save(root / "labels" / f"{image_id}.png")
        for c, m in classes.items():
            name = {1: "left_hand", 2: "right_hand", 3: "left_object", 4: "right_object"}[c]
            Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / f"{image_id}__{name}_0.png")
            rows.append(dict(image_id=image_id, image_path=f"images/{image_id}.png", video_id=image_id[:5],
                             mask_path=f"masks/{image_id}__{name}_0.png", label=name))
    manifest = pd.DataFrame(rows)
    if drop_column:
        manifest = manifest.drop(columns=[drop_column])
    manifest.to_csv(root / "manifest.csv", index=False)
    return root


class FakeHeads:
    """Picks an object per side from a fixed table: {image_id: {side: object index or -1}}."""

    def __init__(self, choice):
        self.choice = choice

    def predict(self, regions, use_contact=True, use_matching=True):
        return {side: (k, 0.9 if k >= 0 else 0.1, 0.8) for side, k in self.choice[regions].items()}


class FakeModels:
    """Hands and hand masks from GT, object proposals = GT objects + a distractor; regions = the image id."""

    def __init__(self, choice):
        self.heads = FakeHeads(choice)

    def context(self, image_id, image, narrations=None, with_regions=True):
        classes = GT[image_id]
        hands = [Hand(c, side, 1.0, box(classes[c])) for c, side in ((1, "left"), (2, "right")) if c in classes]
        objects = [classes[c] for c in (3, 4) if c in classes] + [DISTRACTOR]
        masks = {side: classes[c] for c, side in ((1, "left"), (2, "right")) if c in classes}
        return FrameContext(image_id, image, hands, masks, objects, regions=image_id if with_regions else None)


PERFECT = {"vid_a_frame_1": {"left": 0, "right": -1}, "vid_b_frame_2": {"left": 0, "right": 1}}
# Frame A's left hand picks the distractor instead of its object; everything else right.
MISMATCH = {"vid_a_frame_1": {"left": 1, "right": -1}, "vid_b_frame_2": {"left": 0, "right": 1}}


@pytest.fixture
def evalset(tmp_path):
    return _write_evalset(tmp_path / "evalset")


def _evaluate(monkeypatch, tmp_path, evalset, choice, methods="wish,baseline_nearest"):
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(choice))
    out = tmp_path / "out"
    rc = main(["evaluate", "--evalset", str(evalset), "--out", str(out), "--root", str(tmp_path / "art"),
               "--methods", methods, "--params", str(_params(tmp_path))])
    assert rc == 0
    return out, json.loads((out / "metrics.json").read_text())


def _params(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("score:\n  overlays: true\n")
    return p


def test_evaluate_perfect_prediction_scores_one(monkeypatch, tmp_path, evalset):
    out, m = _evaluate(monkeypatch, tmp_path, evalset, PERFECT)
    for key in ("object_miou", "hand_miou", "iou.left_object", "iou.right_object", "hand_side_accuracy",
                "contact_accuracy"):
        assert m[f"wish.{key}"] == 1.0, key
    assert m["wish.iou.both_object"] is None and m["wish.n_gt_hands"] == 4 and m["wish.n_frames"] == 2
    # the nearest proposal touches each holding hand and the distractor is far: also right here
    assert m["baseline_nearest.object_miou"] == 1.0 and m["baseline_nearest.contact_accuracy"] == 1.0
    for image_id, classes in GT.items():
        written = np.array(Image.open(out / "labels" / "wish" / f"{image_id}.png"))
        assert np.array_equal(written, _label_map(classes))
        assert (out / "overlays" / f"{image_id}.png").is_file()
    per_class = pd.read_csv(out / "per_class.csv")
    assert set(per_class["method"]) == {"wish", "baseline_nearest"} and len(per_class) == 10
    pred = read_table(out / "predictions.parquet", PREDICTIONS)
    assert len(pred) == 8 and pred["holds"].sum() == 6


def test_evaluate_known_mismatch(monkeypatch, tmp_path, evalset):
    _, m = _evaluate(monkeypatch, tmp_path, evalset, MISMATCH, methods="wish")
    # class 3: frame A predicts the 60-px distractor for a 60-px object (inter 0), frame B is right (16 px):
    # IoU = 16 / (60 + 60 + 16); class 4 stays perfect.
    assert m["wish.iou.left_object"] == round(16 / 136, 4)
    assert m["wish.object_miou"] == round((16 / 136 + 1.0) / 2, 4)
    assert m["wish.contact_accuracy"] == 1.0  # it still says the left hand holds something


@pytest.mark.parametrize("broken", ["column", "label"])
def test_malformed_evalset_exits_2_naming_the_file(monkeypatch, tmp_path, capsys, broken):
    es = _write_evalset(tmp_path / "bad", drop_column="mask_path" if broken == "column" else None,
                        drop_label="vid_b_frame_2" if broken == "label" else None)
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(PERFECT))
    rc = main(["evaluate", "--evalset", str(es), "--out", str(tmp_path / "o"), "--methods", "wish",
               "--params", str(_params(tmp_path))])
    err = capsys.readouterr().err
    assert rc == 2
    assert ("manifest.csv" in err and "mask_path" in err) if broken == "column" else "vid_b_frame_2.png" in err
    assert not (tmp_path / "o").exists()  # no partial output


def test_predict_on_folder_writes_labels_and_predictions(monkeypatch, tmp_path, evalset):
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(PERFECT))
    out = tmp_path / "pred"
    rc = main(["predict", str(evalset / "images"), "--out", str(out), "--params", str(_params(tmp_path))])
    assert rc == 0
    pred = read_table(out / "predictions.parquet", PREDICTIONS)
    assert sorted(pred["image_id"].unique()) == sorted(GT)
    row = pred[(pred["image_id"] == "vid_b_frame_2") & (pred["side"] == "right")].iloc[0]
    assert row["holds"] and row["label"] == 4 and row["contact_prob"] == pytest.approx(0.9)
    assert np.array_equal(np.array(Image.open(out / "labels" / "vid_a_frame_1.png")), _label_map(GT["vid_a_frame_1"]))


def test_predict_refuses_to_replace_a_foreign_dir(tmp_path, evalset):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["predict", str(evalset / "images"), "--out", str(out), "--params", str(_params(tmp_path))]) == 2
    assert (out / "thesis.tex").read_text() == "precious"


def test_same_object_in_both_hands_becomes_class_5_and_hands_are_drawn_over_objects():
    hands = {"left": _rect(20, 40, 0, 12), "right": _rect(20, 40, 48, 60)}
    obj = _rect(10, 30, 10, 50)  # overlaps both hands
    d = {"left": Decision("left", True, 0, 0.9, 0.9), "right": Decision("right", True, 0, 0.8, 0.8)}
    m = compose((H, W), hands, d, [obj])
    assert m[15, 30] == 5 and m[25, 11] == 1 and m[25, 49] == 2
    assert set(np.unique(m)) == {0, 1, 2, 5}


def test_different_objects_contested_pixels_go_to_the_more_confident_hand():
    a, b = _rect(0, 10, 0, 20), _rect(0, 10, 15, 35)  # IoU 50/350: two objects, not one
    d = {"left": Decision("left", True, 0, 0.9, 0.9), "right": Decision("right", True, 1, 0.5, 0.5)}
    m = compose((H, W), {}, d, [a, b])
    assert m[5, 17] == 3 and m[5, 30] == 4 and m[5, 2] == 3


def test_nearest_baseline_ignores_far_and_hand_covering_proposals():
    hand = _rect(10, 30, 10, 20)
    near, far, on_hand = _rect(12, 20, 21, 26), _rect(0, 5, 50, 60), _rect(10, 30, 10, 21)
    ctx = FrameContext("x", np.zeros((H, W, 3), np.uint8), [Hand(0, "left", 1.0, box(hand))], {"left": hand},
                       [on_hand, far, near])
    d = nearest(ctx, None, Params())
    assert d["left"].mask_id == 2 and d["left"].hand_found and not d["right"].hand_found
    ctx.objects = [on_hand, far]
    assert nearest(ctx, None, Params())["left"].mask_id == -1  # the only object beyond reach: holds nothing


def test_nearest_baseline_measures_from_the_hand_not_its_forearm():
    """The hand mask runs along the forearm (rows 10-40); a region touching the forearm's far end is not nearer
    than one a few pixels from the fingers (landmarks in rows 4-12)."""
    arm = _rect(4, 40, 10, 20)
    lm = np.array([(15.0, 12.0)] + [(11.0 + (i % 5) * 2, 4.0 + (i // 5) * 2) for i in range(20)], np.float32)
    hand = Hand(0, "left", 1.0, (10.0, 4.0, 20.0, 12.0), lm)
    by_forearm, by_fingers = _rect(34, 40, 18, 30), _rect(0, 5, 12, 18)  # both overlap the mask a little
    ctx = FrameContext("x", np.zeros((H, W, 3), np.uint8), [hand], {"left": arm}, [by_forearm, by_fingers])
    assert nearest(ctx, None, Params())["left"].mask_id == 1


# ------------------------------------------------------------------------------------------ score stage


def _score(monkeypatch, tmp_path, evalset, extra=""):
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(MISMATCH))
    params = tmp_path / "score.yaml"
    params.write_text(f"score:\n  evalset: {evalset}\n  methods: [wish, baseline_nearest]\n{extra}")
    root, metrics = tmp_path / "art", tmp_path / "metrics"
    return main(["score", "--params", str(params), "--root", str(root), "--metrics-dir", str(metrics)]), root, metrics


def test_oracle_selection_is_the_choice_ceiling(monkeypatch, tmp_path, evalset, capsys):
    """With proposals that hold every GT object, choosing the best one per hand is perfect where the heads are not,
    and `wish predict` refuses the oracle (it reads the GT)."""
    rc, root, metrics = _score(monkeypatch, tmp_path, evalset, "")
    params = tmp_path / "oracle.yaml"
    params.write_text(f"score:\n  evalset: {evalset}\n  methods: [wish, oracle_selection]\n")
    assert main(["score", "--params", str(params), "--root", str(root), "--metrics-dir", str(metrics)]) == 0
    m = json.loads((metrics / "score.json").read_text())
    assert m["oracle_selection.object_miou"] == 1.0 > m["wish.object_miou"]
    assert m["oracle_selection.contact_accuracy"] == 1.0
    assert main(["predict", str(evalset / "images"), "--method", "oracle_selection", "--params", str(params),
                 "--root", str(root), "--out", str(tmp_path / "pred")]) == 2
    assert "ground truth" in capsys.readouterr().err


def test_score_stage_writes_flat_rounded_metrics_and_plots_csv(monkeypatch, tmp_path, evalset):
    rc, root, metrics = _score(monkeypatch, tmp_path, evalset)
    assert rc == 0
    m = json.loads((metrics / "score.json").read_text())
    assert m["wish.iou.left_object"] == round(16 / 136, 4) == 0.1176
    assert m["baseline_nearest.object_miou"] == 1.0
    assert {k.split(".")[0] for k in m} == {"wish", "baseline_nearest", "evalset", "proposals"}
    # the fake proposals hold every GT object exactly: the proposal ceiling is perfect
    assert (m["proposals.recall_iou0.5"], m["proposals.mean_best_iou"], m["proposals.n_gt_objects"]) == (1.0, 1.0, 3)
    assert (m["evalset.n_frames"], m["evalset.n_gt_hands"], m["evalset.n_gt_hands_holding"]) == (2, 4, 3)
    # only stable, defined numbers are tracked: no pixel counts, no IoU of the GT-absent class 5
    assert not any("pixels" in k or "both_object" in k or v is None for k, v in m.items())
    full = json.loads((root / "score" / "metrics.json").read_text())
    assert full["wish.iou.both_object"] is None and full["wish.pred_pixels.left_object"] == 60 + 16
    plots = pd.read_csv(metrics / "per_class.csv")
    assert list(plots.columns) == ["method", "class", "iou"] and len(plots) == 8  # class 5 undefined for both
    assert (root / "score" / "predictions.parquet").is_file() and (root / "score" / "labels" / "wish").is_dir()


def test_score_refuses_to_score_on_training_videos(monkeypatch, tmp_path, evalset):
    from pipeline.io import write_table
    from pipeline.schemas import FRAMES

    row = dict(frame_id="f", video_id="vid_a", source="s", clip_index=0, epic_frame=1, time_s=0.0, image_path="x.jpg",
               width=W, height=H, narration_ids=[], split="train")
    write_table(pd.DataFrame([row]), FRAMES, tmp_path / "art" / "frames" / "frames.parquet")
    rc, root, metrics = _score(monkeypatch, tmp_path, evalset)
    assert rc == 2 and not (metrics / "score.json").exists() and not (root / "score").exists()


# ------------------------------------------------------------------------------------------ ablations, narration


def _regions(n_obj: int = 3):
    from pipeline.regions import FrameRegions
    from pipeline.types import Proposal

    hands = [Hand(0, "left", 1.0, box(_rect(20, 40, 0, 10))), Hand(1, "right", 1.0, box(_rect(20, 40, 50, 60)))]
    objs = [Proposal(_rect(5 * i, 5 * i + 5, 12, 20), 1.0) for i in range(n_obj)]
    props = objs + [Proposal(_rect(20, 40, 0, 10), 1.0, "hand", "left", 0),
                    Proposal(_rect(20, 40, 50, 60), 1.0, "hand", "right", 1)]
    feats = np.random.default_rng(0).normal(size=(len(props), 8)).astype(np.float32)
    return hands, objs, FrameRegions.from_proposals("f", H, W, hands, props, feats)


def test_head_ablations_use_one_head_each():
    import torch

    from pipeline.score_methods import wish_contact_only, wish_matching_only
    from pipeline.heads import Heads, HeadsConfig, PairHead

    torch.manual_seed(0)
    hands, objs, fr = _regions()
    models = type("M", (), {"heads": Heads(HeadsConfig(8, 16, contact_threshold=0.0), PairHead(8, 16, False),
                                           PairHead(8, 16, True))})()
    ctx = FrameContext("f", np.zeros((H, W, 3), np.uint8), hands, {}, [o.mask for o in objs], regions=fr)
    for side in ("left", "right"):
        pc, pm = models.heads.probs(fr, side)
        c = wish_contact_only(ctx, models, None)[side]
        assert c.mask_id == int(np.argmax(pc)) and np.isnan(c.match_prob)  # threshold 0: always holds
        m = wish_matching_only(ctx, models, None)[side]
        assert np.isnan(m.contact_prob)
        assert m.mask_id == (int(np.argmax(pm)) if np.argmax(pm) < len(pm) - 1 else -1)


class FakeAdapters:
    """pair_scores from a fixed table: {side: (R, P)} cosines per narration."""

    scale = __import__("torch").tensor(10.0)

    def __init__(self, sims):
        self.sims = sims

    def pair_scores(self, fr, side_feats):
        return self.sims


def test_narration_baseline_and_pseudolabels_follow_the_scores():
    from pipeline.align import NarrationTexts
    from pipeline.score_methods import narration, pseudolabel

    hands, objs, fr = _regions()
    # one phrase naming no hand: left best region 2 (0.9), right best region 0 (0.4)
    sims = {"left": np.array([[0.1], [0.2], [0.9]]), "right": np.array([[0.4], [0.3], [0.2]])}
    text = NarrationTexts("n1", "k", ["mug"], ["none"], np.zeros((1, 2, 4), np.float32))
    models = type("M", (), {"adapters": FakeAdapters(sims), "narration_texts": lambda self, df: [text]})()
    ctx = FrameContext("f", np.zeros((H, W, 3), np.uint8), hands, {}, [o.mask for o in objs], regions=fr)
    # the geometric prior off (every region a candidate): this test is about the narration part of the rule
    no_prior = dict(max_tip_dist=1e3, max_hand_in=1, max_other_in=1, touch_weight=0, tip_weight=0, compact_weight=0,
                    part_penalty=0, size_log_std=1e3, prior_weight=0)
    params = Params.model_validate({"pseudolabel": {"min_score": 0.3, **no_prior}})
    d = narration(ctx, models, params)
    assert (d["left"].mask_id, d["right"].mask_id) == (2, 0)  # each hand on its own: both hold
    pl = pseudolabel(ctx, models, params)
    assert (pl["left"].mask_id, pl["right"].mask_id) == (2, -1)  # one object per phrase: it goes to the left
    params = Params.model_validate({"pseudolabel": {"min_score": 0.95, **no_prior}})
    assert narration(ctx, models, params)["left"].mask_id == -1


# ------------------------------------------------------------------------------------------ real data


def test_nearest_baseline_on_a_real_eval_frame(tmp_path):
    """The real detector and proposer on one real eval frame: hands are found on the right sides."""
    import shutil

    src, dst = Path("../shared/data/evalset"), tmp_path / "real"
    image_id = "P01_104_frame_0000001801"
    manifest = pd.read_csv(src / "manifest.csv")
    manifest = manifest[manifest["image_id"] == image_id]
    for sub in ("images", "labels"):
        (dst / sub).mkdir(parents=True)
        shutil.copy(src / sub / f"{image_id}.png", dst / sub)
    manifest.to_csv(dst / "manifest.csv", index=False)
    params = tmp_path / "p.yaml"
    params.write_text("masks:\n  max_proposals: 30\nscore:\n  overlays: false\n")
    rc = main(["evaluate", "--evalset", str(dst), "--out", str(tmp_path / "o"), "--methods", "baseline_nearest",
               "--params", str(params)])
    assert rc == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["baseline_nearest.n_gt_hands"] == 2 and m["baseline_nearest.n_gt_hands_holding"] == 2
    assert m["baseline_nearest.iou.left_hand"] > 0.3 and m["baseline_nearest.iou.right_hand"] > 0.05
    assert m["baseline_nearest.hand_side_accuracy"] == 1.0


def test_iter_inputs_samples_a_video_with_stride_and_downscales(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (120, 80))
    for i in range(7):
        writer.write(np.full((80, 120, 3), 30 * i, np.uint8))
    writer.release()
    frames = list(pp.iter_inputs(path, stride=3, max_side=60))
    assert [i for i, _ in frames] == ["clip_frame_000000", "clip_frame_000003", "clip_frame_000006"]
    assert frames[0][1].shape == (40, 60, 3)
    with pytest.raises(WishError, match="input must be"):
        list(pp.iter_inputs(tmp_path / "nothing.txt"))

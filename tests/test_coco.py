"""COCO export: pycocotools reads our file back to the same label maps, and `wish predict --format coco`."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline import predict as pp
from pipeline.coco import CATEGORIES, CocoWriter, class_scores, label_maps_from_coco
from stages.cli import main
from test_predict import GT, PERFECT, FakeModels, _label_map, _params, _write_evalset


def test_categories_are_the_egohos_ids():
    assert [(c["id"], c["name"]) for c in CATEGORIES] == [
        (1, "left hand"), (2, "right hand"), (3, "left-hand object"), (4, "right-hand object"), (5, "both-hands object")]


def test_pycocotools_round_trip_and_self_evaluation(tmp_path):
    maps = {image_id: _label_map(classes) for image_id, classes in GT.items()}
    maps["both"] = _label_map({1: GT["vid_a_frame_1"][1], 5: GT["vid_a_frame_1"][3]})
    writer = CocoWriter()
    rows = {"left": dict(side="left", holds=True, contact_prob=0.9, match_prob=0.5),
            "right": dict(side="right", holds=False, contact_prob=0.2, match_prob=float("nan"))}
    scores = class_scores({"left": 0.8}, rows)
    assert scores == {1: 0.8, 2: 0.0, 3: pytest.approx(0.45), 4: pytest.approx(0.2), 5: pytest.approx(0.45)}
    for image_id, m in maps.items():
        writer.add(image_id, m, scores)
    path = writer.write(tmp_path / "p.json")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
    assert len(gt.getImgIds()) == 3 and sorted(gt.getCatIds()) == [1, 2, 3, 4, 5]
    for img in gt.loadImgs(gt.getImgIds()):
        m = maps[img["wish_image_id"]]
        for ann in gt.loadAnns(gt.getAnnIds(imgIds=img["id"])):
            assert np.array_equal(gt.annToMask(ann).astype(bool), m == ann["category_id"])
            assert ann["area"] == int((m == ann["category_id"]).sum())
    assert all(np.array_equal(v, maps[k]) for k, v in label_maps_from_coco(json.loads(path.read_text())).items())
    # the same file as results against itself: every instance found, AP 1
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(json.loads(path.read_text())["annotations"]), "segm")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_predict_format_coco_matches_the_egohos_pngs(monkeypatch, tmp_path):
    evalset = _write_evalset(tmp_path / "evalset")
    monkeypatch.setattr(pp, "build_models", lambda params, root: FakeModels(PERFECT))
    outs = {}
    for fmt in ("egohos", "coco"):
        outs[fmt] = tmp_path / fmt
        assert main(["predict", str(evalset / "images"), "--out", str(outs[fmt]), "--format", fmt,
                     "--params", str(_params(tmp_path))]) == 0
    assert not (outs["coco"] / "labels").exists() and not (outs["egohos"] / "predictions.coco.json").exists()
    maps = label_maps_from_coco(json.loads((outs["coco"] / "predictions.coco.json").read_text()))
    assert sorted(maps) == sorted(GT)
    for image_id, m in maps.items():
        assert np.array_equal(m, np.array(Image.open(outs["egohos"] / "labels" / f"{image_id}.png")))
    assert main(["predict", str(evalset / "images"), "--out", str(tmp_path / "x"), "--format", "yolo"]) == 2

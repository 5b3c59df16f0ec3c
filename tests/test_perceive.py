"""Stage `perceive` writes what the models see in the eval frames; `score` reading it gives exactly the metrics of
perceiving in `score`, never perceives then, and never uses perception made for other params or other pixels."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline import perceive as pc
from pipeline.types import Hand, Proposal
from stages.cli import main
from test_predict import DISTRACTOR, GT, _write_evalset

CALLS = {"n": 0}


def _hand(mask: np.ndarray, hand_id: int, side: str) -> Hand:
    ys, xs = np.nonzero(mask)
    lm = np.stack([np.linspace(xs.min(), xs.max(), 21), np.linspace(ys.min(), ys.max(), 21)], 1).astype(np.float32)
    return Hand(hand_id, side, 0.9, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)), lm)


def fake_perceive(self, image, with_regions=True):
    """GT hands and objects (+ a distractor) of the frame the pixels belong to; features drawn from the pixels."""
    CALLS["n"] += 1
    image_id = next(k for k in GT if int(image[0, 0, 0]) == FIRST_PIXEL[k])
    classes = GT[image_id]
    hands = [_hand(classes[c], c, side) for c, side in ((1, "left"), (2, "right")) if c in classes]
    props = [Proposal(classes[c], 0.5 + 0.1 * c) for c in (3, 4) if c in classes] + [Proposal(DISTRACTOR, 0.2)]
    props += [Proposal(classes[h.hand_id], 1.0, "hand", h.side, h.hand_id) for h in hands]
    rng = np.random.default_rng(int(image.sum()))
    feats = rng.normal(size=(len(props), 8)).astype(np.float32) if with_regions else None
    return pc.Perception(hands, props, feats)


FIRST_PIXEL: dict[str, int] = {}


@pytest.fixture
def project(tmp_path, monkeypatch):
    evalset = _write_evalset(tmp_path / "evalset")
    for k in GT:
        FIRST_PIXEL[k] = int(np.asarray(Image.open(evalset / "images" / f"{k}.png"))[0, 0, 0])
    assert len(set(FIRST_PIXEL.values())) == len(GT)
    monkeypatch.setattr(pc.Perceiver, "perceive", fake_perceive)
    params = tmp_path / "params.yaml"
    params.write_text(f"score:\n  evalset: {evalset}\n  methods: [baseline_nearest, pseudolabel_priors, "
                      f"oracle_selection]\n  overlays: false\n")
    CALLS["n"] = 0
    return tmp_path, evalset, params


def _score(params, root, metrics):
    assert main(["score", "--params", str(params), "--root", str(root), "--metrics-dir", str(metrics)]) == 0
    return json.loads((metrics / "score.json").read_text())


def test_score_from_perceive_equals_score_perceiving_itself(project, capsys):
    tmp, evalset, params = project
    fresh = _score(params, tmp / "fresh", tmp / "m_fresh")
    assert CALLS["n"] == len(GT)  # score perceived every frame itself
    assert main(["perceive", "--params", str(params), "--root", str(tmp / "art")]) == 0
    assert CALLS["n"] == 2 * len(GT)
    cached = _score(params, tmp / "art", tmp / "m_cached")
    assert CALLS["n"] == 2 * len(GT)  # nothing perceived in score
    assert "perception of 2 eval frames from" in capsys.readouterr().out
    assert cached == fresh and fresh["pseudolabel_priors.object_miou"] > 0  # the region features were used


def test_round_trip_is_exact(project):
    tmp, evalset, params = project
    assert main(["perceive", "--params", str(params), "--root", str(tmp / "art")]) == 0
    cache = pc.load_perception(tmp / "art" / "perceive")
    for image_id in GT:
        image = np.asarray(Image.open(evalset / "images" / f"{image_id}.png").convert("RGB"))
        want, got = fake_perceive(None, image), cache.perception(image_id)
        assert [(p.kind, p.side, p.hand_id) for p in got.proposals] == [(p.kind, p.side, p.hand_id) for p in want.proposals]
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(got.proposals, want.proposals))
        assert np.array_equal(got.features, want.features) and got.features.dtype == np.float32
        assert [(h.side, h.box) for h in got.hands] == [(h.side, h.box) for h in want.hands]


def test_perception_for_other_params_or_pixels_is_not_used(project, capsys):
    tmp, evalset, params = project
    assert main(["perceive", "--params", str(params), "--root", str(tmp / "art")]) == 0
    other = tmp / "other.yaml"
    other.write_text(params.read_text() + "masks:\n  max_proposals: 7\n")
    _score(other, tmp / "art", tmp / "m1")
    assert "does not match 2 of 2 eval frames or these params" in capsys.readouterr().out
    assert CALLS["n"] == 2 * len(GT)  # perceived again, in score
    image = evalset / "images" / f"{next(iter(GT))}.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[5, 5] = 255 - pixels[5, 5]
    Image.fromarray(pixels).save(image)
    _score(params, tmp / "art", tmp / "m2")
    assert "does not match 1 of 2 eval frames" in capsys.readouterr().out


def test_a_damaged_perception_file_is_an_error(project, capsys):
    tmp, evalset, params = project
    assert main(["perceive", "--params", str(params), "--root", str(tmp / "art")]) == 0
    features = tmp / "art" / "perceive" / pc.FEATURES_FILE
    features.write_bytes(features.read_bytes()[:100])
    metrics = tmp / "m"
    assert main(["score", "--params", str(params), "--root", str(tmp / "art"), "--metrics-dir", str(metrics)]) == 2
    assert f"wish: error: {features}" in capsys.readouterr().err and not (metrics / "score.json").exists()

"""Stage 1 (align) and the end-to-end align -> pseudolabel -> heads stages on a tiny synthetic artifact set."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.align import (Adapters, AdapterConfig, NarrationTexts, collate_frames, collate_texts,
                            frame_text_scores, info_nce, load_adapters, save_adapters, training_narrations)
from pipeline.errors import WishError
from pipeline.regions import GEOM_NAMES
from pipeline.synth_wish import Encoders, make_world
from wish_artifacts import write_artifacts, write_evalset

FAST = {"align": {"hidden": 32, "out_dim": 16, "epochs": 8, "lr": 0.01, "dropout": 0.0},
        "heads": {"hidden": 32, "epochs": 8, "lr": 0.01}, "pseudolabel": {"overlays": 2, "source": "narration"}}


@pytest.fixture(scope="module")
def world():
    return make_world(24, 0.0, seed=3, enc=Encoders())


def test_geometry_marks_the_touching_region(world):
    fr = next(f for f in world.frames.values() if world.truth[(f.frame_id, "left")] >= 0)
    g = fr.geometry("left")
    held = fr.index_of(world.truth[(fr.frame_id, "left")])
    touch = GEOM_NAMES.index("touch")
    far = g[:, GEOM_NAMES.index("gap_dist")] > 0
    assert g.shape == (fr.n_regions, len(GEOM_NAMES)) and g[held, touch] > 0.5 and (g[far, touch] == 0).all()
    assert g[held, GEOM_NAMES.index("gap_dist")] == 0.0


def test_absent_hand_has_zero_geometry_and_feature(world):
    fr = next(f for f in world.frames.values() if not f.hands["right"].present)
    assert not fr.geometry("right").any() and not fr.hands["right"].feature.any()


def _texts(hands: list[str], dim: int = 6) -> NarrationTexts:
    return NarrationTexts("n", "k", [f"p{i}" for i in range(len(hands))], hands, np.ones((len(hands), 2, dim), np.float32))


def test_frame_score_respects_named_hand(world):
    """A phrase naming the left hand can only be matched through the left hand's pairs."""
    fr = next(f for f in world.frames.values() if f.hands["left"].present and f.hands["right"].present)
    model = Adapters(AdapterConfig(fr.features.shape[1], 6, 16, 8, 0.0))
    fb, tb = collate_frames([fr]), collate_texts([_texts(["left"]), _texts(["right"]), _texts(["none"])])
    scores = frame_text_scores(model, fb, tb)[0]
    model.cfg = AdapterConfig(fr.features.shape[1], 6, 16, 8, 0.0, pool_temperature=0.0)
    with torch.no_grad():
        pairs = model.embed_pairs(fb["obj"], fb["hand"], fb["geom"])[0]
        text = model.embed_texts(torch.ones(1, 6))[0]
        best = (pairs @ text).amax(-1)  # per side
        hard = frame_text_scores(model, fb, tb)[0]
    assert torch.allclose(hard, torch.stack([best[0], best[1], best.max()]), atol=1e-5)
    assert torch.all(scores >= hard - 1e-6)  # soft pooling upper-bounds the hard max


def test_info_nce_prefers_diagonal():
    pos = torch.eye(4, dtype=torch.bool)
    good, acc = info_nce(torch.eye(4), pos, torch.tensor(10.0))
    bad, acc_bad = info_nce(1 - torch.eye(4), pos, torch.tensor(10.0))
    assert good < bad and acc == 1.0 and acc_bad == 0.0


def test_checkpoint_roundtrip_weights_only(tmp_path, world):
    fr = next(iter(world.frames.values()))
    model = Adapters(AdapterConfig(fr.features.shape[1], 24, 16, 8, 0.0)).eval()
    save_adapters(model, tmp_path / "a.pt")
    back = load_adapters(tmp_path / "a.pt")
    x = torch.randn(3, fr.features.shape[1])
    assert torch.allclose(model.embed_regions(x), back.embed_regions(x))
    t = {s: np.random.default_rng(0).normal(size=(2, 24)) for s in ("left", "right")}
    assert model.pair_scores(fr, t)["left"].shape == (fr.n_regions, 2)


def test_refuses_eval_video_frames():
    frames = pd.DataFrame(dict(frame_id=["a", "b"], video_id=["P01_01", "P02_01"], split=["train", "train"],
                               narration_ids=[["n1"], ["n1"]]))
    phrases = pd.DataFrame(dict(narration_id=["n1"]))
    assert training_narrations(frames, phrases, set()) == {"a": ["n1"], "b": ["n1"]}
    with pytest.raises(WishError, match="P02_01"):
        training_narrations(frames, phrases, {"P02_01"})


def test_three_stages_end_to_end(tmp_path, write_params, run_cli):
    from pipeline.heads import load_heads
    from pipeline.io import read_table
    from pipeline.regions import load_frame_regions
    from pipeline.schemas import PSEUDOLABELS

    root = tmp_path / "artifacts"
    world = write_artifacts(root, n=48)
    params = write_params({**FAST, "common": {"eval_dirs": [str(write_evalset(tmp_path / "eval"))]}})
    for stage in ("align", "pseudolabel", "heads"):
        code, out, err = run_cli(stage, "--params", params, "--root", root)
        assert code == 0, err
    curve = pd.read_csv(root / "align" / "curve.csv")
    assert list(curve.columns[:4]) == ["epoch", "step", "loss", "retrieval_acc"] and len(curve) == 8
    assert curve["loss"].iloc[-1] < curve["loss"].iloc[0]
    labels = read_table(root / "pseudolabel" / "pseudolabels.parquet", PSEUDOLABELS)
    assert len(labels) == 2 * 48 and set(labels["side"]) == {"left", "right"}
    assert (labels.loc[~labels["label"], "mask_id"] == -1).all()
    held = labels[labels["label"]]
    assert len(held) and all(m in ids for m, ids in zip(held["mask_id"], held["candidate_ids"]))
    # without temporal linking a held row's region is the top of the scores it carries for Stage 2's soft targets
    assert all(ids[int(np.argmax(sc))] == m for m, ids, sc in zip(held["mask_id"], held["candidate_ids"],
                                                                    held["candidate_scores"]))
    assert len(list((root / "pseudolabel" / "overlays").glob("*.png"))) == 2
    regions = load_frame_regions(root)
    fr = regions[sorted(regions)[0]]
    assert np.allclose(fr.features, world.frames[fr.frame_id].features, atol=1e-2)  # float16 cache
    pred = load_heads(root / "heads" / "heads.pt").predict(fr)
    assert set(pred) == {"left", "right"} and all(m == -1 or m in fr.mask_ids for m, _, _ in pred.values())


def test_align_refuses_eval_video(tmp_path, write_params, run_cli):
    root = tmp_path / "artifacts"
    write_artifacts(root, n=6, video="EVAL_01")
    params = write_params({**FAST, "common": {"eval_dirs": [str(write_evalset(tmp_path / "eval", "EVAL_01"))]}})
    code, _, err = run_cli("align", "--params", params, "--root", root)
    assert code == 2 and "EVAL_01" in err and not (root / "align").exists()

"""Stage 2 heads: the combination rule, exact ablation of each head, checkpoint round trip, sample building."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.heads import decide, load_heads, make_samples, train_heads
from pipeline.params import HeadsParams
from pipeline.synth_wish import Encoders, make_world

FAST = dict(hidden=32, epochs=6, lr=0.01, batch_size=32)


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)  # tiny models: threads only add contention
    return make_world(40, 0.0, seed=5, enc=Encoders())


@pytest.fixture(scope="module")
def truth_labels(world) -> pd.DataFrame:
    """Pseudo-labels equal to the truth: the heads' upper bound."""
    rows = [dict(frame_id=f, side=s, mask_id=m, label=m >= 0) for (f, s), m in world.truth.items()]
    return pd.DataFrame(rows)


def test_decide_rule():
    pc, pm = np.array([0.9, 0.2]), np.array([0.6, 0.1, 0.3])  # last = none
    assert decide(pc, pm, 0.5) == (0, True)
    assert decide(pc, None, 0.95) == (0, False)
    assert decide(None, np.array([0.2, 0.1, 0.7]), 0.5) == (0, False)  # none wins, best region still reported
    assert decide(np.array([0.3, 0.4]), np.array([0.1, 0.1, 0.8]), 0.5) == (1, False)


def test_make_samples_skips_absent_hands(world, truth_labels):
    samples = make_samples(world.frames, truth_labels)
    present = sum(fr.hands[s].present for fr in world.frames.values() for s in ("left", "right"))
    assert len(samples) == present
    assert {s.target >= 0 for s in samples} == {True, False}


def test_ablation_is_exact(world, truth_labels):
    samples = make_samples(world.frames, truth_labels)
    both, _ = train_heads(samples, HeadsParams(**FAST), seed=0)
    only_c, _ = train_heads(samples, HeadsParams(**FAST, matching=False), seed=0)
    only_m, _ = train_heads(samples, HeadsParams(**FAST, contact=False), seed=0)
    for a, b in [(both.contact, only_c.contact), (both.matching, only_m.matching)]:
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    fr = next(f for f in world.frames.values() if f.hands["left"].present)
    assert np.isnan(only_c.predict(fr)["left"][2]) and np.isnan(only_m.predict(fr)["left"][1])
    with pytest.raises(ValueError):
        train_heads(samples, HeadsParams(**FAST, contact=False, matching=False))


def test_heads_learn_truth_and_roundtrip(tmp_path, world, truth_labels):
    heads, curve = train_heads(make_samples(world.frames, truth_labels), HeadsParams(**{**FAST, "epochs": 15}), seed=0)
    assert set(curve["head"]) == {"contact", "matching"}
    assert curve.groupby("head")["loss"].apply(lambda x: x.iloc[-1] < x.iloc[0]).all()
    heads.save(tmp_path / "h.pt")
    back = load_heads(tmp_path / "h.pt")
    hits = [back.predict(fr)[s][0] == world.truth[(f, s)] for f, fr in world.frames.items() for s in ("left", "right")
            if world.truth[(f, s)] >= 0]
    assert np.mean(hits) > 0.5  # training frames, truth labels: far above 1/6
    fr = next(iter(world.frames.values()))
    assert heads.predict(fr) == back.predict(fr)


def test_early_stopped_heads_without_refit_and_per_rule_thresholds(world, truth_labels):
    """heads.refit=false keeps the heads trained without the held-out videos (no second run); the thresholds of
    the two-head rule and of the contact head alone are each calibrated on those videos, and the contact-only
    ablation uses its own."""
    from pipeline.score_methods import _ablate

    samples = make_samples(world.frames, truth_labels)
    videos = {f: f"v{i % 5}" for i, f in enumerate(sorted(world.frames))}
    params = HeadsParams(**{**FAST, "epochs": 15, "val_fraction": 0.4, "refit": False})
    heads, curve = train_heads(samples, params, seed=0, videos=videos)
    assert set(curve["stage"]) == {"select"}
    t = heads.cfg.contact_only_threshold
    assert t is not None and 0 < t < 1 and 0 < heads.cfg.contact_threshold < 1
    assert _ablate(heads, True, False).cfg.contact_threshold == t
    hits = [heads.predict(fr)[s][0] == world.truth[(f, s)] for f, fr in world.frames.items() for s in ("left", "right")
            if world.truth[(f, s)] >= 0]
    assert np.mean(hits) > 0.5
    refit, curve2 = train_heads(samples, params.model_copy(update={"refit": True}), seed=0, videos=videos)
    assert set(curve2["stage"]) == {"select", "refit"}
    assert refit.cfg.contact_only_threshold is not None

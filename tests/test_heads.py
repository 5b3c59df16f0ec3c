"""Stage 2 heads: the combination rule, exact ablation of each head, checkpoint round trip, sample building."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.heads import collate, decide, load_heads, make_samples, target_regions, train_heads
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


def test_fold_ensemble_holds_out_each_video_once_and_averages_its_members(tmp_path, world, truth_labels):
    """heads.folds: the videos are dealt into folds (a video never in two), one early-stopped head per kind and
    fold, whose probabilities are averaged; thresholds come from out-of-fold predictions; the checkpoint round
    trip keeps every member."""
    from pipeline.heads import Members, Sample, collate
    from pipeline.heads_folds import video_folds

    samples = make_samples(world.frames, truth_labels)
    videos = {f: f"v{i % 5}" for i, f in enumerate(sorted(world.frames))}
    folds = video_folds(samples, videos, 3, seed=0)
    assert len(folds) == 3 and sorted(np.concatenate(folds).tolist()) == list(range(len(samples)))
    fold_videos = [{videos[samples[i].frame.frame_id] for i in f} for f in folds]
    assert all(not (a & b) for j, a in enumerate(fold_videos) for b in fold_videos[j + 1:])

    params = HeadsParams(**{**FAST, "epochs": 15, "folds": 3})
    heads, curve = train_heads(samples, params, seed=0, videos=videos)
    assert isinstance(heads.contact, Members) and len(heads.contact) == 3 and len(heads.matching) == 3
    assert set(curve["stage"]) == {"select"} and set(curve["fold"]) == {0, 1, 2}
    assert 0 < heads.cfg.contact_threshold < 1 and heads.cfg.contact_only_threshold is not None
    fr = next(f for f in world.frames.values() if f.hands["left"].present)
    b = collate([Sample(fr, "left", -1)])
    args = (b["obj"], b["hand"], b["geom"], b["side"], b["rmask"])
    with torch.no_grad():
        by_hand = np.mean([torch.softmax(h(*args), 1)[0].numpy() for h in heads.matching], 0)
    assert np.allclose(heads.probs(fr, "left")[1], by_hand)
    hits = [heads.predict(f)[s][0] == world.truth[(fid, s)] for fid, f in world.frames.items()
            for s in ("left", "right") if world.truth[(fid, s)] >= 0]
    assert np.mean(hits) > 0.5
    heads.save(tmp_path / "h.pt")
    back = load_heads(tmp_path / "h.pt")
    assert len(back.contact) == 3 and all(back.predict(f) == heads.predict(f) for f in world.frames.values())


def test_rule_picks_which_head_decides(tmp_path, world, truth_labels):
    """heads.rule: "expected_iou" (default) decides by pipeline.expected_iou with the target ratio estimated on the
    training frames and stored in the checkpoint; "matching" predicts exactly what the matching-only ablation
    predicts (its argmax), "contact" what the contact-only one does (its own threshold), "both" the combined rule;
    old checkpoints (no rule) mean "both"."""
    from dataclasses import replace

    from pipeline.expected_iou import Belief, frame_overlaps
    from pipeline.heads import HeadsConfig
    from pipeline.score_methods import _ablate

    samples = make_samples(world.frames, truth_labels)
    videos = {f: f"v{i % 5}" for i, f in enumerate(sorted(world.frames))}
    heads, _ = train_heads(samples, HeadsParams(**{**FAST, "val_fraction": 0.4, "refit": False}), 0, videos=videos)
    assert heads.cfg.rule == "expected_iou" and HeadsConfig(8).rule == "both"
    assert 0 < heads.cfg.target_iou < 1 and heads.cfg.target_iou != HeadsConfig(8).target_iou
    frames = list(world.frames.values())
    only_m, only_c = _ablate(heads, False, True), _ablate(heads, True, False)

    def picks(model):
        return [{s: v[0] for s, v in model.predict(f).items()} for f in frames]
    for f in frames:
        for s, (m, holds, _, _) in heads.decide_frame(f).items():
            if f.hands[s].present:
                r, want = Belief(heads.probs(f, s)[1], f.areas, frame_overlaps(f)).decide(heads.cfg.target_iou)
                assert (m, holds) == (int(f.mask_ids[r]), want)
    for s, pm in zip(samples, heads.match_probs(samples, batch=7)):  # batched = one by one, padding aside
        assert np.allclose(pm, heads.probs(s.frame, s.side)[1], atol=1e-6)
    heads.save(tmp_path / "h.pt")
    assert load_heads(tmp_path / "h.pt").cfg == heads.cfg and picks(load_heads(tmp_path / "h.pt")) == picks(heads)
    fixed, _ = train_heads(samples, HeadsParams(**{**FAST, "val_fraction": 0.4, "refit": False, "target_iou": 0.6}),
                           0, videos=videos)
    assert fixed.cfg.target_iou == 0.6
    heads.cfg = replace(heads.cfg, rule="matching")
    assert picks(heads) == picks(only_m)
    heads.cfg = replace(heads.cfg, rule="contact")
    assert picks(heads) == picks(only_c)
    heads.cfg = replace(heads.cfg, rule="both")
    for f in frames:
        for s, (m, holds, _, _) in heads.decide_frame(f).items():
            if f.hands[s].present:
                r, want = decide(*heads.probs(f, s), heads.cfg.contact_threshold)
                assert (m, holds) == (int(f.mask_ids[r]), want)
    assert picks(heads) != picks(only_m)  # the rules do differ on these frames
    with pytest.raises(ValueError, match="'majority' is not one of expected_iou, matching, both, contact"):
        HeadsConfig(8, rule="majority")


def test_soft_targets_mix_the_rules_belief_into_holding_hands_only():
    """heads.soft_targets: a holding hand's target is (1 - alpha) one-hot + alpha softmax(rule scores / T); a hand
    holding nothing keeps its "none" slot, one without known scores its one-hot; alpha 0 is the hard target."""
    b = dict(target=torch.tensor([0, -1, 1]), rmask=torch.ones(3, 2, dtype=torch.bool),
             rule=torch.tensor([[np.log(3.0), 0.0], [0.0, 5.0], [-np.inf, -np.inf]], dtype=torch.float32))
    y = target_regions(b, 3, (0.5, 1.0))  # matching: 2 regions + none
    assert torch.allclose(y, torch.tensor([[0.875, 0.125, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert torch.equal(target_regions(b, 3), target_regions(b, 3, (0.0, 1.0)))
    assert torch.equal(target_regions(b, 3), torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]))
    assert torch.equal(target_regions(b, 2), torch.tensor([[1.0, 0], [0, 0], [0, 1]]))  # contact: no none slot
    assert torch.allclose(target_regions(b, 3, (1.0, 0.01))[0], torch.tensor([1.0, 0.0, 0.0]))  # cold: the argmax


def test_soft_targets_train_and_spread_the_matching_belief(world, truth_labels):
    """Read from PSEUDOLABELS' candidate columns: when the rule is torn 50/50 between the truth and another region,
    soft targets (alpha 1) leave the trained matching head less sure of the truth than hard ones."""
    labels = truth_labels.copy()
    ids, scores = [], []
    for r in labels.itertuples():
        other = [int(m) for m in world.frames[r.frame_id].mask_ids if m != r.mask_id][:1]
        ids.append([int(r.mask_id)] + other if r.label else [])
        scores.append([0.0] * (1 + len(other)) if r.label else [])
    labels["candidate_ids"], labels["candidate_scores"] = ids, scores
    samples = make_samples(world.frames, labels)
    assert all(s.rule_scores is not None for s in samples if s.target >= 0)
    assert torch.isfinite(collate(samples)["rule"]).sum(1).max() == 2

    def truth_mass(alpha: float) -> float:
        heads, _ = train_heads(samples, HeadsParams(**{**FAST, "epochs": 15, "contact": False, "soft_targets": alpha}),
                               seed=0)
        return float(np.mean([heads.probs(s.frame, s.side)[1][s.target] for s in samples if s.target >= 0]))

    assert truth_mass(0.0) - truth_mass(1.0) > 0.1

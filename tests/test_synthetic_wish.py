"""Proof test: on a synthetic world with a known answer, narration supervision alone teaches the real
Stage 1 -> pseudo-label -> Stage 2 pipeline which region each hand holds; breaking the narration-frame pairing
(shuffled narrations) must destroy it. Measured curve (more noise levels): scripts/synthetic_wish.py."""
from __future__ import annotations

import pytest
import torch

from pipeline.synth_wish import FAST_ALIGN, FAST_HEADS, Encoders, make_world, run_wish

N_TRAIN = 300


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)  # tiny models: threads only add contention
    enc = Encoders()
    test = make_world(150, 0.0, seed=2, enc=enc)
    align = FAST_ALIGN.model_copy(update=dict(epochs=15, lr=1e-2))
    # 40 epochs: the matching head's "none" slot, on which the default rule's belief rests (heads.rule:
    # expected_iou), is undertrained at 15 (argmax rule: clean recovery 0.37 at 15, 0.83 at 40; expected_iou 0.98
    # and shuffled 0.03 at 40)
    heads = FAST_HEADS.model_copy(update=dict(epochs=40))
    runs = {"clean": (0.0, False), "noisy49": (0.49, False), "shuffled": (0.49, True)}
    return {name: run_wish(make_world(N_TRAIN, noise, 1, shuffle, enc), test, align, None, heads)
            for name, (noise, shuffle) in runs.items()}


def test_clean_narrations_recover_held_region(results):
    r = results["clean"]
    assert r["top1"] >= 0.9, r
    assert r["recovery"] >= 0.6, r  # includes deciding "holds something" vs "none"


def test_49pct_wrong_nouns_still_far_above_chance(results):
    r = results["noisy49"]
    assert r["recovery"] >= 3 * r["chance"], r
    assert r["top1"] >= 4 * r["chance"], r


def test_degrades_gracefully_with_noise(results):
    assert results["clean"]["top1"] + 0.05 >= results["noisy49"]["top1"] >= results["shuffled"]["top1"]
    assert results["clean"]["pseudolabel_recovery"] + 0.05 >= results["noisy49"]["pseudolabel_recovery"]


def test_shuffled_narrations_fall_to_chance(results):
    r, ok = results["shuffled"], results["noisy49"]
    assert r["recovery"] <= 1.5 * r["chance"], r
    assert r["pseudolabel_recovery"] <= 1.5 * r["chance"], r
    assert r["top1"] <= 0.5 * ok["top1"], (r, ok)

"""A synthetic world where the answer is known, to prove that narration supervision can teach the WISH pipeline.

Regions are embedded from object-class prototypes plus noise; texts from a fixed random map of the noun in a
different space (so nothing is aligned zero-shot). A held object touches its hand and belongs to a "holdable"
class; distractors of other classes may touch the hand too, and the rest lie elsewhere. Each frame has one
narration naming the object held by one of its hands; with probability `noise` it names another noun instead
(49% of in-contact VISOR hands have their object missing from the narration); a fraction `explicit` of
narrations name the hand ("... with the left hand"), the rest name none. `shuffle` reassigns narrations
across frames, which breaks what InfoNCE can learn. `run_wish` runs the real Stage 1 -> pseudo-labels -> Stage 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.align import NarrationTexts, train_adapters
from pipeline.heads import make_samples, train_heads
from pipeline.params import AlignParams, HeadsParams, PseudolabelParams
from pipeline.pseudolabel import pseudolabel_frames
from pipeline.regions import FrameRegions
from pipeline.types import SIDES, Hand, Proposal

SIZE, N_CLASSES, N_REGIONS, REGION_DIM, TEXT_DIM = 96, 16, 6, 32, 24
TEMPLATES = {"left": "{} in contact with the left hand", "right": "{} in contact with the right hand"}


@dataclass
class World:
    frames: dict[str, FrameRegions]
    texts: dict[str, list[NarrationTexts]]
    truth: dict[tuple[str, str], int]  # (frame_id, side) -> held mask_id or -1
    motion: dict[str, dict[str, np.ndarray]]  # synthetic responsibility: held region moves with the hand


class Encoders:
    """Fixed random 'encoders' of the world: class prototypes for regions, a noun map for texts."""

    def __init__(self, seed: int = 1234):
        rng = np.random.default_rng(seed)
        self.protos = rng.normal(size=(N_CLASSES, REGION_DIM)).astype(np.float32)
        self.hand = rng.normal(size=REGION_DIM).astype(np.float32)
        self.nouns = rng.normal(size=(N_CLASSES, TEXT_DIM)).astype(np.float32)
        self.tmpl = {s: 0.5 * rng.normal(size=TEXT_DIM).astype(np.float32) for s in SIDES}

    def text(self, noun: int, side: str) -> np.ndarray:
        return self.nouns[noun] + self.tmpl[side]


def _box_mask(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[int(y0):int(y1), int(x0):int(x1)] = True
    return m


def _hand_box(side: str) -> tuple[int, int, int, int]:
    return (12, 60, 32, 80) if side == "left" else (64, 60, 84, 80)


def _touching_box(hand: tuple[int, int, int, int], slot: int) -> tuple[int, int, int, int]:
    """A box adjacent to the hand box: slot 0 above it, slot 1 beside it (toward the image centre)."""
    x0, y0, x1, y1 = hand
    if slot == 0:
        return (x0 + 2, y0 - 12, x1 - 2, y0)
    return (x1, y0 + 4, x1 + 10, y1 - 4) if x0 < SIZE // 2 else (x0 - 10, y0 + 4, x0, y1 - 4)


def _frame(i: int, enc: Encoders, rng: np.random.Generator, noise: float) -> tuple[FrameRegions, tuple, dict, dict]:
    """One frame: (FrameRegions, (narrated noun, side it is held by), truth {side: mask_id}, motion {side: (R,)})."""
    holdable, other = np.arange(N_CLASSES // 2), np.arange(N_CLASSES // 2, N_CLASSES)
    classes = list(rng.choice(holdable, 2, replace=False)) + list(rng.choice(other, N_REGIONS - 2, replace=False))
    present = {s: rng.random() < 0.9 for s in SIDES}
    holds = {s: present[s] and rng.random() < 0.7 for s in SIDES}
    boxes: list = [None] * N_REGIONS
    for k, s in enumerate(SIDES):  # region k (holdable) is held by side k, or lies far away
        slot = int(rng.integers(2))
        boxes[k] = _touching_box(_hand_box(s), slot) if holds[s] else None
        if present[s] and rng.random() < 0.5:  # a non-holdable distractor touches the hand on the other slot
            boxes[2 + k] = _touching_box(_hand_box(s), 1 - slot if holds[s] else slot)
    for r in range(N_REGIONS):
        if boxes[r] is None:  # elsewhere: upper part of the image, away from both hands
            x, y = int(rng.integers(0, SIZE - 14)), int(rng.integers(0, 30))
            boxes[r] = (x, y, x + 12, y + 12)
    feats = np.stack([enc.protos[c] + 0.6 * rng.normal(size=REGION_DIM) for c in classes]).astype(np.float32)
    hands = [Hand(j, s, 0.9, _hand_box(s)) for j, s in enumerate(SIDES) if present[s]]
    props = [Proposal(_box_mask(*b), 1.0) for b in boxes]
    props += [Proposal(_box_mask(*h.box), 1.0, "hand", h.side, h.hand_id) for h in hands]
    hand_feats = [enc.hand + 0.3 * rng.normal(size=REGION_DIM) for _ in hands]
    fr = FrameRegions.from_proposals(f"f{i:05d}", SIZE, SIZE, hands, props, np.vstack([feats, *hand_feats]))
    truth = {s: (k if holds[s] else -1) for k, s in enumerate(SIDES)}
    holding = [k for k, s in enumerate(SIDES) if holds[s]]
    k = int(rng.choice(holding)) if holding else int(rng.integers(2))
    noun = int(classes[k]) if holding else int(rng.integers(N_CLASSES))
    if rng.random() < noise:
        noun = int(rng.choice([c for c in range(N_CLASSES) if c != noun]))
    motion = {s: np.clip(rng.normal(0.3, 0.2, N_REGIONS) + 0.4 * (np.arange(N_REGIONS) == truth[s]), 0, 1)
              for s in SIDES if present[s]}
    return fr, (noun, SIDES[k]), truth, motion


def make_world(n: int, noise: float, seed: int, shuffle: bool = False, enc: Encoders | None = None,
               explicit: float = 0.5) -> World:
    enc = enc or Encoders()
    rng = np.random.default_rng(seed)
    made = [_frame(i, enc, rng, noise) for i in range(n)]
    said = [(noun, side if rng.random() < explicit else "none") for _, (noun, side), _, _ in made]
    if shuffle:
        said = [said[j] for j in rng.permutation(len(said))]
    frames, texts, truth, motion = {}, {}, {}, {}
    for (fr, _, tr, mo), (noun, hand) in zip(made, said):
        feats = np.stack([enc.text(noun, s) for s in SIDES])[None]  # (1 phrase, 2 sides, D')
        nt = NarrationTexts(f"n_{fr.frame_id}", f"noun{noun}@{hand}", [f"noun{noun}"], [hand], feats)
        frames[fr.frame_id], texts[fr.frame_id], motion[fr.frame_id] = fr, [nt], mo
        truth.update({(fr.frame_id, s): tr[s] for s in SIDES})
    return World(frames, texts, truth, motion)


def recovery(pred: dict[tuple[str, str], int], truth: dict[tuple[str, str], int]) -> float:
    """Fraction of holding hands whose held region is predicted (chance = 1 / regions per frame); a "none"
    (-1) prediction counts as a miss."""
    held = [k for k, v in truth.items() if v >= 0]
    return float(np.mean([pred.get(k, -1) == truth[k] for k in held]))


FAST_ALIGN = AlignParams(hidden=64, out_dim=32, dropout=0.0, epochs=30, batch_size=32, lr=3e-3)
# The proof is about learning from narrations: narration pseudo-labels, and hands the narration is silent about
# trained as empty, the configuration its bounds were measured with (the real default is heads.silent_as_none=False).
FAST_HEADS = HeadsParams(hidden=64, epochs=30, lr=3e-3, batch_size=64, silent_as_none=True)
# The narration rule with the geometric prior switched off (every region a candidate, no size/contact score):
# the proof must show what the narration alone teaches, and that shuffling it leaves nothing.
NARRATION_ONLY = PseudolabelParams(source="narration", touch_weight=0, tip_weight=0, compact_weight=0, part_penalty=0,
                                   size_log_std=1e3, max_hand_in=1, max_other_in=1, max_tip_dist=1e3)


def run_wish(train: World, test: World, align: AlignParams = FAST_ALIGN, pseudo: PseudolabelParams | None = None,
             heads: HeadsParams = FAST_HEADS, seed: int = 0) -> dict[str, float]:
    """Stage 1 on train narrations, pseudo-labels on train frames, Stage 2; recovery on test frames (no text)."""
    pseudo = pseudo or NARRATION_ONLY
    ids = sorted(train.frames)
    narrs = [[t.narration_id for t in train.texts[f]] for f in ids]
    by_id = {t.narration_id: t for f in ids for t in train.texts[f]}
    adapters, curve = train_adapters([train.frames[f] for f in ids], narrs, by_id, align, seed)
    labels = pseudolabel_frames(train.frames, train.texts, adapters, pseudo, train.motion)
    pl = {(r.frame_id, r.side): int(r.mask_id) for r in labels.itertuples()}
    model, _ = train_heads(make_samples(train.frames, labels), heads, seed)
    decided = {(f, s): v for f, fr in test.frames.items() for s, v in model.decide_frame(fr).items()}
    pred = {k: (v[0] if v[1] else -1) for k, v in decided.items()}
    return dict(pseudolabel_recovery=recovery(pl, train.truth), recovery=recovery(pred, test.truth),
                top1=recovery({k: v[0] for k, v in decided.items()}, test.truth),
                align_acc=float(curve["retrieval_acc"].iloc[-3:].mean()), chance=1.0 / N_REGIONS)

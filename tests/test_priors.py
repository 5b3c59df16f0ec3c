"""The geometric prior of the pseudo-label rule and temporal linking, on synthetic frames with a known answer."""
from __future__ import annotations

import numpy as np

from pipeline import rle
from pipeline.params import PseudolabelParams
from pipeline.priors import candidates, prior_scores
from pipeline.pseudolabel_track import link_track
from pipeline.regions import FrameRegions
from pipeline.types import Hand, Proposal

H, W = 120, 160


def _box(x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def frame() -> FrameRegions:
    """A right hand (mask 60..100 x 60..110) with 21 landmarks whose fingertips point up at y=58; regions:
    0 the held cup above the fingertips, 1 its upper half (a sub-piece), 2 a far box, 3 the hand itself."""
    hand_mask = _box(60, 60, 100, 110)
    lm = np.stack([np.linspace(62, 98, 21), np.linspace(108, 62, 21)], 1).astype(np.float32)
    lm[[4, 8, 12, 16, 20], 1] = 58.0
    hand = Hand(0, "right", 0.9, (60, 58, 100, 110), lm)
    objects = [_box(64, 34, 96, 60), _box(64, 34, 96, 46), _box(5, 5, 37, 31), _box(62, 62, 98, 108)]
    props = [Proposal(m, 0.5) for m in objects] + [Proposal(hand_mask, 0.9, kind="hand", side="right", hand_id=0)]
    return FrameRegions.from_proposals("f", H, W, [hand], props, np.eye(len(props), 8, dtype=np.float32))


def test_candidates_are_next_to_the_hand_and_not_the_hand():
    fr = frame()
    pp = PseudolabelParams()
    ok = candidates(fr, "right", pp)
    assert ok.tolist() == [True, True, False, False]
    assert not candidates(fr, "left", pp).any()  # no left hand: nothing to hold
    s = prior_scores(fr, "right", pp)
    assert np.isinf(s[2]) and np.isinf(s[3])


def test_whole_object_beats_its_sub_piece():
    fr = frame()
    with_penalty = prior_scores(fr, "right", PseudolabelParams(part_penalty=5.0, prior_weight=0))
    assert int(np.argmax(with_penalty)) == 0
    assert rle.iou_matrix([rle.decode(fr.rles[0], H, W)], [rle.decode(fr.rles[1], H, W)])[0, 0] < 0.5


def test_link_track_prefers_the_consistent_object():
    """Frame 2 alone would pick region 1, but region 0 looks like the object picked in frames 1 and 3."""
    feats = [np.array([[1.0, 0], [0, 1.0]])] * 3
    scores = [np.array([1.0, 0.0]), np.array([0.9, 1.0]), np.array([1.0, 0.0])]
    assert link_track(scores, feats, weight=0.0) == [0, 1, 0]
    assert link_track(scores, feats, weight=1.0) == [0, 0, 0]
    scores[1] = np.array([-np.inf, 1.0])  # not a candidate: never chosen, whatever the weight
    assert link_track(scores, feats, weight=5.0)[1] == 1


def _moved_frame(frame_id: str, dx: int, dy: int) -> FrameRegions:
    """A right hand at (60 + dx, 60 + dy) holding a 20x20 object just above its fingertips; region 0 is that
    object, region 1 an equal box left where the object was in the frame at dx = dy = 0."""
    hand_mask = _box(60 + dx, 60 + dy, 100 + dx, 110 + dy)
    lm = np.stack([np.linspace(62, 98, 21) + dx, np.linspace(108, 62, 21) + dy], 1).astype(np.float32)
    hand = Hand(0, "right", 0.9, (60 + dx, 58 + dy, 100 + dx, 110 + dy), lm)
    objects = [_box(70 + dx, 38 + dy, 90 + dx, 58 + dy), _box(70, 38, 90, 58)]
    props = [Proposal(m, 0.5) for m in objects] + [Proposal(hand_mask, 0.9, kind="hand", side="right", hand_id=0)]
    return FrameRegions.from_proposals(frame_id, H, W, [hand], props, np.ones((len(props), 8), np.float32))


def test_warped_iou_follows_the_hand():
    """The object moved 24 px right with the hand: after the hand's shift it overlaps itself (IoU 1), while
    the box left at the old place (IoU 0.09 without the shift) no longer does; linking then keeps the object."""
    from pipeline.pseudolabel_track import SmallMasks, warped_ious

    a, b = _moved_frame("a", 0, 0), _moved_frame("b", 24, 0)
    keep = np.ones(a.n_regions, bool)
    iou = warped_ious(a, b, "right", keep, keep, SmallMasks())
    assert iou[0, 0] > 0.9 and iou[0, 1] < 0.1
    scores = [np.array([1.0, 0.0]), np.array([0.0, 0.2])]
    feats = [a.features, b.features]  # identical appearance: only the place can tell them apart
    assert link_track(scores, feats, weight=1.0) == [0, 1]
    assert link_track(scores, feats, weight=1.0, ious=[iou], iou_weight=1.0) == [0, 0]


def test_verbs_that_hold_nothing():
    """EPIC imperatives and Ego4D's "#C C ..." narrations: looking at or checking an object is not holding it."""
    import pandas as pd

    from pipeline.pseudolabel import holding_narrations, narration_verb

    assert narration_verb("#C C picks the knife with his right hand") == "pick"
    assert narration_verb("checking oven") == "check"
    df = pd.DataFrame({"narration": ["take cup", "look at pan", "#C C looks at the fridge", "checking oven",
                                     "put down plate", ""]})
    verbs = PseudolabelParams().no_hold_verbs
    assert holding_narrations(df, verbs).tolist() == [True, False, False, False, True, True]
    assert holding_narrations(df, []).all()


def test_small_masks_decode_every_side_that_asks():
    """The left hand's candidates are decoded first; the right hand's, asked for later, must not come back empty."""
    from pipeline.pseudolabel_track import SmallMasks

    fr = _moved_frame("a", 0, 0)
    cache = SmallMasks()
    first, _ = cache.get(fr, np.array([True, False]))
    assert first[0].any() and not first[1].any()
    both, _ = cache.get(fr, np.array([False, True]))
    assert both[0].any() and both[1].any()


def test_region_size_is_relative_to_the_hand_not_its_forearm():
    """log_mask_ratio divides by the hand mask's part near the landmarks: a forearm drawn down to the frame edge
    does not make a large region look hand-sized; a mask away from its landmarks falls back to its whole area."""
    from pipeline.regions import GEOM_NAMES

    k = GEOM_NAMES.index("log_mask_ratio")
    short = frame()
    fr = frame()
    arm = _box(60, 60, 100, 120) | _box(100, 100, 160, 120)  # the hand mask plus a forearm to the right edge
    fr.hands["right"].rle = rle.encode(arm)
    assert np.allclose(fr.geometry("right")[:, k], short.geometry("right")[:, k], atol=0.02)
    far = frame()
    far.hands["right"].rle = rle.encode(_box(0, 0, 20, 20))  # no pixel near the landmarks
    assert np.allclose(far.geometry("right")[:, k], np.log(np.maximum(far.areas, 1.0) / 400.0) / 5.0)

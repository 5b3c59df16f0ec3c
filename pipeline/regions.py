"""Per-frame regions, hands and hand–region pair geometry: the one input of Stage 1 (align) and Stage 2 (heads).

API
    fr = FrameRegions.from_proposals(frame_id, height, width, hands, proposals, features)
        hands: list[pipeline.types.Hand]; proposals: list[Proposal] (kind "object" and "hand");
        features: (len(proposals), D) region embeddings in proposal order. The scorer uses this for eval images.
    frames = load_frame_regions(root, frame_ids=None)   # {frame_id: FrameRegions} from ROOT/{hands,masks,embed}
    fr.features (R, D), fr.mask_ids (R,), fr.boxes (R, 4), fr.areas (R,), fr.rles [R]
    fr.hands[side] -> HandView(present, feature (D,), box (4,), rle | None)      side in ("left", "right")
    fr.geometry(side) -> (R, GEOM_DIM) float32: see GEOM_NAMES

One hand per side: when a detector reports two hands of the same side, the higher-scoring one is kept,
because the method's premise is one object per hand and the labels are per side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from pycocotools import mask as mask_utils

from pipeline import rle as rle_utils
from pipeline.types import SIDES, Hand, Proposal, contact_part, tip_distance_map

GEOM_NAMES = ("present", "center_dist", "gap_dist", "box_iou", "in_hand_box", "log_rel_size", "area_frac",
              "touch", "dx", "dy", "prior",
              # what transfers between kitchens (issue: heads that generalise): the share of the region under
              # this hand's mask and under the other hand's, its area relative to the hand MASK (log), its
              # distance to the nearest fingertip in hand sizes, and how much of its box it fills
              "hand_in", "other_in", "log_mask_ratio", "tip_dist", "compact")
GEOM_DIM = len(GEOM_NAMES)
# The hand mask is dilated by this fraction of the image diagonal before testing contact: a held object
# usually borders the hand mask rather than overlapping it.
TOUCH_DILATION = 0.01


@dataclass
class HandView:
    present: bool
    feature: np.ndarray  # (D,), zeros when the hand or its mask embedding is missing
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels; zeros when absent
    rle: str | None = None  # hand mask (COCO counts) when the masks stage produced one
    landmarks: np.ndarray | None = None  # (21, 2) when the detector gave them


@dataclass
class FrameRegions:
    frame_id: str
    height: int
    width: int
    mask_ids: np.ndarray  # (R,) int
    features: np.ndarray  # (R, D) float32
    boxes: np.ndarray  # (R, 4) float32
    areas: np.ndarray  # (R,) float
    rles: list[str]
    hands: dict[str, HandView]
    # The proposer's own score in [0, 1] (for the offline backend: its hand-contact ranking cues), a prior that
    # a region is a held object; all ones when a backend gives none.
    priors: np.ndarray | None = None
    _geom: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _runs: tuple | None = field(default=None, repr=False)  # rle.run_bounds of the regions, shared by both sides

    @property
    def n_regions(self) -> int:
        return len(self.mask_ids)

    def geometry(self, side: str) -> np.ndarray:
        if side not in self._geom:
            other = self.hands[SIDES[1 - SIDES.index(side)]]
            self._geom[side] = pair_geometry(self, self.hands[side], other)
        return self._geom[side]

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._runs is None:
            self._runs = rle_utils.run_bounds(self.rles)
        return self._runs

    def prior_scores(self) -> np.ndarray:
        if self.priors is None or len(self.priors) != self.n_regions:
            return np.ones(self.n_regions, np.float32)
        return np.clip(np.nan_to_num(np.asarray(self.priors, np.float32), nan=1.0), 0.0, 1.0)

    def index_of(self, mask_id: int) -> int:
        """Row of a mask_id, -1 for "none" or an id this frame does not have."""
        hits = np.flatnonzero(self.mask_ids == mask_id)
        return int(hits[0]) if len(hits) else -1

    @classmethod
    def from_proposals(cls, frame_id: str, height: int, width: int, hands: list[Hand], proposals: list[Proposal],
                       features: np.ndarray, mask_ids: list[int] | None = None) -> "FrameRegions":
        """Build from in-memory detections: object proposals become regions, hand proposals give hand features."""
        ids = list(range(len(proposals))) if mask_ids is None else list(mask_ids)
        features = np.asarray(features, np.float32)
        objs = [i for i, p in enumerate(proposals) if p.kind == "object"]
        rles = [rle_utils.encode(proposals[i].mask) for i in objs]
        hand_rows = {p.hand_id: i for i, p in enumerate(proposals) if p.kind == "hand"}
        views = {}
        for side in SIDES:
            best = _best_hand(hands, side)
            row = None if best is None else hand_rows.get(best.hand_id)
            views[side] = _hand_view(best, None if row is None else features[row],
                                     None if row is None else rle_utils.encode(proposals[row].mask), features.shape[1],
                                     None if best is None else best.landmarks)
        return cls(frame_id, int(height), int(width), np.asarray([ids[i] for i in objs], np.int64),
                   features[objs].reshape(len(objs), features.shape[1]),
                   np.asarray([rle_utils.box(proposals[i].mask) for i in objs], np.float32).reshape(-1, 4),
                   np.asarray([proposals[i].mask.sum() for i in objs], float), rles, views,
                   np.asarray([proposals[i].score for i in objs], np.float32))


def _best_hand(hands: list[Hand], side: str) -> Hand | None:
    same = [h for h in hands if h.side == side]
    return max(same, key=lambda h: h.score) if same else None


def _hand_view(hand: Hand | None, feature: np.ndarray | None, rle: str | None, dim: int,
               landmarks: np.ndarray | None = None) -> HandView:
    if hand is None:
        return HandView(False, np.zeros(dim, np.float32), np.zeros(4, np.float32))
    feat = np.zeros(dim, np.float32) if feature is None else np.asarray(feature, np.float32)
    lm = None if landmarks is None or len(landmarks) < 21 else np.asarray(landmarks, np.float32).reshape(-1, 2)
    return HandView(True, feat, np.asarray(hand.box, np.float32), rle, lm)


def pair_geometry(fr: FrameRegions, hand: HandView, other: HandView | None = None) -> np.ndarray:
    """Scale-free hand→region geometry, (R, GEOM_DIM); all zeros for an absent hand."""
    out = np.zeros((fr.n_regions, GEOM_DIM), np.float32)
    if not hand.present or fr.n_regions == 0:
        return out
    diag = float(np.hypot(fr.width, fr.height))
    b, h = fr.boxes, hand.box
    rc, hc = (b[:, :2] + b[:, 2:]) / 2, (h[:2] + h[2:]) / 2
    gap_x = np.maximum(0, np.maximum(b[:, 0] - h[2], h[0] - b[:, 2]))
    gap_y = np.maximum(0, np.maximum(b[:, 1] - h[3], h[1] - b[:, 3]))
    inter = _box_inter(b, h)
    box_area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)
    hand_area = max(float((h[2] - h[0]) * (h[3] - h[1])), 1.0)
    out[:, 0] = 1.0
    out[:, 1] = np.hypot(*(rc - hc).T) / diag
    out[:, 2] = np.hypot(gap_x, gap_y) / diag
    out[:, 3] = inter / (box_area + hand_area - inter)
    out[:, 4] = inter / box_area
    out[:, 5] = np.log(np.maximum(fr.areas, 1.0) / hand_area) / 5.0
    out[:, 6] = fr.areas / float(fr.width * fr.height)
    pixels = _hand_pixels(fr, hand)  # decoded once for the contact and size cues
    out[:, 7] = _touch(fr, pixels, gap_x, gap_y, diag)
    out[:, 8:10] = (rc - hc) / diag
    out[:, 10] = fr.prior_scores()
    out[:, 11:16] = mask_cues(fr, hand, other, pixels)
    return out


def coco_rles(fr: FrameRegions) -> list[dict]:
    """The regions as pycocotools RLE objects."""
    return [{"size": [fr.height, fr.width], "counts": r.encode("ascii")} for r in fr.rles]


def _inside(fr: FrameRegions, mask: str | dict | None) -> np.ndarray:
    """|region ∩ mask| / |region| for every region (iscrowd=1 on the mask makes pycocotools return that);
    mask: COCO counts of this frame's size or a pycocotools RLE object."""
    if mask is None or fr.n_regions == 0:
        return np.zeros(fr.n_regions, np.float32)
    target = {"size": [fr.height, fr.width], "counts": mask.encode("ascii")} if isinstance(mask, str) else mask
    return np.asarray(mask_utils.iou(coco_rles(fr), [target], [1]), np.float32).reshape(-1)


def mask_cues(fr: FrameRegions, hand: HandView, other: HandView | None,
              pixels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(R, 5): hand_in, other_in, log_mask_ratio (/5), tip_dist (hand sizes, capped at 3), compact.
    `pixels`: the hand's `_hand_pixels` when the caller has them already."""
    out = np.zeros((fr.n_regions, 5), np.float32)
    out[:, 0] = _inside(fr, hand.rle)
    out[:, 1] = _inside(fr, other.rle if other is not None and other.present else None)
    hand_area = _hand_area(hand, pixels if pixels is not None else _hand_pixels(fr, hand))
    out[:, 2] = np.log(np.maximum(fr.areas, 1.0) / max(hand_area, 1.0)) / 5.0
    out[:, 3] = _tip_distance(fr, hand)
    box_area = np.maximum((fr.boxes[:, 2] - fr.boxes[:, 0]) * (fr.boxes[:, 3] - fr.boxes[:, 1]), 1.0)
    out[:, 4] = np.clip(fr.areas / box_area, 0, 1)
    return out


def _tip_distance(fr: FrameRegions, hand: HandView, cap: float = 3.0) -> np.ndarray:
    """Distance from each region to the nearest fingertip, in hand sizes; `cap` without landmarks."""
    dist = None if fr.n_regions == 0 else tip_distance_map((fr.height, fr.width), hand.landmarks, hand.box)
    if dist is None:
        return np.full(fr.n_regions, cap, np.float32)
    return np.minimum(rle_utils.masked_min(dist, fr.runs(), fr.n_regions, cap), cap).astype(np.float32)


def _box_inter(b: np.ndarray, h: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(b[:, 2], h[2]) - np.maximum(b[:, 0], h[0]), 0, None)
    hh = np.clip(np.minimum(b[:, 3], h[3]) - np.maximum(b[:, 1], h[1]), 0, None)
    return w * hh


def _hand_pixels(fr: FrameRegions, hand: HandView) -> tuple[np.ndarray, np.ndarray] | None:
    """(whole hand mask, its part near the hand: pipeline.types.contact_part), or None without a mask."""
    if not hand.rle:
        return None
    mask = rle_utils.decode(hand.rle, fr.height, fr.width) > 0
    return mask, contact_part(mask, hand.landmarks, hand.box)


def _hand_area(hand: HandView, pixels: tuple[np.ndarray, np.ndarray] | None) -> float:
    """The hand's own size: its mask near the landmarks (not the forearm: a floor region as large as a forearm
    that runs to the frame edge is not "hand-sized"); the whole mask if that part is empty; else its box."""
    if pixels is None:
        return max(float((hand.box[2] - hand.box[0]) * (hand.box[3] - hand.box[1])), 1.0)
    return float(np.count_nonzero(pixels[1]) or np.count_nonzero(pixels[0]))


def _touch(fr: FrameRegions, pixels: tuple[np.ndarray, np.ndarray] | None, gap_x: np.ndarray, gap_y: np.ndarray,
           diag: float) -> np.ndarray:
    """Fraction of each region inside the dilated hand mask (its part near the hand, not the forearm:
    pipeline.types.contact_part); without a hand mask, whether the boxes touch."""
    if pixels is None:
        return ((gap_x == 0) & (gap_y == 0)).astype(np.float32)
    mask = pixels[1].astype(np.uint8)
    k = max(1, int(round(TOUCH_DILATION * diag)))
    dil = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    frac = _inside(fr, mask_utils.encode(np.asfortranarray(dil)))
    return np.clip(frac * 10.0, 0.0, 1.0)  # a thin contact band of 10% of the region already counts as touching


def load_frame_regions(root: str | Path, frame_ids: list[str] | None = None) -> dict[str, FrameRegions]:
    """Assemble FrameRegions from ROOT/hands/hands.parquet, ROOT/masks/masks.parquet and ROOT/embed/regions.h5."""
    from pipeline.embed.cache import lookup_regions
    from pipeline.io import read_table
    from pipeline.schemas import HANDS, MASKS

    root = Path(root)
    hands = read_table(root / "hands" / "hands.parquet", HANDS)
    masks = read_table(root / "masks" / "masks.parquet", MASKS)
    if frame_ids is not None:
        keep = set(frame_ids)
        hands, masks = hands[hands["frame_id"].isin(keep)], masks[masks["frame_id"].isin(keep)]
    masks = masks.sort_values(["frame_id", "mask_id"]).reset_index(drop=True)
    feats = np.asarray(lookup_regions(root / "embed" / "regions.h5", masks["frame_id"].tolist(),
                                      masks["rle"].tolist()), np.float32)
    hands_by = {f: g for f, g in hands.groupby("frame_id")}
    out = {}
    for fid, g in masks.groupby("frame_id", sort=True):
        out[str(fid)] = _from_tables(str(fid), g, feats[g.index.to_numpy()], hands_by.get(fid))
    return out


def _from_tables(frame_id: str, masks: pd.DataFrame, feats: np.ndarray, hands: pd.DataFrame | None) -> FrameRegions:
    first = masks.iloc[0]
    H, W = int(first["height"]), int(first["width"])
    obj = (masks["kind"] == "object").to_numpy()
    om = masks[obj]
    hand_list = [] if hands is None else [
        Hand(int(r.hand_id), str(r.side), float(r.score), (r.x0, r.y0, r.x1, r.y1),
             np.asarray(r.landmarks, np.float32).reshape(-1, 2)) for r in hands.itertuples()]
    views = {}
    for side in SIDES:
        best = _best_hand(hand_list, side)
        rows = np.flatnonzero((~obj) & (masks["hand_id"].to_numpy() == (best.hand_id if best else -10**9)))
        feat = feats[rows[0]] if len(rows) else None
        views[side] = _hand_view(best, feat, str(masks.iloc[rows[0]]["rle"]) if len(rows) else None, feats.shape[1],
                                 None if best is None else best.landmarks)
    return FrameRegions(frame_id, H, W, om["mask_id"].to_numpy(np.int64), feats[obj],
                        om[["x0", "y0", "x1", "y1"]].to_numpy(np.float32), om["area"].to_numpy(float),
                        om["rle"].astype(str).tolist(), views, om["score"].to_numpy(np.float32))

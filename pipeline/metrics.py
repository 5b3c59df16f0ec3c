"""Scoring EgoHOS label maps (0 bg, 1 left hand, 2 right hand, 3 left-hand object, 4 right-hand object,
5 object held by both hands). Pure numpy; every number is accumulated over the whole eval set.

Definitions (the README quotes these):

- **Per-class IoU** (classes 1..5): ``Σ_frames |P=c ∧ G=c| / Σ_frames |P=c ∨ G=c|``, i.e. intersection and
  union are summed over all frames before dividing (a dataset-level IoU, not a mean of per-frame IoUs, so a
  frame with a 300-pixel object weighs less than one with a 3000-pixel object).
  A class whose union is empty over the whole set (absent from GT *and* prediction) has IoU ``None``
  (undefined). A class absent from GT but predicted somewhere has IoU 0.
- **object_miou**: mean of the IoUs of classes 3, 4, 5 *that are present in the GT* (some GT pixel over the
  set). Classes absent from GT are left out of the mean, so false positives of an absent class (e.g. 5, "both
  hands", which many eval sets never contain) do not count here; they still show in that class's IoU (0) and
  in the contact accuracy. ``hand_miou`` is the same over classes 1, 2. ``None`` when no class is present.
- **Hand recall and side accuracy**: a GT hand is the GT mask of class 1 (left) or 2 (right) in a frame, if
  non-empty. It is *matched* (found) when the predicted hand mask (pred class 1 or 2) with the highest IoU with
  it reaches IoU ≥ 0.5; ``hand_recall`` = matched GT hands / all GT hands. ``hand_side_accuracy`` = fraction of
  ALL GT hands that are matched by a predicted mask of the GT side (a missed hand counts as wrong, so side
  errors cannot hide behind misses); ``hand_side_accuracy_matched`` is the same over matched hands only.
  Pixels where an object is drawn over a hand count as object, in GT and prediction alike.
- **Contact accuracy**: per GT hand (as above, matched or not), GT *holds* iff the frame has a GT pixel of
  that hand's object class (3 for left, 4 for right) or of class 5; the prediction *holds* iff the predicted
  map has a pixel of that side's object class or of 5. Accuracy = fraction of GT hands where they agree.
  A hand the predictor missed therefore counts as "holds nothing" unless an object was still labelled.
- **Contact-boundary IoU** (EgoHOS): the band where a hand meets the object it holds (pipeline.boundary,
  `boundary_px` pixels either side), derived the same way from prediction and GT; Σ intersection / Σ union over
  frames like the class IoUs; ``None`` when neither ever has a boundary.
- **Counts**: frames, GT hands, matched GT hands, GT hands holding something, GT/pred pixels per class.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASS_NAMES = {1: "left_hand", 2: "right_hand", 3: "left_object", 4: "right_object", 5: "both_object"}
HAND_CLASSES = (1, 2)
OBJECT_CLASSES = (3, 4, 5)
SIDE_OF_HAND = {1: "left", 2: "right"}
OBJECT_OF_HAND = {1: 3, 2: 4}
BOTH = 5
MATCH_IOU = 0.5
N_CLASSES = 6


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b)) / union if union else 0.0


def holds(label_map: np.ndarray, hand_class: int) -> bool:
    """Does this map say the hand of `hand_class` (1 or 2) holds something (its object class or 5)?"""
    return bool(np.any((label_map == OBJECT_OF_HAND[hand_class]) | (label_map == BOTH)))


@dataclass
class FrameScore:
    """Per-frame counts; summing them over frames gives the dataset metrics."""
    inter: np.ndarray  # (6,) intersection pixels per class
    union: np.ndarray  # (6,) union pixels per class
    gt_px: np.ndarray
    pred_px: np.ndarray
    hands: list[dict]  # one per GT hand: class, matched, side_correct, gt_holds, pred_holds
    boundary: tuple[int, int] = (0, 0)  # contact-boundary (intersection, union) pixels


def score_frame(pred: np.ndarray, gt: np.ndarray, boundary_px: int = 2) -> FrameScore:
    """Compare one predicted label map with its GT map (same shape, values 0..5)."""
    from pipeline.boundary import boundary_counts

    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    pred, gt = pred.astype(np.int64), gt.astype(np.int64)
    gt_px = np.bincount(gt.ravel(), minlength=N_CLASSES)[:N_CLASSES]
    pred_px = np.bincount(pred.ravel(), minlength=N_CLASSES)[:N_CLASSES]
    inter = np.bincount(gt[gt == pred].ravel(), minlength=N_CLASSES)[:N_CLASSES]
    union = gt_px + pred_px - inter
    return FrameScore(inter, union, gt_px, pred_px, [_score_hand(pred, gt, c) for c in HAND_CLASSES if gt_px[c]],
                      boundary_counts(pred, gt, boundary_px))


def _score_hand(pred: np.ndarray, gt: np.ndarray, hand_class: int) -> dict:
    gt_mask = gt == hand_class
    ious = {c: mask_iou(gt_mask, pred == c) for c in HAND_CLASSES}
    best = max(ious, key=lambda c: ious[c])
    matched = ious[best] >= MATCH_IOU
    return dict(hand_class=hand_class, matched=matched, side_correct=matched and best == hand_class,
                best_iou=ious[best], gt_holds=holds(gt, hand_class), pred_holds=holds(pred, hand_class))


@dataclass
class Scorer:
    """Accumulates FrameScores over a dataset; `result()` gives the metrics defined in the module docstring."""
    inter: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES, np.int64))
    union: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES, np.int64))
    gt_px: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES, np.int64))
    pred_px: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES, np.int64))
    hands: list[dict] = field(default_factory=list)
    n_frames: int = 0
    boundary_px: int = 2
    boundary_inter: int = 0
    boundary_union: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> FrameScore:
        fs = score_frame(pred, gt, self.boundary_px)
        self.boundary_inter += fs.boundary[0]
        self.boundary_union += fs.boundary[1]
        self.inter += fs.inter
        self.union += fs.union
        self.gt_px += fs.gt_px
        self.pred_px += fs.pred_px
        self.hands.extend(fs.hands)
        self.n_frames += 1
        return fs

    def class_iou(self) -> dict[int, float | None]:
        return {c: (float(self.inter[c] / self.union[c]) if self.union[c] else None) for c in CLASS_NAMES}

    def result(self) -> dict:
        iou = self.class_iou()
        out: dict = {f"iou.{CLASS_NAMES[c]}": iou[c] for c in CLASS_NAMES}
        out["object_miou"] = self._mean_present(iou, OBJECT_CLASSES)
        out["hand_miou"] = self._mean_present(iou, HAND_CLASSES)
        matched = [h for h in self.hands if h["matched"]]
        out["hand_recall"] = _frac([h["matched"] for h in self.hands])
        out["hand_side_accuracy"] = _frac([h["side_correct"] for h in self.hands])
        out["hand_side_accuracy_matched"] = _frac([h["side_correct"] for h in matched])
        out["contact_accuracy"] = _frac([h["gt_holds"] == h["pred_holds"] for h in self.hands])
        out["contact_boundary_iou"] = self.boundary_inter / self.boundary_union if self.boundary_union else None
        out.update({"n_frames": self.n_frames, "n_gt_hands": len(self.hands), "n_gt_hands_matched": len(matched),
                    "n_gt_hands_holding": sum(h["gt_holds"] for h in self.hands)})
        for c, name in CLASS_NAMES.items():
            out[f"gt_pixels.{name}"] = int(self.gt_px[c])
            out[f"pred_pixels.{name}"] = int(self.pred_px[c])
        return out

    def _mean_present(self, iou: dict[int, float | None], classes: tuple[int, ...]) -> float | None:
        vals = [v for c in classes if self.gt_px[c] > 0 and (v := iou[c]) is not None]  # GT pixels: IoU defined
        return float(np.mean(vals)) if vals else None


def _frac(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def score_maps(pairs) -> dict:
    """Metrics for an iterable of (pred, gt) label maps."""
    scorer = Scorer()
    for pred, gt in pairs:
        scorer.add(pred, gt)
    return scorer.result()

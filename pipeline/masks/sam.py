"""Segment Anything proposals: the full point grid (`sam`) or prompts around the hands (`sam_hands`).

    sam = build_sam(params.masks.sam, params.common)          # vit_b | vit_l | vit_h | mobile_sam
    proposer = SamGridProposer(sam, params.masks)             # or SamHandsProposer(sam, params.masks)
    proposals = proposer(image_rgb, hands)                    # hand masks first, then objects best first

Hand masks come from SAM prompted at each hand's landmarks (the other hand's landmarks are negative points).
Object proposals are ranked by predicted IoU x stability score. Both proposers embed each frame once.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.modeling import Sam
from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score
from torchvision.ops import batched_nms

from pipeline.device import resolve_device
from pipeline.masks.mobile_sam import build_mobile_sam
from pipeline.types import Hand, Proposal
from pipeline.weights import load_state_dict, resolve_checkpoint

SAM_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "mobile_sam": "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
}


def build_sam(sam_params, common_params) -> Sam:
    """SAM of `model_type` with its weights, on `common.device`. Weights are found before the model is built."""
    path = resolve_checkpoint(sam_params.checkpoint, url=SAM_URLS[sam_params.model_type],
                              allow_download=common_params.allow_download,
                              what=f"SAM {sam_params.model_type}", param="masks.sam.checkpoint")
    if sam_params.model_type == "mobile_sam":
        model = build_mobile_sam()
    else:
        model = sam_model_registry[sam_params.model_type](checkpoint=None)
    model.load_state_dict(load_state_dict(path))
    return model.eval().to(resolve_device(common_params.device))


class CachedPredictor(SamPredictor):
    """SamPredictor that keeps the last image embedding, so hand prompts and the mask generator share it."""

    def __init__(self, model: Sam):
        super().__init__(model)
        self._key: tuple | None = None
        self._state: tuple | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        key = (image.shape, image_format, hashlib.blake2b(np.ascontiguousarray(image).tobytes(),
                                                          digest_size=16).digest())
        if key == self._key and self._state is not None:
            self.features, self.original_size, self.input_size = self._state
            self.is_image_set = True
            return
        super().set_image(image, image_format)
        self._key, self._state = key, (self.features, self.original_size, self.input_size)


def _other_points(hands: list[Hand], hand: Hand) -> np.ndarray:
    pts = [h.landmarks for h in hands if h.hand_id != hand.hand_id and len(h.landmarks)]
    return np.concatenate(pts).astype(np.float32) if pts else np.zeros((0, 2), np.float32)


def hand_proposals(predictor: SamPredictor, hands: list[Hand]) -> list[Proposal]:
    """One mask per hand: its landmarks as positive points, the other hands' as negative (needs set_image)."""
    out = []
    for hand in hands:
        pos, neg = np.asarray(hand.landmarks, np.float32).reshape(-1, 2), _other_points(hands, hand)
        if len(pos):
            masks, iou, _ = predictor.predict(point_coords=np.concatenate([pos, neg]),
                                              point_labels=np.r_[np.ones(len(pos)), np.zeros(len(neg))],
                                              multimask_output=False)
        else:  # no landmarks: the detection box is the prompt
            masks, iou, _ = predictor.predict(box=np.asarray(hand.box, np.float32), multimask_output=False)
        out.append(Proposal(mask=masks[0].astype(bool), score=float(iou[0]), kind="hand", side=hand.side,
                            hand_id=hand.hand_id))
    return out


def rank_records(records: list[dict], max_n: int) -> list[Proposal]:
    """SamAutomaticMaskGenerator records -> object proposals ranked by predicted IoU x stability."""
    scored = sorted(records, key=lambda r: -r["predicted_iou"] * r["stability_score"])[:max_n]
    return [Proposal(mask=np.asarray(r["segmentation"], bool), score=float(r["predicted_iou"] *
                     r["stability_score"])) for r in scored]


class SamGridProposer:
    """SAM's automatic mask generator (points_per_side x points_per_side grid) plus SAM hand masks."""

    def __init__(self, model: Sam, masks_params):
        p = masks_params.sam
        self.max_proposals = masks_params.max_proposals
        self.generator = SamAutomaticMaskGenerator(
            model, points_per_side=p.points_per_side, points_per_batch=p.points_per_batch,
            pred_iou_thresh=p.pred_iou_thresh, stability_score_thresh=p.stability_score_thresh,
            box_nms_thresh=p.box_nms_thresh, min_mask_region_area=p.min_mask_region_area)
        self.generator.predictor = self.predictor = CachedPredictor(model)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, hands: list[Hand]) -> list[Proposal]:
        self.predictor.set_image(image)
        handm = hand_proposals(self.predictor, hands)
        return handm + rank_records(self.generator.generate(image), self.max_proposals)


def ring_points(hand: Hand, rings: list[float], per_ring: int, height: int, width: int) -> np.ndarray:
    """Points on circles around the hand box centre, radius = ring x box's longer side, clipped to the image.

    Successive rings are rotated by half a step so that their points do not line up radially."""
    x0, y0, x1, y1 = hand.box
    cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0)
    pts = []
    for i, r in enumerate(rings):
        ang = 2 * np.pi * (np.arange(per_ring) + 0.5 * (i % 2)) / per_ring
        pts.append(np.stack([cx + r * size * np.cos(ang), cy + r * size * np.sin(ang)], 1))
    pts = np.concatenate(pts) if pts else np.zeros((0, 2))
    return np.clip(pts, 0, [width - 1, height - 1]).astype(np.float32)


def predict_prompts(predictor: SamPredictor, points: np.ndarray | None = None, boxes: np.ndarray | None = None,
                   multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits (N*K, H, W) and predicted IoUs (N*K,) for N single-point or box prompts."""
    size, dev = predictor.original_size, predictor.device
    coords = labels = tboxes = None
    if points is not None:
        coords = torch.as_tensor(predictor.transform.apply_coords(points, size), device=dev)[:, None, :]
        labels = torch.ones(len(points), 1, dtype=torch.int, device=dev)
    if boxes is not None:
        tboxes = torch.as_tensor(predictor.transform.apply_boxes(boxes, size), device=dev)
    logits, iou, _ = predictor.predict_torch(coords, labels, boxes=tboxes, multimask_output=multimask,
                                             return_logits=True)
    return logits.flatten(0, 1), iou.flatten(0, 1)


def select_masks(logits: torch.Tensor, iou: torch.Tensor, sam_params, mask_threshold: float,
                 max_n: int) -> list[Proposal]:
    """Filter by predicted IoU and stability (as SAM's generator does), box NMS, rank by IoU x stability."""
    stability = calculate_stability_score(logits, mask_threshold, 1.0)
    masks = logits > mask_threshold
    area = masks.flatten(1).sum(1)
    keep = (iou > sam_params.pred_iou_thresh) & (stability >= sam_params.stability_score_thresh) & \
        (area > max(sam_params.min_mask_region_area, 0))
    masks, score = masks[keep], (iou * stability)[keep]
    if not len(masks):
        return []
    idx = batched_nms(batched_mask_to_box(masks).float(), score, torch.zeros_like(score),
                      sam_params.box_nms_thresh)[:max_n]
    return [Proposal(mask=masks[i].cpu().numpy(), score=float(score[i])) for i in idx.tolist()]


class SamHandsProposer:
    """Hand-guided SAM: single-point prompts on rings around each hand, one image embedding per frame."""

    def __init__(self, model: Sam, masks_params):
        self.params, self.max_proposals = masks_params.sam, masks_params.max_proposals
        self.predictor = CachedPredictor(model)

    def prompts(self, image: np.ndarray, hands: list[Hand]) -> np.ndarray:
        p, (h, w) = self.params, image.shape[:2]
        pts = [ring_points(hd, p.hand_rings, p.hand_points_per_ring, h, w) for hd in hands]
        return np.concatenate(pts) if pts else np.zeros((0, 2), np.float32)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, hands: list[Hand]) -> list[Proposal]:
        if not hands:
            return []
        self.predictor.set_image(image)
        points, batch = self.prompts(image, hands), self.params.points_per_batch
        parts = [predict_prompts(self.predictor, points[i:i + batch]) for i in range(0, len(points), batch)]
        logits, iou = torch.cat([a for a, _ in parts]), torch.cat([b for _, b in parts])
        objects = select_masks(logits, iou, self.params, self.predictor.model.mask_threshold,
                               self.max_proposals)
        return hand_proposals(self.predictor, hands) + objects


def build_sam_grid(masks_params, common_params) -> SamGridProposer:
    return SamGridProposer(build_sam(masks_params.sam, common_params), masks_params)


def build_sam_hands(masks_params, common_params) -> SamHandsProposer:
    return SamHandsProposer(build_sam(masks_params.sam, common_params), masks_params)

"""Grounded SAM: an open-vocabulary detector finds the EPIC noun classes, SAM turns its boxes into masks.

    taxonomy = load_taxonomy(params.masks.gsam.noun_classes_csv)
    proposer = GsamProposer(sam, detector, taxonomy, params.masks)   # detector(image, caption) -> detections
    proposals = proposer(image_rgb, hands)   # hand masks, then LabelledProposal(class_id, class_key) best first

The taxonomy side: each class key (and optionally its instance names) becomes a detector phrase
("board:chopping" -> "chopping board"); phrases are joined "tap . spoon . knife ." in chunks that fit the
detector's token limit; a detected phrase maps back to the class of the longest vocabulary phrase it contains.
The detector is GroundingDINO (package `groundingdino`) unless another callable is injected.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torchvision.ops import batched_nms

from pipeline.device import resolve_device
from pipeline.errors import WishError
from pipeline.masks.sam import CachedPredictor, predict_prompts, build_sam, hand_proposals
from pipeline.types import Hand, Proposal
from pipeline.weights import load_state_dict, resolve_checkpoint

GDINO_URL = ("https://github.com/IDEA-Research/GroundingDINO/releases/download/v0.1.0-alpha/"
             "groundingdino_swint_ogc.pth")
INSTALL_HINT = ("install it with `pip install groundingdino-py` (module `groundingdino`), put the weights "
                "groundingdino_swint_ogc.pth (from " + GDINO_URL + ") in a local file named by "
                "masks.gsam.detector_checkpoint and its config (GroundingDINO_SwinT_OGC.py) in masks.gsam.detector_config")


@dataclass
class LabelledProposal(Proposal):
    """An object proposal that carries the noun class the detector found."""
    class_id: int = -1
    class_key: str = ""


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float
    phrase: str


Detector = Callable[[np.ndarray, str], list[Detection]]


@dataclass
class Taxonomy:
    ids: list[int]
    keys: list[str]
    vocab: dict[str, int]  # detector phrase -> class id

    def key_of(self, class_id: int) -> str:
        return self.keys[self.ids.index(class_id)]


def to_phrase(name: str) -> str:
    """EPIC names put the head noun first ("board:chopping"); detectors want English ("chopping board")."""
    words = [w for w in re.split(r"[:_]", name.strip().lower()) if w]
    return " ".join(reversed(words))


def load_taxonomy(csv_path: str | Path, use_instances: bool = False) -> Taxonomy:
    """EPIC noun classes CSV (id, key, instances): phrase vocabulary; the first class to claim a phrase keeps it."""
    path = Path(csv_path)
    if not path.is_file():
        raise WishError(path, "noun classes CSV not found (masks.gsam.noun_classes_csv)")
    df = pd.read_csv(path)
    if not {"id", "key", "instances"} <= set(df.columns):
        raise WishError(path, "expected columns id, key, instances")
    vocab: dict[str, int] = {}
    for cid, key in zip(df["id"], df["key"]):  # keys first: a key is never shadowed by another class's instance
        vocab.setdefault(to_phrase(key), int(cid))
    if use_instances:
        for cid, inst in zip(df["id"], df["instances"]):
            for name in ast.literal_eval(inst):
                vocab.setdefault(to_phrase(name), int(cid))
    return Taxonomy(ids=[int(i) for i in df["id"]], keys=list(df["key"]), vocab=vocab)


def approx_tokens(phrase: str) -> int:
    """WordPiece count estimate used when the detector's own tokenizer is not at hand: one per word."""
    return len(phrase.split())


def chunk_prompts(phrases: list[str], max_tokens: int,
                  count_tokens: Callable[[str], int] = approx_tokens) -> list[str]:
    """Captions "a . b . c ." each within max_tokens (every phrase costs its tokens plus one for " .")."""
    chunks, current, used = [], [], 2  # [CLS] and [SEP]
    for phrase in phrases:
        cost = count_tokens(phrase) + 1
        if current and used + cost > max_tokens:
            chunks.append(" . ".join(current) + " .")
            current, used = [], 2
        current.append(phrase)
        used += cost
    if current:
        chunks.append(" . ".join(current) + " .")
    return chunks


def map_phrase(phrase: str, vocab: dict[str, int]) -> int | None:
    """Class id of a detected phrase: exact match, else the longest vocabulary phrase inside it as whole words."""
    phrase = " ".join(phrase.lower().replace(".", " ").split())
    if phrase in vocab:
        return vocab[phrase]
    padded = f" {phrase} "
    hits = [p for p in vocab if f" {p} " in padded]
    return vocab[max(hits, key=len)] if hits else None


class GroundingDino:
    """GroundingDINO detector: __call__(image_rgb, caption) -> detections in pixels."""

    def __init__(self, config: Path, checkpoint: Path, box_threshold: float, text_threshold: float,
                 device: torch.device):
        from groundingdino.models import build_model
        from groundingdino.util.slconfig import SLConfig
        from groundingdino.util.utils import clean_state_dict
        args = SLConfig.fromfile(str(config))
        args.device = str(device)
        self.model = build_model(args)
        self.model.load_state_dict(clean_state_dict(load_state_dict(checkpoint)), strict=False)
        self.model.eval().to(device)
        self.device, self.box_threshold, self.text_threshold = device, box_threshold, text_threshold

    def count_tokens(self, phrase: str) -> int:
        return len(self.model.tokenizer.tokenize(phrase))

    def __call__(self, image: np.ndarray, caption: str) -> list[Detection]:
        import groundingdino.datasets.transforms as T
        from groundingdino.util.inference import predict
        from PIL import Image
        tf = T.Compose([T.RandomResize([800], max_size=1333), T.ToTensor(),
                        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        tensor, _ = tf(Image.fromarray(image), None)
        boxes, logits, phrases = predict(self.model, tensor, caption, self.box_threshold, self.text_threshold,
                                         device=str(self.device))
        h, w = image.shape[:2]
        xyxy = (boxes.cpu().numpy() * [w, h, w, h]) @ np.array([[1, 0, 1, 0], [0, 1, 0, 1],
                                                                 [-.5, 0, .5, 0], [0, -.5, 0, .5]])
        return [Detection(tuple(map(float, b)), float(s), p) for b, s, p in zip(xyxy, logits.tolist(), phrases)]


def _detector_files(gp, common_params) -> tuple[Path, Path]:
    try:
        import groundingdino
    except ImportError as e:
        raise WishError(None, f"masks.backend 'gsam' needs the GroundingDINO detector: {INSTALL_HINT}") from e
    config = Path(gp.detector_config) if gp.detector_config else \
        Path(groundingdino.__file__).parent / "config" / "GroundingDINO_SwinT_OGC.py"
    if not config.is_file():
        raise WishError(config, "GroundingDINO config not found (masks.gsam.detector_config)")
    ckpt = resolve_checkpoint(gp.detector_checkpoint, url=GDINO_URL, allow_download=common_params.allow_download,
                              what="GroundingDINO", param="masks.gsam.detector_checkpoint")
    return config, ckpt


class GsamProposer:
    def __init__(self, model, detector: Detector, taxonomy: Taxonomy, masks_params,
                 count_tokens: Callable[[str], int] = approx_tokens):
        self.gp, self.max_proposals = masks_params.gsam, masks_params.max_proposals
        self.detector, self.taxonomy = detector, taxonomy
        self.captions = chunk_prompts(list(taxonomy.vocab), self.gp.max_text_tokens, count_tokens)
        self.predictor = CachedPredictor(model)

    def detect(self, image: np.ndarray) -> list[tuple[Detection, int]]:
        """Detections of every caption chunk with a class, class-wise NMS, best max_proposals."""
        found = [(d, c) for cap in self.captions for d in self.detector(image, cap)
                 if (c := map_phrase(d.phrase, self.taxonomy.vocab)) is not None]
        if not found:
            return []
        boxes = torch.tensor([d.box for d, _ in found], dtype=torch.float32)
        scores = torch.tensor([d.score for d, _ in found], dtype=torch.float32)
        keep = batched_nms(boxes, scores, torch.tensor([c for _, c in found]), self.gp.box_nms_iou)
        return [found[i] for i in keep[:self.max_proposals].tolist()]

    def segment(self, found: list[tuple[Detection, int]]) -> list[Proposal]:
        """SAM box prompts (one embedding, one batch) -> one mask per detection, labelled with its class."""
        if not found:
            return []
        boxes = np.array([d.box for d, _ in found], np.float32)
        logits, iou = predict_prompts(self.predictor, boxes=boxes, multimask=False)
        masks = (logits > self.predictor.model.mask_threshold).cpu().numpy()
        return [LabelledProposal(mask=m, score=d.score * float(q), class_id=c, class_key=self.taxonomy.key_of(c))
                for m, q, (d, c) in zip(masks, iou.tolist(), found)]

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, hands: list[Hand]) -> list[Proposal]:
        self.predictor.set_image(image)
        objects = sorted(self.segment(self.detect(image)), key=lambda p: -p.score)
        return hand_proposals(self.predictor, hands) + objects


def build_gsam(masks_params, common_params) -> GsamProposer:
    gp = masks_params.gsam
    config, ckpt = _detector_files(gp, common_params)  # before SAM: the rarer dependency fails first
    taxonomy = load_taxonomy(gp.noun_classes_csv, gp.use_instances)
    sam = build_sam(masks_params.sam, common_params)
    det = GroundingDino(config, ckpt, gp.box_threshold, gp.text_threshold, resolve_device(common_params.device))
    return GsamProposer(sam, det, taxonomy, masks_params, count_tokens=det.count_tokens)

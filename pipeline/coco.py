"""COCO instance export of EgoHOS label maps (`wish predict --format coco`).

One annotation per non-empty class of a frame's label map, so the COCO file and the EgoHOS PNG say the same
thing pixel for pixel: categories 1 left hand, 2 right hand, 3 left-hand object, 4 right-hand object,
5 both-hands object (the EgoHOS ids). Masks are COCO RLE (pycocotools), `score` is the hand detector's score for
hands and the method's confidence for objects (contact × matching probability where the method has them; the
mean of both hands' for a both-hands object), so the file loads as results in pycocotools' COCOeval too.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

CATEGORIES = [
    {"id": 1, "name": "left hand", "supercategory": "hand"},
    {"id": 2, "name": "right hand", "supercategory": "hand"},
    {"id": 3, "name": "left-hand object", "supercategory": "object"},
    {"id": 4, "name": "right-hand object", "supercategory": "object"},
    {"id": 5, "name": "both-hands object", "supercategory": "object"},
]
OBJECT_SIDE = {3: "left", 4: "right"}
HAND_SIDE = {1: "left", 2: "right"}


def _confidence(row: dict | None) -> float:
    if row is None:
        return 0.0
    vals = [float(row[k]) for k in ("contact_prob", "match_prob") if row.get(k) is not None and not math.isnan(row[k])]
    return float(np.prod(vals)) if vals else 1.0


def class_scores(hand_scores: dict[str, float], rows: dict[str, dict]) -> dict[int, float]:
    """Score per EgoHOS class of one frame: {1,2: hand detector score, 3,4: that hand's confidence, 5: mean}."""
    out = {c: float(hand_scores.get(side, 0.0)) for c, side in HAND_SIDE.items()}
    out.update({c: _confidence(rows.get(side)) for c, side in OBJECT_SIDE.items()})
    out[5] = float(np.mean([_confidence(rows.get(s)) for s in ("left", "right") if (rows.get(s) or {}).get("holds")] or [0.0]))
    return out


class CocoWriter:
    """Accumulates frames; `write` saves one COCO instance file (images, categories, annotations)."""

    def __init__(self, description: str = "wish predictions"):
        self.info = {"description": description}
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, image_id: str, label_map: np.ndarray, scores: dict[int, float]) -> None:
        h, w = label_map.shape
        num = len(self.images) + 1
        self.images.append({"id": num, "file_name": f"{image_id}.png", "wish_image_id": image_id, "height": h, "width": w})
        for cat in CATEGORIES:
            mask = label_map == cat["id"]
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": num, "category_id": cat["id"],
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0, "score": round(float(scores.get(cat["id"], 0.0)), 4)})

    def document(self) -> dict:
        return {"info": self.info, "images": self.images, "categories": CATEGORIES, "annotations": self.annotations}

    def write(self, path: str | Path) -> Path:
        from pipeline.io import write_json

        return write_json(self.document(), path)


def label_maps_from_coco(doc: dict) -> dict[str, np.ndarray]:
    """Inverse of CocoWriter (for checks): {wish_image_id: EgoHOS label map}; later categories win overlaps."""
    maps = {im["id"]: (im.get("wish_image_id", im["file_name"]), np.zeros((im["height"], im["width"]), np.uint8))
            for im in doc["images"]}
    for ann in sorted(doc["annotations"], key=lambda a: a["category_id"]):
        seg = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode("ascii"))
        maps[ann["image_id"]][1][mask_utils.decode(seg).astype(bool)] = ann["category_id"]
    return dict(maps.values())

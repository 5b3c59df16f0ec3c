"""Hand detection (MediaPipe Hands) with left/right side assignment, and Hand <-> HANDS-row conversion.

    with HandDetector(params.hands) as det:
        hands = det.detect(image_rgb)        # list[Hand], pixel coordinates of image_rgb

MediaPipe runs on the CPU only (its Python wheel has no GPU delegate on Linux), so `common.device` does not
apply here. Its handedness label assumes a mirrored (selfie) image; egocentric frames are not mirrored, so with
`mirror_input` the frame is flipped before inference and the landmarks are flipped back, and without it the
label is swapped. Either way `side_model` is the wearer's side; the flag only changes what the detector sees.
`score` is MediaPipe's handedness confidence: its Python API exposes no separate detection score.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import pandas as pd

from pipeline.schemas import HANDS
from pipeline.types import SIDES, Hand

N_LANDMARKS = 21
BACKEND = "mediapipe"


class HandDetector:
    """Static-image MediaPipe Hands; one instance per process (the graph is expensive to build)."""

    def __init__(self, hands_params):
        os.environ.setdefault("GLOG_minloglevel", "2")  # silence MediaPipe's per-graph C++ warnings
        import mediapipe as mp

        self.p = hands_params
        self._mp = mp.solutions.hands.Hands(
            static_image_mode=True, max_num_hands=self.p.max_hands, model_complexity=self.p.model_complexity,
            min_detection_confidence=self.p.min_detection_confidence)

    def detect(self, image_rgb: np.ndarray) -> list[Hand]:
        """Detect hands on an RGB uint8 (H, W, 3) image; sides follow `side_source`."""
        h, w = image_rgb.shape[:2]
        raw: list[tuple[np.ndarray, str, float]] = []
        for group in self.p.cascade:
            raw += [d for name in group for d in self._run(image_rgb, self.p.views[name])]
            merged = merge_detections(raw, self.p.dedupe_iou, self.p.max_hands)
            if len(merged) >= self.p.max_hands:
                break  # the later groups only rescue hands the first ones missed
        hands = [_make_hand(lm, side, score, w, h, self.p.box_margin) for lm, side, score in merged]
        return assign_sides(hands, self.p.side_source, self.p.side_min_confidence)

    def _run(self, image: np.ndarray, view) -> list[tuple[np.ndarray, str, float]]:
        """One MediaPipe pass on a view (crop, padding, rotation) of `image`; landmarks in `image` pixels."""
        img, to_image = view_image(image, view.crop, view.pad, view.rotate)
        if self.p.mirror_input:
            img = img[:, ::-1]
        res = self._mp.process(np.ascontiguousarray(img))
        out = []
        for lms, handed in zip(res.multi_hand_landmarks or [], res.multi_handedness or []):
            xy = np.array([(q.x, q.y) for q in lms.landmark], np.float32)
            if self.p.mirror_input:
                xy[:, 0] = 1.0 - xy[:, 0]
            xy = to_image(xy * np.array([img.shape[1], img.shape[0]], np.float32))
            cls = handed.classification[0]
            out.append((xy, _wearer_side(cls.label, self.p.mirror_input), float(cls.score)))
        return out

    def close(self) -> None:
        self._mp.close()

    def __enter__(self) -> "HandDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _wearer_side(label: str, mirrored: bool) -> str:
    """MediaPipe labels a hand as it would be in a mirrored (selfie) image: on an unflipped egocentric frame
    its "Left" is the wearer's right hand (measured on the eval set: 7-15% agreement unswapped)."""
    side = label.lower()
    return side if mirrored else {"left": "right", "right": "left"}[side]


def _make_hand(landmarks: np.ndarray, side_model: str, score: float, w: int, h: int, margin: float) -> Hand:
    box = landmark_box(landmarks, w, h, margin)
    side_pos = position_side(landmarks, w)
    return Hand(hand_id=-1, side=side_model, score=score, box=box, landmarks=landmarks.astype(np.float32),
                side_model=side_model, side_model_score=score, side_position=side_pos)


def landmark_box(landmarks: np.ndarray, w: int, h: int, margin: float) -> tuple[float, float, float, float]:
    """Landmark extent grown by `margin` x its width/height on every side, clipped to the image.

    Landmarks sit on joints and finger tips, so the bare extent misses the palm edge and finger flesh.
    """
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return (float(np.clip(x0 - mx, 0, w)), float(np.clip(y0 - my, 0, h)),
            float(np.clip(x1 + mx, 0, w)), float(np.clip(y1 + my, 0, h)))


def position_side(landmarks: np.ndarray, width: int) -> str:
    """Egocentric prior: a hand whose landmark centre is in the left half of the image is the left hand."""
    return "left" if float(landmarks[:, 0].mean()) < width / 2 else "right"


def assign_sides(hands: list[Hand], source: str, min_confidence: float) -> list[Hand]:
    """Set each hand's final `side` from `source`, then number hands left to right (hand_id = x order)."""
    hands = sorted(hands, key=lambda hd: float(hd.landmarks[:, 0].mean()))
    for hd in hands:
        if source == "position":
            hd.side = hd.side_position
        elif source == "model" or hd.side_model_score >= min_confidence:
            hd.side = hd.side_model
        else:
            hd.side = hd.side_position
    if source == "fused" and len(hands) == 2 and hands[0].side == hands[1].side:
        # two hands cannot both be the wearer's left: the one further left is the left hand
        hands[0].side, hands[1].side = SIDES
    for i, hd in enumerate(hands):
        hd.hand_id = i
    return hands


def _box_iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def view_image(image: np.ndarray, crop: tuple, pad: tuple, rotate: float):
    """The view's image (crop, zero padding, rotation about its centre) and a function that maps (N, 2)
    pixel points of the view back to `image` pixels."""
    import cv2

    H, W = image.shape[:2]
    x0, y0 = int(round(crop[0] * W)), int(round(crop[1] * H))
    x1, y1 = int(round(crop[2] * W)), int(round(crop[3] * H))
    c = image[y0:y1, x0:x1]
    left, top = int(round(pad[0] * c.shape[1])), int(round(pad[1] * c.shape[0]))
    right, bottom = int(round(pad[2] * c.shape[1])), int(round(pad[3] * c.shape[0]))
    img = np.pad(c, ((top, bottom), (left, right), (0, 0))) if (left or top or right or bottom) else c
    inverse = None
    if rotate:
        m = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), rotate, 1.0)
        img = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]))
        inverse = cv2.invertAffineTransform(m).astype(np.float32)
    offset = np.array([left - x0, top - y0], np.float32)

    def to_image(xy: np.ndarray) -> np.ndarray:
        if inverse is not None:
            xy = xy @ inverse[:, :2].T + inverse[:, 2]
        return (xy - offset).astype(np.float32)
    return img, to_image


def merge_detections(raw: list[tuple[np.ndarray, str, float]], iou: float,
                     max_hands: int) -> list[tuple[np.ndarray, str, float]]:
    """Cluster the detections of all views by landmark-box IoU (greedy, highest handedness score first).

    A cluster keeps its best-scored landmarks; its side is the score-weighted vote of its members (views
    disagree on hands cut by the frame edge), its score the best score times the vote's share. Clusters
    found by more views come first, so a one-view false positive cannot push out a hand seen by several.
    """
    def box(lm: np.ndarray) -> tuple:
        return (*lm.min(0).tolist(), *lm.max(0).tolist())

    clusters: list[list[tuple[np.ndarray, str, float]]] = []
    for det in sorted(raw, key=lambda r: -r[2]):
        home = next((c for c in clusters if _box_iou(box(det[0]), box(c[0][0])) >= iou), None)
        if home is None:
            clusters.append([det])
        else:
            home.append(det)
    out = []
    for c in clusters:
        votes = {s: sum(sc for _, side, sc in c if side == s) for s in SIDES}
        side = max(SIDES, key=lambda s: votes[s])
        share = votes[side] / max(sum(votes.values()), 1e-9)
        out.append((len(c), c[0][0], side, c[0][2] * share))
    out.sort(key=lambda o: (-o[0], -o[3]))
    return [(lm, side, score) for _, lm, side, score in out[:max_hands]]


def hands_to_rows(frame_id: str, hands: Iterable[Hand], backend: str = BACKEND) -> list[dict]:
    """HANDS-schema rows (landmarks flattened x0, y0, x1, y1, ...)."""
    return [dict(frame_id=frame_id, hand_id=int(hd.hand_id), side=hd.side, side_model=hd.side_model,
                 side_model_score=float(hd.side_model_score), side_position=hd.side_position,
                 score=float(hd.score), x0=hd.box[0], y0=hd.box[1], x1=hd.box[2], y1=hd.box[3],
                 landmarks=np.asarray(hd.landmarks, np.float32).reshape(-1).tolist(), backend=backend)
            for hd in hands]


def rows_to_hands(df_rows: pd.DataFrame | Iterable[dict]) -> list[Hand]:
    """Inverse of hands_to_rows: a DataFrame (e.g. one frame's rows of hands.parquet) or dicts -> Hands."""
    records = df_rows.to_dict("records") if isinstance(df_rows, pd.DataFrame) else list(df_rows)
    return [Hand(hand_id=int(r["hand_id"]), side=str(r["side"]), score=float(r["score"]),
                 box=(float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"])),
                 landmarks=np.asarray(r["landmarks"], np.float32).reshape(-1, 2),
                 side_model=str(r["side_model"]), side_model_score=float(r["side_model_score"]),
                 side_position=str(r["side_position"]))
            for r in records]


def detect_frames(frames: pd.DataFrame, frames_dir, hands_params) -> pd.DataFrame:
    """Run the detector over every row of a FRAMES table (image_path relative to frames_dir) -> HANDS rows."""
    from pathlib import Path

    from tqdm import tqdm

    from pipeline.io import read_image

    rows: list[dict] = []
    with HandDetector(hands_params) as det:
        for fid, rel in tqdm(list(zip(frames["frame_id"], frames["image_path"])), desc="hands", unit="frame"):
            rows += hands_to_rows(str(fid), det.detect(read_image(Path(frames_dir) / rel)), hands_params.backend)
    return pd.DataFrame(rows, columns=HANDS.columns)


def hands_summary(frames: pd.DataFrame, hands: pd.DataFrame) -> dict[str, int]:
    """Counts stored in the artifact's metadata: frames, hands, frames with 0, 1 and 2 (or more) hands."""
    per_frame = hands.groupby("frame_id").size().reindex(frames["frame_id"].astype(str), fill_value=0)
    return dict(frames=len(frames), hands=len(hands), frames_0=int((per_frame == 0).sum()),
                frames_1=int((per_frame == 1).sum()), frames_2=int((per_frame >= 2).sum()))

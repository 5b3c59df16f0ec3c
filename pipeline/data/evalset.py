"""The eval-set directory format (see ../shared/README.md): images/, masks/, labels/, manifest.csv, narrations.csv.

Label ids follow EgoHOS: 0 background, 1 left hand, 2 right hand, 3 left-hand object, 4 right-hand object,
5 object in both hands.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.epic import read_csv
from pipeline.errors import WishError

BACKGROUND, LEFT_HAND, RIGHT_HAND, LEFT_OBJECT, RIGHT_OBJECT, BOTH_OBJECT = range(6)
LABEL_NAMES = {1: "left_hand", 2: "right_hand", 3: "left_object", 4: "right_object", 5: "both_object"}
MANIFEST_COLUMNS = ["image_id", "image_path", "mask_path", "label", "video_id"]


@dataclass(frozen=True)
class EvalFrame:
    image_id: str
    video_id: str
    image_path: Path
    label_path: Path
    mask_paths: dict[str, list[Path]] = field(default_factory=dict)


@dataclass
class EvalSet:
    root: Path
    frames: list[EvalFrame]
    manifest: pd.DataFrame
    narrations: pd.DataFrame

    @property
    def video_ids(self) -> set[str]:
        return {f.video_id for f in self.frames}

    def image(self, frame: EvalFrame) -> np.ndarray:
        from pipeline.io import read_image

        return read_image(frame.image_path)

    def labels(self, frame: EvalFrame) -> np.ndarray:
        from PIL import Image

        if not frame.label_path.is_file():
            raise WishError(frame.label_path, "label PNG missing")
        arr = np.array(Image.open(frame.label_path))
        if arr.ndim != 2 or arr.max(initial=0) > BOTH_OBJECT:
            raise WishError(frame.label_path, f"not an EgoHOS label map (shape {arr.shape}, max {arr.max(initial=0)})")
        return arr.astype(np.uint8)

    def masks(self, frame: EvalFrame, label: str) -> list[np.ndarray]:
        from PIL import Image

        return [np.array(Image.open(p)) > 0 for p in frame.mask_paths.get(label, [])]

    def narrations_for(self, image_id: str) -> pd.DataFrame:
        if self.narrations.empty:
            return self.narrations
        return self.narrations[self.narrations["image_id"] == image_id]


def load_evalset(root: str | Path) -> EvalSet:
    """Open any directory in the eval format; missing pieces are reported by path."""
    root = Path(root)
    if not root.is_dir():
        raise WishError(root, "eval set directory not found")
    manifest = read_csv(root / "manifest.csv", MANIFEST_COLUMNS)
    narr_path = root / "narrations.csv"
    narrations = read_csv(narr_path, ["image_id", "narration_id", "narration"]) if narr_path.is_file() else pd.DataFrame()
    frames = []
    for image_id, rows in manifest.groupby("image_id", sort=True):
        first = rows.iloc[0]
        image_path = root / str(first["image_path"])
        if not image_path.is_file():
            raise WishError(image_path, f"image of {image_id} listed in manifest.csv is missing")
        masks: dict[str, list[Path]] = {}
        for _, r in rows.iterrows():
            if isinstance(r["mask_path"], str) and r["mask_path"]:
                masks.setdefault(str(r["label"]), []).append(root / r["mask_path"])
        frames.append(EvalFrame(str(image_id), str(first["video_id"]), image_path, root / "labels" / f"{image_id}.png", masks))
    if not frames:
        raise WishError(root / "manifest.csv", "manifest lists no images")
    return EvalSet(root, frames, manifest, narrations)


def eval_video_ids(dirs: list[str]) -> set[str]:
    """Videos of every configured eval set: training must never see their frames."""
    videos: set[str] = set()
    for d in dirs:
        videos |= set(read_csv(Path(d) / "manifest.csv", ["video_id"])["video_id"].astype(str))
    return videos


def refuse_eval_videos(video_ids, eval_videos: set[str], path: str | Path | None, consequence: str) -> None:
    """The one leak check (align, pseudolabel, score): no training frame may come from an eval video."""
    leaked = sorted({str(v) for v in video_ids} & set(eval_videos))
    if leaked:
        raise WishError(path, f"training frames include eval videos {leaked}: {consequence}")

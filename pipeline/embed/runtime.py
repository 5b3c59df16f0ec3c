"""Where EfficientNet-Lite0 runs: torch, or ONNX Runtime on the CPU (2.5-4x torch's crops/s on this machine,
measured by scripts/bench_pipeline.py; outputs agree with torch to ~1e-5).

The ONNX graph is exported from the same timm module (same weights) once per (weights, torch version) into a
cache directory and reused; it is written atomically, so a killed export leaves nothing half-written.

    net = build_runtime(model, "onnxruntime", num_threads=2)
    pooled, logits = net.pooled_logits(crops)   # crops (N, H, W, 3) uint8 -> (N, 1280), (N, 1000) float32
    fmap = net.feature_map(image)               # image (1, H, W, 3) uint8 -> (1, 1280, H/32, W/32) float32

Both take raw uint8 RGB and normalise with the ImageNet mean/std themselves (in the ONNX graph: one pass).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

RUNTIMES = ("torch", "onnxruntime")


class Backbone(Protocol):
    """What the runtimes use of timm's EfficientNet (to mypy, an nn.Module's attributes are `Tensor | Module`)."""
    num_features: int
    classifier: torch.nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...


def cache_dir() -> Path:
    base = os.environ.get("WISH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "wish")
    return Path(base) / "onnx"


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


class TorchRuntime:
    name = "torch"

    def __init__(self, model: Backbone, device: torch.device):
        self.model, self.device = model, device

    @torch.inference_mode()
    def pooled_logits(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self._tensor(batch)
        pre = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return pre.float().cpu().numpy(), self.model.classifier(pre).float().cpu().numpy()

    @torch.inference_mode()
    def feature_map(self, image: np.ndarray) -> np.ndarray:
        return self.model.forward_features(self._tensor(image)).float().cpu().numpy()

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        # channels_last: depthwise convolutions run 1.3-3x faster in this layout on CPU (measured)
        x = normalise(torch.from_numpy(np.ascontiguousarray(arr)))
        return x.to(self.device).contiguous(memory_format=torch.channels_last)


class _Pooled(torch.nn.Module):
    def __init__(self, model: Backbone):
        super().__init__()
        self.model = model

    def forward(self, x):
        pre = self.model.forward_head(self.model.forward_features(normalise(x)), pre_logits=True)
        return pre, self.model.classifier(pre)


class _Features(torch.nn.Module):
    def __init__(self, model: Backbone):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(normalise(x))


class OrtRuntime:
    """The model's two graphs (pooled+logits over a batch of crops; the dense feature map of one image of any
    size) as ONNX Runtime sessions on the CPU."""
    name = "onnxruntime"

    def __init__(self, model: Backbone, weights_digest: str, num_threads: int):
        self.sessions = {kind: _session(_export(model, kind, weights_digest), num_threads) for kind in ("pooled", "features")}

    def pooled_logits(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled, logits = self.sessions["pooled"].run(None, {"x": np.ascontiguousarray(batch, np.uint8)})
        return pooled, logits

    def feature_map(self, image: np.ndarray) -> np.ndarray:
        return self.sessions["features"].run(None, {"x": np.ascontiguousarray(image, np.uint8)})[0]


def _export(model: Backbone, kind: str, weights_digest: str) -> Path:
    """The cached ONNX file of `kind`, exported now if missing."""
    from pipeline.io import atomic_path

    tag = hashlib.sha1(f"{weights_digest}:{torch.__version__}:{kind}:v3".encode()).hexdigest()[:16]
    path = cache_dir() / f"effnet_lite0-{kind}-{tag}.onnx"
    if path.is_file():
        return path
    wrapper = (_Pooled if kind == "pooled" else _Features)(model).eval().cpu()
    if kind == "pooled":
        example, axes, outputs = torch.zeros(2, 160, 160, 3, dtype=torch.uint8), {"x": {0: "n", 1: "h", 2: "w"}}, \
            ["pooled", "logits"]
    else:
        example, axes, outputs = torch.zeros(1, 256, 320, 3, dtype=torch.uint8), {"x": {1: "h", 2: "w"}}, ["features"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".onnx") as tmp, torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(tmp), input_names=["x"], output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def _session(path: Path, num_threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(int(num_threads or 1), 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # the CPU provider's notes about unused GPU providers are not errors
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def build_runtime(model: Backbone, name: str, device: torch.device, weights_digest: str,
                  num_threads: int) -> TorchRuntime | OrtRuntime:
    """`auto` is ONNX Runtime on the CPU and torch on an accelerator."""
    if name == "auto":
        name = "onnxruntime" if device.type == "cpu" else "torch"
    if name == "onnxruntime":
        return OrtRuntime(model, weights_digest, num_threads)
    return TorchRuntime(model, device)

"""The `clip` embed backend: open_clip image and text towers; regions by masked attention (WISH) or crops.

    regions, texts = build_encoders(params.embed, params.common)    # with embed.backend: clip

"attention": the whole frame goes through the ViT once; in the last `masked_layers` blocks the CLS token may
attend only to itself and to the patches the region covers (mask area-downsampled to the patch grid, patches
at least half covered; the best-covered patch when none is), then ln_post / proj as usual. A full-frame mask
reproduces the plain CLS embedding. Frames are resized (squashed) to the model's square input so that every
pixel has a patch. "crop": a square crop around the mask's box with grey outside the mask, through encode_image.
Weights: embed.clip.checkpoint (a local file), else open_clip's download of `pretrained` when
common.allow_download is true; nothing else.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, cast

import cv2
import numpy as np
import open_clip
import torch

from pipeline.device import resolve_device
from pipeline.embed.offline import masked_crop
from pipeline.errors import WishError
from pipeline.weights import file_digest, hub_cache_dir, hub_offline, require_network, resolve_checkpoint


# What this backend uses of an open_clip model, for mypy (to which an nn.Module's attributes are `Tensor | Module`).
class ClipBlock(Protocol):
    attn: torch.nn.MultiheadAttention

    def __call__(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor: ...


class ClipTransformer(Protocol):
    resblocks: Sequence[ClipBlock]
    batch_first: bool


class ClipVisual(Protocol):  # open_clip's VisionTransformer
    preprocess_cfg: dict
    transformer: ClipTransformer
    image_size: tuple[int, int]
    grid_size: tuple[int, int]
    output_dim: int
    proj: torch.Tensor | None

    def _embeds(self, x: torch.Tensor) -> torch.Tensor: ...

    def _pool(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class ClipModel(Protocol):  # open_clip's CLIP
    visual: ClipVisual

    def encode_image(self, image: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, text: torch.Tensor) -> torch.Tensor: ...


def create_clip(model_name: str, *, checkpoint: str | None = None, pretrained: str | None = None,
                device: torch.device = torch.device("cpu")) -> ClipModel:
    """open_clip model: weights from a local checkpoint (torch.load weights_only), a pretrained tag, or random."""
    model = open_clip.create_model(model_name, pretrained=pretrained, device=device)
    if checkpoint is not None:
        try:  # open_clip converts OpenAI / big_vision layouts; weights_only: a checkpoint cannot run code
            open_clip.load_checkpoint(model, checkpoint, weights_only=True)
        except Exception as e:  # pickle, key and shape errors all mean "not weights for this model"
            raise WishError(checkpoint, f"not loadable as {model_name} weights (embed.clip.checkpoint): {e}") from e
    return cast(ClipModel, model.eval().to(device))


def load_clip(clip_params, common_params) -> tuple[ClipModel, str]:
    """The configured model and a string naming its weights; fails clearly when none can be had offline.
    With downloads off, pretrained weights already in the local Hugging Face cache are used (no request)."""
    device = resolve_device(common_params.device)
    cp, online = clip_params, common_params.allow_download
    if cp.checkpoint:
        path = resolve_checkpoint(cp.checkpoint, url=None, allow_download=False,
                                  what=f"CLIP {cp.model}", param="embed.clip.checkpoint")
        return create_clip(cp.model, checkpoint=str(path), device=device), f"sha256:{file_digest(path)}"
    cfg = open_clip.get_pretrained_cfg(cp.model, cp.pretrained) if cp.pretrained else {}
    if cp.pretrained and (online or cfg.get("hf_hub")):  # offline: only the hub cache can be read without a request
        if online:
            host = "https://huggingface.co" if cfg.get("hf_hub") else cfg.get("url", "https://huggingface.co")
            try:
                require_network(host, "download")
            except WishError as e:
                raise WishError(None, _no_weights(cp, cfg, online, e)) from e
        try:
            with hub_offline(not online):
                return create_clip(cp.model, pretrained=cp.pretrained, device=device), cp.pretrained
        except Exception as e:  # offline hub misses, network errors, unknown tags: all "no weights here"
            raise WishError(None, _no_weights(cp, cfg, online, e)) from e
    raise WishError(None, _no_weights(cp, cfg, online, None))


def _no_weights(cp, cfg: dict, online: bool, error: Exception | None) -> str:
    """Which param to set, which file to get and where to put it."""
    hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
    if hub:
        repo, name = os.path.split(hub)  # open_clip's convention: "org/model/" or "org/model/file"
        where = (f"the Hugging Face repo {repo} (file {name or 'open_clip_model.safetensors'}) "
                 f"in the hub cache {hub_cache_dir()}")
    elif url:
        where = f"{url.rsplit('/', 1)[-1]} from {url}"
    else:
        where = f"an open_clip checkpoint of {cp.model}"
    how = ("the download failed" + (f" ({str(error).splitlines()[0][:200]})" if error else "") if online
           else "downloads are off (common.allow_download: false)")
    return (f"CLIP {cp.model} ({cp.pretrained or 'no tag'}): no weights, {how}. Set embed.clip.checkpoint to a "
            f"local file ({where}), or put it there, or set common.allow_download: true on a machine with network")


def load_tokenizer(model_name: str, allow_download: bool):
    """open_clip's tokenizer for `model_name`. Most are built in; hub-hosted ones (SigLIP, XLM-R ...) are read
    from the local Hugging Face cache unless downloads are allowed, so a stage never goes online by surprise."""
    try:
        with hub_offline(not allow_download):
            return open_clip.get_tokenizer(model_name)
    except Exception as e:  # offline cache miss or network failure inside transformers / the hub
        state = "downloads are off (common.allow_download: false)" if not allow_download else "the download failed"
        raise WishError(None, (f"CLIP {model_name}: its tokenizer is hosted on the Hugging Face Hub and is not in "
                               f"the local cache {hub_cache_dir()}; {state}. Copy the tokenizer files there, or set "
                               f"common.allow_download: true ({str(e).splitlines()[0][:200]})")) from e


def normalise(images: np.ndarray, model: ClipModel, device: torch.device) -> torch.Tensor:
    """uint8 (N, S, S, 3) RGB -> normalised float (N, 3, S, S) with the model's mean/std."""
    cfg = model.visual.preprocess_cfg
    mean, std = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return ((x - mean) / std).to(device)


def patch_allowed(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Which patches (row-major, flattened) a region covers: coverage >= 0.5, else the best-covered one."""
    cover = cv2.resize(mask.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA).ravel()
    allowed = cover >= 0.5
    if not allowed.any():
        allowed[int(np.argmax(cover))] = True
    return allowed


def cls_attention_mask(allowed: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, P) allowed patches -> additive mask (B*heads, 1+P, 1+P): only the CLS row is restricted."""
    b, p = allowed.shape
    row = torch.zeros(b, 1 + p, dtype=torch.float32, device=allowed.device)
    row[:, 1:].masked_fill_(~allowed, float("-inf"))
    mask = torch.zeros(b, 1 + p, 1 + p, dtype=torch.float32, device=allowed.device)
    mask[:, 0, :] = row
    return mask.repeat_interleave(heads, dim=0)


def _run_blocks(blocks, x: torch.Tensor, batch_first: bool, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    x = x if batch_first else x.transpose(0, 1)
    for blk in blocks:
        x = blk(x, attn_mask=attn_mask)
    return x if batch_first else x.transpose(0, 1)


class ClipRegionEncoder:
    def __init__(self, model: ClipModel, ident: str, mode: str, masked_layers: int, context: float,
                 batch_size: int, device: torch.device):
        visual = model.visual
        if mode == "attention" and (getattr(visual, "attn_pool", None) is not None
                                    or getattr(visual, "pool_type", "tok") != "tok"):
            raise WishError(None, "embed.clip.region_mode 'attention' needs a ViT pooled by its CLS token")
        self.model, self.mode, self.context, self.batch_size, self.device = model, mode, context, batch_size, device
        self.masked_layers = min(masked_layers, len(visual.transformer.resblocks))
        self.size = visual.image_size  # (H, W)
        self.dim = int(visual.output_dim)
        layers = f"-L{self.masked_layers}" if mode == "attention" else f"-ctx{context}"
        self.weights_id = f"{ident}:{mode}{layers}"

    def encode(self, image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
        if not masks:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            feats = self._attention(image, masks) if self.mode == "attention" else self._crops(image, masks)
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()

    def _attention(self, image: np.ndarray, masks: list[np.ndarray]) -> torch.Tensor:
        visual = self.model.visual
        blocks, tr = list(visual.transformer.resblocks), visual.transformer
        frame = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        shared = _run_blocks(blocks[:-self.masked_layers], visual._embeds(normalise(frame[None], self.model,
                                                                                     self.device)), tr.batch_first)
        grid, heads = visual.grid_size, int(blocks[-1].attn.num_heads)
        out = []
        for i in range(0, len(masks), self.batch_size):
            part = masks[i:i + self.batch_size]
            allowed = torch.from_numpy(np.stack([patch_allowed(m, grid) for m in part])).to(self.device)
            x = _run_blocks(blocks[-self.masked_layers:], shared.expand(len(part), -1, -1),
                            tr.batch_first, cls_attention_mask(allowed, heads).to(shared.dtype))
            pooled, _ = visual._pool(x)
            out.append(pooled @ visual.proj if visual.proj is not None else pooled)
        return torch.cat(out)

    def _crops(self, image: np.ndarray, masks: list[np.ndarray]) -> torch.Tensor:
        # the offline backend's crop (one definition): square, grey outside the mask, then CLIP's (H, W)
        crops = [masked_crop(image, m, self.context, "grey", max(self.size)) for m in masks]
        if self.size[0] != self.size[1]:
            crops = [cv2.resize(c, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA) for c in crops]
        batch = np.stack(crops)
        return torch.cat([self.model.encode_image(normalise(batch[i:i + self.batch_size], self.model, self.device))
                          for i in range(0, len(batch), self.batch_size)])


class ClipTextEncoder:
    def __init__(self, model: ClipModel, tokenizer, ident: str, batch_size: int, device: torch.device):
        self.model, self.tokenizer, self.batch_size, self.device = model, tokenizer, batch_size, device
        self.dim = int(model.visual.output_dim)  # CLIP projects both towers to the same embed_dim
        self.weights_id = f"{ident}:text"

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            feats = torch.cat([self.model.encode_text(self.tokenizer(texts[i:i + self.batch_size]).to(self.device))
                               for i in range(0, len(texts), self.batch_size)])
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()


def make_encoders(model: ClipModel, model_name: str, weights: str, clip_params, batch_size: int,
                  device: torch.device, allow_download: bool = False) -> tuple[ClipRegionEncoder, ClipTextEncoder]:
    ident = f"open_clip:{model_name}:{weights}"
    regions = ClipRegionEncoder(model, ident, clip_params.region_mode, clip_params.masked_layers,
                                clip_params.context, batch_size, device)
    tokenizer = load_tokenizer(model_name, allow_download)
    return regions, ClipTextEncoder(model, tokenizer, ident, batch_size, device)


def build(embed_params, common_params) -> tuple[ClipRegionEncoder, ClipTextEncoder]:
    cp = embed_params.clip
    model, weights = load_clip(cp, common_params)
    return make_encoders(model, cp.model, weights, cp, embed_params.batch_size, resolve_device(common_params.device),
                         common_params.allow_download)

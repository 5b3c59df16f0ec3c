"""MobileSAM: SAM's prompt encoder and mask decoder behind a TinyViT-5M image encoder (Zhang et al. 2023).

Module names follow the MobileSAM repository (image_encoder.patch_embed.seq.0.c, layers.N.blocks.M.attn.qkv,
layers.N.downsample.conv1, norm_head, head, neck.K) so its official mobile_sam.pt loads with strict=True.
Two MobileSAM changes from plain TinyViT are kept: the last patch merging has stride 1 (the encoder ends at
1/16 resolution, 64x64 for a 1024 input, what SAM's decoder expects) and a neck maps 320 -> 256 channels.
timm's TinyViT has other module names and always downsamples, hence this small re-implementation.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

EMBED_DIMS = (64, 128, 160, 320)
DEPTHS = (2, 2, 6, 2)
NUM_HEADS = (2, 4, 5, 10)
WINDOW_SIZES = (7, 7, 14, 7)


class Conv2dBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class PatchEmbed(nn.Module):
    """Two stride-2 convolutions: 1/4 resolution."""
    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(cin, dim // 2, 3, 2, 1), nn.GELU(), Conv2dBN(dim // 2, dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, dim: int, expand: float = 4.0):
        super().__init__()
        hidden = int(dim * expand)
        self.conv1, self.act1 = Conv2dBN(dim, hidden), nn.GELU()
        self.conv2, self.act2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU()
        self.conv3, self.act3 = Conv2dBN(hidden, dim), nn.GELU()
        nn.init.zeros_(self.conv3.bn.weight)  # as in TinyViT: each block starts as identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """Takes (B, C, H, W) or (B, H*W, C); returns tokens (B, H'*W', C')."""
    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int):
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.resolution
            x = x.view(len(x), h, w, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Window attention with a learned bias per (|dy|, |dx|) offset inside the window (LeViT style)."""
    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, dim // num_heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = [offsets.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(offsets))
                for a in points for b in points]
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1).permute(0, 2, 1, 3).chunk(3, dim=3)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm, self.fc1, self.act, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), \
            nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def _windows(x: torch.Tensor, w: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B*nH*nW, w*w, C), zero-padding H, W up to multiples of w."""
    b, h, wd, c = x.shape
    x = F.pad(x, (0, 0, 0, (-wd) % w, 0, (-h) % w))
    ph, pw = x.shape[1], x.shape[2]
    x = x.view(b, ph // w, w, pw // w, w, c).transpose(2, 3).reshape(-1, w * w, c)
    return x, (ph, pw)


def _unwindows(x: torch.Tensor, w: int, b: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    ph, pw = padded
    x = x.view(b, ph // w, pw // w, w, w, -1).transpose(2, 3).reshape(b, ph, pw, -1)
    return x[:, :hw[0], :hw[1]]


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.resolution, self.window = resolution, window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, n, c) = self.resolution, x.shape
        win, padded = _windows(x.view(b, h, w, c), self.window)
        x = x + _unwindows(self.attn(win), self.window, b, padded, (h, w)).reshape(b, n, c)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """`blocks` then an optional `downsample` (the MobileSAM repo's ConvLayer / BasicLayer)."""
    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


def _resolutions(img_size: int, n: int) -> list[int]:
    """Token grid side per stage: 1/4, 1/8, 1/16, then 1/16 again (the last merging has stride 1)."""
    sides = [img_size // 4 // 2 ** i for i in range(n - 1)]
    return sides + [sides[-1]]


class TinyViT(nn.Module):
    def __init__(self, img_size: int = 1024, embed_dims=EMBED_DIMS, depths=DEPTHS, num_heads=NUM_HEADS,
                 window_sizes=WINDOW_SIZES, out_chans: int = 256, num_classes: int = 1000):
        super().__init__()
        self.img_size = img_size  # SamPredictor / Sam.preprocess read this
        self.patch_embed = PatchEmbed(3, embed_dims[0])
        self.layers = nn.ModuleList(self._stage(i, embed_dims, depths, num_heads, window_sizes)
                                    for i in range(len(depths)))
        # Unused by SAM, but part of the official checkpoint.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False), LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))

    def _stage(self, i: int, dims, depths, heads, windows) -> Stage:
        side = _resolutions(self.img_size, len(depths))[i]
        if i == 0:
            blocks: list[nn.Module] = [MBConv(dims[0]) for _ in range(depths[0])]
        else:
            blocks = [TinyViTBlock(dims[i], (side, side), heads[i], windows[i]) for _ in range(depths[i])]
        last = i == len(depths) - 1
        stride = 1 if i == len(depths) - 2 else 2
        down = None if last else PatchMerging((side, side), dims[i], dims[i + 1], stride)
        return Stage(blocks, down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        side = _resolutions(self.img_size, len(self.layers))[-1]
        x = x.view(len(x), side, side, -1).permute(0, 3, 1, 2)
        return self.neck(x)


def build_mobile_sam(img_size: int = 1024) -> Sam:
    """Randomly initialised MobileSAM (weights are loaded by the caller), in eval mode."""
    prompt_dim, grid = 256, img_size // 16
    sam = Sam(
        image_encoder=TinyViT(img_size=img_size, out_chans=prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=prompt_dim, iou_head_depth=3,
                                 iou_head_hidden_dim=256,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048,
                                                               num_heads=8)),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()

"""The clip embed backend with a tiny random open_clip ViT (no pretrained weights exist offline)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import open_clip
import pytest
import torch

from pipeline.embed import build_encoders
from pipeline.embed.clip import (cls_attention_mask, create_clip, make_encoders, normalise,
                                 patch_allowed)
from pipeline.embed.offline import GREY, masked_crop
from pipeline.errors import WishError
from pipeline.params import ClipParams, CommonParams, EmbedParams

TINY = "wish-tiny-vit"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory) -> str:
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    d = tmp_path_factory.mktemp("clipcfg")
    (d / f"{TINY}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)
    return TINY


@pytest.fixture(scope="module")
def tiny_model(tiny_name):
    torch.manual_seed(0)
    return create_clip(tiny_name)


def encoders(model, mode="attention", masked_layers=1):
    cp = ClipParams(model=TINY, pretrained=None, region_mode=mode, masked_layers=masked_layers)
    return make_encoders(model, TINY, "random", cp, batch_size=3, device=CPU)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 255, (6, 8, 3)), np.ones((20, 20, 1))).astype(np.uint8)  # 120x160 blocks
    return img


def box_mask(shape, x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros(shape[:2], bool)
    m[y0:y1, x0:x1] = True
    return m


def test_full_mask_equals_plain_cls_embedding(tiny_model, image):
    regions, _ = encoders(tiny_model, masked_layers=2)
    full = regions.encode(image, [np.ones(image.shape[:2], bool)])
    frame = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)[None]
    with torch.inference_mode():
        plain = torch.nn.functional.normalize(tiny_model.encode_image(normalise(frame, tiny_model, CPU)), dim=-1)
    plain = plain.numpy()
    assert full.shape == (1, 32)
    np.testing.assert_allclose(full, plain, atol=1e-5)


def test_attention_mode_depends_on_mask_and_is_normalised(tiny_model, image):
    regions, _ = encoders(tiny_model)
    masks = [box_mask(image.shape, 0, 0, 60, 60), box_mask(image.shape, 100, 60, 160, 120),
             box_mask(image.shape, 0, 0, 60, 60)]
    feats = regions.encode(image, masks)
    assert feats.shape == (3, regions.dim) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert np.abs(feats[0] - feats[1]).max() > 1e-3  # different regions, different embeddings
    np.testing.assert_allclose(feats[0], feats[2], atol=1e-6)  # same region, same embedding (across batches)


def test_patch_grid_and_cls_mask():
    m = box_mask((64, 64), 0, 0, 32, 16)  # top half of the first two patch rows... of a 4x4 grid: 2 patches
    allowed = patch_allowed(m, (4, 4))
    assert allowed.tolist() == [True, True] + [False] * 14
    tiny = np.zeros((64, 64), bool)
    tiny[40, 50] = True  # covers < 0.5 of any patch: the best-covered patch is used
    assert np.flatnonzero(patch_allowed(tiny, (4, 4))).tolist() == [2 * 4 + 3]
    am = cls_attention_mask(torch.from_numpy(allowed)[None], heads=2)
    assert am.shape == (2, 17, 17)
    assert torch.isinf(am[0, 0, 3:]).all() and (am[0, 0, :3] == 0).all() and (am[:, 1:] == 0).all()


def test_crop_mode(tiny_model, image):
    regions, _ = encoders(tiny_model, mode="crop")
    m = box_mask(image.shape, 20, 20, 60, 100)
    crop = masked_crop(image, m, 0.1, "grey", 64)
    assert crop.shape == (64, 64, 3) and (crop[0, 0] == GREY).all()  # outside the mask: grey
    feats = regions.encode(image, [m, box_mask(image.shape, 100, 0, 160, 40)])
    assert feats.shape == (2, 32) and np.abs(feats[0] - feats[1]).max() > 1e-3
    assert "crop" in regions.weights_id and "attention" in encoders(tiny_model)[0].weights_id


def test_text_embeddings(tiny_model):
    _, texts = encoders(tiny_model)
    feats = texts.encode(["knife in contact with the left hand", "tap", "knife in contact with the left hand"])
    assert feats.shape == (3, texts.dim) == (3, 32)
    np.testing.assert_allclose(feats[0], feats[2], atol=1e-6)
    assert np.abs(feats[0] - feats[1]).max() > 1e-3
    assert texts.encode([]).shape == (0, 32)


def test_checkpoint_roundtrip_through_builder(tiny_model, image, tmp_path):
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), ckpt)
    ep = EmbedParams(backend="clip", batch_size=4, clip=ClipParams(model=TINY, pretrained=None,
                                                                   checkpoint=str(ckpt)))
    regions, texts = build_encoders(ep, CommonParams(device="cpu"))
    ref_regions, ref_texts = encoders(tiny_model)
    m = [box_mask(image.shape, 30, 10, 90, 70)]
    np.testing.assert_array_equal(regions.encode(image, m), ref_regions.encode(image, m))
    np.testing.assert_array_equal(texts.encode(["spoon"]), ref_texts.encode(["spoon"]))
    assert "sha256:" in regions.weights_id and TINY in texts.weights_id


def test_no_weights_offline_names_the_param(tiny_name, tmp_path):
    ep = EmbedParams(backend="clip", clip=ClipParams(model="ViT-B-16", pretrained="openai"))
    with pytest.raises(WishError, match="embed.clip.checkpoint"):
        build_encoders(ep, CommonParams(device="cpu", allow_download=False))
    torch.save({"visual.proj": torch.zeros(2)}, tmp_path / "other.pt")
    wrong = EmbedParams(backend="clip", clip=ClipParams(model=TINY, checkpoint=str(tmp_path / "other.pt")))
    with pytest.raises(WishError, match="embed.clip.checkpoint"):
        build_encoders(wrong, CommonParams(device="cpu"))
    missing = EmbedParams(backend="clip", clip=ClipParams(checkpoint="/nonexistent/clip.pt"))
    with pytest.raises(WishError, match="embed.clip.checkpoint"):
        build_encoders(missing, CommonParams(device="cpu"))


@pytest.fixture
def no_network(monkeypatch):
    """Any name lookup fails at once and is recorded: the code under test must not try."""
    import socket

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args[:1])
        raise OSError("network is off in this test")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


def test_no_weights_offline_names_file_and_folder_without_a_request(no_network):
    from pipeline.weights import hub_cache_dir

    ep = EmbedParams(backend="clip", clip=ClipParams(model="ViT-B-16", pretrained="openai"))
    with pytest.raises(WishError) as err:
        build_encoders(ep, CommonParams(device="cpu", allow_download=False))
    msg = str(err.value)
    assert "embed.clip.checkpoint" in msg and "timm/vit_base_patch16_clip_224.openai" in msg
    assert str(hub_cache_dir()) in msg and no_network == []


def test_download_failure_is_a_clear_error(no_network):
    ep = EmbedParams(backend="clip", clip=ClipParams(model="ViT-B-16", pretrained="openai"))
    with pytest.raises(WishError, match="the download failed.*embed.clip.checkpoint"):
        build_encoders(ep, CommonParams(device="cpu", allow_download=True))


def test_hub_hosted_tokenizer_stays_offline_unless_allowed(no_network):
    import time

    from pipeline.embed.clip import load_tokenizer

    start = time.perf_counter()
    with pytest.raises(WishError, match="tokenizer.*common.allow_download"):
        load_tokenizer("ViT-B-16-SigLIP", allow_download=False)
    assert no_network == [] and time.perf_counter() - start < 20
    assert load_tokenizer(TINY, allow_download=False) is not None  # built-in tokenizers need no files

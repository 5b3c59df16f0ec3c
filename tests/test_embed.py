"""embed: offline encoders (EfficientNet-Lite0 + MiniLM), the content-keyed HDF5 cache, the stage end to end."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import rle
from pipeline.data.evalset import load_evalset
from pipeline.embed import REGISTRY
from pipeline.embed import offline as off
from pipeline.embed.cache import (Cache, lookup_regions, lookup_texts, read_cache, region_key, reusable,
                                  write_cache)
from pipeline.errors import WishError
from pipeline.io import write_table
from pipeline.params import Params
from pipeline.schemas import FRAMES, MASKS, PHRASES, REGION_EMBEDDINGS, TEXT_EMBEDDINGS
from stages.cli import main

EVAL = Path("../shared/data/evalset")
CUP = ("P01_104_frame_0000001851", "left_object_0")  # a white cup, clearly visible
FRAMES_USED = ["P02_01_frame_0000006221", "P02_101_frame_0000011665"]  # 5 GT masks each


@pytest.fixture(scope="session")
def encoders():
    p = Params()
    return off.build(p.embed, p.common)


@pytest.fixture(scope="session")
def evalset():
    return load_evalset(EVAL)


def eval_mask(evalset, image_id: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    frame = next(f for f in evalset.frames if f.image_id == image_id)
    path = next(p for ps in frame.mask_paths.values() for p in ps if p.name.endswith(f"__{name}.png"))
    from PIL import Image

    return evalset.image(frame), np.array(Image.open(path)) > 0


# --- EfficientNet weights and crops -----------------------------------------------------------------------

def test_effnet_keys_map_completely_and_shapes_match():
    import timm

    path = off.effnet_weights_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    mapped = off.map_state_dict(src, dst, path)
    assert list(mapped) == list(dst)
    assert all(mapped[k].shape == dst[k].shape for k in dst)
    assert all(a is b for a, b in zip(mapped.values(), src.values()))  # every package tensor used, in order
    with pytest.raises(WishError, match="tensors but timm"):
        off.map_state_dict(dict(list(src.items())[:-1]), dst, path)
    shifted = dict(zip(src, list(src.values())[1:] + [list(src.values())[0]]))
    with pytest.raises(WishError, match="does not fit"):
        off.map_state_dict(shifted, dst, path)


def test_effnet_classifies_real_images(encoders, evalset):
    import skimage.data

    region, _ = encoders
    names = off.imagenet_class_names()

    def top5(image, mask):
        return {names[i] for i in np.argsort(-region.classify(image, [mask])[0])[:5]}

    coffee = skimage.data.coffee()
    assert "espresso" in top5(coffee, np.ones(coffee.shape[:2], bool))
    cat = skimage.data.chelsea()
    assert top5(cat, np.ones(cat.shape[:2], bool)) & {"tabby", "tiger cat", "Egyptian cat"}
    assert top5(*eval_mask(evalset, *CUP)) & {"cup", "coffee mug", "espresso"}


def test_masked_crop_greys_background_and_pads_outside_the_image():
    image = np.full((100, 200, 3), 255, np.uint8)
    mask = np.zeros((100, 200), bool)
    mask[0:20, 0:40] = True  # touches the corner: the grown square leaves the image
    crop = off.masked_crop(image, mask, context=0.5, background="grey", size=32)
    assert crop.shape == (32, 32, 3)
    assert (crop[16, 16] == 255).all()  # centre of the mask
    assert tuple(crop[0, 0]) == off.GREY and tuple(crop[-1, -1]) == off.GREY
    kept = off.masked_crop(image, mask, context=0.5, background="keep", size=32)
    assert tuple(kept[-1, -1]) == (255, 255, 255) and tuple(kept[0, 0]) == off.GREY  # in image / padding


def test_region_embeddings_shape_determinism_and_distinctness(encoders, evalset):
    region, _ = encoders
    image, cup = eval_mask(evalset, *CUP)
    _, hand = eval_mask(evalset, CUP[0], "left_hand_0")
    a = region.encode(image, [cup, hand])
    assert a.shape == (2, 1280) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, region.encode(image, [cup, hand]))
    np.testing.assert_allclose(a[:1], region.encode(image, [cup]), atol=1e-4)  # batch-independent
    cos = a[0] @ a[1] / np.linalg.norm(a[0]) / np.linalg.norm(a[1])
    assert cos < 0.9


def test_minilm_similar_phrases_are_closer(encoders):
    _, text = encoders
    e = text.encode(["knife in contact with the left hand", "a kitchen knife", "washing machine", "the sponge"])
    assert e.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2 and e[0] @ e[1] > e[0] @ e[3] + 0.2


def test_conse_is_the_probability_weighted_class_mix():
    classes = np.eye(4, dtype=np.float32)
    probs = np.array([[0.0, 1.0, 0.0, 0.0], [0.6, 0.3, 0.1, 0.0]])
    out = off.conse(probs, classes, top_k=2)
    np.testing.assert_allclose(out[0], [0, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[1], np.array([2, 1, 0, 0]) / np.sqrt(5), atol=1e-6)


# --- the cache ---------------------------------------------------------------------------------------------

def test_lookup_errors_name_the_file(tmp_path):
    path = tmp_path / "regions.h5"
    write_cache(path, Cache([region_key("f", "abc", "w")], np.ones((1, 3)), {"weights_id": "w"}), REGION_EMBEDDINGS)
    np.testing.assert_array_equal(lookup_regions(path, ["f"], ["abc"]), np.ones((1, 3), np.float32))
    with pytest.raises(WishError, match="no embedding for a region of frame g") as e:
        lookup_regions(path, ["g"], ["abc"])
    assert e.value.path == path
    with pytest.raises(WishError, match="expected HDF5 artifact wish.text_embeddings") as e:
        lookup_texts(path, ["knife"])
    assert e.value.path == path
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(WishError, match="not a readable") as e:
        lookup_texts(tmp_path / "bad.h5", ["knife"])
    assert e.value.path == tmp_path / "bad.h5"


def make_root(tmp_path: Path, evalset, image_ids: list[str]) -> Path:
    """A tiny artifacts root from eval frames: frames.parquet + images, GT masks as masks.parquet, phrases."""
    root = tmp_path / "artifacts"
    (root / "frames" / "images").mkdir(parents=True, exist_ok=True)
    frames, masks = [], []
    for frame in (f for f in evalset.frames if f.image_id in image_ids):
        shutil.copy(frame.image_path, root / "frames" / "images" / frame.image_path.name)
        h, w = evalset.image(frame).shape[:2]
        frames.append(dict(frame_id=frame.image_id, video_id=frame.video_id, source="eval", clip_index=0, epic_frame=0,
                           time_s=0.0, image_path=f"images/{frame.image_path.name}", width=w, height=h,
                           narration_ids=[], split="train"))
        for label in sorted(frame.mask_paths):
            for m in evalset.masks(frame, label):
                masks.append(_mask_row(frame.image_id, len(masks), label, m))
    write_table(pd.DataFrame(frames), FRAMES, root / "frames" / "frames.parquet")
    write_table(pd.DataFrame(masks), MASKS, root / "masks" / "masks.parquet")
    write_table(pd.DataFrame([_phrase("knife"), _phrase("cup")]), PHRASES, root / "nouns" / "phrases.parquet")
    return root


def _mask_row(frame_id: str, i: int, label: str, m: np.ndarray) -> dict:
    x0, y0, x1, y1 = rle.box(m)
    hand = label.endswith("hand")
    return dict(frame_id=frame_id, mask_id=i, kind="hand" if hand else "object",
                side=label.split("_")[0] if hand else "", hand_id=0 if hand else -1, height=m.shape[0],
                width=m.shape[1], rle=rle.encode(m), x0=x0, y0=y0, x1=x1, y1=y1, area=int(m.sum()), score=1.0,
                backend="gt")


def _phrase(noun: str) -> dict:
    return dict(narration_id="n", video_id="v", narration=f"take {noun}", phrase_idx=0, phrase=noun, head_lemma=noun,
                noun_class=0, noun_key=noun, hand="none", source="test",
                text_left=f"{noun} in contact with the left hand",
                text_right=f"{noun} in contact with the right hand", text_none=noun)


@pytest.fixture
def counting(encoders, monkeypatch):
    """The offline backend, built once, with a tally of what each run really encodes."""
    region, text = encoders
    calls = {"regions": 0, "texts": 0}

    class Counted:
        def __init__(self, inner, what):
            self.inner, self.what, self.weights_id, self.dim = inner, what, inner.weights_id, inner.dim

        def encode(self, *args):
            out = self.inner.encode(*args)
            calls[self.what] += len(out)
            return out

    monkeypatch.setitem(REGISTRY, "offline", lambda e, c: (Counted(region, "regions"), Counted(text, "texts")))
    return calls


def run_stage(tmp_path: Path, root: Path) -> int:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"common": {"device": "cpu"}}))
    return main(["embed", "--params", str(params), "--root", str(root)])


def test_stage_reuses_cached_regions_and_encodes_only_new_ones(tmp_path, evalset, counting):
    root = make_root(tmp_path, evalset, FRAMES_USED[:1])
    assert run_stage(tmp_path, root) == 0
    n_first = counting["regions"]
    masks = pd.read_parquet(root / "masks" / "masks.parquet")
    assert n_first == len(masks) and counting["texts"] == 6  # 2 nouns x (left, right, bare)
    first = lookup_regions(root / "embed" / "regions.h5", masks["frame_id"], masks["rle"])

    root = make_root(tmp_path, evalset, FRAMES_USED)  # one more frame
    assert run_stage(tmp_path, root) == 0
    masks3 = pd.read_parquet(root / "masks" / "masks.parquet")
    assert counting["regions"] - n_first == (masks3["frame_id"] == FRAMES_USED[1]).sum() > 0
    assert counting["texts"] == 6  # same phrases: nothing new to encode
    again = lookup_regions(root / "embed" / "regions.h5", masks["frame_id"], masks["rle"])
    np.testing.assert_array_equal(first, again)
    assert lookup_texts(root / "embed" / "texts.h5", ["cup"]).shape == (1, 384)
    attrs = read_cache(root / "embed" / "regions.h5", REGION_EMBEDDINGS).attrs
    assert {"backend", "weights_id", "params_hash", "dim", "schema_name", "schema_version"} <= set(attrs)


def test_corrupt_or_foreign_cache_is_rebuilt(tmp_path, evalset, counting, encoders):
    root = make_root(tmp_path, evalset, FRAMES_USED[:1])
    n = len(pd.read_parquet(root / "masks" / "masks.parquet"))
    (root / "embed").mkdir()
    (root / "embed" / "regions.h5").write_bytes(b"\x89HDF garbage")
    assert run_stage(tmp_path, root) == 0 and counting["regions"] == n
    good = read_cache(root / "embed" / "regions.h5", REGION_EMBEDDINGS)
    assert reusable(root / "embed" / "regions.h5", REGION_EMBEDDINGS, encoders[0].weights_id)[0] is not None
    foreign = Cache(good.keys, np.zeros_like(good.features), {**good.attrs, "weights_id": "clip[other]"})
    write_cache(root / "embed" / "regions.h5", foreign, REGION_EMBEDDINGS)  # same keys, other encoder
    write_cache(root / "embed" / "texts.h5", Cache([], np.zeros((0, 384)), {"weights_id": "x"}, []), REGION_EMBEDDINGS)
    assert run_stage(tmp_path, root) == 0 and counting["regions"] == 2 * n and counting["texts"] == 12
    rebuilt = read_cache(root / "embed" / "regions.h5", REGION_EMBEDDINGS)
    np.testing.assert_array_equal(rebuilt.features, good.features)
    assert read_cache(root / "embed" / "texts.h5", TEXT_EMBEDDINGS).texts[0] == "cup"

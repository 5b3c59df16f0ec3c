"""Speed-related guarantees: model-free commands stay free of torch; fast paths agree with the reference ones."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import DATA, ROOT

SHORT = "P02_09_left_hand_67864_67947_action_raw854x480.mp4"  # 19 frames, narrated

NO_TORCH = """
import sys
from stages.cli import main
params, root = sys.argv[1], sys.argv[2]
for argv in (["frames", "--params", params, "--root", root], ["nouns", "--params", params, "--root", root],
             ["inspect", root + "/nouns/phrases.parquet"]):
    assert main(argv) == 0, argv
print("TORCH_LOADED", "torch" in sys.modules)
"""


def test_frames_nouns_and_inspect_never_import_torch(tmp_path, write_params):
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(DATA / "epic" / "clips" / SHORT, src / SHORT)
    params = write_params({"common": {"eval_dirs": []},
                           "frames": {"sources": [str(src)], "max_side": 160, "stride": 6}})
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(params), str(tmp_path / "art")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TORCH_LOADED False" in done.stdout


# --- embed: ONNX Runtime, smaller crops, dense mask pooling ----------------------------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pipeline.embed import offline as off  # noqa: E402
from pipeline.embed.dense import dense_pool, frame_array, pooling_weights  # noqa: E402
from pipeline.embed.runtime import OrtRuntime, TorchRuntime  # noqa: E402
from pipeline.params import Params  # noqa: E402


@pytest.fixture(scope="module")
def runtimes():
    model = off.load_effnet(torch.device("cpu"))
    digest = off.file_digest(str(off.effnet_weights_path()))
    return model, TorchRuntime(model, torch.device("cpu")), OrtRuntime(model, digest, 1)


def test_onnxruntime_agrees_with_torch_on_crops_and_feature_maps(runtimes):
    _, tr, ort = runtimes
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(3, 96, 96, 3), dtype=np.uint8)  # not the export's 160 px: any size works
    for a, b in zip(tr.pooled_logits(crops), ort.pooled_logits(crops)):
        assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(a).max())
    image = rng.integers(0, 256, size=(1, 200, 330, 3), dtype=np.uint8)
    fa, fb = tr.feature_map(image), ort.feature_map(image)
    assert fa.shape == fb.shape == (1, 1280, 7, 11)
    assert np.abs(fa - fb).max() < 1e-3 * max(1.0, np.abs(fa).max())


def test_pooling_weights_spread_each_mask_over_the_cells_it_covers():
    m = np.zeros((64, 96), bool)
    m[:32, :32] = True  # exactly cell (0, 0) of a 2x3 grid of 32 px cells
    half = np.zeros((64, 96), bool)
    half[:, 48:] = True  # half of column 1, all of column 2
    w = pooling_weights([m, half, np.zeros((64, 96), bool)], (2, 3))
    np.testing.assert_allclose(w[0], [1, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(w[1], np.array([0, 0.5, 1, 0, 0.5, 1]) / 3, atol=1e-6)
    np.testing.assert_allclose(w[2], np.full(6, 1 / 6), atol=1e-6)  # empty mask: the whole frame
    np.testing.assert_allclose(w.sum(1), 1, atol=1e-6)


def test_dense_whole_frame_mask_is_the_networks_global_pool(runtimes):
    import skimage.data

    model, tr, _ = runtimes
    coffee = skimage.data.coffee()
    weight = model.classifier.weight.detach().numpy(), model.classifier.bias.detach().numpy()
    pooled, logits = dense_pool(tr, weight, coffee, [np.ones(coffee.shape[:2], bool)], 400)
    ref_pooled, ref_logits = tr.pooled_logits(frame_array(coffee, 400))
    np.testing.assert_allclose(pooled, ref_pooled, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-3, atol=1e-3)
    names = off.imagenet_class_names()
    assert "espresso" in {names[i] for i in np.argsort(-logits[0])[:5]}


def test_small_regions_get_smaller_crops_in_multiples_of_32():
    assert off.crop_size(40, 160, 64) == 64
    assert off.crop_size(70, 160, 64) == 96
    assert off.crop_size(300, 160, 64) == 160
    assert off.crop_size(40, 160, 160) == 160  # min_size = size: the old behaviour
    image = np.zeros((200, 300, 3), np.uint8)
    mask = np.zeros((200, 300), bool)
    mask[50:90, 50:90] = True  # 40 px box, 48 px window with context 0.1
    assert off.masked_crop(image, mask, 0.1, "grey", 160, 64).shape == (64, 64, 3)
    assert off.masked_crop(image, mask, 0.1, "grey", 160).shape == (160, 160, 3)


def test_cache_keys_name_the_runtime_and_region_mode():
    p = Params().embed.offline
    ids = set()
    for update in ({"runtime": "torch"}, {"runtime": "onnxruntime"}, {"runtime": "onnxruntime", "regions": "dense"},
                   {"runtime": "onnxruntime", "min_crop_size": 96}):
        enc = off.EffnetRegionEncoder(p.model_copy(update=update), 8, torch.device("cpu"))
        ids.add(enc.weights_id)
    assert len(ids) == 4


# --- responsibility: region scores from RLE runs ----------------------------------------------------------

def _eval_masks():
    from pipeline.data.evalset import load_evalset

    es = load_evalset(DATA / "evalset")
    frame = es.frames[0]
    return [m for label in sorted(frame.mask_paths) for m in es.masks(frame, label)]


@pytest.mark.parametrize("work", [(240, 427), (200, 300), None])
def test_region_scores_from_rle_runs_equal_the_resampling_reference(work):
    import cv2

    from pipeline import rle
    from pipeline.responsibility import _coverage, region_motion_scores
    from pipeline.responsibility_pool import area_matrix, pooled_scores, rle_runs

    masks = _eval_masks()
    full = masks[0].shape
    work = work or full
    rng = np.random.default_rng(1)
    x = rng.random(full).astype(np.float32)
    ref = cv2.resize(x, (work[1], work[0]), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(area_matrix(full[0], work[0]) @ x @ area_matrix(full[1], work[1]).T, ref, atol=1e-5)
    rles = [rle.encode(m) for m in masks] + [rle.encode(np.zeros(full, bool))]
    for counts, m in zip(rles, masks):
        ends = np.cumsum(rle_runs(counts))
        assert ends[-1] == m.size
        flat = np.zeros(m.size, bool)
        for a, b in zip(ends[0::2], ends[1::2]):
            flat[a:b] = True
        assert np.array_equal(flat, m.T.ravel())  # column-major, as COCO stores it
    maps = rng.random((2, *work)).astype(np.float32)
    decoded = [*masks, np.zeros(full, bool)]
    exclude = masks[0]
    expected = region_motion_scores(maps, decoded, exclude)
    got = pooled_scores(maps, rles, full, 1.0 - _coverage(exclude, work))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(got[:, -1], 0)  # an empty mask scores 0, as in the reference
    np.testing.assert_allclose(pooled_scores(maps, rles, full, None), region_motion_scores(maps, decoded), atol=1e-5)


def test_masked_min_over_rle_runs_equals_the_decoded_reference():
    import cv2
    import numpy as np

    from pipeline import rle

    rng = np.random.default_rng(0)
    h, w = 48, 64
    masks = [rng.random((h, w)) < q for q in (0.02, 0.3, 0.9)]
    masks += [np.zeros((h, w), bool), np.ones((h, w), bool)]
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (50, 40), 9, 1, -1)  # touches the last pixels in column-major order
    masks.append(disc > 0)
    values = rng.random((h, w)).astype(np.float32)
    rles = [rle.encode(m) for m in masks]
    got = rle.masked_min(values, rle.run_bounds(rles), len(rles), 3.0)
    want = np.array([values[m].min(initial=3.0) for m in masks], np.float32)
    assert np.array_equal(got, want)


def test_pair_embedding_from_broadcast_first_layers_equals_the_concatenated_input():
    import torch
    import torch.nn.functional as F

    from pipeline.align import AdapterConfig, Adapters

    torch.manual_seed(0)
    model = Adapters(AdapterConfig(24, 8, 32, 16, 0.1))
    obj, hand, geom = torch.randn(3, 5, 24), torch.randn(3, 2, 24), torch.rand(3, 2, 5, 16)
    o, hd = F.normalize(obj, dim=-1), F.normalize(hand, dim=-1)
    o = o.unsqueeze(-3).expand(*geom.shape[:-1], 24)
    side = torch.eye(2).expand(3, 2, 2).unsqueeze(-2).expand(3, 2, 5, 2)
    for train in (False, True):  # with dropout on: the same draws for the same seed
        model.train(train)
        torch.manual_seed(1)
        ref = F.normalize(model.region(o) + model.context(torch.cat([o, hd.unsqueeze(-2).expand_as(o), geom, side], -1)),
                          dim=-1)
        torch.manual_seed(1)
        torch.testing.assert_close(model.embed_pairs(obj, hand, geom), ref, atol=1e-6, rtol=1e-5)

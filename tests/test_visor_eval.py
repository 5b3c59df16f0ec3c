"""`wish evaluate --visor`: scoring straight on VISOR's JSON and EPIC frames in the native layout gives the
numbers of the eval-format path on the same frames; VISOR rasterisation reproduces the shared eval set's labels."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import predict as pp
from pipeline.data.visor import (epic_frame_number, find_image, is_exhaustive, iter_visor_frames, load_frame_mapping,
                                 load_visor_evalset, parse_video, visor_label_map)
from pipeline.predict import FrameContext
from pipeline.rle import box
from pipeline.types import Hand
from stages.cli import main

DATA = Path(__file__).resolve().parents[1] / "../shared/data"
TAR, MAPPING = DATA / "visor/visor_sparse_compact.tar.xz", DATA / "visor/visor-frame-mapping.json"
VIDEO = "P02_01"  # VISOR renumbers this video's frames: the EPIC file names differ from the VISOR names
H, W = 256, 456  # EPIC's native rgb_frames size
HANDS = {"left": (0, 0, 255), "right": (0, 255, 0)}
BG = (128, 128, 128)


@pytest.fixture(scope="module")
def visor_json(tmp_path_factory):
    """P02_01's annotation JSON, extracted from the shared archive as a user would have it."""
    with tarfile.open(TAR) as tf:
        member = next(m for m in tf if m.name.endswith(f"/{VIDEO}.json"))
        doc = json.loads(tf.extractfile(member).read())
    path = tmp_path_factory.mktemp("visor") / f"{VIDEO}.json"
    path.write_text(json.dumps(doc))
    return path


def _colour(k: int) -> tuple[int, int, int]:
    """Distinct, JPEG-robust colours for the non-hand entities."""
    return (255 - 40 * (k % 5), 60 + 45 * (k // 5 % 4), 20 + 110 * (k // 20 % 2))


def _rasterise(frame) -> np.ndarray:
    """A frame image painted from its polygons: each object its colour, hands blue/green on top."""
    img = np.full((H, W, 3), BG, np.uint8)
    objects = [e for e in frame.entities if not e.side]
    for k, e in enumerate(objects):
        img[e.mask(H, W)] = _colour(k)
    for hand in frame.hands:
        img[hand.mask(H, W)] = HANDS[hand.side]
    return img


PALETTE = np.array([BG, *HANDS.values(), *(_colour(k) for k in range(40))], int)
_GRID = np.stack(np.meshgrid(*[np.arange(32) * 8 + 4] * 3, indexing="ij"), -1)
_LUT = np.abs(_GRID[..., None, :] - PALETTE).sum(-1).argmin(-1)


class ColourModels:
    """Hands and object proposals read back from the painted colours (a stand-in for detector + proposer)."""

    def context(self, image_id, image, narrations=None, with_regions=True):
        q = image // 8  # nearest palette colour per pixel through a 32^3 lookup table (JPEG-noise tolerant)
        nearest = _LUT[q[..., 0], q[..., 1], q[..., 2]]
        masks = {s: nearest == 1 + i for i, s in enumerate(HANDS) if (nearest == 1 + i).sum() > 20}
        hands = [Hand(i, s, 1.0, box(m)) for i, (s, m) in enumerate(masks.items())]
        objects = [m for m in (nearest == 3 + k for k in range(40)) if m.sum() > 20]
        return FrameContext(image_id, image, hands, masks, objects)


def _frames_with_images(visor_json, tmp_path, n=5):
    """n frames whose EPIC number differs from the VISOR one, written in the native <video>/frame_N.jpg layout."""
    mapping = load_frame_mapping(MAPPING)
    frames = [f for f in parse_video(json.loads(visor_json.read_text()), visor_json)
              if epic_frame_number(mapping, VIDEO, f.name) != int(f.name[-14:-4]) and f.hands][:n]
    images = tmp_path / "rgb_frames"
    for f in frames:
        path = images / VIDEO / f"frame_{epic_frame_number(mapping, VIDEO, f.name):010d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(_rasterise(f), cv2.COLOR_RGB2BGR))
    return frames, images, mapping


def _as_evalset(frames, images, mapping, root: Path) -> Path:
    """The same frames in the eval format: the same JPEGs, labels/ rasterised from the same polygons."""
    rows = []
    (root / "labels").mkdir(parents=True)
    for f in frames:
        image_id = f.name[:-4]
        src = images / VIDEO / f"frame_{epic_frame_number(mapping, VIDEO, f.name):010d}.jpg"
        Image.fromarray(visor_label_map(f, H, W)).save(root / "labels" / f"{image_id}.png")
        rows.append(dict(image_id=image_id, image_path=str(src), mask_path="", label="", video_id=VIDEO))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_visor_direct_gives_the_eval_format_numbers(monkeypatch, tmp_path, visor_json):
    frames, images, mapping = _frames_with_images(visor_json, tmp_path)
    assert len(frames) == 5
    evalset = _as_evalset(frames, images, mapping, tmp_path / "evalset")
    monkeypatch.setattr(pp, "build_models", lambda params, root: ColourModels())
    params = tmp_path / "p.yaml"
    params.write_text("score:\n  overlays: false\n")
    common = ["--methods", "baseline_nearest", "--params", str(params), "--root", str(tmp_path / "art"), "--no-report"]
    assert main(["evaluate", "--evalset", str(evalset), "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["evaluate", "--visor", str(visor_json), "--images", str(images), "--mapping", str(MAPPING),
                 "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a == b  # every number, to the pixel count
    assert a["baseline_nearest.n_frames"] == 5 and a["baseline_nearest.n_gt_hands"] >= 5
    assert 0 < a["baseline_nearest.hand_miou"] and a["baseline_nearest.contact_boundary_iou"] is not None
    # without the mapping the renumbered frames are not found under their VISOR numbers
    assert main(["evaluate", "--visor", str(visor_json), "--images", str(images), "--out", str(tmp_path / "c"),
                 *common]) == 2


def test_native_layouts_and_exhaustive_filter(tmp_path, visor_json):
    frames, images, mapping = _frames_with_images(visor_json, tmp_path, n=2)
    f = frames[0]
    epic = images / VIDEO / f"frame_{epic_frame_number(mapping, VIDEO, f.name):010d}.jpg"
    assert find_image(images, f, mapping) == epic
    nested = tmp_path / "EPIC-KITCHENS" / "P02" / "rgb_frames" / VIDEO
    nested.mkdir(parents=True)
    (nested / epic.name).write_bytes(epic.read_bytes())
    assert find_image(tmp_path / "EPIC-KITCHENS", f, mapping) == nested / epic.name
    es = load_visor_evalset(visor_json, images, MAPPING)
    assert len(es.frames) == 2 and es.missing > 100 and es.narrations.empty
    assert es.labels(es.frames[0]).shape == (H, W)
    strict = load_visor_evalset(visor_json, images, MAPPING, exhaustive_only=True)
    assert len(strict.frames) == sum(is_exhaustive(fr) for fr in frames[:2])


def test_visor_rasterisation_reproduces_the_shared_eval_labels():
    """The shared eval set's labels/ were made independently from the same VISOR polygons."""
    manifest = pd.read_csv(DATA / "evalset/manifest.csv")
    wanted = set(manifest["visor_frame"])
    agree = []
    for f in iter_visor_frames(TAR, set(manifest["video_id"])):
        if f.name in wanted:
            gt = np.array(Image.open(DATA / "evalset/labels" / f"{f.name[:-4]}.png"))
            agree.append((visor_label_map(f, *gt.shape) == gt).mean())
    assert len(agree) == 12 and min(agree) > 0.995  # measured 0.9974..0.9997: polygon rounding at the edges


def test_bad_visor_input_exits_2_naming_the_file(tmp_path, capsys, visor_json):
    (tmp_path / "imgs").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cases = [(["--visor", str(tmp_path / "none.json"), "--images", str(tmp_path / "imgs")], "none.json"),
             (["--visor", str(bad), "--images", str(tmp_path / "imgs")], "bad.json"),
             (["--visor", str(visor_json), "--images", str(tmp_path / "missing")], "missing"),
             (["--visor", str(visor_json)], "--images"),
             (["--visor", str(visor_json), "--evalset", str(tmp_path), "--images", str(tmp_path / "imgs")], "exactly one")]
    for args, needle in cases:
        assert main(["evaluate", *args, "--out", str(tmp_path / "o"), "--methods", "baseline_nearest"]) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

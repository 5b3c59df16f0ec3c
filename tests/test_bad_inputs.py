"""The bad-input matrix: each case stops with `wish: error: <file>: <problem>`, exit 2 and no partial artifact, or,
for odd but valid input (a black frame, a frame without hands, an extra CSV column), runs through. Cases already
covered elsewhere: 0-byte/corrupt video, missing CSV column, unknown param key (test_spine), empty and non-English
narrations (test_nouns), missing weights offline (test_clip, test_weights)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import DATA
from pipeline.align import AdapterConfig, Adapters, save_adapters
from pipeline.heads import Heads, HeadsConfig, PairHead
from pipeline.io import read_table, write_image
from pipeline.schemas import MASKS
from test_masks import params_file, write_inputs
from test_spine import SHORT, source_dir

CLIPS = DATA / "epic" / "clips"


def error_of(err: str) -> str:
    assert err.count("wish: error: ") == 1, err
    return err.split("wish: error: ", 1)[1]


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# ---- video and frames

def test_truncated_video_is_an_error_naming_it(tmp_path, write_params, run_cli):
    src = tmp_path / "src"
    src.mkdir()
    data = (CLIPS / SHORT).read_bytes()
    (src / SHORT).write_bytes(data[: len(data) // 3])  # the moov atom is at the end: nothing decodes
    params = write_params({"common": {"eval_dirs": []}, "frames": {"sources": [str(src)]}})
    code, _, err = run_cli("frames", "--params", params, "--root", tmp_path / "art")
    assert code == 2 and error_of(err).startswith(str(src / SHORT))
    assert listing(tmp_path / "art") == []


def test_wrongly_typed_param_names_the_key(tmp_path, run_cli):
    params = tmp_path / "params.yaml"
    params.write_text("frames:\n  stride: two\n")
    code, _, err = run_cli("frames", "--params", params, "--root", tmp_path / "art")
    assert code == 2 and error_of(err).startswith(f"{params}: frames.stride")
    assert listing(tmp_path / "art") == []


@pytest.mark.parametrize("key, value, named", [("masks", {"backend": "sam2"}, "masks.backend"),
                                               ("embed", {"backend": "siglip"}, "embed.backend"),
                                               ("score", {"methods": ["wish", "oracle"]}, "score.methods")])
def test_unknown_backend_or_method_is_a_param_error(tmp_path, write_params, run_cli, key, value, named):
    code, _, err = run_cli("frames", "--params", write_params({key: value}), "--root", tmp_path / "art")
    assert code == 2 and named in error_of(err) and "known:" in err
    assert listing(tmp_path / "art") == []


def test_extra_csv_column_is_accepted(tmp_path, write_params, run_cli):
    narr = pd.read_csv(DATA / "epic" / "annotations" / "EPIC_100_narrations_union_partial.csv")
    narr["annotator_note"] = "x"
    narr.to_csv(tmp_path / "narr.csv", index=False)
    params = write_params({"common": {"eval_dirs": []}, "frames": {
        "sources": [str(source_dir(tmp_path, SHORT))], "narrations_csv": str(tmp_path / "narr.csv"), "stride": 10}})
    assert run_cli("frames", "--params", params, "--root", tmp_path / "art")[0] == 0


# ---- masks: odd frames run through, broken inputs stop

def test_uniform_frame_and_frame_without_hands_get_rows_not_a_crash(tmp_path, run_cli):
    root = tmp_path / "artifacts"
    write_inputs(root)  # f0 has a detected hand, f1 none
    # all black: one superpixel, a region graph without edges (any uniform frame is the same case)
    write_image(np.zeros((240, 320, 3), np.uint8), root / "frames" / "images" / "f0.jpg")
    code, _, err = run_cli("masks", "--params", params_file(tmp_path), "--root", root)
    assert code == 0, err
    df = read_table(root / "masks" / "masks.parquet", MASKS)
    assert set(df["frame_id"]) == {"f0", "f1"} and list(df[df["frame_id"] == "f0"]["kind"]).count("hand") == 1


def test_truncated_parquet_input_is_an_error_and_no_masks_dir(tmp_path, run_cli):
    root = tmp_path / "artifacts"
    write_inputs(root)
    hands = root / "hands" / "hands.parquet"
    hands.write_bytes(hands.read_bytes()[:-40])
    code, _, err = run_cli("masks", "--params", params_file(tmp_path), "--root", root)
    assert code == 2 and error_of(err).startswith(f"{hands}: not a readable Parquet file")
    assert not (root / "masks").exists() and [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_truncated_hdf5_is_an_error_naming_it(tmp_path, write_params, run_cli):
    from wish_artifacts import write_artifacts

    root = tmp_path / "art"
    write_artifacts(root, n=8)
    regions = root / "embed" / "regions.h5"
    regions.write_bytes(regions.read_bytes()[:200])
    params = write_params({"common": {"eval_dirs": []}, "align": {"epochs": 1}})
    code, _, err = run_cli("align", "--params", params, "--root", root)
    assert code == 2 and error_of(err).startswith(f"{regions}: not a readable")
    assert not (root / "align").exists()


# ---- checkpoints: truncated, or the other stage's, fail before any image is processed

def _checkpoints(root: Path) -> None:
    torch.manual_seed(0)
    save_adapters(Adapters(AdapterConfig(region_dim=8, text_dim=4, hidden=8, out_dim=4)), root / "align" / "adapters.pt")
    cfg = HeadsConfig(region_dim=8, hidden=8)
    Heads(cfg, PairHead(8, 8, False), PairHead(8, 8, True)).save(root / "heads" / "heads.pt")


def _truncate(root: Path) -> Path:
    path = root / "heads" / "heads.pt"
    path.write_bytes(path.read_bytes()[:300])
    return path


def _adapters_as_heads(root: Path) -> Path:
    shutil.copy(root / "align" / "adapters.pt", root / "heads" / "heads.pt")
    return root / "heads" / "heads.pt"


def _heads_as_adapters(root: Path) -> Path:
    shutil.copy(root / "heads" / "heads.pt", root / "align" / "adapters.pt")
    return root / "align" / "adapters.pt"


def _unknown_rule(root: Path) -> Path:
    """A checkpoint whose config names a decision rule this code does not have (hand-edited, or a newer one's)."""
    path = root / "heads" / "heads.pt"
    blob = torch.load(path, weights_only=False)
    blob["config"]["rule"] = "majority"
    torch.save(blob, path)
    return path


def _garbage(root: Path) -> Path:
    path = root / "heads" / "heads.pt"
    path.write_bytes(b"not a checkpoint at all")
    return path


@pytest.mark.parametrize("case, method", [(_truncate, "wish"), (_adapters_as_heads, "wish"),
                                          (_heads_as_adapters, "pseudolabel"), (_garbage, "wish_contact_only"),
                                          (_unknown_rule, "wish")])
def test_bad_checkpoint_stops_before_the_first_image(tmp_path, run_cli, monkeypatch, case, method):
    from pipeline import predict as pp

    root = tmp_path / "art"
    (root / "align").mkdir(parents=True)
    (root / "heads").mkdir()
    _checkpoints(root)
    broken = case(root)
    seen = []
    monkeypatch.setattr(pp.Models, "context", lambda self, *a, **k: seen.append(a) or pytest.fail("image processed"))
    write_image(np.zeros((32, 32, 3), np.uint8), tmp_path / "img" / "a.png")
    code, _, err = run_cli("predict", tmp_path / "img", "--out", tmp_path / "out", "--root", root, "--method", method)
    assert code == 2 and error_of(err).startswith(f"{broken}: ") and "checkpoint" in err
    assert seen == [] and not (tmp_path / "out").exists()


def test_good_checkpoints_load(tmp_path):
    from pipeline.align import load_adapters
    from pipeline.heads import load_heads

    _checkpoints(tmp_path)
    assert load_heads(tmp_path / "heads" / "heads.pt").cfg.region_dim == 8
    assert load_adapters(tmp_path / "align" / "adapters.pt").cfg.text_dim == 4


# ---- eval sets

def test_eval_dir_without_manifest(tmp_path, run_cli):
    shutil.copytree(DATA / "evalset" / "images", tmp_path / "es" / "images")
    code, _, err = run_cli("evaluate", "--evalset", tmp_path / "es", "--out", tmp_path / "out",
                           "--methods", "baseline_nearest")
    assert code == 2 and error_of(err).startswith(str(tmp_path / "es" / "manifest.csv"))
    assert not (tmp_path / "out").exists()

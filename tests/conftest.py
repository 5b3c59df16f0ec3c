"""Shared test fixtures: repo-root working directory, real data paths, params files, CLI runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# two short real clips: 3 frames of 2 videos at frames.stride 20 (the executor tests' shards)
TWO_CLIPS = ["P02_09_left_hand_67864_67947_action_raw854x480.mp4",  # 19 frames
             "P27_101_right_hand_57039_57087_action_raw854x480.mp4"]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """params.yaml paths are relative to the repo root ("../shared/data"), so every test runs from there."""
    monkeypatch.chdir(ROOT)


@pytest.fixture
def write_params(tmp_path):
    """write_params({"frames": {"stride": 2}}) -> path of a params yaml with those overrides (defaults elsewhere)."""
    def write(overrides: dict, name: str = "params.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(overrides, sort_keys=False))
        return path
    return write


@pytest.fixture
def run_cli(capsys):
    """run_cli("frames", params, root) -> (exit code, stdout, stderr) of `wish <stage> --params P --root R`."""
    from stages.cli import main

    def run(*argv: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def assert_same_h5(a: Path, b: Path) -> None:
    import h5py
    import numpy as np

    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert sorted(fa) == sorted(fb)
        for name in fa:
            np.testing.assert_array_equal(fa[name][()], fb[name][()], err_msg=f"{a.name}:{name}")
        assert {k: str(v) for k, v in fa.attrs.items()} == {k: str(v) for k, v in fb.attrs.items()}


def assert_same_artifacts(a: Path, b: Path) -> None:
    """Two roots of the per-frame stages on the same 3 frames: the same bytes (what DVC hashes) or the same HDF5."""
    import pandas as pd

    frames = pd.read_parquet(a / "frames" / "frames.parquet")
    assert len(frames) == 3 and frames["video_id"].nunique() == 2  # 3 shards over 2 videos, 2 workers
    for rel in ("hands/hands.parquet", "masks/masks.parquet", "responsibility/motion_scores.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / rel), pd.read_parquet(b / rel), obj=rel)
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel  # what DVC hashes: metadata too
    for rel in ("embed/regions.h5", "embed/texts.h5", "responsibility/responsibility.h5"):
        assert_same_h5(a / rel, b / rel)
    assert (a / "embed" / "summary.json").read_text() == (b / "embed" / "summary.json").read_text()


def run_stage(run_cli, stage: str, params: Path, root: Path) -> tuple[str, str]:
    """(stdout, stderr) of `wish STAGE --params PARAMS --root ROOT`, which must succeed."""
    code, out, err = run_cli(stage, "--params", params, "--root", root)
    assert code == 0, err
    return out, err


def two_clip_roots(tmp_path: Path, write_params, run_cli, common: dict, other: dict) -> tuple[Path, Path, Path, Path]:
    """(root a, root b, params of a, params of b): both roots hold the same frames and nouns of TWO_CLIPS (3
    frames, 20 proposals each: small, so the test stays fast on 2 shared cores); a's params have `common`, b's
    `common` updated with `other` (another executor), for comparing the per-frame stages' artifacts."""
    import os
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in TWO_CLIPS:
        os.symlink(DATA / "epic" / "clips" / name, src / name)
    rest = {"frames": {"sources": [str(src)], "stride": 20, "max_side": 320}, "masks": {"max_proposals": 20}}
    pa = write_params({"common": common, **rest}, "a.yaml")
    pb = write_params({"common": {**common, **other}, **rest}, "b.yaml")
    a, b = tmp_path / "a", tmp_path / "b"
    for stage in ("frames", "nouns"):
        run_stage(run_cli, stage, pa, a)
    b.mkdir()
    for d in ("frames", "nouns"):
        shutil.copytree(a / d, b / d)
    return a, b, pa, pb

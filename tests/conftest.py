"""Shared test fixtures: repo-root working directory, real data paths, params files, CLI runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


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

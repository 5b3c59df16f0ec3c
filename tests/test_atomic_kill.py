"""kill -9 of a writer at each step of pipeline.io's atomic writes: its janitor leaves the old output or the new one,
whole, and nothing else (the fault tests do the same to real stages through strace; these take a second)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

# Path.rename counted in the child: kill -9 right after the K-th one (atomic_dir renames the old output aside, then
# the new one in); K = 0 kills inside the block, the new output half built.
CHILD = """\
import os, pathlib, sys
from pipeline.io import atomic_dir, atomic_path
target, kill_after = pathlib.Path(sys.argv[1]), int(sys.argv[2])
if sys.argv[3] == "path":
    with atomic_path(target, ".txt") as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), 9)
real, renames = pathlib.Path.rename, []
def rename(self, dst):
    out = real(self, dst)
    renames.append(dst)
    if len(renames) == kill_after:
        os.kill(os.getpid(), 9)
    return out
pathlib.Path.rename = rename
with atomic_dir(target) as out:
    (out / "a.txt").write_text("new")
    if kill_after == 0:
        os.kill(os.getpid(), 9)
"""


def killed_writer(target: Path, kill_after: int, kind: str) -> None:
    run = subprocess.run([sys.executable, "-c", CHILD, str(target), str(kill_after), kind], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == -signal.SIGKILL, run.stderr


def settled(folder: Path, expect: list[str], timeout: float = 20) -> list[str]:
    """The folder's entries once the dead writer's janitor is done (it starts when the writer's pipe closes)."""
    end = time.monotonic() + timeout
    while sorted(p.name for p in folder.iterdir()) != expect and time.monotonic() < end:
        time.sleep(0.05)
    return sorted(p.name for p in folder.iterdir())


def test_atomic_path_killed_mid_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    """metrics/score.json and report.html are written outside any atomic_dir: their temp file used to stay until
    the next writer of that folder (and `dvc repro` skips an unchanged score)."""
    target = tmp_path / "score.json"
    target.write_text("old")
    killed_writer(target, 0, "path")
    assert settled(tmp_path, ["score.json"]) == ["score.json"]
    assert target.read_text() == "old"


@pytest.mark.parametrize("kill_after, content", [(0, "old"), (1, "old"), (2, "new")])
def test_atomic_dir_killed_at_each_step_leaves_one_whole_output(tmp_path, kill_after, content):
    """After rename 1 the old output is aside and the new one not yet in: the stage's output dir used to be gone
    and `.stage.<pid>.old` to stay for good (`dvc repro` restores the outs from its cache without running it)."""
    target = tmp_path / "stage"
    target.mkdir()
    (target / "a.txt").write_text("old")
    killed_writer(target, kill_after, "dir")
    assert settled(tmp_path, ["stage"]) == ["stage"]
    assert [p.name for p in target.iterdir()] == ["a.txt"] and (target / "a.txt").read_text() == content


def test_atomic_dir_failing_between_its_renames_puts_the_old_output_back(tmp_path, monkeypatch):
    from pipeline.io import atomic_dir

    target = tmp_path / "stage"
    target.mkdir()
    (target / "a.txt").write_text("old")
    real = Path.rename

    def rename(self, dst):
        if self.name.startswith(".stage.") and not self.name.endswith(".old"):  # the new output's move into place
            raise OSError("disk gone")
        return real(self, dst)
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        with atomic_dir(target) as out:
            (out / "a.txt").write_text("new")
    monkeypatch.undo()
    assert settled(tmp_path, ["stage"]) == ["stage"] and (target / "a.txt").read_text() == "old"

"""common.executor: processes (the default of params.yaml) vs local on real frames: identical artifacts; a bad
input raised in a worker is the stage's own error, and no worker outlives the run."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import DATA, assert_same_artifacts
from pipeline.errors import WishError
from pipeline.executor import Shard, Task, run_shards
from pipeline.params import CommonParams, RayParams

CLIPS = DATA / "epic" / "clips"
TWO_CLIPS = ["P02_09_left_hand_67864_67947_action_raw854x480.mp4",  # 19 frames
             "P27_101_right_hand_57039_57087_action_raw854x480.mp4"]


def _run(run_cli, stage: str, params: Path, root: Path) -> str:
    code, out, err = run_cli(stage, "--params", params, "--root", root)
    assert code == 0, err
    return out + err


def test_processes_and_local_give_identical_artifacts_on_real_frames(tmp_path, write_params, run_cli):
    src = tmp_path / "src"
    src.mkdir()
    for name in TWO_CLIPS:
        os.symlink(CLIPS / name, src / name)
    rest = {"frames": {"sources": [str(src)], "stride": 20, "max_side": 320}, "masks": {"max_proposals": 20}}
    local = write_params({"common": {"eval_dirs": []}, **rest}, "local.yaml")
    # num_threads 2 as in params.yaml: the workers get one thread each, the local stage two
    procs = write_params({"common": {"eval_dirs": [], "executor": "processes", "workers": 2,
                                     "ray": {"shard_frames": 1, "shard_dir": str(tmp_path / "shards")}}, **rest},
                         "procs.yaml")
    a, b = tmp_path / "a", tmp_path / "b"
    for stage in ("frames", "nouns"):
        _run(run_cli, stage, local, a)
    b.mkdir()
    for d in ("frames", "nouns"):
        shutil.copytree(a / d, b / d)
    for stage in ("hands", "masks", "embed", "responsibility"):
        _run(run_cli, stage, local, a)
        log = _run(run_cli, stage, procs, b)
        # 3 shards over 2 workers, not the in-process fallback; masks keeps its own per-frame pool
        assert ("2 workers (offline)" if stage == "masks" else "processes x2") in log, stage
    assert_same_artifacts(a, b)
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())


# ---- errors and clean-up (module-level task functions: spawned workers import them by name) ----------------

def _setup(ready: str) -> tuple[int, str]:
    """Each worker marks itself ready in the folder `ready` ("": no folder, in-process runs)."""
    if ready:
        (Path(ready) / str(os.getpid())).touch()
    return os.getpid(), ready


def _run_shard(state: tuple[int, str], payload: int) -> int:
    pid, ready = state
    if payload == 3:
        raise WishError("bad.mp4", "cannot decode frame 3")
    # a worker that started first must not take every shard before the other is up (spawn imports take seconds)
    deadline = time.monotonic() + 60
    while ready and len(os.listdir(ready)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    return pid


def _children() -> list[int]:
    me = os.getpid()
    out = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split() if d.name.isdigit() else []
            # multiprocessing's resource tracker is started once per interpreter and stays: not a worker
            if stat and int(stat[1]) == me and stat[0] != "Z" and b"resource_tracker" not in (d / "cmdline").read_bytes():
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _common(tmp_path: Path) -> CommonParams:
    return CommonParams(executor="processes", workers=2, ray=RayParams(shard_dir=str(tmp_path / "shards")))


def test_shards_run_on_two_worker_processes_in_shard_order(tmp_path):
    shards = [Shard(f"s{i}", i, 1) for i in (0, 1, 2, 4, 5)]
    (tmp_path / "ready").mkdir()
    out, info = run_shards(Task("t", _setup, _run_shard, (str(tmp_path / "ready"),)), shards, _common(tmp_path), "k1")
    assert info.workers == 2 and len(set(out)) == 2 and os.getpid() not in out  # both workers, not this process
    assert sorted(info.computed) == [s.id for s in shards]
    assert _children() == []


def test_a_bad_input_in_a_worker_is_the_stages_error_and_no_worker_survives(tmp_path):
    shards = [Shard(f"s{i}", i, 1) for i in range(8)]
    (tmp_path / "ready").mkdir()
    with pytest.raises(WishError, match="bad.mp4: cannot decode frame 3"):
        run_shards(Task("t", _setup, _run_shard, (str(tmp_path / "ready"),)), shards, _common(tmp_path), "k2")
    deadline = time.monotonic() + 10
    while _children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _children() == []
    # the shards that had finished are kept for a rerun (resume), as on Ray
    done = list((tmp_path / "shards" / "t" / "k2").glob("*.pkl"))
    assert 0 < len(done) < len(shards)


def test_a_single_shard_or_worker_runs_in_this_process(tmp_path):
    out, info = run_shards(Task("t", _setup, _run_shard, ("",)), [Shard("s0", 0, 1)], _common(tmp_path), "k3")
    assert out == [os.getpid()] and info.workers == 1

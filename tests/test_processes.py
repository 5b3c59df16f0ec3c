"""common.executor: processes (the default of params.yaml) vs local on real frames: identical artifacts; a bad
input raised in a worker is the stage's own error, and no worker outlives the run."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import assert_same_artifacts, run_stage, two_clip_roots
from pipeline.errors import WishError
from pipeline.executor import Shard, Task, run_shards
from pipeline.params import CommonParams, RayParams

def test_processes_and_local_give_identical_artifacts_on_real_frames(tmp_path, write_params, run_cli):
    # num_threads 2 as in params.yaml: the workers get one thread each, the local stage two
    a, b, local, procs = two_clip_roots(tmp_path, write_params, run_cli, {"eval_dirs": []}, {
        "executor": "processes", "workers": 2, "ray": {"shard_frames": 1, "shard_dir": str(tmp_path / "shards")}})
    for stage in ("hands", "masks", "embed", "responsibility"):
        run_stage(run_cli, stage, local, a)
        log = "".join(run_stage(run_cli, stage, procs, b))
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
            tracker = stat and b"resource_tracker" in (d / "cmdline").read_bytes()
            if stat and int(stat[1]) == me and stat[0] != "Z" and not tracker:
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

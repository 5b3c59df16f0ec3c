"""common.executor: ray vs local on real frames (identical artifacts), a worker killed with -9 mid-stage, a killed
driver resuming from its finished shards. One local Ray cluster with 2 CPUs is started for the module."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import DATA, ROOT, assert_same_artifacts, run_stage, two_clip_roots
from pipeline.executor import Shard, Task, frame_ranges, run_key, run_shards
from pipeline.params import CommonParams, RayParams

ray = pytest.importorskip("ray")



@pytest.fixture(scope="module")
def cluster():
    """A local 2-CPU Ray for the whole module; this module's task functions travel by value."""
    from ray import cloudpickle

    from pipeline.executor import connect

    started = connect(CommonParams(ray=RayParams(workers=2, cpus_per_worker=1)))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()


# ---- identical artifacts on real frames --------------------------------------------------------------------

def test_ray_and_local_give_identical_artifacts_on_real_frames(cluster, tmp_path, write_params, run_cli):
    from pipeline.embed.cache import Cache, read_cache, write_cache
    from pipeline.schemas import REGION_EMBEDDINGS

    # masks keeps its default 2 processes with one OpenCV thread each, like the actors: proposal scores move in
    # the last bits with OpenCV's thread count (measured), on either executor
    a, b, local, on_ray = two_clip_roots(tmp_path, write_params, run_cli, {"eval_dirs": [], "num_threads": 1}, {
        "executor": "ray", "ray": {"workers": 2, "shard_frames": 1, "shard_dir": str(tmp_path / "shards")}})
    for stage in ("hands", "masks", "embed", "responsibility"):
        run_stage(run_cli, stage, local, a)
    for stage in ("hands", "masks"):
        run_stage(run_cli, stage, on_ray, b)
    # the content-keyed cache across workers: b starts with the regions of the first frame, the workers encode
    # the others. (Split at a frame: the encoder batches a frame's regions, and a batch of part of a frame can
    # round differently in float16, on either executor.)
    full = read_cache(a / "embed" / "regions.h5", REGION_EMBEDDINGS)
    masks = pd.read_parquet(a / "masks" / "masks.parquet")
    first = set(masks["frame_id"].drop_duplicates().iloc[:1])
    half = int(masks["frame_id"].isin(first).sum())
    write_cache(b / "embed" / "regions.h5", Cache(full.keys[:half], full.features[:half], full.attrs), REGION_EMBEDDINGS)
    out = run_stage(run_cli, "embed", on_ray, b)[0]
    assert f"{len(full.keys)} regions ({len(full.keys) - half} encoded; reusing {half} cached rows)" in out
    run_stage(run_cli, "responsibility", on_ray, b)
    assert_same_artifacts(a, b)
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())  # shards cleaned up


def test_score_perception_on_ray_gives_the_local_predictions(cluster, tmp_path):
    """`wish predict` / `score` perceive images on the actors (pipeline/score_shards.py) and decide in the driver:
    the predictions (masks as RLE, probabilities) equal the local loop's, row for row."""
    from pipeline.params import load_params
    from pipeline.predict import build_models, iter_inputs
    from pipeline.score import predict

    images = tmp_path / "images"
    images.mkdir()
    for name in sorted((DATA / "evalset" / "images").iterdir())[:2]:
        os.symlink(name, images / name.name)
    base = load_params(ROOT / "params.yaml")
    small = base.masks.model_copy(update={"max_proposals": 20})
    local = base.model_copy(update={"masks": small, "common": base.common.model_copy(update={"num_threads": 1})})
    on_ray = local.model_copy(update={"common": local.common.model_copy(update={
        "executor": "ray", "ray": RayParams(workers=2, shard_frames=16, shard_dir=str(tmp_path / "shards"))})})
    out = {}
    for name, p in (("local", local), ("ray", on_ray)):
        # pseudolabel_priors needs region embeddings but no trained checkpoint: the whole perception path
        out[name] = predict(iter_inputs(images), "pseudolabel_priors", build_models(p, tmp_path / "none"), p,
                            tmp_path / name, overlays=False)
    from pipeline import executor

    assert executor.LAST_RUN.workers == 2  # two images, shard_frames 16: still one shard per worker
    assert len(out["local"]) == 4 and out["local"]["holds"].any()
    pd.testing.assert_frame_equal(out["local"], out["ray"])
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())


# ---- a worker killed with -9 mid-stage ---------------------------------------------------------------------

def _logged_setup(log_dir: str) -> str:
    Path(log_dir, f"setup_{os.getpid()}_{time.time_ns()}").touch()
    return log_dir


def _double_or_die(log_dir: str, payload: tuple[int, bool]) -> int:
    n, kill = payload
    Path(log_dir, f"run_{n}_{time.time_ns()}").touch()
    if kill and not Path(log_dir, "killed").exists():
        Path(log_dir, "killed").touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies in the middle of its shard
    return 2 * n


def _runs(log_dir: Path, prefix: str) -> list[str]:
    return [p.name for p in log_dir.iterdir() if p.name.startswith(prefix)]


def test_worker_killed_mid_stage_loses_only_its_shard(cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    common = CommonParams(executor="ray", ray=RayParams(workers=2, shard_dir=str(tmp_path / "shards")))
    shards = [Shard(f"s{n}", (n, n == 3), 1) for n in range(6)]
    results, info = run_shards(Task("t", _logged_setup, _double_or_die, (str(logs),)), shards, common, "k")
    assert results == [0, 2, 4, 6, 8, 10]
    runs = [name.split("_")[1] for name in _runs(logs, "run_")]
    assert sorted(runs) == ["0", "1", "2", "3", "3", "4", "5"]  # shard 3 twice, every other shard once
    assert len(_runs(logs, "setup_")) == 3  # two actors, plus the restart of the killed one (models rebuilt)
    assert sorted(info.computed) == [s.id for s in shards] and info.resumed == []


def _pid_of(log_dir: str, n: int) -> int:
    return os.getpid()


def test_actor_pool_builds_models_once_across_batches(cluster, tmp_path):
    """score sends images in chunks: one ActorPool serves them all, so each worker's setup runs once."""
    from pipeline.executor import ActorPool

    logs = tmp_path / "logs"
    logs.mkdir()
    common = CommonParams(executor="ray", ray=RayParams(workers=2, shard_dir=str(tmp_path / "shards")))
    task = Task("pool", _logged_setup, _pid_of, (str(logs),))
    pids = set()
    with ActorPool(task, common) as pool:
        for batch in range(3):
            shards = [Shard(f"b{batch}s{n}", n, 1) for n in range(4)]
            results, info = run_shards(task, shards, common, f"k{batch}", pool)
            assert info.workers == 2 and len(results) == 4
            pids |= set(results)
    assert len(_runs(logs, "setup_")) == 2 and len(pids) == 2  # two actors, each built once, for three batches
    assert ray.is_initialized()  # the module's cluster: a pool that did not start Ray leaves it running


# ---- a killed driver: no artifact, resume from finished shards ---------------------------------------------

DRIVER = '''
import sys, time
from pathlib import Path
from pipeline.executor import Shard, Task, run_shards
from pipeline.io import atomic_dir
from pipeline.params import CommonParams, RayParams
import slowtask
common = CommonParams(ray=RayParams(shard_dir=sys.argv[1]))
shards = [Shard(f"s{n}", n, 1) for n in range(6)]
results, info = run_shards(Task("slow", slowtask.setup, slowtask.run, (sys.argv[2],)), shards, common, "k")
with atomic_dir(Path(sys.argv[3])) as out:
    (out / "result.txt").write_text(repr(results))
'''

SLOWTASK = '''
import os, time
from pathlib import Path
def setup(log_dir):
    return log_dir
def run(log_dir, n):
    Path(log_dir, f"run_{n}_{time.time_ns()}").touch()
    # the killed driver's later shards are slow (SLOW_TAIL), so the kill always lands before all six are done
    time.sleep(0.4 if n < 2 else float(os.environ.get("SLOW_TAIL", 0.4)))
    return n * n
'''


def test_killed_driver_leaves_no_artifact_and_resumes_from_finished_shards(tmp_path, monkeypatch):
    (tmp_path / "slowtask.py").write_text(SLOWTASK)
    (tmp_path / "driver.py").write_text(DRIVER)
    shard_dir, logs, art = tmp_path / "shards", tmp_path / "logs", tmp_path / "artifact"
    logs.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]), SLOW_TAIL="30")
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(shard_dir), str(logs), str(art)], env=env)
    deadline = time.monotonic() + 120
    # finished shards are <shard id>.pkl; a kill can also leave atomic_path's ".s1.pkl.<pid>.<random>.pkl" temp,
    # which the resume ignores (it reads exactly s<n>.pkl) and the final clean-up removes
    while len(list(shard_dir.glob("slow/k/s*.pkl"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.stem for p in shard_dir.glob("slow/k/s*.pkl"))
    assert 2 <= len(finished) < 6 and not art.exists()  # killed mid-run: nothing half-written

    monkeypatch.syspath_prepend(str(tmp_path))
    import slowtask

    common = CommonParams(ray=RayParams(shard_dir=str(shard_dir)))
    shards = [Shard(f"s{n}", n, 1) for n in range(6)]
    results, info = run_shards(Task("slow", slowtask.setup, slowtask.run, (str(logs),)), shards, common, "k")
    assert results == [n * n for n in range(6)]
    assert sorted(info.resumed) == finished and sorted(info.resumed + info.computed) == [s.id for s in shards]
    for s in finished:  # a finished shard never runs again
        assert len([p for p in _runs(logs, f"run_{s[1:]}_")]) == 1
    assert not (shard_dir / "slow").exists()


# ---- the pieces ---------------------------------------------------------------------------------------------

def test_frame_ranges_split_by_video_and_length():
    assert frame_ranges(["a", "a", "a", "b", "a"], 2) == [("a", 0, 2), ("a", 2, 3), ("b", 3, 4), ("a", 4, 5)]
    assert frame_ranges([], 4) == []


def test_damaged_or_foreign_shard_files_are_recomputed(tmp_path):
    common = CommonParams(ray=RayParams(shard_dir=str(tmp_path)))
    folder = tmp_path / "t" / "k"
    folder.mkdir(parents=True)
    (folder / "s0.pkl").write_bytes(b"\x80\x05 half a pickle")
    import pickle

    (folder / "s1.pkl").write_bytes(pickle.dumps({"format": ("wish-shard", 1), "key": "other", "result": -1}))
    results, info = run_shards(Task("t", _identity, _square), [Shard("s0", 3), Shard("s1", 4)], common, "k")
    assert results == [9, 16] and info.resumed == []


def _identity(x=None):
    return x


def _square(_, n: int) -> int:
    return n * n


def test_run_key_changes_with_inputs_and_params(tmp_path):
    f = tmp_path / "in.parquet"
    f.write_bytes(b"one")
    k1 = run_key("masks", {"a": 1}, [f])
    assert run_key("masks", {"a": 1}, [f]) == k1 and run_key("masks", {"a": 2}, [f]) != k1
    f.write_bytes(b"two")
    assert run_key("masks", {"a": 1}, [f]) != k1

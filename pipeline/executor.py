"""Run a per-frame stage function over shards of frames: in this process, in worker processes of this machine or
on Ray actors, with atomic shards and resume. This wraps the stages' own per-frame functions (pipeline/sharded.py);
it computes nothing itself.

    task = Task("hands", setup=hands_setup, setup_args=(p.hands,), run=hands_shard)
    results = run_shards(task, shards, p.common, key=run_key("hands", p.hands, [frames_parquet]))

Shards are up to `common.ray.shard_frames` frames of one video, in the order the local stage visits frames, so
concatenating results in shard order gives the local artifact row for row. Every finished shard is pickled
atomically to <shard_dir>/<stage>/<key>/<shard id>.pkl; `key` hashes the stage, its params and the bytes of its
input artifacts, so a rerun after a killed driver loads the finished shards and computes only the others, and
changed inputs can never pick up a stale shard. The shard folder is removed once the whole run is in hand.
On Ray one actor per worker builds the stage's models once (`setup`) and then runs shard after shard; an actor
killed mid-shard (kill -9, lost node) is restarted by Ray and only that shard's call is retried.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm import tqdm

from pipeline.errors import WishError
from pipeline.io import atomic_path

SHARD_FORMAT = ("wish-shard", 1)  # (name, version) stamped in every shard file; anything else is recomputed
RETRIES = 3  # restarts of a dead actor, and retries of the shard it was running
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Task:
    """`setup(*setup_args)` once per worker -> state; `run(state, payload)` per shard -> picklable result.
    Both must be module-level functions (Ray ships them by reference)."""
    name: str
    setup: Callable[..., Any]
    run: Callable[[Any, Any], Any]
    setup_args: tuple = ()
    uses_gpu: bool = False  # model stages get a GPU per actor when the cluster has them


@dataclass(frozen=True)
class Shard:
    id: str  # stable: position, video and first frame row, e.g. "000003_P01_01_r000032"
    payload: Any
    frames: int = 0  # for the progress bar


@dataclass
class RunInfo:
    """What happened: shards computed here vs loaded from an earlier (killed) run, workers used."""
    computed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    workers: int = 0
    started: float = 0.0  # perf_counter at the start, and (perf_counter, frames) as each computed shard lands:
    finished: list[tuple[float, int]] = field(default_factory=list)  # separates worker start-up from throughput


LAST_RUN = RunInfo()  # the latest run_shards' info, for benchmarks (scripts/bench_scale.py)


def frame_ranges(video_ids: Iterable[str], size: int) -> list[tuple[str, int, int]]:
    """(video, start row, stop row) runs of consecutive rows of one video, each at most `size` rows long."""
    videos = list(map(str, video_ids))
    out: list[tuple[str, int, int]] = []
    start = 0
    for i in range(1, len(videos) + 1):
        if i == len(videos) or videos[i] != videos[start] or i - start == size:
            out.append((videos[start], start, i))
            start = i
    return out


def shard_id(position: int, video: str, start: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in video)[:60]
    return f"{position:06d}_{safe}_r{start:07d}"


def run_key(stage: str, params: Any, inputs: Iterable[str | Path], extra: Any = None) -> str:
    """sha1 of the stage name, its params (pydantic sections or JSON-able values) and its input files' bytes."""
    h = hashlib.sha1(stage.encode())
    dump = lambda v: v.model_dump(mode="json") if hasattr(v, "model_dump") else v  # noqa: E731
    h.update(json.dumps([dump(params), dump(extra)], sort_keys=True, default=str).encode())
    for path in inputs:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def run_shards(task: Task, shards: list[Shard], common, key: str, pool: "ActorPool | None" = None
               ) -> tuple[list[Any], RunInfo]:
    """Results of `task` on every shard, in shard order; finished shards of an interrupted run are reused.
    `pool`: actors kept across calls (score's chunks); without one, a ray run starts and stops its own."""
    global LAST_RUN
    folder = Path(common.ray.shard_dir) / task.name / key
    info = LAST_RUN = RunInfo(started=time.perf_counter())
    results: dict[str, Any] = {}
    for s in shards:
        done = _load(folder / f"{s.id}.pkl", key)
        if done is not None:
            results[s.id] = done[0]
            info.resumed.append(s.id)
    todo = [s for s in shards if s.id not in results]
    if todo:
        finish = lambda s, r: _finish(folder, key, s, r, results, info)  # noqa: E731
        if common.executor == "processes" and common.workers > 1 and len(todo) > 1:
            info.workers = _run_processes(task, todo, finish, common)
        elif common.executor != "ray":
            info.workers = _run_here(task, todo, finish)
        elif pool is not None:
            info.workers = pool.run(todo, finish)
        else:
            with ActorPool(task, common) as own:
                info.workers = own.run(todo, finish)
    out = [results[s.id] for s in shards]
    _forget(folder)
    return out, info


def _finish(folder: Path, key: str, shard: Shard, result: Any, results: dict, info: RunInfo) -> None:
    """Store a shard the moment it is done: a driver killed later resumes from here."""
    with atomic_path(folder / f"{shard.id}.pkl", ".pkl") as tmp:
        with open(tmp, "wb") as f:
            pickle.dump({"format": SHARD_FORMAT, "key": key, "shard": shard.id, "result": result}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
    results[shard.id] = result
    info.computed.append(shard.id)
    info.finished.append((time.perf_counter(), shard.frames))


def _load(path: Path, key: str) -> tuple[Any] | None:
    """(result,) of a finished shard, or None when absent or not a complete shard of this very run."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            blob = pickle.load(f)
    except Exception:  # a foreign or damaged file is recomputed, never trusted
        return None
    if not isinstance(blob, dict) or blob.get("format") != SHARD_FORMAT or blob.get("key") != key:
        return None
    return (blob["result"],)


def _forget(folder: Path) -> None:
    """Drop this run's shards and those of earlier runs of the same stage (other keys can never be reused)."""
    stage_dir = folder.parent
    if stage_dir.is_dir():
        for d in stage_dir.iterdir():
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(stage_dir, ignore_errors=True)


def _run_here(task: Task, todo: list[Shard], finish) -> int:
    """The same shards, serially in this process (what `executor: local` and the 1-worker reference use)."""
    state = task.setup(*task.setup_args)
    with tqdm(total=sum(s.frames for s in todo), desc=task.name, unit="frame") as bar:
        for s in todo:
            finish(s, task.run(state, s.payload))
            bar.update(s.frames)
    return 1


_PROCESS: dict = {}  # per worker process of `executor: processes`: the stage's state, built once


def _init_process(setup, setup_args, seed: int, threads: int, parent: int) -> None:
    from pipeline.procs import die_with_parent

    die_with_parent(parent)  # a killed stage must not leave its workers running
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before the setup imports torch / onnxruntime
    os.environ["TQDM_DISABLE"] = "1"  # the stage's one bar counts the shards; a bar per worker shard garbles it
    from pipeline.device import seed_everything

    seed_everything(seed, threads)
    _PROCESS["state"] = setup(*setup_args)
    import cv2

    cv2.setNumThreads(threads)  # after setup: a proposer's build sets OpenCV's count to common.num_threads


def _run_process(fn, payload):
    return fn(_PROCESS["state"], payload)


def _run_processes(task: Task, todo: list[Shard], finish, common) -> int:
    """`executor: processes`: the shards on `common.workers` spawned processes of this machine, each with the
    stage's models built once and common.num_threads // workers threads (a second thread speeds up only a
    stage's torch / onnxruntime kernels, a second process all of it; notes/measurements.md). Each shard is
    stored as it lands; on any error or interrupt the queued shards are cancelled and the workers killed, so
    nothing outlives the stage."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    n = min(common.workers, len(todo))
    threads = max(common.num_threads // n, 1)
    ex = ProcessPoolExecutor(n, mp.get_context("spawn"), initializer=_init_process,
                             initargs=(task.setup, task.setup_args, common.seed, threads, os.getpid()))
    ok = False
    try:
        futures = {ex.submit(_run_process, task.run, s.payload): s for s in todo}
        with tqdm(total=sum(s.frames for s in todo), desc=f"{task.name} (processes x{n})", unit="frame") as bar:
            for f in as_completed(futures):
                s = futures[f]
                finish(s, f.result())
                bar.update(s.frames)
        ok = True
    finally:
        if not ok:  # the pool has no public way to kill its workers before Python 3.14 (terminate_workers)
            for proc in list(getattr(ex, "_processes", {}).values()):
                proc.kill()
        ex.shutdown(wait=ok, cancel_futures=not ok)
    return n


class _Worker:
    """A Ray actor: the stage's models, built once, then any number of shards."""

    def __init__(self, setup, setup_args, seed: int, threads: int):
        from pipeline.device import seed_everything

        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        seed_everything(seed, threads)
        self.state = setup(*setup_args)

    def run(self, fn, payload):
        return fn(self.state, payload)

    def pid(self) -> int:
        return os.getpid()


class ActorPool:
    """`common.ray.workers` actors of one task, started on first use and kept until the `with` block ends, so a
    caller with several batches of shards (score's image chunks) loads the models once per worker, not per batch.
    One shard in flight per actor; each result is stored as it returns."""

    def __init__(self, task: Task, common):
        self.task, self.common = task, common
        self.workers: list[Any] = []
        self.started = False

    def __enter__(self) -> "ActorPool":
        return self

    def __exit__(self, *exc) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
        if self.started:
            ray.shutdown()

    def _grow(self, n: int) -> None:
        import ray

        if not self.workers and not ray.is_initialized():
            self.started = connect(self.common)
        rp = self.common.ray
        gpus = gpus_per_worker(rp.gpus_per_worker) if self.task.uses_gpu else 0
        # a killed actor comes back (models rebuilt) and its shard is retried; finite, so a shard that crashes
        # its process every time (a decoder segfault) ends the run instead of looping
        actor = ray.remote(num_cpus=rp.cpus_per_worker, num_gpus=gpus, max_restarts=RETRIES,
                           max_task_retries=RETRIES)(_Worker)
        threads = self.common.num_threads  # as the local stage: same torch thread count, same float sums
        while len(self.workers) < n:
            self.workers.append(actor.remote(self.task.setup, self.task.setup_args, self.common.seed, threads))

    def run(self, todo: list[Shard], finish) -> int:
        import ray

        self._grow(min(self.common.ray.workers, len(todo)))
        queue, running = list(todo), dict[Any, tuple[Any, Shard]]()  # ray object ref -> (actor handle, shard)
        n = min(len(self.workers), len(todo))
        with tqdm(total=sum(s.frames for s in todo), desc=f"{self.task.name} (ray x{n})", unit="frame") as bar:
            for w in self.workers[:n]:
                _submit(self.task, w, queue, running)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                w, s = running.pop(ready[0])
                finish(s, _get(ready[0]))
                bar.update(s.frames)
                _submit(self.task, w, queue, running)
        return n


def _get(ref):
    """ray.get, with the stage's own WishError (bad input) re-raised as itself for `wish: error:`."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, WishError):
            raise e.cause from None
        raise


def _submit(task: Task, worker, queue: list[Shard], running: dict[Any, tuple[Any, Shard]]) -> None:
    if queue:
        s = queue.pop(0)
        running[worker.run.remote(task.run, s.payload)] = (worker, s)


def connect(common) -> bool:
    """Join common.ray.address, or start a local cluster sized for the workers; True if we started it.
    An already initialised Ray (a test's or a notebook's) is used as it is."""
    import ray

    if ray.is_initialized():
        return False
    rp = common.ray
    # workers import this checkout's `pipeline`: ship it as the job's code (a remote cluster has no copy)
    env: dict[str, Any] = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}}
    if rp.address:
        env = {"working_dir": str(REPO), "excludes": ["artifacts/", ".dvc/", ".git/", "metrics/"]}
        ray.init(address=rp.address, runtime_env=env, log_to_driver=False)
    else:
        cpus = max(1, int(-(-rp.workers * rp.cpus_per_worker // 1)))
        for attempt in range(3):
            try:
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
                break
            except Exception as e:  # Ray waits a fixed 30 s for its raylet: an overloaded machine can miss that
                ray.shutdown()
                if attempt == 2 or "timed out during startup" not in str(e):
                    raise
    return True


def gpus_per_worker(setting: float | str) -> float:
    """'auto': one GPU per actor when the cluster has any (torch need not see CUDA on the driver)."""
    import ray

    if setting != "auto":
        return float(setting)
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0

"""Faults as tests, on a few real frames in a throw-away DVC project: the declared outs are every file the pipeline
writes, and kill -9 of each stage mid-run leaves no process of it running, no temp dir after the next run, and the
next `dvc repro` ends with the same outputs.

The per-frame stages are killed inside their main loop. align, pseudolabel and heads compute first and write their
outputs in well under a second at the end, and score writes as it goes; they are killed at two exact points of that
write, chosen through strace (attached to the running stage, no hook in the code): on entering the first rename
(a file of the new output complete in the temp dir, not yet in place), and right after the old output was moved
aside (strace holds the stage there until the test kills it) or, for score, before it writes metrics/."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sysconfig
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import DATA, ROOT

pytestmark = pytest.mark.faults

PLATE = "P01_09_left_plate_93267_94233_raw682x384.mp4"  # 90 frames, narrated
EVAL_IDS = ["P01_104_frame_0000001851", "P02_101_frame_0000011665"]
SMALL = {
    "frames": {"stride": 30, "max_side": 320},
    "masks": {"max_proposals": 20, "offline": {"work_side": 256, "scales": [100, 300], "strategies": 1,
                                               "window_scales": [60], "workers": 2}},
    "embed": {"batch_size": 16, "offline": {"image_size": 64}},
    "responsibility": {"offsets": [1], "overlays": 1, "work_side": 160},
    "align": {"epochs": 12},
    "pseudolabel": {"overlays": 2},
    "heads": {"epochs": 15},
    "score": {"methods": ["wish", "baseline_nearest", "pseudolabel"], "report_max_frames": 4},
}
# stage -> what its log shows once its main loop runs (tqdm prints the bar at 0%)
# (embed's bar is "embed regions" in this process, "embed (processes x2)" with `common.executor: processes`)
HEAVY = {"hands": "hands", "masks": "masks", "embed": r"embed (regions|\(processes)",
         "responsibility": "responsibility", "perceive": "perceive"}
LATE = ("align", "pseudolabel", "heads", "score")  # killed while they write (see the module docstring)
TARGETS = ("score",)  # and everything upstream: the whole pipeline
TEMP = re.compile(r"^\..+\.\d+\.")  # pipeline.io temp names: .<target>.<pid>.<...>


def mini_evalset(src: Path, dst: Path) -> None:
    manifest = pd.read_csv(src / "manifest.csv")
    manifest = manifest[manifest["image_id"].isin(EVAL_IDS)]
    for col in ("image_path", "mask_path"):
        for rel in manifest[col].dropna().unique():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, dst / rel)
    (dst / "labels").mkdir()
    for image_id in EVAL_IDS:
        shutil.copy(src / "labels" / f"{image_id}.png", dst / "labels" / f"{image_id}.png")
    manifest.to_csv(dst / "manifest.csv", index=False)
    narr = pd.read_csv(src / "narrations.csv")
    narr[narr["image_id"].isin(EVAL_IDS)].to_csv(dst / "narrations.csv", index=False)


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def env(proj: Path) -> dict:
    """`wish` runs the project's copy of the code, one thread per process (2 shared cores). This interpreter's
    script dir comes first on PATH: dvc.yaml runs `wish`, and Debian's Tk package has a `wish` of its own
    (/usr/bin/wish) that an ambient PATH without pip's script dir finds instead (CI did)."""
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(proj), "OMP_NUM_THREADS": "1"}


def dvc(proj: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=proj, env=env(proj), capture_output=True, text=True, timeout=timeout)


def lock_outs(proj: Path) -> dict[str, str]:
    stages = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    return {o["path"]: o.get("md5", "") for s in stages.values() for o in s.get("outs", [])}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    data = base / "shared" / "data"
    (data / "epic" / "clips").mkdir(parents=True)
    for folder in ("contact_frames", "rgb_frames"):  # declared frames deps; empty: one clip is enough here
        (data / "epic" / folder).mkdir()
    os.symlink(DATA / "epic" / "clips" / PLATE, data / "epic" / "clips" / PLATE)
    for name in ("annotations", "clips.csv", "extra_frames.csv"):
        os.symlink(DATA / "epic" / name, data / "epic" / name)
    mini_evalset(DATA / "evalset", data / "evalset")
    proj = base / "proj"
    proj.mkdir()
    for d in ("pipeline", "stages"):
        shutil.copytree(ROOT / d, proj / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    (proj / "params.yaml").write_text(yaml.safe_dump(merged(yaml.safe_load((ROOT / "params.yaml").read_text()), SMALL)))
    assert dvc(proj, "init", "--no-scm", "-q").returncode == 0
    run = dvc(proj, "repro", *TARGETS)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return proj, lock_outs(proj)


def declared(proj: Path) -> list[Path]:
    stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    return [Path(o if isinstance(o, str) else next(iter(o))) for s in stages.values()
            for kind in ("outs", "metrics", "plots") for o in s.get(kind, [])]


def test_every_written_file_is_a_declared_out(project):
    proj, _ = project
    outs = declared(proj)
    written = [p.relative_to(proj) for top in ("artifacts", "metrics") for p in (proj / top).rglob("*") if p.is_file()]
    assert written and [p for p in written if not any(p == o or o in p.parents for o in outs)] == []


def session_processes(sid: int, proj: Path) -> list[str]:
    """Processes of a run: in its session, or (the pipeline.io janitor, in a session of its own) working in proj."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            stat = (d / "stat").read_text()
            in_session = int(stat.rsplit(")", 1)[1].split()[3]) == sid
            in_proj = Path(os.readlink(d / "cwd")).is_relative_to(proj)
            if (in_session or in_proj) and stat.rsplit(")", 1)[1].split()[0] != "Z":
                argv = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{d.name}: {argv[:120]}")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours
    return found


def stage_pid(sid: int, stage: str) -> int | None:
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                argv = (d / "cmdline").read_bytes().split(b"\0")
                if any(a.endswith(b"wish") for a in argv) and stage.encode() in argv:
                    return int(d.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def wait_for(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def temp_leftovers(proj: Path) -> list[str]:
    return [str(p.relative_to(proj)) for top in ("artifacts", "metrics") for p in (proj / top).rglob(".*")
            if TEMP.match(p.name)]


@pytest.mark.parametrize("stage", list(HEAVY))
def test_kill_9_mid_stage_leaves_nothing_and_the_next_repro_restores(stage, project, tmp_path):
    proj, before = project
    if stage == "embed":
        shutil.rmtree(proj / "artifacts" / "embed")  # persist: a forced run would reuse its whole cache
    log = tmp_path / "log.txt"
    with open(log, "wb") as out:
        run = subprocess.Popen(["dvc", "repro", "--force", "-s", stage], cwd=proj, env=env(proj), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = lambda: re.search(HEAVY[stage], log.read_text(errors="replace"))  # noqa: E731
        pid = wait_for(lambda: stage_pid(run.pid, stage) if started() else None, 180, f"{stage} to start its main loop")
        if stage == "masks":  # the pool's workers are what used to survive
            wait_for(lambda: len(session_processes(run.pid, proj)) >= 4, 60, "the masks workers")
        os.kill(pid, signal.SIGKILL)
        assert run.wait(60) != 0
        left = wait_for(lambda: session_processes(run.pid, proj) == [] or None, 20, "the stage's processes to exit")
        assert left
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    again = dvc(proj, "repro", *TARGETS)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert temp_leftovers(proj) == []
    assert lock_outs(proj) == before


RENAMES = "rename,renameat,renameat2"
# align, pseudolabel and heads declare files in their folder: DVC deletes them before the run and leaves the folder,
# which atomic_dir moves aside. score declares the whole artifacts/score, which DVC deletes: nothing is moved aside,
# so its second point is after the new artifacts/score is in place, before metrics/ is written.
CASES = [(s, p) for s in LATE for p in ("first_rename", "before_metrics" if s == "score" else "old_moved_aside")]


def strace(pid: int, proj: Path, trace: Path, calls: str, inject: list[str]) -> subprocess.Popen:
    """strace attached to `pid` (all its threads and children), faults injected into `calls`; returns once
    attached."""
    assert shutil.which("strace"), "strace is needed ([tool.wish] debian in pyproject.toml)"
    tracer = subprocess.Popen(["strace", "-qq", "-f", "-p", str(pid), "-o", str(trace), "-e", f"trace={calls}",
                               *inject], cwd=proj, stderr=subprocess.DEVNULL)

    def attached() -> bool:
        status = (Path("/proc") / str(pid) / "status").read_text()
        return int(re.search(r"TracerPid:\s*(\d+)", status)[1]) == tracer.pid
    wait_for(attached, 30, "strace to attach")
    return tracer


def kill_point(stage: str, point: str, pid: int, proj: Path, trace: Path) -> tuple[subprocess.Popen, str]:
    """strace set to stop the stage at `point`, and the pattern the stage's last traced call must match."""
    def killed_on_entering(calls: str) -> list[str]:  # by the kernel: the call itself is not done
        return ["-e", f"inject={calls}:signal=KILL:when=1"]
    if point == "first_rename":  # a file of the new output is complete in the temp dir, not yet renamed
        return (strace(pid, proj, trace, RENAMES, killed_on_entering(RENAMES)),
                rf'rename\w*\("[^"]*artifacts/\.{stage}\.{pid}\.\w+/')
    if point == "before_metrics":  # its first call on metrics/: the mkdir of score.json's folder
        return strace(pid, proj, trace, "mkdir", ["-P", "metrics", *killed_on_entering("mkdir")]), r'mkdir\("metrics"'
    # old_moved_aside: the rename is done, then strace holds the stage for up to 300 s, until the test kills it
    hold = ["-P", f"artifacts/{stage}", "-e", f"inject={RENAMES}:delay_exit=300000000"]
    return strace(pid, proj, trace, RENAMES, hold), rf'rename\("artifacts/{stage}", "artifacts/\.{stage}\.{pid}\.old"\)'


@pytest.mark.parametrize("stage, point", CASES)
def test_kill_9_while_a_late_stage_writes_leaves_nothing_and_the_next_repro_restores(stage, point, project, tmp_path):
    proj, before = project
    trace = tmp_path / "strace.txt"
    with open(tmp_path / "log.txt", "wb") as out:
        run = subprocess.Popen(["dvc", "repro", "--force", "-s", stage], cwd=proj, env=env(proj), stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    tracer = None
    try:
        pid = wait_for(lambda: stage_pid(run.pid, stage), 120, f"{stage} to start")
        tracer, expect = kill_point(stage, point, pid, proj, trace)
        if point == "old_moved_aside":
            wait_for(lambda: (proj / "artifacts" / f".{stage}.{pid}.old").is_dir(), 240, f"{stage} to move it aside")
            os.kill(pid, signal.SIGKILL)
            tracer.terminate()  # strace, holding the dead stage until its delay ends, lets it go to its parent
        assert run.wait(240) != 0
        tracer.wait(30)
        # the stage's last traced call (its entry line: "<pid>  rename(...) <unfinished ...>" when threads interleave)
        calls = [line for line in trace.read_text().splitlines() if re.match(rf"{pid}\s+\w+\(", line)]
        assert calls and re.search(expect, calls[-1]), calls[-1:]
        assert wait_for(lambda: session_processes(run.pid, proj) == [] or None, 20, "the stage's processes to exit")
    finally:
        for proc in (run, tracer):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL) if proc is run else proc.kill()
    for _ in range(100):  # the dead stage's janitor cleans up at once, whether or not the next run re-runs it
        if not temp_leftovers(proj):
            break
        time.sleep(0.2)
    assert temp_leftovers(proj) == []
    again = dvc(proj, "repro", *TARGETS)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert temp_leftovers(proj) == []
    assert lock_outs(proj) == before

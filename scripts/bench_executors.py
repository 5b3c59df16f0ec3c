"""`common.executor: local` vs `processes` on the same machine: why two one-thread processes, and what they give.

Part 1 (--threads): one process at common.num_threads threads vs 1 thread, and two 1-thread processes side by side,
on the two kernels the stages spend their time in: a (3200 x 1280) @ (1280 x 128) float32 matmul (align's and
heads' region projections) and EfficientNet-Lite0 on 64 crops of 160 px (embed's encoder, its configured runtime).
Part 2 (--stages): each per-frame stage run with its own command on ROOT's upstream artifacts, once per executor,
each into its own scratch root; prints wall seconds and whether the two outputs have the same bytes.

    python scripts/bench_executors.py [--root artifacts] [--stages hands embed responsibility] [--no-threads]

Run it on an idle machine: both parts time wall clock.
"""
from __future__ import annotations

import filecmp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer
import yaml

REPO = Path(__file__).resolve().parents[1]
# stage -> (upstream artifact folders it reads, files it writes); not masks: under `processes` it keeps its own
# per-frame pool (masks.offline.workers), the same work as under `local`
STAGES = {"hands": (("frames",), ("hands.parquet",)),
          "embed": (("frames", "nouns", "masks"), ("regions.h5", "texts.h5", "summary.json")),
          "responsibility": (("frames", "hands", "masks"), ("responsibility.h5", "motion_scores.parquet"))}

KERNEL = r"""
import sys, time, numpy as np, torch
threads, what = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(threads)
if what == "matmul":
    x, w = torch.randn(3200, 1280), torch.randn(128, 1280)
    run, n = (lambda: x @ w.T), 1
else:
    from pipeline.params import load_params
    from pipeline.embed.offline import EffnetRegionEncoder
    enc = EffnetRegionEncoder(load_params("params.yaml").embed.offline, 64, torch.device("cpu"))
    crops = [np.random.default_rng(i).integers(0, 255, (160, 160, 3), dtype=np.uint8) for i in range(64)]
    run, n = (lambda: enc.forward(crops)), 64
for _ in range(3):
    run()
reps, t = 0, time.perf_counter()
while time.perf_counter() - t < 5:
    run()
    reps += 1
print(n * reps / (time.perf_counter() - t))
"""


def _rate(threads: int, what: str, parallel: int = 1) -> list[float]:
    procs = [subprocess.Popen([sys.executable, "-c", KERNEL, str(threads), what], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(parallel)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def bench_threads(num_threads: int) -> None:
    for what, unit in (("matmul", "matmul/s"), ("encoder", "crops/s")):
        one = _rate(num_threads, what)[0]
        single = _rate(1, what)[0]
        pair = _rate(1, what, parallel=2)
        print(f"{what:8s} 1 process x {num_threads} threads {one:8.1f} {unit} | 1 x 1 thread {single:8.1f} | "
              f"2 x 1 thread {sum(pair):8.1f} ({' + '.join(f'{r:.1f}' for r in pair)})", flush=True)


def bench_stage(stage: str, root: Path, params: dict) -> None:
    reads, writes = STAGES[stage]
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for executor in ("local", "processes"):
            run_root = Path(tmp) / executor
            run_root.mkdir()
            for d in reads:
                (run_root / d).symlink_to((root / d).resolve())
            p = yaml.safe_load(yaml.safe_dump(params))
            p["common"]["executor"] = executor
            p["common"]["ray"]["shard_dir"] = str(Path(tmp) / "shards")
            (Path(tmp) / f"{executor}.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "stages.cli", stage, "--params", str(Path(tmp) / f"{executor}.yaml"),
                            "--root", str(run_root)], cwd=REPO, check=True, capture_output=True)
            outs[executor] = (time.perf_counter() - t, run_root / stage)
        (ta, a), (tb, b) = outs["local"], outs["processes"]
        same = all(filecmp.cmp(a / f, b / f, shallow=False) for f in writes)
        print(f"{stage:15s} local {ta:7.1f} s | processes x{params['common']['workers']} {tb:7.1f} s | "
              f"{ta / tb:4.2f}x | outputs identical: {same}", flush=True)


def main(root: Path = Path("artifacts"), params: Path = Path("params.yaml"),
         stages: list[str] = typer.Option(["hands", "embed", "responsibility"]), threads: bool = True) -> None:
    base = yaml.safe_load(params.read_text())
    if threads:
        bench_threads(int(base["common"]["num_threads"]))
    for stage in stages:
        bench_stage(stage, root.resolve(), base)


if __name__ == "__main__":
    typer.run(main)

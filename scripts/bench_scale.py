"""Frames/s of the per-frame stages: local, Ray with 1 worker and Ray with 2 workers, in one run.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python3 scripts/bench_scale.py --stride 50 --out notes/bench_scale.json

Frames come from the shared EPIC clips (every `stride`-th frame of each, stored at frames.max_side); hands and
masks are computed locally once and are the inputs of the later stages. Each stage then runs through the same
functions the stages call: `local` is the stage's own in-process path (masks with 1 process), `ray xN` is
the stages' shard adapters (pipeline/*shards.py) on N actors (Ray started once, beforehand, with 2 CPUs; the actors' start and model loading
are inside the timing, as they are in a real run). Every Ray result is checked equal to the local one.
Ratios are what count: on a shared machine absolute frames/s move with the other load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _params(frames_sources: list[str], stride: int, shard_dir: str, workers: int, threads: int):
    from pipeline.params import Params

    return Params.model_validate({
        "common": {"eval_dirs": [], "num_threads": threads, "executor": "ray",
                   "ray": {"workers": workers, "cpus_per_worker": 1, "shard_frames": 4, "shard_dir": shard_dir}},
        "frames": {"sources": frames_sources, "stride": stride},
        "masks": {"offline": {"workers": 1}}})


def _prepare(root: Path, stride: int, threads: int) -> None:
    """frames, then local hands and masks as the inputs of the later stages."""
    from stages.cli import main

    root.mkdir(parents=True, exist_ok=True)
    params = root.parent / "params.yaml"
    params.write_text(json.dumps({"common": {"eval_dirs": [], "num_threads": threads},
                                  "frames": {"stride": stride}, "masks": {"offline": {"workers": 1}}}))
    for stage in ("frames", "hands", "masks"):
        assert main([stage, "--params", str(params), "--root", str(root)]) == 0, stage


def _stage_fns(root: Path, p):
    """stage -> (local fn, ray fn(params)); each returns something comparable."""
    from pipeline.embed import build_encoders
    from pipeline.embed.build import embed_regions
    from pipeline.hands import detect_frames
    from pipeline.io import read_table
    from pipeline.masks import build_proposer
    from pipeline.masks.run import propose_frames
    from pipeline.responsibility_io import hands_by_frame, masks_by_frame
    from pipeline.schemas import FRAMES, HANDS, MASKS
    from pipeline.embed.shards import embed_sharded
    from pipeline.hands_shards import hands_sharded
    from pipeline.masks.shards import masks_sharded
    from stages.responsibility import _compute

    fdir = root / "frames"
    frames = read_table(fdir / "frames.parquet", FRAMES)
    hands = read_table(root / "hands" / "hands.parquet", HANDS)
    masks = read_table(root / "masks" / "masks.parquet", MASKS)
    inputs = [root / d / f"{d}.parquet" for d in ("frames", "hands", "masks")]
    rp = p.responsibility

    def embed_local():
        enc = build_encoders(p.embed, p.common)[0]
        return embed_regions(enc, frames, masks, fdir, None, {"weights_id": enc.weights_id})[0].features

    def embed_ray(q):
        enc = build_encoders(q.embed, q.common)[0]  # the driver's own copy, as in the stage (weights id)
        attrs = {"weights_id": enc.weights_id}
        cache, _ = embed_sharded(frames, masks, fdir, None, enc.weights_id, attrs, q)
        return embed_regions(enc, frames, masks, fdir, cache, attrs)[0].features

    return len(frames), {
        "hands": (lambda: detect_frames(frames, fdir, p.hands), lambda q: hands_sharded(frames, fdir, q)[0]),
        "masks": (lambda: propose_frames(frames, fdir, hands, build_proposer(p.masks, p.common), p.masks.backend)[0],
                  lambda q: masks_sharded(frames, fdir, hands, q)[0]),
        "embed": (embed_local, embed_ray),
        "responsibility": (lambda: _compute(frames, hands_by_frame(hands), masks_by_frame(masks), rp)[2],
                           lambda q: _compute(frames, hands_by_frame(hands), masks_by_frame(masks), rp,
                                              (q, inputs))[2]),
    }


def _steady(workers: int) -> tuple[float, float]:
    """(frames/s after every worker's first shard, seconds until then): throughput without actor start-up."""
    from pipeline import executor

    info = executor.LAST_RUN
    done = sorted(info.finished)
    if len(done) <= workers:
        return float("nan"), float("nan")
    t0 = done[workers - 1][0]
    frames = sum(f for _, f in done[workers:])
    return round(frames / (done[-1][0] - t0), 3), round(t0 - info.started, 2)


def _same(a, b) -> bool:
    import numpy as np
    import pandas as pd

    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    if isinstance(a, list):
        return pd.DataFrame(a).equals(pd.DataFrame(b))
    return bool(np.array_equal(a, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stride", type=int, default=50, help="every stride-th frame of each shared EPIC clip")
    ap.add_argument("--stages", default="masks,embed,responsibility,hands")
    ap.add_argument("--threads", type=int, default=1, help="common.num_threads (torch/OpenCV threads per worker)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the numbers")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import ray

    from pipeline.device import seed_everything
    from pipeline.executor import connect

    seed_everything(0, args.threads)
    import cv2

    # one OpenCV thread in this process too, as in the masks workers and actors: the local reference is then one
    # thread like each worker, and proposal scores (which move in the last bits with the thread count) match
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        root = Path(tmp) / "artifacts"
        _prepare(root, args.stride, args.threads)
        p1 = _params([f"{ROOT.parent}/shared/data/epic/clips"], args.stride, f"{tmp}/shards", 1, args.threads)
        p2 = p1.model_copy(update={"common": p1.common.model_copy(
            update={"ray": p1.common.ray.model_copy(update={"workers": 2})})})
        n, fns = _stage_fns(root, p1)
        t = time.perf_counter()
        connect(p2.common)  # a 2-CPU local cluster, started once (its start is reported separately)
        results = {"frames": n, "ray_start_s": round(time.perf_counter() - t, 2), "threads": args.threads,
                   "cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "stages": {}}
        for stage in args.stages.split(","):
            local, on_ray = fns[stage]
            row = {}
            for name, run in (("local", local), ("ray_x1", lambda f=on_ray: f(p1)), ("ray_x2", lambda f=on_ray: f(p2))):
                t = time.perf_counter()
                out = run()
                row[name] = round(n / (time.perf_counter() - t), 3)
                if name == "local":
                    reference = out
                else:
                    row[f"{name}_identical"] = _same(reference, out)
                    row[f"{name}_steady"], row[f"{name}_startup_s"] = _steady(int(name[-1]))
            for kind in ("", "_steady"):
                row[f"x2_over_x1{kind}"] = round(row[f"ray_x2{kind}"] / row[f"ray_x1{kind}"], 3)
                row[f"x1{kind}_over_local"] = round(row[f"ray_x1{kind}"] / row["local"], 3)
            results["stages"][stage] = row
            print(stage, row, flush=True)
        results["load_after"] = os.getloadavg()[0]
        ray.shutdown()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Project wall time and cost of EPIC-100 and Ego4D from measured per-frame costs (notes/scale.md's tables).

    python3 scripts/project_scale.py notes/bench_scale.json --machines 1 8 64 --cores 16

Per-frame CPU cost of each stage = 1 / (its `local` frames/s in the benchmark: one process, one thread);
N machines of C cores run N*C one-thread workers at the benchmark's measured 2-worker scaling efficiency
(x2_over_x1 / 2). Everything here is a projection: arithmetic on the measured costs plus the assumptions
printed with the table (frame counts, sampling, prices); GPU rows are assumptions, not measurements.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# (dataset, frames the per-frame stages see): EPIC-100 100 h (~20M frames at 50-60 fps) at frames.stride 6;
# Ego4D 3,670 h at 30 fps, sampled at 1 frame/s and at stride 6 (5 frames/s)
DATASETS = [("EPIC-100, stride 6", 20_000_000 / 6), ("Ego4D, 1 frame/s", 3670 * 3600),
            ("Ego4D, stride 6", 3670 * 3600 * 30 / 6)]
CPU_CORE_HOUR = 0.05  # assumed USD per core-hour (order of magnitude of on-demand cloud CPUs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--machines", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--cores", type=int, default=16, help="cores per machine")
    ap.add_argument("--per-frame", default="", help="override costs, e.g. masks=1.41,embed=1.43 (CPU s/frame)")
    ap.add_argument("--efficiency", type=float, default=None, help="override the scaling efficiency (0-1]")
    args = ap.parse_args()
    bench = json.loads(args.bench.read_text())
    stages = bench["stages"]
    cost = {s: 1.0 / r["local"] for s, r in stages.items()}  # CPU seconds per frame, one thread
    cost.update({k: float(v) for k, v in (kv.split("=") for kv in args.per_frame.split(",") if kv)})
    eff = min(1.0, min(r["x2_over_x1"] for r in stages.values()) / 2)
    eff = args.efficiency if args.efficiency is not None else eff
    total = sum(cost.values())
    print("per-frame CPU s: " + ", ".join(f"{s} {c:.3f}" for s, c in cost.items()) + f"; total {total:.3f}")
    print(f"scaling efficiency used: {eff:.2f}\n")
    print("| data | frames | CPU core-hours | " + " | ".join(f"wall, {n}x{args.cores} cores" for n in args.machines)
          + " | cost (assumed $%.2f/core-h) |" % CPU_CORE_HOUR)
    print("|---|---|---|" + "---|" * len(args.machines) + "---|")
    for name, frames in DATASETS:
        core_h = frames * total / 3600 / eff
        walls = [core_h / (n * args.cores) for n in args.machines]
        print(f"| {name} | {frames / 1e6:.1f}M | {core_h:,.0f} | "
              + " | ".join(_hours(w) for w in walls) + f" | ${core_h * CPU_CORE_HOUR:,.0f} |")


    _gpu_table(args.machines)


# GPU profile (masks.backend: sam vit_h, embed.backend: clip): ASSUMED per-frame GPU seconds, not measured here
# (no GPU was lent): SAM's image encoder takes ~0.15 s on an A100 (SAM paper); its automatic generator's
# 32x32-point decoder passes are taken as ~0.85 s more; CLIP ViT-B/16 on ~100 masked regions ~0.1 s. hands
# (MediaPipe) and responsibility stay on the CPUs of the same machines and overlap with the GPU work.
GPU_S_PER_FRAME = 0.15 + 0.85 + 0.1
GPU_HOUR = 2.0  # assumed USD per GPU-hour


def _gpu_table(machines: list[int]) -> None:
    print(f"\n| data | frames | GPU-hours (assumed {GPU_S_PER_FRAME:.2f} GPU-s/frame) | "
          + " | ".join(f"wall, {n} GPUs" for n in machines) + f" | cost (assumed ${GPU_HOUR:.0f}/GPU-h) |")
    print("|---|---|---|" + "---|" * len(machines) + "---|")
    for name, frames in DATASETS:
        gpu_h = frames * GPU_S_PER_FRAME / 3600
        print(f"| {name} | {frames / 1e6:.1f}M | {gpu_h:,.0f} | " + " | ".join(_hours(gpu_h / n) for n in machines)
              + f" | ${gpu_h * GPU_HOUR:,.0f} |")


def _hours(h: float) -> str:
    return f"{h / 24:.1f} d" if h >= 48 else f"{h:.1f} h"


if __name__ == "__main__":
    main()

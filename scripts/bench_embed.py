"""Throughput of the embed backends on this machine: regions/s and texts/s.

Workload: the ground-truth masks of a few eval frames (objects and hands, each frame read once as the stage
does) and the EPIC-100 v2 noun classes in the three phrase templates. The `clip` backend runs with a
random-init open_clip model (no pretrained weights offline): same compute, meaningless features.

    python scripts/bench_embed.py [--frames 4] [--texts 300] [--backends offline clip]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data.evalset import load_evalset  # noqa: E402
from pipeline.params import Params  # noqa: E402


def workload(p: Params, n_frames: int, n_texts: int) -> tuple[list, list[str]]:
    es = load_evalset(p.score.evalset)
    frames = []
    for frame in es.frames[:n_frames]:
        masks = [m for label in sorted(frame.mask_paths) for m in es.masks(frame, label)]
        frames.append((es.image(frame), masks))
    keys = pd.read_csv(p.nouns.noun_classes_csv)["key"].astype(str)
    nouns = [" ".join(k.split(":")[1:][::-1] + k.split(":")[:1]) for k in keys]
    n = p.nouns
    texts = [t.format(phrase=w) for w in nouns for t in (n.template_left, n.template_right, n.template_none)]
    return frames, texts[:n_texts]


def build(backend: str, p: Params):
    if backend == "offline":
        from pipeline.embed.offline import build as build_offline

        return build_offline(p.embed, p.common), "EfficientNet-Lite0 (ImageNet) + MiniLM-L6"
    try:
        from pipeline.embed.clip import create_clip, make_encoders
    except ImportError as e:
        return None, f"pipeline/embed/clip.py not usable ({e})"
    from pipeline.device import resolve_device

    device = resolve_device(p.common.device)
    model = create_clip(p.embed.clip.model, device=device)
    encs = make_encoders(model, p.embed.clip.model, "random-init", p.embed.clip, p.embed.batch_size, device)
    return encs, f"open_clip {p.embed.clip.model} random-init, region_mode={p.embed.clip.region_mode}"


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def bench(backend: str, p: Params, frames: list, texts: list[str]) -> None:
    encs, what = build(backend, p)
    if encs is None:
        print(f"{backend:8s} skipped: {what}")
        return
    regions, text = encs
    regions.encode(*frames[0])  # warm-up: first-call allocations are not throughput
    text.encode(texts[:8])
    t_r = sum(timed(regions.encode, img, ms) for img, ms in frames)
    n_r = sum(len(ms) for _, ms in frames)
    t_t = timed(text.encode, texts)
    print(f"{backend:8s} {n_r / t_r:7.1f} regions/s ({n_r} regions, {len(frames)} frames)  "
          f"{len(texts) / t_t:7.1f} texts/s ({len(texts)} texts)  dims {regions.dim}/{text.dim}  [{what}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--texts", type=int, default=300)
    ap.add_argument("--backends", nargs="+", default=["offline", "clip"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    p = Params()
    p = p.model_copy(update={"common": p.common.model_copy(update={"device": args.device})})
    from pipeline.device import seed_everything

    seed_everything(p.common.seed, p.common.num_threads)
    frames, texts = workload(p, args.frames, args.texts)
    print(f"device {args.device}, torch threads {p.common.num_threads}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (a loaded machine makes these numbers low)")
    for backend in args.backends:
        bench(backend, p, frames, texts)


if __name__ == "__main__":
    main()

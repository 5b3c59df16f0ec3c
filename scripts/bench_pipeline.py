"""Each heavy stage's core on the same real frames, next to the bound that stage can reach, as ratios.

Reads an artifacts root that already holds frames, hands and masks (and, for --stages train, embed, nouns,
pseudolabel), picks --frames frames spread evenly over it, and times in one process, one after another:

    hands           MediaPipe on each frame                     bound: reading the frames (I/O floor)
    masks           the configured proposer (measurement only)  bound: reading the frames (I/O floor)
    embed           embed_regions (read, decode, crop/pool, encode) per variant
                                                                bound: the encoder alone on ready inputs
    responsibility  the stage's per-source loop per flow preset bound: decoding the source videos (I/O floor)
                                                                and DIS flow alone on the same frame pairs
    train           `wish align` and `wish heads` on the whole root (measurement only; slow)

Rates are per second of wall time; the machine is shared, so compare ratios taken in the same run, not
absolute numbers across runs. Variants are named; "before" rows reproduce the configuration of today's main.

    python scripts/bench_pipeline.py --root artifacts [--frames 12] [--stages hands masks embed responsibility]
        [--json notes/bench.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.io import read_image, read_table  # noqa: E402
from pipeline.params import Params, load_params  # noqa: E402
from pipeline.schemas import FRAMES, HANDS, MASKS  # noqa: E402

ROWS: list[dict] = []


def record(stage: str, variant: str, items: int, unit: str, seconds: float, bound: str | None = None) -> float:
    rate = items / max(seconds, 1e-9)
    ROWS.append(dict(stage=stage, variant=variant, items=items, unit=unit, seconds=round(seconds, 3),
                     rate=round(rate, 2), bound_of=bound))
    print(f"{stage:15s} {variant:38s} {items:6d} {unit:8s} {seconds:8.2f} s {rate:9.2f} {unit}/s", flush=True)
    return rate


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def pick(frames: pd.DataFrame, n: int) -> pd.DataFrame:
    """n frames spread evenly over the table (deterministic), in table order."""
    if n <= 0 or n >= len(frames):
        return frames
    idx = np.unique(np.linspace(0, len(frames) - 1, n).round().astype(int))
    return frames.iloc[idx]


def with_embed(p: Params, **offline) -> Params:
    o = p.embed.offline.model_copy(update=offline)
    return p.model_copy(update={"embed": p.embed.model_copy(update={"offline": o})})


# --- stages ------------------------------------------------------------------------------------------------

def read_floor(frames: pd.DataFrame, root: Path) -> float:
    _, s = timed(lambda: [read_image(root / "frames" / r) for r in frames["image_path"]])
    return record("io", "read frames (floor)", len(frames), "frame", s)


def bench_hands(p: Params, frames: pd.DataFrame, root: Path) -> None:
    from pipeline.hands import HandDetector

    det = HandDetector(p.hands)
    images = [read_image(root / "frames" / r) for r in frames["image_path"]]
    det.detect(images[0])  # first call builds the graph
    _, s = timed(lambda: [det.detect(im) for im in images])
    record("hands", "mediapipe (stage core)", len(images), "frame", s)


def bench_masks(p: Params, frames: pd.DataFrame, root: Path) -> None:
    from pipeline.hands import rows_to_hands
    from pipeline.masks import build_proposer

    hands = read_table(root / "hands" / "hands.parquet", HANDS)
    by_frame = {f: rows_to_hands(r) for f, r in hands.groupby("frame_id")}
    proposer = build_proposer(p.masks, p.common)
    work = [(read_image(root / "frames" / r.image_path), by_frame.get(r.frame_id, [])) for r in frames.itertuples()]
    _, s = timed(lambda: [proposer(im, hs) for im, hs in work])
    record("masks", f"{p.masks.backend} proposer, 1 process", len(work), "frame", s)


EMBED_VARIANTS = {
    "before: crop 160, torch": dict(regions="crop", runtime="torch", min_crop_size=160),
    "crop 160, onnxruntime": dict(regions="crop", runtime="onnxruntime", min_crop_size=160),
    "crop 96-160, onnxruntime": dict(regions="crop", runtime="onnxruntime", min_crop_size=96),
    "crop 64-160, onnxruntime": dict(regions="crop", runtime="onnxruntime", min_crop_size=64),
    "dense 854, onnxruntime": dict(regions="dense", runtime="onnxruntime", dense_side=854),
    "dense 854, torch": dict(regions="dense", runtime="torch", dense_side=854),
}


def bench_embed(p: Params, frames: pd.DataFrame, root: Path, variants: list[str]) -> dict[str, np.ndarray]:
    """regions/s of the stage core per variant, and the encoder's own rate on ready inputs; returns features."""
    from pipeline.embed.build import embed_regions
    from pipeline.embed.offline import EffnetRegionEncoder

    masks = read_table(root / "masks" / "masks.parquet", MASKS)
    masks = masks[masks["frame_id"].isin(set(frames["frame_id"]))]
    feats = {}
    for name in variants:
        q = with_embed(p, **EMBED_VARIANTS[name]).embed
        enc = EffnetRegionEncoder(q.offline, q.batch_size, _device(p))
        _encoder_bound(enc, name, frames, root)
        (cache, _), s = timed(embed_regions, enc, frames, masks, root / "frames", None, {})
        record("embed", name, len(cache.keys), "region", s)
        feats[name] = np.asarray(cache.features, np.float32)
    return feats


def _encoder_bound(enc, name: str, frames: pd.DataFrame, root: Path) -> None:
    """The network alone: full batches of ready 160 px crops, or one frame's feature map."""
    from pipeline.embed.dense import frame_array

    if enc.p.regions == "dense":
        image = frame_array(read_image(root / "frames" / frames["image_path"].iloc[0]), enc.p.dense_side)
        enc.net.feature_map(image)
        _, s = timed(lambda: [enc.net.feature_map(image) for _ in range(len(frames))])
        record("embed", f"bound: feature map only [{name}]", len(frames), "frame", s, name)
        return
    batch = np.random.default_rng(0).integers(0, 256, size=(enc.batch_size, 160, 160, 3), dtype=np.uint8)
    enc.net.pooled_logits(batch)
    _, s = timed(lambda: [enc.net.pooled_logits(batch) for _ in range(3)])
    record("embed", f"bound: 160px crops only [{name}]", 3 * len(batch), "crop", s, name)


def agreement(feats: dict[str, np.ndarray], reference: str) -> None:
    """How much each variant's region embeddings agree with the reference's, on the same regions:
    mean cosine, and the share of each region's 10 nearest regions that both spaces share."""
    ref = _unit(feats[reference])
    nn_ref = _knn(ref, 10)
    for name, f in feats.items():
        if name == reference:
            continue
        u = _unit(f)
        cos = float((u * ref).sum(1).mean())
        overlap = float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(nn_ref, _knn(u, 10))]))
        print(f"agreement with [{reference}]: {name:30s} mean cosine {cos:.3f}  10-NN overlap {overlap:.3f}")
        ROWS.append(dict(stage="embed", variant=name, agreement_with=reference, mean_cosine=round(cos, 4),
                         knn10_overlap=round(overlap, 4)))


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0, keepdims=True)  # centred: pooled ReLU-like features share a large common direction
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def _knn(u: np.ndarray, k: int) -> np.ndarray:
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def bench_responsibility(p: Params, frames: pd.DataFrame, root: Path, presets: list[str]) -> None:
    from pipeline.responsibility import flow
    from pipeline.responsibility_io import (hands_by_frame, masks_by_frame, neighbours_of, read_source_frames,
                                    wanted_indices, work_geometry)
    from stages.responsibility import _compute, _offsets

    rp = p.responsibility
    hands = hands_by_frame(read_table(root / "hands" / "hands.parquet", HANDS))
    masks = masks_by_frame(read_table(root / "masks" / "masks.parquet", MASKS))
    offsets = _offsets(rp.offsets)
    decoded, s_io = {}, 0.0
    for source, g in frames.groupby("source", sort=True):
        shape, _ = work_geometry(int(g.iloc[0].width), int(g.iloc[0].height), rp.work_side)
        d, s = timed(read_source_frames, Path(source), wanted_indices(list(g["clip_index"]), offsets), shape)
        decoded[source], s_io = d, s_io + s
    record("responsibility", "bound: decode neighbours (I/O floor)", len(frames), "frame", s_io)
    pairs = [(d[int(r.clip_index)], nb) for source, d in decoded.items()
             for r in frames[frames["source"] == source].itertuples() if int(r.clip_index) in d
             for nb in neighbours_of(d, int(r.clip_index), offsets).values()]
    scores = {}
    for preset in presets:
        _, s = timed(lambda preset=preset: [flow(a, b, rp.flow, preset) for a, b in pairs])
        record("responsibility", f"bound: DIS {preset} flow only", len(frames), "frame", s)
        q = rp.model_copy(update={"flow_preset": preset, "overlays": 0})
        (_, _, rows), s = timed(_compute, frames, hands, masks, q)
        record("responsibility", f"stage core, DIS {preset}", len(frames), "frame", s)
        scores[preset] = pd.DataFrame(rows)
    for preset in presets[1:]:
        motion_agreement(scores[presets[0]], scores[preset], presets[0], preset)


def motion_agreement(ref: pd.DataFrame, new: pd.DataFrame, ref_name: str, name: str) -> None:
    """Same status per (frame, side)? Same best-scoring region? Rank correlation of the per-region scores?"""
    key = ["frame_id", "side"]
    st = ref.drop_duplicates(key).merge(new.drop_duplicates(key), on=key, suffixes=("_r", "_n"))
    same_status = float((st["status_r"] == st["status_n"]).mean())
    ok = ref[(ref["mask_id"] >= 0)].merge(new[new["mask_id"] >= 0], on=[*key, "mask_id"], suffixes=("_r", "_n"))
    best = ok.groupby(key).apply(lambda g: g["mask_id"].iloc[g["motion_score_r"].argmax()] ==
                                 g["mask_id"].iloc[g["motion_score_n"].argmax()], include_groups=False)
    rho = ok.groupby(key).apply(lambda g: g["motion_score_r"].corr(g["motion_score_n"], method="spearman"),
                                include_groups=False)
    print(f"responsibility [{name}] vs [{ref_name}]: same status {same_status:.3f} of {len(st)} (frame, side); "
          f"same best region {float(best.mean()):.3f} of {len(best)}; median Spearman {float(rho.median()):.3f}")
    ROWS.append(dict(stage="responsibility", variant=name, agreement_with=ref_name, same_status=same_status,
                     same_best_region=float(best.mean()), n_usable=len(best), median_spearman=float(rho.median())))


def bench_training(params_path: Path, root: Path) -> None:
    """`wish align` then `wish heads` on a scratch copy of ROOT's inputs (outputs never touch ROOT)."""
    from stages.cli import main

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        scratch = Path(tmp)
        for name in ("frames", "nouns", "hands", "masks", "embed", "responsibility", "pseudolabel"):
            if (root / name).exists():
                os.symlink((root / name).resolve(), scratch / name)
        for stage in ("align", "heads"):
            if stage == "heads" and not (scratch / "pseudolabel").exists():
                print("train: no ROOT/pseudolabel, heads not timed")
                break
            code, s = timed(main, [stage, "--params", str(params_path), "--root", str(scratch)])
            if code != 0:
                print(f"train: wish {stage} failed (exit {code})")
                break
            record("train", f"wish {stage} (whole root)", 1, "run", s)
        shutil.rmtree(scratch / "align", ignore_errors=True)


def _device(p: Params):
    from pipeline.device import resolve_device

    return resolve_device(p.common.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("artifacts"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--stages", nargs="+", default=["hands", "masks", "embed", "responsibility"],
                    choices=["hands", "masks", "embed", "responsibility", "train"])
    ap.add_argument("--embed-variants", nargs="+", default=list(EMBED_VARIANTS), choices=list(EMBED_VARIANTS))
    ap.add_argument("--presets", nargs="+", default=["medium", "fast"], choices=["ultrafast", "fast", "medium"])
    ap.add_argument("--json", type=Path, default=None, help="write every row here")
    args = ap.parse_args()
    from pipeline.device import seed_everything

    p = load_params(args.params) if args.params.is_file() else Params()
    seed_everything(p.common.seed, p.common.num_threads)
    frames = pick(read_table(args.root / "frames" / "frames.parquet", FRAMES), args.frames)
    print(f"{len(frames)} frames from {frames['source'].nunique()} sources; torch threads {p.common.num_threads}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine: compare ratios)")
    read_floor(frames, args.root)
    if "hands" in args.stages:
        bench_hands(p, frames, args.root)
    if "masks" in args.stages:
        bench_masks(p, frames, args.root)
    if "embed" in args.stages:
        feats = bench_embed(p, frames, args.root, args.embed_variants)
        if len(feats) > 1:
            agreement(feats, args.embed_variants[0])
    if "responsibility" in args.stages:
        bench_responsibility(p, frames, args.root, args.presets)
    if "train" in args.stages:
        bench_training(args.params, args.root)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(frames=len(frames), load_average=os.getloadavg()[0], rows=ROWS),
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()

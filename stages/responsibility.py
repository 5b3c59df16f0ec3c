"""Stage `responsibility`: COHESIV motion responsibility maps per hand and per-proposal motion scores."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Flow to neighbour frames + hand homographies -> ROOT/responsibility/{responsibility.h5,motion_scores.parquet,
    stats.json,overlays/}."""
    import pandas as pd

    from pipeline.io import atomic_dir, atomic_path, read_table, write_json, write_table
    from pipeline.responsibility_io import hands_by_frame, masks_by_frame, status_counts, write_maps
    from pipeline.schemas import FRAMES, HANDS, MASKS, MOTION_SCORES

    p = setup(params)
    rp = p.responsibility
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    hands = hands_by_frame(read_table(root / "hands" / "hands.parquet", HANDS))
    masks = masks_by_frame(read_table(root / "masks" / "masks.parquet", MASKS))
    start = time.perf_counter()
    inputs = [root / d / f"{d}.parquet" for d in ("frames", "hands", "masks")]
    sharded = (p, inputs) if p.common.executor != "local" else None
    ids, maps, rows = _compute(frames, hands, masks, rp, sharded)
    seconds = time.perf_counter() - start
    df = pd.DataFrame(rows)
    counts = status_counts(df)
    attrs = dict(temperature=rp.temperature, offsets=list(_offsets(rp.offsets)), flow=rp.flow,
                 flow_preset=rp.flow_preset,
                 camera_compensation=rp.camera_compensation, work_side=rp.work_side)
    with atomic_dir(root / "responsibility") as out:
        with atomic_path(out / "responsibility.h5", ".h5") as tmp:
            write_maps(tmp, ids, maps, attrs)
        meta = dict(attrs, missing_rows="mask_id -1 row per (frame, side) without usable motion or masks",
                    **{f"status_{k}": v for k, v in counts.items()})
        write_table(df, MOTION_SCORES, out / "motion_scores.parquet", meta)
        per_frame = round(seconds / max(len(ids), 1), 4)
        stats = dict(frames=len(ids), seconds=round(seconds, 2), seconds_per_frame=per_frame, status=counts)
        write_json(stats, out / "stats.json")
        _overlays(frames, ids, maps, df, rp.overlays, root, out)
    typer.echo(f"responsibility: {len(ids)} frames, {per_frame:.3f} s/frame; (frame, side) status {counts}")


def _offsets(offsets: list[int]) -> list[int]:
    from pipeline.errors import WishError

    ks = sorted({abs(int(k)) for k in offsets if k})
    if not ks:
        raise WishError(None, "responsibility.offsets must hold at least one non-zero offset")
    return ks


def _compute(frames, hands: dict, masks: dict, rp, sharded=None) -> tuple[list[str], list, list[dict]]:
    """Frame ids, quantised (2, h, w) maps and MOTION_SCORES rows, decoding each source video once."""
    from tqdm import tqdm

    from pipeline.responsibility import MotionConfig

    cfg = MotionConfig(rp.temperature, rp.flow, rp.ransac_reproj_threshold, rp.min_hand_points, rp.static_motion,
                       rp.camera_compensation, rp.hand_samples, rp.flow_preset)
    if sharded is not None:  # (params, input artifacts): the same per-source loop on the executor's workers, by frame range
        from pipeline.responsibility_shards import responsibility_sharded
        return responsibility_sharded(frames, hands, masks, rp, cfg, _one_source, *sharded)
    ids, maps, rows = [], [], []
    with tqdm(total=len(frames), desc="responsibility", unit="frame") as bar:
        for source, group in frames.groupby("source", sort=True):
            for fid, q, r in _one_source(Path(source), group, hands, masks, rp, cfg):
                ids.append(fid)
                maps.append(q)  # uint8: 287 float maps would hold ~240 MB
                rows.extend(r)
                bar.update()
    return ids, maps, rows


def _one_source(source: Path, group, hands: dict, masks: dict, rp, cfg):
    import numpy as np

    from pipeline.responsibility import frame_motion, quantise
    from pipeline.responsibility_io import neighbours_of, read_source_frames, score_rows, wanted_indices, work_geometry

    offsets = _offsets(rp.offsets)
    shape, scale = work_geometry(int(group.iloc[0].width), int(group.iloc[0].height), rp.work_side)
    decoded = read_source_frames(source, wanted_indices(list(group["clip_index"]), offsets), shape)
    for r in group.itertuples():
        fid, frame = str(r.frame_id), decoded.get(int(r.clip_index))
        nbs = {} if frame is None else neighbours_of(decoded, int(r.clip_index), offsets)
        if frame is None:  # clip shorter than frames.parquet says: nothing to compare with
            frame = np.zeros(shape, np.uint8)
        fm = frame_motion(frame, nbs, hands.get(fid, {}), scale, cfg)
        yield fid, quantise(fm.maps()), score_rows(fid, fm, masks.get(fid))


def _overlays(frames, ids: list[str], maps: list, df, n: int, root: Path, out: Path) -> None:
    from pipeline.io import read_image, write_image
    from pipeline.responsibility import dequantise
    from pipeline.responsibility_io import overlay, overlay_picks
    from pipeline.overlay import RESPONSIBILITY_LEGEND, with_legend

    usable = set(df.loc[df["status"] == "ok", "frame_id"])
    paths = dict(zip(frames["frame_id"], frames["image_path"]))
    index = {fid: i for i, fid in enumerate(ids)}
    for fid in overlay_picks(ids, usable, n):
        image = read_image(root / "frames" / paths[fid])
        write_image(with_legend(overlay(image, dequantise(maps[index[fid]])), RESPONSIBILITY_LEGEND,
                                f"COHESIV responsibility  {fid}"), out / "overlays" / f"{fid}.png")

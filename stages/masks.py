"""Stage `masks`: ranked object proposals and hand masks for every frame (COCO RLE)."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Propose object masks (masks.backend) near ROOT/hands hands on ROOT/frames frames -> ROOT/masks/masks.parquet."""
    from pipeline.io import atomic_dir, read_table, write_table
    from pipeline.masks import BACKENDS, build_proposer
    from pipeline.masks.run import propose_frames
    from pipeline.schemas import FRAMES, HANDS, MASKS

    p = setup(params)
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    hands = read_table(root / "hands" / "hands.parquet", HANDS)
    # only weight-free backends are spread over processes: model backends would load their weights per worker
    workers = p.masks.offline.workers if BACKENDS.backends[p.masks.backend].parallel else 1
    proposer = build_proposer(p.masks, p.common)
    with atomic_dir(root / "masks") as out:
        if p.common.executor == "ray":  # same per-frame proposer on Ray actors; else its own pool of processes (per frame)
            from pipeline.masks.shards import masks_sharded
            df, stats = masks_sharded(frames, root / "frames", hands, p)
            workers = stats["workers"]
        else:
            df, stats = propose_frames(frames, root / "frames", hands, proposer, p.masks.backend, workers,
                                       (p.masks, p.common))
        # only what the rows determine goes into the file: timings, worker count and executor are printed, so
        # that reruns and executors write the same bytes (DVC then sees an unchanged output)
        kept = {k: stats[k] for k in ("frames", "proposals_per_frame", "hand_masks")}
        write_table(df, MASKS, out / "masks.parquet", dict(backend=p.masks.backend, order="objects_then_hands", **kept))
    typer.echo(f"masks: {stats['frames']} frames, {stats['proposals_per_frame']} object proposals/frame, "
               f"{stats['hand_masks']} hand masks, {stats['s_per_frame']} s/frame wall, "
               f"{stats['cpu_s_per_frame']} CPU s/frame, {workers} workers ({p.masks.backend})")

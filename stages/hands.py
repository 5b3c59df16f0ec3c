"""Stage `hands`: detect hands (MediaPipe, CPU only) with their left/right side on every extracted frame."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Read ROOT/frames/frames.parquet, write ROOT/hands/hands.parquet (one row per detected hand)."""
    from pipeline.hands import detect_frames, hands_summary
    from pipeline.io import atomic_dir, read_table, write_table
    from pipeline.schemas import FRAMES, HANDS

    p = setup(params)
    frames_dir = root / "frames"
    frames = read_table(frames_dir / "frames.parquet", FRAMES)
    if p.common.executor != "local":  # same per-frame detector, on the executor's workers over shards of frames
        from pipeline.hands_shards import hands_sharded
        df = hands_sharded(frames, frames_dir, p)[0]
    else:
        df = detect_frames(frames, frames_dir, p.hands)
    summary = hands_summary(frames, df)
    meta = dict(summary, side_source=p.hands.side_source, mirror_input=p.hands.mirror_input,
                device="cpu (MediaPipe has no GPU path here; common.device does not apply)")
    with atomic_dir(root / "hands") as out:
        write_table(df, HANDS, out / "hands.parquet", meta)
    typer.echo(f"hands: {summary['hands']} hands on {summary['frames']} frames "
               f"(0/1/2 hands: {summary['frames_0']}/{summary['frames_1']}/{summary['frames_2']})")

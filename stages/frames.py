"""Stage `frames`: decode videos into frames linked to EPIC frame numbers and covering narrations."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Decode frames.sources into ROOT/frames/{frames.parquet,images/}."""
    from pipeline.data import epic
    from pipeline.data.evalset import eval_video_ids
    from pipeline.frames import discover, extract
    from pipeline.io import atomic_dir, write_table
    from pipeline.schemas import FRAMES

    p = setup(params, torch=False)
    fp = p.frames
    narrations = epic.load_narrations(fp.narrations_csv)
    fps = epic.load_video_info(fp.video_info_csv)
    clips = epic.load_clips(fp.clips_csv) if fp.clips_csv else None
    excluded = eval_video_ids(p.common.eval_dirs)
    sources = discover(fp.sources, clips)
    with atomic_dir(root / "frames") as out:
        df, skipped = extract(sources, fp.stride, fp.max_side, fps, narrations, excluded, set(fp.val_videos), out,
                              fp.folder_stride)
        if fp.require_narration:
            df = df[df["narration_ids"].map(len) > 0]
        covered = int((df["narration_ids"].map(len) > 0).sum())
        meta = dict(stride=fp.stride, n_sources=len(sources), narration_coverage=f"{covered / max(len(df), 1):.4f}",
                    excluded_eval_videos=",".join(sorted(excluded)), **skipped)
        write_table(df, FRAMES, out / "frames.parquet", meta)
    typer.echo(f"frames: {len(df)} frames from {len(sources)} sources ({skipped['eval_video_sources']} eval-video "
               f"sources skipped); {covered} ({covered / max(len(df), 1):.1%}) covered by a narration")

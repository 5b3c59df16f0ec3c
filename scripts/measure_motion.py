"""Measure the responsibility stage on the real training clips (needs artifacts/frames, hands, masks).

    python scripts/measure_motion.py [--root artifacts] [--params params.yaml] [--settings camera_compensation=true ...]

For each setting it runs the stage into a temp root (frames/hands/masks linked from --root) and reports seconds per
frame, (frame, side) status counts and agreement with clips.csv's weak label (`hand`: the hand holding
`object_category`). There is no ground truth on training clips, so agreement is only a sanity signal. It also
checks whether the eval frames have neighbouring video frames (COHESIV's All/Pair/Hand/Object IoU needs them).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.io import read_table
from pipeline.schemas import FRAMES, MASKS, MOTION_SCORES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("artifacts"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--settings", nargs="*", default=["camera_compensation=true", "camera_compensation=false"],
                    help="responsibility overrides KEY=YAMLVALUE, one run each ('' = params as they are)")
    ap.add_argument("--confident", type=float, default=0.5, help="top region score that counts as confident")
    args = ap.parse_args()
    report = {"eval_neighbours": eval_neighbours(args.params)}
    for setting in args.settings:
        report[setting or "params"] = measure(args.root, args.params, setting, args.confident)
    print(json.dumps(report, indent=2))


def measure(root: Path, params: Path, setting: str, confident: float) -> dict:
    from stages.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dep in ("frames", "hands", "masks"):
            (tmp / dep).symlink_to((root / dep).resolve())
        raw = yaml.safe_load(params.read_text())
        if setting:
            key, value = setting.split("=", 1)
            raw["responsibility"][key] = yaml.safe_load(value)
        (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
        if cli(["responsibility", "--params", str(tmp / "params.yaml"), "--root", str(tmp)]) != 0:
            raise SystemExit(f"responsibility stage failed for setting {setting!r}")
        stats = json.loads((tmp / "responsibility" / "stats.json").read_text())
        scores = read_table(tmp / "responsibility" / "motion_scores.parquet", MOTION_SCORES)
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    masks = read_table(root / "masks" / "masks.parquet", MASKS)
    return dict(seconds_per_frame=stats["seconds_per_frame"], status=stats["status"],
                **weak_label_agreement(scores, frames, masks, params, confident))


def weak_label_agreement(scores: pd.DataFrame, frames: pd.DataFrame, masks: pd.DataFrame, params: Path,
                         confident: float) -> dict:
    """How often the clip's named hand moves more / owns a higher-scored object region than the other hand."""
    named = named_hands(frames, params)
    objects = masks.loc[masks["kind"] != "hand", ["frame_id", "mask_id"]]
    per_side = side_table(scores, objects)
    wide = per_side.pivot(index="frame_id", columns="side")
    out = {}
    for label, col in (("hand_motion", "hand_motion"), ("top_region", "top")):
        a, b = _named_other(wide[col], named)
        both = np.isfinite(a) & np.isfinite(b)
        out[f"{label}_named_higher"] = _frac((a > b)[both])
        out[f"{label}_frames_compared"] = int(both.sum())
    a, b = _named_other(wide["top"], named)
    a, b = np.nan_to_num(a, nan=0.0), np.nan_to_num(b, nan=0.0)
    decided = (a >= confident) ^ (b >= confident)
    out["confident_top_only_named"] = _frac((a >= confident)[decided])
    out["confident_frames_decided"] = int(decided.sum())
    return out


def side_table(scores: pd.DataFrame, objects: pd.DataFrame) -> pd.DataFrame:
    """One row per (frame, side): hand_motion (ok sides only) and the best object proposal's motion score."""
    ok = scores[scores["status"] == "ok"]
    obj = ok.merge(objects, on=["frame_id", "mask_id"])
    top = obj.groupby(["frame_id", "side"])["motion_score"].max().rename("top")
    motion = ok.groupby(["frame_id", "side"])["hand_motion"].first()
    base = scores.drop_duplicates(["frame_id", "side"]).set_index(["frame_id", "side"])[[]]
    return base.join(motion).join(top).reset_index()


def named_hands(frames: pd.DataFrame, params: Path) -> pd.Series:
    """frame_id -> the side clips.csv names for the frame's clip (frames without a clip row are dropped)."""
    from pipeline.params import load_params

    clips_csv = load_params(params).frames.clips_csv
    clips = pd.read_csv(clips_csv)
    by_file = dict(zip(clips["file"].map(lambda f: Path(f).name), clips["hand"]))
    side = frames["source"].map(lambda s: by_file.get(Path(s).name))
    return pd.Series(side.to_numpy(), index=frames["frame_id"]).dropna()


def _named_other(col: pd.DataFrame, named: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    col = col.reindex(columns=["left", "right"])
    named = named[named.index.isin(col.index)]
    rows = col.loc[named.index]
    a = np.where(named == "left", rows["left"], rows["right"]).astype(float)
    b = np.where(named == "left", rows["right"], rows["left"]).astype(float)
    return a, b


def _frac(x: np.ndarray) -> float | None:
    return round(float(np.mean(x)), 3) if len(x) else None


def eval_neighbours(params: Path) -> dict:
    """Does any eval frame have neighbouring frames we could decode? (COHESIV's metrics need flow at t.)"""
    from pipeline.data.evalset import eval_video_ids
    from pipeline.frames import discover
    from pipeline.params import load_params

    p = load_params(params)
    eval_ids = eval_video_ids(p.common.eval_dirs)
    files = [f for d in p.common.eval_dirs for f in Path(d).rglob("*") if f.is_file()]
    videos_in_eval = [str(f) for f in files if f.suffix.lower() in {".mp4", ".avi", ".mov", ".mkv", ".webm"}]
    dirs = list(p.frames.sources) + [str(Path(p.frames.sources[0]).parent / "rgb_frames")]
    sources = discover([d for d in dirs if Path(d).exists()], None)
    matching = sorted({str(s.path) for s in sources if s.video_id in eval_ids})
    return dict(eval_videos=sorted(eval_ids), eval_files=len(files), videos_in_eval_dirs=videos_in_eval,
                training_sources_of_eval_videos=matching,
                neighbours_available=bool(videos_in_eval or matching))


if __name__ == "__main__":
    main()

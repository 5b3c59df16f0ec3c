"""Measure the hands stage: detection recall / side accuracy on an eval set, and the position prior on VISOR.

    python scripts/measure_hands.py evalset [--evalset ../shared/data/evalset] [--dilate 5]
    python scripts/measure_hands.py visor   [--source ../shared/data/visor/visor_sparse_compact.tar.xz]
    python scripts/measure_hands.py masks   [--set forearm_fan=0 --set forearm_fan=20 ...]

`masks`: hand masks (masks.hand_mask, one variant per --set of comma-separated overrides, plus params.yaml's) of
the detected hands, drawn as `score` draws them (hands only): hand mIoU (classes 1, 2 summed over the set), GT
hands whose own-side mask reaches IoU >= 0.5, and seconds per frame.

Eval-set matching rule: a detection matches a GT hand mask (left_hand/right_hand, dilated by --dilate px) when
at least half of its 21 landmarks fall inside it; each detection goes to the GT mask holding most of its
landmarks, each GT mask takes at most one detection. Recall = matched GT masks / GT masks; a false positive is a
detection that matches no GT hand. Side accuracy is over matched detections, for every side_source.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import typer

from pipeline.hands import HandDetector, assign_sides
from pipeline.params import HandsParams
from pipeline.types import Hand

app = typer.Typer(add_completion=False)
SOURCES = ("model", "position", "fused")
# name -> detection settings (explicit, so results do not move with params.yaml); "default" = HandsParams().
# Sides are re-assigned per side_source on the same detections.
_FIRST = [["full", "pad25"]]
VARIANTS = {
    "default": {},
    "before": {"cascade": _FIRST},  # what the stage ran before the view cascade
    "first_group": {"cascade": [["full", "pad25", "half_left", "half_right"]]},
    "one_group": {"cascade": [[v for g in HandsParams().cascade for v in g]]},
}


def match_hands(hands: list[Hand], gt: list[tuple[str, np.ndarray]], min_inside: float = 0.5) -> dict[int, int]:
    """detection index -> GT index, by landmarks inside the GT masks (see module docstring)."""
    inside = np.zeros((len(hands), len(gt)))
    for i, hd in enumerate(hands):
        xy = np.round(hd.landmarks).astype(int)
        for j, (_, m) in enumerate(gt):
            ok = (xy[:, 0] >= 0) & (xy[:, 0] < m.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < m.shape[0])
            inside[i, j] = m[xy[ok, 1], xy[ok, 0]].sum() / len(xy)
    pairs: dict[int, int] = {}
    for i, j in sorted(np.ndindex(inside.shape), key=lambda ij: -inside[ij]):
        if inside[i, j] >= min_inside and i not in pairs and j not in pairs.values():
            pairs[i] = j
    return pairs


def gt_hands(ev, frame, dilate: int) -> list[tuple[str, np.ndarray]]:
    kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
    return [(side, cv2.dilate(m.astype(np.uint8), kernel) > 0)
            for side in ("left", "right") for m in ev.masks(frame, f"{side}_hand")]


def score_variant(ev, images, gts, params: HandsParams) -> dict:
    n_gt = sum(len(g) for g in gts)
    stats = {s: 0 for s in SOURCES} | dict(matched=0, fp=0, dets=0)
    with HandDetector(params) as det:
        det.detect(images[0])  # warm-up: the first call builds MediaPipe's graph
        t0 = time.perf_counter()
        found = [det.detect(img) for img in images]
        secs = (time.perf_counter() - t0) / len(images)
    for hands, gt in zip(found, gts):
        pairs = match_hands(hands, gt)
        stats["matched"] += len(pairs)
        stats["dets"] += len(hands)
        stats["fp"] += len(hands) - len(pairs)
        for src in SOURCES:
            assign_sides(hands, src, params.side_min_confidence)
            stats[src] += sum(hands[i].side == gt[j][0] for i, j in pairs.items())
    # side accuracy over ALL GT hands: a missed hand counts as wrong
    return dict(recall=stats["matched"] / n_gt, n_gt=n_gt, matched=stats["matched"], fp=stats["fp"],
                s_per_frame=secs, **{f"side_{s}": stats[s] / n_gt for s in SOURCES})


@app.command()
def evalset(evalset: Path = Path("../shared/data/evalset"), dilate: int = 5,
            variants: str = ",".join(VARIANTS)) -> None:
    """Recall, false positives, side accuracy over all GT hands and speed per detection variant, mirror on/off."""
    from pipeline.data.evalset import load_evalset

    ev = load_evalset(evalset)
    images = [ev.image(f) for f in ev.frames]
    gts = [gt_hands(ev, f, dilate) for f in ev.frames]
    print(f"{len(images)} frames, {sum(map(len, gts))} GT hands; match = >=50% landmarks in GT mask dilated {dilate}px")
    print(f"{'variant':<16}{'mirror':<7}{'recall':>7}{'match':>6}{'FP':>4}{'side_model':>11}{'side_pos':>9}"
          f"{'side_fused':>11}{'s/frame':>8}")
    for name in variants.split(","):
        for mirror in (True, False):
            r = score_variant(ev, images, gts, HandsParams(**VARIANTS[name], mirror_input=mirror))
            print(f"{name:<16}{str(mirror):<7}{r['recall']:>7.3f}{r['matched']:>6}{r['fp']:>4}{r['side_model']:>11.3f}"
                  f"{r['side_position']:>9.3f}{r['side_fused']:>11.3f}{r['s_per_frame']:>8.3f}")


@app.command()
def masks(evalset: Path = Path("../shared/data/evalset"), params: Path = Path("params.yaml"),
          set_: list[str] = typer.Option([], "--set", help="k=v[,k=v] overrides of masks.hand_mask")) -> None:
    """Hand-mask variants on the eval set's detected hands (see module docstring)."""
    from pipeline.data.evalset import load_evalset
    from pipeline.masks.handmask import hand_masks
    from pipeline.metrics import mask_iou
    from pipeline.params import load_params

    base = load_params(params)
    ev = load_evalset(evalset)
    with HandDetector(base.hands) as det:
        data = [(ev.image(f), ev.labels(f)) for f in ev.frames]
        hands = [det.detect(img) for img, _ in data]
    for spec in ["default", *set_]:
        over = dict(kv.split("=", 1) for kv in spec.split(",")) if spec != "default" else {}
        mp = base.masks.model_copy(update={"hand_mask": base.masks.hand_mask.model_validate(
            {**base.masks.hand_mask.model_dump(), **over})})
        inter, union, ok, n, t = np.zeros(3), np.zeros(3), 0, 0, time.perf_counter()
        for (img, gt), hs in zip(data, hands):
            pred = np.zeros(gt.shape, np.uint8)
            for p in hand_masks(img, hs, mp):
                pred[p.mask & (pred == 0)] = 1 if p.side == "left" else 2
            for c in (1, 2):
                inter[c] += np.sum((pred == c) & (gt == c))
                union[c] += np.sum((pred == c) | (gt == c))
                if (gt == c).any():
                    n, ok = n + 1, ok + (mask_iou(gt == c, pred == c) >= 0.5)
        secs = (time.perf_counter() - t) / len(data)
        print(f"{spec:<40} hand mIoU {(inter[1:] / union[1:]).mean():.3f}  IoU>=0.5 {ok}/{n}  {secs:.2f} s/frame")


def weak_sets(root: Path, data: Path) -> dict[str, list[tuple[np.ndarray, str]]]:
    """(image, named hand) of the training frames with a weak label: frames of stable-grasp clips (clips.csv
    `hand` holds `object_category` all through the clip) and extra_frames.csv rows with a `weak_hand`."""
    import pandas as pd

    from pipeline.io import read_image, read_table
    from pipeline.masks.common import work_image
    from pipeline.schemas import FRAMES

    clips = pd.read_csv(data / "epic" / "clips.csv")
    named = {Path(f).name: h for f, k, h in zip(clips["file"], clips["kind"], clips["hand"]) if k == "stablegrasp"}
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    grasp = [(read_image(root / "frames" / rel), named[Path(src).name])
             for src, rel in zip(frames["source"], frames["image_path"]) if Path(src).name in named]
    extra = pd.read_csv(data / "epic" / "extra_frames.csv")
    extra = extra[extra["weak_hand"].isin(["left", "right"])]
    # the frames stage stores frames at max_side 854: detect at that size here too
    contact = [(work_image(read_image(data / "epic" / p), 854)[0], h) for p, h in zip(extra["path"], extra["weak_hand"])]
    return {"stable_grasp_clips": grasp, "extra_frames": contact}


@app.command()
def weak(root: Path = Path("artifacts"), data: Path = Path("../shared/data"),
         variants: str = ",".join(VARIANTS)) -> None:
    """Training frames with weak labels (not used for anything else): is the named hand detected (a hand of that
    side), and how often is the other hand detected too. Needs ROOT/frames (dvc repro frames)."""
    sets = weak_sets(root, data)
    print({k: len(v) for k, v in sets.items()})
    for name in variants.split(","):
        with HandDetector(HandsParams(**VARIANTS[name])) as det:
            for set_name, items in sets.items():
                t0 = time.perf_counter()
                sides = [[h.side for h in det.detect(img)] for img, _ in items]
                secs = (time.perf_counter() - t0) / len(items)
                hit = np.mean([hand in s for s, (_, hand) in zip(sides, items)])
                other = np.mean([({"left": "right", "right": "left"}[hand] in s) for s, (_, hand) in zip(sides, items)])
                print(f"{name:<12}{set_name:<20} named hand found {hit:.3f}  other hand found {other:.3f}  "
                      f"{secs:.3f} s/frame")


def polygon_centroid_x(polygons: list[np.ndarray]) -> float:
    """Area-weighted x centroid of an entity's polygons (cv2.moments on each contour)."""
    m00 = m10 = 0.0
    for p in polygons:
        if len(p) < 3:
            continue
        mo = cv2.moments(p.astype(np.float32))
        sign = 1.0 if mo["m00"] >= 0 else -1.0  # orientation-independent
        m00, m10 = m00 + sign * mo["m00"], m10 + sign * mo["m10"]
    return m10 / m00 if m00 > 0 else float("nan")


@app.command()
def visor(source: Path = Path("../shared/data/visor/visor_sparse_compact.tar.xz")) -> None:
    """How often 'hand centroid in the left half = left hand' holds on all VISOR hands."""
    from pipeline.data.visor import VISOR_SIZE, iter_visor_frames

    counts = {s: [0, 0] for s in ("left", "right")}  # side -> [correct, total]
    videos = set()
    for frame in iter_visor_frames(source):
        videos.add(frame.video_id)
        for hand in frame.hands:
            x = polygon_centroid_x(hand.polygons)
            if np.isnan(x):
                continue
            guess = "left" if x < VISOR_SIZE[0] / 2 else "right"
            counts[hand.side][0] += guess == hand.side
            counts[hand.side][1] += 1
    for side, (ok, n) in counts.items():
        print(f"{side} hands: {ok}/{n} = {ok / n:.3f} on the {side} half")
    ok, n = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    print(f"overall ({len(videos)} videos): {ok}/{n} = {ok / n:.3f}")


if __name__ == "__main__":
    app()

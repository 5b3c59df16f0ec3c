"""Which Stage-2 decision rule, and which way of setting its "holds" threshold, holds up across seeds: retrain the
heads per seed on the pipeline's own pseudo-labels (as measure_heads_seeds.py), then score every rule on dev and on
the seed's held-out TRAINING videos (agreement with the pseudo-labels' holds / none, and the weak labels: how often
the named hand of a stable-grasp clip or extra frame is said to hold something vs the other hand).

    python scripts/measure_decision_rules.py [--root artifacts] [--seeds 5]

Rules (r = the chosen region; pc: contact probabilities, pm: matching probabilities with "none" last):
  both            pipeline.heads.decide: r = argmax pm * pc, holds iff (pc[r] + 1 - pm[none]) / 2 >= t (`wish`)
  match           r = argmax over regions and none (`wish_matching_only`, no threshold)
  contact         r = argmax pc, holds iff pc[r] >= t (`wish_contact_only`)
  match_pick      r = argmax pm over regions, holds as in `both`
Thresholds t: agree (the grid value that best agrees with the held-out pseudo-labels: heads.calibrate_threshold),
rate (the predicted holds rate closest to the held-out pseudo-labels' rate), fixed (0.5).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
RULES = {"both": ("agree", "rate", "fixed"), "match": ("-",), "contact": ("agree", "rate", "fixed"),
         "match_pick": ("agree", "rate", "fixed")}


def rule_decide(rule: str, pc: np.ndarray, pm: np.ndarray, t: float) -> tuple[int, bool]:
    from pipeline.heads import decide

    if rule == "both":
        return decide(pc, pm, t)
    if rule == "match":
        return decide(None, pm, t)
    if rule == "contact":
        return decide(pc, None, t)
    r = int(np.argmax(pm[:-1]))
    return r, bool((pc[r] + 1 - pm[-1]) / 2 >= t)


def threshold(rule: str, how: str, probs: list, held: np.ndarray) -> float:
    if how == "-":
        return float("nan")
    if how == "fixed":
        return 0.5
    said = np.array([[rule_decide(rule, pc, pm, t)[1] for pc, pm in probs] for t in GRID])  # (T, N)
    if how == "agree":
        return float(GRID[int(np.argmax((said == held).mean(1)))])
    return float(GRID[int(np.argmin(np.abs(said.mean(1) - held.mean())))])


def dev_miou(heads, rule: str, t: float, ctxs, p) -> float:
    from pipeline.labelmap import Decision, compose
    from pipeline.metrics import Scorer
    from pipeline.types import SIDES

    sc = Scorer()
    for ctx in ctxs:
        dec = {}
        for s in SIDES:
            if ctx.hand(s) is None or not ctx.regions.hands[s].present or not ctx.regions.n_regions:
                dec[s] = Decision(s, ctx.hand(s) is not None)
                continue
            pc, pm = heads.probs(ctx.regions, s)
            r, holds = rule_decide(rule, pc, pm, t)
            # the drawing order of overlapping objects follows the heads' confidence, as in `score`
            dec[s] = Decision(s, True, int(ctx.regions.mask_ids[r]) if holds else -1, float(pc[r]), float(pm[r]))
        sc.add(compose(ctx.shape, ctx.hand_masks, dec, ctx.objects, p.score.both_iou), ctx.gt)
    return float(sc.result()["object_miou"] or 0.0)


def main(root: Path = Path("artifacts"), params: Path = Path("params.yaml"), seeds: int = 5) -> None:
    from measure_heads_seeds import _contexts, training_samples
    from pipeline.heads import split_by_video, train_heads
    from pipeline.params import load_params
    from pipeline.plcheck import weak_hands

    p = load_params(params)
    samples, frames, videos = training_samples(p, root)
    named = weak_hands(frames, p.frames.clips_csv, p.pseudolabel.weak_csv)
    _, ctxs = _contexts(p, root)
    rows: dict[tuple[str, str], list[tuple]] = {}
    for seed in range(seeds):
        heads, _ = train_heads(samples, p.heads, seed, "cpu", videos)
        _, val = split_by_video(samples, videos, p.heads.val_fraction, seed)
        probs = [heads.probs(s.frame, s.side) for s in val]
        held = np.array([s.target >= 0 for s in val])
        for rule, hows in RULES.items():
            for how in hows:
                t = threshold(rule, how, probs, held)
                said = np.array([rule_decide(rule, pc, pm, t)[1] for pc, pm in probs])
                weak = [(named[s.frame.frame_id] == s.side, h) for s, h in zip(val, said) if s.frame.frame_id in named]
                nm = np.mean([h for is_named, h in weak if is_named] or [np.nan])
                ot = np.mean([h for is_named, h in weak if not is_named] or [np.nan])
                rows.setdefault((rule, how), []).append(
                    (dev_miou(heads, rule, t, ctxs, p), t, float((said == held).mean()), nm, ot))
                typer.echo(f"seed {seed} {rule:10s} {how:5s} t {t:.2f} dev {rows[(rule, how)][-1][0]:.3f} "
                           f"held-out agree {rows[(rule, how)][-1][2]:.2f} named {nm:.2f} other {ot:.2f}")
    typer.echo("\n| rule | threshold | dev object mIoU, mean ± sd | per seed | thresholds | held-out agreement | "
               "named holds | other holds |\n|---|---|---|---|---|---|---|---|")
    for (rule, how), v in rows.items():
        a = np.array(v, float)
        typer.echo(f"| {rule} | {how} | {a[:, 0].mean():.3f} ± {a[:, 0].std(ddof=1) if len(a) > 1 else 0:.3f} | "
                   f"{' / '.join(f'{x:.3f}' for x in a[:, 0])} | {' '.join(f'{x:.2f}' for x in a[:, 1])} | "
                   f"{a[:, 2].mean():.2f} | {np.nanmean(a[:, 3]):.2f} | {np.nanmean(a[:, 4]):.2f} |")


if __name__ == "__main__":
    typer.run(main)

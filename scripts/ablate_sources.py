"""The pseudo-label source ablation (issue: narration only, motion only, priors only, fused), as DVC experiments:
one `dvc exp run -S pseudolabel.source=S` per source on the same frames, then one table from `dvc exp show --json`
with the dev rows of metrics/score.json and the training-frame checks of artifacts/pseudolabel/summary.json.

    python scripts/ablate_sources.py [--sources priors motion narration fused] [--prefix src] [--no-run]

The default source (params.yaml) runs last, so the workspace ends where it started. --no-run only tabulates
experiments that already exist under those names.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer
import yaml

ROWS = ("wish", "wish_matching_only", "wish_contact_only", "pseudolabel", "pseudolabel_priors", "baseline_nearest")
CHECKS = ("named_hand_holds", "other_hand_holds", "consecutive_iou_median", "pick_area_over_hand_median")


def _experiments() -> dict[str, dict]:
    """{experiment name: {metrics file: metrics}} of every experiment on any commit (the newest of a name)."""
    out = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"], check=True,
                         capture_output=True, text=True).stdout
    found = {}
    for base in json.loads(out):
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                metrics = {f: (v.get("data") or {}) for f, v in (data.get("metrics") or {}).items()}
                found.setdefault(exp.get("name") or rev.get("name"), metrics)  # newest commit first
    return found


def _get(metrics: dict, file_end: str, key: str) -> float | None:
    for f, vals in metrics.items():
        if f.endswith(file_end):
            return vals.get(key)
    return None


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def main(sources: list[str] = typer.Option(["priors", "motion", "narration", "fused"]), prefix: str = "src",
         run: bool = True, params: Path = Path("params.yaml")) -> None:
    default = yaml.safe_load(params.read_text())["pseudolabel"]["source"]
    order = [s for s in sources if s != default] + [s for s in sources if s == default]
    if run:
        for s in order:
            typer.echo(f"--- dvc exp run -n {prefix}-{s} -S pseudolabel.source={s}", err=True)
            subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-n", f"{prefix}-{s}",
                            "-S", f"pseudolabel.source={s}"], check=True)
    exps = _experiments()
    head = ["source"] + [f"{r} mIoU" for r in ROWS] + list(CHECKS)
    typer.echo("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for s in order:
        m = exps.get(f"{prefix}-{s}")
        if m is None:
            typer.echo(f"| {s} | (no experiment {prefix}-{s}) |")
            continue
        cells = [_fmt(_get(m, "score.json", f"{r}.object_miou")) for r in ROWS]
        cells += [_fmt(_get(m, "pseudolabel/summary.json", c)) for c in CHECKS]
        typer.echo(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    typer.run(main)

"""Is a Stage 1 (align) change within noise? Per variant and seed, re-run `align` and `pseudolabel` (the stages'
own commands, in a scratch root whose upstream artifacts link to ROOT's), then `heads` on those pseudo-labels
with the same seed, and report what each seed gives: the align stage's wall time, the pseudo-labels' training-frame
checks (named / other hand holds, consecutive-pick IoU), and the dev object mIoU of `wish`, its ablation
`wish_matching_only` and the `pseudolabel` row (the rule on eval frames, through this seed's adapters).

    python scripts/measure_align_seeds.py [--root artifacts] [--seeds 4] [--variants "" --variants hidden=128 ...]

A variant is comma-separated align.* overrides ("" = params.yaml as is); `common.seed` is set to the seed, so seed 0
of "" reproduces the pipeline's own align -> pseudolabel -> heads (up to the machine's float rounding).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

UPSTREAM = ("frames", "nouns", "hands", "masks", "embed", "responsibility", "perceive")
METHODS = ("wish", "wish_matching_only", "pseudolabel")
CHECKS = ("named_hand_holds", "other_hand_holds", "consecutive_iou_median")


def variant_params(params: Path, variant: str, seed: int, out: Path) -> Path:
    """params.yaml with common.seed = seed and the variant's align.* overrides, written to OUT."""
    raw = yaml.safe_load(params.read_text())
    raw["common"]["seed"] = seed
    for kv in (kv for kv in variant.split(",") if kv):
        key, value = kv.split("=", 1)
        raw["align"][key] = yaml.safe_load(value)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def one_run(params: Path, scratch: Path, models, ctxs) -> dict[str, float]:
    """align, pseudolabel and heads (their seed: PARAMS' common.seed) in SCRATCH; the row of numbers for this run."""
    import json

    from measure_heads_seeds import dev_miou

    from pipeline.align import load_adapters
    from pipeline.heads import load_heads
    from pipeline.params import load_params
    from stages import align, heads, pseudolabel

    start = time.perf_counter()
    align.run(params, scratch)
    row = {"align_s": time.perf_counter() - start}
    pseudolabel.run(params, scratch)
    summary = json.loads((scratch / "pseudolabel" / "summary.json").read_text())
    row |= {k: float(summary.get(k) or 0.0) for k in CHECKS}
    heads.run(params, scratch)
    # Models caches its checkpoints as properties: this run's adapters and heads replace them
    models.__dict__["heads"] = load_heads(scratch / "heads" / "heads.pt")
    models.__dict__["adapters"] = load_adapters(scratch / "align" / "adapters.pt")
    return row | dev_miou(models, ctxs, load_params(params), METHODS)


def main(root: Path = Path("artifacts"), params: Path = Path("params.yaml"), seeds: int = 4,
         variants: list[str] = typer.Option([""])) -> None:
    from measure_heads_seeds import _contexts

    from pipeline.params import load_params

    models, ctxs = _contexts(load_params(params), root)
    cols = ("align_s", *CHECKS, *METHODS)
    with tempfile.TemporaryDirectory(prefix="wish-align-seeds-") as tmp:
        scratch = Path(tmp)
        for name in UPSTREAM:
            (scratch / name).symlink_to((root / name).resolve(), target_is_directory=True)
        for variant in variants:
            rows = []
            for seed in range(seeds):
                run_params = variant_params(params, variant, seed, scratch / "params.yaml")
                rows.append(one_run(run_params, scratch, models, ctxs))
                typer.echo(f"[{variant or 'params.yaml'}] seed {seed}: " +
                           ", ".join(f"{k} {rows[-1][k]:.3f}" for k in cols))
            a = np.array([[r[k] for k in cols] for r in rows])
            sd = a.std(0, ddof=1) if len(a) > 1 else np.zeros(len(cols))
            typer.echo(f"[{variant or 'params.yaml'}] mean ± sd over {seeds} seeds: " +
                       ", ".join(f"{k} {m:.3f} ± {s:.3f}" for k, m, s in zip(cols, a.mean(0), sd)))


if __name__ == "__main__":
    typer.run(main)

"""Stage `perceive`: hands, hand masks, proposals and region embeddings of every score.evalset frame, once."""
from __future__ import annotations

from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Perceive score.evalset's frames as `score` would (pipeline.perceive.Perceiver) -> ROOT/perceive/; `score` reads it
    instead of perceiving, so sweeps over align / pseudolabel / heads params skip this work."""
    from pipeline.data.evalset import load_evalset
    from pipeline.io import atomic_dir
    from pipeline.perceive import Perceiver, perceive_evalset, perception_key, write_perception

    p = setup(params)
    es = load_evalset(p.score.evalset)
    seen = perceive_evalset(es, Perceiver(p), p)
    with atomic_dir(root / "perceive") as out:
        write_perception(out, seen, perception_key(p))
    n = sum(len(s.proposals) for _, _, s in seen)
    typer.echo(f"perceive: {len(seen)} frames of {p.score.evalset}, {n} masks -> {root / 'perceive'}/")

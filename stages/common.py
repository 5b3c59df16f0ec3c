"""Options shared by every stage command: the params file and the artifacts root."""
from __future__ import annotations

from pathlib import Path

import typer

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read")
RootOpt = typer.Option(Path("artifacts"), "--root", help="artifacts root: inputs from ROOT/<dep>/, outputs to ROOT/<stage>/")


def setup(params_path: Path):
    """Load params, seed everything and return them (every stage starts here)."""
    from pipeline.device import seed_everything
    from pipeline.params import load_params

    p = load_params(params_path)
    seed_everything(p.common.seed, p.common.num_threads)
    return p

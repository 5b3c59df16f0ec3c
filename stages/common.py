"""Options shared by every stage command: the params file and the artifacts root."""
from __future__ import annotations

from pathlib import Path

import typer

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read")
RootOpt = typer.Option(Path("artifacts"), "--root", help="artifacts root: inputs from ROOT/<dep>/, outputs to ROOT/<stage>/")


def setup(params_path: Path, torch: bool = True):
    """Load params, seed everything and return them (every stage starts here). `torch=False` for stages that
    run no model: they then never import torch (seconds of start-up)."""
    from pipeline.device import seed_everything
    from pipeline.params import load_params

    p = load_params(params_path)
    seed_everything(p.common.seed, p.common.num_threads, torch=torch)
    return p

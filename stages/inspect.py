"""`wish inspect PATH`: schema, version, row count and a few rows of any artifact; kind, config, parameter count
and training summary of a checkpoint."""
from __future__ import annotations

from pathlib import Path

import typer


def run(path: Path = typer.Argument(..., help="a .parquet, .h5, .json, .csv or .pt artifact, or a folder of them"),
        rows: int = typer.Option(5, "--rows", "-n")) -> None:
    """Print what an artifact is: schema, version, rows (tables); kind, config, parameters, training (checkpoints)."""
    from pipeline.inspect import describe

    typer.echo(describe(path, rows))

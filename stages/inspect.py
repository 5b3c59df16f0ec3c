"""`wish inspect PATH`: schema, version, row count and a few rows of any artifact."""
from __future__ import annotations

from pathlib import Path

import typer


def run(path: Path = typer.Argument(..., help="a .parquet, .h5 or .json artifact"), rows: int = typer.Option(5, "--rows", "-n")) -> None:
    """Print schema, version, row count and the first rows of an artifact."""
    from pipeline.inspect import describe

    typer.echo(describe(path, rows))

"""`wish` console script: one subcommand per DVC stage, plus inspect/predict/evaluate.

`main(argv)` is what tests call; it turns bad input (WishError) into a message and exit code 2.
"""
from __future__ import annotations

import importlib
import sys

import click
import typer

from pipeline.errors import WishError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

# (command, module in stages/, function). Modules are imported lazily so `wish inspect` stays fast.
COMMANDS = [
    ("frames", "frames", "run"),
    ("nouns", "nouns", "run"),
    ("hands", "hands", "run"),
    ("masks", "masks", "run"),
    ("embed", "embed", "run"),
    ("align", "align", "run"),
    ("pseudolabel", "pseudolabel", "run"),
    ("heads", "heads", "run"),
    ("perceive", "perceive", "run"),
    ("score", "score", "run"),
    ("responsibility", "responsibility", "run"),
    ("predict", "predict", "predict"),
    ("evaluate", "predict", "evaluate"),
    ("inspect", "inspect", "run"),
    ("report", "report", "run"),
]


def _register() -> None:
    for name, module, func in COMMANDS:
        try:
            mod = importlib.import_module(f"stages.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"stages.{module}":
                continue  # stage not built yet
            raise
        app.command(name)(getattr(mod, func))


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, prog_name="wish", standalone_mode=False)
    except WishError as e:
        print(f"wish: error: {e}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

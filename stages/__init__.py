"""Thin typer commands, one per DVC stage; the logic lives in `pipeline`."""

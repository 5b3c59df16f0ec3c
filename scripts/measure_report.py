"""Measure an HTML report as a browser sees it: size, load time in headless Chromium, a screenshot.

    python scripts/measure_report.py metrics/report.html --screenshot notes/report_screenshot.png

Load time: the page's own performance.now() at `load` (stamped on <body data-load-ms>), median of --runs fresh
browser starts; wall: the whole `chromium --dump-dom` call, browser start included.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import typer


def main(page: Path, screenshot: Path = typer.Option(None, help="write a 1280x1600 screenshot here"),
         runs: int = typer.Option(3, min=1)) -> None:
    from pipeline.browser import dump_dom, load_ms, screenshot as shoot

    loads, walls = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        dom = dump_dom(page)
        walls.append(time.perf_counter() - t0)
        loads.append(load_ms(dom))
    typer.echo(f"{page}: {page.stat().st_size / 1e6:.2f} MB, {dom.count('<img')} images, "
               f"load {statistics.median(loads)} ms (runs {loads}), wall {statistics.median(walls):.2f} s per browser start")
    if screenshot:
        shoot(page, screenshot)
        typer.echo(f"screenshot: {screenshot} ({screenshot.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    typer.run(main)

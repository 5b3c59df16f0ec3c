"""Headless Chromium for checking the HTML reports as a browser renders them (tests, scripts/measure_report.py).

Chromium is the Debian package `chromium` (`.ci/run` installs it); `find_chromium()` is None without it, and
callers skip with that reason. `--dump-dom` prints the DOM after the page's scripts ran and `load` fired, so the
page's own timing (body[data-load-ms], performance.now() at load) can be read from it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")
NOT_FOUND = "headless Chromium not installed (Debian package `chromium`; .ci/run installs it with apt-get)"


def find_chromium() -> str | None:
    return next((shutil.which(n) for n in NAMES if shutil.which(n)), None)


def run_chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise RuntimeError(NOT_FOUND)
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(page: str | Path) -> str:
    return run_chromium("--dump-dom", Path(page).resolve().as_uri()).stdout


def screenshot(page: str | Path, out: str | Path, width: int = 1280, height: int = 1600) -> Path:
    run_chromium(f"--screenshot={Path(out).resolve()}", f"--window-size={width},{height}", Path(page).resolve().as_uri())
    return Path(out)


def load_ms(dom: str) -> int | None:
    """The page's own load time (ms from navigation start to `load`), as its script stamped it on <body>."""
    m = re.search(r'<body[^>]*data-load-ms="(\d+)"', dom)
    return int(m.group(1)) if m else None

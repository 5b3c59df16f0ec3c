"""Install what this checkout needs and is missing (used by `./wish.sh test|demo|setup`; stdlib only, since it runs
before anything is installed).

Checked, in order:
  1. the Debian packages the wheels and tests need (`[tool.wish] debian` in pyproject.toml), via dpkg;
  2. every pinned dependency of pyproject.toml at its pinned version, via importlib.metadata;
  3. the project itself: `pipeline` and `stages` import from THIS checkout and the `wish` command (which dvc.yaml
     runs) is on PATH.
Only what fails is fixed: `apt-get install` for 1 (as root, or through sudo), one `pip install -e .` for 2 or 3.
`--check` reports without installing (exit 1 when something is missing).
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def normalize(name: str) -> str:
    """PyPI name normalisation (PEP 503): 'Open_Clip.torch' -> 'open-clip-torch'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pyproject(path: Path = REPO / "pyproject.toml") -> dict:
    return tomllib.loads(path.read_text())


def pins(pyproject: dict) -> dict[str, str | None]:
    """{normalized name: pinned version, or None when the requirement is not an exact `==` pin}."""
    out = {}
    for req in pyproject["project"]["dependencies"]:
        req = req.split(";")[0].strip()  # environment markers: none here, but do not misparse them
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*([^\s,]+))?.*", req)
        if m:
            out[normalize(m.group(1))] = m.group(2)
    return out


def installed() -> dict[str, str]:
    return {normalize(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}


def dependency_problems(wanted: dict[str, str | None], have: dict[str, str]) -> list[str]:
    problems = []
    for name, version in sorted(wanted.items()):
        if name not in have:
            problems.append(f"{name} not installed")
        elif version is not None and have[name] != version:
            problems.append(f"{name} {have[name]} installed, {version} pinned")
    return problems


def project_problems(repo: Path = REPO) -> list[str]:
    """The code that runs must be this checkout's (an install from another clone would run other code)."""
    problems = []
    for pkg in ("pipeline", "stages"):
        spec = importlib.util.find_spec(pkg)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin is None:
            problems.append(f"package {pkg!r} not importable")
        elif repo.resolve() not in origin.parents:
            problems.append(f"package {pkg!r} imports from {origin.parent}, not from this checkout")
    found = shutil.which("wish")
    if found is None:
        problems.append("the `wish` command is not on PATH")
    elif not _is_our_wish(Path(found)):
        # Debian's Tk package installs a `wish` too (/usr/bin/wish); dvc.yaml would run that one
        problems.append(f"the `wish` command on PATH is {found}, not this project's (Tk's windowing shell?); "
                        f"put {sysconfig.get_path('scripts')} first on PATH")
    return problems


def _is_our_wish(path: Path) -> bool:
    """pip's console script for `wish` imports stages.cli (a pyenv shim execs the interpreter's script)."""
    try:
        head = path.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        return False
    return "stages.cli" in head or "pyenv" in head


def debian_problems(packages: list[str]) -> list[str]:
    if not packages or shutil.which("dpkg-query") is None:
        return []  # not a Debian system: nothing we can check or install this way
    missing = []
    for pkg in packages:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if res.returncode != 0 or "install ok installed" not in res.stdout:
            missing.append(pkg)
    return missing


def _sudo() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    sys.exit("setup: need root (or sudo) to install Debian packages; install them yourself and re-run")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report what is missing (exit 1 if anything is)")
    args = ap.parse_args(argv)
    pyproject = read_pyproject()
    debs = debian_problems(pyproject.get("tool", {}).get("wish", {}).get("debian", []))
    deps = dependency_problems(pins(pyproject), installed())
    proj = project_problems()
    for what in [*(f"Debian package {d} not installed" for d in debs), *deps, *proj]:
        print(f"setup: {what}")
    if not (debs or deps or proj):
        print("setup: everything installed (Debian packages, pinned dependencies, this checkout)")
        return 0
    if args.check:
        return 1
    if debs:
        sudo = _sudo()
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *debs], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if deps or proj:
        print(f"setup: {sys.executable} -m pip install -e {REPO}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)
    # a fresh interpreter sees the new install (this one has cached the old import state)
    return subprocess.run([sys.executable, __file__, "--check"]).returncode


if __name__ == "__main__":
    sys.exit(main())

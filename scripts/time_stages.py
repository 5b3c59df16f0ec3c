"""Wall and CPU time of `wish align`, `wish heads`, `wish perceive` and `wish score` from one or more code trees, back to back on
one machine, so that today's main and this tree are compared in one sitting (the machine is shared: the load
average is printed next to every number, and only ratios taken in the same run mean much).

Each run works in a scratch root: symlinks to ROOT's inputs, its own output directory, so ROOT is never written.
`--set heads.epochs=6` (repeatable) times a shorter schedule; per-epoch work is the same, so ratios carry over.

    git archive main pipeline stages | tar -x -C /tmp/base        # the code to compare against
    python scripts/time_stages.py --trees /tmp/base . --stages heads --set heads.epochs=6
    python scripts/time_stages.py --trees /tmp/base . --stages align score [--json notes/time_stages.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# what each stage reads from ROOT (it writes ROOT/<stage>, and score also ROOT/metrics)
INPUTS = {"align": ("frames", "nouns", "hands", "masks", "embed", "responsibility"),
          "heads": ("frames", "nouns", "hands", "masks", "embed", "responsibility", "align", "pseudolabel"),
          "perceive": (),
          # a tree with stage `perceive` reads its output (a tree without it ignores the link and perceives itself)
          "score": ("frames", "nouns", "hands", "masks", "embed", "responsibility", "align", "pseudolabel", "heads",
                    "perceive")}
RUNNER = ("import sys; sys.path.insert(0, sys.argv[1]); import pipeline; "
          "assert pipeline.__file__.startswith(sys.argv[1]), pipeline.__file__; "
          "from stages.cli import main; sys.exit(main(sys.argv[2:]))")


def with_overrides(params: Path, sets: list[str], out: Path) -> Path:
    p = yaml.safe_load(params.read_text())
    for s in sets:
        key, value = s.split("=", 1)
        *path, last = key.split(".")
        node = p
        for k in path:
            node = node[k]
        node[last] = yaml.safe_load(value)
    out.write_text(yaml.safe_dump(p, sort_keys=False))
    return out


def time_stage(tree: Path, stage: str, root: Path, params: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"time_{stage}_") as tmp:
        scratch = Path(tmp) / "artifacts"
        scratch.mkdir()
        for name in INPUTS[stage]:
            if (root / name).exists():
                os.symlink((root / name).resolve(), scratch / name)
        load0, cpu0, t0 = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RUNNER, str(tree.resolve()), stage, "--params", str(params),
                               "--root", str(scratch)], capture_output=True, text=True)
        wall, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = scratch / stage / "summary.json"
        metrics = scratch / "metrics" / "score.json"
        out = dict(tree=str(tree), stage=stage, rc=proc.returncode, wall_s=round(wall, 1),
                   cpu_s=round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
                   load_before=round(load0, 1), load_after=round(os.getloadavg()[0], 1),
                   summary=json.loads(summary.read_text()) if summary.is_file() else None,
                   metrics=json.loads(metrics.read_text()) if metrics.is_file() else None)
        if proc.returncode:
            out["stderr"] = proc.stderr[-2000:]
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", nargs="+", type=Path, required=True, help="checkouts whose code is timed, in turn")
    ap.add_argument("--root", type=Path, default=Path("artifacts"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--stages", nargs="+", default=["align", "heads", "score"], choices=list(INPUTS))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="param override, e.g. heads.epochs=6")
    ap.add_argument("--json", type=Path, default=None, help="append every row here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="time_params_") as tmp:
        params = with_overrides(args.params, args.sets, Path(tmp) / "params.yaml") if args.sets else args.params
        for stage in args.stages:
            for tree in args.trees:
                r = time_stage(tree, stage, args.root, params.resolve())
                rows.append(r | {"sets": args.sets})
                print(f"{stage:6s} {str(tree):24s} rc {r['rc']}  wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  "
                      f"load {r['load_before']:.1f} -> {r['load_after']:.1f}  {' '.join(args.sets)}", flush=True)
                if r["rc"]:
                    print(r["stderr"], file=sys.stderr)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.is_file() else []
        args.json.write_text(json.dumps(old + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

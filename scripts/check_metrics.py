"""Fail when metrics/score.json moved beyond a tolerance from the committed version (`dvc metrics diff`)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tolerance", type=float, default=0.02, help="max absolute change of any metric")
    ap.add_argument("--rev", default="HEAD", help="revision holding the committed metrics")
    # Only committed metrics can be compared; the stage summaries under artifacts/ are git-ignored DVC outputs.
    ap.add_argument("--targets", nargs="+", default=["metrics/score.json"], help="metrics files to compare")
    args = ap.parse_args(argv)
    out = subprocess.run(["dvc", "metrics", "diff", args.rev, "--json", "--all", "--targets", *args.targets], check=True,
                         capture_output=True, text=True).stdout
    diff = json.loads(out or "{}")
    bad = []
    for path, metrics in diff.items():
        for key, d in metrics.items():
            old, new = d.get("old"), d.get("new")
            if old is None or new is None:
                bad.append(f"{path}:{key} appeared or vanished (old={old}, new={new})")
            elif isinstance(old, (int, float)) and abs(float(new) - float(old)) > args.tolerance:
                bad.append(f"{path}:{key} {old} -> {new}")
    n = sum(len(m) for m in diff.values())
    if bad:
        print(f"metrics moved beyond ±{args.tolerance} from {args.rev} (commit them on purpose if intended):")
        print("\n".join(f"  {b}" for b in bad))
        return 1
    print(f"metrics check: {n} metrics within ±{args.tolerance} of {args.rev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

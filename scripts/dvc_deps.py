"""Print, per DVC stage, the project modules it imports (transitively, from stages/<name>.py) that dvc.yaml does not
list as deps: the same closure tests/test_dvc_graph.py asserts on. Use it to fix dvc.yaml after adding a module.

    PYTHONPATH=. python3 scripts/dvc_deps.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_dvc_graph as graph  # noqa: E402


def main() -> int:
    total = 0
    for stage, spec in graph.dvc_stages().items():
        modules = graph.closure(f"stages.{stage}") | graph.ENTRY
        missing = sorted(str(graph.module_file(m).relative_to(graph.ROOT)) for m in modules
                         if not graph.covered(graph.module_file(m), spec["deps"]))
        total += len(missing)
        print(f"{stage}: {len(missing)} missing" + "".join(f"\n      - {m}" for m in missing))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The README's two commands. Each first installs what this checkout is missing (Debian packages, the pinned
# dependencies, this checkout itself: scripts/setup_env.py; nothing when all is there), then:
#   ./wish.sh test [pytest args]     the test suite
#   ./wish.sh demo [dvc repro args]  the demo: `dvc repro` on the embedded default, then where its outputs are
#   ./wish.sh setup [--check]        only the set-up (--check: report what is missing, install nothing)
#   ./wish.sh exps [dvc exp show args] the experiments table without its noise (README: Compare experiments)
# PYTHON=... picks the interpreter (default python3: the one on PATH, e.g. an activated venv).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
# pip puts console scripts (wish, dvc) here; dvc.yaml runs `wish`, so it must be on PATH even when pip's
# script dir is not (user installs, bare interpreters).
PATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
PATH="$PATH:$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts", "posix_user"))')"
export PATH

where() {
    echo
    "$PY" - <<'PYEOF'
import json
from stages.predict import summary
m = json.load(open("metrics/score.json"))
print(summary({k: v for k, v in m.items() if not k.startswith("evalset.")}))
print("eval set: " + ", ".join(f"{k.removeprefix('evalset.n_').replace('_', ' ')} {v}" for k, v in m.items()
                               if k.startswith("evalset.")))
PYEOF
    echo
    echo "metrics:  metrics/score.json (all numbers), metrics/per_class.csv; compare runs: dvc metrics diff"
    echo "overlays: artifacts/score/overlays/ (GT | wish per eval frame), artifacts/pseudolabel/overlays/,"
    echo "          artifacts/responsibility/overlays/"
    if [ -f artifacts/score/report.html ]; then echo "report:   artifacts/score/report.html"; fi
    echo "plots:    dvc plots show  ->  dvc_plots/index.html (renders offline)"
    echo "any file: wish inspect PATH"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) "$PY" scripts/setup_env.py "$@" ;;
    # lint and types first (rules and the modules mypy checks: pyproject.toml): seconds, and they name the line
    test)  "$PY" scripts/setup_env.py && "$PY" -m ruff check pipeline stages tests scripts && "$PY" -m mypy \
           && "$PY" -m pytest -q "$@" ;;
    demo)  "$PY" scripts/setup_env.py && "$PY" -m dvc repro "$@" && where ;;
    # only the columns that differ between the rows, and no dependency hashes (they change with every result,
    # and DVC 3.67 names the out-of-repo ../shared deps "../shared/..." in the workspace but "shared/..." in
    # commits, so those always look changed); collided summary keys ("artifacts/...:frames") stay
    exps)  "$PY" -m dvc exp show --only-changed --drop '^(\.\./|shared/|pipeline/|stages/|artifacts/[^:]*$)' "$@" ;;
    *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

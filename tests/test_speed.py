"""Speed-related guarantees: model-free commands stay free of torch; fast paths agree with the reference ones."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import DATA, ROOT

SHORT = "P02_09_left_hand_67864_67947_action_raw854x480.mp4"  # 19 frames, narrated

NO_TORCH = """
import sys
from stages.cli import main
params, root = sys.argv[1], sys.argv[2]
for argv in (["frames", "--params", params, "--root", root], ["nouns", "--params", params, "--root", root],
             ["inspect", root + "/nouns/phrases.parquet"]):
    assert main(argv) == 0, argv
print("TORCH_LOADED", "torch" in sys.modules)
"""


def test_frames_nouns_and_inspect_never_import_torch(tmp_path, write_params):
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(DATA / "epic" / "clips" / SHORT, src / SHORT)
    params = write_params({"common": {"eval_dirs": []},
                           "frames": {"sources": [str(src)], "max_side": 160, "stride": 6}})
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(params), str(tmp_path / "art")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TORCH_LOADED False" in done.stdout

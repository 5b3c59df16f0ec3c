"""Pseudo-label quality on TRAINING frames for several rule variants, without touching artifacts/pseudolabel:
each variant runs the real `pseudolabel` stage into a temporary root whose inputs link to ROOT's artifacts, and its
summary.json is read back (weak labels: named hand holds / other hand holds on stable-grasp clips and extra
frames; median IoU of consecutive picks; pick size and proposer rank). These numbers chose pseudolabel.source.

    python scripts/measure_pseudolabels.py [--root artifacts] [--variants 'source=narration' 'source=priors' ...]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import typer
import yaml

INPUTS = ("frames", "nouns", "align", "embed", "masks", "hands", "responsibility")
KEYS = ("named_hand_holds", "other_hand_holds", "consecutive_iou_median", "pick_area_over_hand_median",
        "pick_rank_median", "holds_left", "holds_right")


def main(root: Path = Path("artifacts"), params: Path = Path("params.yaml"),
         variants: list[str] = typer.Option(["source=narration", "source=fused", "source=priors", "source=motion"])) -> None:
    base = yaml.safe_load(params.read_text())
    print(f"{'variant':<34}" + "".join(f"{k:>28}" for k in KEYS))
    for v in variants:
        p = json.loads(json.dumps(base))
        for kv in v.split(","):
            key, val = kv.split("=")
            p["pseudolabel"][key] = yaml.safe_load(val)
        with tempfile.TemporaryDirectory() as tmp:
            tmp_root = Path(tmp) / "artifacts"
            tmp_root.mkdir()
            for d in INPUTS:
                (tmp_root / d).symlink_to((root / d).resolve())
            (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(p))
            subprocess.run([sys.executable, "-m", "stages.cli", "pseudolabel", "--params", str(Path(tmp) / "params.yaml"),
                            "--root", str(tmp_root)], check=True, capture_output=True)
            s = json.loads((tmp_root / "pseudolabel" / "summary.json").read_text())
        print(f"{v:<34}" + "".join(f"{s.get(k) if s.get(k) is None else round(s[k], 3):>28}" for k in KEYS))


if __name__ == "__main__":
    typer.run(main)

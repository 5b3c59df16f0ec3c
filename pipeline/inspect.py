"""Human-readable description of any artifact (Parquet, HDF5, JSON), for `wish inspect`."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipeline.errors import WishError
from pipeline.schemas import H5_SCHEMAS, PARQUET_SCHEMAS


def describe(path: str | Path, rows: int = 5) -> str:
    path = Path(path)
    if not path.exists():
        raise WishError(path, "no such artifact")
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".h5", ".json"))
        if not found:
            raise WishError(path, "directory holds no .parquet/.h5/.json artifact")
        return "\n\n".join(describe(p, rows) for p in found)
    if path.suffix == ".parquet":
        return _parquet(path, rows)
    if path.suffix in (".h5", ".hdf5"):
        return _h5(path, rows)
    if path.suffix == ".json":
        return f"{path}\n{json.dumps(json.loads(path.read_text()), indent=2)[:4000]}"
    raise WishError(path, "unknown artifact type (expected .parquet, .h5 or .json)")


def _parquet(path: Path, rows: int) -> str:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise WishError(path, f"not a readable Parquet file: {e}") from e
    meta = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items() if not k.startswith(b"pandas")}
    name = meta.get("schema_name", "?")
    known = "" if name in PARQUET_SCHEMAS else "  (not a wish schema)"
    if name in PARQUET_SCHEMAS:
        PARQUET_SCHEMAS[name].check(pf.read(), path)
    head = pf.read_row_groups([0]).slice(0, rows).to_pandas() if pf.num_row_groups else pd.DataFrame()
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
        return "\n".join([
            f"{path}", f"schema: {name} v{meta.get('schema_version', '?')}{known}",
            f"rows: {pf.metadata.num_rows}", "metadata: " + json.dumps({k: v for k, v in meta.items() if not k.startswith("schema_")}),
            "columns:", *[f"  {f.name}: {f.type}" for f in pf.schema_arrow], "head:", head.to_string(),
        ])


def _h5(path: Path, rows: int) -> str:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WishError(path, f"not a readable HDF5 file: {e}") from e
    with f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        name = attrs.get("schema_name", "?")
        lines = [f"{path}", f"schema: {name} v{attrs.get('schema_version', '?')}" + ("" if name in H5_SCHEMAS else "  (not a wish schema)"),
                 "attrs: " + json.dumps({k: str(v) for k, v in attrs.items()}), "datasets:"]
        def visit(key, obj):
            if isinstance(obj, h5py.Dataset):
                lines.append(f"  {key}: shape={obj.shape} dtype={obj.dtype}")
                if obj.ndim >= 1 and obj.shape[0]:
                    lines.append(f"    first: {obj[: min(rows, obj.shape[0])]!r}"[:300])
        f.visititems(visit)
    return "\n".join(lines)

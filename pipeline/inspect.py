"""Human-readable description of any artifact (Parquet, HDF5, JSON, CSV, torch checkpoint), for `wish inspect`."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipeline.errors import WishError
from pipeline.schemas import H5_SCHEMAS, PARQUET_SCHEMAS


SUFFIXES = (".parquet", ".h5", ".hdf5", ".json", ".csv", ".pt", ".pth")


def describe(path: str | Path, rows: int = 5) -> str:
    path = Path(path)
    if not path.exists():
        raise WishError(path, "no such artifact")
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
        if not found:
            raise WishError(path, f"directory holds no artifact ({', '.join(SUFFIXES)})")
        return "\n\n".join(describe(p, rows) for p in found)
    if path.suffix == ".parquet":
        return _parquet(path, rows)
    if path.suffix in (".h5", ".hdf5"):
        return _h5(path, rows)
    if path.suffix == ".json":
        return f"{path}\n{json.dumps(_read_json(path), indent=2)[:4000]}"
    if path.suffix == ".csv":
        return _csv(path, rows)
    if path.suffix in (".pt", ".pth"):
        return _checkpoint(path, rows)
    raise WishError(path, f"unknown artifact type (expected one of {', '.join(SUFFIXES)})")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WishError(path, f"not a readable JSON file: {e}") from e


def _csv(path: Path, rows: int) -> str:
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise WishError(path, f"not a readable CSV file: {e}") from e
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
        return "\n".join([f"{path}", f"rows: {len(df)}", f"columns ({df.shape[1]}):",
                          *[f"  {c}: {t}" for c, t in df.dtypes.items()], "head:", df.head(rows).to_string()])


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


# Checkpoints this project writes, told apart by their top-level keys (pipeline/align.py, pipeline/heads.py).
CHECKPOINT_KINDS = {
    "align adapters (Stage 1, `wish align`)": {"config", "state_dict"},
    "heads (Stage 2 contact + matching, `wish heads`)": {"config", "contact", "matching"},
}


def _checkpoint(path: Path, rows: int) -> str:
    import torch  # only here: inspecting any other artifact stays torch-free

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for truncated or foreign files
        raise WishError(path, f"not a readable torch checkpoint: {str(e).splitlines()[0][:200]}") from e
    tensors = dict(_tensors(blob))
    lines = [f"{path}", f"kind: {checkpoint_kind(blob)}"]
    if isinstance(blob, dict) and isinstance(blob.get("config"), dict):
        lines.append("config: " + json.dumps(blob["config"]))
    lines.append(f"parameters: {sum(t.numel() for t in tensors.values()):,} in {len(tensors)} tensors")
    if isinstance(blob, dict):
        for key in ("contact", "matching"):
            if key in blob:
                part = sum(t.numel() for k, t in tensors.items() if k.startswith(key + "."))
                lines.append(f"  {key} head: " + (f"{part:,} parameters" if blob[key] is not None else "off"))
    lines += [f"  {k}: {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for k, t in list(tensors.items())[:rows]]
    if len(tensors) > rows:
        lines.append(f"  ... {len(tensors) - rows} more (--rows to see them)")
    return "\n".join(lines + _training_summary(path))


def checkpoint_kind(blob) -> str:
    if isinstance(blob, dict) and isinstance(blob.get("kind"), str):
        return blob["kind"]
    keys = set(blob) if isinstance(blob, dict) else set()
    for kind, needed in CHECKPOINT_KINDS.items():
        if keys == needed:
            return kind
    if keys and all(_is_tensor(v) for v in blob.values()):
        return "state dict (e.g. pretrained backbone weights)"
    return f"unknown (top-level {type(blob).__name__}" + (f", keys {sorted(map(str, keys))[:8]})" if keys else ")")


def _is_tensor(v) -> bool:
    return hasattr(v, "numel") and hasattr(v, "shape")


def _tensors(obj, prefix: str = ""):
    """(dotted name, tensor) for every tensor nested in dicts/lists, in storage order."""
    if _is_tensor(obj):
        yield prefix.rstrip("."), obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}{i}.")


def _training_summary(path: Path) -> list[str]:
    """The stage's summary.json and curve.csv written next to the checkpoint, when present."""
    lines = []
    summary, curve = path.parent / "summary.json", path.parent / "curve.csv"
    if summary.is_file():
        lines.append(f"training summary ({summary.name}): " + json.dumps(_read_json(summary)))
    if curve.is_file():
        df = pd.read_csv(curve)
        group = ["head"] if "head" in df.columns else []
        last = df.groupby(group).tail(1) if group else df.tail(1)
        epochs = int(df["epoch"].max()) + 1 if "epoch" in df.columns and len(df) else len(df)
        lines.append(f"training curve ({curve.name}): {epochs} epochs; last: " +
                     "; ".join(", ".join(f"{k}={_fmt(v)}" for k, v in r.items()) for r in last.to_dict("records")))
    return lines


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)

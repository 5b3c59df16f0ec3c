"""Atomic, schema-checked artifact I/O (Parquet, HDF5, JSON, images).

Every writer goes through `atomic_path`: the data lands in a temp file in the same directory and is renamed
over the target only when complete, so an interrupted stage never leaves a half-written artifact.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import WishError
from pipeline.schemas import ArtifactSchema, H5Schema


# Temp names carry the writer's pid (".<target>.<pid>.<random>"), so a later writer can tell a dead run's leftovers
# (kill -9, power loss) from a live concurrent run's work in progress and remove only the former.
_SWEPT: set[Path] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ".<target>.<pid>.<mkstemp's 8 chars>[suffix]" or ".<target>.<pid>.old"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.(?:[a-z0-9_]{8}(?:\..*)?|old)$")


def sweep_stale(directory: Path, target: str | None = None) -> None:
    """Remove temp files/dirs (of `target`, or of any target) left in `directory` by writers that no longer run."""
    for p in directory.iterdir():
        m = _TEMP_NAME.match(p.name)
        if m and (target is None or m["target"] == target) and not _pid_alive(int(m["pid"])):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _in_temp_dir(path: Path) -> bool:
    """Inside some atomic_dir's temp dir, whose own janitor removes everything in it."""
    return any(_TEMP_NAME.match(p.name) for p in path.parents)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.parent not in _SWEPT:  # once per directory and process: writers of many images stay cheap
        sweep_stale(target.parent)
        _SWEPT.add(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    with contextlib.nullcontext() if _in_temp_dir(target) else _janitor(tmp_path, target):
        try:
            yield tmp_path
            os.replace(tmp_path, target)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


# Cleans up after a writer that dies before saying "done" on stdin: stdin reaches EOF when the writer exits, however
# it exits (kill -9 included). It removes the temp file or dir, and when the writer died between moving its old output
# aside and moving the new one in, it puts the old one back (or removes it once the new one is in place).
_JANITOR = """\
import os, shutil, sys
tmp, target, old = sys.argv[1:]
if sys.stdin.buffer.read() != b'done':
    if os.path.isdir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        os.unlink(tmp)
    if old and os.path.isdir(old):
        if os.path.exists(target):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, target)
"""


@contextlib.contextmanager
def _janitor(tmp: Path, target: Path, old: Path | None = None) -> Iterator[None]:
    import subprocess
    import sys

    # own session: a kill of the writer's process group does not take the janitor with it
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _JANITOR, str(tmp), str(target), str(old or "")],
                            stdin=subprocess.PIPE, start_new_session=True)
    try:
        yield
    finally:
        proc.communicate(b"done")  # the writer is done: the temp path is in place or gone


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Like atomic_path for a whole directory: build it aside, then swap it in."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target.parent, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    with _janitor(tmp, target, old):
        try:
            yield tmp
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not target.exists():  # failed between the two renames: the old output stays
                old.rename(target)


def write_table(df: pd.DataFrame, schema: ArtifactSchema, path: str | Path, extra_meta: dict | None = None) -> Path:
    """Validate `df` against `schema` and write it as Parquet atomically, name and version in the metadata."""
    table = schema.to_table(df, extra_meta)
    with atomic_path(path, ".parquet") as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_table(path: str | Path, schema: ArtifactSchema) -> pd.DataFrame:
    """Read a Parquet artifact and check that it is the artifact (name, version, columns) we expect."""
    path = Path(path)
    if not path.is_file():
        raise WishError(path, f"missing {schema.name} artifact (run the stage that writes it)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise WishError(path, f"not a readable Parquet file: {e}") from e
    schema.check(table, path)
    return table.to_pandas()


def table_meta(path: str | Path) -> dict[str, str]:
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def write_json(obj: object, path: str | Path) -> Path:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path, ".csv") as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def write_image(img: np.ndarray, path: str | Path, quality: int = 95) -> Path:
    """Write an RGB (or single-channel) uint8 image atomically; format from the suffix."""
    import cv2

    path = Path(path)
    arr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, arr, params)
    if not ok:
        raise WishError(path, "could not encode image")
    with atomic_path(path, path.suffix) as tmp:
        tmp.write_bytes(buf.tobytes())
    return path


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise WishError(path, "image not found")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise WishError(path, "not a readable image (empty or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def save_torch(obj: object, path: str | Path) -> Path:
    """torch.save through memory, then an atomic write. Saving to a file names the archive after the (random)
    temp file, so identical weights gave different bytes and DVC re-ran every stage downstream."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path, ".pt") as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)


def h5_check(f, schema: H5Schema, path: str | Path) -> None:
    """Validate an open h5py File against its schema (name, version, datasets)."""
    name, version = f.attrs.get("schema_name"), f.attrs.get("schema_version")
    if name != schema.name or version is None or int(version) != schema.version:
        raise WishError(path, f"expected HDF5 artifact {schema.name} v{schema.version}, found {name} v{version}")
    missing = [d for d in schema.datasets if d not in f]
    if missing:
        raise WishError(path, f"HDF5 artifact {schema.name} lacks datasets {missing}")

"""Third-party model weights: find them locally, download them only when allowed, load them safely.

    path = resolve_checkpoint(params.masks.sam.checkpoint, url=SAM_URLS["vit_b"],
                              allow_download=params.common.allow_download,
                              what="SAM vit_b", param="masks.sam.checkpoint")
    model.load_state_dict(load_state_dict(path))
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import torch

from pipeline.errors import WishError


def cache_dir() -> Path:
    """Where downloaded checkpoints live: torch.hub's checkpoint folder (honours $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _cached_path(url: str) -> Path:
    return cache_dir() / Path(urlparse(url).path).name


def _check_file(path: Path, param: str) -> Path:
    if not path.is_file():
        raise WishError(path, f"checkpoint file given by {param} does not exist")
    if path.stat().st_size == 0:
        raise WishError(path, f"checkpoint file given by {param} is empty")
    return path


def _missing(url: str | None, what: str, param: str) -> WishError:
    if url is None:
        return WishError(None, f"{what}: no weights; set {param} to a local checkpoint file")
    target = _cached_path(url)
    return WishError(None, (f"{what}: no weights and downloads are off. Set {param} to a local copy of "
                            f"{target.name} (from {url}), or put that file at {target}, "
                            "or set common.allow_download: true"))


def resolve_checkpoint(local: str | None, *, url: str | None, allow_download: bool, what: str,
                       param: str) -> Path:
    """A local checkpoint path if given, else the cached or (when allowed) downloaded official file."""
    if local:
        return _check_file(Path(local), param)
    if url is not None and _cached_path(url).is_file():
        # A file already in the cache needs no network: use it whatever allow_download says.
        return _check_file(_cached_path(url), param)
    if not allow_download or url is None:
        raise _missing(url, what, param)
    target = _cached_path(url)
    require_network(url, f"{what}: cannot download {target.name} (set {param} to a local copy)")
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(target), progress=True)  # writes a temp file, then renames
    return _check_file(target, param)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors only (weights_only=True): a checkpoint cannot run code. Unwraps {"model"|"state_dict": ...}."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt / non-tensor pickles
        raise WishError(path, f"cannot load checkpoint: {e}") from e
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WishError(path, "checkpoint is not a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def file_digest(path: str | Path, n: int = 12) -> str:
    """Short sha256 of a weights file, so cache keys change when the weights do (the one digest of the project:
    embed keys, CLIP ids). Memoised per (path, mtime, size): encoders ask for it once per frame."""
    st = os.stat(path)
    return _digest(str(path), st.st_mtime_ns, st.st_size)[:n]


@functools.lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_blob(path: str | Path, what: str, keys: tuple[str, ...], stage: str) -> dict:
    """A checkpoint this project wrote (a dict with `keys`), loaded tensors-only. Missing, truncated, foreign or
    the other stage's checkpoint (adapters.pt where heads.pt belongs) is a WishError naming the file, raised
    before any image is processed."""
    path = Path(path)
    if not path.is_file():
        raise WishError(path, f"{what} checkpoint not found (run the {stage} stage)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, pickled code: torch raises several types
        raise WishError(path, f"not a readable {what} checkpoint (truncated or corrupt? re-run the {stage} stage): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if not isinstance(blob, dict) or not set(keys) <= set(blob):
        found = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
        raise WishError(path, f"not a {what} checkpoint: expected keys {sorted(keys)}, found {found} "
                              f"(written by another stage?)")
    return blob


def build_from_blob(path: str | Path, what: str, build):
    """Run `build()` (config + load_state_dict from a loaded blob); a shape or config mismatch names the file."""
    try:
        return build()
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise WishError(path, f"{what} checkpoint does not fit this code (stale or another stage's?): "
                              f"{str(e).splitlines()[0]}") from e


@contextlib.contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """No Hugging Face Hub request inside the block (when `active`): files must already be in the local cache.
    The hub reads HF_HUB_OFFLINE once at import, so its constant is switched too; both are restored after."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    saved = constants.HF_HUB_OFFLINE
    os.environ.update({k: "1" for k in saved_env})
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def hub_cache_dir() -> Path:
    """Where Hugging Face Hub files (CLIP weights and tokenizers) are looked up: honours $HF_HUB_CACHE/$HF_HOME."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def require_network(url: str, problem: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after a minute of library retries, when the download host cannot be reached."""
    import socket

    host = urlparse(url).hostname or url
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        raise WishError(None, f"{problem}: {host} is unreachable ({e})") from e

"""Checkpoint resolution and safe loading (pipeline.weights), offline."""
from __future__ import annotations

import pytest
import torch

from pipeline.errors import WishError
from pipeline.weights import cache_dir, file_digest, load_state_dict, resolve_checkpoint

URL = "https://example.invalid/models/thing_v1.pth"


@pytest.fixture(autouse=True)
def private_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # no shared cache leaks into tests


def test_local_path_is_checked(tmp_path):
    f = tmp_path / "w.pt"
    torch.save({"a": torch.ones(2)}, f)
    assert resolve_checkpoint(str(f), url=URL, allow_download=False, what="X", param="x.checkpoint") == f
    with pytest.raises(WishError, match="x.checkpoint.*does not exist"):
        resolve_checkpoint(str(tmp_path / "nope.pt"), url=URL, allow_download=False, what="X", param="x.checkpoint")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WishError, match="empty"):
        resolve_checkpoint(str(tmp_path / "empty.pt"), url=URL, allow_download=False, what="X", param="x.checkpoint")


def test_offline_without_file_names_param_file_and_place():
    with pytest.raises(WishError) as e:
        resolve_checkpoint(None, url=URL, allow_download=False, what="Thing", param="masks.sam.checkpoint")
    msg = str(e.value)
    assert "masks.sam.checkpoint" in msg and "thing_v1.pth" in msg and str(cache_dir()) in msg
    assert "common.allow_download" in msg


def test_cached_file_is_used_without_network():
    target = cache_dir() / "thing_v1.pth"
    target.parent.mkdir(parents=True)
    torch.save({"a": torch.ones(1)}, target)
    assert resolve_checkpoint(None, url=URL, allow_download=False, what="X", param="p") == target


def test_download_is_attempted_only_when_allowed(monkeypatch):
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append(url)
        torch.save({"w": torch.zeros(3)}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(WishError):
        resolve_checkpoint(None, url=URL, allow_download=False, what="X", param="p")
    assert calls == []
    with pytest.raises(WishError, match=r"cannot download thing_v1.pth \(set p to a local copy\).*unreachable"):
        resolve_checkpoint(None, url="https://unreachable.invalid/thing_v1.pth", allow_download=True, what="X",
                           param="p")  # no network (or no such host): a clear error at once, no download tried
    assert calls == []
    monkeypatch.setattr("pipeline.weights.require_network", lambda url, problem: None)
    path = resolve_checkpoint(None, url=URL, allow_download=True, what="X", param="p")
    assert calls == [URL] and path == cache_dir() / "thing_v1.pth"
    assert torch.equal(load_state_dict(path)["w"], torch.zeros(3))


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"model": sd}, lambda sd: {"state_dict": sd, "epoch": 3},
                                  lambda sd: {f"module.{k}": v for k, v in sd.items()}])
def test_load_state_dict_unwraps(tmp_path, wrap):
    sd = torch.nn.Linear(3, 2).state_dict()
    f = tmp_path / "c.pt"
    torch.save(wrap(sd), f)
    got = load_state_dict(f)
    assert set(got) == {"weight", "bias"} and torch.equal(got["weight"], sd["weight"])
    assert len(file_digest(f)) == 12


def test_load_state_dict_refuses_code_and_junk(tmp_path):
    f = tmp_path / "obj.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, f)  # a pickled module: weights_only must refuse it
    with pytest.raises(WishError, match="cannot load"):
        load_state_dict(f)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WishError):
        load_state_dict(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(WishError, match="not a state dict"):
        load_state_dict(tmp_path / "list.pt")

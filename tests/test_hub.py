"""Finding weights: paths, mirrors, the user cache and downloads, with every failure explained.

Downloads are served by an HTTP server this module starts on 127.0.0.1 (never anything else),
with registry entries' URLs pointed at it, so the real download code runs end to end: progress
bar, temporary file, hash check, rename into the cache. Checkpoint loading is checked never to
unpickle: the pickled objects used here would create a marker file if they were ever executed.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import pathlib
import pickle
import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from gfn_edge.errors import ChecksumError, UnknownModelError, WeightsNotFoundError
from gfn_edge.export.hub import cache_dir, mirror_dirs, resolve_weights, sha256_file
from gfn_edge.registry import REGISTRY

MNET = "retinaface-mnet025"
MNET_FILE = "retinaface/mobilenet0.25_Final.pth"
UNHASHED = "retinaface-ghostnet"  # has a URL but no published sha256


@dataclass
class Route:
    data: bytes
    send: int | None = None  # bytes actually sent (fewer than Content-Length: a broken-off transfer)
    pause_after: int | None = None  # stop after this many bytes until ``resume`` is set
    paused: threading.Event | None = None
    resume: threading.Event | None = None
    hits: int = 0


class LocalServer:
    """A loopback HTTP server whose routes the tests set."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(route.data)))
                self.end_headers()
                body = route.data[: route.send] if route.send is not None else route.data
                if route.pause_after is not None:
                    self.wfile.write(body[: route.pause_after])
                    self.wfile.flush()
                    route.paused.set()
                    route.resume.wait(30)
                    body = body[route.pause_after :]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    srv = LocalServer()
    yield srv
    srv.close()


@pytest.fixture
def no_mirror(monkeypatch, tmp_path) -> Path:
    """No mirror folders and an empty user cache: the only way to a file is the network."""
    monkeypatch.delenv("GFN_EDGE_MIRROR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("GFN_EDGE_CACHE", str(cache))
    return cache


def point_at(monkeypatch, name: str, url: str) -> Path:
    """Make registry entry ``name`` download from ``url``; returns where the cache will keep it."""
    spec = REGISTRY[name]
    monkeypatch.setitem(REGISTRY, name, replace(spec, weights=replace(spec.weights, url=url)))
    return cache_dir() / "weights" / spec.weights.mirror_path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.part")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def mnet_bytes() -> bytes:
    return shared_path("models", MNET_FILE).read_bytes()


# ----------------------------------------------------------------------------- paths and mirrors


def test_a_path_is_used_as_is(tmp_path):
    file = tmp_path / "my weights.pth"
    file.write_bytes(b"anything")
    assert resolve_weights(file) == file
    assert resolve_weights(str(file)) == file


def test_a_missing_path_is_named():
    with pytest.raises(WeightsNotFoundError, match="nowhere/model.pth does not exist"):
        resolve_weights("/nowhere/model.pth")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownModelError, match="did you mean retinaface-mnet025"):
        resolve_weights("retinaface-mnet")


def test_name_from_the_mirror_option(mirror, no_mirror):
    path = resolve_weights(MNET, mirror=mirror)
    assert path == mirror / MNET_FILE
    assert sha256_file(path) == REGISTRY[MNET].weights.sha256
    assert not no_mirror.exists(), "a mirror hit must not touch the user cache"


def test_name_from_gfn_edge_mirror_with_several_folders(mirror, no_mirror, monkeypatch, tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv("GFN_EDGE_MIRROR", os.pathsep.join([str(empty), str(mirror)]))
    assert mirror_dirs() == [empty, mirror]
    assert resolve_weights(MNET) == mirror / MNET_FILE


def test_a_mirror_file_with_the_wrong_hash_is_refused(no_mirror, tmp_path):
    bad = tmp_path / "bad-mirror"
    (bad / "retinaface").mkdir(parents=True)
    (bad / MNET_FILE).write_bytes(b"not the weights")
    with pytest.raises(ChecksumError) as info:
        resolve_weights(MNET, mirror=bad)
    message = str(info.value)
    assert str(bad / MNET_FILE) in message and REGISTRY[MNET].weights.sha256 in message
    assert "Delete it and download it again" in message


def test_entries_without_release_weights_say_what_to_do(no_mirror):
    with pytest.raises(WeightsNotFoundError, match="--random-weights"):
        resolve_weights("retinaface-ghostnet-se025")


def test_no_download_when_downloads_are_off(no_mirror):
    with pytest.raises(WeightsNotFoundError, match="downloads are off"):
        resolve_weights(MNET, download=False)


# ----------------------------------------------------------------------------- downloads


def test_download_into_the_user_cache_atomically_with_progress(server, no_mirror, monkeypatch, mnet_bytes, capsys):
    """While bytes arrive only a temporary file exists; the checked file appears complete, at once."""
    monkeypatch.setenv("GFN_EDGE_PROGRESS", "1")  # the session turns bars off; this test wants the tqdm path
    route = Route(mnet_bytes, pause_after=len(mnet_bytes) // 3, paused=threading.Event(), resume=threading.Event())
    server.routes["/atomic/mnet.pth"] = route
    dest = point_at(monkeypatch, MNET, server.url("atomic/mnet.pth"))
    result: dict[str, object] = {}

    def fetch() -> None:
        try:
            result["path"] = resolve_weights(MNET)
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc

    worker = threading.Thread(target=fetch)
    worker.start()
    try:
        assert route.paused.wait(30), "the download never started"
        assert not dest.exists(), "the destination must not exist before the download is complete"
        parts = leftovers(dest.parent)
        assert len(parts) == 1 and parts[0].startswith(dest.name + "."), parts
    finally:
        route.resume.set()
        worker.join(60)
    assert "error" not in result, result.get("error")
    assert result["path"] == dest and dest.read_bytes() == mnet_bytes
    assert leftovers(dest.parent) == [] and not dest.with_name(dest.name + ".sha256").exists()
    assert f"download {dest.name}" in capsys.readouterr().err, "the tqdm progress bar was not drawn"
    # now cached: a second call does not download again
    assert resolve_weights(MNET) == dest and route.hits == 1


def test_download_with_the_wrong_hash_is_not_kept(server, no_mirror, monkeypatch):
    server.routes["/wrong/mnet.pth"] = Route(b"a different release" * 1000)
    dest = point_at(monkeypatch, MNET, server.url("wrong/mnet.pth"))
    with pytest.raises(ChecksumError) as info:
        resolve_weights(MNET)
    message = str(info.value)
    assert server.url("wrong/mnet.pth") in message and REGISTRY[MNET].weights.sha256 in message
    assert "was not kept" in message and "pass a verified file's path" in message
    assert not dest.exists() and leftovers(dest.parent) == []


def test_truncated_download_is_reported_and_not_kept(server, no_mirror, monkeypatch, mnet_bytes):
    server.routes["/short/mnet.pth"] = Route(mnet_bytes, send=len(mnet_bytes) // 2)
    dest = point_at(monkeypatch, MNET, server.url("short/mnet.pth"))
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(MNET)
    message = str(info.value)
    assert "truncated" in message and f"got {len(mnet_bytes) // 2} of {len(mnet_bytes)} bytes" in message
    assert str(dest) in message, "the message says where to put a hand-fetched copy"
    assert not dest.exists() and leftovers(dest.parent) == []


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_network_names_the_file_and_the_manual_way(no_mirror, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/weights/mobilenet0.25_Final.pth"
    dest = point_at(monkeypatch, MNET, url)
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(MNET)
    message = str(info.value)
    assert f"could not download {url}" in message
    assert "download the file elsewhere" in message and str(dest) in message and "GFN_EDGE_MIRROR" in message
    assert not dest.exists() and leftovers(dest.parent) == []


def test_unknown_hash_is_recorded_then_enforced(server, no_mirror, monkeypatch, caplog):
    first = b"first upstream file" * 500
    server.routes["/unhashed/ghost.pth"] = Route(first)
    dest = point_at(monkeypatch, UNHASHED, server.url("unhashed/ghost.pth"))
    assert REGISTRY[UNHASHED].weights.sha256 is None
    with caplog.at_level(logging.WARNING, logger="gfn_edge.export.hub"):
        assert resolve_weights(UNHASHED) == dest
    digest = hashlib.sha256(first).hexdigest()
    record = dest.with_name(dest.name + ".sha256")
    assert record.read_text().split()[0] == digest
    assert digest in caplog.text, "the first download's hash is printed"
    assert resolve_weights(UNHASHED) == dest  # the same file passes its own record

    # a different file in the cache later is refused ...
    dest.write_bytes(b"swapped later")
    with pytest.raises(ChecksumError, match=f"expected {digest}"):
        resolve_weights(UNHASHED)
    # ... and so is a changed upstream file when the cached copy is gone
    dest.unlink()
    server.routes["/unhashed/ghost.pth"] = Route(b"changed upstream" * 500)
    with pytest.raises(ChecksumError, match=f"expected {digest}"):
        resolve_weights(UNHASHED)
    assert not dest.exists() and record.read_text().split()[0] == digest


# ----------------------------------------------------------------------------- never unpickle


class _Trap:
    """Unpickling this creates ``marker``: proof that code from a checkpoint ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pth_with_a_pickled_object_is_refused(tmp_path):
    import torch

    from gfn_edge.errors import CheckpointError
    from gfn_edge.export.checkpoints import load_state_dict

    marker = tmp_path / "code-ran"
    zipped = tmp_path / "zip.pth"
    torch.save({"conv.weight": torch.zeros(2), "payload": _Trap(marker)}, zipped)
    legacy = tmp_path / "legacy.pth"
    with open(legacy, "wb") as fh:
        pickle.dump({"conv.weight": np.zeros(2), "payload": _Trap(marker)}, fh)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(zipped)
    message = str(info.value)
    assert message.startswith(f"{zipped} contains pickled Python objects, which gfn-edge never loads")
    assert "Unsupported global: GLOBAL" in message and "torch.save(model.state_dict(), path)" in message
    with pytest.raises(CheckpointError) as info:  # an old-style pickle: refused before any object is built
        load_state_dict(legacy)
    assert str(legacy) in str(info.value) and "pickle of Python objects, which gfn-edge never loads" in str(info.value)
    assert not marker.exists(), "a pickled object was executed"


def test_npz_with_object_arrays_is_refused(tmp_path):
    from gfn_edge.errors import CheckpointError
    from gfn_edge.export.checkpoints import load_state_dict

    marker = tmp_path / "code-ran"
    path = tmp_path / "objects.npz"
    np.savez(path, weight=np.zeros(3, np.float32), payload=np.array([_Trap(marker)], dtype=object))
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and "object arrays" in str(info.value) and "never loads" in str(info.value)
    assert not marker.exists(), "a pickled object was executed"

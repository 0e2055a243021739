"""Shared fixtures of the package tests.

- ``shared_data``: points ``GANREC_DATA`` at ``<repo>/../shared/data`` (the read-only
  MovieLens cache CI uses); tests that need it are skipped when it is absent.
- ``ml100k``: ML-100K loaded once per session from that cache.
- ``tmp_cache``: an empty, writable ``GANREC_DATA`` in a temporary folder.
- ``file_server``: a local HTTP server on 127.0.0.1 serving a temporary folder (the
  tests never touch the internet).
- ``fake_dataset``: a small dataset registered in ``REGISTRY`` with files whose sha256
  we compute: two files downloaded one by one and two members of a zip archive, all
  served by ``file_server``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganrec_lite import registry

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
SHARED_REASON = (
    f"needs the MovieLens cache at {SHARED_DATA} (<repo>/../shared/data); "
    "it is absent on this machine"
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The MovieLens cache: GANREC_DATA when it holds ml-100k, else the shared one."""
    env = os.environ.get("GANREC_DATA", "").strip()
    if env and (Path(env).expanduser() / "ml-100k" / "u.data").is_file():
        return Path(env).expanduser().resolve()
    if not (SHARED_DATA / "ml-100k").is_dir():
        pytest.skip(SHARED_REASON)
    return SHARED_DATA


@pytest.fixture
def shared_data(shared_data_dir, monkeypatch) -> Path:
    """``GANREC_DATA`` -> ``<repo>/../shared/data`` for one test."""
    monkeypatch.setenv("GANREC_DATA", str(shared_data_dir))
    return shared_data_dir


@pytest.fixture(scope="session")
def ml100k(shared_data_dir):
    """ML-100K, loaded once per session from the shared cache."""
    from ganrec_lite.data import load_movielens

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANREC_DATA", str(shared_data_dir))
        return load_movielens("ml-100k")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """An empty writable cache root, set as ``GANREC_DATA``."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("GANREC_DATA", str(root))
    return root


# --------------------------------------------------------------------------- HTTP


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):  # noqa: N802
        self.server.requests.append(self.path)
        super().do_GET()


@dataclass
class FileServer:
    """A folder served over HTTP on 127.0.0.1; ``requests`` logs every GET path."""

    root: Path
    port: int
    requests: list = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return self.url(name)


@pytest.fixture
def file_server(tmp_path, monkeypatch):
    # A proxy configured in the environment must not see these requests.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.requests = []
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield FileServer(
            root=root, port=server.server_address[1], requests=server.requests
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- fake data


FAKE_DIRECT = {
    "ratings.tsv": b"0\t0\t5\n0\t1\t3\n1\t1\t4\n",
    "notes.txt": "caf\u00e9 cr\u00e8me\n".encode("latin-1"),
}
FAKE_MEMBERS = {
    "fake/items.txt": b"0|Alpha (1990)\n1|Beta (1991)\n",
    "fake/users.txt": b"0|F\n1|M\n",
}


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


@dataclass
class FakeDataset:
    spec: registry.DatasetSpec
    server: FileServer
    contents: dict  # file name in the dataset folder -> bytes
    archive: bytes


@pytest.fixture
def fake_dataset(file_server, tmp_cache, monkeypatch) -> FakeDataset:
    """A dataset ``fake-ds`` registered in ``REGISTRY``, served by ``file_server``."""
    files = []
    contents = {}
    for name, data in FAKE_DIRECT.items():
        url = file_server.put(name, data)
        files.append(registry.DataFile(name, sha256_bytes(data), url=url))
        contents[name] = data
    for member, data in FAKE_MEMBERS.items():
        name = member.split("/")[-1]
        files.append(registry.DataFile(name, sha256_bytes(data), member=member))
        contents[name] = data
    archive = make_zip(FAKE_MEMBERS)
    archive_url = file_server.put("fake.zip", archive)
    spec = registry.DatasetSpec(
        name="fake-ds",
        files=tuple(files),
        archive_url=archive_url,
        archive_sha256=sha256_bytes(archive),
    )
    monkeypatch.setitem(registry.REGISTRY, "fake-ds", spec)
    return FakeDataset(
        spec=spec, server=file_server, contents=contents, archive=archive
    )


@pytest.fixture
def no_sleep(monkeypatch) -> list:
    """Make the retry back-off instant; returns the list of requested sleeps."""
    sleeps: list = []
    monkeypatch.setattr(registry, "time", SimpleNamespace(sleep=sleeps.append))
    return sleeps


@pytest.fixture(scope="session")
def synthetic_split():
    """A planted low-rank dataset, 200 users x 300 items, 15% density, split 80/20
    per user: ``(train, test)`` boolean CSR matrices. Small enough for model tests."""
    from ganrec_lite.data import make_synthetic
    from ganrec_lite.splits import random_split

    ml = make_synthetic(n_users=200, n_items=300, rank=4, density=0.15, seed=0)
    s = random_split(
        ml.ratings, test_ratio=0.2, seed=0, n_users=ml.n_users, n_items=ml.n_items
    )
    return s.matrix("train"), s.matrix("test")

"""The file registry and cache: downloads (local HTTP only), checksums, atomic
writes, safe zip extraction, read-only and offline caches."""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import pytest

from ganrec_lite import registry
from ganrec_lite.registry import (
    REGISTRY,
    ChecksumError,
    DataError,
    DataFile,
    DatasetSpec,
    DataUnavailableError,
    cache_root,
    dataset_path,
    fetch,
    safe_extract,
    sha256_of,
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime (to prove nothing changed)."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def temp_files(root: Path) -> list[Path]:
    """Leftovers of an interrupted write (``mkstemp(prefix=".<name>.")``)."""
    return [p for p in root.rglob(".*") if p.is_file()]


# ------------------------------------------------------------------ cache root


def test_cache_root_honours_ganrec_data(tmp_path, monkeypatch):
    monkeypatch.setenv("GANREC_DATA", str(tmp_path / "somewhere"))
    assert cache_root() == tmp_path / "somewhere"
    assert dataset_path("ml-100k") == tmp_path / "somewhere" / "ml-100k"


def test_cache_root_default_and_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GANREC_DATA", raising=False)
    assert cache_root() == tmp_path / ".cache" / "ganrec_lite"
    monkeypatch.setenv("GANREC_DATA", "   ")  # blank counts as unset
    assert cache_root() == tmp_path / ".cache" / "ganrec_lite"
    monkeypatch.setenv("GANREC_DATA", "~/data")
    assert cache_root() == tmp_path / "data"


def test_dataset_path_accepts_a_spec(tmp_cache):
    spec = DatasetSpec(name="x", files=())
    assert dataset_path(spec) == tmp_cache / "x"


def test_sha256_of(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_of(p) == sha256_bytes(b"abc")


# ------------------------------------------------------------ argument checks


def test_unknown_dataset_is_a_value_error(tmp_cache):
    with pytest.raises(ValueError, match="unknown dataset 'ml-20m'.*ml-100k"):
        fetch("ml-20m")
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_path("nope")


def test_unknown_file_is_a_value_error(tmp_cache):
    with pytest.raises(ValueError, match="no file 'u.dat'.*u.data, u.item, u.user"):
        fetch("ml-100k", "u.dat")


@pytest.mark.parametrize("retries", [0, -1])
def test_bad_retries(tmp_cache, retries):
    with pytest.raises(ValueError, match="retries must be >= 1"):
        fetch("ml-100k", "u.data", retries=retries)


@pytest.mark.parametrize("timeout", [0, -5.0])
def test_bad_timeout(tmp_cache, timeout):
    with pytest.raises(ValueError, match="timeout must be > 0"):
        fetch("ml-100k", "u.data", timeout=timeout)


# ------------------------------------------------------------------ downloads


def test_download_direct_file(fake_dataset, tmp_cache):
    path = fetch("fake-ds", "ratings.tsv")
    assert path == tmp_cache / "fake-ds" / "ratings.tsv"
    assert path.read_bytes() == fake_dataset.contents["ratings.tsv"]
    assert fake_dataset.server.requests == ["/ratings.tsv"]
    assert temp_files(tmp_cache) == []
    # only what was asked for was fetched
    assert sorted(p.name for p in path.parent.iterdir()) == ["ratings.tsv"]


def test_fetch_everything_extracts_archive_members(fake_dataset, tmp_cache):
    folder = fetch("fake-ds", retries=1, timeout=5)
    assert folder == tmp_cache / "fake-ds"
    for name, data in fake_dataset.contents.items():
        assert (folder / name).read_bytes() == data
    assert (tmp_cache / "_downloads" / "fake.zip").read_bytes() == fake_dataset.archive
    assert sorted(fake_dataset.server.requests) == [
        "/fake.zip",
        "/notes.txt",
        "/ratings.tsv",
    ]
    assert temp_files(tmp_cache) == []


def test_cached_files_are_not_downloaded_again(fake_dataset, tmp_cache):
    fetch("fake-ds")
    n = len(fake_dataset.server.requests)
    before = listing(tmp_cache)
    assert fetch("fake-ds", "items.txt") == tmp_cache / "fake-ds" / "items.txt"
    fetch("fake-ds")
    assert len(fake_dataset.server.requests) == n
    assert listing(tmp_cache) == before


def test_a_verified_archive_is_reused(fake_dataset, tmp_cache):
    fetch("fake-ds", "items.txt")
    (tmp_cache / "fake-ds" / "items.txt").unlink()
    fetch("fake-ds", "items.txt")
    assert fake_dataset.server.requests.count("/fake.zip") == 1


def test_a_stale_archive_is_replaced(fake_dataset, tmp_cache):
    downloads = tmp_cache / "_downloads"
    downloads.mkdir()
    (downloads / "fake.zip").write_bytes(fake_dataset.archive[:50])  # truncated
    path = fetch("fake-ds", "users.txt")
    assert path.read_bytes() == fake_dataset.contents["users.txt"]
    assert (downloads / "fake.zip").read_bytes() == fake_dataset.archive
    assert fake_dataset.server.requests == ["/fake.zip"]


def test_download_with_wrong_hash_is_deleted(fake_dataset, tmp_cache):
    fake_dataset.server.put("ratings.tsv", b"0\t0\t1\n")  # not the registered file
    with pytest.raises(ChecksumError) as err:
        fetch("fake-ds", "ratings.tsv", retries=3)
    msg = str(err.value)
    assert "checksum mismatch" in msg
    assert fake_dataset.server.url("ratings.tsv") in msg
    assert "not used" in msg
    assert not (tmp_cache / "fake-ds" / "ratings.tsv").exists()
    assert temp_files(tmp_cache) == []
    # a checksum failure is not retried: the server would send the same bytes
    assert fake_dataset.server.requests == ["/ratings.tsv"]


def test_extracted_member_with_wrong_hash_is_deleted(
    fake_dataset, tmp_cache, monkeypatch
):
    spec = fake_dataset.spec
    bad = tuple(
        DataFile(f.name, "0" * 64, member=f.member) if f.name == "items.txt" else f
        for f in spec.files
    )
    monkeypatch.setitem(REGISTRY, "fake-ds", DatasetSpec(
        name=spec.name, files=bad, archive_url=spec.archive_url,
        archive_sha256=spec.archive_sha256,
    ))  # fmt: skip
    with pytest.raises(ChecksumError, match=r"fake-ds/items.txt: checksum mismatch"):
        fetch("fake-ds", "items.txt")
    assert not (tmp_cache / "fake-ds" / "items.txt").exists()
    assert temp_files(tmp_cache) == []


def test_http_errors_are_retried_then_reported(file_server, tmp_cache, no_sleep):
    # the server answers 404: every attempt fails, with a back-off between them
    url = file_server.url("missing.txt")
    spec = DatasetSpec("gone", (DataFile("missing.txt", "0" * 64, url=url),))
    with pytest.raises(DataUnavailableError) as err:
        fetch(spec, "missing.txt", retries=3, timeout=5)
    assert file_server.requests == ["/missing.txt"] * 3
    assert no_sleep == [1.0, 2.0]
    msg = str(err.value)
    assert url in msg and "3 attempt(s)" in msg
    assert str(tmp_cache / "gone" / "missing.txt") in msg
    assert "GANREC_DATA" in msg
    assert temp_files(tmp_cache) == []
    assert not (tmp_cache / "gone" / "missing.txt").exists()


def test_offline_without_cache_gives_one_clear_error(
    tmp_cache, closed_port, no_sleep, monkeypatch
):
    url = f"http://127.0.0.1:{closed_port}/ml-100k.zip"
    spec = REGISTRY["ml-100k"]
    monkeypatch.setitem(REGISTRY, "ml-100k", DatasetSpec(
        name=spec.name, files=spec.files, archive_url=url,
        archive_sha256=spec.archive_sha256,
    ))  # fmt: skip
    with pytest.raises(DataUnavailableError) as err:
        fetch("ml-100k", "u.data", retries=2, timeout=2)
    msg = str(err.value)
    assert f"could not download {url} after 2 attempt(s)" in msg
    assert str(tmp_cache / "_downloads" / "ml-100k.zip") in msg  # the expected path
    assert str(tmp_cache / "ml-100k" / "u.data") in msg  # ... of what was asked for
    assert "GANREC_DATA" in msg
    assert len(no_sleep) == 1
    assert temp_files(tmp_cache) == []
    assert not (tmp_cache / "ml-100k" / "u.data").exists()


def test_loader_offline_error_names_url_path_and_variable(
    tmp_cache, closed_port, no_sleep, monkeypatch
):
    from ganrec_lite.data import load_published_split

    url = f"http://127.0.0.1:{closed_port}/movielens-100k-train.txt"
    spec = REGISTRY["irgan-ml100k"]
    files = tuple(
        DataFile(f.name, f.sha256, url=url.replace("movielens-100k-train.txt", f.name))
        for f in spec.files
    )
    monkeypatch.setitem(REGISTRY, "irgan-ml100k", DatasetSpec(
        name=spec.name, files=files, notes=spec.notes,
    ))  # fmt: skip
    with pytest.raises(DataUnavailableError) as err:
        load_published_split("irgan-ml100k")
    msg = str(err.value)
    assert url in msg
    assert str(tmp_cache / "irgan-ml100k" / "movielens-100k-train.txt") in msg
    assert "GANREC_DATA" in msg


def test_timeout_is_finite(file_server, tmp_cache, no_sleep, monkeypatch):
    import urllib.request

    seen = []
    real = urllib.request.urlopen

    def spy(req, timeout=None):
        seen.append(timeout)
        return real(req, timeout=timeout)

    monkeypatch.setattr(registry.urllib.request, "urlopen", spy)
    data = b"hello"
    url = file_server.put("h.txt", data)
    spec = DatasetSpec("h", (DataFile("h.txt", sha256_bytes(data), url=url),))
    fetch(spec, "h.txt", timeout=0.5)
    assert seen == [0.5]
    fetch(DatasetSpec("h2", spec.files), "h.txt")
    assert seen[-1] == 30.0


def test_dataset_without_any_source(tmp_cache):
    spec = DatasetSpec("nosrc", (DataFile("a", "0" * 64),))
    with pytest.raises(DataError, match="without any source"):
        fetch(spec)


def test_archive_without_the_member(fake_dataset, tmp_cache):
    spec = fake_dataset.spec
    files = (DataFile("zzz.txt", "0" * 64, member="fake/zzz.txt"),)
    other = DatasetSpec("fake-ds", files, spec.archive_url, spec.archive_sha256)
    with pytest.raises(DataError, match="has no member 'fake/zzz.txt'"):
        fetch(other)


# ------------------------------------------------------ cached file checksums


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "empty"])
def test_bad_cached_file_raises_checksum_error(fake_dataset, tmp_cache, damage):
    good = fake_dataset.contents["ratings.tsv"]
    bad = {
        "corrupt": good.replace(b"5", b"1"),
        "truncated": good[: len(good) // 2],
        "empty": b"",
    }[damage]
    path = tmp_cache / "fake-ds" / "ratings.tsv"
    path.parent.mkdir()
    path.write_bytes(bad)
    with pytest.raises(ChecksumError) as err:
        fetch("fake-ds", "ratings.tsv")
    msg = str(err.value)
    assert str(path) in msg and "checksum mismatch" in msg
    assert "was not used" in msg and "GANREC_DATA" in msg
    assert fake_dataset.server.requests == []  # nothing was downloaded over it
    assert path.read_bytes() == bad  # the user's file is left for them to inspect


def test_corrupt_cached_movielens_file_is_never_used(shared_data_dir, tmp_cache):
    from ganrec_lite.data import load_movielens

    folder = tmp_cache / "ml-100k"
    folder.mkdir()
    for name in ("u.item", "u.user"):
        (folder / name).symlink_to(shared_data_dir / "ml-100k" / name)
    good = (shared_data_dir / "ml-100k" / "u.data").read_bytes()
    (folder / "u.data").write_bytes(good[:-1000])  # truncated
    with pytest.raises(ChecksumError, match=r"u\.data.*checksum mismatch"):
        load_movielens("ml-100k")


# ------------------------------------------------------------------ zip safety


@pytest.mark.parametrize(
    "member", ["../evil", "a/../../evil", "/abs/evil", "\\evil", "C:evil", "..\\x/../y"]
)
def test_safe_extract_refuses_escaping_paths(tmp_path, member):
    archive = make_zip({member: b"pwned"})
    target = tmp_path / "target"
    target.mkdir()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        with pytest.raises(DataError, match="escapes the target folder"):
            safe_extract(zf, member, target / "evil")
    assert list(tmp_path.rglob("*")) == [target]


def test_safe_extract_writes_a_plain_member(tmp_path):
    with zipfile.ZipFile(io.BytesIO(make_zip({"d/ok.txt": b"fine"}))) as zf:
        safe_extract(zf, "d/ok.txt", tmp_path / "ok.txt")
    assert (tmp_path / "ok.txt").read_bytes() == b"fine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.txt"]


def test_safe_extract_cleans_up_after_a_failure(tmp_path):
    with zipfile.ZipFile(io.BytesIO(make_zip({"a.txt": b"x"}))) as zf:
        with pytest.raises(KeyError):
            safe_extract(zf, "b.txt", tmp_path / "b.txt")
    assert list(tmp_path.iterdir()) == []


def test_fetch_refuses_an_archive_member_escaping_the_cache(
    file_server, tmp_cache, monkeypatch
):
    data = b"evil"
    archive = make_zip({"../evil.txt": data})
    url = file_server.put("evil.zip", archive)
    spec = DatasetSpec(
        "evil-ds",
        (DataFile("evil.txt", sha256_bytes(data), member="../evil.txt"),),
        archive_url=url,
        archive_sha256=sha256_bytes(archive),
    )
    with pytest.raises(DataError, match="escapes"):
        fetch(spec)
    assert not (tmp_cache / "evil.txt").exists()
    assert not (tmp_cache / "evil-ds" / "evil.txt").exists()


# ------------------------------------------------------------- read-only caches


def _deny_writes(monkeypatch, root: Path):
    """Tests run as root, where chmod does not stop writes: also make os.access say
    the cache is read-only, as it would for an ordinary user."""
    real = os.access

    def access(path, mode, *a, **kw):
        if mode & os.W_OK and Path(path).resolve().is_relative_to(root.resolve()):
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(registry.os, "access", access)


def test_read_only_cache_holding_the_files_works(fake_dataset, tmp_cache, monkeypatch):
    fetch("fake-ds")
    n = len(fake_dataset.server.requests)
    folder = tmp_cache / "fake-ds"
    before = listing(tmp_cache)
    _deny_writes(monkeypatch, tmp_cache)
    folder.chmod(0o555)
    tmp_cache.chmod(0o555)
    try:
        assert fetch("fake-ds") == folder
        for name, data in fake_dataset.contents.items():
            assert fetch("fake-ds", name).read_bytes() == data
    finally:
        tmp_cache.chmod(0o755)
        folder.chmod(0o755)
    assert listing(tmp_cache) == before  # nothing written, not even a temp file
    assert len(fake_dataset.server.requests) == n


def test_read_only_shared_cache_works_and_is_untouched(shared_data):
    before = listing(shared_data / "ml-100k")
    for name in ("u.data", "u.item", "u.user"):
        assert fetch("ml-100k", name) == shared_data / "ml-100k" / name
    assert listing(shared_data / "ml-100k") == before


def test_read_only_cache_lacking_a_file(fake_dataset, tmp_cache, monkeypatch):
    folder = tmp_cache / "fake-ds"
    folder.mkdir()
    before = listing(tmp_cache)
    _deny_writes(monkeypatch, tmp_cache)
    with pytest.raises(DataUnavailableError) as err:
        fetch("fake-ds", "notes.txt")
    msg = str(err.value)
    assert str(folder / "notes.txt") in msg
    assert "not writable" in msg
    assert fake_dataset.server.url("notes.txt") in msg
    assert "GANREC_DATA" in msg
    assert fake_dataset.server.requests == []
    assert listing(tmp_cache) == before


def test_cache_that_cannot_be_created(fake_dataset, tmp_path, monkeypatch):
    # GANREC_DATA under a plain file: the folder cannot exist (even for root)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("GANREC_DATA", str(blocker / "cache"))
    with pytest.raises(
        DataUnavailableError, match=re.escape(fake_dataset.spec.archive_url)
    ):
        fetch("fake-ds", "items.txt")


# ------------------------------------------------- the registry's real sha256s

ISSUE_SHA256 = """
ml-100k u.data 06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490
ml-100k u.item 553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701
ml-100k u.user f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c
ml-1m movies.dat 0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9
ml-1m users.dat 1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3
ml-1m ratings.dat 506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f
"""  # as listed in issue 2


def test_registry_matches_the_issue():
    for line in ISSUE_SHA256.split("\n"):
        if line:
            ds, name, sha = line.split()
            assert REGISTRY[ds].file(name).sha256 == sha, (ds, name)
    assert REGISTRY["ml-100k"].archive_sha256 == (
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
    )
    assert REGISTRY["ml-1m"].archive_sha256 == (
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
    )


def test_registry_is_well_formed():
    for key, spec in REGISTRY.items():
        assert spec.name == key
        assert spec.licence and spec.homepage
        for f in spec.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), (key, f.name)
            assert f.url or (f.member and spec.archive_url), (key, f.name)
            if f.url:
                assert f.url.startswith("https://"), f.url
    assert "geek-ai/irgan" in REGISTRY["irgan-ml100k"].files[0].url
    assert "item_recommendation/ml-100k" in REGISTRY["irgan-ml100k"].files[0].url
    assert "Bigdasgit/CFGAN" in REGISTRY["cfgan-ml100k"].files[0].url
    assert "datasets/ML100K" in REGISTRY["cfgan-ml100k"].files[0].url


SHARED_FILES = [
    ("ml-100k", "u.data", "ml-100k"),
    ("ml-100k", "u.item", "ml-100k"),
    ("ml-100k", "u.user", "ml-100k"),
    ("ml-1m", "movies.dat", "ml-1m-partial"),
    ("ml-1m", "users.dat", "ml-1m-partial"),
    ("irgan-ml100k", "movielens-100k-train.txt", "irgan-ml100k"),
    ("irgan-ml100k", "movielens-100k-test.txt", "irgan-ml100k"),
    ("irgan-ml100k", "gan_generator.pkl", "irgan-ml100k"),
    ("irgan-ml100k", "model_dns_ori.pkl", "irgan-ml100k"),
    ("cfgan-ml100k", "ML100K.train", "cfgan-ml100k"),
    ("cfgan-ml100k", "ML100K.test", "cfgan-ml100k"),
]


@pytest.mark.parametrize("dataset,name,folder", SHARED_FILES)
def test_registry_sha256_matches_shared_data(shared_data_dir, dataset, name, folder):
    path = shared_data_dir / folder / name
    assert sha256_of(path) == REGISTRY[dataset].file(name).sha256


def test_every_shared_file_verifies_through_fetch(shared_data):
    for ds in ("ml-100k", "irgan-ml100k", "cfgan-ml100k"):
        assert fetch(ds) == shared_data / ds

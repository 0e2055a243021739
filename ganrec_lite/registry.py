"""Every file the book reads: where it comes from, its sha256, and the local cache.

The cache root is ``GANREC_DATA`` (default ``~/.cache/ganrec_lite``), laid out as
``<root>/<dataset>/<file>``, e.g. ``ml-100k/u.data`` or ``irgan-ml100k/...``. A file is
used only after its sha256 matches the registry. Downloads retry with a finite timeout,
write to a temporary file and rename it into place, and zip members are extracted only
when their path stays inside the target folder. A read-only cache that already holds
the files works; nothing is written to it.

Introduced in Chapter 1.1 (the data) and the preface (offline use).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DataError",
    "DataUnavailableError",
    "ChecksumError",
    "DataFile",
    "DatasetSpec",
    "REGISTRY",
    "cache_root",
    "fetch",
    "dataset_path",
    "sha256_of",
    "safe_extract",
]

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
IRGAN_RAW = (
    "https://raw.githubusercontent.com/geek-ai/irgan/"
    "6ee5035a6215f5c104981924bb0cfda0532df864/item_recommendation/ml-100k"
)
CFGAN_RAW = (
    "https://raw.githubusercontent.com/Bigdasgit/CFGAN/"
    "277faf1a50614df0406f4786cde6d4442b334369/datasets/ML100K"
)


class DataError(RuntimeError):
    """Base class of the data layer's errors."""


class DataUnavailableError(DataError):
    """A file is not in the cache and could not be downloaded."""


class ChecksumError(DataError):
    """A file's sha256 differs from the registry (corrupt, truncated or replaced)."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its name in the dataset folder and its sha256.

    ``url`` is set for files downloaded one by one; files that come out of the
    dataset's archive leave it ``None`` and name their ``member`` inside the zip.
    """

    name: str
    sha256: str
    url: str | None = None
    member: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its cache folder, its files, and (optionally) one zip archive."""

    name: str
    files: tuple[DataFile, ...]
    archive_url: str | None = None
    archive_sha256: str | None = None
    licence: str = ""
    homepage: str = ""
    notes: dict = field(default_factory=dict)

    def file(self, name: str) -> DataFile:
        for f in self.files:
            if f.name == name:
                return f
        known = ", ".join(f.name for f in self.files)
        raise ValueError(f"dataset {self.name!r} has no file {name!r}; it has: {known}")


_ML_LICENCE = (
    "MovieLens data (GroupLens Research, University of Minnesota): free for research, "
    "may not be redistributed; cite Harper & Konstan (2015)."
)

REGISTRY: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        archive_url=f"{GROUPLENS}/ml-100k.zip",
        archive_sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        files=(
            DataFile(
                "u.data",
                "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                member="ml-100k/u.data",
            ),
            DataFile(
                "u.item",
                "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
                member="ml-100k/u.item",
            ),
            DataFile(
                "u.user",
                "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
                member="ml-100k/u.user",
            ),
        ),
        licence=_ML_LICENCE,
        homepage="https://grouplens.org/datasets/movielens/100k/",
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        archive_url=f"{GROUPLENS}/ml-1m.zip",
        archive_sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        files=(
            DataFile(
                "ratings.dat",
                "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
                member="ml-1m/ratings.dat",
            ),
            DataFile(
                "movies.dat",
                "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
                member="ml-1m/movies.dat",
            ),
            DataFile(
                "users.dat",
                "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
                member="ml-1m/users.dat",
            ),
        ),
        licence=_ML_LICENCE,
        homepage="https://grouplens.org/datasets/movielens/1m/",
    ),
    "irgan-ml100k": DatasetSpec(
        name="irgan-ml100k",
        files=(
            DataFile(
                "movielens-100k-train.txt",
                "81fdf6f0b282e60c43e93ab9ae3f0627d026bf382a61f90c59154a1126d3afde",
                url=f"{IRGAN_RAW}/movielens-100k-train.txt",
            ),
            DataFile(
                "movielens-100k-test.txt",
                "b5cc7d184c5b68f1dca4f1f53da3849acf4cd6ab65195b1d6bb59512cb402d17",
                url=f"{IRGAN_RAW}/movielens-100k-test.txt",
            ),
            DataFile(
                "gan_generator.pkl",
                "bc1a56a34166c1e7c0d5d3e712bbd2bfb4578cab8e4ea667b2cc82b34bbeb811",
                url=f"{IRGAN_RAW}/gan_generator.pkl",
            ),
            DataFile(
                "model_dns_ori.pkl",
                "6b8ebe3b19d2307bc32b5854bf7a443544c2b03e92a8db8aa9e136ef54c78b13",
                url=f"{IRGAN_RAW}/model_dns_ori.pkl",
            ),
        ),
        licence=_ML_LICENCE
        + " Split and models released with IRGAN (Wang et al. 2017).",
        homepage="https://github.com/geek-ai/irgan",
        notes={"sep": "\t", "positive_threshold": 3.99},
    ),
    "cfgan-ml100k": DatasetSpec(
        name="cfgan-ml100k",
        files=(
            DataFile(
                "ML100K.train",
                "3dcc6c5219de56ad819152860d31c9bfde0103288cb51923242d8b768726183f",
                url=f"{CFGAN_RAW}/ML100K.train",
            ),
            DataFile(
                "ML100K.test",
                "4ad38c30a6f584571028c1e18815b9892febe254874872960629728d1cb293a4",
                url=f"{CFGAN_RAW}/ML100K.test",
            ),
        ),
        licence=_ML_LICENCE + " Split released with CFGAN (Chae et al. 2018).",
        homepage="https://github.com/Bigdasgit/CFGAN",
        notes={"sep": " ", "positive_threshold": None},
    ),
}


def cache_root() -> Path:
    """The cache root: ``GANREC_DATA`` or ``~/.cache/ganrec_lite``."""
    env = os.environ.get("GANREC_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ganrec_lite"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _spec(dataset: str | DatasetSpec) -> DatasetSpec:
    if isinstance(dataset, DatasetSpec):
        return dataset
    try:
        return REGISTRY[dataset]
    except KeyError:
        raise ValueError(
            f"unknown dataset {dataset!r}; registered: {', '.join(sorted(REGISTRY))}"
        ) from None


def dataset_path(dataset: str | DatasetSpec) -> Path:
    """The folder of ``dataset`` in the cache (it may not exist yet)."""
    return cache_root() / _spec(dataset).name


def _verify(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            f"{what}: checksum mismatch for {path} (sha256 {actual}, expected "
            f"{expected}); the file is corrupt, truncated or a different version and "
            "was not used. Delete it to download it again, or point GANREC_DATA at a "
            "good copy."
        )


def _writable_dir(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _download(url: str, dest: Path, sha256: str, *, retries: int, timeout: float):
    """Download ``url`` to ``dest`` atomically, verifying ``sha256``."""
    last: Exception | None = None
    for attempt in range(retries):
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            with os.fdopen(fd, "wb") as out:
                req = urllib.request.Request(url, headers={"User-Agent": "ganrec_lite"})
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
            _verify(Path(tmp), sha256, f"download of {url}")
            os.replace(tmp, dest)
            return
        except ChecksumError:
            raise
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last = exc
            if attempt + 1 < retries:
                time.sleep(min(2.0**attempt, 8.0))
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    raise DataUnavailableError(
        f"could not download {url} after {retries} attempt(s) ({last}). The file "
        f"was expected at {dest}. Connect to the internet once, or set GANREC_DATA to "
        "a folder that already holds the data (layout: <dataset>/<file>, as in the "
        "README's data note)."
    )


def safe_extract(archive: zipfile.ZipFile, member: str, dest: Path) -> None:
    """Extract one zip ``member`` to the file ``dest``, refusing escaping paths."""
    parts = Path(member).parts
    if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(
            f"refusing to extract {member!r}: its path escapes the target folder"
        )
    root = dest.parent.resolve()
    if not dest.resolve().is_relative_to(root):  # pragma: no cover - defensive
        raise DataError(f"refusing to extract {member!r} outside {root}")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, archive.open(member) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch(
    dataset: str | DatasetSpec,
    name: str | None = None,
    *,
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Return the verified local path of a dataset file, downloading it if needed.

    Args:
        dataset: a registry name (``"ml-100k"``) or a :class:`DatasetSpec`.
        name: the file (``"u.data"``); ``None`` fetches every file and returns the
            dataset folder.
        retries: download attempts before giving up.
        timeout: seconds per network operation.

    Raises:
        ValueError: unknown dataset or file name.
        ChecksumError: the cached or downloaded file does not match its sha256.
        DataUnavailableError: not cached and not downloadable (offline), or the
            cache is read-only and lacks the file.
    """
    spec = _spec(dataset)
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    folder = dataset_path(spec)
    wanted = spec.files if name is None else (spec.file(name),)
    missing = [f for f in wanted if not (folder / f.name).is_file()]
    if missing:
        if not _writable_dir(folder):
            f = missing[0]
            raise DataUnavailableError(
                f"{folder / f.name} is missing and the cache {folder} is not writable, "
                f"so it cannot be downloaded from {f.url or spec.archive_url}. Set "
                "GANREC_DATA to a writable folder or to one that holds the data."
            )
        _fill(spec, folder, missing, retries=retries, timeout=timeout)
    for f in wanted:
        _verify(folder / f.name, f.sha256, f"{spec.name}/{f.name}")
    return folder if name is None else folder / wanted[0].name


def _fill(spec, folder: Path, missing, *, retries: int, timeout: float) -> None:
    direct = [f for f in missing if f.url is not None]
    from_archive = [f for f in missing if f.url is None]
    for f in direct:
        _download(f.url, folder / f.name, f.sha256, retries=retries, timeout=timeout)
    if not from_archive:
        return
    if spec.archive_url is None or spec.archive_sha256 is None:
        raise DataError(f"dataset {spec.name!r} has files without any source")
    downloads = cache_root() / "_downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive_path = downloads / Path(spec.archive_url).name
    if archive_path.is_file():
        try:
            _verify(archive_path, spec.archive_sha256, f"archive of {spec.name}")
        except ChecksumError:
            archive_path.unlink()  # a stale partial download we wrote ourselves
    if not archive_path.is_file():
        try:
            _download(
                spec.archive_url,
                archive_path,
                spec.archive_sha256,
                retries=retries,
                timeout=timeout,
            )
        except DataUnavailableError as exc:
            paths = ", ".join(str(folder / f.name) for f in from_archive)
            raise DataUnavailableError(
                f"{exc} The archive holds {paths}: put those files (or the archive) "
                "there to work offline."
            ) from None
    with zipfile.ZipFile(archive_path) as zf:
        names = set(zf.namelist())
        for f in from_archive:
            member = f.member or f.name
            if member not in names:
                raise DataError(f"{archive_path} has no member {member!r}")
            dest = folder / f.name
            safe_extract(zf, member, dest)
            try:
                _verify(dest, f.sha256, f"{spec.name}/{f.name}")
            except ChecksumError:
                dest.unlink()
                raise

"""MovieLens, the published ML-100K splits, and a small synthetic dataset.

Every loader returns pandas DataFrames with zero-based contiguous ids (``user``,
``item``) and keeps the original ids (``orig_user_id``, ``orig_item_id``). Files are
read through :mod:`ganrec_lite.registry`, so each one is checksum-verified first.

Introduced in Chapter 1.1 (MovieLens) and Chapter 5.1 (the published splits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .registry import REGISTRY, fetch

__all__ = [
    "MovieLens",
    "PublishedSplit",
    "load_movielens",
    "load_published_split",
    "make_synthetic",
    "to_matrix",
    "ML100K_GENRES",
]

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass
class MovieLens:
    """A MovieLens dataset as three tables.

    Attributes:
        ratings: ``user, item, rating, timestamp, orig_user_id, orig_item_id``.
        items: ``item, orig_item_id, title, year, genres`` (genres: list of str).
        users: ``user, orig_user_id, age, gender, occupation, zip``.
        name: ``"ml-100k"``, ``"ml-1m"`` or ``"synthetic"``.
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    name: str

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (
            f"MovieLens({self.name!r}: {len(self.ratings):,} ratings, "
            f"{self.n_users:,} users, {self.n_items:,} items)"
        )


def _year(title: str):
    m = _YEAR.search(title)
    return int(m.group(1)) if m else pd.NA


def _index(orig: pd.Series) -> dict:
    return {v: i for i, v in enumerate(orig)}


def _finish(ratings, items, users, name) -> MovieLens:
    """Map original ids to zero-based ids, ordered by original id."""
    items = items.sort_values("orig_item_id", ignore_index=True)
    users = users.sort_values("orig_user_id", ignore_index=True)
    items.insert(0, "item", np.arange(len(items), dtype=np.int64))
    users.insert(0, "user", np.arange(len(users), dtype=np.int64))
    umap, imap = _index(users["orig_user_id"]), _index(items["orig_item_id"])
    ratings = ratings.rename(columns={"u": "orig_user_id", "i": "orig_item_id"})
    ratings.insert(0, "user", ratings["orig_user_id"].map(umap).astype(np.int64))
    ratings.insert(1, "item", ratings["orig_item_id"].map(imap).astype(np.int64))
    ratings = ratings[
        ["user", "item", "rating", "timestamp", "orig_user_id", "orig_item_id"]
    ].reset_index(drop=True)
    return MovieLens(ratings=ratings, items=items, users=users, name=name)


def _load_ml100k() -> MovieLens:
    ratings = pd.read_csv(
        fetch("ml-100k", "u.data"), sep="\t", header=None,
        names=["u", "i", "rating", "timestamp"], dtype=np.int64,
    )  # fmt: skip
    cols = ["orig_item_id", "title", "release_date", "video_release", "imdb_url"]
    raw = pd.read_csv(
        fetch("ml-100k", "u.item"), sep="|", header=None, encoding="latin-1",
        names=cols + list(ML100K_GENRES),
    )  # fmt: skip
    flags = raw[list(ML100K_GENRES)].to_numpy(bool)
    genres = [[g for g, f in zip(ML100K_GENRES, r, strict=True) if f] for r in flags]
    items = pd.DataFrame(
        {
            "orig_item_id": raw["orig_item_id"].astype(np.int64),
            "title": raw["title"].astype(str),
            "year": raw["title"].astype(str).map(_year).astype("Int64"),
            "genres": genres,
            "release_date": raw["release_date"],
        }
    )
    users = pd.read_csv(
        fetch("ml-100k", "u.user"), sep="|", header=None,
        names=["orig_user_id", "age", "gender", "occupation", "zip"],
        dtype={"zip": str},
    )  # fmt: skip
    return _finish(ratings, items, users, "ml-100k")


def _read_dat(path, names, **kw) -> pd.DataFrame:
    # "::"-separated files; read as text and split (the python engine is slow).
    with open(path, encoding="latin-1") as fh:
        rows = [line.rstrip("\n").split("::") for line in fh if line.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != len(names)]
    if bad:
        raise ValueError(f"{path}: line {bad[0] + 1} has not {len(names)} fields")
    return pd.DataFrame(rows, columns=names, **kw)


def _load_ml1m() -> MovieLens:
    r = _read_dat(fetch("ml-1m", "ratings.dat"), ["u", "i", "rating", "timestamp"])
    ratings = r.astype(np.int64)
    m = _read_dat(fetch("ml-1m", "movies.dat"), ["orig_item_id", "title", "genres"])
    items = pd.DataFrame(
        {
            "orig_item_id": m["orig_item_id"].astype(np.int64),
            "title": m["title"],
            "year": m["title"].map(_year).astype("Int64"),
            "genres": m["genres"].str.split("|"),
        }
    )
    u = _read_dat(
        fetch("ml-1m", "users.dat"),
        ["orig_user_id", "gender", "age", "occupation", "zip"],
    )
    users = u.astype(
        {"orig_user_id": np.int64, "age": np.int64, "occupation": np.int64}
    )
    users = users[["orig_user_id", "age", "gender", "occupation", "zip"]]
    return _finish(ratings, items, users, "ml-1m")


def load_movielens(name: str = "ml-100k") -> MovieLens:
    """Load MovieLens ``"ml-100k"`` or ``"ml-1m"`` (downloaded once, then cached).

    >>> ml = load_movielens("ml-100k")  # doctest: +SKIP
    >>> len(ml.ratings), ml.n_users, ml.n_items  # doctest: +SKIP
    (100000, 943, 1682)

    Raises:
        ValueError: ``name`` is not a MovieLens dataset.
        DataUnavailableError, ChecksumError: see :func:`ganrec_lite.registry.fetch`.
    """
    loaders = {"ml-100k": _load_ml100k, "ml-1m": _load_ml1m}
    if name not in loaders:
        raise ValueError(
            f"load_movielens: name must be one of {sorted(loaders)}, got {name!r}"
        )
    return loaders[name]()


@dataclass
class PublishedSplit:
    """A train/test split released with a paper, in the paper's own ids.

    Attributes:
        name: registry name (``"irgan-ml100k"`` or ``"cfgan-ml100k"``).
        train, test: ``user, item, rating`` DataFrames (all rows of the files).
        n_users, n_items: matrix shape implied by the ids in the files.
        positive_threshold: a rating above it is a positive; ``None`` means every
            rating is a positive.
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int
    positive_threshold: float | None

    def positives(self, part: str) -> pd.DataFrame:
        """The positive interactions of ``"train"`` or ``"test"``."""
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        df = getattr(self, part)
        if self.positive_threshold is None:
            return df
        return df[df["rating"] > self.positive_threshold].reset_index(drop=True)

    def matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Boolean (n_users, n_items) train and test positive matrices."""
        shape = (self.n_users, self.n_items)
        return (
            to_matrix(self.positives("train"), shape),
            to_matrix(self.positives("test"), shape),
        )

    def __repr__(self) -> str:
        pos = (
            "every rating"
            if self.positive_threshold is None
            else f"rating > {self.positive_threshold}"
        )
        return (
            f"PublishedSplit({self.name!r}: {len(self.train):,} train / "
            f"{len(self.test):,} test rows, {self.n_users} x {self.n_items}, "
            f"positives: {pos})"
        )


_SPLIT_FILES = {
    "irgan-ml100k": ("movielens-100k-train.txt", "movielens-100k-test.txt"),
    "cfgan-ml100k": ("ML100K.train", "ML100K.test"),
}


def load_published_split(name: str) -> PublishedSplit:
    """Load IRGAN's (``"irgan-ml100k"``) or CFGAN's (``"cfgan-ml100k"``) ML-100K split.

    IRGAN's files are tab-separated ``user item rating`` with positives ``rating >
    3.99``; CFGAN's are space-separated and every rating is a positive. Ids are the
    files' own (already zero-based).
    """
    if name not in _SPLIT_FILES:
        raise ValueError(
            f"load_published_split: name must be one of {sorted(_SPLIT_FILES)}, "
            f"got {name!r}"
        )
    notes = REGISTRY[name].notes
    frames = []
    for fname in _SPLIT_FILES[name]:
        df = pd.read_csv(
            fetch(name, fname), sep=notes["sep"], header=None,
            names=["user", "item", "rating"],
        )  # fmt: skip
        df = df.astype({"user": np.int64, "item": np.int64, "rating": np.float64})
        frames.append(df)
    train, test = frames
    both = pd.concat(frames)
    return PublishedSplit(
        name=name,
        train=train,
        test=test,
        n_users=int(both["user"].max()) + 1,
        n_items=int(both["item"].max()) + 1,
        positive_threshold=notes["positive_threshold"],
    )


def to_matrix(
    interactions: pd.DataFrame,
    shape: tuple[int, int],
    *,
    threshold: float | None = None,
) -> sp.csr_matrix:
    """Boolean CSR matrix of the (user, item) pairs in ``interactions``.

    Args:
        interactions: DataFrame with ``user`` and ``item`` (and ``rating`` when a
            ``threshold`` is given).
        shape: ``(n_users, n_items)``.
        threshold: keep only rows with ``rating > threshold``.

    Raises:
        ValueError: missing columns or ids outside ``shape``.
    """
    for col in ("user", "item") + (("rating",) if threshold is not None else ()):
        if col not in interactions.columns:
            raise ValueError(f"interactions has no column {col!r}")
    n_users, n_items = shape
    df = interactions
    if threshold is not None:
        df = df[df["rating"] > threshold]
    u = df["user"].to_numpy(np.int64)
    i = df["item"].to_numpy(np.int64)
    if len(u) and (u.min() < 0 or u.max() >= n_users):
        raise ValueError(
            f"user ids must lie in [0, {n_users}); got {u.min()}..{u.max()}"
        )
    if len(i) and (i.min() < 0 or i.max() >= n_items):
        raise ValueError(
            f"item ids must lie in [0, {n_items}); got {i.min()}..{i.max()}"
        )
    m = sp.csr_matrix((np.ones(len(u), dtype=bool), (u, i)), shape=shape, dtype=bool)
    m.sum_duplicates()
    return m


_GENRE_WORDS = (
    ("Action", "chase"), ("Comedy", "laugh"), ("Drama", "tears"), ("Sci-Fi", "robot"),
    ("Romance", "kiss"), ("Horror", "ghost"), ("Western", "saloon"), ("War", "battle"),
)  # fmt: skip


def make_synthetic(
    n_users: int = 200,
    n_items: int = 300,
    rank: int = 4,
    density: float = 0.05,
    seed: int = 0,
) -> MovieLens:
    """A small seeded dataset with planted low-rank preferences and item text.

    User and item factors are drawn from N(0, 1) in ``rank`` dimensions; each user
    rates the ``density * n_items`` items with the highest noisy affinity, with
    ratings 1-5 by affinity quantile. An item's genre is its strongest factor, so
    the text ("<word> story 12 (1990)", genres) carries part of the signal: a
    stand-in for MovieLens in fast tests and exercises.
    """
    for arg, val in (("n_users", n_users), ("n_items", n_items), ("rank", rank)):
        if int(val) < 1:
            raise ValueError(f"{arg} must be >= 1, got {val}")
    if rank > len(_GENRE_WORDS):
        raise ValueError(f"rank must be <= {len(_GENRE_WORDS)}, got {rank}")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(n_users, rank))
    Q = rng.normal(size=(n_items, rank))
    affinity = P @ Q.T + 0.5 * rng.normal(size=(n_users, n_items))  # (U, I)
    per_user = max(1, int(round(density * n_items)))
    top = np.argsort(-affinity, axis=1, kind="stable")[:, :per_user]  # (U, per_user)
    users = np.repeat(np.arange(n_users), per_user)
    items = top.ravel()
    a = affinity[users, items]
    ratings = 1 + np.searchsorted(np.quantile(a, [0.1, 0.25, 0.5, 0.75]), a)
    ts = 8_000_000_00 + rng.integers(0, 10_000_000, size=len(users))
    genre_of = np.abs(Q).argmax(axis=1)
    years = rng.integers(1950, 2000, size=n_items)
    titles = [
        f"{_GENRE_WORDS[g][1].title()} Story {j} ({y})"
        for j, (g, y) in enumerate(zip(genre_of, years, strict=False))
    ]
    items_df = pd.DataFrame(
        {
            "orig_item_id": np.arange(1, n_items + 1),
            "title": titles,
            "year": pd.array(years, dtype="Int64"),
            "genres": [[_GENRE_WORDS[g][0]] for g in genre_of],
        }
    )
    users_df = pd.DataFrame(
        {
            "orig_user_id": np.arange(1, n_users + 1),
            "age": rng.integers(18, 70, size=n_users),
            "gender": rng.choice(["F", "M"], size=n_users),
            "occupation": "synthetic",
            "zip": "00000",
        }
    )
    ratings_df = pd.DataFrame(
        {"u": users + 1, "i": items + 1, "rating": ratings.astype(np.int64),
         "timestamp": ts.astype(np.int64)}
    )  # fmt: skip
    ml = _finish(ratings_df, items_df, users_df, "synthetic")
    ml.ratings = ml.ratings.sort_values(["user", "timestamp"], ignore_index=True)
    return ml

"""Seeded train/test splits of interaction tables, and a leakage check.

Every split takes a ratings DataFrame with ``user`` and ``item`` columns (and
``timestamp`` for the time-based ones) and returns a :class:`Split`. Ties and
shuffles depend only on ``seed``.

Introduced in Chapter 1.2 (evaluation protocols); cold-start splits in Chapter 5.7.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data import to_matrix

__all__ = [
    "Split",
    "LeakageError",
    "random_split",
    "leave_one_out",
    "temporal_split",
    "cold_start_items",
    "cold_start_users",
    "check_leakage",
]


class LeakageError(AssertionError):
    """Test (or validation) information is present in the training data."""


@dataclass
class Split:
    """Train / (validation) / test interactions and what the split promises.

    Attributes:
        train, test, valid: row subsets of the input table (``valid`` may be empty).
        n_users, n_items: shape of the interaction matrices.
        kind: the split's name and parameters, for protocol cards.
        cold_items, cold_users: ids that must not appear in ``train``.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    valid: pd.DataFrame
    n_users: int
    n_items: int
    kind: str
    cold_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    cold_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def matrix(self, part: str, threshold: float | None = None) -> sp.csr_matrix:
        """Boolean (n_users, n_items) matrix of "train", "valid" or "test"."""
        if part not in ("train", "valid", "test"):
            raise ValueError(f"part must be 'train', 'valid' or 'test', got {part!r}")
        df = getattr(self, part)
        return to_matrix(df, (self.n_users, self.n_items), threshold=threshold)

    def __repr__(self) -> str:
        return (
            f"Split({self.kind}: {len(self.train):,} train / {len(self.valid):,} valid"
            f" / {len(self.test):,} test; {self.n_users} x {self.n_items})"
        )


def _check_table(ratings: pd.DataFrame, need_time: bool = False) -> None:
    if not isinstance(ratings, pd.DataFrame):
        raise ValueError(f"ratings must be a DataFrame, got {type(ratings).__name__}")
    cols = ("user", "item") + (("timestamp",) if need_time else ())
    for c in cols:
        if c not in ratings.columns:
            raise ValueError(f"ratings has no column {c!r} (columns: {list(ratings)})")
    if len(ratings) == 0:
        raise ValueError("ratings is empty")
    if (ratings["user"] < 0).any() or (ratings["item"] < 0).any():
        raise ValueError("user and item ids must be non-negative")


def _ratio(name: str, value: float, upper: float = 1.0) -> None:
    if not 0 <= value < upper:
        raise ValueError(f"{name} must be in [0, {upper}), got {value}")


def _shape(ratings, n_users, n_items):
    nu = int(ratings["user"].max()) + 1 if n_users is None else int(n_users)
    ni = int(ratings["item"].max()) + 1 if n_items is None else int(n_items)
    if ratings["user"].max() >= nu or ratings["item"].max() >= ni:
        raise ValueError(f"ids exceed n_users={nu} / n_items={ni}")
    return nu, ni


def _make(ratings, test_mask, valid_mask, nu, ni, kind, **cold) -> Split:
    train_mask = ~(test_mask | valid_mask)
    split = Split(
        train=ratings[train_mask].reset_index(drop=True),
        test=ratings[test_mask].reset_index(drop=True),
        valid=ratings[valid_mask].reset_index(drop=True),
        n_users=nu,
        n_items=ni,
        kind=kind,
        **cold,
    )
    check_leakage(split)
    return split


def _within_user_rank(ratings: pd.DataFrame, order_key: np.ndarray) -> tuple:
    """Rank (0-based) of each row inside its user by ``order_key``, and user sizes."""
    order = np.lexsort((order_key, ratings["user"].to_numpy()))
    users_sorted = ratings["user"].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users_sorted)) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    rank_sorted = np.arange(len(order)) - np.repeat(starts, sizes)
    rank = np.empty(len(order), np.int64)
    rank[order] = rank_sorted
    size = np.empty(len(order), np.int64)
    size[order] = np.repeat(sizes, sizes)
    return rank, size


def random_split(
    ratings: pd.DataFrame,
    test_ratio: float = 0.2,
    valid_ratio: float = 0.0,
    seed: int = 0,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Split:
    """Per-user random hold-out: each user's interactions are shuffled and the last
    ``round(test_ratio * n)`` go to test (then ``valid_ratio`` to validation).

    A user keeps at least one training interaction.
    """
    _check_table(ratings)
    _ratio("test_ratio", test_ratio)
    _ratio("valid_ratio", valid_ratio, 1.0 - test_ratio)
    nu, ni = _shape(ratings, n_users, n_items)
    key = np.random.default_rng(seed).random(len(ratings))
    rank, size = _within_user_rank(ratings, key)
    n_test = np.minimum(np.round(test_ratio * size), size - 1)
    n_valid = np.minimum(np.round(valid_ratio * size), size - 1 - n_test)
    test = rank >= size - n_test
    valid = (rank >= size - n_test - n_valid) & ~test
    kind = f"per-user random {1 - test_ratio - valid_ratio:.0%}/"
    kind += f"{valid_ratio:.0%}/" if valid_ratio else ""
    kind += f"{test_ratio:.0%} (seed {seed})"
    return _make(ratings, test, valid, nu, ni, kind)


def leave_one_out(
    ratings: pd.DataFrame,
    valid: bool = False,
    seed: int = 0,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Split:
    """Leave-one-out by time: each user's last interaction is the test item (and the
    one before it the validation item when ``valid``). Equal timestamps are ordered
    by a seeded random key. Users with too few interactions keep them all in train.
    """
    _check_table(ratings, need_time=True)
    nu, ni = _shape(ratings, n_users, n_items)
    key = np.random.default_rng(seed).random(len(ratings))
    ts = ratings["timestamp"].to_numpy(np.float64)
    # lexsort: last key is primary; order by (user, timestamp, random key)
    order = np.lexsort((key, ts, ratings["user"].to_numpy()))
    users_sorted = ratings["user"].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users_sorted)) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(starts, sizes)
    size = np.empty(len(order), np.int64)
    size[order] = np.repeat(sizes, sizes)
    need = 3 if valid else 2
    test = (rank == size - 1) & (size >= need)
    val = (rank == size - 2) & (size >= need) if valid else np.zeros_like(test)
    kind = "leave-one-out by time" + (" (+1 validation)" if valid else "")
    return _make(ratings, test, val, nu, ni, kind)


def temporal_split(
    ratings: pd.DataFrame,
    test_ratio: float = 0.2,
    valid_ratio: float = 0.0,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Split:
    """Global temporal split: the latest ``test_ratio`` of all interactions (by
    timestamp, ties by row order) are test, the ``valid_ratio`` before them validation.
    """
    _check_table(ratings, need_time=True)
    _ratio("test_ratio", test_ratio)
    _ratio("valid_ratio", valid_ratio, 1.0 - test_ratio)
    nu, ni = _shape(ratings, n_users, n_items)
    n = len(ratings)
    order = np.argsort(ratings["timestamp"].to_numpy(), kind="stable")
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n)
    n_test = int(round(test_ratio * n))
    n_valid = int(round(valid_ratio * n))
    test = pos >= n - n_test
    valid = (pos >= n - n_test - n_valid) & ~test
    kind = f"global temporal, latest {test_ratio:.0%} test"
    kind += f", {valid_ratio:.0%} validation" if valid_ratio else ""
    return _make(ratings, test, valid, nu, ni, kind)


def _cold(ratings, column, ratio, valid_ratio, seed, n_users, n_items, label):
    _check_table(ratings)
    if not 0 < ratio < 1:
        raise ValueError(f"{label}_ratio must be in (0, 1), got {ratio}")
    _ratio("valid_ratio", valid_ratio, 1.0 - ratio)
    nu, ni = _shape(ratings, n_users, n_items)
    present = np.unique(ratings[column].to_numpy())
    rng = np.random.default_rng(seed)
    perm = rng.permutation(present)
    n_cold = max(1, int(round(ratio * len(present))))
    n_valid = int(round(valid_ratio * len(present)))
    if n_cold + n_valid >= len(present):
        raise ValueError(f"too few {label}s ({len(present)}) for these ratios")
    cold = np.sort(perm[:n_cold])
    cold_valid = np.sort(perm[n_cold : n_cold + n_valid])
    col = ratings[column].to_numpy()
    test = np.isin(col, cold)
    valid = np.isin(col, cold_valid)
    kind = f"cold-start {label}s: {ratio:.0%} of {label}s held out"
    kind += f", {valid_ratio:.0%} for validation" if valid_ratio else ""
    kind += f" (seed {seed})"
    extra = {f"cold_{label}s": np.sort(np.r_[cold, cold_valid]).astype(np.int64)}
    return _make(ratings, test, valid, nu, ni, kind, **extra)


def cold_start_items(
    ratings: pd.DataFrame,
    item_ratio: float = 0.2,
    valid_ratio: float = 0.0,
    seed: int = 0,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Split:
    """Hold out a random ``item_ratio`` of the items that have interactions: all of
    their interactions go to test (``valid_ratio`` more items to validation), so no
    cold item appears in training. ``Split.cold_items`` lists them.
    """
    return _cold(
        ratings, "item", item_ratio, valid_ratio, seed, n_users, n_items, "item"
    )


def cold_start_users(
    ratings: pd.DataFrame,
    user_ratio: float = 0.2,
    valid_ratio: float = 0.0,
    seed: int = 0,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Split:
    """Hold out a random ``user_ratio`` of the users: all their interactions go to
    test, so no cold user appears in training. ``Split.cold_users`` lists them.
    """
    return _cold(
        ratings, "user", user_ratio, valid_ratio, seed, n_users, n_items, "user"
    )


def _pairs(df: pd.DataFrame) -> pd.Index:
    return pd.MultiIndex.from_arrays([df["user"].to_numpy(), df["item"].to_numpy()])


def check_leakage(split: Split) -> None:
    """Assert that train, validation and test share no (user, item) pair and that no
    cold item or cold user appears in training.

    Raises:
        LeakageError: with the number of leaked pairs or ids and an example.
    """
    tr = _pairs(split.train)
    for name in ("valid", "test"):
        other = _pairs(getattr(split, name))
        both = tr.intersection(other)
        if len(both):
            raise LeakageError(
                f"{len(both)} (user, item) pair(s) are in both train and {name}, "
                f"e.g. {tuple(map(int, both[0]))}"
            )
    vt = _pairs(split.valid).intersection(_pairs(split.test))
    if len(vt):
        raise LeakageError(
            f"{len(vt)} pair(s) are in both valid and test, "
            f"e.g. {tuple(map(int, vt[0]))}"
        )
    for label in ("item", "user"):
        cold = getattr(split, f"cold_{label}s")
        if len(cold):
            seen = np.intersect1d(cold, split.train[label].to_numpy())
            if len(seen):
                raise LeakageError(
                    f"{len(seen)} cold {label}(s) appear in train, e.g. {int(seen[0])}"
                )

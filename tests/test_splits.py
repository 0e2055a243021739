"""Seeded splits on ML-100K and synthetic data, and the leakage check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ganrec_lite.data import make_synthetic
from ganrec_lite.splits import (
    LeakageError,
    Split,
    check_leakage,
    cold_start_items,
    cold_start_users,
    leave_one_out,
    random_split,
    temporal_split,
)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(n_users=120, n_items=200, density=0.08, seed=0).ratings


@pytest.fixture(params=["ml-100k", "synthetic"])
def ratings(request, synthetic):
    if request.param == "synthetic":
        return synthetic
    return request.getfixturevalue("ml100k").ratings


def pairs(df: pd.DataFrame) -> set:
    return set(
        zip(df["user"].to_numpy().tolist(), df["item"].to_numpy().tolist(), strict=True)
    )


def assert_partition(split: Split, ratings: pd.DataFrame):
    """train, valid and test are disjoint and together hold every row."""
    parts = [split.train, split.valid, split.test]
    assert sum(len(p) for p in parts) == len(ratings)
    all_rows = pd.concat(parts).sort_values(["user", "item"], ignore_index=True)
    expect = ratings.sort_values(["user", "item"], ignore_index=True)
    pd.testing.assert_frame_equal(all_rows, expect, check_dtype=False)
    assert not pairs(split.train) & pairs(split.test)
    assert not pairs(split.train) & pairs(split.valid)
    assert not pairs(split.valid) & pairs(split.test)
    check_leakage(split)


# ---------------------------------------------------------------- random split


def test_random_split_ratios_and_partition(ratings):
    s = random_split(ratings, test_ratio=0.2, seed=0)
    assert_partition(s, ratings)
    assert (s.n_users, s.n_items) == (
        ratings["user"].max() + 1,
        ratings["item"].max() + 1,
    )
    n = ratings.groupby("user").size()
    n_test = s.test.groupby("user").size().reindex(n.index, fill_value=0)
    assert (np.abs(n_test - 0.2 * n) <= 0.5 + 1e-9).all()  # 80/20 per user
    n_train = s.train.groupby("user").size().reindex(n.index, fill_value=0)
    assert (n_train >= 1).all()
    assert len(s.valid) == 0
    assert s.kind == "per-user random 80%/20% (seed 0)"


def test_random_split_with_validation(ratings):
    s = random_split(ratings, test_ratio=0.2, valid_ratio=0.1, seed=1)
    assert_partition(s, ratings)
    n = ratings.groupby("user").size()
    n_valid = s.valid.groupby("user").size().reindex(n.index, fill_value=0)
    assert (np.abs(n_valid - 0.1 * n) <= 0.5 + 1e-9).all()
    assert s.kind == "per-user random 70%/10%/20% (seed 1)"
    assert "70%/10%/20%" in repr(s)


def test_random_split_is_seeded(ratings):
    a = random_split(ratings, seed=7)
    b = random_split(ratings, seed=7)
    c = random_split(ratings, seed=8)
    pd.testing.assert_frame_equal(a.test, b.test)
    pd.testing.assert_frame_equal(a.train, b.train)
    assert pairs(a.test) != pairs(c.test)


def test_random_split_keeps_a_training_row_for_every_user():
    df = pd.DataFrame({"user": [0, 1, 1, 2, 2, 2], "item": [0, 0, 1, 0, 1, 2]})
    s = random_split(df, test_ratio=0.9, valid_ratio=0.05, seed=0)
    assert set(s.train["user"]) == {0, 1, 2}
    assert 0 not in set(s.test["user"])  # a user with one row keeps it in train
    assert s.test.groupby("user").size().to_dict() == {1: 1, 2: 2}


def test_random_split_shape_arguments():
    df = pd.DataFrame({"user": [0, 1, 1], "item": [0, 0, 1]})
    s = random_split(df, n_users=5, n_items=7)
    assert (s.n_users, s.n_items) == (5, 7)
    assert s.matrix("train").shape == (5, 7)
    with pytest.raises(ValueError, match="ids exceed n_users=1"):
        random_split(df, n_users=1)
    with pytest.raises(ValueError, match="n_items=1"):
        random_split(df, n_items=1)


def test_split_matrix(synthetic):
    s = random_split(synthetic, seed=0)
    train, test = s.matrix("train"), s.matrix("test")
    assert train.shape == (s.n_users, s.n_items) and train.dtype == bool
    assert train.nnz == len(s.train) and test.nnz == len(s.test)
    assert train.multiply(test).nnz == 0
    assert s.matrix("valid").nnz == 0
    liked = s.matrix("test", threshold=3)
    assert liked.nnz == int((s.test["rating"] > 3).sum())
    with pytest.raises(ValueError, match="part must be 'train', 'valid' or 'test'"):
        s.matrix("all")


# -------------------------------------------------------------- leave-one-out


def test_leave_one_out_takes_each_users_latest(ratings):
    s = leave_one_out(ratings, seed=0)
    assert_partition(s, ratings)
    assert len(s.test) == ratings["user"].nunique()  # every user has >= 2 rows
    assert s.test["user"].is_unique
    latest = ratings.groupby("user")["timestamp"].max()
    assert (s.test.set_index("user")["timestamp"] == latest.loc[s.test["user"]]).all()
    train_last = s.train.groupby("user")["timestamp"].max()
    test_time = s.test.set_index("user")["timestamp"].loc[train_last.index]
    assert (train_last <= test_time).all()
    assert s.kind == "leave-one-out by time"


def test_leave_one_out_with_validation(ratings):
    s = leave_one_out(ratings, valid=True, seed=0)
    assert_partition(s, ratings)
    assert len(s.valid) == len(s.test) == ratings["user"].nunique()
    v = s.valid.set_index("user")["timestamp"]
    t = s.test.set_index("user")["timestamp"].loc[v.index]
    assert (v <= t).all()
    train_last = s.train.groupby("user")["timestamp"].max().loc[v.index]
    assert (train_last <= v).all()
    assert "validation" in s.kind


def test_leave_one_out_small_users_stay_in_train():
    df = pd.DataFrame(
        {"user": [0, 1, 1, 2, 2, 2], "item": [0, 0, 1, 0, 1, 2],
         "timestamp": [5, 1, 2, 1, 2, 3]}
    )  # fmt: skip
    s = leave_one_out(df)
    assert pairs(s.test) == {(1, 1), (2, 2)}
    assert (0, 0) in pairs(s.train)
    s = leave_one_out(df, valid=True)
    assert pairs(s.test) == {(2, 2)} and pairs(s.valid) == {(2, 1)}
    assert pairs(s.train) == {(0, 0), (1, 0), (1, 1), (2, 0)}


def test_leave_one_out_breaks_ties_by_seed():
    # 50 users, each with two interactions at the same latest time and one earlier
    users = np.repeat(np.arange(50), 3)
    items = np.tile([0, 1, 2], 50)
    ts = np.tile([1, 9, 9], 50)
    df = pd.DataFrame({"user": users, "item": items, "timestamp": ts})
    a = leave_one_out(df, seed=0)
    b = leave_one_out(df, seed=0)
    c = leave_one_out(df, seed=1)
    pd.testing.assert_frame_equal(a.test, b.test)  # deterministic
    assert set(a.test["item"]) == {1, 2}  # the tie is broken, not always one way
    assert (a.test["timestamp"] == 9).all()
    assert pairs(a.test) != pairs(c.test)


def test_leave_one_out_is_independent_of_row_order(synthetic):
    shuffled = synthetic.sample(frac=1.0, random_state=0)
    a = leave_one_out(synthetic, seed=0)
    b = leave_one_out(shuffled, seed=0)
    # synthetic timestamps are distinct per user, so the split is fixed by time
    assert pairs(a.test) == pairs(b.test)


# ------------------------------------------------------------ temporal split


def test_temporal_split(ratings):
    s = temporal_split(ratings, test_ratio=0.2)
    assert_partition(s, ratings)
    assert len(s.test) == round(0.2 * len(ratings))
    assert s.test["timestamp"].min() >= s.train["timestamp"].max()
    again = temporal_split(ratings, test_ratio=0.2)
    pd.testing.assert_frame_equal(s.test, again.test)
    assert s.kind == "global temporal, latest 20% test"


def test_temporal_split_with_validation(ratings):
    s = temporal_split(ratings, test_ratio=0.1, valid_ratio=0.1)
    assert_partition(s, ratings)
    assert len(s.valid) == round(0.1 * len(ratings))
    assert s.valid["timestamp"].min() >= s.train["timestamp"].max()
    assert s.test["timestamp"].min() >= s.valid["timestamp"].max()
    assert "10% validation" in s.kind


def test_temporal_split_ties_follow_row_order():
    df = pd.DataFrame(
        {"user": [0, 1, 2, 3], "item": [0, 0, 0, 0], "timestamp": [1] * 4}
    )
    s = temporal_split(df, test_ratio=0.5)
    assert list(s.test["user"]) == [2, 3]


# ------------------------------------------------------------------ cold start


def test_cold_start_items(ratings):
    s = cold_start_items(ratings, item_ratio=0.2, seed=0)
    assert_partition(s, ratings)
    present = ratings["item"].nunique()
    assert len(s.cold_items) == round(0.2 * present)
    assert s.cold_items.dtype == np.int64
    assert not set(s.cold_items) & set(s.train["item"])  # absent from train
    assert set(s.test["item"]) == set(s.cold_items)  # all their rows are test
    assert len(s.cold_users) == 0
    again = cold_start_items(ratings, item_ratio=0.2, seed=0)
    assert (again.cold_items == s.cold_items).all()
    other = cold_start_items(ratings, item_ratio=0.2, seed=1)
    assert set(other.cold_items) != set(s.cold_items)
    assert s.kind == "cold-start items: 20% of items held out (seed 0)"


def test_cold_start_items_with_validation(synthetic):
    s = cold_start_items(synthetic, item_ratio=0.2, valid_ratio=0.1, seed=0)
    assert_partition(s, synthetic)
    assert not set(s.valid["item"]) & set(s.test["item"])
    assert set(s.cold_items) == set(s.valid["item"]) | set(s.test["item"])
    assert not set(s.cold_items) & set(s.train["item"])
    assert "10% for validation" in s.kind


def test_cold_start_users(ratings):
    s = cold_start_users(ratings, user_ratio=0.1, seed=0)
    assert_partition(s, ratings)
    assert len(s.cold_users) == round(0.1 * ratings["user"].nunique())
    assert not set(s.cold_users) & set(s.train["user"])
    assert set(s.test["user"]) == set(s.cold_users)
    a = cold_start_users(ratings, user_ratio=0.1, seed=0)
    b = cold_start_users(ratings, user_ratio=0.1, seed=1)
    assert (a.cold_users == s.cold_users).all()
    assert set(b.cold_users) != set(a.cold_users)


def test_cold_start_users_with_validation(synthetic):
    s = cold_start_users(synthetic, user_ratio=0.2, valid_ratio=0.2, seed=3)
    assert_partition(s, synthetic)
    assert not set(s.valid["user"]) & set(s.train["user"])
    assert not set(s.test["user"]) & set(s.train["user"])
    assert len(s.cold_users) == 48


def test_cold_start_needs_enough_items():
    df = pd.DataFrame({"user": [0, 0], "item": [0, 1]})
    with pytest.raises(ValueError, match=r"too few items \(2\)"):
        cold_start_items(df, item_ratio=0.5, valid_ratio=0.4)
    s = cold_start_items(df, item_ratio=0.1)  # at least one cold item
    assert len(s.cold_items) == 1


# --------------------------------------------------------------- leakage check


def _split(train, test, valid=None, **cold):
    cols = ["user", "item"]
    mk = lambda rows: pd.DataFrame(rows, columns=cols, dtype=np.int64)  # noqa: E731
    return Split(
        train=mk(train), test=mk(test), valid=mk(valid or []),
        n_users=5, n_items=5, kind="hand-made",
        **{k: np.asarray(v, np.int64) for k, v in cold.items()},
    )  # fmt: skip


def test_check_leakage_accepts_a_clean_split():
    check_leakage(_split([(0, 0), (1, 1)], [(0, 1)], [(1, 0)]))
    check_leakage(_split([(0, 0)], [(1, 1)], cold_items=[1], cold_users=[1]))


@pytest.mark.parametrize(
    "split,match",
    [
        (
            _split([(0, 0), (1, 1)], [(1, 1)]),
            r"1 \(user, item\) pair\(s\) .* train and test",
        ),
        (_split([(0, 0)], [(0, 1)], [(0, 0)]), r"train and valid"),
        (_split([(0, 0)], [(0, 1)], [(0, 1)]), r"both valid and test"),
        (_split([(0, 0), (1, 3)], [(2, 3)], cold_items=[3]), r"cold item\(s\) appear"),
        (_split([(0, 0), (2, 1)], [(2, 3)], cold_users=[2]), r"cold user\(s\) appear"),
    ],
    ids=["shared-pair", "train-valid", "valid-test", "cold-item", "cold-user"],
)
def test_check_leakage_catches_leaks(split, match):
    with pytest.raises(LeakageError, match=match):
        check_leakage(split)
    assert issubclass(LeakageError, AssertionError)


# ------------------------------------------------------------------ bad inputs

TABLE = pd.DataFrame(
    {"user": [0, 0, 1, 1], "item": [0, 1, 0, 1], "timestamp": [1, 2, 3, 4]}
)
ALL = {
    "random_split": random_split,
    "leave_one_out": leave_one_out,
    "temporal_split": temporal_split,
    "cold_start_items": cold_start_items,
    "cold_start_users": cold_start_users,
}
TIMED = ("leave_one_out", "temporal_split")


@pytest.mark.parametrize("fn", sorted(ALL))
def test_bad_tables(fn):
    split = ALL[fn]
    with pytest.raises(ValueError, match="ratings must be a DataFrame, got ndarray"):
        split(TABLE.to_numpy())
    for col in ("user", "item"):
        with pytest.raises(ValueError, match=f"ratings has no column '{col}'"):
            split(TABLE.drop(columns=col))
    with pytest.raises(ValueError, match="ratings is empty"):
        split(TABLE.iloc[:0])
    for col in ("user", "item"):
        bad = TABLE.copy()
        bad.loc[0, col] = -1
        with pytest.raises(ValueError, match="ids must be non-negative"):
            split(bad)
    if fn in TIMED:
        with pytest.raises(ValueError, match="ratings has no column 'timestamp'"):
            split(TABLE.drop(columns="timestamp"))
    else:
        split(TABLE.drop(columns="timestamp"))  # time is not needed


@pytest.mark.parametrize("fn", ["random_split", "temporal_split"])
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"test_ratio": 1.0}, r"test_ratio must be in \[0, 1.0\), got 1.0"),
        ({"test_ratio": -0.1}, "test_ratio must be in"),
        ({"test_ratio": 0.5, "valid_ratio": 0.5}, r"valid_ratio must be in \[0, 0.5\)"),
        ({"valid_ratio": -0.2}, "valid_ratio must be in"),
    ],
)
def test_bad_ratios(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ALL[fn](TABLE, **kwargs)


@pytest.mark.parametrize(
    "fn,arg", [("cold_start_items", "item"), ("cold_start_users", "user")]
)
@pytest.mark.parametrize("ratio", [0, 1, -0.5, 1.5])
def test_bad_cold_ratios(fn, arg, ratio):
    with pytest.raises(
        ValueError, match=rf"{arg}_ratio must be in \(0, 1\), got {ratio}"
    ):
        ALL[fn](TABLE, **{f"{arg}_ratio": ratio})
    with pytest.raises(ValueError, match="valid_ratio must be in"):
        ALL[fn](TABLE, **{f"{arg}_ratio": 0.5, "valid_ratio": 0.6})

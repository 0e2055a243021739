"""MovieLens loaders, the published ML-100K splits, to_matrix and make_synthetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse.linalg import svds

from ganrec_lite import registry
from ganrec_lite.data import (
    ML100K_GENRES,
    MovieLens,
    PublishedSplit,
    load_movielens,
    load_published_split,
    make_synthetic,
    to_matrix,
)
from ganrec_lite.registry import DataFile, DatasetSpec

# ------------------------------------------------------------------- ML-100K


def test_ml100k_counts(ml100k):
    assert isinstance(ml100k, MovieLens)
    assert len(ml100k.ratings) == 100_000
    assert ml100k.n_users == 943 and ml100k.n_items == 1682
    assert ml100k.name == "ml-100k"
    assert (
        repr(ml100k) == "MovieLens('ml-100k': 100,000 ratings, 943 users, 1,682 items)"
    )


def test_ml100k_columns_and_dtypes(ml100k):
    r, items, users = ml100k.ratings, ml100k.items, ml100k.users
    assert list(r.columns) == [
        "user", "item", "rating", "timestamp", "orig_user_id", "orig_item_id",
    ]  # fmt: skip
    assert all(r[c].dtype == np.int64 for c in r.columns)
    assert {"item", "orig_item_id", "title", "year", "genres"} <= set(items.columns)
    assert list(users.columns) == [
        "user", "orig_user_id", "age", "gender", "occupation", "zip",
    ]  # fmt: skip
    assert r["rating"].between(1, 5).all()
    assert set(users["gender"]) == {"F", "M"}
    assert users["zip"].map(type).eq(str).all()  # zips such as "01002" keep their 0


def test_ml100k_ids_are_zero_based_contiguous_and_keep_the_originals(ml100k):
    r, items, users = ml100k.ratings, ml100k.items, ml100k.users
    assert (users["user"].to_numpy() == np.arange(943)).all()
    assert (items["item"].to_numpy() == np.arange(1682)).all()
    assert set(r["user"]) == set(range(943))
    assert set(r["item"]) == set(range(1682))
    # ML-100K's ids run 1..n, so the original id is the new one plus one
    assert (r["orig_user_id"] == r["user"] + 1).all()
    assert (r["orig_item_id"] == r["item"] + 1).all()
    assert (users["orig_user_id"] == users["user"] + 1).all()
    assert (items["orig_item_id"] == items["item"] + 1).all()
    # the ratings' ids agree with the item and user tables
    m = r.merge(items[["item", "orig_item_id"]], on="item", suffixes=("", "_t"))
    assert (m["orig_item_id"] == m["orig_item_id_t"]).all()
    m = r.merge(users[["user", "orig_user_id"]], on="user", suffixes=("", "_t"))
    assert (m["orig_user_id"] == m["orig_user_id_t"]).all()
    assert not r.duplicated(["user", "item"]).any()


def test_ml100k_items_titles_years_genres(ml100k):
    items = ml100k.items.set_index("orig_item_id")
    toy = items.loc[1]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["year"] == 1995
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc[267, "title"] == "unknown" and pd.isna(items.loc[267, "year"])
    assert items["genres"].map(lambda g: isinstance(g, list)).all()
    assert set().union(*items["genres"]) <= set(ML100K_GENRES)
    assert str(items["year"].dtype) == "Int64"
    years = items["year"].dropna()
    assert years.between(1920, 1998).all()


def test_ml100k_titles_are_latin1_decoded(ml100k):
    titles = ml100k.items.set_index("orig_item_id")["title"]
    assert titles.loc[543] == "Mis\u00e9rables, Les (1995)"
    accented = titles[titles.str.contains("[\u00c0-\u00ff]", regex=True)]
    assert len(accented) >= 5
    assert not titles.str.contains("\ufffd").any()  # no replacement characters


def test_load_movielens_bad_name():
    with pytest.raises(ValueError, match=r"name must be one of \['ml-100k', 'ml-1m'\]"):
        load_movielens("ml-20m")


# ----------------------------------------------------------- ML-1M (fake files)

FAKE_ML1M = {
    "movies.dat": (
        "10::GoldenEye (1995)::Action|Adventure|Thriller\n"
        "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
        "5::Mis\u00e9rables, Les (1995)::Drama|Musical\n"
        "7::No Year Here::Comedy\n"
    ),
    "users.dat": "3::M::25::15::55117\n1::F::1::10::01002\n",
    "ratings.dat": (
        "1::10::5::978300760\n"
        "3::2::3::978302109\n"
        "3::5::4::978301968\n"
        "\n"
        "1::7::1::978300275\n"
        "3::10::2::978824291\n"
    ),
}


def _register_ml1m(monkeypatch, root, files: dict[str, bytes]):
    folder = root / "ml-1m"
    folder.mkdir(exist_ok=True)
    entries = []
    for name, data in files.items():
        if isinstance(data, bytes):
            (folder / name).write_bytes(data)
        sha = registry.sha256_of(folder / name)
        entries.append(DataFile(name, sha, member=f"ml-1m/{name}"))
    spec = DatasetSpec(
        "ml-1m", tuple(entries), "http://127.0.0.1:9/ml-1m.zip", "0" * 64
    )
    monkeypatch.setitem(registry.REGISTRY, "ml-1m", spec)


@pytest.fixture
def fake_ml1m(tmp_cache, monkeypatch):
    files = {k: v.encode("latin-1") for k, v in FAKE_ML1M.items()}
    _register_ml1m(monkeypatch, tmp_cache, files)
    return tmp_cache / "ml-1m"


def test_ml1m_loader_on_a_fake_folder(fake_ml1m):
    ml = load_movielens("ml-1m")
    assert ml.name == "ml-1m"
    assert (len(ml.ratings), ml.n_users, ml.n_items) == (5, 2, 4)
    items = ml.items
    assert list(items["orig_item_id"]) == [2, 5, 7, 10]
    assert list(items["item"]) == [0, 1, 2, 3]
    assert items.loc[1, "title"] == "Mis\u00e9rables, Les (1995)"
    assert items.loc[0, "genres"] == ["Adventure", "Children's", "Fantasy"]
    assert items.loc[0, "year"] == 1995 and pd.isna(items.loc[2, "year"])
    users = ml.users
    assert list(users["orig_user_id"]) == [1, 3]
    assert list(users.columns) == [
        "user", "orig_user_id", "age", "gender", "occupation", "zip",
    ]  # fmt: skip
    assert users.loc[0, "zip"] == "01002" and users.loc[1, "age"] == 25
    r = ml.ratings
    assert all(r[c].dtype == np.int64 for c in r.columns)
    got = set(
        zip(
            r["user"],
            r["item"],
            r["rating"],
            r["orig_user_id"],
            r["orig_item_id"],
            strict=True,
        )
    )
    assert got == {
        (0, 3, 5, 1, 10), (1, 0, 3, 3, 2), (1, 1, 4, 3, 5), (0, 2, 1, 1, 7),
        (1, 3, 2, 3, 10),
    }  # fmt: skip


def test_ml1m_loader_rejects_a_malformed_line(tmp_cache, monkeypatch):
    files = {k: v.encode("latin-1") for k, v in FAKE_ML1M.items()}
    files["ratings.dat"] = b"1::10::5::978300760\n1::7::1\n"
    _register_ml1m(monkeypatch, tmp_cache, files)
    with pytest.raises(ValueError, match="line 2 has not 4 fields"):
        load_movielens("ml-1m")


def test_ml1m_real_movies_and_users(shared_data_dir, tmp_cache, monkeypatch):
    """The real movies.dat and users.dat (ratings.dat is not in the shared cache)."""
    part = shared_data_dir / "ml-1m-partial"
    if not (part / "movies.dat").is_file():
        pytest.skip(f"{part} lacks movies.dat")
    folder = tmp_cache / "ml-1m"
    folder.mkdir()
    for name in ("movies.dat", "users.dat"):
        (folder / name).symlink_to(part / name)  # linked, never copied
    ratings = b"1::1::5::978300760\n6040::3952::3::978300761\n"
    _register_ml1m(
        monkeypatch,
        tmp_cache,
        {"ratings.dat": ratings, "movies.dat": None, "users.dat": None},
    )
    # the real files still carry the registry's sha256s
    assert registry.sha256_of(folder / "movies.dat") == (
        "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"
    )
    ml = load_movielens("ml-1m")
    assert ml.n_users == 6040 and ml.n_items == 3883
    assert (ml.users["orig_user_id"] == ml.users["user"] + 1).all()
    assert ml.items["orig_item_id"].is_monotonic_increasing
    assert ml.items.loc[0, "title"] == "Toy Story (1995)"
    assert ml.items.loc[0, "genres"] == ["Animation", "Children's", "Comedy"]
    assert ml.items["title"].str.contains("[\u00c0-\u00ff]", regex=True).any()
    assert list(ml.ratings["item"]) == [0, 3882]
    assert list(ml.ratings["user"]) == [0, 6039]


# ------------------------------------------------------------ published splits

SPLITS = {
    # name: (train rows, test rows, shape, threshold, separator)
    "irgan-ml100k": (80_000, 20_000, (943, 1682), 3.99, "\t"),
    "cfgan-ml100k": (80_000, 19_963, (943, 1653), None, " "),
}
SPLIT_FILES = {
    "irgan-ml100k": ("movielens-100k-train.txt", "movielens-100k-test.txt"),
    "cfgan-ml100k": ("ML100K.train", "ML100K.test"),
}


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_published_split(shared_data, name):
    n_train, n_test, shape, threshold, sep = SPLITS[name]
    s = load_published_split(name)
    assert isinstance(s, PublishedSplit) and s.name == name
    files = [shared_data / name / f for f in SPLIT_FILES[name]]
    lines = [sum(1 for line in open(f) if line.strip()) for f in files]
    assert (len(s.train), len(s.test)) == tuple(lines) == (n_train, n_test)
    assert (s.n_users, s.n_items) == shape
    assert s.positive_threshold == threshold
    assert list(s.train.columns) == ["user", "item", "rating"]
    assert s.train["user"].dtype == np.int64 and s.train["rating"].dtype == np.float64
    assert s.train["user"].min() == 0 and s.train["item"].min() == 0
    # the first line of the file, parsed by hand
    u, i, r = open(files[0]).readline().strip().split(sep)
    assert tuple(s.train.iloc[0]) == (int(u), int(i), float(r))

    pos_train, pos_test = s.positives("train"), s.positives("test")
    if threshold is None:
        assert len(pos_train) == n_train and len(pos_test) == n_test
    else:
        assert (pos_train["rating"] > threshold).all()
        assert len(pos_train) == int((s.train["rating"] >= 4).sum())
        assert len(pos_test) == int((s.test["rating"] >= 4).sum())
        assert len(pos_train) < n_train
    train, test = s.matrices()
    assert train.shape == test.shape == shape
    assert train.dtype == bool
    assert train.nnz == len(pos_train.drop_duplicates(["user", "item"]))
    assert test.nnz == len(pos_test.drop_duplicates(["user", "item"]))
    assert train.multiply(test).nnz == 0  # train and test positives are disjoint
    assert name in repr(s) and f"{shape[0]} x {shape[1]}" in repr(s)


def test_published_split_bad_arguments(shared_data):
    with pytest.raises(ValueError, match="name must be one of"):
        load_published_split("ml-100k")
    s = load_published_split("cfgan-ml100k")
    with pytest.raises(ValueError, match="part must be 'train' or 'test'"):
        s.positives("valid")


def test_published_split_repr_names_the_positives(shared_data):
    assert "rating > 3.99" in repr(load_published_split("irgan-ml100k"))
    assert "every rating" in repr(load_published_split("cfgan-ml100k"))


# -------------------------------------------------------------------- to_matrix


def test_to_matrix_builds_a_boolean_matrix():
    df = pd.DataFrame(
        {"user": [0, 0, 2, 2], "item": [1, 1, 0, 3], "rating": [5, 5, 2, 4]}
    )
    m = to_matrix(df, (3, 4))
    assert m.shape == (3, 4) and m.dtype == bool
    assert m.nnz == 3  # the duplicate pair counts once
    assert m.toarray().tolist() == [
        [False, True, False, False],
        [False, False, False, False],
        [True, False, False, True],
    ]
    m = to_matrix(df, (3, 4), threshold=3)
    assert sorted(zip(*m.nonzero(), strict=True)) == [(0, 1), (2, 3)]
    assert to_matrix(df.iloc[:0], (3, 4)).nnz == 0


def test_to_matrix_errors():
    df = pd.DataFrame({"user": [0, 1], "item": [0, 1]})
    with pytest.raises(ValueError, match="no column 'item'"):
        to_matrix(df[["user"]], (2, 2))
    with pytest.raises(ValueError, match="no column 'user'"):
        to_matrix(df[["item"]], (2, 2))
    with pytest.raises(ValueError, match="no column 'rating'"):
        to_matrix(df, (2, 2), threshold=3)
    with pytest.raises(ValueError, match=r"user ids must lie in \[0, 1\)"):
        to_matrix(df, (1, 2))
    with pytest.raises(ValueError, match=r"item ids must lie in \[0, 1\)"):
        to_matrix(df, (2, 1))
    with pytest.raises(ValueError, match="user ids must lie in"):
        to_matrix(pd.DataFrame({"user": [-1], "item": [0]}), (2, 2))
    with pytest.raises(ValueError, match="item ids must lie in"):
        to_matrix(pd.DataFrame({"user": [0], "item": [-1]}), (2, 2))


# --------------------------------------------------------------- make_synthetic


def test_make_synthetic_is_seeded():
    a, b = make_synthetic(seed=3), make_synthetic(seed=3)
    for part in ("ratings", "items", "users"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))
    c = make_synthetic(seed=4)
    assert not a.ratings[["user", "item"]].equals(c.ratings[["user", "item"]])


def test_make_synthetic_shapes_and_tables():
    ml = make_synthetic(n_users=50, n_items=80, rank=3, density=0.1, seed=1)
    assert ml.name == "synthetic"
    assert (ml.n_users, ml.n_items) == (50, 80)
    r = ml.ratings
    assert len(r) == 50 * 8
    assert (r.groupby("user").size() == 8).all()
    assert not r.duplicated(["user", "item"]).any()
    assert r["user"].between(0, 49).all() and r["item"].between(0, 79).all()
    assert set(r["rating"]) == {1, 2, 3, 4, 5}
    assert (r["orig_user_id"] == r["user"] + 1).all()
    assert (r["orig_item_id"] == r["item"] + 1).all()
    # sorted by user, then time
    assert r.sort_values(["user", "timestamp"]).index.equals(r.index)
    items = ml.items
    assert (items["item"].to_numpy() == np.arange(80)).all()
    assert items["genres"].map(len).eq(1).all()
    assert items["title"].str.match(r"^\w+ Story \d+ \(\d{4}\)$").all()
    assert (items["title"].str[-5:-1].astype(int) == items["year"]).all()
    assert len(set(items["genres"].str[0])) <= 3  # one genre per latent factor
    assert (ml.users["user"].to_numpy() == np.arange(50)).all()
    # at least one rating per user even for a tiny density
    assert len(make_synthetic(n_users=5, n_items=10, density=0.01).ratings) == 5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_users": 0}, "n_users must be >= 1"),
        ({"n_items": 0}, "n_items must be >= 1"),
        ({"rank": 0}, "rank must be >= 1"),
        ({"rank": 9}, "rank must be <= 8"),
        ({"density": 0}, r"density must be in \(0, 1\]"),
        ({"density": 1.5}, r"density must be in \(0, 1\]"),
    ],
)
def test_make_synthetic_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kwargs)


def test_make_synthetic_plants_low_rank_preferences():
    """A rank-``rank`` SVD of the training interactions ranks held-out interactions
    far above chance: the planted structure is real."""
    n_users, n_items, rank = 200, 300, 4
    ml = make_synthetic(n_users, n_items, rank=rank, density=0.1, seed=0)
    r = ml.ratings
    rng = np.random.default_rng(0)
    held = rng.random(len(r)) < 0.2
    train = to_matrix(r[~held], (n_users, n_items)).astype(float)
    test = to_matrix(r[held], (n_users, n_items)).toarray()
    # a truncated sparse SVD: cheap, and free of BLAS thread contention on 2 cores
    u, s, vt = svds(train, k=rank, random_state=0)
    scores = (u * s) @ vt
    train = train.toarray()
    scores[train > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = np.take_along_axis(test, top, axis=1).sum()
    recall = hits / test.sum()
    chance = 10 / (n_items - train.sum(1).mean())
    assert recall > 5 * chance, (recall, chance)
    # the item text carries the signal too: items of the same genre share a word
    words = ml.items["title"].str.split().str[0]
    genre = ml.items["genres"].str[0]
    assert (words.groupby(genre).nunique() == 1).all()

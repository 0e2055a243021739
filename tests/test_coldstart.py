"""Cold-start text methods of Chapter 5.7 and the coldstart-ml100k split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ganrec_lite import bench
from ganrec_lite.metrics import evaluate
from ganrec_lite.models import coldstart

FAST_GAN = {"bpr_epochs": 5, "epochs": 3, "hidden": 32, "hidden_D": 16, "lr": 1e-2}


@pytest.fixture(scope="module")
def planted():
    """200 users x 300 items whose text embeddings *are* their latent factors (plus
    noise); the last 60 items are cold (no training positive), and the test holds
    positives of warm and cold items."""
    rng = np.random.default_rng(0)
    U = rng.normal(size=(200, 8))
    V = rng.normal(size=(300, 8))
    logits = U @ V.T  # (U, I)
    top = logits > np.quantile(logits, 0.9, axis=1, keepdims=True)  # 10% per user
    T = np.c_[V, 0.3 * rng.normal(size=(300, 24))].astype(np.float32)  # (I, 32)
    mask = rng.random(top.shape) < 0.7
    train = top & mask
    train[:, 240:] = False  # cold items
    test = top & ~train
    return sp.csr_matrix(train), sp.csr_matrix(test), torch.as_tensor(T)


def test_ridge_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(200, 5, generator=g)
    A = A - A.mean(0)  # centred: the intercept is then mean(Y) whatever lam is
    W = torch.randn(5, 3, generator=g)
    Y = A @ W + 2.0  # intercept 2
    got = coldstart.ridge(A, Y, lam=0.0)
    torch.testing.assert_close(got[:5], W, atol=1e-4, rtol=0)
    torch.testing.assert_close(got[5], torch.full((3,), 2.0), atol=1e-4, rtol=0)
    shrunk = coldstart.ridge(A, Y, lam=1e4)  # the slope shrinks, the intercept not
    assert shrunk[:5].abs().max() < 0.1 and (shrunk[5] - 2.0).abs().max() < 1e-4


def test_text_knn_is_the_cosine_with_the_mean_profile(planted):
    train, _, T = planted
    S = coldstart.fit_text_knn(train, device="cpu", T=T)
    Tn = F.normalize(T, dim=1)
    u = 3
    liked = train[u].indices
    prof = F.normalize(Tn[liked].mean(0), dim=0)
    torch.testing.assert_close(S[u], Tn @ prof, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "fit, kw",
    [
        (coldstart.fit_text_knn, {}),
        (coldstart.fit_text_regress, {"bpr_epochs": 20}),
        (coldstart.fit_text_gan, {**FAST_GAN, "bpr_epochs": 20, "epochs": 20}),
    ],
)
def test_text_methods_rank_cold_items_better_than_chance(planted, fit, kw):
    train, test, T = planted
    S = fit(train, 0, "cpu", T=T, **kw)
    cold = np.zeros(300, dtype=bool)
    cold[240:] = True
    masked = torch.as_tensor(S).masked_fill(~torch.as_tensor(cold), float("-inf"))
    ours = evaluate(masked, train, test.multiply(cold).tocsr(), ks=(10,))
    rng = np.random.default_rng(1)
    rand = torch.as_tensor(rng.random((200, 300)), dtype=torch.float32)
    rand = rand.masked_fill(~torch.as_tensor(cold), float("-inf"))
    chance = evaluate(rand, train, test.multiply(cold).tocsr(), ks=(10,))
    assert ours["ndcg@10"] > 1.5 * chance["ndcg@10"]


def test_text_gan_keeps_warm_items_and_selects_an_epoch(planted):
    train, _, T = planted
    S, G, mf, hist = coldstart.fit_text_gan(
        train, 0, "cpu", T=T, return_model=True, **FAST_GAN
    )
    assert hist["epochs"] == [1, 2, 3]
    assert hist["best_epoch"] == hist["epochs"][int(np.argmax(hist["ndcg"]))]
    with torch.no_grad():
        bpr_scores = mf.P @ mf.Q.T + mf.b  # (U, I) the BPR model's own scores
    warm = np.asarray(train.sum(axis=0)).ravel() > 0  # items with a training positive
    torch.testing.assert_close(S[:, warm], bpr_scores[:, warm])
    assert not torch.allclose(S[:, ~warm], bpr_scores[:, ~warm])  # generated
    again = coldstart.fit_text_gan(train, 0, "cpu", T=T, **FAST_GAN)
    torch.testing.assert_close(S, again)  # seeded


def test_text_knn_with_generated_profiles(planted):
    train, _, T = planted
    g = torch.Generator().manual_seed(3)
    prof = torch.randn(200, 32, generator=g)
    S = coldstart.fit_text_knn(train, 0, "cpu", T=T, profiles=prof, user="generated")
    Tn = F.normalize(T, dim=1)
    torch.testing.assert_close(S, F.normalize(prof, dim=1) @ Tn.T, atol=1e-5, rtol=0)
    liked = coldstart.fit_text_knn(train, device="cpu", T=T)
    both = coldstart.fit_text_knn(train, device="cpu", T=T, profiles=prof, user="both")
    # "both": the cosine with the sum of the two unit profiles
    Xt = torch.as_tensor(train.toarray(), dtype=torch.float32)
    mean_liked = F.normalize(Xt @ Tn, dim=1)
    expect = F.normalize(mean_liked + F.normalize(prof, dim=1), dim=1) @ Tn.T
    torch.testing.assert_close(both, expect, atol=1e-5, rtol=0)
    assert not torch.allclose(both, S) and not torch.allclose(both, liked)
    with pytest.raises(ValueError, match="profiles must be"):
        coldstart.fit_text_knn(train, 0, "cpu", T=T, profiles=prof[:5], user="both")
    with pytest.raises(ValueError, match="user must be"):
        coldstart.fit_text_knn(train, 0, "cpu", T=T, user="everyone")


def test_generated_profiles_refuse_another_training_matrix(planted, shared_data):
    train, _, _ = planted
    with pytest.raises(ValueError, match="leak"):
        coldstart.user_profile_embeddings(train)


@pytest.mark.parametrize("backbone", ["lightgcn", "simgcl"])
def test_text_gan_on_a_lightgcn_backbone(planted, backbone):
    train, _, T = planted
    S, G, model, hist = coldstart.fit_text_gan(
        train, 0, "cpu", T=T, return_model=True, backbone=backbone, **FAST_GAN
    )
    warm = np.asarray(train.sum(axis=0)).ravel() > 0
    torch.testing.assert_close(S[:, warm], model.full_scores()[:, warm])
    assert torch.isfinite(S).all() and hist["best_epoch"] >= 1
    with pytest.raises(ValueError, match="backbone must be"):
        coldstart.fit_text_gan(train, 0, "cpu", T=T, backbone="svd")


def test_adv_weight_zero_is_the_ablation(planted):
    train, _, T = planted
    a = coldstart.fit_text_gan(train, 0, "cpu", T=T, **FAST_GAN)
    b = coldstart.fit_text_gan(train, 0, "cpu", T=T, **{**FAST_GAN, "adv_weight": 0})
    assert not torch.equal(a, b)
    warm = np.asarray(train.sum(axis=0)).ravel() > 0
    torch.testing.assert_close(a[:, warm], b[:, warm])  # warm items untouched


def test_text_pop_predicts_popularity_for_cold_items_only(planted):
    train, _, T = planted
    S = coldstart.fit_text_pop(train, device="cpu", T=T)
    n = np.asarray(train.sum(axis=0)).ravel()
    warm = n > 0  # items with a training positive keep their own count
    expect = torch.log1p(torch.as_tensor(n[warm])).float()
    torch.testing.assert_close(S[0, warm], expect)
    assert torch.equal(S[0], S[5])  # not personalised
    assert torch.isfinite(S[0, 240:]).all()


def test_pop_oracle_counts_test_and_needs_it(planted):
    train, test, _ = planted
    S = coldstart.fit_pop_oracle(train, 0, "cpu", test)
    n = np.asarray(train.sum(axis=0) + test.sum(axis=0)).ravel()
    torch.testing.assert_close(S[0], torch.as_tensor(n, dtype=torch.float32))
    with pytest.raises(ValueError, match="valid"):
        coldstart.fit_pop_oracle(train, 0, "cpu")


@pytest.mark.parametrize(
    "fit, bad, match",
    [
        (coldstart.fit_text_knn, {"text": "poems"}, "text must be"),
        (coldstart.fit_text_regress, {"ridge": -1.0}, "ridge"),
        (coldstart.fit_text_gan, {"pseudo_cold": 1.5}, "pseudo_cold"),
        (coldstart.fit_text_gan, {"lr": -1.0}, "lr"),
        (coldstart.fit_text_gan, {"typo": 1}, "unknown text-gan"),
    ],
)
def test_bad_hyper_parameters_are_named(planted, fit, bad, match):
    train, _, T = planted
    with pytest.raises(ValueError, match=match):
        fit(train, 0, "cpu", T=T, **bad)


def test_text_of_the_wrong_shape_is_refused(planted):
    train, _, T = planted
    with pytest.raises(ValueError, match="n_items=300"):
        coldstart.fit_text_knn(train, device="cpu", T=T[:10])
    with pytest.raises(ValueError, match="ML-100K"):
        coldstart.item_embeddings("titles", n_items=300)


def test_coldstart_split_keeps_cold_items_out_of_train(shared_data):
    d = bench.load_split("coldstart-ml100k")
    cold_test, is_cold = d.parts["cold"]
    warm_test, is_warm = d.parts["warm"]
    assert (is_cold ^ is_warm).all() and is_cold.sum() == round(0.2 * 1682)
    assert d.train[:, is_cold].nnz == 0  # never seen in training
    assert cold_test[:, ~is_cold].nnz == 0 and warm_test[:, is_cold].nnz == 0
    assert (d.test != (cold_test + warm_test).astype(bool)).nnz == 0
    assert d.train.multiply(d.test).nnz == 0
    assert "part cold: 336 candidate items" in d.card


def test_parts_rank_only_their_candidates(shared_data):
    d = bench.load_split("coldstart-ml100k")
    rec = bench.run(
        "pop-oracle", "coldstart-ml100k", seeds=1, device="cpu", split_data=d
    )
    m = rec["metrics"]
    assert {"ndcg@20", "cold/ndcg@20", "warm/ndcg@20"} <= set(m)
    assert rec["selected_on_test"] is True
    # by hand: the oracle's cold ranking is the cold items by test+train count
    S = coldstart.fit_pop_oracle(d.train, 0, "cpu", d.test)
    cold_test, is_cold = d.parts["cold"]
    S = S.masked_fill(~torch.as_tensor(is_cold), float("-inf"))
    ref = evaluate(S, d.train, cold_test, ks=(20,))["ndcg@20"]
    assert m["cold/ndcg@20"][0] == pytest.approx(ref)


def test_combined_split_parts_sparse_and_warm_users(shared_data):
    d = bench.load_split("combined-ml100k")
    _, _, warm = bench.coldstart_splits()
    n = np.bincount(warm.train["user"], minlength=d.train.shape[0])  # (U,) ratings
    sparse_test, cand = d.parts["sparse-users"]
    other_test, cand2 = d.parts["warm-users"]
    assert cand.all() and cand2.all()  # every item is a candidate
    has = lambda m: np.asarray(m.getnnz(axis=1)) > 0  # noqa: E731
    assert (n[has(sparse_test)] < 20).all() and (n[has(other_test)] >= 20).all()
    assert ((sparse_test + other_test) != d.test).nnz == 0  # a partition of test
    assert has(sparse_test).sum() == 202  # users with a test positive
    assert {"cold", "warm"} <= set(d.parts)

"""Baseline models of Chapter 5.2: popularity, BPR-MF (uniform and DNS), EASE."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ganrec_lite.data import make_synthetic, to_matrix
from ganrec_lite.metrics import evaluate
from ganrec_lite.models import bpr, ease, popularity
from ganrec_lite.train import History, holdout, train_epochs

FAST = {"dim": 16, "epochs": 15, "batch_size": 256, "lr": 1e-2}


# ------------------------------------------------------------------------ popularity
def test_popularity_scores_are_item_counts():
    X = sp.csr_matrix(np.array([[1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 1, 0]], bool))
    S = popularity.fit(X, device="cpu")
    assert S.shape == (3, 4)
    for row in S:
        torch.testing.assert_close(row, torch.tensor([3.0, 1.0, 2.0, 0.0]))
    np.testing.assert_array_equal(popularity.item_counts(X), [3, 1, 2, 0])


def test_models_reject_bad_input():
    with pytest.raises(ValueError, match="train must be"):
        popularity.fit([[1, 0]])
    with pytest.raises(ValueError, match="lambda_"):
        ease.fit(np.eye(3), lambda_=-1.0)
    with pytest.raises(ValueError, match="negatives must be"):
        bpr.fit(np.eye(3), negatives="hard")
    with pytest.raises(ValueError, match="unknown BPR"):
        bpr.fit(np.eye(3), learning_rate=0.1)
    with pytest.raises(ValueError, match="no negative"):
        bpr.NegativeSampler(np.ones((2, 3)), "cpu")


# ----------------------------------------------------------------------------- EASE
def test_ease_equals_hand_computed_closed_form():
    X = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=float)
    lam = 2.0
    # by hand: G = X^T X + lam I, P = G^-1, B_ij = -P_ij / P_jj off the diagonal
    G = X.T @ X + lam * np.eye(3)  # [[5, 2, 1], [2, 5, 2], [1, 2, 4]]
    np.testing.assert_array_equal(G, [[5, 2, 1], [2, 5, 2], [1, 2, 4]])
    P = np.linalg.inv(G)
    B = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            if i != j:
                B[i, j] = -P[i, j] / P[j, j]
    got = ease.ease_weights(torch.tensor(X), lam).numpy()
    np.testing.assert_allclose(got, B, rtol=1e-12)
    assert np.all(np.diag(got) == 0)
    S = ease.fit(sp.csr_matrix(X), device="cpu", lambda_=lam)
    np.testing.assert_allclose(S.numpy(), X @ B, rtol=1e-6)


def test_ease_solves_the_constrained_least_squares():
    # stationarity: (X^T X + lam I) B - X^T X = -diag(mu) ... off-diagonal zero
    rng = np.random.default_rng(0)
    X = (rng.random((30, 8)) < 0.3).astype(float)
    lam = 1.5
    B = ease.ease_weights(torch.tensor(X), lam).numpy()
    R = (X.T @ X + lam * np.eye(8)) @ B - X.T @ X  # only the diagonal may be non-zero
    np.testing.assert_allclose(R - np.diag(np.diag(R)), 0, atol=1e-10)


# ------------------------------------------------------------------------------ BPR
def test_negative_sampler_is_exact_and_uniform():
    X = sp.csr_matrix(np.array([[0, 1, 1, 0, 0, 1], [1, 0, 0, 0, 0, 0]], bool))
    s = bpr.NegativeSampler(X, "cpu")
    g = torch.Generator().manual_seed(0)
    users = torch.zeros(30_000, dtype=torch.int64)
    counts = np.bincount(s.sample(users, generator=g).numpy(), minlength=6)
    assert set(np.flatnonzero(counts)) == {0, 3, 4}  # the complement of {1, 2, 5}
    assert counts[[0, 3, 4]].min() > 9_000  # about 10,000 each
    j = s.sample(torch.ones(1000, dtype=torch.int64), 4, generator=g)  # (B, K)
    assert j.shape == (1000, 4) and (j > 0).all() and (j < 6).all()


def test_negatives_are_never_train_positives(synthetic_split):
    train, _ = synthetic_split
    s = bpr.NegativeSampler(train, "cpu")
    g = torch.Generator().manual_seed(1)
    users = torch.randint(0, train.shape[0], (20_000,), generator=g)
    dense = torch.as_tensor(train.toarray())
    assert not dense[users, s.sample(users, generator=g)].any()
    cand = s.sample(users, 5, generator=g)  # (B, 5) DNS candidates
    assert not dense[users[:, None], cand].any()


def test_dns_negatives_are_never_train_positives(synthetic_split):
    train, _ = synthetic_split
    _, model, _ = bpr.fit(
        train,
        seed=0,
        device="cpu",
        negatives="dns",
        return_model=True,
        **{**FAST, "epochs": 3},
    )
    s = bpr.NegativeSampler(train, "cpu")
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, train.shape[0], (20_000,), generator=g)
    j = bpr.draw_negatives(model, s, users, 5, generator=g)  # (B,)
    dense = torch.as_tensor(train.toarray())
    assert not dense[users, j].any()
    # and DNS picks harder negatives than uniform sampling
    uniform = bpr.draw_negatives(model, s, users, None, generator=g)
    with torch.no_grad():
        assert model(users, j).mean() > model(users, uniform).mean()


def test_bpr_loss_decreases_and_beats_popularity(synthetic_split):
    train, test = synthetic_split
    scores, model, hist = bpr.fit(
        train, seed=0, device="cpu", return_model=True, **FAST
    )
    assert isinstance(hist, History) and len(hist.loss) == FAST["epochs"]
    assert hist.loss[-1] < 0.6 * hist.loss[0]
    assert scores.shape == train.shape
    ours = evaluate(scores, train, test, ks=(10,))["ndcg@10"]
    pop = evaluate(popularity.fit(train, device="cpu"), train, test, ks=(10,))
    assert ours > 1.3 * pop["ndcg@10"], (ours, pop["ndcg@10"])


def test_bpr_dns_trains_and_is_seeded(synthetic_split):
    train, test = synthetic_split
    a = bpr.fit(train, seed=3, device="cpu", negatives="dns", **FAST)
    b = bpr.fit(train, seed=3, device="cpu", negatives="dns", **FAST)
    torch.testing.assert_close(a, b)
    pop = evaluate(popularity.fit(train, device="cpu"), train, test, ks=(10,))
    assert evaluate(a, train, test, ks=(10,))["ndcg@10"] > pop["ndcg@10"]


def test_bpr_early_stopping_keeps_the_best_epoch(synthetic_split):
    train, _ = synthetic_split
    tr, va = holdout(train, 0.2, seed=0)
    assert (tr.multiply(va)).nnz == 0 and tr.nnz + va.nnz == train.nnz
    scores, model, hist = bpr.fit(
        tr, seed=0, device="cpu", valid=va, return_model=True, **{**FAST, "epochs": 20}
    )
    assert hist.evals and hist.best_epoch == max(hist.evals, key=lambda e: e[1])[0]
    best = max(v for _, v in hist.evals)
    assert evaluate(scores, tr, va, ks=(20,))["ndcg@20"] == pytest.approx(best)


# ------------------------------------------------------------------------ the loop
def test_train_epochs_early_stops_and_restores():
    model = torch.nn.Linear(1, 1)
    metric = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])

    def step(epoch):
        with torch.no_grad():
            model.weight.fill_(epoch)
        return torch.tensor(1.0 / epoch)

    hist = train_epochs(
        step, 30, validate=lambda: next(metric), model=model, eval_every=1, patience=3
    )
    assert hist.best_epoch == 2 and hist.stopped_early and len(hist.loss) == 5
    assert model.weight.item() == 2.0  # weights of the best epoch
    with pytest.raises(ValueError, match="n_epochs"):
        train_epochs(step, 0)


def test_holdout_is_a_partition():
    X = to_matrix(make_synthetic(n_users=50, n_items=80, seed=1).ratings, (50, 80))
    tr, va = holdout(X, 0.25, seed=2)
    assert (tr.astype(int) + va.astype(int) - X.astype(int)).nnz == 0
    assert (tr.getnnz(axis=1) >= 1).all()

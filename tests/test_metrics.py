"""Tests of ganrec_lite.metrics: hand-computed rankings, properties, a reference."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ganrec_lite.metrics import evaluate, evaluate_sampled, protocol_card


def reference(scores, train, test, ks):
    """Slow, obvious implementation: one user at a time, python sorting."""
    scores, train, test = np.asarray(scores), np.asarray(train), np.asarray(test)
    out = {
        f"{m}@{k}": []
        for k in ks
        for m in ("precision", "recall", "ndcg", "mrr", "hit")
    }
    for u in range(scores.shape[0]):
        rel = set(np.flatnonzero(test[u]))
        if not rel:
            continue
        cand = [i for i in range(scores.shape[1]) if not train[u, i]]
        ranked = sorted(cand, key=lambda i: (-scores[u, i], i))
        for k in ks:
            top = ranked[:k]
            hits = [i in rel for i in top]
            dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
            first = next((r for r, h in enumerate(hits) if h), None)
            out[f"precision@{k}"].append(sum(hits) / k)
            out[f"recall@{k}"].append(sum(hits) / len(rel))
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"mrr@{k}"].append(0.0 if first is None else 1 / (first + 1))
            out[f"hit@{k}"].append(float(any(hits)))
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_hand_computed_ranking():
    # one user, 5 items; train positive: item 0; test positives: items 2 and 4
    scores = np.array([[9.0, 5.0, 4.0, 3.0, 1.0]])
    train = np.array([[1, 0, 0, 0, 0]], bool)
    test = np.array([[0, 0, 1, 0, 1]], bool)
    r = evaluate(scores, train, test, ks=(1, 2, 4))
    # ranking without item 0: 1, 2, 3, 4 -> hits at ranks 2 and 4
    assert r["precision@1"] == 0 and r["hit@1"] == 0 and r["mrr@1"] == 0
    assert r["precision@2"] == 0.5 and r["recall@2"] == 0.5 and r["mrr@2"] == 0.5
    idcg2 = 1 + 1 / math.log2(3)
    assert r["ndcg@2"] == pytest.approx((1 / math.log2(3)) / idcg2)
    assert r["recall@4"] == 1.0 and r["precision@4"] == 0.5
    assert r["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg2)
    assert r["n_users"] == 1


def test_ties_broken_by_lower_item_id():
    scores = np.zeros((1, 6))
    test = np.zeros((1, 6), bool)
    test[0, 1] = True
    r = evaluate(scores, None, test, ks=(1, 2))
    assert r["hit@1"] == 0 and r["hit@2"] == 1 and r["mrr@2"] == 0.5
    test2 = np.zeros((1, 6), bool)
    test2[0, 0] = True
    assert evaluate(scores, None, test2, ks=(1,))["hit@1"] == 1


def test_perfect_scores_give_one():
    rng = np.random.default_rng(0)
    test = rng.random((30, 40)) < 0.1
    test[np.arange(30), rng.integers(0, 40, 30)] = True
    train = (rng.random((30, 40)) < 0.2) & ~test
    r = evaluate(test.astype(float), train, test, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert r[f"ndcg@{k}"] == pytest.approx(1.0)
        assert r[f"hit@{k}"] == 1.0 and r[f"mrr@{k}"] == 1.0
    big = evaluate(test.astype(float), train, test, ks=(40 - 1,))
    assert big["recall@39"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_reference(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 25, 30
    scores = rng.integers(0, 6, (n_users, n_items)).astype(float)  # many ties
    test = rng.random((n_users, n_items)) < 0.15
    train = (rng.random((n_users, n_items)) < 0.25) & ~test
    ks = (1, 3, 10)
    ours = evaluate(scores, train, test, ks=ks, batch_users=7)
    ref = reference(scores, train, test, ks)
    for key, val in ref.items():
        assert ours[key] == pytest.approx(val, abs=1e-12), key
    assert ours["n_users"] == int(test.any(1).sum())


def test_input_types_agree():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(20, 15))
    test = rng.random((20, 15)) < 0.2
    train = (rng.random((20, 15)) < 0.2) & ~test
    a = evaluate(scores, train, test, ks=(5, 10))
    b = evaluate(
        torch.tensor(scores), torch.tensor(train), torch.tensor(test), ks=(5, 10)
    )
    c = evaluate(scores.astype(np.float32), sp.csr_matrix(train), sp.csr_matrix(test),
                 ks=(5, 10))  # fmt: skip
    d = evaluate(
        scores, torch.tensor(train).to_sparse(), sp.coo_matrix(test), ks=(5, 10)
    )
    for key in a:
        assert a[key] == pytest.approx(b[key]) == pytest.approx(c[key])
        assert a[key] == pytest.approx(d[key])


def test_shuffling_users_changes_nothing():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(50, 20))
    test = rng.random((50, 20)) < 0.2
    train = (rng.random((50, 20)) < 0.2) & ~test
    perm = rng.permutation(50)
    a = evaluate(scores, train, test, ks=(3, 10))
    b = evaluate(scores[perm], train[perm], test[perm], ks=(3, 10), batch_users=9)
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-12)


def test_users_without_test_positives_are_skipped():
    scores = np.array([[1.0, 0.0], [0.0, 1.0]])
    test = np.array([[1, 0], [0, 0]], bool)
    r = evaluate(scores, None, test, ks=(1,))
    assert r["n_users"] == 1 and r["hit@1"] == 1


def test_train_positives_are_excluded():
    scores = np.array([[5.0, 4.0, 3.0]])
    train = np.array([[1, 1, 0]], bool)
    test = np.array([[0, 0, 1]], bool)
    assert evaluate(scores, train, test, ks=(1,))["hit@1"] == 1
    assert evaluate(scores, None, test, ks=(1,))["hit@1"] == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ks": (0,)}, "positive int"),
        ({"ks": (-1,)}, "positive int"),
        ({"ks": ()}, "at least one"),
        ({"ks": (3.5,)}, "positive int"),
        ({"ks": (99,)}, "exceeds"),
        ({"batch_users": 0}, "batch_users"),
    ],
)
def test_bad_arguments(kwargs, match):
    scores = np.zeros((2, 4))
    test = np.eye(2, 4, dtype=bool)
    kwargs = {"ks": (1,), **kwargs}
    with pytest.raises(ValueError, match=match):
        evaluate(scores, None, test, **kwargs)


def test_bad_inputs():
    test = np.eye(2, 4, dtype=bool)
    evaluate = _evaluate_k1
    with pytest.raises(ValueError, match="2-D"):
        evaluate(np.zeros(4), None, test)
    with pytest.raises(ValueError, match="shape"):
        evaluate(np.zeros((3, 4)), None, test)
    with pytest.raises(ValueError, match="train has shape"):
        evaluate(np.zeros((2, 4)), np.zeros((2, 5), bool), test)
    with pytest.raises(ValueError, match="numpy array or torch tensor"):
        evaluate([[0.0] * 4] * 2, None, test)
    with pytest.raises(ValueError, match="scipy.sparse"):
        evaluate(np.zeros((2, 4)), [[0] * 4] * 2, test)
    nan = np.zeros((2, 4))
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(nan, None, test)
    with pytest.raises(ValueError, match="no positives"):
        evaluate(np.zeros((2, 4)), None, np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="also train positives"):
        evaluate(np.zeros((2, 4)), test, test)
    with pytest.raises(ValueError, match="numeric"):
        evaluate(torch.zeros((2, 4), dtype=torch.bool), None, test)


def _evaluate_k1(*args, **kwargs):
    return evaluate(*args, ks=(1,), **kwargs)


def test_minus_inf_scores_are_allowed():
    scores = np.array([[-np.inf, 0.0, 1.0]])
    test = np.array([[1, 0, 0]], bool)
    r = evaluate(scores, None, test, ks=(3,))
    assert r["mrr@3"] == pytest.approx(1 / 3)


def test_sampled_protocol_properties():
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 300
    test = np.zeros((n_users, n_items), bool)
    test[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    train = (rng.random((n_users, n_items)) < 0.1) & ~test
    perfect = evaluate_sampled(test.astype(float), train, test, ks=(1, 10))
    assert perfect["hit@1"] == 1.0 and perfect["ndcg@10"] == pytest.approx(1.0)
    worst = evaluate_sampled(-test.astype(float), train, test, ks=(10, 100))
    assert worst["hit@10"] == 0.0 and worst["hit@100"] == 1.0
    # a random scorer: HR@10 among 100 candidates is about 10%
    many = np.repeat(test, 10, axis=0)  # 400 users
    many_train = np.repeat(train, 10, axis=0)
    hits = evaluate_sampled(rng.normal(size=many.shape), many_train, many, ks=(10,))
    assert 0.07 < hits["hit@10"] < 0.13
    a = evaluate_sampled(rng.normal(size=(n_users, n_items)), train, test, seed=7)
    assert a["n_users"] == n_users


def test_sampled_negatives_avoid_positives_and_are_seeded():
    # Positive item 0 scored 0; the user's other positives scored +10 would beat it if
    # they were ever drawn as negatives.
    n_items = 120
    train = np.zeros((1, n_items), bool)
    train[0, 1:20] = True
    test = np.zeros((1, n_items), bool)
    test[0, 0] = True
    scores = np.zeros((1, n_items))
    scores[0, 1:20] = 10.0
    scores[0, 20:] = -1.0
    r = evaluate_sampled(scores, train, test, ks=(1,), n_negatives=99)
    assert r["hit@1"] == 1.0
    s = np.random.default_rng(0).normal(size=(5, n_items))
    t = np.zeros((5, n_items), bool)
    t[:, 3] = True
    assert evaluate_sampled(s, None, t, seed=1) == evaluate_sampled(s, None, t, seed=1)


def test_sampled_bad_inputs():
    test = np.eye(2, 50, dtype=bool)
    with pytest.raises(ValueError, match="n_negatives"):
        evaluate_sampled(np.zeros((2, 50)), None, test, n_negatives=0)
    with pytest.raises(ValueError, match="fewer than"):
        evaluate_sampled(np.zeros((2, 50)), None, test, n_negatives=60, ks=(1,))
    with pytest.raises(ValueError, match="overlap"):
        evaluate_sampled(np.zeros((2, 50)), test, test, n_negatives=10, ks=(1,))
    with pytest.raises(ValueError, match="exceeds"):
        evaluate_sampled(np.zeros((2, 50)), None, test, n_negatives=10, ks=(20,))
    with pytest.raises(ValueError, match="no positives"):
        evaluate_sampled(np.zeros((2, 50)), None, np.zeros((2, 50), bool))
    nan = np.full((2, 50), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_sampled(nan, None, test, n_negatives=10, ks=(1,))


def test_protocol_card():
    card = protocol_card(dataset="ML-100K", split="s", positives="rating >= 4",
                         ks=(20, 5), n_users=10, n_items=20)  # fmt: skip
    assert card.startswith("Protocol |") and "full ranking over all 20 items" in card
    assert "k = 5, 20" in card and "\n" not in card
    sampled = protocol_card(dataset="D", split="s", positives="p", protocol="sampled")
    assert "99 sampled" in sampled
    with pytest.raises(ValueError, match="protocol"):
        protocol_card(dataset="D", split="s", positives="p", protocol="other")

"""APR (Chapter 5.5): the fast-gradient perturbation, the APR loss, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganrec_lite.metrics import evaluate
from ganrec_lite.models import apr, bpr, popularity

FAST = {
    "dim": 16,
    "pretrain_epochs": 10,
    "epochs": 5,
    "batch_size": 256,
    "lr": 1e-2,
}


@pytest.fixture(scope="module")
def trained(synthetic_split):
    train, _ = synthetic_split
    return apr.fit(train, seed=0, device="cpu", return_model=True, **FAST)


def _triples(train, n=512, seed=0):
    X = train.tocoo()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(X.nnz, generator=g)[:n]
    u = torch.as_tensor(X.row, dtype=torch.int64)[pick]
    i = torch.as_tensor(X.col, dtype=torch.int64)[pick]
    j = bpr.NegativeSampler(train, "cpu").sample(u, generator=g)
    return u, i, j


def test_perturbation_rows_have_norm_eps_and_only_touched_rows_move(synthetic_split):
    train, _ = synthetic_split
    torch.manual_seed(0)
    model = bpr.MF(*train.shape, dim=8)
    u, i, j = _triples(train, n=64)
    dP, dQ = apr.fgsm_deltas(model, u, i, j, eps=0.3)
    assert dP.shape == model.P.shape and dQ.shape == model.Q.shape
    assert not dP.requires_grad and not dQ.requires_grad
    users, items = torch.unique(u), torch.unique(torch.cat([i, j]))
    torch.testing.assert_close(dP[users].norm(dim=1), torch.full((len(users),), 0.3))
    torch.testing.assert_close(dQ[items].norm(dim=1), torch.full((len(items),), 0.3))
    untouched = torch.ones(len(dP), dtype=torch.bool)
    untouched[users] = False
    assert dP[untouched].abs().sum() == 0  # rows outside the batch stay put


def test_perturbation_increases_the_bpr_loss_at_first_order(trained, synthetic_split):
    train, _ = synthetic_split
    _, model, _ = trained
    u, i, j = _triples(train)
    with torch.no_grad():
        clean0 = bpr.bpr_loss(apr._scores(model, u, i), apr._scores(model, u, j))
    for eps in (1e-3, 0.1, 0.5):
        clean, adv = apr.apr_loss(model, u, i, j, eps, reg_adv=1.0)
        torch.testing.assert_close(clean.detach(), clean0)
        assert float(adv.detach()) > float(clean.detach())
    # first order: the increase is eps * ||gradient||-ish, so a random direction of the
    # same size hurts much less than the fast-gradient one
    dP, dQ = apr.fgsm_deltas(model, u, i, j, 0.1)
    g = torch.Generator().manual_seed(1)
    rP = torch.nn.functional.normalize(torch.randn(dP.shape, generator=g), dim=1)
    rQ = torch.nn.functional.normalize(torch.randn(dQ.shape, generator=g), dim=1)
    rP, rQ = 0.1 * rP * (dP.norm(dim=1, keepdim=True) > 0), 0.1 * rQ
    with torch.no_grad():
        adv = bpr.bpr_loss(
            apr._scores(model, u, i, dP, dQ), apr._scores(model, u, j, dP, dQ)
        )
        rnd = bpr.bpr_loss(
            apr._scores(model, u, i, rP, rQ), apr._scores(model, u, j, rP, rQ)
        )
    assert float(adv - clean0) > 3 * abs(float(rnd - clean0))


def test_apr_beats_popularity_and_is_reproducible(trained, synthetic_split):
    train, test = synthetic_split
    scores, model, hist = trained
    assert scores.shape == train.shape and len(hist.loss) == FAST["epochs"]
    ours = evaluate(scores, train, test, ks=(20,))["ndcg@20"]
    pop = evaluate(popularity.fit(train, device="cpu"), train, test, ks=(20,))
    assert ours > pop["ndcg@20"] + 0.05
    again = apr.fit(train, seed=0, device="cpu", **FAST)
    torch.testing.assert_close(scores, again)
    other = apr.fit(train, seed=1, device="cpu", **FAST)
    assert not torch.allclose(scores, other)


def test_reg_adv_zero_is_bpr_continued(synthetic_split):
    train, _ = synthetic_split
    a = apr.fit(train, seed=0, device="cpu", reg_adv=0.0, **FAST)
    b = apr.fit(train, seed=0, device="cpu", reg_adv=0.0, eps=2.0, **FAST)
    torch.testing.assert_close(a, b)  # eps is irrelevant without the adversarial term


def test_adversarial_robustness_reports_a_drop(trained, synthetic_split):
    train, test = synthetic_split
    _, model, _ = trained
    P0 = model.P.detach().clone()
    r = apr.adversarial_robustness(model, train, test, [0.0, 0.5, 2.0])
    assert r["eps"] == [0.0, 0.5, 2.0]
    assert r["after"][0] == pytest.approx(r["before"])  # eps 0 changes nothing
    assert r["after"][2] < r["before"] and r["drop"][2] > 0
    assert np.all(np.diff(r["drop"]) >= -0.02)  # larger attacks hurt (about) more
    torch.testing.assert_close(model.P, P0)  # the model is not changed
    rnd = apr.adversarial_robustness(model, train, test, 2.0, kind="random")
    assert rnd["drop"][0] < r["drop"][2]


def test_bad_arguments_raise_value_error(trained, synthetic_split):
    train, test = synthetic_split
    _, model, _ = trained
    with pytest.raises(ValueError, match="unknown APR"):
        apr.fit(train, epsilon=0.5)
    with pytest.raises(ValueError, match="eps"):
        apr.fit(train, eps=-1.0)
    with pytest.raises(ValueError, match="reg_adv"):
        apr.fit(train, reg_adv="1")
    with pytest.raises(ValueError, match="epochs"):
        apr.fit(train, epochs=0)
    with pytest.raises(ValueError, match="negatives"):
        apr.fit(train, negatives="hard")
    with pytest.raises(ValueError, match="train must be"):
        apr.fit([[1, 0]])
    with pytest.raises(ValueError, match="model must be"):
        apr.adversarial_robustness(object(), train, test, 0.5)
    with pytest.raises(ValueError, match="kind"):
        apr.adversarial_robustness(model, train, test, 0.5, kind="pgd")
    with pytest.raises(ValueError, match="eps"):
        apr.adversarial_robustness(model, train, test, -0.1)
    with pytest.raises(ValueError, match="shape"):
        apr.adversarial_robustness(model, train[:10], test[:10], 0.5)


def test_apr_is_registered_in_bench():
    from ganrec_lite import bench

    m = bench.METHODS["apr"]
    assert m.fit is apr.fit
    assert m.hparams["eps"] == 0.5 and m.hparams["reg_adv"] == 1.0

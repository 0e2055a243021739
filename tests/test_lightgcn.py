"""LightGCN, SGL, SimGCL and SimGCL-adv of Chapter 5.8: the graph, propagation, the
contrastive loss, the adversarial view, uniformity, seeding and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ganrec_lite.metrics import evaluate
from ganrec_lite.models import lightgcn, popularity

# small and fast: a second or two per fit on a busy 2-core CPU
FAST = {"epochs": 30, "batch_size": 512, "lr": 1e-2, "dim": 16}

# a tiny graph: 3 users, 4 items; item 3 and user 2 have no positives
R = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)


def dense_norm_adj(R: np.ndarray) -> torch.Tensor:
    """``D^{-1/2} A D^{-1/2}`` by hand, with ``0`` for isolated nodes."""
    U, n_items = R.shape
    A = np.zeros((U + n_items, U + n_items))
    A[:U, U:] = R
    A[U:, :U] = R.T
    deg = A.sum(1)
    d = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0.0)
    return torch.tensor(d[:, None] * A * d[None, :], dtype=torch.float32)


def test_normalized_adjacency_matches_a_dense_hand_computation():
    adj = lightgcn.normalized_adjacency(sp.csr_matrix(R), "cpu")
    assert adj.shape == (7, 7)
    expect = dense_norm_adj(R)
    torch.testing.assert_close(adj.to_dense(), expect)
    # two entries by hand: user 0 (degree 2) - item 1 (degree 2): 1 / 2
    assert expect[0, 3 + 1] == pytest.approx(0.5)
    assert expect[1, 3 + 2] == pytest.approx(1 / math.sqrt(2))  # item 2: degree 1
    assert (expect[2] == 0).all() and (expect[:, 6] == 0).all()  # isolated nodes


def test_edge_dropout_keeps_a_renormalised_subgraph():
    X = sp.random(30, 40, density=0.3, format="csr", random_state=0) > 0
    u, i = (torch.as_tensor(a, dtype=torch.int64) for a in X.nonzero())
    full = lightgcn.edge_dropout(u, i, 30, 40, 0.0)
    torch.testing.assert_close(full.to_dense(), dense_norm_adj(X.toarray()))
    gen = torch.Generator().manual_seed(0)
    view = lightgcn.edge_dropout(u, i, 30, 40, 0.5, gen).to_dense()
    kept = (view[:30, 30:] > 0).numpy()
    assert not (kept & ~X.toarray()).any()  # only training edges
    assert 0.4 < kept.sum() / X.nnz < 0.6
    torch.testing.assert_close(view, dense_norm_adj(kept))


def test_propagation_is_the_mean_of_the_layers_and_k0_is_the_ego():
    torch.manual_seed(0)
    adj = lightgcn.normalized_adjacency(sp.csr_matrix(R), "cpu")
    A = dense_norm_adj(R)
    E0 = torch.randn(7, 5, requires_grad=True)
    torch.testing.assert_close(lightgcn.propagate(adj, E0, 0), E0)
    got = lightgcn.propagate(adj, E0, 2)
    E1 = E0.detach().clone().requires_grad_()
    expect = (E1 + A @ E1 + A @ A @ E1) / 3
    torch.testing.assert_close(got, expect)
    # the symmetric backward gives autograd's gradient
    w = torch.randn(7, 5)
    (got * w).sum().backward()
    (expect * w).sum().backward()
    torch.testing.assert_close(E0.grad, E1.grad)
    # SimGCL's view: noise after every layer, layer 0 left out of the mean
    n1, n2 = torch.randn(7, 5), torch.randn(7, 5)
    view = lightgcn.propagate(adj, E0, 2, [n1, n2], include_ego=False)
    L1 = A @ E0 + n1
    torch.testing.assert_close(view, (L1 + (A @ L1 + n2)) / 2)


def test_info_nce_matches_a_hand_computation():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    tau = 0.3
    total = 0.0
    for m in range(4):
        cos = [float(a[m] @ b[k] / (a[m].norm() * b[k].norm())) for k in range(4)]
        total -= math.log(math.exp(cos[m] / tau) / sum(math.exp(c / tau) for c in cos))
    assert float(lightgcn.info_nce(a, b, tau)) == pytest.approx(total / 4, rel=1e-5)
    # identical, orthogonal views: the positive dominates as tau -> 0
    eye = torch.eye(3)
    assert float(lightgcn.info_nce(eye, eye, 0.01)) < 1e-6


def test_uniformity_of_identical_and_of_spread_rows():
    same = torch.ones(5, 3) * torch.tensor([1.0, 2.0, 3.0])
    assert lightgcn.uniformity(same) == pytest.approx(0.0, abs=1e-6)
    pair = torch.tensor([[1.0, 0.0], [-3.0, 0.0]])  # antipodal: ||x - y||^2 = 4
    assert lightgcn.uniformity(pair) == pytest.approx(-8.0, rel=1e-5)
    spread = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    u = lightgcn.uniformity(spread)
    assert u < -1.0
    # large inputs are subsampled, seeded
    assert lightgcn.uniformity(spread, max_rows=100) == lightgcn.uniformity(
        spread, max_rows=100
    )


def test_adversarial_noise_has_norm_eps_and_raises_the_contrastive_loss(
    synthetic_split,
):
    train, _ = synthetic_split
    adj = lightgcn.normalized_adjacency(train, "cpu")
    U, n_items = train.shape
    gen = torch.Generator().manual_seed(0)
    E0 = 0.1 * torch.randn(U + n_items, 16, generator=gen)  # (N, d)
    users, items = torch.arange(0, U, 2), torch.arange(0, n_items, 3)
    eps, tau, K = 0.1, 0.2, 2

    def view(noise):
        return lightgcn.propagate(adj, E0, K, noise, include_ego=False)

    def noisy(k, E):
        return lightgcn.random_noise(E, eps, gen)

    other = view(noisy)
    adv = lightgcn.adversarial_noise(adj, E0, K, other, users, items, U, eps, tau)
    assert len(adv) == K and not any(d.requires_grad for d in adv)
    # the hand back-propagation gives autograd's gradient direction, and every row
    # the loss reaches moves by eps (the others cannot change it, and stay put)
    zeros = [torch.zeros_like(E0, requires_grad=True) for _ in range(K)]
    loss = lightgcn.contrastive_loss(view(zeros), other, users, items, U, tau)
    for d, g in zip(adv, torch.autograd.grad(loss, zeros), strict=True):
        reached = g.norm(dim=1) > 0  # (N,)
        norm = d.norm(dim=1)  # (N,)
        torch.testing.assert_close(norm[reached], torch.full_like(norm[reached], eps))
        assert (d[~reached] == 0).all()
        expect = eps * torch.nn.functional.normalize(g, dim=1)
        torch.testing.assert_close(d, expect, rtol=1e-4, atol=1e-6)
    rows = torch.zeros(U + n_items, dtype=torch.bool)  # (N,) the loss's nodes
    rows[users], rows[U + items] = True, True
    assert torch.equal(adv[-1].norm(dim=1) > 0, rows)  # the last layer: only those
    assert (adv[0].norm(dim=1) > 0).float().mean() > 0.9  # the first: their graph
    loss_adv = lightgcn.contrastive_loss(view(adv), other, users, items, U, tau)
    for _ in range(5):  # every random view is easier
        loss_rand = lightgcn.contrastive_loss(view(noisy), other, users, items, U, tau)
        assert loss_adv > loss_rand
    loss_clean = lightgcn.contrastive_loss(view(None), other, users, items, U, tau)
    assert loss_adv > loss_clean  # the first-order step goes uphill


@pytest.mark.parametrize("variant", lightgcn.VARIANTS)
def test_fit_learns_and_is_seeded(synthetic_split, variant):
    train, test = synthetic_split
    h = {**FAST, "variant": variant}
    S = lightgcn.fit(train, seed=0, device="cpu", **h)
    assert S.shape == train.shape and torch.isfinite(S).all()
    ours = evaluate(S, train, test, ks=(5,))["ndcg@5"]
    pop = evaluate(popularity.fit(train, device="cpu"), train, test, ks=(5,))["ndcg@5"]
    assert ours > pop
    assert torch.equal(S, lightgcn.fit(train, seed=0, device="cpu", **h))
    assert not torch.equal(S, lightgcn.fit(train, seed=1, device="cpu", **h))


def test_valid_stops_early_and_keeps_the_best_epoch(synthetic_split):
    train, test = synthetic_split
    h = {**FAST, "epochs": 200, "lr": 0.1}  # overfits quickly
    S, model, hist = lightgcn.fit(train, 0, "cpu", test, return_model=True, **h)
    assert isinstance(model, lightgcn.LightGCN)
    assert hist.evals and hist.stopped_early
    best = max(v for _, v in hist.evals)
    assert evaluate(S, train, test, ks=(20,))["ndcg@20"] == pytest.approx(best)


def test_the_variants_dicts_select_their_defaults():
    assert lightgcn.HPARAMS is lightgcn.LIGHTGCN_HPARAMS
    for name, h in [
        ("lightgcn", lightgcn.LIGHTGCN_HPARAMS),
        ("sgl", lightgcn.SGL_HPARAMS),
        ("simgcl", lightgcn.SIMGCL_HPARAMS),
        ("simgcl-adv", lightgcn.SIMGCL_ADV_HPARAMS),
    ]:
        assert h["variant"] == name
    assert "rho" in lightgcn.SGL_HPARAMS and "eps" not in lightgcn.SGL_HPARAMS
    assert "eps" in lightgcn.SIMGCL_ADV_HPARAMS


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"dim": 0}, "dim"),
        ({"epochs": 0}, "epochs"),
        ({"n_layers": -1}, "n_layers"),
        ({"variant": "simgcl", "n_layers": 0}, "n_layers"),
        ({"lr": -1.0}, "lr"),
        ({"reg": -1e-4}, "reg"),
        ({"variant": "gcn"}, "variant"),
        ({"variant": "sgl", "rho": 1.0}, "rho"),
        ({"variant": "sgl", "tau": 0.0}, "tau"),
        ({"variant": "simgcl", "eps": -0.1}, "eps"),
        ({"variant": "simgcl-adv", "lambda_cl": -1}, "lambda_cl"),
        ({"rho": 0.1}, "unknown LightGCN"),  # not a LightGCN knob
        ({"typo": 1}, "unknown LightGCN"),
    ],
)
def test_bad_hyper_parameters_are_named(synthetic_split, bad, match):
    train, _ = synthetic_split
    with pytest.raises(ValueError, match=match):
        lightgcn.fit(train, 0, "cpu", **bad)


def test_bad_inputs_are_refused(synthetic_split):
    train, test = synthetic_split
    with pytest.raises(ValueError, match="valid has shape"):
        lightgcn.fit(train, 0, "cpu", test[:, :10], **FAST)
    with pytest.raises(ValueError, match="a and b"):
        lightgcn.info_nce(torch.ones(3, 2), torch.ones(4, 2), 0.2)
    with pytest.raises(ValueError, match="tau"):
        lightgcn.info_nce(torch.ones(3, 2), torch.ones(3, 2), 0.0)
    with pytest.raises(ValueError, match="emb"):
        lightgcn.uniformity(torch.ones(1, 4))
    with pytest.raises(ValueError, match="rho"):
        lightgcn.edge_dropout(torch.zeros(1).long(), torch.zeros(1).long(), 1, 1, 1.0)

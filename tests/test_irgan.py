"""IRGAN of Chapter 5.4: sampling, the two losses, selection, seeding, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganrec_lite import bench
from ganrec_lite.metrics import evaluate
from ganrec_lite.models import irgan, popularity
from ganrec_lite.models.bpr import MF

# small and fast: a few seconds on a busy 2-core CPU
FAST = {
    "epochs": 2,
    "d_epochs": 4,
    "resample_every": 2,
    "g_epochs": 5,
    "pretrain_epochs": 10,
    "lr_g": 0.05,
    "lr_d": 0.01,
    "d_batch": 256,
    "g_user_batch": 64,
}


def test_sample_per_user_counts_and_padding():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(4, 10, generator=gen), 1)  # (B, I)
    counts = torch.tensor([0, 3, 1, 5])
    draws = irgan.sample_per_user(probs, counts, gen)
    assert draws.shape == (4, 5)
    assert ((draws >= 0).sum(1) == counts).all()
    assert ((draws >= 0) == (torch.arange(5) < counts[:, None])).all()  # left-packed
    assert draws.max() < 10
    empty = irgan.sample_per_user(probs[:2], torch.tensor([0, 0]))
    assert empty.shape == (2, 0)


def test_sample_per_user_follows_the_distribution():
    gen = torch.Generator().manual_seed(1)
    p = torch.tensor([[0.7, 0.2, 0.1, 0.0]])
    draws = irgan.sample_per_user(p, torch.tensor([20_000]), gen)
    freq = torch.bincount(draws[0], minlength=4).float() / 20_000
    torch.testing.assert_close(freq, p[0], atol=0.015, rtol=0)


def test_policy_samples_importance_weights_are_p_over_pn():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 8, generator=gen)  # (B, I)
    pos = torch.zeros(3, 8)
    pos[0, [1, 2]] = 1
    pos[1, 5] = 1
    pos[2, [0, 3, 7]] = 1
    items, ok, w = irgan.policy_samples(logits, pos, 0.2, gen)
    assert (ok.sum(1) == 2 * pos.sum(1)).all()  # 2 |pos_u| draws each
    p = torch.softmax(logits, 1)
    pn = 0.8 * p + 0.2 * pos / pos.sum(1, keepdim=True)
    safe = items.clamp(min=0)
    expect = (p.gather(1, safe) / pn.gather(1, safe)) * ok
    torch.testing.assert_close(w, expect)
    # the unbiasedness the weights buy: E_pn[w f] = E_p[f], checked exactly
    f = torch.randn(3, 8, generator=gen)
    torch.testing.assert_close((pn * (p / pn) * f).sum(1), (p * f).sum(1))


def test_d_loss_matches_a_hand_computation():
    torch.manual_seed(0)
    D = MF(3, 4, 2)
    u, i, j = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 0])
    got = irgan.d_loss(D, u, i, j, reg=0.5)
    x_pos = (D.P[u] * D.Q[i]).sum(1) + D.b[i]
    x_neg = (D.P[u] * D.Q[j]).sum(1) + D.b[j]
    bce = -torch.log(torch.sigmoid(x_pos)) - torch.log(1 - torch.sigmoid(x_neg))
    l2 = sum(
        (D.P[a] ** 2).sum() * 2 + (D.Q[b] ** 2).sum() + (D.Q[c] ** 2).sum()
        + D.b[b] ** 2 + D.b[c] ** 2
        for a, b, c in zip(u, i, j, strict=True)
    )  # fmt: skip
    torch.testing.assert_close(got, bce.sum() + 0.5 * 0.5 * l2)


def test_g_loss_gradient_is_the_reinforce_estimate():
    torch.manual_seed(0)
    G = MF(2, 5, 3)
    users = torch.tensor([0, 1])
    items = torch.tensor([[1, 4, -1], [0, 0, 2]])  # (B, M), -1 padding
    ok = items >= 0
    reward = torch.tensor([[0.5, -0.2, 0.0], [1.0, 0.3, -0.7]]) * ok
    irgan.g_loss(G, users, items, ok, reward).backward()
    grad = G.P.grad.clone()
    # the same by hand: per user, -mean over samples of reward * grad log p(i|u)
    G.P.grad = None
    total = 0
    for b, u in enumerate(users):
        logp = torch.log_softmax(G.P[u] @ G.Q.T + G.b, 0)
        n = int(ok[b].sum())
        total = total - sum(reward[b, m] * logp[items[b, m]] for m in range(n)) / n
    total.backward()
    torch.testing.assert_close(grad, G.P.grad)


def test_fit_learns_and_is_seeded(synthetic_split):
    train, test = synthetic_split
    h = {**FAST, "holdout": 0.0}
    S = irgan.fit(train, seed=0, device="cpu", **h)
    assert S.shape == train.shape and torch.isfinite(S).all()
    ours = evaluate(S, train, test, ks=(5,))["ndcg@5"]
    pop = evaluate(popularity.fit(train, device="cpu"), train, test, ks=(5,))["ndcg@5"]
    assert ours > pop
    torch.testing.assert_close(S, irgan.fit(train, seed=0, device="cpu", **h))
    assert not torch.equal(S, irgan.fit(train, seed=1, device="cpu", **h))


def test_valid_selects_the_best_pass_and_watch_only_observes(synthetic_split):
    train, test = synthetic_split
    h = {**FAST, "holdout": 0.0, "patience": None}
    S, G, D, hist = irgan.fit(train, 0, "cpu", test, watch=test, return_model=True, **h)
    n = FAST["epochs"] * FAST["g_epochs"]
    assert hist.passes == list(range(n + 1))
    assert len(hist.valid) == n + 1 and len(hist.watch["ndcg@5"]) == n + 1
    assert hist.best_pass == int(np.argmax(hist.valid))  # first best
    got = evaluate(S, train, test, ks=(5,))["precision@5"]
    assert got == pytest.approx(max(hist.valid))
    assert len(hist.d_loss) == FAST["epochs"] * FAST["d_epochs"]
    assert len(hist.g_loss) == n


def test_patience_stops_early(synthetic_split):
    train, test = synthetic_split
    h = {**FAST, "holdout": 0.0, "patience": 1, "lr_g": 5.0}  # a G that wanders
    *_, hist = irgan.fit(train, 0, "cpu", test, return_model=True, **h)
    assert hist.passes[-1] - hist.best_pass <= 1


def test_default_chooses_passes_on_a_holdout_then_refits(synthetic_split):
    train, test = synthetic_split
    S, G, D, hist = irgan.fit(train, 0, "cpu", return_model=True, **FAST)
    sel = hist.selection
    assert sel is not None and sel.valid  # the hold-out run selected on its valid
    assert hist.best_pass == sel.best_pass == len(hist.g_loss)
    assert hist.valid == []  # the refit never looked at a validation set
    # stop_pass reproduces the refit
    h = {**FAST, "holdout": 0.0, "stop_pass": sel.best_pass}
    torch.testing.assert_close(S, irgan.fit(train, 0, "cpu", **h))


def test_stop_pass_zero_returns_the_pretrained_generator(synthetic_split):
    from ganrec_lite.models import bpr

    train, _ = synthetic_split
    h = {**FAST, "holdout": 0.0, "stop_pass": 0}
    S = irgan.fit(train, 3, "cpu", **h)
    ref = bpr.fit(train, 3, "cpu", dim=5, negatives="dns", dns_k=5, epochs=10)
    torch.testing.assert_close(S, ref)


def test_released_pretrain_needs_the_irgan_shape(synthetic_split, shared_data):
    train, _ = synthetic_split
    with pytest.raises(ValueError, match="irgan-ml100k shape"):
        irgan.fit(train, 0, "cpu", pretrain="released", holdout=0.0, epochs=1)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"dim": 0}, "dim"),
        ({"lr_g": -1.0}, "lr_g"),
        ({"temperature": 0.0}, "temperature"),
        ({"sample_lambda": 1.0}, "sample_lambda"),
        ({"pretrain": "mf"}, "pretrain"),
        ({"stop_pass": -1}, "stop_pass"),
        ({"holdout": 1.0}, "holdout"),
        ({"typo": 1}, "unknown IRGAN"),
    ],
)
def test_bad_hyper_parameters_are_named(synthetic_split, bad, match):
    train, _ = synthetic_split
    with pytest.raises(ValueError, match=match):
        irgan.fit(train, 0, "cpu", **bad)


def test_shape_mismatch_is_refused(synthetic_split):
    train, test = synthetic_split
    with pytest.raises(ValueError, match="valid has shape"):
        irgan.fit(train, 0, "cpu", test[:, :10], **FAST)
    with pytest.raises(ValueError, match="watch has shape"):
        irgan.fit(train, 0, "cpu", watch=test[:5], **FAST)


def test_bench_marks_the_test_selected_variants():
    assert not bench.METHODS["irgan"].selects_on_test
    for name in ("irgan-testsel", "irgan-released"):
        m = bench.METHODS[name]
        assert m.selects_on_test and m.hparams["patience"] is None
    assert bench.METHODS["irgan-released"].hparams["pretrain"] == "released"


def test_bench_passes_test_as_valid_only_when_flagged(monkeypatch, shared_data):
    seen = {}

    def fake_fit(train, seed, device, valid=None, **h):
        seen["valid"] = valid
        return np.zeros(train.shape)

    monkeypatch.setitem(bench.METHODS, "peek", None)
    bench.register("peek", fake_fit, "looks at test", selects_on_test=True)
    rec = bench.run("peek", "irgan-ml100k", seeds=1, device="cpu")
    assert seen["valid"] is not None and seen["valid"].nnz == 11_235
    assert rec["selected_on_test"] is True
    monkeypatch.setitem(bench.METHODS, "fair", None)
    bench.register("fair", fake_fit, "does not")
    rec = bench.run("fair", "irgan-ml100k", seeds=1, device="cpu")
    assert seen["valid"] is None and rec["selected_on_test"] is False

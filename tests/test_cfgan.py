"""CFGAN of Chapter 5.3: shapes, ZR/PM sampling, training, seeding, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganrec_lite import bench
from ganrec_lite.metrics import evaluate
from ganrec_lite.models import cfgan, popularity

# small and fast: a few seconds on a busy 2-core CPU
FAST = {
    "hidden_G": 64,
    "hidden_D": 32,
    "lr_G": 1e-3,
    "lr_D": 1e-3,
    "batch_G": 64,
    "batch_D": 64,
    "step_G": 2,
    "step_D": 1,
    "epochs": 15,
}


def test_model_shapes():
    m = cfgan.CFGAN(7, hidden_G=5, hidden_D=3)
    c = torch.rand(4, 7)  # (B, M)
    assert m.G(c).shape == (4, 7)
    assert m.D(c, c).shape == (4, 1)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.7, 1.0])
def test_sample_negatives_draws_only_non_purchases(ratio):
    gen = torch.Generator().manual_seed(0)
    X = (torch.rand(50, 40, generator=gen) < 0.2).float()  # (N, M)
    mask = cfgan.sample_negatives(X, ratio, gen)
    assert mask.shape == X.shape and mask.dtype == torch.bool
    assert not (mask & (X > 0)).any()  # never a purchase
    n0 = (X == 0).sum(1)
    torch.testing.assert_close(mask.sum(1), (n0 * ratio).floor().long())
    with pytest.raises(ValueError, match="ratio"):
        cfgan.sample_negatives(X, 1.5)


def test_sample_negatives_is_uniform_over_zeros():
    X = torch.zeros(2000, 4)
    X[:, 0] = 1  # item 0 purchased by everyone: the 3 others are the zeros
    mask = cfgan.sample_negatives(X, 1 / 3, torch.Generator().manual_seed(0))
    freq = mask.float().mean(0)  # each zero drawn with probability 1/3
    assert freq[0] == 0
    torch.testing.assert_close(freq[1:], torch.full((3,), 1 / 3), atol=0.04, rtol=0)


def test_generator_loss_decreases_against_a_fixed_discriminator(synthetic_split):
    # In the game G's loss need not fall (D keeps learning); against a frozen D
    # (step_D=0) G's objective, adversarial term + ZR, must go down.
    train, _ = synthetic_split
    _, _, hist = cfgan.fit(train, 0, "cpu", return_model=True, **{**FAST, "step_D": 0})
    assert len(hist.loss) == FAST["epochs"]
    assert np.mean(hist.loss[-3:]) < 0.9 * np.mean(hist.loss[:3])


def test_reconstruction_ablation_loss_decreases(synthetic_split):
    train, _ = synthetic_split
    _, _, hist = cfgan.fit(train, 0, "cpu", return_model=True, gan=False, **FAST)
    assert hist.loss[-1] < 0.5 * hist.loss[0]


def test_seeded_and_shapes(synthetic_split):
    train, _ = synthetic_split
    small = {**FAST, "epochs": 2}
    a = cfgan.fit(train, 3, "cpu", **small)
    b = cfgan.fit(train, 3, "cpu", **small)
    c = cfgan.fit(train, 4, "cpu", **small)
    assert a.shape == train.shape
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    u = cfgan.fit(train, 3, "cpu", mode="user", **small)
    assert u.shape == train.shape


def test_cfgan_beats_popularity(synthetic_split):
    train, test = synthetic_split  # the full game, D trained
    pop = evaluate(popularity.fit(train, device="cpu"), train, test, ks=(10,))
    ours = evaluate(cfgan.fit(train, 0, "cpu", **FAST), train, test, ks=(10,))
    assert ours["ndcg@10"] > pop["ndcg@10"] + 0.02


def test_bad_arguments():
    X = np.eye(4)
    with pytest.raises(ValueError, match="unknown CFGAN"):
        cfgan.fit(X, learning_rate=0.1)
    with pytest.raises(ValueError, match="mode"):
        cfgan.fit(X, mode="both")
    with pytest.raises(ValueError, match="zr_ratio"):
        cfgan.fit(X, zr_ratio=1.5)
    with pytest.raises(ValueError, match="hidden_G"):
        cfgan.fit(X, hidden_G=0)
    with pytest.raises(ValueError, match="gan"):
        cfgan.fit(X, gan="no")
    with pytest.raises(ValueError, match="no positives"):
        cfgan.fit(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="train must be"):
        cfgan.fit([[1, 0]])


def test_registered_in_bench():
    for name, flag in [
        ("cfgan-nogan", "gan"),
        ("cfgan-nozr", "zr"),
        ("cfgan-nopm", "pm"),
    ]:
        hp = bench.METHODS[name].hparams_for("cfgan-ml100k")
        assert hp[flag] is False
    assert bench.METHODS["cfgan"].hparams == cfgan.HPARAMS

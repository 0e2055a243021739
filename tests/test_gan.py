"""Unit tests of ganrec_lite.gan (the GAN loop of Chapter 3.1) and ganrec_lite.toy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ganrec_lite.gan import (
    CondMLP,
    History,
    discriminator_loss,
    generator_loss,
    grad_norm,
    gradient_penalty,
    mlp,
    train_gan,
    update_D,
    update_G,
    wgan_critic_loss,
    wgan_generator_loss,
)
from ganrec_lite.toy import mixture_of_gaussians_ring, mode_coverage, ring_centers

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    ),
]


def _models(seed: int = 0, d_z: int = 2):
    torch.manual_seed(seed)
    return mlp([d_z, 16, 2]), mlp([2, 16, 1])


# ------------------------------------------------------------------------------ losses
def test_discriminator_loss_is_log4_when_D_is_undecided():
    zeros = torch.zeros(5, 1)  # logits 0: D = 1/2 everywhere
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(4))


def test_label_smoothing_changes_only_the_real_target():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    s, ls = torch.sigmoid, 0.1
    by_hand_real = -((1 - ls) * torch.log(s(real)) + ls * torch.log(1 - s(real))).mean()
    by_hand_fake = -torch.log(1 - s(fake)).mean()
    got = discriminator_loss(real, fake, label_smoothing=ls)
    torch.testing.assert_close(got, by_hand_real + by_hand_fake)
    # the fake term is the same with and without smoothing
    no_ls = discriminator_loss(real, fake)
    torch.testing.assert_close(no_ls - got, -torch.log(s(real)).mean() - by_hand_real)


def test_generator_losses_match_their_formulas():
    logits = torch.tensor([[-1.0], [0.3], [2.0]])
    d = torch.sigmoid(logits)
    torch.testing.assert_close(generator_loss(logits), -torch.log(d).mean())
    torch.testing.assert_close(
        generator_loss(logits, "saturating"), torch.log(1 - d).mean()
    )
    torch.testing.assert_close(wgan_generator_loss(logits), -logits.mean())
    torch.testing.assert_close(
        wgan_critic_loss(torch.ones(3), logits), logits.mean() - 1.0
    )


def test_saturating_gradient_vanishes_where_non_saturating_does_not():
    # D confidently rejects the fakes: D(G(z)) = sigmoid(-10), about 4.5e-5
    grads = {}
    for kind in ("non_saturating", "saturating"):
        logits = torch.full((4, 1), -10.0, requires_grad=True)
        generator_loss(logits, kind).backward()
        grads[kind] = logits.grad
    # d/dl of -log sigmoid(l) is -(1 - D) = about -1; of log(1 - sigmoid(l)) is -D
    torch.testing.assert_close(
        grads["non_saturating"], torch.full((4, 1), -0.25), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        grads["saturating"],
        torch.full((4, 1), -torch.sigmoid(torch.tensor(-10.0)).item() / 4),
    )
    ratio = grads["non_saturating"].abs() / grads["saturating"].abs()
    assert (ratio > 1e4).all()  # same direction, four orders of magnitude apart


def test_loss_validation():
    with pytest.raises(ValueError, match="label_smoothing"):
        discriminator_loss(torch.zeros(2), torch.zeros(2), label_smoothing=0.6)
    with pytest.raises(ValueError, match="kind"):
        generator_loss(torch.zeros(2), "minimax")


# --------------------------------------------------------------------- gradient penalty
def test_gradient_penalty_of_a_linear_critic_is_hand_computed():
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0, 0.0]]))  # ||w|| = 5
        critic.bias.fill_(0.7)
    real, fake = torch.randn(6, 3), torch.randn(6, 3)
    # grad_x (w.x + b) = w everywhere, so the penalty is (5 - 1)^2 = 16 for any alpha
    gp = gradient_penalty(critic, real, fake)
    torch.testing.assert_close(gp, torch.tensor(16.0))
    gp.backward()  # it keeps its graph: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(
        critic.weight.grad, 2 * 4 * torch.tensor([[3.0, 4.0, 0.0]]) / 5
    )


def test_gradient_penalty_with_given_alpha_and_a_condition():
    def critic(x, c):  # D(x, c) = 0.5 ||x||^2 + c . 1: grad_x = x
        return 0.5 * (x**2).sum(1) + c.sum(1)

    real = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    fake = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    alpha = torch.tensor([0.5, 0.25])
    # x_hat = [[1, 0], [0, 3]], norms 1 and 3, penalty ((1-1)^2 + (3-1)^2) / 2 = 2
    gp = gradient_penalty(critic, real, fake, torch.ones(2, 5), alpha=alpha)
    torch.testing.assert_close(gp, torch.tensor(2.0))
    g = torch.Generator().manual_seed(0)
    assert gradient_penalty(critic, real, fake, torch.ones(2, 5), generator=g) >= 0


def test_gradient_penalty_validation():
    critic = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, torch.zeros(3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="alpha"):
        gradient_penalty(
            critic, torch.zeros(3, 2), torch.zeros(3, 2), alpha=torch.ones(2)
        )


def test_grad_norm_by_hand():
    p, q = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    assert grad_norm([p, q]).item() == 0.0
    p.grad = torch.tensor([3.0, 0.0])
    q.grad = torch.tensor([4.0])
    assert grad_norm([p, q]).item() == pytest.approx(5.0)


# ----------------------------------------------------------------------------- one step
@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_one_discriminator_step_lowers_its_loss_on_a_fixed_batch(loss):
    G, D = _models()
    x_real = torch.randn(32, 2) + 2.0
    x_fake = G(torch.randn(32, 2))  # keeps G's graph: update_D must detach it
    opt_D = torch.optim.SGD(D.parameters(), lr=0.05)

    def critic_loss():
        with torch.no_grad():
            r, f = D(x_real), D(x_fake)
            return discriminator_loss(r, f) if loss == "bce" else wgan_critic_loss(r, f)

    before = critic_loss()
    stats = update_D(D, opt_D, x_real, x_fake, loss=loss, gp_weight=0.0)
    assert critic_loss() < before
    assert set(stats) == {"loss_D", "D_x", "D_G_z", "grad_norm_D", "gp"}
    assert all(not v.requires_grad and v.ndim == 0 for v in stats.values())
    assert all(p.grad is None for p in G.parameters())  # no gradient reached G
    if loss == "bce":
        assert 0 < stats["D_x"] < 1 and 0 < stats["D_G_z"] < 1


@pytest.mark.parametrize("g_loss", ["non_saturating", "saturating"])
def test_one_generator_step_lowers_its_loss_and_leaves_D_alone(g_loss):
    G, D = _models()
    D.requires_grad_(True)
    D[0].bias.requires_grad_(False)  # a frozen parameter must stay frozen
    z = torch.randn(32, 2)
    opt_G = torch.optim.SGD(G.parameters(), lr=0.05)
    d_before = [p.detach().clone() for p in D.parameters()]
    with torch.no_grad():
        before = generator_loss(D(G(z)), g_loss)
    stats = update_G(G, D, opt_G, z, g_loss=g_loss)
    with torch.no_grad():
        assert generator_loss(D(G(z)), g_loss) < before
    assert all(p.grad is None for p in D.parameters())  # D was frozen during the step
    assert [p.requires_grad for p in D.parameters()] == [True, False, True, True]
    assert all(torch.equal(a, b) for a, b in zip(d_before, D.parameters(), strict=True))
    assert stats["grad_norm_G"] > 0 and not stats["loss_G"].requires_grad


def test_update_validation():
    G, D = _models()
    opt_D = torch.optim.SGD(D.parameters(), lr=0.1)
    opt_G = torch.optim.SGD(G.parameters(), lr=0.1)
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="loss"):
        update_D(D, opt_D, x, x, loss="hinge")
    with pytest.raises(ValueError, match="gp_weight"):
        update_D(D, opt_D, x, x, loss="wgan-gp", gp_weight=-1)
    with pytest.raises(ValueError, match="x_real and x_fake"):
        update_D(D, opt_D, x, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="label_smoothing"):
        update_D(D, opt_D, x, x, loss="wgan-gp", label_smoothing=0.1)
    with pytest.raises(ValueError, match="g_loss"):
        update_G(G, D, opt_G, x, g_loss="minimax")
    with pytest.raises(ValueError, match="gp_weight"):
        update_D(D, opt_D, x, x, gp_weight=True)


def test_gp_weight_defaults_and_the_penalised_bce_discriminator():
    G, D = _models()
    opt_D = torch.optim.SGD(D.parameters(), lr=0.0)  # lr 0: D stays put between calls
    x, x_fake = torch.randn(8, 2), torch.randn(8, 2)
    assert update_D(D, opt_D, x, x_fake)["gp"] == 0  # bce: no penalty by default
    assert update_D(D, opt_D, x, x_fake, loss="wgan-gp")["gp"] > 0  # wgan-gp: lambda 10
    stats = update_D(D, opt_D, x, x_fake, gp_weight=2.0)  # non-saturating GAN + GP
    with torch.no_grad():
        plain = discriminator_loss(D(x), D(x_fake))
    torch.testing.assert_close(stats["loss_D"], plain + 2.0 * stats["gp"])


# ----------------------------------------------------------------------------- the loop
def _ring_setup(device, seed=0):
    g = torch.Generator().manual_seed(seed)
    G, D = _models(seed)
    G, D = G.to(device), D.to(device)
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))

    def sample_real():
        return mixture_of_gaussians_ring(16, generator=g)  # (16, 2) on the CPU

    def sample_z(n):
        return torch.randn(n, 2, generator=g)  # (n, 2)

    return G, D, opt_D, opt_G, sample_real, sample_z


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_train_gan_runs_and_records_history(device, loss):
    G, D, opt_D, opt_G, sample_real, sample_z = _ring_setup(device)
    seen = []

    def callback(step, G_, D_):
        seen.append(step)
        G_.eval()  # the loop must put the models back in training mode

    kwargs = {"label_smoothing": 0.1} if loss == "bce" else {"gp_weight": 5.0}
    h = train_gan(
        G,
        D,
        sample_real,
        sample_z,
        steps=6,
        opt_D=opt_D,
        opt_G=opt_G,
        d_steps=2,
        loss=loss,
        log_every=2,
        callback=callback,
        callback_every=3,
        **kwargs,
    )
    assert isinstance(h, History) and len(h) == 3
    assert seen == [0, 3, 6] and G.training and D.training
    np.testing.assert_array_equal(h["step"], [2, 4, 6])
    keys = ["loss_D", "loss_G", "D_x", "D_G_z", "grad_norm_D", "grad_norm_G"]
    assert h.keys() == ["step", *keys] + (["gp"] if loss == "wgan-gp" else [])
    for k in keys:
        assert isinstance(h[k], np.ndarray) and h[k].shape == (3,)
        assert np.isfinite(h[k]).all()
    assert (h["grad_norm_D"] > 0).all() and (h["grad_norm_G"] > 0).all()
    frame = h.to_frame()
    assert list(frame.columns) == h.keys() and len(frame) == 3
    with pytest.raises(KeyError, match="nope"):
        h["nope"]


@pytest.mark.parametrize("device", DEVICES)
def test_train_gan_conditional(device):
    torch.manual_seed(0)
    G = CondMLP([2 + 3, 16, 2]).to(device)  # G(z, c)
    D = CondMLP([2 + 3, 16, 1]).to(device)  # D(x, c)
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-3)
    calls = []

    def sample_real():
        c = torch.eye(3)[torch.randint(3, (8,))]  # (8, 3) one-hot condition
        calls.append(c.shape)
        return c[:, :2] * 2.0, c  # (x, cond)

    h = train_gan(
        G,
        D,
        sample_real,
        lambda n: torch.randn(n, 2),
        steps=3,
        opt_D=opt_D,
        opt_G=opt_G,
    )
    assert len(h) == 3 and len(calls) == 3
    assert CondMLP([2, 4, 1])(torch.zeros(5, 2)).shape == (5, 1)  # no condition


def test_train_gan_is_reproducible_on_cpu():
    runs = []
    for _ in range(2):
        G, D, opt_D, opt_G, sample_real, sample_z = _ring_setup("cpu", seed=3)
        h = train_gan(G, D, sample_real, sample_z, steps=4, opt_D=opt_D, opt_G=opt_G)
        runs.append(h["loss_D"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_train_gan_validation():
    G, D, opt_D, opt_G, sample_real, sample_z = _ring_setup("cpu")
    ok = dict(steps=2, opt_D=opt_D, opt_G=opt_G)
    bad = [
        ({"steps": 0}, "steps"),
        ({"d_steps": -1}, "d_steps"),
        ({"log_every": 1.5}, "log_every"),
        ({"callback_every": 0}, "callback_every"),
        ({"loss": "hinge"}, "loss"),
        ({"g_loss": "minimax"}, "g_loss"),
        ({"gp_weight": float("nan")}, "gp_weight"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
        ({"loss": "wgan-gp", "label_smoothing": 0.1}, "label_smoothing"),
        ({"opt_G": opt_D}, "opt_G"),
        ({"opt_D": opt_G}, "opt_D"),
        ({"opt_D": opt_D, "opt_G": opt_D}, "opt_D and opt_G"),
        ({"opt_D": "adam"}, "opt_D"),
        ({"callback": 3}, "callback"),
    ]
    for change, name in bad:
        with pytest.raises(ValueError, match=name):
            train_gan(G, D, sample_real, sample_z, **{**ok, **change})
    with pytest.raises(ValueError, match="G and D"):
        train_gan(G, "D", sample_real, sample_z, **ok)
    with pytest.raises(ValueError, match="sample_real and sample_z"):
        train_gan(G, D, None, sample_z, **ok)
    with pytest.raises(ValueError, match="sample_real"):
        train_gan(G, D, lambda: (1, 2, 3), sample_z, **ok)


def test_mlp():
    net = mlp([2, 8, 8, 1], activation=nn.LeakyReLU, out_activation=nn.Sigmoid)
    assert [type(m).__name__ for m in net] == [
        "Linear",
        "LeakyReLU",
        "Linear",
        "LeakyReLU",
        "Linear",
        "Sigmoid",
    ]
    assert net(torch.zeros(3, 2)).shape == (3, 1)
    for sizes in ([2], [2, 0, 1], [2, 1.5]):
        with pytest.raises(ValueError, match="sizes"):
            mlp(sizes)


# --------------------------------------------------------------------------------- toy
def test_ring_and_samples():
    c = ring_centers(8, radius=2.0)
    assert c.shape == (8, 2)
    torch.testing.assert_close(c.norm(dim=1), torch.full((8,), 2.0))
    torch.testing.assert_close(c[2], torch.tensor([0.0, 2.0]), atol=1e-6, rtol=0)
    a = mixture_of_gaussians_ring(
        500, std=0.01, generator=torch.Generator().manual_seed(1)
    )
    b = mixture_of_gaussians_ring(
        500, std=0.01, generator=torch.Generator().manual_seed(1)
    )
    assert a.shape == (500, 2) and torch.equal(a, b)
    assert ((a.norm(dim=1) - 2.0).abs() < 0.1).all()
    assert mixture_of_gaussians_ring(3, device="cpu").device.type == "cpu"
    with pytest.raises(ValueError, match="modes"):
        ring_centers(0)
    with pytest.raises(ValueError, match="radius"):
        ring_centers(8, radius=-1.0)
    with pytest.raises(ValueError, match="std"):
        mixture_of_gaussians_ring(10, std=0)
    with pytest.raises(ValueError, match="n"):
        mixture_of_gaussians_ring(0)


def test_mode_coverage_by_hand():
    c = ring_centers(4, radius=1.0)  # (1,0), (0,1), (-1,0), (0,-1)
    # 6 points on mode 0, 3 on mode 1, 1 far from every mode
    x = torch.cat([c[0].repeat(6, 1), c[1].repeat(3, 1), torch.tensor([[0.0, 0.0]])])
    mc = mode_coverage(x, c, std=0.05)
    assert mc.modes_captured == 2 and mc.high_quality == pytest.approx(0.9)
    np.testing.assert_array_equal(mc.counts, [6, 3, 0, 0])
    assert mode_coverage(x, c, std=0.05, min_share=0.5).modes_captured == 1
    assert str(mc) == "modes captured: 2 of 4, high-quality samples: 90%"
    with pytest.raises(ValueError, match="samples and centers"):
        mode_coverage(torch.zeros(3, 3), c, std=0.1)
    with pytest.raises(ValueError, match="empty"):
        mode_coverage(torch.zeros(0, 2), c, std=0.1)
    with pytest.raises(ValueError, match="min_share"):
        mode_coverage(x, c, std=0.1, min_share=0)
    with pytest.raises(ValueError, match="n_std"):
        mode_coverage(x, c, std=0.1, n_std=-1)
    with pytest.raises(ValueError, match="std"):
        mode_coverage(x, c, std=True)

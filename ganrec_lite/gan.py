"""The GAN training loop: losses, one discriminator step, one generator step, the loop.

Introduced in Chapter 3.1 ("The GAN training loop"), where every piece is first written
inline; Chapter 2.1 uses it on a 2-D ring of Gaussians and the recommender chapters
(CFGAN, IRGAN) reuse it with a condition tensor.

Conventions:

- ``D`` returns *logits* (no sigmoid at the end); ``torch.sigmoid(D(x))`` is the
  probability that ``x`` is real. For WGAN-GP, ``D`` is the critic and its output is a
  score.
- A conditional model is called as ``G(z, c)`` and ``D(x, c)``; an unconditional one as
  ``G(z)`` and ``D(x)``.
- Diagnostics are returned as detached tensors on the models' device, so a training
  step never waits for the GPU; :func:`train_gan` moves them to the CPU once at the end.

The loop follows Goodfellow et al. (2014) with the non-saturating generator loss, k
discriminator steps per generator step, one-sided label smoothing (Salimans et al.
2016), separate learning rates (TTUR, Heusel et al. 2017) and the gradient penalty of
WGAN-GP (Gulrajani et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOSSES",
    "G_LOSSES",
    "mlp",
    "CondMLP",
    "discriminator_loss",
    "generator_loss",
    "wgan_critic_loss",
    "wgan_generator_loss",
    "gradient_penalty",
    "grad_norm",
    "update_D",
    "update_G",
    "History",
    "train_gan",
]

LOSSES = ("bce", "wgan-gp")
G_LOSSES = ("non_saturating", "saturating")
HISTORY_KEYS = ("loss_D", "loss_G", "D_x", "D_G_z", "grad_norm_D", "grad_norm_G", "gp")


# ----------------------------------------------------------------------------- models
def mlp(
    sizes: Sequence[int],
    *,
    activation: Callable[[], nn.Module] = nn.ReLU,
    out_activation: Callable[[], nn.Module] | None = None,
) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    ``activation()`` follows every hidden layer; ``out_activation()`` (if given) the
    last.
    ``mlp([2, 64, 64, 1])`` is a discriminator on 2-D points that returns logits.
    Introduced in Chapter 2.1.

    Raises:
        ValueError: ``sizes`` has fewer than two entries or a non-positive size.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"sizes must list at least an input and an output size, got {sizes}"
        )
    if any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
        for s in sizes
    ):
        raise ValueError(f"sizes must be positive integers, got {sizes}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(int(n_in), int(n_out)))
        if i < len(sizes) - 2:
            layers.append(activation())
    if out_activation is not None:
        layers.append(out_activation())
    return nn.Sequential(*layers)


class CondMLP(nn.Module):
    """An :func:`mlp` that reads ``x`` and a condition ``c`` side by side.

    ``CondMLP([d_x + d_c, 64, d_out])(x, c)`` computes ``mlp(cat([x, c], -1))``; without
    ``c`` it reads ``x`` alone (then ``sizes[0]`` must equal ``d_x``). This is the
    conditional G(z, c) / D(x, c) of conditional GANs and CFGAN. Introduced in
    Chapter 3.1.
    """

    def __init__(self, sizes: Sequence[int], **kwargs):
        super().__init__()
        self.net = mlp(sizes, **kwargs)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is not None:
            x = torch.cat([x, c.to(x.dtype)], dim=-1)  # (B, d_x + d_c)
        return self.net(x)


# ----------------------------------------------------------------------------- losses
def _check_smoothing(label_smoothing: float) -> float:
    if (
        not isinstance(label_smoothing, (int, float))
        or not 0.0 <= label_smoothing < 0.5
    ):
        raise ValueError(
            f"label_smoothing must be a float in [0, 0.5), got {label_smoothing!r}"
        )
    return float(label_smoothing)


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Binary cross-entropy of D on a real and a fake batch, from logits.

    ``-E[log D(x)] - E[log(1 - D(G(z)))]``, i.e. minus the value function V(D, G) of
    Goodfellow et al. (2014); it equals ``log 4`` when D outputs 1/2 everywhere. With
    one-sided label smoothing (Salimans et al. 2016) the *real* target is
    ``1 - label_smoothing`` instead of 1; the fake target stays 0. Introduced in
    Chapter 3.1.

    Raises:
        ValueError: ``label_smoothing`` is outside [0, 0.5).
    """
    ls = _check_smoothing(label_smoothing)
    real_target = torch.full_like(real_logits, 1.0 - ls)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, real_target)
    loss_fake = F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )
    return loss_real + loss_fake


def generator_loss(
    fake_logits: torch.Tensor, kind: str = "non_saturating"
) -> torch.Tensor:
    """The generator's loss on D's logits for a fake batch.

    ``"non_saturating"`` (the default): ``-E[log D(G(z))]``; its gradient stays large
    when D confidently rejects the fakes. ``"saturating"``: ``E[log(1 - D(G(z)))]``, the
    minimax loss of the original game, whose gradient vanishes as D(G(z)) -> 0
    (Chapter 4.1 shows why). Introduced in Chapter 3.1.

    Raises:
        ValueError: ``kind`` is not one of :data:`G_LOSSES`.
    """
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()  # -log sigmoid(l)
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l))
    raise ValueError(f"kind must be one of {G_LOSSES}, got {kind!r}")


def wgan_critic_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor
) -> torch.Tensor:
    """The WGAN critic's loss ``E[D(G(z))] - E[D(x)]`` (Arjovsky et al. 2017), without
    the penalty. Introduced in Chapter 3.1."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN generator's loss ``-E[D(G(z))]``. Introduced in Chapter 3.1."""
    return -fake_scores.mean()


def gradient_penalty(
    D: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *cond: torch.Tensor,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The WGAN-GP penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` (Gulrajani et al. 2017).

    ``x_hat = alpha * real + (1 - alpha) * fake`` with ``alpha ~ U(0, 1)`` drawn once
    per sample (or given, shape ``(B,)``); ``cond`` is passed on to ``D``. The result
    keeps its graph (``create_graph=True``) so the critic can be trained on it; multiply
    by the weight lambda (10 in the paper) and add it to the critic loss. Introduced in
    Chapter 3.1.

    Raises:
        ValueError: ``real`` and ``fake`` differ in shape, or ``alpha`` has the wrong
            shape.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    B = real.shape[0]
    if alpha is None:
        where = generator.device if generator is not None else real.device
        alpha = torch.rand(B, generator=generator, device=where)
    if alpha.shape != (B,):
        raise ValueError(f"alpha must have shape ({B},), got {tuple(alpha.shape)}")
    alpha = alpha.to(real.device, real.dtype).view(
        B, *([1] * (real.ndim - 1))
    )  # (B, 1, ..)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = D(x_hat, *cond)  # (B, 1) or (B,)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = grad.reshape(B, -1).norm(2, dim=1)  # (B,)
    return ((norms - 1.0) ** 2).mean()


def grad_norm(parameters) -> torch.Tensor:
    """The L2 norm of all gradients of ``parameters`` together, as a 0-d tensor (no
    sync). Parameters without a gradient are skipped; none at all gives 0."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads])
    )


# ------------------------------------------------------------------------ one step each
def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _gp_weight(gp_weight, loss: str) -> float:
    if gp_weight is None:
        return 10.0 if loss == "wgan-gp" else 0.0
    if isinstance(gp_weight, bool) or not isinstance(gp_weight, (int, float)):
        raise ValueError(
            f"gp_weight must be a finite number >= 0 or None, got {gp_weight!r}"
        )
    if not (math.isfinite(gp_weight) and gp_weight >= 0):
        raise ValueError(
            f"gp_weight must be a finite number >= 0 or None, got {gp_weight!r}"
        )
    return float(gp_weight)


def _call(model, x, cond):
    return model(x) if cond is None else model(x, cond)


def update_D(
    D: nn.Module,
    opt_D: torch.optim.Optimizer,
    x_real: torch.Tensor,
    x_fake: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    loss: str = "bce",
    gp_weight: float | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """One optimiser step of the discriminator (or critic) on a real and a fake batch.

    ``x_fake`` is detached here, so no gradient reaches G. With ``loss="bce"`` the loss
    is :func:`discriminator_loss`; with ``"wgan-gp"`` it is :func:`wgan_critic_loss`.
    Either gets ``gp_weight`` times :func:`gradient_penalty` added; ``gp_weight=None``
    means 10 for ``"wgan-gp"`` (the paper's lambda) and 0 (no penalty) for ``"bce"``;
    a positive weight with ``"bce"`` gives the non-saturating GAN with gradient penalty
    of Kurach et al. (2019), used in Chapter 2.1. Introduced in Chapter 3.1.

    Returns:
        Detached 0-d tensors: ``loss_D``; ``D_x`` and ``D_G_z``, the mean of
        ``sigmoid(D(.))`` for BCE (the mean critic score for WGAN-GP); ``grad_norm_D``;
        ``gp`` (0 for BCE).

    Raises:
        ValueError: unknown ``loss``, bad ``label_smoothing`` or ``gp_weight``, or real
            and fake batches of different shapes.
    """
    _check_loss(loss)
    gp_weight = _gp_weight(gp_weight, loss)
    if x_real.shape != x_fake.shape:
        raise ValueError(
            f"x_real and x_fake must have the same shape, got {tuple(x_real.shape)} "
            f"and {tuple(x_fake.shape)}"
        )
    if loss == "wgan-gp" and label_smoothing:
        raise ValueError("label_smoothing applies to loss='bce' only, not 'wgan-gp'")
    x_fake = x_fake.detach()
    opt_D.zero_grad(set_to_none=True)
    real_out = _call(D, x_real, cond)  # (B, 1) logits or scores
    fake_out = _call(D, x_fake, cond)  # (B, 1)
    if loss == "bce":
        loss_D = discriminator_loss(real_out, fake_out, label_smoothing=label_smoothing)
        d_x, d_g_z = torch.sigmoid(real_out).mean(), torch.sigmoid(fake_out).mean()
    else:
        loss_D = wgan_critic_loss(real_out, fake_out)
        d_x, d_g_z = real_out.mean(), fake_out.mean()
    if gp_weight > 0:
        args = () if cond is None else (cond,)
        gp = gradient_penalty(D, x_real, x_fake, *args)
        loss_D = loss_D + gp_weight * gp
    else:
        gp = torch.zeros((), device=loss_D.device)
    loss_D.backward()
    norm = grad_norm(D.parameters())
    opt_D.step()
    return {
        "loss_D": loss_D.detach(),
        "D_x": d_x.detach(),
        "D_G_z": d_g_z.detach(),
        "grad_norm_D": norm.to(loss_D.device),
        "gp": gp.detach(),
    }


def update_G(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    z: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    loss: str = "bce",
    g_loss: str = "non_saturating",
) -> dict[str, torch.Tensor]:
    """One optimiser step of the generator through a fixed discriminator.

    D's parameters are frozen during the step (their ``requires_grad`` is restored
    afterwards), so G's backward pass leaves no gradient in D. With ``loss="bce"`` the
    loss is :func:`generator_loss` of kind ``g_loss``; with ``"wgan-gp"`` it is
    :func:`wgan_generator_loss` (``g_loss`` is then ignored). Introduced in Chapter 3.1.

    Returns:
        Detached 0-d tensors ``loss_G`` and ``grad_norm_G``.

    Raises:
        ValueError: unknown ``loss`` or ``g_loss``.
    """
    _check_loss(loss)
    if g_loss not in G_LOSSES:
        raise ValueError(f"g_loss must be one of {G_LOSSES}, got {g_loss!r}")
    flags = [p.requires_grad for p in D.parameters()]
    for p in D.parameters():
        p.requires_grad_(False)
    try:
        opt_G.zero_grad(set_to_none=True)
        fake_out = _call(D, _call(G, z, cond), cond)  # (B, 1)
        if loss == "bce":
            loss_G = generator_loss(fake_out, g_loss)
        else:
            loss_G = wgan_generator_loss(fake_out)
        loss_G.backward()
    finally:
        for p, flag in zip(D.parameters(), flags, strict=False):
            p.requires_grad_(flag)
    norm = grad_norm(G.parameters())
    opt_G.step()
    return {"loss_G": loss_G.detach(), "grad_norm_G": norm.to(loss_G.device)}


# ----------------------------------------------------------------------------- the loop
@dataclass
class History:
    """Per-step diagnostics of :func:`train_gan`, as numpy arrays on the CPU.

    ``step`` holds the generator step (1-based) of each row; ``values`` maps each of
    ``loss_D, loss_G, D_x, D_G_z, grad_norm_D, grad_norm_G, gp`` to an array of the same
    length (D's entries come from the last of the k discriminator steps; ``gp`` only
    when a gradient penalty was used). ``h["loss_D"]``
    reads one; ``h.to_frame()`` gives a pandas DataFrame. Introduced in Chapter 3.1.
    """

    step: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)
    loss: str = "bce"

    def __getitem__(self, key: str) -> np.ndarray:
        if key == "step":
            return self.step
        if key not in self.values:
            raise KeyError(f"{key!r} is not in the history; it has {self.keys()}")
        return self.values[key]

    def keys(self) -> list[str]:
        return ["step", *self.values]

    def __len__(self) -> int:
        return len(self.step)

    def to_frame(self):
        """The history as a pandas DataFrame with a ``step`` column."""
        import pandas as pd

        return pd.DataFrame({"step": self.step, **self.values})


def _split(batch):
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(
        "sample_real() must return a tensor x or a pair (x, cond), "
        f"got {type(batch).__name__}"
    )


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_optimiser(name: str, opt, model: nn.Module, model_name: str) -> None:
    if not isinstance(opt, torch.optim.Optimizer):
        raise ValueError(
            f"{name} must be a torch.optim.Optimizer, got {type(opt).__name__}"
        )
    own = {id(p) for p in model.parameters()}
    params = [p for group in opt.param_groups for p in group["params"]]
    if not params or any(id(p) not in own for p in params):
        raise ValueError(
            f"{name} must optimise the parameters of {model_name} (and only those)"
        )


def train_gan(
    G: nn.Module,
    D: nn.Module,
    sample_real: Callable[[], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    sample_z: Callable[[int], torch.Tensor],
    *,
    steps: int,
    opt_D: torch.optim.Optimizer,
    opt_G: torch.optim.Optimizer,
    d_steps: int = 1,
    loss: str = "bce",
    g_loss: str = "non_saturating",
    gp_weight: float | None = None,
    label_smoothing: float = 0.0,
    log_every: int = 1,
    callback: Callable[[int, nn.Module, nn.Module], None] | None = None,
    callback_every: int | None = None,
    show_progress: bool = False,
) -> History:
    """Train a GAN for ``steps`` generator steps, each after ``d_steps`` D steps.

    Args:
        G, D: the generator and the discriminator (logits) or critic. The device is
            taken from G's parameters; batches are moved there.
        sample_real: called with no argument, returns a real batch ``x`` of shape
            ``(B, ...)`` or a pair ``(x, c)`` whose condition ``c`` is passed to both
            models: ``G(z, c)`` and ``D(x, c)``.
        sample_z: ``sample_z(B)`` returns noise ``z`` of shape ``(B, d_z)``.
        steps: number of generator steps.
        opt_D, opt_G: separate optimisers, so each may have its own learning rate
            (TTUR).
        d_steps: k, discriminator steps per generator step (fresh batches each).
        loss: ``"bce"`` (Goodfellow et al. 2014) or ``"wgan-gp"``.
        g_loss: ``"non_saturating"`` or ``"saturating"`` (BCE only).
        gp_weight: lambda of the gradient penalty; ``None``: 10 for ``"wgan-gp"``,
            0 (off) for ``"bce"`` (see :func:`update_D`).
        label_smoothing: one-sided smoothing of the real target (BCE only).
        log_every: record diagnostics every this many generator steps.
        callback: ``callback(step, G, D)``, called at step 0 (before training) and
            every ``callback_every`` steps, e.g. to snapshot G(z) on fixed noise.
        callback_every: defaults to ``log_every``.
        show_progress: show a progress bar (silenced by ``TQDM_DISABLE=1``).

    Returns:
        A :class:`History`. Diagnostics stay on the device until the end: the loop does
        not synchronise with the GPU at every step. Introduced in Chapter 3.1.

    Raises:
        ValueError: a bad argument; the message names it.
    """
    steps = _check_positive_int("steps", steps)
    d_steps = _check_positive_int("d_steps", d_steps)
    log_every = _check_positive_int("log_every", log_every)
    if callback_every is not None:
        callback_every = _check_positive_int("callback_every", callback_every)
    _check_loss(loss)
    if g_loss not in G_LOSSES:
        raise ValueError(f"g_loss must be one of {G_LOSSES}, got {g_loss!r}")
    gp_weight = _gp_weight(gp_weight, loss)
    _check_smoothing(label_smoothing)
    if loss == "wgan-gp" and label_smoothing:
        raise ValueError("label_smoothing applies to loss='bce' only, not 'wgan-gp'")
    if not isinstance(G, nn.Module) or not isinstance(D, nn.Module):
        raise ValueError("G and D must be torch.nn.Module instances")
    if opt_D is opt_G:
        raise ValueError("opt_D and opt_G must be two optimisers, one per model")
    _check_optimiser("opt_D", opt_D, D, "D")
    _check_optimiser("opt_G", opt_G, G, "G")
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable or None")
    if not callable(sample_real) or not callable(sample_z):
        raise ValueError("sample_real and sample_z must be callables")
    every = callback_every or log_every

    device = next(G.parameters()).device
    n_rows = steps // log_every
    buf = torch.zeros(n_rows, len(HISTORY_KEYS), device=device)  # (rows, keys)
    G.train()
    D.train()
    if callback is not None:
        callback(0, G, D)
        G.train()
        D.train()

    from .utils import progress

    bar = {} if show_progress else {"disable": True}
    for step in progress(range(1, steps + 1), **bar):
        for _ in range(d_steps):
            x, c = _split(sample_real())
            x = x.to(device)
            c = None if c is None else c.to(device)
            z = sample_z(x.shape[0]).to(device)  # (B, d_z)
            with torch.no_grad():
                x_fake = _call(G, z, c)  # (B, ...)
            d_stats = update_D(
                D,
                opt_D,
                x,
                x_fake,
                c,
                loss=loss,
                gp_weight=gp_weight,
                label_smoothing=label_smoothing,
            )
        z = sample_z(x.shape[0]).to(device)
        g_stats = update_G(G, D, opt_G, z, c, loss=loss, g_loss=g_loss)
        if step % log_every == 0:
            stats = {**d_stats, **g_stats}
            buf[step // log_every - 1] = torch.stack(
                [stats[k].float() for k in HISTORY_KEYS]
            )
        if callback is not None and step % every == 0:
            callback(step, G, D)
            G.train()
            D.train()

    rows = buf.cpu().numpy()  # the one device-to-host copy
    values = {k: rows[:, j] for j, k in enumerate(HISTORY_KEYS)}
    if gp_weight == 0:
        values.pop("gp")
    return History(step=np.arange(1, n_rows + 1) * log_every, values=values, loss=loss)

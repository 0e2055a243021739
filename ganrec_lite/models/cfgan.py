"""CFGAN (Chae et al. 2018): a vector-wise GAN for collaborative filtering.

The generator ``G`` reads a purchase vector ``c`` (the condition; no noise ``z``: the
paper's released code says "we do not use the random noise z") and outputs a
real-valued vector ``r_hat`` of the same length. Before the discriminator sees it,
``r_hat`` is multiplied by the mask ``e`` (1 on purchased entries), so G is judged
only on what was bought: ``D(e * r_hat, c)`` against ``D(c, c)``. Alone, this lets G
output 1 everywhere; two negative-sampling schemes fix it, drawn afresh every epoch
from each vector's *non-purchased* entries:

- zero-reconstruction (ZR): a fraction ``zr_ratio`` of them gets the penalty
  ``zr_coef * sum_j r_hat_j^2`` (pushed towards 0);
- partial masking (PM): a fraction ``pm_ratio`` of them is set to 1 in ``e``, so D
  sees G's value there and the real vector has 0 (G must learn to output 0).

The scores are ``G(c)`` for every vector. ``mode="item"`` (the released code's
setting for ML-100K, "itemBased") makes the vectors the *items'* columns of the
user-item matrix (length n_users) and transposes the output; ``mode="user"`` is the
user-oriented CFGAN as the paper's Section 3 describes it.

Introduced in Chapter 5.3.

Hyper-parameters for ML-100K (:data:`HPARAMS`) are those of the authors' released
code (Bigdasgit/CFGAN, ``parameters.py``, benchmark "ML100K"): item-based; G one
hidden layer of 400 sigmoid units and a linear output; D one hidden layer of 125
sigmoid units; Adam with lr 1e-4 for both; batch 32 (G) and 64 (D); 4 G passes and
2 D passes over the vectors per epoch; L2 0.001 on G (``tf.nn.l2_loss``, i.e. half the
squared norm, which is Adam's ``weight_decay``), 0 on D; scheme ZP (ZR and PM) with
S_zr = S_pm = 70% and ZR coefficient alpha = 0.03; 750-1000 G passes ("quite sensitive
to this value", the code draws one at random) - we use 800, i.e. 200 epochs of 4 G
passes. Weights are Glorot-uniform, biases U(-0.01, 0.01), as in the released code.
"""

from __future__ import annotations

import torch
from torch import nn

from ..gan import CondMLP, discriminator_loss, generator_loss, mlp
from ..metrics import evaluate
from ..train import History, train_epochs
from ._common import as_csr, check_known, non_negative, positive_int, resolve_device

__all__ = ["HPARAMS", "MODES", "sample_negatives", "CFGAN", "fit"]

MODES = ("item", "user")

# One place for the hyper-parameters (bench reads these); sources in the docstring.
HPARAMS = {
    "mode": "item",  # released code, ML100K: 'itemBased'
    "hidden_G": 400,  # hiddenDim_G
    "hidden_D": 125,  # hiddenDim_D
    "lr_G": 1e-4,
    "lr_D": 1e-4,
    "reg_G": 1e-3,  # L2 on G (half squared norm)
    "reg_D": 0.0,
    "batch_G": 32,
    "batch_D": 64,
    "step_G": 4,  # G passes per epoch
    "step_D": 2,  # D passes per epoch
    "epochs": 200,  # 800 G passes / step_G (released grid 750-1000)
    "zr_ratio": 0.7,  # S_zr: share of non-purchased entries sampled for ZR
    "pm_ratio": 0.7,  # S_pm: share sampled for PM
    "zr_coef": 0.03,  # alpha
    "gan": True,  # False: reconstruction loss instead of D (ablation)
    "zr": True,
    "pm": True,
}


def sample_negatives(
    X: torch.Tensor, ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A boolean mask drawing ``floor(ratio * n0)`` of each row's zeros, uniformly.

    Args:
        X: (N, M) 0/1 tensor of purchases; ``n0`` is the number of zeros of a row.
        ratio: in [0, 1].

    Returns:
        (N, M) boolean mask, True only where ``X`` is 0 (never on a purchase).
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio!r}")
    zero = X == 0  # (N, M)
    k = (zero.sum(1, keepdim=True) * ratio).floor().long()  # (N, 1) draws per row
    keys = torch.rand(X.shape, generator=generator, device=X.device)  # (N, M)
    keys = keys.masked_fill(~zero, 2.0)  # purchases sort last, never drawn
    order = keys.argsort(dim=1)  # (N, M)
    first_k = torch.arange(X.shape[1], device=X.device) < k  # (N, M) by sorted rank
    return torch.zeros_like(zero).scatter(1, order, first_k)


def _init(module: nn.Module) -> None:
    """Glorot-uniform weights and U(-0.01, 0.01) biases, as the released code."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.uniform_(m.bias, -0.01, 0.01)


class CFGAN(nn.Module):
    """G: ``c`` (B, M) -> ``r_hat`` (B, M); D: ``(x, c)`` (B, M) x 2 -> logit (B, 1)."""

    def __init__(self, n: int, hidden_G: int, hidden_D: int):
        super().__init__()
        self.G = mlp([n, hidden_G, n], activation=nn.Sigmoid)
        self.D = CondMLP([2 * n, hidden_D, 1], activation=nn.Sigmoid)
        _init(self)


def _check(h: dict) -> dict:
    check_known(h, HPARAMS, "CFGAN")
    for key in ("hidden_G", "hidden_D", "batch_G", "batch_D", "step_G", "epochs"):
        positive_int(key, h[key])
    if isinstance(h["step_D"], bool) or not isinstance(h["step_D"], int):
        raise ValueError(f"step_D must be an int >= 0, got {h['step_D']!r}")
    if h["step_D"] < 0:
        raise ValueError(f"step_D must be an int >= 0, got {h['step_D']!r}")
    for key in ("lr_G", "lr_D", "reg_G", "reg_D", "zr_coef"):
        non_negative(key, h[key])
    for key in ("zr_ratio", "pm_ratio"):
        if non_negative(key, h[key]) > 1:
            raise ValueError(f"{key} must be in [0, 1], got {h[key]!r}")
    if h["mode"] not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {h['mode']!r}")
    for key in ("gan", "zr", "pm"):
        if not isinstance(h[key], bool):
            raise ValueError(f"{key} must be True or False, got {h[key]!r}")
    return h


def fit(
    train, seed: int = 0, device=None, valid=None, *, return_model=False, **hparams
):
    """Train CFGAN and return its (n_users, n_items) scores ``G(c)``.

    Args:
        train: (n_users, n_items) boolean matrix of training positives.
        seed: seeds initialisation, shuffling and the ZR/PM draws.
        device: where to train (default :func:`ganrec_lite.get_device`).
        valid: optional (n_users, n_items) validation positives; when given, NDCG@20
            on them is checked every 5 epochs, training stops after 3 checks without
            improvement and the best epoch's weights are kept.
        return_model: also return the :class:`CFGAN` model and the :class:`History`.
        **hparams: overrides of :data:`HPARAMS`; ``gan=False``, ``zr=False`` and
            ``pm=False`` are the ablations.
    """
    h = _check({**HPARAMS, **hparams})
    Xs = as_csr(train, "train")
    if Xs.nnz == 0:
        raise ValueError("train has no positives")
    dev = resolve_device(device)
    torch.manual_seed(seed)  # initialisation
    gen = torch.Generator(device=dev).manual_seed(seed)  # shuffles and ZR/PM draws
    X = torch.as_tensor(Xs.toarray(), dtype=torch.float32, device=dev)  # (U, I)
    C = X.T.contiguous() if h["mode"] == "item" else X  # (N, M) condition vectors
    N, M = C.shape
    model = CFGAN(M, h["hidden_G"], h["hidden_D"]).to(dev)
    G, D = model.G, model.D
    fused = dev.type in ("cpu", "cuda")  # one kernel per step for all parameters
    opt_G = torch.optim.Adam(
        G.parameters(), lr=h["lr_G"], weight_decay=h["reg_G"], fused=fused
    )
    opt_D = torch.optim.Adam(
        D.parameters(), lr=h["lr_D"], weight_decay=h["reg_D"], fused=fused
    )
    use_D = h["gan"] and h["step_D"] > 0

    def draw(flag: bool, ratio: float) -> torch.Tensor:
        if not flag or ratio == 0:
            return torch.zeros_like(C, dtype=torch.bool)
        return sample_negatives(C, ratio, gen)  # (N, M)

    def d_pass(mask: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=dev)
        for idx in torch.randperm(N, generator=gen, device=dev).split(h["batch_D"]):
            c = C[idx]  # (B, M)
            with torch.no_grad():
                fake = G(c) * mask[idx]  # (B, M) e_u * r_hat
            logits = D(torch.cat([c, fake]), torch.cat([c, c]))  # (2B, 1) one call
            real_logits, fake_logits = logits.split(len(idx))  # (B, 1) each
            opt_D.zero_grad(set_to_none=True)
            loss = discriminator_loss(real_logits, fake_logits)
            loss.backward()
            opt_D.step()
            total += loss.detach() * len(idx)
        return total / N

    def g_pass(mask: torch.Tensor, zr_mask: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=dev)
        for idx in torch.randperm(N, generator=gen, device=dev).split(h["batch_G"]):
            c, e = C[idx], mask[idx]  # (B, M), (B, M)
            r_hat = G(c)  # (B, M)
            if h["gan"]:
                loss = generator_loss(D(r_hat * e, c))
            else:  # reconstruction of the masked vector: 1 on purchases, 0 on PM
                loss = ((r_hat - c).pow(2) * e).sum(1).mean()
            if h["zr"]:
                zr = (r_hat.pow(2) * zr_mask[idx]).sum(1).mean()
                loss = loss + h["zr_coef"] * zr
            opt_G.zero_grad(set_to_none=True)
            loss.backward()
            opt_G.step()
            total += loss.detach() * len(idx)
        return total / N

    def step(epoch: int) -> torch.Tensor:
        zr_mask = draw(h["zr"], h["zr_ratio"]).float()  # (N, M) ZR samples
        pm = draw(h["pm"], h["pm_ratio"])  # (N, M) PM samples, never purchases
        mask = ((C > 0) | pm).float()  # (N, M) e_u with PM entries unmasked
        if use_D:
            D.requires_grad_(True)
            for _ in range(h["step_D"]):
                d_pass(mask)
            D.requires_grad_(False)  # G's steps leave no gradient in D
        for _ in range(h["step_G"]):
            loss_G = g_pass(mask, zr_mask)
        return loss_G

    @torch.no_grad()
    def full_scores() -> torch.Tensor:
        out = G(C)  # (N, M)
        return out.T.contiguous() if h["mode"] == "item" else out  # (U, I)

    V = None if valid is None else as_csr(valid, "valid")
    if V is not None and V.shape != Xs.shape:
        raise ValueError(
            f"valid has shape {V.shape}, train {Xs.shape}; they must match"
        )

    def validate() -> float:  # NDCG@20 on the validation positives
        return evaluate(full_scores(), Xs, V, ks=(20,))["ndcg@20"]

    # All of the caller's threads (unlike BPR): G's (n x 400) layers are big enough
    # for two cores to pay; on an idle 2-core CPU 2 threads train twice as fast as
    # 1, with identical results.
    hist: History = train_epochs(
        step, h["epochs"], validate=None if V is None else validate, model=model
    )
    D.requires_grad_(True)
    scores = full_scores()  # (U, I)
    return (scores, model, hist) if return_model else scores

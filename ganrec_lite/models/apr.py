"""APR: adversarial personalised ranking, BPR-MF trained against its own worst noise.

He et al. (2018) perturb the embeddings of a BPR-MF model in the direction that hurts
the BPR loss most, at first order (the fast gradient method of Goodfellow et al.
2015), and train the model to rank well *also* under that perturbation:

    Delta_adv = eps * Gamma / ||Gamma||,  Gamma = d L_BPR(Theta + Delta) / d Delta at 0
    L_APR(Theta) = L_BPR(Theta) + lambda * L_BPR(Theta + Delta_adv)

``Delta`` lives on the user and item embeddings ``P``, ``Q`` (not the item bias).
As in the paper's code, ``Gamma / ||Gamma||`` is normalised *per embedding row*, so
every user and item of the batch moves by exactly ``eps`` (rows outside the batch have
zero gradient and do not move). ``Delta_adv`` is computed per batch with one autograd
call on the batch's BPR loss and treated as a constant in the update.

Training follows the paper: pre-train BPR-MF (:func:`ganrec_lite.models.bpr.fit`,
its model, sampler and tuned hyper-parameters), then continue with the APR loss.

:func:`adversarial_robustness` attacks a trained MF with the same fast-gradient
perturbation (computed on the BPR loss over all training positives) and reports
NDCG@20 before and after, so BPR and APR can be compared (the paper's Figure 2).

Introduced in Chapter 5.5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics import evaluate
from ..train import History, train_epochs
from . import bpr
from ._common import as_csr, check_known, non_negative, positive_int, resolve_device

__all__ = [
    "HPARAMS",
    "SPLIT_HPARAMS",
    "fgsm_deltas",
    "apr_loss",
    "adversarial_robustness",
    "fit",
]

# One place for the hyper-parameters. eps = 0.5 and reg_adv (lambda) = 1 are the
# values of He et al. (2018) for APR on MF (their Sec. 5; the released code's
# defaults, demo.sh and train.sh: --eps 0.5 --reg_adv 1). The paper pre-trains
# MF-BPR and then trains APR from it (train.sh: 1000 BPR epochs, then 1000 APR
# epochs, Adagrad lr 0.05); here BPR is pre-trained with Chapter 5.2's tuned setting
# (Adam lr 1e-3, reg 1e-2, dim 64, its best validation epoch) and APR continues with
# the same optimiser settings for ``epochs`` more epochs.
HPARAMS = {
    **{k: v for k, v in bpr.HPARAMS.items() if k != "epochs"},
    "pretrain_epochs": bpr.HPARAMS["epochs"],  # BPR epochs before APR (5.2's best)
    # APR epochs after pre-training: best validation NDCG@20 (10% hold-out of train,
    # seed 0, checked every 5 epochs) at epoch 10 on both splits: cfgan-ml100k .2139
    # (5) / .2155 (10) / .2145 (15) / .2121 (20), BPR alone .2164; irgan-ml100k
    # .2005 / .2018 / .1997 / .1993, BPR alone .2008.
    "epochs": 10,
    "eps": 0.5,  # perturbation size per embedding row (paper: 0.5)
    "reg_adv": 1.0,  # lambda, weight of the adversarial BPR loss (paper: 1)
}
SPLIT_HPARAMS = {
    "irgan-ml100k": {"pretrain_epochs": bpr.SPLIT_HPARAMS["irgan-ml100k"]["epochs"]},
}


def _check(h: dict) -> dict:
    check_known(h, HPARAMS, "APR")
    for key in ("dim", "batch_size", "dns_k", "pretrain_epochs", "epochs"):
        positive_int(key, h[key])
    for key in ("lr", "reg", "init_std", "eps", "reg_adv"):
        non_negative(key, h[key])
    if h["negatives"] not in bpr.NEGATIVES:
        raise ValueError(
            f"negatives must be one of {bpr.NEGATIVES}, got {h['negatives']!r}"
        )
    return h


def _scores(model: bpr.MF, u, i, dP=None, dQ=None) -> torch.Tensor:
    """``x_ui`` for pairs (B,), with the embeddings optionally moved by dP, dQ."""
    p, q = model.P[u], model.Q[i]  # (B, d), (B, d)
    if dP is not None:
        p, q = p + dP[u], q + dQ[i]
    return (p * q).sum(-1) + model.b[i]  # (B,)


def fgsm_deltas(model: bpr.MF, u, i, j, eps: float):
    """The fast-gradient perturbation of ``P`` and ``Q`` for BPR triples (u, i, j).

    Returns ``(dP, dQ)`` of the shapes of ``P`` (U, d) and ``Q`` (I, d): every row the
    triples touch has norm ``eps`` and points along the gradient of the BPR loss;
    the other rows are zero. Detached: a constant for the update.
    """
    eps = non_negative("eps", eps)
    loss = bpr.bpr_loss(_scores(model, u, i), _scores(model, u, j))
    gP, gQ = torch.autograd.grad(loss, [model.P, model.Q])  # (U, d), (I, d)
    # F.normalize leaves all-zero rows (untouched users / items) at zero
    return eps * F.normalize(gP, dim=1), eps * F.normalize(gQ, dim=1)


def apr_loss(model: bpr.MF, u, i, j, eps: float, reg_adv: float):
    """``(L_BPR(Theta), L_BPR(Theta + Delta_adv))`` for one batch of triples."""
    dP, dQ = fgsm_deltas(model, u, i, j, eps)
    clean = bpr.bpr_loss(_scores(model, u, i), _scores(model, u, j))
    if reg_adv == 0:
        return clean, torch.zeros_like(clean)
    adv = bpr.bpr_loss(_scores(model, u, i, dP, dQ), _scores(model, u, j, dP, dQ))
    return clean, adv


def fit(
    train, seed: int = 0, device=None, valid=None, *, return_model=False, **hparams
):
    """Pre-train BPR-MF, then train it with the APR loss; return the scores.

    Args:
        train: (n_users, n_items) boolean matrix of training positives.
        seed: seeds initialisation, shuffling and negative sampling.
        device: where to train (default :func:`ganrec_lite.get_device`).
        valid: optional validation positives; used for early stopping in both
            phases (as :func:`ganrec_lite.models.bpr.fit`).
        return_model: also return the :class:`~ganrec_lite.models.bpr.MF` model and
            the APR phase's :class:`~ganrec_lite.train.History`.
        **hparams: overrides of :data:`HPARAMS`.
    """
    h = _check({**HPARAMS, **hparams})
    X = as_csr(train, "train")
    if X.nnz == 0:
        raise ValueError("train has no positives")
    dev = resolve_device(device)
    bpr_h = {k: v for k, v in h.items() if k in bpr.HPARAMS}
    bpr_h["epochs"] = h["pretrain_epochs"]
    _, model, _ = bpr.fit(X, seed, dev, valid, return_model=True, **bpr_h)

    gen = torch.Generator(device=dev).manual_seed(seed + 1)  # APR phase's draws
    opt = torch.optim.Adam(model.parameters(), lr=h["lr"])
    sampler = bpr.NegativeSampler(X, dev)
    pos_u, pos_i = bpr.positive_pairs(X, dev)  # (nnz,), (nnz,)
    B, k = h["batch_size"], (h["dns_k"] if h["negatives"] == "dns" else None)

    def step(epoch: int) -> torch.Tensor:
        total = torch.zeros((), device=dev)
        for u, i in bpr.shuffled_batches(pos_u, pos_i, B, gen):  # (B,), (B,)
            j = bpr.draw_negatives(model, sampler, u, k, gen)  # (B,)
            clean, adv = apr_loss(model, u, i, j, h["eps"], h["reg_adv"])
            reg = bpr.l2_penalty(model, u, i, j).mean()
            opt.zero_grad(set_to_none=True)
            (clean + h["reg_adv"] * adv + h["reg"] * reg).backward()
            opt.step()
            total += (clean + h["reg_adv"] * adv).detach() * len(u)
        return total / len(pos_u)

    V = None if valid is None else as_csr(valid, "valid")

    def validate() -> float:  # NDCG@20 on the validation positives
        return evaluate(model.full_scores(), X, V, ks=(20,))["ndcg@20"]

    with bpr._small_ops_threads(dev):
        hist: History = train_epochs(
            step, h["epochs"], validate=None if V is None else validate, model=model
        )
    scores = model.full_scores()  # (U, I)
    return (scores, model, hist) if return_model else scores


def adversarial_robustness(
    model: bpr.MF, train, test, eps, *, k: int = 20, seed: int = 0, kind="grad"
) -> dict:
    """NDCG@k of ``model`` before and after perturbing its embeddings by ``eps``.

    The attack is the fast-gradient perturbation of :func:`fgsm_deltas` computed on
    the BPR loss of *every* training positive with one uniform negative each (drawn
    with ``seed``): every user and item row moves by ``eps``. ``kind="random"``
    moves every row by ``eps`` in a random direction instead (the paper's control).
    The model is not changed.

    Args:
        model: a trained :class:`~ganrec_lite.models.bpr.MF` (e.g. from
            ``fit(..., return_model=True)`` of BPR or APR).
        train, test: the positives the model was trained on, and evaluated on.
        eps: a perturbation size >= 0, or a sequence of them.

    Returns:
        ``{"eps": [...], "before": ndcg, "after": [...], "drop": [...]}`` where
        ``drop`` is the relative loss ``1 - after / before`` for every eps.
    """
    if not isinstance(model, bpr.MF):
        raise ValueError(f"model must be a bpr.MF, got {type(model).__name__}")
    if kind not in ("grad", "random"):
        raise ValueError(f"kind must be 'grad' or 'random', got {kind!r}")
    positive_int("k", k)
    eps_list = [eps] if np.isscalar(eps) else list(eps)
    eps_list = [non_negative("eps", e) for e in eps_list]
    if not eps_list:
        raise ValueError("eps must name at least one perturbation size")
    X = as_csr(train, "train")
    if X.shape != (model.P.shape[0], model.Q.shape[0]):
        raise ValueError(
            f"train has shape {X.shape}, the model scores "
            f"{(model.P.shape[0], model.Q.shape[0])}; they must match"
        )
    dev = model.P.device
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    u, i = bpr.positive_pairs(X, dev)  # (nnz,), (nnz,)
    j = bpr.NegativeSampler(X, dev).sample(u, generator=gen)  # (nnz,)
    if kind == "grad":
        dP, dQ = fgsm_deltas(model, u, i, j, 1.0)  # unit rows, scaled below
    else:
        dP = F.normalize(torch.randn(model.P.shape, generator=gen, device=dev), dim=1)
        dQ = F.normalize(torch.randn(model.Q.shape, generator=gen, device=dev), dim=1)
    with torch.no_grad():
        before = evaluate(model.full_scores(), X, test, ks=(k,))[f"ndcg@{k}"]
        after = []
        for e in eps_list:
            S = (model.P + e * dP) @ (model.Q + e * dQ).T + model.b  # (U, I)
            after.append(evaluate(S, X, test, ks=(k,))[f"ndcg@{k}"])
    return {
        "eps": eps_list,
        "before": before,
        "after": after,
        "drop": [1.0 - a / before for a in after],
    }

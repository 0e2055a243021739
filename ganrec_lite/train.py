"""The epoch loop shared by the iterative recommenders, and validation hold-outs.

:func:`train_epochs` runs ``step(epoch)`` for a number of epochs, evaluates a
validation metric every few epochs, keeps the best weights and stops early when the
metric has not improved for ``patience`` evaluations. :func:`holdout` carves a
validation set from a training matrix (tuning never looks at test).

Introduced in Chapter 5.2 (BPR-MF); CFGAN, IRGAN and APR reuse it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .splits import random_split

__all__ = ["History", "train_epochs", "holdout"]


@dataclass
class History:
    """What :func:`train_epochs` did.

    Attributes:
        loss: mean training loss of every epoch run.
        evals: ``(epoch, metric)`` of every validation (epochs counted from 1).
        best_epoch: the epoch whose weights were kept (the last one without
            validation).
        stopped_early: whether patience ran out before ``n_epochs``.
    """

    loss: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def train_epochs(
    step: Callable[[int], torch.Tensor],
    n_epochs: int,
    *,
    validate: Callable[[], float] | None = None,
    model: torch.nn.Module | None = None,
    eval_every: int = 5,
    patience: int = 3,
) -> History:
    """Run ``step(epoch)`` for ``n_epochs`` epochs, with optional early stopping.

    Args:
        step: trains one epoch and returns its mean loss as a 0-d tensor (kept on the
            device; the loop converts all losses once at the end, so the hot path
            never waits for the device).
        n_epochs: the maximum number of epochs.
        validate: returns a validation metric, higher is better; called every
            ``eval_every`` epochs and after the last one. ``None``: no early stopping.
        model: whose ``state_dict`` is restored to the best validated epoch.
        eval_every, patience: validation period, and how many validations without
            improvement stop training.
    """
    if n_epochs < 1 or eval_every < 1 or patience < 1:
        raise ValueError(
            f"n_epochs, eval_every and patience must be >= 1, got {n_epochs}, "
            f"{eval_every}, {patience}"
        )
    if validate is not None and model is None:
        raise ValueError("early stopping needs the model whose weights to restore")
    hist = History()
    losses = []
    best, best_state, bad = -float("inf"), None, 0
    for epoch in range(1, n_epochs + 1):
        losses.append(step(epoch).detach())
        if validate is None:
            continue
        if epoch % eval_every and epoch != n_epochs:
            continue
        metric = float(validate())
        hist.evals.append((epoch, metric))
        if metric > best:
            best, bad, hist.best_epoch = metric, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= patience:
                hist.stopped_early = epoch < n_epochs
                break
    hist.loss = torch.stack(losses).cpu().tolist()
    if validate is None:
        hist.best_epoch = len(losses)
    elif best_state is not None:
        model.load_state_dict(best_state)
    return hist


def holdout(
    train: sp.spmatrix, ratio: float = 0.1, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split a training matrix into (train', valid) per user, at random.

    Each user's positives are shuffled with ``seed`` and ``round(ratio * n)`` of them
    go to validation (a user keeps at least one), as :func:`splits.random_split`.

    Returns:
        Two boolean CSR matrices of the input's shape.
    """
    X = sp.coo_matrix(train)
    df = pd.DataFrame({"user": X.row.astype(np.int64), "item": X.col.astype(np.int64)})
    s = random_split(
        df, test_ratio=ratio, seed=seed, n_users=X.shape[0], n_items=X.shape[1]
    )
    return s.matrix("train"), s.matrix("test")

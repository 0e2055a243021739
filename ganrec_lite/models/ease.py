"""EASE (Steck 2019): a linear item-item model with a closed-form solution.

The model predicts a user's row of the interaction matrix ``X`` (U, I) from the same
row, ``S = X B``, with an item-item matrix ``B`` (I, I) whose diagonal is forced to
zero (so an item cannot predict itself). Minimising ``||X - X B||_F^2 + lambda
||B||_F^2`` under ``diag(B) = 0`` gives, with ``P = (X^T X + lambda I)^{-1}``,

    B_ij = -P_ij / P_jj  (i != j),   B_jj = 0.

One (I, I) inverse in float64 is the whole training: about a second for ML-100K.

Introduced in Chapter 5.2 (baselines).

Tuning (``lambda_``), on a validation split carved from training (10% of each user's
train positives, seed 0), NDCG@20 on the validation positives, bench's
``--tune`` grid; test never seen. Grid: 50, 100, 200, 300, 500, 800, 1200.

- cfgan-ml100k: best 300-500 (NDCG@20 within 0.002 of each other); we keep 500.
- irgan-ml100k: best 200-300; we keep 300 (``SPLIT_HPARAMS``).
- Steck's paper tunes lambda on ML-20M / Netflix / MSD (200-1000); no value is
  published for ML-100K.
"""

from __future__ import annotations

import torch

from ._common import as_csr, non_negative, resolve_device

__all__ = ["HPARAMS", "SPLIT_HPARAMS", "ease_weights", "fit"]

# lambda_: L2 weight on B; tuned on a validation split of cfgan-ml100k (see above).
HPARAMS = {"lambda_": 500.0}
# per-split values (tuned the same way); bench merges them over HPARAMS
SPLIT_HPARAMS = {"irgan-ml100k": {"lambda_": 300.0}}


def ease_weights(X: torch.Tensor, lambda_: float) -> torch.Tensor:
    """The closed-form item-item matrix ``B`` (I, I) of EASE, in float64.

    Args:
        X: (U, I) dense 0/1 tensor (any float dtype, any device).
        lambda_: L2 regularisation, > 0 unless ``X^T X`` is invertible.
    """
    X = X.to(torch.float64)
    G = X.T @ X  # (I, I) Gram matrix: co-occurrence counts
    G.diagonal().add_(lambda_)  # X^T X + lambda I
    P = torch.linalg.inv(G)  # (I, I), symmetric positive definite when lambda > 0
    B = P / (-P.diagonal())  # (I, I): column j divided by -P_jj
    B.fill_diagonal_(0.0)  # the constraint diag(B) = 0
    return B


def fit(train, seed: int = 0, device=None, valid=None, *, lambda_: float = None):
    """Train EASE and return its (n_users, n_items) float32 scores ``X B``.

    Args:
        train: (n_users, n_items) boolean matrix of training positives.
        seed, valid: accepted for the common interface; EASE is deterministic and
            has no epochs to select.
        device: where to solve (float64 on that device).
        lambda_: default ``HPARAMS["lambda_"]``.
    """
    lam = non_negative("lambda_", HPARAMS["lambda_"] if lambda_ is None else lambda_)
    X = as_csr(train, "train")
    dev = resolve_device(device)
    Xt = torch.as_tensor(X.toarray(), dtype=torch.float64, device=dev)  # (U, I)
    if lam == 0.0 and bool((Xt.sum(0) == 0).any()):
        raise ValueError(
            "lambda_=0 needs every item to have a training positive (X^T X is "
            "singular otherwise); use lambda_ > 0"
        )
    B = ease_weights(Xt, lam)  # (I, I)
    return (Xt @ B).to(torch.float32)  # (U, I)

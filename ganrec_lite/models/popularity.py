"""Most-popular: every user gets the items with the most training positives.

Not personalised at all, and the first baseline any recommender must beat.
Introduced in Chapter 1.2 (inline) and Chapter 5.2 (as a model with the common
``fit`` interface of :mod:`ganrec_lite.bench`).
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import as_csr, resolve_device

__all__ = ["HPARAMS", "item_counts", "fit"]

HPARAMS: dict = {}  # nothing to tune


def item_counts(train) -> np.ndarray:
    """(n_items,) number of training positives of every item."""
    X = as_csr(train, "train")
    return np.asarray(X.sum(axis=0), dtype=np.float64).ravel()


def fit(train, seed: int = 0, device=None, valid=None) -> torch.Tensor:
    """Popularity scores: row ``u`` is the item counts, for every user.

    Args:
        train: (n_users, n_items) boolean matrix of training positives.
        seed, valid: accepted for the common interface; unused.
        device: where the scores live (default: :func:`ganrec_lite.get_device`).

    Returns:
        (n_users, n_items) float32 tensor; a broadcast view, so it costs one row.
    """
    X = as_csr(train, "train")
    dev = resolve_device(device)
    counts = torch.as_tensor(item_counts(X), dtype=torch.float32, device=dev)  # (I,)
    return counts.expand(X.shape[0], -1)  # (U, I), no copy

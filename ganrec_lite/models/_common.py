"""Input checks shared by the models of :mod:`ganrec_lite.models`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..utils import get_device


def as_csr(m, name: str = "train") -> sp.csr_matrix:
    """A boolean CSR copy of an interaction matrix given as scipy, numpy or torch."""
    if sp.issparse(m):
        X = sp.csr_matrix(m, dtype=bool)
    elif isinstance(m, np.ndarray):
        X = sp.csr_matrix(m != 0)
    elif isinstance(m, torch.Tensor):
        X = sp.csr_matrix(m.detach().cpu().to_dense().numpy() != 0)
    else:
        raise ValueError(
            f"{name} must be a scipy.sparse matrix, numpy array or torch tensor "
            f"(n_users, n_items), got {type(m).__name__}"
        )
    if X.ndim != 2 or min(X.shape) < 1:
        raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {X.shape}")
    X.eliminate_zeros()
    X.sort_indices()
    return X


def resolve_device(device) -> torch.device:
    """``None`` -> :func:`get_device`; a string or device -> ``torch.device``."""
    if device is None:
        return get_device(verbose=False)
    return torch.device(device)


def check_known(h: dict, known, name: str, context: str = "") -> None:
    """Refuse hyper-parameters that ``known`` does not list, naming them and the
    known ones (``name`` is the model's, ``context`` a suffix such as the variant)."""
    unknown = set(h) - set(known)
    if unknown:
        raise ValueError(
            f"unknown {name} hyper-parameter(s) {sorted(unknown)}{context}; "
            f"known: {sorted(known)}"
        )


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)

"""The models released with IRGAN, loaded safely.

IRGAN's repository ships its ML-100K generator (``gan_generator.pkl``) and the
dynamic-negative-sampling baseline it was pre-trained from (``model_dns_ori.pkl``) as
Python 2 pickles of ``[user_emb (943, 5), item_emb (1683, 5), item_bias (1683,)]``;
a score is ``user_emb @ item_emb.T + item_bias``. A pickle can run arbitrary code, so
:func:`load_irgan_model` uses an unpickler that admits numpy arrays and nothing else.

Introduced in Chapter 5.4 (IRGAN), where evaluating these models checks our metric
code against the paper's own models.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass

import numpy as np

from .registry import fetch

__all__ = ["IRGANModel", "load_irgan_model", "safe_load_arrays", "UnsafePickleError"]

# The only globals a pickle of plain numpy arrays needs.
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles store bytes this way
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle refers to an object other than numpy arrays."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: this loader admits numpy arrays "
                "only, and a pickle naming other objects can run arbitrary code"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a pickle with persistent ids")


def safe_load_arrays(path) -> object:
    """Unpickle ``path`` admitting only numpy arrays (and lists/tuples/dicts of them).

    Python 2 pickles are read with ``encoding="latin1"``, as numpy requires.

    Raises:
        UnsafePickleError: the pickle names any other global.
    """
    with open(path, "rb") as fh:
        return _ArraysOnly(fh, encoding="latin1").load()


@dataclass
class IRGANModel:
    """Matrix-factorisation scorer: ``user_emb @ item_emb.T + item_bias``."""

    user_emb: np.ndarray  # (n_users, d)
    item_emb: np.ndarray  # (n_items, d)
    item_bias: np.ndarray  # (n_items,)

    def scores(self, n_items: int | None = None) -> np.ndarray:
        """(n_users, n_items) scores; ``n_items`` truncates to a split's item count."""
        s = self.user_emb @ self.item_emb.T + self.item_bias  # (U, I)
        if n_items is not None:
            if not 0 < n_items <= s.shape[1]:
                raise ValueError(f"n_items must be in (0, {s.shape[1]}], got {n_items}")
            s = s[:, :n_items]
        return s


def load_irgan_model(name: str = "gan_generator") -> IRGANModel:
    """Load ``"gan_generator"`` or ``"model_dns_ori"`` from the irgan-ml100k files.

    Raises:
        ValueError: unknown name, or a file whose content is not three arrays of
            the documented shapes.
    """
    names = ("gan_generator", "model_dns_ori")
    if name not in names:
        raise ValueError(f"name must be one of {names}, got {name!r}")
    obj = safe_load_arrays(fetch("irgan-ml100k", f"{name}.pkl"))
    if not (isinstance(obj, (list, tuple)) and len(obj) == 3):
        raise ValueError(f"{name}.pkl: expected [user_emb, item_emb, item_bias]")
    u, i, b = (np.asarray(x, dtype=np.float32) for x in obj)
    if u.ndim != 2 or i.ndim != 2 or b.ndim != 1 or u.shape[1] != i.shape[1]:
        raise ValueError(
            f"{name}.pkl: shapes {u.shape}, {i.shape}, {b.shape} are not an MF model"
        )
    if b.shape[0] != i.shape[0]:
        raise ValueError(
            f"{name}.pkl: {i.shape[0]} item embeddings but {b.shape[0]} biases"
        )
    return IRGANModel(u, i, b)

"""Device choice, seeding and progress bars, used by every chapter.

Introduced in the preface ("Running the book on CPU or GPU"); every notebook's setup
cell calls :func:`seed_everything` and :func:`get_device`.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["get_device", "seed_everything", "progress"]

_ANNOUNCED: set[str] = set()


def get_device(prefer: str | None = None, *, verbose: bool = True) -> torch.device:
    """Return the torch device the book runs on.

    The choice, in order: ``prefer`` if given, else the ``GANREC_DEVICE`` environment
    variable, else CUDA when available, else CPU. Says once per process what it chose.

    Raises:
        ValueError: the requested device is not a valid torch device string, or asks
            for CUDA on a machine without it.
    """
    requested = prefer if prefer is not None else os.environ.get("GANREC_DEVICE", "")
    requested = requested.strip()
    if requested:
        try:
            device = torch.device(requested)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"GANREC_DEVICE / prefer={requested!r} is not a torch device; "
                "use 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {requested!r} was requested (GANREC_DEVICE or prefer) but "
                "torch sees no CUDA GPU here; unset GANREC_DEVICE to run on the CPU"
            )
        if device.type == "cuda" and device.index is not None:
            if device.index >= torch.cuda.device_count():
                raise ValueError(
                    f"device {requested!r} was requested but only "
                    f"{torch.cuda.device_count()} CUDA device(s) exist"
                )
        reason = "requested"
    elif torch.cuda.is_available():
        device, reason = torch.device("cuda"), "CUDA found"
    else:
        device, reason = torch.device("cpu"), "no CUDA found"
    key = str(device)
    if verbose and key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        extra = ""
        if device.type == "cuda":
            extra = f" ({torch.cuda.get_device_name(device)})"
        print(
            f"ganrec_lite: using device {device}{extra}: {reason}; "
            "set GANREC_DEVICE to override",
            file=sys.stderr,
        )
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and every CUDA device).

    Returns a CPU ``torch.Generator`` seeded with ``seed``, to hand to DataLoaders and
    samplers so that their randomness does not depend on what ran before.

    Raises:
        ValueError: ``seed`` is not a non-negative integer below 2**32.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _progress_disabled() -> bool:
    value = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return value not in ("", "0", "false", "no")


def progress(iterable: Iterable | None = None, **kwargs):
    """A ``tqdm.auto`` progress bar that ``TQDM_DISABLE=1`` silences (as in CI)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", _progress_disabled())
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)

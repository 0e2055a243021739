"""Self-checks for the exercises: they say whether an answer is right, and why not,
without printing the expected answer.

Used by the exercise cells of every notebook (see the course guide).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "ExerciseError",
    "NoAnswerYet",
    "check_shape",
    "check_close",
    "check_true",
    "passed",
]


class ExerciseError(AssertionError):
    """An exercise answer is wrong; the message says what to look at."""


class NoAnswerYet(NotImplementedError):
    """The exercise still holds its ``...`` stub (student copies raise this)."""


def _require(exercise: str, value) -> None:
    if value is Ellipsis or value is None:
        raise NoAnswerYet(f"{exercise}: no answer yet (the value is {value!r})")


def _arr(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def passed(exercise: str) -> None:
    """Print the one line every self-check prints on success."""
    print(f"{exercise}: correct.")


def check_shape(exercise: str, value, shape: tuple) -> None:
    """Check that ``value`` has ``shape`` (``None`` entries match any size)."""
    _require(exercise, value)
    got = (
        tuple(_arr(value).shape) if not hasattr(value, "shape") else tuple(value.shape)
    )
    ok = len(got) == len(shape) and all(
        s is None or s == g for s, g in zip(shape, got, strict=True)
    )
    if not ok:
        raise ExerciseError(f"{exercise}: expected shape {shape}, got {got}")


def check_close(
    exercise: str, value, expected, *, rtol: float = 1e-5, atol: float = 1e-8,
    hint: str = "",
) -> None:  # fmt: skip
    """Check ``value`` against ``expected`` numerically; print success.

    On failure the message gives the shape or the size of the error and the
    ``hint``, never the expected values themselves.
    """
    _require(exercise, value)
    v, e = _arr(value).astype(float), _arr(expected).astype(float)
    if v.shape != e.shape:
        raise ExerciseError(f"{exercise}: expected shape {e.shape}, got {v.shape}")
    if not np.allclose(v, e, rtol=rtol, atol=atol, equal_nan=False):
        worst = float(np.max(np.abs(v - e)))
        msg = f"{exercise}: not yet right (largest absolute error {worst:.3g})."
        raise ExerciseError(msg + (f" Hint: {hint}" if hint else ""))
    passed(exercise)


_UNSET = object()


def check_true(exercise: str, condition: bool, hint: str, *, answer=_UNSET) -> None:
    """Check a property of the answer; ``hint`` says what failed.

    Pass ``answer=`` (the student's value) when ``condition`` is computed from it:
    a stub still holding ``...`` then raises :class:`NoAnswerYet`, not a failure.
    """
    if answer is not _UNSET:
        _require(exercise, answer)
    _require(exercise, condition)
    if not bool(condition):
        raise ExerciseError(f"{exercise}: not yet right. {hint}")
    passed(exercise)

"""Toy data you can see: a ring of Gaussians in the plane and a mode-coverage measure.

Introduced in Chapter 2.1 ("GANs on a picture you can see"); the GAN chapters use the
ring to show mode collapse and its cure. The measure follows the 2-D experiments of
Metz et al. (2017) and Srivastava et al. (2017): a generated point is *high quality*
when it lies within ``n_std`` standard deviations of the nearest mode's centre, and a
mode is *captured* when enough high-quality points land on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ring_centers", "mixture_of_gaussians_ring", "ModeCoverage", "mode_coverage"]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The ``modes`` centres, evenly spaced on a circle of ``radius``: shape (modes, 2).

    Raises:
        ValueError: ``modes`` or ``radius`` is not positive.
    """
    modes = _positive_int("modes", modes)
    radius = _positive_float("radius", radius)
    angle = 2 * math.pi * torch.arange(modes, dtype=torch.float64) / modes  # (modes,)
    return (
        radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    ).float()  # (modes, 2)


def mixture_of_gaussians_ring(
    n: int,
    *,
    modes: int = 8,
    radius: float = 2.0,
    std: float = 0.05,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` points from an equal mixture of ``modes`` Gaussians on a ring, (n, 2).

    Each point picks a centre uniformly and adds isotropic noise of standard deviation
    ``std``. Sampling happens on the ``generator``'s device (the CPU by default), so the
    same seed gives the same points on every machine; the result is moved to ``device``.

    Raises:
        ValueError: a non-positive ``n``, ``modes``, ``radius`` or ``std``.
    """
    n = _positive_int("n", n)
    std = _positive_float("std", std)
    centers = ring_centers(modes, radius)  # (modes, 2)
    where = generator.device if generator is not None else torch.device("cpu")
    k = torch.randint(len(centers), (n,), generator=generator, device=where)  # (n,)
    noise = torch.randn(n, 2, generator=generator, device=where)  # (n, 2)
    x = centers.to(where)[k] + std * noise  # (n, 2)
    return x.to(device) if device is not None else x


@dataclass(frozen=True)
class ModeCoverage:
    """The result of :func:`mode_coverage`.

    Attributes:
        modes_captured: how many modes hold at least ``min_share`` of the samples as
            high-quality points.
        high_quality: the share of samples within ``n_std * std`` of their nearest mode.
        counts: high-quality samples per mode, shape (modes,).
    """

    modes_captured: int
    high_quality: float
    counts: np.ndarray

    def __str__(self) -> str:
        return (
            f"modes captured: {self.modes_captured} of {len(self.counts)}, "
            f"high-quality samples: {self.high_quality:.0%}"
        )


def mode_coverage(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float,
    *,
    n_std: float = 3.0,
    min_share: float | None = None,
) -> ModeCoverage:
    """How many modes a set of generated samples captures, and how well.

    A sample is high quality when its distance to the nearest centre is below
    ``n_std * std``. A mode is captured when its high-quality samples make up at least
    ``min_share`` of all samples (default: a tenth of its fair share, ``0.1 / modes``,
    i.e. 1.25% of the samples for 8 modes).

    Args:
        samples: generated points, shape (n, d).
        centers: the modes' centres, shape (modes, d).
        std: the standard deviation of each mode.

    Raises:
        ValueError: shapes that do not match, or a non-positive ``std`` / ``n_std``, or
            ``min_share`` outside (0, 1].
    """
    if samples.ndim != 2 or centers.ndim != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(
            "samples and centers must be (n, d) and (modes, d), got "
            f"{tuple(samples.shape)} and {tuple(centers.shape)}"
        )
    if len(samples) == 0:
        raise ValueError("samples is empty")
    std = _positive_float("std", std)
    n_std = _positive_float("n_std", n_std)
    modes = len(centers)
    if min_share is None:
        min_share = 0.1 / modes
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share!r}")
    x = samples.detach().float().cpu()
    c = centers.detach().float().cpu()
    dist = torch.cdist(x, c)  # (n, modes)
    nearest_dist, nearest = dist.min(dim=1)  # (n,), (n,)
    good = nearest_dist < n_std * std  # (n,)
    counts = torch.bincount(nearest[good], minlength=modes).numpy()  # (modes,)
    captured = int((counts >= min_share * len(x)).sum())
    return ModeCoverage(captured, float(good.float().mean()), counts)

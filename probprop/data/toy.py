"""Synthetic regression problems for demos and tests.

* :func:`make_toy_1d` - the cubic toy of the PBP paper (Hernández-Lobato & Adams, ICML 2015,
  Fig. 1): 20 inputs drawn uniformly in [-4, 4], ``y = x**3 + eps`` with ``eps ~ N(0, 9)``.
* :func:`make_linear_gaussian` - a linear-Gaussian problem with known weights.
* :func:`toy_grid` - a dense input grid for plotting predictive bands over the toy problem.

``random_state`` is anything :func:`numpy.random.default_rng` accepts (None, an int, a
SeedSequence) or an existing ``numpy.random.Generator`` / ``RandomState`` (used as is).
"""

from __future__ import annotations

import operator

import numpy as np

__all__ = ["make_toy_1d", "make_linear_gaussian", "toy_grid"]


def _rng(random_state):
    if isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state
    return np.random.default_rng(random_state)


def _positive_int(value, what: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")
    return value


def _check_noise(noise_std) -> float:
    noise_std = float(noise_std)
    if not (noise_std >= 0 and np.isfinite(noise_std)):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
    return noise_std


def make_toy_1d(
    n: int = 20,
    *,
    noise_std: float = 3.0,
    low: float = -4.0,
    high: float = 4.0,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray]:
    """The cubic toy problem: ``x ~ U(low, high)``, ``y = x**3 + N(0, noise_std**2)``.

    Returns:
        ``x`` of shape ``(n, 1)`` and ``y`` of shape ``(n,)``, both float64.
    """
    n = _positive_int(n, "n")
    noise_std = _check_noise(noise_std)
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    rng = _rng(random_state)
    x = rng.uniform(low, high, size=n)
    y = x**3 + noise_std * rng.standard_normal(n)
    return x.reshape(n, 1).astype(np.float64), y.astype(np.float64)


def make_linear_gaussian(
    n: int,
    d: int,
    *,
    noise_std: float = 0.5,
    bias: float = 0.0,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A linear-Gaussian regression problem with known weights.

    ``X ~ N(0, I_d)`` row-wise, ``w_true ~ N(0, I_d)``, ``y = X @ w_true + bias + eps`` with
    ``eps ~ N(0, noise_std**2)``.

    Returns:
        ``X`` ``(n, d)``, ``y`` ``(n,)`` and ``w_true`` ``(d,)``, all float64.
    """
    n = _positive_int(n, "n")
    d = _positive_int(d, "d")
    noise_std = _check_noise(noise_std)
    rng = _rng(random_state)
    w_true = rng.standard_normal(d)
    X = rng.standard_normal((n, d))
    y = X @ w_true + float(bias) + noise_std * rng.standard_normal(n)
    return X.astype(np.float64), y.astype(np.float64), w_true.astype(np.float64)


def toy_grid(low: float = -6.0, high: float = 6.0, n: int = 200) -> np.ndarray:
    """Evenly spaced inputs over ``[low, high]`` as a float64 column of shape ``(n, 1)``.

    The default range extends beyond the toy data's [-4, 4] so that plots show how the
    predictive uncertainty grows away from the data.
    """
    n = _positive_int(n, "n")
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    return np.linspace(low, high, n, dtype=np.float64).reshape(n, 1)

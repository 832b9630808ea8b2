"""Standardisation with training statistics: the one rule every part of probprop uses.

The estimators standardise inputs and targets before a learner sees them; the hyperparameter
searches standardise the fit part of a training split again with its own statistics; the
benchmark's adapters for other libraries standardise the way those libraries' protocols do.
All of them call :func:`standardisation`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["standardisation"]


def standardisation(a, constant_tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and population std (ddof=0) per column; (near-)constant columns get std 1.

    ``a`` has shape (n, d). A column is constant when its std is at most ``constant_tol`` times
    its mean's magnitude (naval has a column whose std is float rounding noise, about 1e-13);
    ``constant_tol=0`` keeps only an exactly zero std constant (the reference PBP code's rule,
    and that of pytagi's and TAGI's validation splits).
    """
    a = np.asarray(a, np.float64)
    mean = a.mean(axis=0)
    std = a.std(axis=0)
    constant = std <= constant_tol * np.abs(mean) + np.finfo(np.float64).tiny
    return mean, np.where(constant, 1.0, std)

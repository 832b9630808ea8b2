"""Metrics for predictive distributions that are not Gaussian: given as PIT values, quantiles or
intervals (recalibrated distributions, conformal intervals).

The Gaussian metrics of :mod:`probprop.metrics.scoring` and :mod:`probprop.metrics.calibration`
are the special cases of these for ``F = N(mean, std**2)``; the tests check that each general form
reproduces its Gaussian one.
"""

import numpy as np

from probprop.metrics._validation import as_1d_finite, check_positive_int

__all__ = [
    "coverage",
    "crps_from_quantiles",
    "mean_width",
    "pit_calibration_curve",
    "pit_miscalibration_area",
    "quantile_levels",
]


def pit_calibration_curve(pit_values, n_levels=99):
    """Expected vs observed proportions in central intervals, from PIT values ``F_i(y_i)``.

    ``y_i`` lies in the central interval of mass ``p`` of ``F_i`` exactly when
    ``|F_i(y_i) - 1/2| <= p / 2``; so this is :func:`probprop.metrics.calibration_curve` (same
    convention, same grid ``p_k = k / (n_levels + 1)``) for any continuous predictive CDF.
    """
    u = as_1d_finite(pit_values, "pit_values")
    if np.any((u < 0) | (u > 1)):
        raise ValueError("pit_values must lie in [0, 1] (they are values of a CDF)")
    n_levels = check_positive_int(n_levels, "n_levels")
    expected = np.arange(1, n_levels + 1) / (n_levels + 1)
    distance = np.sort(np.abs(u - 0.5))
    observed = np.searchsorted(distance, expected / 2.0, side="right") / distance.size
    return expected, observed


def curve_area(expected, observed) -> float:
    """Area between a calibration curve and the diagonal (the end points (0, 0) and (1, 1)
    added): the one formula of the miscalibration areas."""
    expected = np.concatenate(([0.0], expected, [1.0]))
    observed = np.concatenate(([0.0], observed, [1.0]))
    return float(np.trapezoid(np.abs(observed - expected), expected))


def pit_miscalibration_area(pit_values, n_levels=99):
    """Miscalibration area (in [0, 0.5]) from PIT values: :func:`probprop.metrics.miscalibration_area`
    for any continuous predictive CDF."""
    return curve_area(*pit_calibration_curve(pit_values, n_levels))


def quantile_levels(n_levels: int = 1000) -> np.ndarray:
    """The midpoint levels ``(k - 1/2) / K``, k = 1..K, at which :func:`crps_from_quantiles`
    expects its quantiles."""
    n_levels = check_positive_int(n_levels, "n_levels")
    return (np.arange(n_levels) + 0.5) / n_levels


def crps_from_quantiles(y_true, quantiles):
    """Mean CRPS from each forecast's quantiles at the levels :func:`quantile_levels` (lower is better).

    CRPS(F, y) = 2 ∫_0^1 ρ_τ(y - F^{-1}(τ)) dτ with the pinball loss ρ_τ(e) = e (τ - 1{e < 0})
    (Gneiting & Ranjan 2011, eq. 2), by the midpoint rule over ``K = quantiles.shape[1]`` levels.
    For a Gaussian forecast, K = 1000 is within 0.1 % of the closed form of
    :func:`probprop.metrics.crps` (tested); the error comes from the two outermost levels.

    Parameters
    ----------
    y_true : array_like, shape (n,)
    quantiles : array_like, shape (n, K)
        ``quantiles[i, k] = F_i^{-1}((k + 1/2) / K)``, non-decreasing along each row.
    """
    y = as_1d_finite(y_true, "y_true")
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] != y.size:
        raise ValueError(f"quantiles must have shape (n, K) = ({y.size}, K), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("quantiles contain NaN or infinite values")
    tau = quantile_levels(q.shape[1])
    error = y[:, None] - q
    pinball = error * (tau[None, :] - (error < 0))
    return float(np.mean(2.0 * pinball.mean(axis=1)))


def coverage(y_true, lower, upper):
    """Fraction of targets inside ``[lower, upper]`` (closed; infinite bounds allowed)."""
    y = as_1d_finite(y_true, "y_true")
    lower, upper = _bounds(lower, upper, y.size)
    return float(np.mean((lower <= y) & (y <= upper)))


def mean_width(lower, upper):
    """Mean width of the intervals ``[lower, upper]`` (``inf`` if any bound is infinite)."""
    lower, upper = _bounds(lower, upper, None)
    return float(np.mean(upper - lower))


def _bounds(lower, upper, n):
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    if lower.ndim != 1 or upper.shape != lower.shape or (n is not None and lower.size != n):
        raise ValueError(f"lower and upper must be 1-D of the same length{'' if n is None else f' {n}'}, "
                         f"got shapes {lower.shape} and {upper.shape}")
    if np.any(np.isnan(lower)) or np.any(np.isnan(upper)):
        raise ValueError("interval bounds contain NaN")
    if np.any(lower > upper):
        raise ValueError("interval bounds must satisfy lower <= upper")
    return lower, upper


"""Calibration diagnostics for Gaussian predictive distributions N(mean, std**2).

The calibration curve follows the uncertainty-toolbox "interval" convention
(``prop_type="interval"`` in ``uct.metrics_calibration``; Chung et al., 2021,
arXiv:2109.10254): for each expected proportion ``p`` the observed proportion is the
fraction of targets inside their *central* predictive interval of mass ``p``,

    observed(p) = mean( |y - mu| / sigma <= Phi^{-1}((1 + p) / 2) ),

equivalently ``mean(|PIT - 0.5| <= p / 2)``. A calibrated model gives observed ~= expected.

Two differences from uncertainty-toolbox's functions of the same names:

* Argument order. Every function here takes ``(y_true, mean, std)``; uncertainty-toolbox's
  take ``(y_pred, y_std, y_true)``. Positional calls must be reordered when porting code.
* Grid. The default here is ``n_levels=99`` levels ``p_k = k / (n_levels + 1)``, k = 1..99
  (0.01, 0.02, ..., 0.99; the trivial end points p = 0 and p = 1 left out), whereas
  uncertainty-toolbox's default ``num_bins=100`` means the 100 proportions
  ``np.linspace(0, 1, 100)`` (step 1/99, both end points included). The calibration errors
  therefore differ slightly from uncertainty-toolbox's at the defaults. Its interior levels
  are this module's grid with ``n_levels=98`` (p = k/99); its end points add an error of 0 at
  p = 1 and, at p = 0, the fraction ``f0`` of exactly zero residuals (0 for continuous data), so
  its mean absolute calibration error is ``(98 * mean_absolute_calibration_error(..., n_levels=98)
  + f0) / 100`` and its root mean squared one ``sqrt((98 * rms_calibration_error(..., n_levels=98)**2
  + f0**2) / 100)``.
"""

import numpy as np

from probprop.metrics._validation import check_gaussian_inputs, check_positive_int
from probprop.metrics.general import curve_area

__all__ = [
    "pit",
    "calibration_curve",
    "miscalibration_area",
    "rms_calibration_error",
    "mean_absolute_calibration_error",
]


def pit(y_true, mean, std):
    """Probability integral transform values ``F_i(y_i) = Phi((y_i - mu_i) / sigma_i)``.

    Dawid (1984); Gneiting, Balabdaoui & Raftery (2007). For calibrated forecasts the
    values are (close to) i.i.d. Uniform(0, 1).

    Returns
    -------
    ndarray, shape (n,)
    """
    from scipy.stats import norm  # on first use (scipy.stats takes about half a second to import)

    y, mu, sigma = check_gaussian_inputs(y_true, mean, std)
    return norm.cdf(y, loc=mu, scale=sigma)


def calibration_curve(y_true, mean, std, n_levels=99):
    """Expected vs observed proportions of targets inside central predictive intervals.

    Parameters
    ----------
    y_true, mean, std : array_like, shape (n,)
        Targets, predictive means, predictive standard deviations, in this order
        (uncertainty-toolbox's order is ``(y_pred, y_std, y_true)``).
    n_levels : int, default 99
        Number of interval masses, evenly spaced strictly inside (0, 1):
        ``p_k = k / (n_levels + 1)``, k = 1..n_levels (0.01, ..., 0.99 by default).
        The trivial end points (0, 0) and (1, 1) are left out. This is not
        uncertainty-toolbox's default grid, whose ``num_bins=100`` proportions are
        ``np.linspace(0, 1, 100)`` with both end points (see the module docstring).

    Returns
    -------
    expected_proportions, observed_proportions : ndarray, shape (n_levels,)

    Notes
    -----
    Uses the uncertainty-toolbox "interval" convention (central intervals, see the
    module docstring), not the "quantile" convention ``mean(PIT <= p)``; only the
    convention is shared, not the default grid or the argument order.
    """
    from scipy.stats import norm  # on first use (scipy.stats takes about half a second to import)

    y, mu, sigma = check_gaussian_inputs(y_true, mean, std)
    n_levels = check_positive_int(n_levels, "n_levels")
    expected = np.arange(1, n_levels + 1) / (n_levels + 1)
    half_widths = norm.ppf(0.5 + expected / 2.0)  # in units of sigma
    abs_z = np.sort(np.abs(y - mu) / sigma)
    observed = np.searchsorted(abs_z, half_widths, side="right") / abs_z.size
    return expected, observed


def miscalibration_area(y_true, mean, std, n_levels=99):
    """Area between the calibration curve and the diagonal, in [0, 0.5].

    Computed as the trapezoidal integral of ``|observed(p) - p|`` over ``p`` in [0, 1],
    with the exact end points (0, 0) and (1, 1) of a continuous forecast added to the
    curve of :func:`calibration_curve`. uncertainty-toolbox's ``miscalibration_area``
    measures the same area with exact polygons on its own grid (``np.linspace(0, 1, 100)``
    against the 99 levels 0.01, ..., 0.99 here by default); the two differ only through the
    grids and within segments where the curve crosses the diagonal, which is negligible at
    the default resolution. Arguments are ``(y_true, mean, std)``, not uncertainty-toolbox's
    ``(y_pred, y_std, y_true)``.
    """
    return curve_area(*calibration_curve(y_true, mean, std, n_levels))


def rms_calibration_error(y_true, mean, std, n_levels=99):
    """Root mean squared calibration error ``sqrt(mean_k (observed_k - expected_k)**2)``.

    Over the levels of :func:`calibration_curve` (by default the 99 levels 0.01, ..., 0.99).
    The same definition as uncertainty-toolbox's ``root_mean_squared_calibration_error``, but
    its default grid is the 100 proportions ``np.linspace(0, 1, 100)``, end points included,
    and its arguments are ``(y_pred, y_std, y_true)`` where these are ``(y_true, mean, std)``;
    see the module docstring for how to convert.
    """
    expected, observed = calibration_curve(y_true, mean, std, n_levels)
    return float(np.sqrt(np.mean(np.square(observed - expected))))


def mean_absolute_calibration_error(y_true, mean, std, n_levels=99):
    """Mean absolute calibration error ``mean_k |observed_k - expected_k|``.

    Over the levels of :func:`calibration_curve` (by default the 99 levels 0.01, ..., 0.99).
    The same definition as uncertainty-toolbox's ``mean_absolute_calibration_error``, but
    its default grid is the 100 proportions ``np.linspace(0, 1, 100)``, end points included,
    and its arguments are ``(y_pred, y_std, y_true)`` where these are ``(y_true, mean, std)``;
    see the module docstring for how to convert.
    """
    expected, observed = calibration_curve(y_true, mean, std, n_levels)
    return float(np.mean(np.abs(observed - expected)))

"""Scoring rules for Gaussian predictive distributions N(mean, std**2).

All functions take ``(y_true, mean, std)`` as 1-D arrays of equal length and return a
Python float averaged over the points. Point metrics (``rmse``, ``mae``) accept and
ignore ``std`` so that every metric can be called the same way.
"""

import numpy as np

from probprop.metrics._validation import check_gaussian_inputs, check_level

__all__ = [
    "rmse",
    "mae",
    "log_likelihood",
    "nll",
    "crps",
    "interval_coverage",
    "interval_width",
    "sharpness",
]

_INV_SQRT_PI = 1.0 / np.sqrt(np.pi)


def rmse(y_true, mean, std=None):
    """Root mean squared error ``sqrt(mean((y - mu)**2))`` of the predictive mean.

    ``std`` is validated if given but otherwise ignored.
    """
    y, mu, _ = check_gaussian_inputs(y_true, mean, std)
    return float(np.sqrt(np.mean(np.square(y - mu))))


def mae(y_true, mean, std=None):
    """Mean absolute error ``mean(|y - mu|)`` of the predictive mean.

    ``std`` is validated if given but otherwise ignored.
    """
    y, mu, _ = check_gaussian_inputs(y_true, mean, std)
    return float(np.mean(np.abs(y - mu)))


def log_likelihood(y_true, mean, std):
    """Mean Gaussian test log-likelihood per point (higher is better).

    .. math:: \\frac1n \\sum_i \\log \\mathcal N(y_i \\mid \\mu_i, \\sigma_i^2)
              = \\frac1n \\sum_i \\left[-\\tfrac12 \\log 2\\pi - \\log \\sigma_i
                - \\tfrac12 (y_i - \\mu_i)^2 / \\sigma_i^2\\right],

    the ``-0.5 log 2 pi`` constant included, as reported in the PBP paper
    (Hernandez-Lobato & Adams, 2015) and the UCI benchmarks that follow it.
    """
    from scipy.stats import norm  # on first use (scipy.stats takes about half a second to import)

    y, mu, sigma = check_gaussian_inputs(y_true, mean, std)
    return float(np.mean(norm.logpdf(y, loc=mu, scale=sigma)))


def nll(y_true, mean, std):
    """Mean Gaussian negative log-likelihood per point, ``-log_likelihood`` (lower is better)."""
    return -log_likelihood(y_true, mean, std)


def crps(y_true, mean, std):
    """Mean continuous ranked probability score of Gaussian forecasts (lower is better).

    Uses the closed form of Gneiting & Raftery (2007, JASA 102(477), eq. 21) for
    ``F = N(mu, sigma**2)`` and ``z = (y - mu) / sigma``:

    .. math:: \\mathrm{CRPS}(F, y) = \\int (F(x) - 1\\{x \\ge y\\})^2 dx
              = \\sigma \\left[z (2\\Phi(z) - 1) + 2\\varphi(z) - 1/\\sqrt{\\pi}\\right].

    It is in the units of ``y`` and reduces to ``|y - mu|`` as ``sigma -> 0``.
    """
    from scipy.stats import norm  # on first use (scipy.stats takes about half a second to import)

    y, mu, sigma = check_gaussian_inputs(y_true, mean, std)
    z = (y - mu) / sigma
    per_point = sigma * (z * (2.0 * norm.cdf(z) - 1.0) + 2.0 * norm.pdf(z) - _INV_SQRT_PI)
    return float(np.mean(per_point))


def _half_width(level):
    """``q = Phi^{-1}((1 + level) / 2)``: half-width of the central ``level`` interval in units of sigma.

    Written ``Phi^{-1}(0.5 + level / 2)`` as in :func:`~probprop.metrics.calibration_curve`, so that
    the coverage at a level of its grid is exactly the curve's observed proportion there.
    """
    from scipy.stats import norm  # on first use (scipy.stats takes about half a second to import)

    return norm.ppf(0.5 + level / 2.0)


def interval_coverage(y_true, mean, std, level=0.9):
    """Fraction of targets inside their central predictive interval of mass ``level``.

    The interval is ``[mu - q sigma, mu + q sigma]`` with ``q = Phi^{-1}((1 + level) / 2)``
    (closed at both ends). Membership is decided on the standardised residual,
    ``|y - mu| / sigma <= q``, not by comparing ``y`` with the bounds ``mu -/+ q sigma``
    rounded in the units of ``y`` (which counts a point as inside when ``sigma`` is tiny
    next to ``|mu|``). For calibrated forecasts the coverage is close to ``level``.
    """
    return float(np.mean(inside_interval(y_true, mean, std, level)))


def inside_interval(y_true, mean, std, level=0.9) -> np.ndarray:
    """Per point: is ``y`` inside its central interval of mass ``level``? (The rule of
    :func:`interval_coverage`: ``|y - mu| / sigma <= q`` on the standardised residual.)"""
    y, mu, sigma = check_gaussian_inputs(y_true, mean, std)
    q = _half_width(check_level(level))
    return np.abs(y - mu) / sigma <= q


def interval_width(y_true, mean, std, level=0.9):
    """Mean width ``2 q sigma`` of the central predictive intervals of mass ``level``.

    ``q = Phi^{-1}((1 + level) / 2)``, computed as ``2 q mean(sigma)`` (not as the difference of
    the bounds, which loses the width to rounding when ``sigma`` is tiny next to ``|mu|``);
    ``y_true`` and ``mean`` are only validated, so the signature matches the other metrics.
    """
    _, _, sigma = check_gaussian_inputs(y_true, mean, std)
    return float(2.0 * _half_width(check_level(level)) * np.mean(sigma))


def sharpness(y_true, mean, std):
    """Sharpness as the root mean predictive variance, ``sqrt(mean(sigma**2))``.

    This is the definition used by uncertainty-toolbox (``uct.metrics.sharpness``;
    Chung et al., 2021, arXiv:2109.10254), which takes ``y_std`` alone; here the arguments
    are ``(y_true, mean, std)`` like every metric, and ``y_true`` and ``mean`` are only
    validated. Lower means sharper, which is only a virtue together with good calibration.
    """
    _, _, sigma = check_gaussian_inputs(y_true, mean, std)
    return float(np.sqrt(np.mean(np.square(sigma))))

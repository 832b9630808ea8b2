"""Scoring rules and calibration diagnostics for Gaussian predictive distributions.

Every metric takes ``(y_true, mean, std)``: 1-D arrays of equal length with the targets
and the predictive means and standard deviations. :func:`all_metrics` bundles the usual
benchmark summary into one dict.
"""

from probprop.metrics._validation import check_gaussian_inputs
from probprop.metrics.calibration import (
    calibration_curve,
    mean_absolute_calibration_error,
    miscalibration_area,
    pit,
    rms_calibration_error,
)
from probprop.metrics.scoring import (
    crps,
    interval_coverage,
    interval_width,
    log_likelihood,
    mae,
    nll,
    rmse,
    sharpness,
)

__all__ = [
    "rmse",
    "mae",
    "log_likelihood",
    "nll",
    "crps",
    "interval_coverage",
    "interval_width",
    "sharpness",
    "pit",
    "calibration_curve",
    "miscalibration_area",
    "rms_calibration_error",
    "mean_absolute_calibration_error",
    "all_metrics",
]

#: Central-interval masses reported by :func:`all_metrics` as ``coverage_XX``/``width_XX``.
SUMMARY_LEVELS = (0.50, 0.90, 0.95)


def all_metrics(y_true, mean, std):
    """Summary of a Gaussian predictive distribution on a test set.

    Returns
    -------
    dict of str -> float
        Keys ``rmse``, ``mae``, ``log_likelihood``, ``crps``, ``coverage_50``,
        ``coverage_90``, ``coverage_95``, ``width_50``, ``width_90``, ``width_95``,
        ``miscalibration_area``, ``rms_calibration_error`` and ``sharpness``; see the
        functions of the same names (``coverage_XX``/``width_XX`` are
        :func:`interval_coverage`/:func:`interval_width` at level XX/100).
    """
    y, mu, sigma = check_gaussian_inputs(y_true, mean, std)
    out = {
        "rmse": rmse(y, mu),
        "mae": mae(y, mu),
        "log_likelihood": log_likelihood(y, mu, sigma),
        "crps": crps(y, mu, sigma),
    }
    for level in SUMMARY_LEVELS:
        out[f"coverage_{round(level * 100)}"] = interval_coverage(y, mu, sigma, level)
    for level in SUMMARY_LEVELS:
        out[f"width_{round(level * 100)}"] = interval_width(y, mu, sigma, level)
    out["miscalibration_area"] = miscalibration_area(y, mu, sigma)
    out["rms_calibration_error"] = rms_calibration_error(y, mu, sigma)
    out["sharpness"] = sharpness(y, mu, sigma)
    return out

"""The general (non-Gaussian) metrics reproduce their Gaussian closed forms."""

import numpy as np
import pytest
from scipy.stats import norm

from probprop.metrics import crps, miscalibration_area
from probprop.metrics.calibration import calibration_curve
from probprop.metrics.general import (
    coverage,
    crps_from_quantiles,
    mean_width,
    pit_calibration_curve,
    pit_miscalibration_area,
    quantile_levels,
)


@pytest.fixture
def gaussian_case():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=500)
    std = np.exp(0.4 * rng.normal(size=500))
    y = mean + 1.3 * std * rng.standard_normal(500)  # miscalibrated on purpose
    return y, mean, std


def test_pit_curve_equals_the_gaussian_curve(gaussian_case):
    y, mean, std = gaussian_case
    expected, observed = calibration_curve(y, mean, std)
    e2, o2 = pit_calibration_curve(norm.cdf(y, mean, std))
    np.testing.assert_array_equal(expected, e2)
    np.testing.assert_allclose(observed, o2, atol=1.0 / len(y) + 1e-12)  # a point on a level's edge may round
    assert pit_miscalibration_area(norm.cdf(y, mean, std)) == pytest.approx(miscalibration_area(y, mean, std), abs=2e-3)


def test_crps_from_quantiles_matches_the_closed_form(gaussian_case):
    y, mean, std = gaussian_case
    quantiles = norm.ppf(quantile_levels(1000)[None, :], mean[:, None], std[:, None])
    assert crps_from_quantiles(y, quantiles) == pytest.approx(crps(y, mean, std), rel=1e-3)
    coarse = norm.ppf(quantile_levels(10)[None, :], mean[:, None], std[:, None])
    assert abs(crps_from_quantiles(y, coarse) / crps(y, mean, std) - 1) > 1e-3  # the check can fail


def test_coverage_and_width():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    assert coverage(y, y - 1, y + 1) == 1.0
    assert coverage(y, np.full(4, 0.5), np.full(4, 2.0)) == 0.5
    assert mean_width(np.zeros(4), np.arange(4.0)) == 1.5
    assert coverage(y, np.full(4, -np.inf), np.full(4, np.inf)) == 1.0
    with pytest.raises(ValueError, match="lower <= upper"):
        coverage(y, y + 1, y)
    with pytest.raises(ValueError, match="same length"):
        coverage(y, y[:3], y[:3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pit_calibration_curve([0.2, 1.5])
    with pytest.raises(ValueError, match="shape"):
        crps_from_quantiles(y, np.zeros((3, 10)))

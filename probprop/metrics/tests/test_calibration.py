"""Calibration diagnostics on synthetic data with known (mis)calibration."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import erf

import probprop.metrics as pm


def _synthetic(scale, n=20_000, seed=0):
    """y ~ N(mean, std_true**2) but the forecast reports std = std_true * scale."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(0.0, 3.0, n)
    std_true = rng.uniform(0.3, 2.0, n)
    y = rng.normal(mean, std_true)
    return y, mean, std_true * scale


def test_pit_matches_erf_formula():
    y, mu, sigma = _synthetic(1.0, n=50)
    ref = 0.5 * (1.0 + erf((y - mu) / (sigma * np.sqrt(2.0))))
    np.testing.assert_allclose(pm.pit(y, mu, sigma), ref, rtol=1e-12, atol=1e-15)


def test_pit_is_uniform_when_calibrated():
    u = pm.pit(*_synthetic(1.0, n=5000))
    assert u.shape == (5000,)
    assert stats.kstest(u, "uniform").pvalue > 0.01


def test_pit_is_not_uniform_when_overconfident():
    u = pm.pit(*_synthetic(0.5, n=5000))
    assert stats.kstest(u, "uniform").pvalue < 1e-6


def test_calibration_curve_levels_and_brute_force_counts():
    y, mu, sigma = _synthetic(0.8, n=400)
    expected, observed = pm.calibration_curve(y, mu, sigma, n_levels=9)
    np.testing.assert_allclose(expected, np.linspace(0.1, 0.9, 9))
    for p, obs in zip(expected, observed):
        lo, hi = stats.norm.interval(p, loc=mu, scale=sigma)
        assert obs == pytest.approx(np.mean((y >= lo) & (y <= hi)))
    expected99, _ = pm.calibration_curve(y, mu, sigma)
    assert expected99.shape == (99,)
    np.testing.assert_allclose(expected99[[0, -1]], [0.01, 0.99])


@pytest.mark.parametrize("scale", [0.4, 1.0, 2.5])
def test_calibration_curve_matches_analytic_curve(scale):
    # with std reported as scale * std_true the central interval of mass p covers
    # |z_true| <= scale * Phi^{-1}((1 + p) / 2), i.e. observed(p) = 2 Phi(scale * q_p) - 1
    expected, observed = pm.calibration_curve(*_synthetic(scale))
    analytic = 2.0 * stats.norm.cdf(scale * stats.norm.ppf(0.5 + expected / 2.0)) - 1.0
    np.testing.assert_allclose(observed, analytic, atol=0.015)


def test_calibrated_case_has_near_zero_miscalibration():
    data = _synthetic(1.0)
    assert pm.miscalibration_area(*data) < 0.01
    assert pm.rms_calibration_error(*data) < 0.01
    assert pm.mean_absolute_calibration_error(*data) < 0.01


def _analytic_area(scale):
    p = np.linspace(0.0, 1.0, 20_001)
    gap = np.abs(2.0 * stats.norm.cdf(scale * stats.norm.ppf(0.5 + p / 2.0)) - 1.0 - p)
    return np.trapezoid(gap, p)


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_miscalibrated_cases_have_large_area(scale):
    data = _synthetic(scale)
    area = pm.miscalibration_area(*data)
    assert area > 0.2
    assert area == pytest.approx(_analytic_area(scale), abs=0.01)
    assert pm.rms_calibration_error(*data) > 0.2
    assert pm.mean_absolute_calibration_error(*data) > 0.2


def test_errors_are_summaries_of_the_curve():
    data = _synthetic(0.6, n=2000)
    expected, observed = pm.calibration_curve(*data, n_levels=19)
    gap = observed - expected
    assert pm.rms_calibration_error(*data, n_levels=19) == pytest.approx(np.sqrt(np.mean(gap**2)))
    assert pm.mean_absolute_calibration_error(*data, n_levels=19) == pytest.approx(
        np.mean(np.abs(gap))
    )
    area = pm.miscalibration_area(*data, n_levels=19)
    assert 0.0 <= area <= 0.5


def test_overconfidence_is_worse_with_smaller_std():
    areas = [pm.miscalibration_area(*_synthetic(s, n=5000)) for s in (0.8, 0.5, 0.2)]
    assert areas == sorted(areas)


CALIBRATION_FUNCTIONS = [
    pm.pit, pm.calibration_curve, pm.miscalibration_area, pm.rms_calibration_error,
    pm.mean_absolute_calibration_error,
]  # fmt: skip


@pytest.mark.parametrize("fn", CALIBRATION_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "args, message",
    [
        (([0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 1.0, 1.0]), "mismatched lengths"),
        (([], [], []), "y_true is empty"),
        (([0.0, 1.0], [0.0, np.nan], [1.0, 1.0]), "mean contains 1 NaN or infinite"),
        (([0.0, np.inf], [0.0, 1.0], [1.0, 1.0]), "y_true contains 1 NaN or infinite"),
        (([0.0, 1.0], [0.0, 1.0], [1.0, 0.0]), "std must be strictly positive"),
        (([0.0, 1.0], [0.0, 1.0], [1.0, -3.0]), "std must be strictly positive"),
    ],
)
def test_bad_inputs_raise_clear_value_error(fn, args, message):
    with pytest.raises(ValueError, match=message):
        fn(*args)


@pytest.mark.parametrize("n_levels", [0, -5, 2.5, True])
def test_bad_n_levels_raises(n_levels):
    with pytest.raises(ValueError, match="n_levels must be a positive integer"):
        pm.calibration_curve([0.0], [0.0], [1.0], n_levels=n_levels)

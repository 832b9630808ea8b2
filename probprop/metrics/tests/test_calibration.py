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


def _toolbox_style_curve(y, mu, sigma, num_bins=100):
    """Independent oracle of uncertainty-toolbox's "interval" curve on its own default grid:
    ``num_bins`` proportions ``linspace(0, 1, num_bins)`` (end points included), residual
    ``(mu - y) / sigma`` inside ``[Phi^{-1}(0.5 - p/2), Phi^{-1}(0.5 + p/2)]``."""
    p = np.linspace(0.0, 1.0, num_bins)
    r = ((mu - y) / sigma)[:, None]
    inside = (r >= stats.norm.ppf(0.5 - p / 2)) & (r <= stats.norm.ppf(0.5 + p / 2))
    return p, inside.mean(axis=0)


@pytest.mark.parametrize("n_zero", [0, 40])
def test_documented_conversion_to_the_toolbox_grid(n_zero):
    y, mu, sigma = _synthetic(0.7, n=1000, seed=3)
    y[:n_zero] = mu[:n_zero]  # exact zero residuals count at the toolbox's p = 0 end point
    p, obs = _toolbox_style_curve(y, mu, sigma)
    assert obs[0] == n_zero / y.size and obs[-1] == 1.0
    gap = np.abs(obs - p)
    toolbox_mace, toolbox_rmsce = gap.mean(), np.sqrt(np.mean(gap**2))
    f0 = n_zero / y.size
    mace98 = pm.mean_absolute_calibration_error(y, mu, sigma, n_levels=98)
    rms98 = pm.rms_calibration_error(y, mu, sigma, n_levels=98)
    assert (98 * mace98 + f0) / 100 == pytest.approx(toolbox_mace, rel=1e-12)
    assert np.sqrt((98 * rms98**2 + f0**2) / 100) == pytest.approx(toolbox_rmsce, rel=1e-12)
    # the defaults (99 levels 0.01..0.99) are a different grid, hence (slightly) different numbers
    expected, _ = pm.calibration_curve(y, mu, sigma)
    np.testing.assert_allclose(expected, np.arange(1, 100) / 100, rtol=1e-15)
    assert pm.mean_absolute_calibration_error(y, mu, sigma) != pytest.approx(toolbox_mace, rel=1e-6)


@pytest.mark.parametrize("fn", CALIBRATION_FUNCTIONS[1:], ids=lambda f: f.__name__)
def test_docstrings_state_grid_and_argument_order(fn):
    doc = " ".join(fn.__doc__.split())
    assert "0.01, ..., 0.99" in doc and "np.linspace(0, 1, 100)" in doc, fn.__name__  # this grid and the toolbox's
    assert "(y_pred, y_std, y_true)" in doc and "y_true, mean, std" in doc, fn.__name__
    module_doc = " ".join(pm.calibration.__doc__.split())
    for needle in ("(y_true, mean, std)", "(y_pred, y_std, y_true)", "n_levels=99", "num_bins=100",
                   "np.linspace(0, 1, 100)"):
        assert needle in module_doc, needle

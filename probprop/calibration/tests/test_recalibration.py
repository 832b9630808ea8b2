"""Quantile recalibration: the recalibrated distribution is a distribution (monotone CDF in
[0, 1], density integrating to it, ppf its inverse, moments matching samples), the identity map
changes nothing, and it fixes a miscalibrated model on fresh data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from probprop.calibration import (
    QuantileRecalibratedRegressor,
    RecalibratedPrediction,
    RecalibrationMap,
    fit_recalibration,
)
from probprop.distributions import GaussianPrediction
from probprop.metrics.general import pit_miscalibration_area


def _base(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return GaussianPrediction(rng.normal(size=n), np.exp(rng.normal(size=n)), 0.0)


def test_identity_map_is_the_gaussian():
    base = _base()
    same = RecalibratedPrediction(base, RecalibrationMap(np.array([0.0, 1.0]), np.array([0.0, 1.0])))
    y = np.linspace(-3, 3, 5)
    np.testing.assert_allclose(same.cdf(y), base.cdf(y), rtol=1e-12)
    np.testing.assert_allclose(same.logpdf(y), base.logpdf(y), rtol=1e-12)
    np.testing.assert_allclose(same.ppf(0.3), base.ppf(0.3), rtol=1e-12)
    np.testing.assert_allclose(same.mean, base.mean, atol=1e-12)
    np.testing.assert_allclose(same.std, base.std, rtol=1e-12)
    for a, b in zip(same.interval(0.9), base.interval(0.9)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.fixture(scope="module")
def skewed():
    """A map fitted to PIT values that are far from uniform (a skewed, overdispersed model)."""
    rng = np.random.default_rng(1)
    return RecalibratedPrediction(_base(3, seed=2), fit_recalibration(rng.beta(0.6, 1.5, 60), n_knots=None))


def test_cdf_ppf_interval_and_density_are_consistent(skewed):
    q = np.array([1e-6, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-6])
    quantiles = skewed.ppf(q)  # (n, len(q))
    assert np.all(np.diff(quantiles, axis=1) > 0)
    np.testing.assert_allclose(skewed.cdf(quantiles.T), np.broadcast_to(q[:, None], quantiles.T.shape), atol=1e-12)
    lower, upper = skewed.interval(0.8)
    np.testing.assert_allclose(skewed.cdf(upper) - skewed.cdf(lower), 0.8, atol=1e-12)
    # the density integrates to the CDF (fine grid; the density is piecewise smooth)
    for i in range(3):
        one = skewed[i : i + 1]
        grid = np.linspace(one.ppf(1e-7)[0], one.ppf(1 - 1e-7)[0], 400_001)
        mass = np.trapezoid(one.pdf(grid), grid)
        assert mass == pytest.approx(1 - 2e-7, abs=2e-4)
        half = grid <= one.ppf(0.3)[0]
        assert np.trapezoid(one.pdf(grid[half]), grid[half]) == pytest.approx(0.3 - 1e-7, abs=2e-4)


def test_moments_match_samples(skewed):
    draws = skewed.sample(400_000, random_state=0)
    se_mean = skewed.std / np.sqrt(draws.shape[0])
    assert np.all(np.abs(draws.mean(axis=0) - skewed.mean) < 5 * se_mean)
    np.testing.assert_allclose(draws.std(axis=0), skewed.std, rtol=0.01)
    assert not np.allclose(skewed.mean, skewed.base.mean, rtol=0.05)  # recalibration moved them


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60), st.sampled_from([None, "auto", 1, 3]))
def test_any_pit_values_give_a_monotone_cdf_in_the_unit_interval(pits, n_knots):
    dist = RecalibratedPrediction(_base(2), fit_recalibration(pits, n_knots))
    y = np.linspace(-50, 50, 2001)
    cdf = dist.cdf(y[:, None] + np.zeros(2))
    assert np.all((cdf >= 0) & (cdf <= 1)) and np.all(np.diff(cdf, axis=0) >= 0)
    assert np.all(np.isfinite(dist.logpdf(y[:, None] + np.zeros(2))))
    assert np.all(np.isfinite(dist.mean)) and np.all(dist.std > 0)


def test_it_recalibrates_an_overconfident_shifted_model():
    """y ~ N(mu + 0.5 s, (2 s)^2) while the model says N(mu, s^2): after recalibrating on 2,000
    points, fresh PIT values are uniform (miscalibration area near the sampling floor) and the test
    log-likelihood comes within 0.1 nat of the true distribution's (from 1 nat below it; beyond the
    outermost knots the tails are the model's, too light here: the rest of the gap)."""
    rng = np.random.default_rng(4)

    def world(n):
        mu, s = rng.normal(size=n), np.exp(0.3 * rng.normal(size=n))
        return GaussianPrediction(mu, s**2, 0.0), mu + 0.5 * s + 2 * s * rng.standard_normal(n), (mu + 0.5 * s, 2 * s)

    cal, y_cal, _ = world(2000)
    test, y_test, (true_mean, true_std) = world(4000)
    dist = RecalibratedPrediction(test, fit_recalibration(cal.cdf(y_cal)))
    before, after = pit_miscalibration_area(test.cdf(y_test)), pit_miscalibration_area(dist.cdf(y_test))
    assert before > 0.15 and after < 0.015
    ll_model, ll_after = test.logpdf(y_test).mean(), dist.logpdf(y_test).mean()
    ll_true = stats.norm.logpdf(y_test, true_mean, true_std).mean()
    assert ll_model < ll_true - 0.9 and ll_after > ll_true - 0.1
    np.testing.assert_allclose(dist.mean, true_mean, atol=0.1 * np.max(true_std))


def test_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_recalibration([0.2, 1.2])
    with pytest.raises(ValueError, match="n_knots"):
        fit_recalibration([0.2, 0.3], n_knots=0)
    with pytest.raises(ValueError, match="n_knots"):
        fit_recalibration([0.2, 0.3], n_knots="many")
    with pytest.raises(ValueError, match="strictly increasing"):
        RecalibrationMap(np.array([0.0, 0.5, 0.5, 1.0]), np.array([0.0, 0.2, 0.3, 1.0]))
    dist = RecalibratedPrediction(_base(2), fit_recalibration([0.1, 0.7]))
    with pytest.raises(ValueError, match="levels"):
        dist.ppf(1.5)
    with pytest.raises(ValueError, match="confidence"):
        dist.interval(0)


def test_wrapper_with_a_probprop_model():
    from probprop import PBPRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (200, 1))
    y = np.sin(2 * X[:, 0]) + 0.3 * rng.standard_normal(200)
    model = QuantileRecalibratedRegressor(PBPRegressor(hidden=(10,), epochs=5, random_state=0), random_state=0)
    model.fit(X, y)
    assert model.n_calibration_ == 40
    dist = model.predict_dist(X[:7])
    assert isinstance(dist, RecalibratedPrediction) and len(dist) == 7
    mean, std = model.predict(X[:7], return_std=True)
    np.testing.assert_allclose(mean, dist.mean)
    np.testing.assert_allclose(std, dist.std)
    assert model.score(X, y) == pytest.approx(float(np.mean(model.predict_dist(X).logpdf(y))))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_dist(X[:7]).cdf(y[:7]), dist.cdf(y[:7]))

"""GaussianPrediction: consistent moments, scipy.stats.norm agreement, sampling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from probprop import GaussianPrediction


@pytest.fixture
def pred():
    rng = np.random.default_rng(0)
    mean = rng.normal(0.0, 3.0, 6)
    epistemic = rng.uniform(0.1, 2.0, 6)
    return GaussianPrediction(mean, epistemic, 0.5)


def test_moments_are_consistent(pred):
    assert pred.mean.dtype == pred.var.dtype == np.float64
    assert pred.noise_var.shape == pred.mean.shape == (6,)  # a scalar noise is broadcast
    np.testing.assert_array_equal(pred.noise_var, 0.5)
    np.testing.assert_allclose(pred.var, pred.epistemic_var + pred.noise_var, rtol=1e-15)
    np.testing.assert_allclose(pred.std**2, pred.var, rtol=1e-14)
    np.testing.assert_allclose(pred.epistemic_std**2, pred.epistemic_var, rtol=1e-14)
    assert pred.params.keys() == {"loc", "scale"}
    np.testing.assert_array_equal(pred.params["scale"], pred.std)
    assert len(pred) == 6


def test_inputs_are_converted():
    pred = GaussianPrediction([1, 2, 3], [1, 1, 1], [0.5, 0.5, 0.5])
    assert pred.mean.dtype == np.float64 and pred.epistemic_var.dtype == np.float64
    np.testing.assert_array_equal(pred.std, np.sqrt(1.5))


def test_is_immutable(pred):
    with pytest.raises(dataclasses.FrozenInstanceError):
        pred.mean = np.zeros(6)


def test_indexing(pred):
    part = pred[1:4]
    assert isinstance(part, GaussianPrediction) and len(part) == 3
    np.testing.assert_array_equal(part.mean, pred.mean[1:4])
    np.testing.assert_array_equal(part.var, pred.var[1:4])
    one = pred[[0, 5]]
    np.testing.assert_array_equal(one.std, pred.std[[0, 5]])


def test_agrees_with_scipy(pred):
    rng = np.random.default_rng(1)
    y = pred.mean + rng.normal(0.0, 2.0, 6)
    norm = stats.norm(loc=pred.mean, scale=pred.std)
    np.testing.assert_allclose(pred.logpdf(y), norm.logpdf(y), rtol=1e-14)
    np.testing.assert_allclose(pred.pdf(y), norm.pdf(y), rtol=1e-14)
    np.testing.assert_allclose(pred.cdf(y), norm.cdf(y), rtol=1e-14)
    np.testing.assert_allclose(pred.logpdf(y[:, None]), norm.logpdf(y), rtol=1e-14)  # column y
    np.testing.assert_allclose(pred.ppf(0.3), norm.ppf(0.3), rtol=1e-14)
    np.testing.assert_allclose(pred.ppf(0.5), pred.mean, rtol=1e-14)
    lower, upper = pred.interval(0.9)
    ref_lower, ref_upper = norm.interval(0.9)
    np.testing.assert_allclose(lower, ref_lower, rtol=1e-14)
    np.testing.assert_allclose(upper, ref_upper, rtol=1e-14)
    np.testing.assert_allclose(pred.cdf(upper) - pred.cdf(lower), 0.9, rtol=1e-12)
    np.testing.assert_allclose(pred.cdf(pred.ppf(0.8)), 0.8, rtol=1e-12)
    np.testing.assert_allclose((lower + upper) / 2, pred.mean, atol=1e-12)


def test_ppf_with_many_levels(pred):
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    q = pred.ppf(levels)
    assert q.shape == (6, 5)
    for j, level in enumerate(levels):
        np.testing.assert_allclose(q[:, j], stats.norm.ppf(level, pred.mean, pred.std), rtol=1e-14)
    assert np.all(np.diff(q, axis=1) > 0)
    assert pred.ppf(np.array([0.5])).shape == (6, 1)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, [0.5, 1.2]])
def test_ppf_rejects_levels_outside_0_1(pred, bad):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        pred.ppf(bad)


@pytest.mark.parametrize("bad", [0.0, 1.0, 95])
def test_interval_rejects_bad_confidence(pred, bad):
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        pred.interval(bad)


def test_sample_shape_and_moments(pred):
    draws = pred.sample(20000, random_state=0)
    assert draws.shape == (20000, 6)
    se_mean = pred.std / np.sqrt(20000)
    assert np.all(np.abs(draws.mean(axis=0) - pred.mean) < 5 * se_mean)
    np.testing.assert_allclose(draws.std(axis=0), pred.std, rtol=0.03)
    assert pred.sample(random_state=0).shape == (1, 6)
    np.testing.assert_array_equal(pred.sample(3, random_state=7), pred.sample(3, random_state=7))
    assert not np.array_equal(pred.sample(3, random_state=7), pred.sample(3, random_state=8))

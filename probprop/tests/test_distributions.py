"""GaussianPrediction: consistent moments, scipy.stats.norm agreement, sampling; ClassPrediction from members."""

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


def test_ppf_at_0_and_1_is_minus_and_plus_infinity_as_in_scipy(pred):
    np.testing.assert_array_equal(pred.ppf(0.0), stats.norm.ppf(0.0, pred.mean, pred.std))
    np.testing.assert_array_equal(pred.ppf(0.0), np.full(6, -np.inf))
    np.testing.assert_array_equal(pred.ppf(1), np.full(6, np.inf))
    q = pred.ppf([0.0, 0.5, 1.0])
    assert q.shape == (6, 3)
    np.testing.assert_array_equal(q[:, 0], -np.inf)
    np.testing.assert_array_equal(q[:, 2], np.inf)
    np.testing.assert_allclose(q[:, 1], pred.mean, rtol=1e-14)


@pytest.mark.parametrize("bad", [-0.1, 1.0000001, np.nan, [0.5, 1.2], [0.5, np.nan], -np.inf])
def test_ppf_rejects_levels_outside_0_1(pred, bad):
    with pytest.raises(ValueError, match=r"quantile levels must lie in \[0, 1\].*got \[(-?[0-9.]+|nan|-inf)\]"):
        pred.ppf(bad)


def test_ppf_rejects_2d_levels(pred):
    with pytest.raises(ValueError, match=r"q must be a scalar or a 1-D array of levels.*\(2, 1\)"):
        pred.ppf([[0.1], [0.2]])


def test_logpdf_cdf_pdf_broadcast_y_against_the_points(pred):
    draws = pred.sample(3, random_state=0)
    norm = stats.norm(loc=pred.mean, scale=pred.std)
    for method in ("logpdf", "pdf", "cdf"):
        out = getattr(pred, method)(draws)
        assert out.shape == (3, 6), method
        for i in range(3):  # row by row, each a plain (n,) call checked against scipy
            np.testing.assert_allclose(out[i], getattr(norm, method)(draws[i]), rtol=1e-14)
            np.testing.assert_array_equal(out[i], getattr(pred, method)(draws[i]))
    # a scalar y: the same value at every point
    np.testing.assert_allclose(pred.cdf(0.0), norm.cdf(np.zeros(6)), rtol=1e-14)
    # (k, 1): each of k values at every point
    grid = np.linspace(-3, 3, 4)[:, None]
    np.testing.assert_allclose(pred.logpdf(grid), norm.logpdf(np.broadcast_to(grid, (4, 6))), rtol=1e-14)
    assert pred.logpdf(pred.sample(2, random_state=1)[None]).shape == (1, 2, 6)


@pytest.mark.parametrize("shape", [(5,), (7,), (3, 5), (6, 2)])
def test_y_that_does_not_broadcast_is_refused(pred, shape):
    with pytest.raises(ValueError, match=rf"y of shape \({shape[0]},.*does not broadcast against the 6 points"):
        pred.logpdf(np.zeros(shape))


def test_column_y_is_refused_as_ambiguous(pred):
    with pytest.raises(ValueError, match=r"y has shape \(6, 1\).*\(6, 6\) table.*y.ravel\(\)"):
        pred.cdf(np.zeros((6, 1)))
    one = GaussianPrediction([1.0], [0.5], 0.5)  # a single point: (1, 1) is the (k, n) case, not ambiguous
    np.testing.assert_allclose(one.logpdf([[1.0]]), [[stats.norm.logpdf(0.0)]], rtol=1e-14)


@pytest.mark.parametrize("field", ["epistemic_var", "noise_var"])
@pytest.mark.parametrize("value, message", [
    ([0.1, -1e-12, 0.2], r"must be >= 0 \(it is a variance\), but 1 value\(s\) are negative, e\.g\. -1e-12 at flat index 1"),
    (-0.5, r"must be >= 0 \(it is a variance\), but 1 value\(s\) are negative, e\.g\. -0\.5"),
    ([0.1, np.nan, np.nan], r"contains 2 NaN value\(s\)"),
    (np.nan, r"contains 1 NaN value\(s\)"),
])  # fmt: skip
def test_negative_or_nan_variances_are_refused_naming_the_field(field, value, message):
    kwargs = {"mean": [0.0, 1.0, 2.0], "epistemic_var": 0.1, "noise_var": 0.1, field: value}
    with pytest.raises(ValueError, match=rf"^{field} {message}"):
        GaussianPrediction(**kwargs)


def test_zero_variances_and_mismatched_shapes():
    exact = GaussianPrediction([0.0, 1.0], [0.0, 0.5], [0.25, 0.0])  # zeros are valid variances
    np.testing.assert_array_equal(exact.var, [0.25, 0.5])
    with pytest.raises(ValueError, match=r"noise_var of shape \(3,\) does not match mean of shape \(2,\)"):
        GaussianPrediction([0.0, 1.0], 0.1, [0.1, 0.2, 0.3])


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


def test_class_prediction_from_members():
    """Averaged networks: the mean probabilities, their variance across members and the mean
    entropy, written out by hand for two members on two points; one member is a point estimate
    whose scores leave out the (zero) epistemic ones; a wrong shape is refused."""
    from probprop.distributions import ClassPrediction

    members = np.array([[[0.9, 0.1], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]])
    dist = ClassPrediction.from_members(members, np.array(["a", "b"]))
    np.testing.assert_allclose(dist.probabilities, [[0.7, 0.3], [0.5, 0.5]])
    np.testing.assert_allclose(dist.variance, [[0.04, 0.04], [0.0, 0.0]])
    h = lambda p: -p * np.log(p) - (1 - p) * np.log(1 - p)
    np.testing.assert_allclose(dist.mutual_information, [h(0.7) - (h(0.9) + h(0.5)) / 2, 0.0], atol=1e-15)
    assert set(dist.scores()) == {"max_probability", "entropy", "mutual_information", "epistemic_variance"}
    assert list(dist.predicted) == ["a", "a"]  # a tie goes to the first class, as np.argmax
    single = ClassPrediction.from_members(members[:1], np.array(["a", "b"]))
    assert not single.epistemic and list(single.scores()) == ["max_probability", "entropy"]
    np.testing.assert_allclose(single.scores()["entropy"], [h(0.9), h(0.5)])
    with pytest.raises(ValueError, match="members, n, K"):
        ClassPrediction.from_members(members[0], np.array(["a", "b"]))

"""Split conformal intervals: the finite-sample coverage guarantee, agreement with MAPIE and
crepes, the wrapper's scikit-learn contract, and bad input."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone

from probprop.calibration import (
    ConformalCalibration,
    ConformalRegressor,
    conformal_quantile,
    min_calibration_size,
)
from probprop.distributions import GaussianPrediction


def _world(rng, n):
    """Exchangeable data from a heteroscedastic, heavy-tailed model, and a wrong model's
    predictions for it (biased mean, std that ignores part of the noise)."""
    x = rng.uniform(-2, 2, n)
    y = np.sin(2 * x) + (0.2 + 0.3 * np.abs(x)) * rng.standard_t(4, n)
    model = GaussianPrediction(0.8 * x, (0.3 + 0.1 * np.abs(x)) ** 2, 0.0)
    return model, y


@pytest.mark.parametrize("method", ["absolute", "normalized", "cqr"])
@pytest.mark.parametrize("n_cal, confidence", [(19, 0.9), (30, 0.9), (40, 0.5)])
def test_marginal_coverage_is_what_the_theory_says(method, n_cal, confidence):
    """Over many random calibration sets, a fresh test point falls inside with probability exactly
    ceil((n + 1) c) / (n + 1) (continuous scores): the count must lie within its binomial bounds
    (two-sided, 1e-4); off by one order statistic would be 1 / (n + 1) away, many SEs."""
    rng = np.random.default_rng(hash((method, n_cal, confidence)) % 2**32)
    trials = 4000
    hits = 0
    for _ in range(trials):
        model, y = _world(rng, n_cal + 1)
        calibration = ConformalCalibration(method, model[:n_cal], y[:n_cal])
        lower, upper = calibration.interval(model[n_cal:], confidence)
        hits += int(lower[0] <= y[n_cal] <= upper[0])
    k = math.ceil((n_cal + 1) * confidence - 1e-9)
    p = k / (n_cal + 1)
    assert confidence <= p < confidence + 1 / (n_cal + 1)
    low, high = stats.binom.ppf(5e-5, trials, p), stats.binom.isf(5e-5, trials, p)
    assert low <= hits <= high, (hits / trials, p)


def test_quantile_is_the_order_statistic_and_too_few_points_are_an_error():
    scores = np.arange(1.0, 10.0)  # 9 scores
    assert conformal_quantile(scores, 0.9) == 9.0  # ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(scores, 0.5) == 5.0
    assert min_calibration_size(0.9) == 9 and min_calibration_size(0.95) == 19 and min_calibration_size(0.5) == 1
    with pytest.raises(ValueError, match="needs at least 9 calibration points.*there are 8"):
        conformal_quantile(scores[:8], 0.9)
    assert conformal_quantile(scores[:8], 0.9, unbounded=True) == math.inf
    for bad in (0.0, 1.0, 1.5, "0.9", True):
        with pytest.raises(ValueError, match="confidence"):
            conformal_quantile(scores, bad)
    with pytest.raises(ValueError, match="finite"):
        conformal_quantile([1.0, np.nan], 0.5)


@pytest.mark.parametrize("n_cal", [37, 200, 139])
def test_same_intervals_as_mapie_and_crepes(n_cal):
    """MAPIE's split-conformal intervals equal ours; crepes' too, except where (n + 1)(1 - c) is a
    whole number (n = 139: 140 * 0.1 and 140 * 0.05), where crepes' floating-point index
    (1 - 0.9 = 0.09999999999999998, truncated) takes the next order statistic."""
    mapie = pytest.importorskip("mapie.regression")
    crepes = pytest.importorskip("crepes")
    from probprop.bench.calibrate import LEVELS, _peer_intervals

    rng = np.random.default_rng(n_cal)
    model, y = _world(rng, n_cal + 300)
    cal, test = model[:n_cal], model[n_cal:]
    peers = _peer_intervals(cal.mean, cal.std, y[:n_cal], test.mean, test.std)
    assert set(peers) == {"mapie-absolute", "crepes-absolute", "crepes-normalized"}
    for name, bounds in peers.items():
        ours = ConformalCalibration(name.split("-")[1], cal, y[:n_cal])
        for level, (lower, upper) in zip(LEVELS, bounds):
            mine = ours.interval(test, level)
            k = math.ceil((n_cal + 1) * level - 1e-9)  # ours: the k-th smallest score
            crepes_k = n_cal - (int((1 - level) * (n_cal + 1)) - 1)  # crepes 0.9's index, as it computes it
            if name.startswith("crepes") and crepes_k != k:
                assert crepes_k == k + 1 and n_cal == 139 and level == 0.9  # the one case here
                q_next = np.sort(ours.scores(level))[k]
                scale = test.std if name.endswith("normalized") else 1.0
                np.testing.assert_allclose(upper, test.mean + q_next * scale, rtol=1e-12)
                assert np.all(upper > mine[1])
                continue
            np.testing.assert_allclose(lower, mine[0], rtol=0, atol=1e-12)
            np.testing.assert_allclose(upper, mine[1], rtol=0, atol=1e-12)
    assert mapie and crepes


def test_normalized_intervals_follow_the_predictive_std():
    rng = np.random.default_rng(0)
    model, y = _world(rng, 500)
    test = model[:5]
    lower, upper = ConformalCalibration("normalized", model[100:], y[100:]).interval(test, 0.9)
    np.testing.assert_allclose((upper - lower) / test.std, (upper - lower)[0] / test.std[0])
    lower, upper = ConformalCalibration("absolute", model[100:], y[100:]).interval(test, 0.9)
    np.testing.assert_allclose(upper - lower, (upper - lower)[0])
    # cqr: the model's own interval moved out (or in) by one constant
    own = test.interval(0.9)
    lower, upper = ConformalCalibration("cqr", model[100:], y[100:]).interval(test, 0.9)
    np.testing.assert_allclose(own[0] - lower, upper - own[1])


def _toy(n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.2 * rng.standard_normal(n)


@pytest.fixture(scope="module")
def fitted():
    from probprop import PBPRegressor

    X, y = _toy()
    return ConformalRegressor(PBPRegressor(hidden=(10,), epochs=5, random_state=0), random_state=0).fit(X, y)


def test_wrapper_fits_calibrates_and_predicts(fitted):
    X, y = _toy(40, seed=1)
    assert fitted.n_calibration_ == 32 and fitted.n_features_in_ == 2
    lower, upper = fitted.predict_interval(X, 0.9)
    assert lower.shape == upper.shape == (40,) and np.all(lower < upper)
    np.testing.assert_allclose(fitted.predict(X), fitted.estimator_.predict(X))
    dist = fitted.predict_dist(X)
    assert len(dist) == 40 and dist.method == "normalized"
    np.testing.assert_array_equal(dist[:3].interval(0.9)[0], lower[:3])
    with pytest.raises(ValueError, match="needs at least 39 calibration points"):
        fitted.predict_interval(X, 0.975)
    assert np.all(np.isinf(fitted.predict_interval(X, 0.975, unbounded=True)[1]))
    assert -1 < fitted.score(X, y) <= 1  # R^2 of the mean
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_interval(X, 0.9)[1], upper)


def test_prefit_calibrates_on_all_rows_and_clone_keeps_the_parameters(fitted):
    X, y = _toy(50, seed=2)
    wrapper = ConformalRegressor(fitted.estimator_, method="absolute", prefit=True).fit(X, y)
    assert wrapper.n_calibration_ == 50 and wrapper.estimator_ is fitted.estimator_
    copy = clone(wrapper)
    assert copy.get_params()["method"] == "absolute" and not hasattr(copy, "calibration_")
    wrapper.calibrate(X[:20], y[:20])
    assert wrapper.n_calibration_ == 20


def test_bad_input_gets_clear_errors(fitted):
    X, y = _toy(30)
    with pytest.raises(ValueError, match="unknown conformal method 'median'"):
        ConformalRegressor(method="median").fit(X, y)
    with pytest.raises(ValueError, match="calibration_size"):
        ConformalRegressor(calibration_size=1.5).fit(X, y)
    with pytest.raises(ValueError, match="n_samples=30: calibration_size=29 leaves 1 rows"):
        ConformalRegressor(calibration_size=29).fit(X, y)
    with pytest.raises(TypeError, match="has no predict_dist"):
        from sklearn.linear_model import LinearRegression

        ConformalRegressor(LinearRegression()).fit(X, y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        fitted.calibrate(X, np.where(np.arange(30) == 3, np.nan, y))
    with pytest.raises(ValueError, match="30 rows but y has 29"):
        fitted.calibrate(X, y[:29])
    with pytest.raises(ValueError, match="confidence"):
        fitted.predict_interval(X, 90)


def test_cqr_empties_intervals_it_narrows_past_zero():
    """A model whose intervals are far too wide: CQR's q is negative, and a point whose own
    interval is narrower than -2q gets an empty set, returned as one point (lower == upper)."""
    rng = np.random.default_rng(5)
    n = 400
    std = np.where((np.arange(n) % 2 == 0) & (np.arange(n) >= 200), 0.05, 5.0)  # narrow: test points only
    model = GaussianPrediction(np.zeros(n), std**2, 0.0)
    y = 0.01 * rng.standard_normal(n)
    calibration = ConformalCalibration("cqr", model[:200], y[:200])
    assert conformal_quantile(calibration.scores(0.9), 0.9) < -1
    lower, upper = calibration.interval(model[200:], 0.9)
    assert np.all(lower <= upper)
    narrow = std[200:] < 1
    np.testing.assert_array_equal(lower[narrow], upper[narrow])
    assert np.all(upper[~narrow] - lower[~narrow] > 0.02)  # shrunk from 16.4 to what the data need

"""Scoring rules checked against independent references (scipy, sklearn, brute force)."""

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

import probprop.metrics as pm


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 300
    mean = rng.normal(0.0, 2.0, n)
    std = rng.uniform(0.2, 1.5, n)
    y = mean + std * rng.standard_normal(n) * 1.3 + 0.1
    return y, mean, std


def test_rmse_mae_match_sklearn(data):
    y, mu, sigma = data
    assert pm.rmse(y, mu) == pytest.approx(root_mean_squared_error(y, mu), rel=1e-12)
    assert pm.mae(y, mu) == pytest.approx(mean_absolute_error(y, mu), rel=1e-12)
    # std is accepted (and ignored) so every metric shares the call signature
    assert pm.rmse(y, mu, sigma) == pm.rmse(y, mu)
    assert pm.mae(y, mu, sigma) == pm.mae(y, mu)


def test_log_likelihood_matches_scipy_logpdf(data):
    y, mu, sigma = data
    ref = np.mean(norm.logpdf(y, loc=mu, scale=sigma))
    assert pm.log_likelihood(y, mu, sigma) == pytest.approx(ref, rel=1e-12)
    # and the explicit density: log N(1 | 0, 2^2) = -0.5 log(2 pi) - log 2 - 1/8
    expected = -0.5 * np.log(2 * np.pi) - np.log(2.0) - 0.125
    assert pm.log_likelihood([1.0], [0.0], [2.0]) == pytest.approx(expected, rel=1e-12)
    assert pm.nll(y, mu, sigma) == -pm.log_likelihood(y, mu, sigma)


def test_log_likelihood_includes_normalising_constant():
    # standard normal at its mode: log phi(0) = -0.5 log(2 pi)
    assert pm.log_likelihood([0.0], [0.0], [1.0]) == pytest.approx(-0.5 * np.log(2 * np.pi))


def _crps_quad(y, mu, sigma):
    """CRPS = int (F(x) - 1{x >= y})^2 dx by adaptive quadrature, split at the jump."""
    cdf = norm(mu, sigma).cdf
    below, _ = integrate.quad(lambda x: cdf(x) ** 2, -np.inf, y)
    above, _ = integrate.quad(lambda x: (1.0 - cdf(x)) ** 2, y, np.inf)
    return below + above


@pytest.mark.parametrize(
    "y, mu, sigma",
    [(0.0, 0.0, 1.0), (1.3, -0.2, 0.7), (-4.0, 1.0, 0.5), (10.0, 9.0, 3.0), (0.01, 0.0, 1e-2)],
)
def test_crps_matches_numerical_integration(y, mu, sigma):
    assert pm.crps([y], [mu], [sigma]) == pytest.approx(_crps_quad(y, mu, sigma), rel=1e-6)


def test_crps_mean_matches_quadrature_and_monte_carlo(data):
    y, mu, sigma = data
    idx = slice(0, 10)
    ref = np.mean([_crps_quad(*args) for args in zip(y[idx], mu[idx], sigma[idx])])
    assert pm.crps(y[idx], mu[idx], sigma[idx]) == pytest.approx(ref, rel=1e-6)

    # energy form CRPS = E|X - y| - 0.5 E|X - X'| with X, X' ~ F independent
    rng = np.random.default_rng(1)
    t, m, s = 0.7, -0.3, 1.2
    x, x2 = m + s * rng.standard_normal((2, 400_000))
    mc = np.mean(np.abs(x - t)) - 0.5 * np.mean(np.abs(x - x2))
    assert pm.crps([t], [m], [s]) == pytest.approx(mc, abs=5e-3)


def test_crps_tends_to_absolute_error_for_tiny_std():
    assert pm.crps([2.0], [0.5], [1e-9]) == pytest.approx(1.5, rel=1e-6)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95])
def test_interval_coverage_matches_brute_force_count(data, level):
    y, mu, sigma = data
    q = norm.ppf((1 + level) / 2)
    count = 0
    for t, m, s in zip(y, mu, sigma):
        count += abs(t - m) / s <= q
    assert pm.interval_coverage(y, mu, sigma, level) == pytest.approx(count / len(y))


def test_interval_coverage_decides_on_the_standardised_residual():
    # |y - mu| / sigma = 1.6466 > q_90 = 1.6449: outside, although y >= mu - q sigma once rounded to y's units
    y, mu, sigma = 1066118.1271197523, 1066118.1271197642, 7.211455391554595e-09
    assert abs(y - mu) / sigma == pytest.approx(1.6466, abs=1e-4) and norm.ppf(0.95) < 1.6450
    assert pm.interval_coverage([y], [mu], [sigma], 0.9) == 0.0
    assert pm.interval_coverage([y], [mu], [sigma], 0.91) == 1.0  # q_91 = 1.6954

    # points a hair inside / outside q sigma, far from the origin: exactly the inside ones count
    rng = np.random.default_rng(5)
    q = norm.ppf(0.95)
    mu = rng.uniform(-1e7, 1e7, 400)
    sigma = 10.0 ** rng.uniform(-9, -6, 400)
    z = q * (1 + rng.choice([-1e-3, 1e-3], 400)) * rng.choice([-1.0, 1.0], 400)
    y = mu + z * sigma
    inside = np.abs(y - mu) / sigma <= q
    assert 100 < inside.sum() < 300
    assert pm.interval_coverage(y, mu, sigma, 0.9) == inside.mean()
    assert pm.all_metrics(y, mu, sigma)["coverage_90"] == inside.mean()


def test_interval_coverage_near_level_when_calibrated():
    rng = np.random.default_rng(2)
    mu, sigma = rng.normal(size=20_000), rng.uniform(0.5, 2.0, 20_000)
    y = rng.normal(mu, sigma)
    for level in (0.5, 0.9, 0.95):
        assert pm.interval_coverage(y, mu, sigma, level) == pytest.approx(level, abs=0.01)


def test_interval_width_uses_normal_quantiles():
    sigma = np.array([0.5, 1.0, 2.0])
    z90, z95, z50 = 1.6448536269514722, 1.959963984540054, 0.6744897501960817
    zeros = np.zeros(3)
    assert pm.interval_width(zeros, zeros, sigma) == pytest.approx(2 * z90 * sigma.mean())
    assert pm.interval_width(zeros, zeros, sigma, 0.95) == pytest.approx(2 * z95 * sigma.mean())
    assert pm.interval_width(zeros, zeros, sigma, 0.5) == pytest.approx(2 * z50 * sigma.mean())


def test_interval_width_is_exact_when_std_is_tiny_next_to_the_mean():
    mu, sigma = np.array([1066118.1271197642, -3.0e8]), np.array([7.211455391554595e-09, 2.5e-7])
    z90 = 1.6448536269514722
    assert pm.interval_width(mu, mu, sigma) == pytest.approx(2 * z90 * sigma.mean(), rel=1e-14)
    assert pm.all_metrics(mu, mu, sigma)["width_90"] == pytest.approx(2 * z90 * sigma.mean(), rel=1e-14)


def test_sharpness_is_root_mean_variance():
    sigma = np.array([1.0, 7.0])  # sqrt((1 + 49) / 2) = 5, while mean(std) would be 4
    assert pm.sharpness(np.zeros(2), np.zeros(2), sigma) == pytest.approx(5.0)


def test_all_metrics_keys_and_values(data):
    y, mu, sigma = data
    out = pm.all_metrics(y, mu, sigma)
    assert list(out) == [
        "rmse", "mae", "log_likelihood", "crps",
        "coverage_50", "coverage_90", "coverage_95",
        "width_50", "width_90", "width_95",
        "miscalibration_area", "rms_calibration_error", "sharpness",
    ]  # fmt: skip
    assert all(isinstance(v, float) for v in out.values())
    assert out["rmse"] == pm.rmse(y, mu)
    assert out["log_likelihood"] == pm.log_likelihood(y, mu, sigma)
    assert out["crps"] == pm.crps(y, mu, sigma)
    assert out["coverage_95"] == pm.interval_coverage(y, mu, sigma, 0.95)
    assert out["width_50"] == pm.interval_width(y, mu, sigma, 0.5)
    assert out["miscalibration_area"] == pm.miscalibration_area(y, mu, sigma)
    assert out["sharpness"] == pm.sharpness(y, mu, sigma)


def test_lists_are_accepted():
    assert pm.rmse([1.0, 2.0], [1.0, 4.0]) == pytest.approx(np.sqrt(2.0))


# --- bad inputs -------------------------------------------------------------------------

GAUSSIAN_METRICS = [
    pm.log_likelihood, pm.nll, pm.crps, pm.interval_coverage, pm.interval_width,
    pm.sharpness, pm.all_metrics,
]  # fmt: skip
ALL_METRICS = [pm.rmse, pm.mae, *GAUSSIAN_METRICS]

GOOD = (np.array([0.0, 1.0, 2.0]), np.array([0.1, 0.9, 2.2]), np.array([1.0, 0.5, 2.0]))


@pytest.mark.parametrize("fn", ALL_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "args, message",
    [
        ((GOOD[0][:2], GOOD[1], GOOD[2]), "mismatched lengths: y_true has 2, mean has 3"),
        ((GOOD[0], GOOD[1], GOOD[2][:2]), "mismatched lengths"),
        (([], [], []), "y_true is empty"),
        (([0.0, np.nan, 1.0], GOOD[1], GOOD[2]), "y_true contains 1 NaN or infinite"),
        ((GOOD[0], [0.0, np.inf, -np.inf], GOOD[2]), "mean contains 2 NaN or infinite"),
        ((GOOD[0], GOOD[1], [1.0, np.nan, 1.0]), "std contains 1 NaN or infinite"),
        ((GOOD[0], GOOD[1], [1.0, 0.0, 1.0]), "std must be strictly positive; 1 value"),
        ((GOOD[0], GOOD[1], [-1.0, 1.0, -2.0]), "std must be strictly positive; 2 value"),
        ((GOOD[0][:, None], GOOD[1], GOOD[2]), r"y_true must be 1-D, got .* shape \(3, 1\)"),
        ((GOOD[0], GOOD[1], np.ones((3, 3))), "std must be 1-D"),
    ],
)
def test_bad_inputs_raise_clear_value_error(fn, args, message):
    with pytest.raises(ValueError, match=message):
        fn(*args)


@pytest.mark.parametrize("fn", [pm.interval_coverage, pm.interval_width])
@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, "0.9", True])
def test_bad_level_raises(fn, level):
    with pytest.raises(ValueError, match="level"):
        fn(*GOOD, level=level)


def test_non_numeric_input_raises_value_error():
    with pytest.raises(ValueError, match="y_true must be a 1-D array of numbers"):
        pm.rmse(["a", "b"], [1.0, 2.0])

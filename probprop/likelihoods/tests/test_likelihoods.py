"""The likelihood pieces: their closed forms against quadrature and Monte Carlo, and the seam
that lets a new likelihood drive PBP without a change to ``probprop/learners/pbp.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probprop.learners import pbp
from probprop.likelihoods import Gamma, GaussianGammaNoise, GaussianNoise, HeteroscedasticGaussian, Likelihood

GH_X, GH_W = np.polynomial.hermite_e.hermegauss(80)  # nodes/weights for E[g(Z)], Z ~ N(0, 1) (times sqrt(2 pi))


def expect(g, mean, var):
    """E[g(f)] for f ~ N(mean, var) by 80-point Gauss-Hermite quadrature."""
    return np.sum(GH_W * g(mean + np.sqrt(var) * GH_X)) / math.sqrt(2 * math.pi)


# ---------------------------------------------------------------------------------------------
# Test-only likelihoods, plugged into PBP through PBPSpec(likelihood=...)


@dataclass(frozen=True)
class StudentT(Likelihood):
    """y | f ~ Student-t(df, loc=f, scale): log Z by 1-D Gauss-Hermite quadrature, its derivatives
    by autodiff (the base class's adf_output). Nothing of it is in pbp.py."""

    df: float = 3.0
    scale: float = 0.3

    def noise_variance(self, params):
        return jnp.asarray(self.scale**2 * self.df / (self.df - 2.0), jnp.float64)

    def log_z(self, y, mean, var, params):
        f = mean + jnp.sqrt(var) * GH_X
        log_p = jax.scipy.stats.t.logpdf(y, self.df, loc=f, scale=self.scale)
        return jax.scipy.special.logsumexp(log_p, b=GH_W) - 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class AutodiffGaussian(Likelihood):
    """A Gaussian of fixed variance that gives only its log Z: PBP must then match the built-in
    GaussianNoise (hand-written derivatives) to rounding."""

    variance: float = 0.25

    def noise_variance(self, params):
        return jnp.asarray(self.variance, jnp.float64)

    def log_z(self, y, mean, var, params):
        total = var + self.variance
        return -0.5 * (jnp.log(2 * jnp.pi * total) + (y - mean) ** 2 / total)


def test_student_t_log_z_matches_monte_carlo():
    lik = StudentT()
    rng = np.random.default_rng(0)
    from scipy import stats

    for mean, var, y in [(0.0, 1.0, 0.3), (1.5, 0.2, -2.0), (-0.5, 3.0, 4.0)]:
        f = rng.normal(mean, math.sqrt(var), 400_000)
        p = stats.t.pdf(y, lik.df, loc=f, scale=lik.scale)
        mc, se = p.mean(), p.std() / math.sqrt(f.size)
        got = math.exp(float(lik.log_z(y, mean, var, ())))
        assert abs(got - mc) < 5 * se + 1e-4 * mc, (mean, var, y, got, mc, se)


def test_default_adf_output_is_the_gradient_of_log_z():
    lik = StudentT()
    y, m, v, h = 0.7, 0.1, 0.5, 1e-6
    g_m, g_v, params, refused = lik.adf_output((), y, m, v, 1.0, True)
    fd_m = (lik.log_z(y, m + h, v, ()) - lik.log_z(y, m - h, v, ())) / (2 * h)
    fd_v = (lik.log_z(y, m, v + h, ()) - lik.log_z(y, m, v - h, ())) / (2 * h)
    np.testing.assert_allclose([g_m, g_v], [fd_m, fd_v], rtol=1e-6)
    assert params == () and float(refused) == 0.0
    g_m0, g_v0, _, _ = lik.adf_output((), y, m, v, 0.0, True)  # padding rows: no update
    assert float(g_m0) == 0.0 and float(g_v0) == 0.0


def test_a_likelihood_that_gives_only_log_z_trains_pbp_like_the_built_in_one():
    """The seam: PBP with AutodiffGaussian (autodiff derivatives of a user's log Z) equals PBP with
    the built-in fixed Gaussian noise (hand-written derivatives), epoch for epoch."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = X @ np.array([1.0, -0.5]) + 0.5 * rng.normal(size=60)
    key = jax.random.PRNGKey(0)
    builtin = pbp.init(key, pbp.PBPSpec(n_in=2, hidden=(6,), learn_noise=False, noise_variance=0.25))
    plugged = pbp.init(key, pbp.PBPSpec(n_in=2, hidden=(6,), likelihood=AutodiffGaussian(0.25)))
    for _ in range(3):
        builtin, plugged = pbp.update(builtin, X, y), pbp.update(plugged, X, y)
    for a, b in zip(builtin.means + builtin.variances, plugged.means + plugged.variances):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    m1, v1 = pbp.predict(builtin, X)
    m2, v2 = pbp.predict(plugged, X)
    np.testing.assert_allclose(m1, m2, rtol=1e-9)
    assert float(pbp.noise_variance(plugged)) == 0.25


def test_student_t_pbp_is_robust_to_an_outlier():
    """One ADF update on a gross outlier: the Gaussian moves the posterior mean of a Bayesian
    linear model far, the heavy-tailed Student-t barely (its influence function is bounded)."""
    X = np.array([[1.0]])
    key = jax.random.PRNGKey(0)
    moves = {}
    for name, lik in [("gauss", GaussianNoise()), ("t", StudentT(df=3.0, scale=0.3))]:
        spec = pbp.PBPSpec(n_in=1, hidden=(), likelihood=lik, noise_variance=0.27)
        state = pbp.init(key, spec)
        updated = pbp.adf_update(state, X[0], jnp.asarray(50.0))
        moves[name] = float(pbp.predict(updated, X)[0][0] - pbp.predict(state, X)[0][0])
        assert np.all([np.all(np.isfinite(m)) for m in updated.means])
    assert moves["gauss"] > 1.0 and abs(moves["t"]) < 0.05 * moves["gauss"], moves


# ---------------------------------------------------------------------------------------------
# The three Gaussian pieces


@pytest.mark.parametrize("m, v, y, s2", [(0.0, 1.0, 0.5, 0.3), (2.0, 0.1, -1.0, 2.0)])
def test_gaussian_adf_output_is_the_exact_derivative_of_log_z(m, v, y, s2):
    lik = GaussianNoise()
    params = lik.init_params(s2)
    g_m, g_v, _, refused = lik.adf_output(params, y, m, v, 1.0, True)
    grad = jax.grad(lambda mm, vv: lik.log_z(y, mm, vv, params), argnums=(0, 1))(m, v)
    np.testing.assert_allclose([g_m, g_v], grad, rtol=1e-12)
    assert float(refused) == 0.0 and float(lik.noise_variance(params)) == pytest.approx(s2)


def test_gamma_noise_update_moves_towards_the_observed_residuals():
    lik = GaussianGammaNoise(6.0, 6.0)
    params = lik.init_params()
    assert isinstance(params, Gamma) and float(lik.noise_variance(params)) == pytest.approx(1.2)
    # a residual of 3 standard deviations makes the noise variance larger, a tiny one smaller
    _, _, big, _ = lik.adf_output(params, 3.0 * math.sqrt(1.3), 0.0, 0.1, 1.0, True)
    _, _, small, _ = lik.adf_output(params, 0.01, 0.0, 0.1, 1.0, True)
    assert float(lik.noise_variance(big)) > 1.2 > float(lik.noise_variance(small))
    _, _, kept, refused = lik.adf_output(params, 3.0, 0.0, 0.1, 1.0, False)  # keep=False: no update
    assert kept == params and float(refused) == 0.0


def test_heteroscedastic_expected_log_likelihood_matches_quadrature():
    """DVI's closed form, E[log N(y | f, e^l)] with f and l independent Gaussians, against a 2-D
    Gauss-Hermite quadrature (exact up to quadrature error: the form is exact for independence)."""
    lik = HeteroscedasticGaussian()
    mean = np.array([[0.3, -1.0]])
    var = np.array([[0.5, 0.2]])
    y = np.array([1.1])
    got = float(lik.expected_log_likelihood(y, mean, var)[0])

    def inner(f):
        return np.array([expect(lambda l: -0.5 * (np.log(2 * np.pi) + l + (y[0] - fi) ** 2 * np.exp(-l)),
                                mean[0, 1], var[0, 1]) for fi in f])

    want = expect(inner, mean[0, 0], var[0, 0])
    assert got == pytest.approx(want, rel=1e-10)
    # and its noise variance is the log-normal mean
    assert float(lik.noise_from_outputs(mean, var)[0]) == pytest.approx(math.exp(-1.0 + 0.1))


def test_tagi_deltas_of_the_gaussian_are_the_conditioning_of_y_on_z():
    lik = GaussianNoise()
    z_mean, z_var = np.array([[0.5], [1.0]]), np.array([[0.4], [0.1]])
    y, keep = np.array([1.0, 0.0]), np.array([True, False])
    d_mean, d_var = lik.tagi_deltas(z_mean, z_var, y, keep, 0.09)
    S = 0.4 + 0.09
    np.testing.assert_allclose(np.asarray(d_mean)[:, 0], [(1.0 - 0.5) / S, 0.0])
    np.testing.assert_allclose(np.asarray(d_var)[:, 0], [-1.0 / S, 0.0])
    # posterior of Z from the deltas equals Gaussian conditioning: var_z - var_z^2 / S
    assert 0.4 + 0.4**2 * float(d_var[0, 0]) == pytest.approx(0.4 * 0.09 / S)


# ---------------------------------------------------------------------------------------------
# Heteroscedastic PBP's log Z: a 1-D quadrature over the log noise variance


def _fine_log_z(r, v_f, m_l, v_l):
    """log of the integral of N(r | 0, v_f + e^l) N(l | m_l, v_l) dl by the trapezoid rule on 2 million
    nodes spanning both the prior on l and the likelihood's peak, in the log domain."""
    sd = math.sqrt(v_l)
    peak = math.log(max(r * r - v_f, 1e-300))
    lo = max(min(m_l, peak) - 15 * sd - 30, m_l - 40 * sd - 30)
    grid = np.linspace(lo, max(m_l, peak) + 15 * sd + 30, 2_000_001)
    s = v_f + np.exp(grid)
    log_f = -0.5 * (np.log(2 * np.pi * s) + r * r / s) - 0.5 * (grid - m_l) ** 2 / v_l - 0.5 * np.log(2 * np.pi * v_l)
    top = log_f.max()
    return math.log(np.trapezoid(np.exp(log_f - top), grid)) + top


HET_CASES = [(r, v_f, m_l, v_l) for r in (0.0, 0.7, 3.0, 12.0) for v_f in (1e-4, 0.05, 1.0) for m_l in (-6.0, -1.0, 1.5)
             for v_l in (1e-5, 0.05, 1.0, 8.0, 30.0)]


def test_heteroscedastic_log_z_matches_a_fine_integral():
    """The quadrature against a 2-million-node integral over residuals, function and log-noise moments
    from a converged network's (v_l 1e-5) to an untrained one's (30), the residual up to 12 standardised units."""
    from probprop.likelihoods.gaussian import heteroscedastic_log_z

    log_z = jax.jit(jax.vmap(heteroscedastic_log_z))
    args = np.array([(r, 0.0, v_f, m_l, v_l) for r, v_f, m_l, v_l in HET_CASES]).T
    with jax.enable_x64(True):
        got = np.asarray(log_z(*args))
    want = np.array([_fine_log_z(*case) for case in HET_CASES])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_heteroscedastic_log_z_matches_monte_carlo_and_the_exact_limit():
    """Z = E_{f, l}[N(y | f, e^l)] by Monte Carlo over both outputs (an oracle independent of the
    quadrature's construction); with v_l -> 0 the noise is e^{m_l} and log Z is the Gaussian one."""
    lik = HeteroscedasticGaussian()
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for y, mean, var in [(0.4, (0.1, -1.0), (0.3, 0.5)), (2.5, (-0.5, 0.2), (0.05, 2.0)), (-1.0, (0.0, -3.0), (1.0, 0.1))]:
            f = mean[0] + math.sqrt(var[0]) * rng.standard_normal(2_000_000)
            l = mean[1] + math.sqrt(var[1]) * rng.standard_normal(2_000_000)
            density = np.exp(-0.5 * (np.log(2 * np.pi) + l + (y - f) ** 2 * np.exp(-l)))
            got = float(lik.log_z(y, jnp.array(mean), jnp.array(var)))
            assert math.exp(got) == pytest.approx(density.mean(), rel=5 * density.std() / density.mean() / 1414)
        # the deterministic-noise limit, value and gradient
        m, v, m_l = 0.3, 0.2, -0.7
        total = v + math.exp(m_l)
        got = float(lik.log_z(1.1, jnp.array([m, m_l]), jnp.array([v, 1e-14])))
        assert got == pytest.approx(-0.5 * (math.log(2 * math.pi * total) + (1.1 - m) ** 2 / total), rel=1e-9)
        g_mean, g_var, _, _ = lik.adf_output((), 1.1, jnp.array([m, m_l]), jnp.array([v, 1e-14]), 1.0, True)
        assert float(g_mean[0]) == pytest.approx((1.1 - m) / total, rel=1e-7)
        assert float(g_var[0]) == pytest.approx(0.5 * ((1.1 - m) ** 2 / total - 1) / total, rel=1e-6)


@pytest.mark.parametrize("case", [(0.4, 0.1, 0.3, -1.0, 0.5), (3.0, -0.5, 0.05, -2.0, 4.0), (0.0, 0.0, 1.0, 1.0, 0.01)])
def test_heteroscedastic_log_z_gradients_match_finite_differences(case):
    """What ADF pulls back: d log Z / d(m_f, v_f, m_l, v_l) by autodiff with the nodes held fixed,
    against central differences of the quadrature itself."""
    from probprop.likelihoods.gaussian import heteroscedastic_log_z

    with jax.enable_x64(True):
        grads = jax.grad(heteroscedastic_log_z, argnums=(1, 2, 3, 4))(*map(jnp.float64, case))
        for i, g in enumerate(grads, start=1):
            h = 1e-5 * max(1.0, abs(case[i]))
            up, down = list(case), list(case)
            up[i] += h
            down[i] -= h
            fd = (float(heteroscedastic_log_z(*up)) - float(heteroscedastic_log_z(*down))) / (2 * h)
            assert float(g) == pytest.approx(fd, rel=1e-5, abs=1e-8), i

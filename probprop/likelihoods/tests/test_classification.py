"""The classification likelihoods against independent oracles: log Z against a fine trapezoid
integral and Monte Carlo, its gradients against finite differences, the binary probit's closed
forms against autodiff, the uncertainty scores against Monte Carlo."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from probprop.learners.base import float64
from probprop.likelihoods.classification import MultinomialProbit, Probit, _log_class_probability
from probprop.moments.softmax import cubature_points, diagonal_root


def _reference_log_z(y, m, v):
    """log P(argmax g = y), g ~ N(m, diag(1 + v)), by the trapezoid rule on 100,001 points of [-50, 50]."""
    s = np.sqrt(1 + v)
    a, b = (m[y] - m) / s, s[y] / s
    u = np.linspace(-50, 50, 100_001)
    log_f = stats.norm.logpdf(u) + sum(stats.norm.logcdf(a[k] + b[k] * u) for k in range(len(m)) if k != y)
    top = log_f.max()
    return np.log(np.trapezoid(np.exp(log_f - top), u)) + top


def _cases(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        k = int(rng.integers(2, 11))
        m = rng.normal(0, rng.choice([0.1, 1, 5, 20]), k)
        v = rng.choice([0, 0.01, 1, 10, 100]) * rng.uniform(0, 1, k)
        yield int(rng.integers(k)), m, v


@float64
def test_multinomial_log_z_matches_a_fine_integral_far_into_the_tails():
    f = jax.jit(_log_class_probability)
    worst = 0.0
    for y, m, v in _cases(30):
        ref = _reference_log_z(y, m, v)
        got = float(f(y, jnp.asarray(m), jnp.asarray(v)))
        worst = max(worst, abs(got - ref) / max(1.0, abs(ref)))
    assert worst < 1e-9


@float64
def test_multinomial_probabilities_match_monte_carlo_and_sum_to_one():
    rng = np.random.default_rng(1)
    m, v = rng.normal(0, 1.5, 4), rng.uniform(0, 3, 4)
    like = MultinomialProbit(4)
    p = np.asarray(like.probabilities(jnp.asarray(m)[None], jnp.asarray(v)[None]))[0]
    g = m + np.sqrt(1 + v) * rng.standard_normal((400_000, 4))
    freq = np.bincount(g.argmax(1), minlength=4) / len(g)
    se = np.sqrt(freq * (1 - freq) / len(g))
    assert np.all(np.abs(p - freq) < 4 * se + 1e-4)
    assert abs(p.sum() - 1) < 1e-12


@float64
def test_shared_grid_probabilities_equal_the_per_class_quadrature():
    like = MultinomialProbit(10)
    rng = np.random.default_rng(2)
    for scale, var in ((3, 0), (3, 1), (10, 5), (20, 30)):
        m, v = rng.normal(0, scale, (200, 10)), rng.uniform(0, var, (200, 10))
        a = np.asarray(jax.jit(like.probabilities)(m, v))
        b = np.asarray(jax.jit(like.exact_probabilities)(m, v))
        assert np.abs(a - b).max() < 1e-7


@float64
def test_multinomial_gradients_match_finite_differences():
    like = MultinomialProbit(4)
    grad = jax.jit(jax.grad(lambda y, m, v: like.log_z(y, m, v), argnums=(1, 2)))
    rng = np.random.default_rng(3)
    for _ in range(3):
        m, v, y = rng.normal(0, 3, 4), rng.uniform(0.01, 4, 4), int(rng.integers(4))
        gm, gv = (np.asarray(g) for g in grad(y, jnp.asarray(m), jnp.asarray(v)))
        h = 1e-5
        for k in range(4):
            e = np.eye(4)[k] * h
            fd_m = (_reference_log_z(y, m + e, v) - _reference_log_z(y, m - e, v)) / (2 * h)
            fd_v = (_reference_log_z(y, m, v + e) - _reference_log_z(y, m, v - e)) / (2 * h)
            assert abs(gm[k] - fd_m) < 1e-5 * max(1, abs(fd_m))
            assert abs(gv[k] - fd_v) < 1e-5 * max(1, abs(fd_v))


@float64
def test_a_badly_wrong_point_still_has_a_finite_accurate_gradient():
    """Z ~ 1e-200: the log domain keeps log Z and its gradient (which pulls the right class up)."""
    m, v = jnp.asarray([30.0, 0.0, 0.0]), jnp.asarray([0.1, 0.1, 0.1])
    like = MultinomialProbit(3)
    log_z = float(like.log_z(1, m, v))
    assert log_z == pytest.approx(_reference_log_z(1, np.asarray(m), np.asarray(v)), rel=1e-9)
    gm, gv = jax.grad(lambda m, v: like.log_z(1, m, v), argnums=(0, 1))(m, v)
    assert np.all(np.isfinite(gm)) and np.all(np.isfinite(gv))
    assert gm[1] > 0 > gm[0]


@float64
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_binary_probit_closed_form_is_autodiff_of_log_z(y):
    like = Probit()
    for m, v in ((0.3, 0.5), (-8.0, 2.0), (40.0, 0.1), (-40.0, 0.1)):
        gm, gv, _, _ = like.adf_output((), jnp.asarray(y), jnp.asarray(m), jnp.asarray(v), 1.0, True)
        am, av = jax.grad(lambda a, b: like.log_z(jnp.asarray(y), a, b), argnums=(0, 1))(jnp.asarray(m), jnp.asarray(v))
        assert float(gm) == pytest.approx(float(am), rel=1e-9, abs=1e-300)
        assert float(gv) == pytest.approx(float(av), rel=1e-9, abs=1e-300)
        sign = 2 * y - 1
        assert float(like.log_z(jnp.asarray(y), m, v)) == pytest.approx(stats.norm.logcdf(sign * m / np.sqrt(1 + v)), rel=1e-12)


@float64
def test_binary_probit_uncertainty_matches_monte_carlo():
    m, v = jnp.asarray([0.5, -2.0, 3.0]), jnp.asarray([0.5, 4.0, 9.0])
    probs, var, expected_entropy = Probit().probability_moments(m, v)
    rng = np.random.default_rng(4)
    f = np.asarray(m) + np.sqrt(np.asarray(v)) * rng.standard_normal((400_000, 3))
    p1 = stats.norm.cdf(f)
    ent = -(p1 * np.log(p1 + 1e-300) + (1 - p1) * np.log(1 - p1 + 1e-300))
    np.testing.assert_allclose(np.asarray(probs)[:, 1], p1.mean(0), atol=3e-3)
    np.testing.assert_allclose(np.asarray(var)[:, 1], p1.var(0), rtol=2e-2)
    np.testing.assert_allclose(np.asarray(expected_entropy), ent.mean(0), rtol=1e-2)


@float64
def test_multiclass_uncertainty_scores_rank_like_monte_carlo():
    """The spherical cubature (2K points) against 1,000 draws of f: the mean probabilities agree,
    the mutual information and the summed variance rank the points alike (measured: Spearman
    0.94 and 0.82 on this set; median relative errors 18 % and 29 %, said in the docs)."""
    like = MultinomialProbit(10)
    rng = np.random.default_rng(5)
    m, v = rng.normal(0, 3, (64, 10)), rng.uniform(0, 2, (64, 10))
    probs, var, expected = (np.asarray(a) for a in jax.jit(like.probability_moments)(m, v))
    draws = rng.standard_normal((1000, 64, 10))
    at = np.asarray(jax.jit(like.probabilities)(m + np.sqrt(v) * draws, np.zeros_like(draws)))
    ent = lambda p: -(p * np.log(np.clip(p, 1e-300, None))).sum(-1)
    mi_mc = ent(at.mean(0)) - ent(at).mean(0)
    mi = ent(probs) - expected
    assert np.abs(probs - at.mean(0)).max() < 0.03
    assert stats.spearmanr(mi, mi_mc)[0] > 0.85
    assert stats.spearmanr(var.sum(1), at.var(0).sum(1))[0] > 0.7


@float64
@pytest.mark.parametrize("k", [2, 3, 10])
def test_cubature_points_read_off_one_grid_equal_each_point_on_its_own(k):
    """_cubature_probabilities (one grid for the 2K points, each moving one coordinate) against
    each point on its own grid of 600 nodes: zero variances, spread and shifted outputs."""
    from probprop.likelihoods import classification as cl

    rng = np.random.default_rng(k)
    m, v = rng.normal(0, 3, (64, k)) + rng.normal(0, 20, (64, 1)), rng.uniform(0, 5, (64, k))
    v[:10] = 0.0
    v[10:20, 0] = 0.0
    points = cubature_points(jnp.asarray(m), diagonal_root(jnp.asarray(v)))
    want = np.asarray(cl._probabilities_shared(points, jnp.zeros_like(points), 600))
    got = np.asarray(jax.jit(cl._cubature_probabilities)(m, v))
    assert got.shape == (64, 2 * k, k)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-13)


@float64
def test_cubature_at_the_widest_step_of_one_grid_stays_within_its_bound():
    """Outputs whose cubature points spread nearly as far as one grid takes (a step just under
    CUBATURE_STEP = 0.4): within 1e-10 of 600 nodes per point (measured: 2e-11 at steps up to 0.4)."""
    from probprop.likelihoods import classification as cl

    rng = np.random.default_rng(11)
    m, v = rng.normal(0, 1, (64, 10)), np.full((64, 10), 0.01)
    v[:, 0] = 100.0  # the point m_0 + sqrt(10 * 100) tops the others' maxima by ~30 units: a step of ~0.38-0.39
    m[:, 0] = 0.0
    points = cubature_points(jnp.asarray(m), diagonal_root(jnp.asarray(v)))
    tops = np.asarray(points).max(-1)  # each point's largest coordinate, (64, 20)
    step = (tops.max(-1) - tops.min(-1) + 18) / (cl.N_CUBATURE - 1)  # each row's
    assert 0.37 < step.max() <= cl.CUBATURE_STEP  # the one grid, near its widest
    want = np.asarray(cl._probabilities_shared(points, jnp.zeros_like(points), 600))
    got = np.asarray(jax.jit(cl._cubature_probabilities)(m, v))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@float64
def test_cubature_on_outputs_too_spread_for_one_grid_goes_point_by_point(monkeypatch):
    from probprop.likelihoods import classification as cl

    rng = np.random.default_rng(7)
    m, v = rng.normal(0, 3, (16, 10)), rng.uniform(0, 2, (16, 10))
    v[3, 4] = 400.0  # one row's points' largest coordinates spread over ~66 units: the whole block per point
    points = cubature_points(jnp.asarray(m), diagonal_root(jnp.asarray(v)))
    per_point = np.asarray(cl._probabilities_shared(points, jnp.zeros_like(points), cl.N_GIVEN))
    np.testing.assert_allclose(np.asarray(jax.jit(cl._cubature_probabilities)(m, v)), per_point, rtol=1e-13, atol=1e-16)
    # forced onto the one grid (a step of 0.66 there), the same block reads differently: the branch above was per point
    monkeypatch.setattr(cl, "CUBATURE_STEP", 1e9)
    jax.clear_caches()  # the step is read when the program is traced
    shared = np.asarray(jax.jit(cl._cubature_probabilities)(m, v))
    assert np.max(np.abs(shared - per_point) / (per_point + 1e-16)) > 1e-11
    np.testing.assert_allclose(shared, per_point, rtol=0, atol=1e-7)


def test_n_classes_is_checked():
    with pytest.raises(ValueError, match="n_classes"):
        MultinomialProbit(1)


@float64
def test_default_tagi_deltas_are_the_gaussian_innovation():
    """The innovation the base class derives from log Z alone (ADF moment match) is TAGI's
    Gaussian one, ((y - m)/S, -1/S), for a likelihood that states only a Gaussian log Z."""
    from probprop.likelihoods import GaussianNoise
    from probprop.likelihoods.base import Likelihood

    class LogZOnly(Likelihood):
        def log_z(self, y, mean, var, params=()):
            return jnp.sum(stats_norm_logpdf(y, mean, var + 0.3))

    def stats_norm_logpdf(y, m, s2):
        return -0.5 * jnp.log(2 * jnp.pi * s2) - 0.5 * (y - m) ** 2 / s2

    rng = np.random.default_rng(0)
    m, v, y = rng.normal(size=(6, 1)), rng.uniform(0.1, 2, (6, 1)), rng.normal(size=6)
    keep = np.array([True] * 5 + [False])
    got = LogZOnly().tagi_deltas(jnp.asarray(m), jnp.asarray(v), jnp.asarray(y), jnp.asarray(keep))
    want = GaussianNoise().tagi_deltas(jnp.asarray(m), jnp.asarray(v), jnp.asarray(y), jnp.asarray(keep), 0.3)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    assert got[0][5, 0] == 0 and got[1][5, 0] == 0


@float64
@pytest.mark.parametrize("likelihood", [Probit(), MultinomialProbit(4)], ids=["probit", "multinomial"])
def test_tagi_deltas_give_the_monte_carlo_posterior_of_each_output(likelihood):
    """m + v delta_mu and v + v^2 delta_var are the posterior mean and variance of each output
    unit given the class: checked by rejection sampling of the latent utilities."""
    rng = np.random.default_rng(3)
    k = likelihood.n_outputs
    m, v = rng.normal(0, 1, k), rng.uniform(0.3, 2.0, k)
    y = 1 if k == 1 else 2
    d_mean, d_var = likelihood.tagi_deltas(jnp.asarray(m[None]), jnp.asarray(v[None]), jnp.asarray([float(y)]),
                                           jnp.asarray([True]))
    post_mean, post_var = m + v * np.asarray(d_mean[0]), v + v * v * np.asarray(d_var[0])
    n = 2_000_000
    f = m + np.sqrt(v) * rng.standard_normal((n, k))
    g = f + rng.standard_normal((n, k))
    accepted = f[(g[:, 0] > 0) if k == 1 else (g.argmax(1) == y)]
    se_mean = accepted.std(0) / np.sqrt(len(accepted))
    assert np.all(np.abs(accepted.mean(0) - post_mean) < 5 * se_mean)
    se_var = accepted.var(0) * np.sqrt(2.0 / len(accepted))
    assert np.all(np.abs(accepted.var(0) - post_var) < 5 * se_var)
    assert np.all(post_var > 0) and np.all(post_var < v)


@float64
def test_log_mean_probability_is_the_log_of_the_averaged_softmax_without_underflow():
    from probprop.likelihoods.classification import log_mean_probability_of

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (5, 7, 3))
    y = rng.integers(0, 3, 7)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    want = np.log(probs.mean(0)[np.arange(7), y])
    np.testing.assert_allclose(log_mean_probability_of(jnp.asarray(logits), jnp.asarray(y)), want, rtol=1e-12)
    wrong = np.zeros((2, 1, 3))
    wrong[:, 0, 0] = 2000.0  # every network sure of class 0; the truth is class 2
    got = float(log_mean_probability_of(jnp.asarray(wrong), jnp.asarray([2]))[0])
    assert got == pytest.approx(-2000.0, rel=1e-12)

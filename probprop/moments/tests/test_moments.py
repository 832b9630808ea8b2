"""Closed-form moment maps against Monte Carlo, autodiff and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import probprop  # noqa: F401  (enables float64)
from probprop.moments import linear, linear_vjp, mills_terms, relu, relu_with_jacobian

N_MC = 200_000
Z_MAX = 5.0  # accept MC disagreement up to 5 standard errors


def assert_mc_moments(samples, mean, var):
    """Compare closed-form (mean, var) with MC estimates, tolerance from the MC standard error."""
    samples = np.asarray(samples)
    n = samples.shape[0]
    mc_mean = samples.mean(0)
    centred = samples - mc_mean
    mc_var = (centred**2).mean(0)
    se_mean = np.sqrt(mc_var / n)
    se_var = np.sqrt(np.maximum((centred**4).mean(0) - mc_var**2, 0) / n)
    np.testing.assert_array_less(np.abs(mc_mean - mean), Z_MAX * se_mean + 1e-12)
    np.testing.assert_array_less(np.abs(mc_var - var), Z_MAX * se_var + 1e-12)


def test_linear_layer_moments_match_monte_carlo():
    rng = np.random.default_rng(0)
    out, n = 4, 6
    M = rng.normal(size=(out, n))
    V = rng.uniform(0.05, 1.0, size=(out, n))
    m_in = rng.normal(size=n)
    v_in = rng.uniform(0.0, 2.0, size=n)
    mean, var = linear(jnp.asarray(M), jnp.asarray(V), jnp.asarray(m_in), jnp.asarray(v_in))
    W = M + np.sqrt(V) * rng.standard_normal((N_MC, out, n))
    z = m_in + np.sqrt(v_in) * rng.standard_normal((N_MC, n))
    a = np.einsum("sij,sj->si", W, z) / np.sqrt(n)
    assert_mc_moments(a, np.asarray(mean), np.asarray(var))


def test_linear_deterministic_inputs_equal_zero_variance_inputs():
    rng = np.random.default_rng(1)
    M, V = jnp.asarray(rng.normal(size=(3, 5))), jnp.asarray(rng.uniform(0.1, 1, (3, 5)))
    x = jnp.asarray(rng.normal(size=(7, 5)))
    a = linear(M, V, x, None)
    b = linear(M, V, x, jnp.zeros_like(x))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-14)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-14)


def test_linear_vjp_matches_autodiff():
    rng = np.random.default_rng(2)
    M, V = jnp.asarray(rng.normal(size=(3, 5))), jnp.asarray(rng.uniform(0.1, 1, (3, 5)))
    m, v = jnp.asarray(rng.normal(size=5)), jnp.asarray(rng.uniform(0.1, 1, 5))
    gm, gv = jnp.asarray(rng.normal(size=3)), jnp.asarray(rng.normal(size=3))
    f = lambda M, V, m, v: jnp.sum(gm * linear(M, V, m, v)[0] + gv * linear(M, V, m, v)[1])  # noqa: E731
    auto = jax.grad(f, argnums=(0, 1, 2, 3))(M, V, m, v)
    hand = linear_vjp(M, V, m, v, gm, gv)
    for a, h in zip(auto, hand):
        np.testing.assert_allclose(h, a, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("alpha", [-3.0, -1.0, -0.3, 0.0, 0.5, 2.0, 4.0])
@pytest.mark.parametrize("var", [0.3, 4.0])
def test_relu_moments_match_monte_carlo(alpha, var):
    rng = np.random.default_rng(3)
    m = alpha * np.sqrt(var)
    mean, out_var = relu(jnp.asarray([m]), jnp.asarray([var]))
    z = np.maximum(m + np.sqrt(var) * rng.standard_normal((N_MC, 1)), 0.0)
    assert_mc_moments(z, np.asarray(mean), np.asarray(out_var))


@pytest.mark.parametrize("alpha", [-6.0, -12.0, -29.0, -31.0, -36.0])
def test_relu_far_negative_tail_matches_truncated_monte_carlo(alpha):
    """For a << 0 plain MC sees no positive draw; sample the truncated normal instead:
    E[max(0,z)] = Phi(a) E[z | z > 0], E[max(0,z)^2] = Phi(a) E[z^2 | z > 0]."""
    rng = np.random.default_rng(4)
    var = 2.0
    s = np.sqrt(var)
    m = alpha * s
    mean, out_var = relu(jnp.asarray([m]), jnp.asarray([var]))
    p = stats.norm.cdf(alpha)
    t = stats.truncnorm.rvs(-alpha, np.inf, loc=m, scale=s, size=N_MC, random_state=rng)
    cond_mean, cond_m2 = t.mean(), (t**2).mean()
    se_mean = t.std() / np.sqrt(N_MC)
    se_m2 = (t**2).std() / np.sqrt(N_MC)
    expected_mean = p * cond_mean
    expected_var = p * cond_m2 - expected_mean**2
    assert float(mean[0]) > 0 and float(out_var[0]) > 0
    assert abs(float(mean[0]) - expected_mean) <= Z_MAX * p * se_mean
    # relative: the second moment dominates the variance in the tail
    assert abs(float(out_var[0]) - expected_var) <= Z_MAX * p * se_m2 + 1e-12 * expected_var


def test_mills_ratio_is_continuous_across_the_tail_switch():
    a = jnp.asarray([-30.0 - 1e-9, -30.0 + 1e-9])
    cdf, upper, gamma, r = mills_terms(a)
    assert abs(float(gamma[0] - gamma[1])) < 1e-6 * float(gamma[1])
    assert abs(float(r[0] - r[1])) < 1e-6 * float(r[1])
    # Phi and 1 - Phi from one erfc: both accurate at both ends
    np.testing.assert_allclose(cdf, stats.norm.cdf(np.asarray(a)), rtol=1e-12)
    np.testing.assert_allclose(mills_terms(jnp.asarray([8.0]))[1], stats.norm.sf(8.0), rtol=1e-12)


def test_relu_is_finite_everywhere_including_underflow():
    m = jnp.asarray([-1e6, -100.0, -40.0, 0.0, 40.0, 1e6])
    v = jnp.asarray([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    mean, var = relu(m, v)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(var))
    assert np.all(np.asarray(var) >= 0)
    np.testing.assert_allclose(mean[-1], 1e6)
    np.testing.assert_allclose(var[-1], 1.0, rtol=1e-9)
    m32, v32 = relu(m.astype(jnp.float32), v.astype(jnp.float32))
    assert np.all(np.isfinite(m32)) and np.all(np.isfinite(v32))


def test_relu_jacobian_matches_autodiff_and_finite_differences():
    rng = np.random.default_rng(5)
    m = jnp.asarray(np.concatenate([rng.normal(scale=2, size=20), [-45.0, -31.0, -29.0, 35.0]]))
    v = jnp.asarray(np.concatenate([rng.uniform(0.1, 3, 20), [1.0, 1.0, 1.0, 1.0]]))
    _, _, (dE_dm, dE_dv, dV_dm, dV_dv) = relu_with_jacobian(m, v)
    mean_fn = lambda m, v: relu(m, v)[0]  # noqa: E731
    var_fn = lambda m, v: relu(m, v)[1]  # noqa: E731
    for fn, dm, dv in ((mean_fn, dE_dm, dE_dv), (var_fn, dV_dm, dV_dv)):
        auto_m = jax.vmap(jax.grad(fn, argnums=0))(m, v)
        auto_v = jax.vmap(jax.grad(fn, argnums=1))(m, v)
        np.testing.assert_allclose(dm, auto_m, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(dv, auto_v, rtol=1e-7, atol=1e-12)
        h = 1e-6
        fd_m = (fn(m + h, v) - fn(m - h, v)) / (2 * h)
        fd_v = (fn(m, v + h) - fn(m, v - h)) / (2 * h)
        np.testing.assert_allclose(dm[:20], fd_m[:20], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(dv[:20], fd_v[:20], rtol=1e-5, atol=1e-8)


def test_relu_accepts_python_scalars():
    # N(0, 1): E[max(0, a)] = phi(0) = 1/sqrt(2 pi), E[max(0, a)^2] = 1/2
    mean, var = relu(0.0, 1.0)
    np.testing.assert_allclose(mean, 1 / np.sqrt(2 * np.pi), rtol=1e-15)
    np.testing.assert_allclose(var, 0.5 - 1 / (2 * np.pi), rtol=1e-14)
    # N(m, v) in general: E = m Phi(a) + s phi(a), E2 = (m^2 + v) Phi(a) + m s phi(a), a = m / s
    for m, v in ((-2, 4), (1.5, 0.25), (-0.3, 2.0)):
        s, a = np.sqrt(v), m / np.sqrt(v)
        e1 = m * stats.norm.cdf(a) + s * stats.norm.pdf(a)
        e2 = (m * m + v) * stats.norm.cdf(a) + m * s * stats.norm.pdf(a)
        out = relu(m, v)
        np.testing.assert_allclose(out, (e1, e2 - e1**2), rtol=1e-13)
        # a scalar gives exactly the value of the same point in an array, jacobian included
        scalar = jax.tree_util.tree_leaves(relu_with_jacobian(m, v))
        array = jax.tree_util.tree_leaves(relu_with_jacobian(jnp.asarray([float(m)]), jnp.asarray([float(v)])))
        for x, y in zip(scalar, array):
            assert np.shape(x) == () and x.dtype == y.dtype == jnp.float64
            assert float(x) == float(y[0])
    # a Python scalar follows the array's precision, as in the other activations
    m32 = jnp.asarray([0.5, -1.0], jnp.float32)
    for out in (relu(m32, 1.0), relu(1.0, m32 * m32)):
        assert all(x.dtype == jnp.float32 for x in out)
    np.testing.assert_array_equal(relu(m32, 1.0)[0], relu(m32, jnp.ones(2, jnp.float32))[0])

"""Heteroscedastic TAGI (AGVI): the moments behind each step, the simplified gains against the
step-by-step conditioning, the fixed-noise limit, and learning an input-dependent noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probprop  # noqa: F401  (enables float64)
from probprop.learners import tagi
from probprop.moments import exponential

N_MC = 400_000
Z_MAX = 5.0


@pytest.mark.parametrize("m, v", [(0.0, 0.01), (-2.0, 0.3), (1.0, 0.8)])
def test_exponential_moments_match_monte_carlo(m, v):
    z = np.random.default_rng(0).normal(m, np.sqrt(v), N_MC)
    a = np.exp(z)
    mean, var, jac = (float(t) for t in exponential(jnp.asarray(m), jnp.asarray(v)))
    se = a.std() / np.sqrt(N_MC)
    assert abs(a.mean() - mean) < Z_MAX * se
    dev2 = (a - a.mean()) ** 2
    assert abs(dev2.mean() - var) < Z_MAX * dev2.std() / np.sqrt(N_MC)
    cross = (z - z.mean()) * (a - a.mean())
    assert abs(cross.mean() - jac * v) < Z_MAX * cross.std() / np.sqrt(N_MC)  # Cov(Z, A) = J v


@pytest.mark.parametrize("m_s, s2", [(-1.0, 0.05), (0.5, 0.4)])
def test_prior_moments_of_the_noise_variance_and_the_squared_noise(m_s, s2):
    """Vbar2 = exp(Z_s), V | Vbar2 ~ N(0, Vbar2): E[V^2] = mu, Cov(Vbar2, V^2) = Var[Vbar2] =
    mu^2 expm1(s2), Var[V^2] = mu^2 (3 expm1(s2) + 2): the step-3 prior the gains rest on."""
    rng = np.random.default_rng(1)
    vbar2 = np.exp(rng.normal(m_s, np.sqrt(s2), N_MC))
    v_sq = vbar2 * rng.standard_normal(N_MC) ** 2
    mu = np.exp(m_s + s2 / 2)
    for sample, expected in [
        (v_sq, mu),
        ((vbar2 - vbar2.mean()) * (v_sq - v_sq.mean()), mu**2 * np.expm1(s2)),
        ((v_sq - v_sq.mean()) ** 2, mu**2 * (3 * np.expm1(s2) + 2)),
    ]:
        assert abs(sample.mean() - expected) < Z_MAX * sample.std() / np.sqrt(N_MC), (sample.mean(), expected)


def step_by_step(m_mu, v_mu, m_s, s2, y):
    """The four AGVI steps written with explicit covariances and gains (no simplification)."""
    mu = np.exp(m_s + s2 / 2)  # E[Vbar2]
    var_vbar2 = mu**2 * np.expm1(s2)
    cov_zs_vbar2 = s2 * mu
    S = v_mu + mu
    # 1. Gaussian conditioning of (Z_mu, V) on y = Z_mu + V
    post_m_mu, post_v_mu = m_mu + v_mu / S * (y - m_mu), v_mu - v_mu**2 / S
    m_v, v_v = mu / S * (y - m_mu), mu - mu**2 / S
    # 2. moments of V^2 | y
    e_sq, var_sq = m_v**2 + v_v, 2 * v_v**2 + 4 * m_v**2 * v_v
    # 3. condition Vbar2 on V^2 (prior joint: E[V^2] = mu, Cov = Var[Vbar2], Var[V^2] = 3 E[Vbar2^2] - mu^2)
    prior_var_sq = 3 * (var_vbar2 + mu**2) - mu**2
    K = var_vbar2 / prior_var_sq
    post_m_vbar2 = mu + K * (e_sq - mu)
    post_v_vbar2 = var_vbar2 + K**2 * (var_sq - prior_var_sq)
    # 4. condition Z_s on Vbar2
    J = cov_zs_vbar2 / var_vbar2
    post_m_s = m_s + J * (post_m_vbar2 - mu)
    post_s2 = s2 + J**2 * (post_v_vbar2 - var_vbar2)
    return (post_m_mu, post_v_mu), (post_m_s, post_s2)


def test_innovations_equal_the_step_by_step_conditioning():
    rng = np.random.default_rng(2)
    n = 50
    m_mu, v_mu = rng.normal(size=n), rng.uniform(0.01, 1.0, n)
    m_s, s2 = rng.normal(-1.0, 1.0, n), rng.uniform(1e-3, 1.0, n)
    y = m_mu + rng.normal(size=n) * 1.5
    d_mean, d_var = (np.asarray(a) for a in tagi.heteroscedastic_deltas(
        jnp.stack([m_mu, m_s], 1), jnp.stack([v_mu, s2], 1), jnp.asarray(y)))
    (pm_mu, pv_mu), (pm_s, pv_s) = step_by_step(m_mu, v_mu, m_s, s2, y)
    # innovation form: posterior = prior + var * delta_mu, prior var + var^2 * delta_var
    np.testing.assert_allclose(m_mu + v_mu * d_mean[:, 0], pm_mu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v_mu + v_mu**2 * d_var[:, 0], pv_mu, rtol=1e-12)
    np.testing.assert_allclose(m_s + s2 * d_mean[:, 1], pm_s, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(s2 + s2**2 * d_var[:, 1], pv_s, rtol=1e-10, atol=1e-13)


def test_a_certain_noise_unit_is_the_homoscedastic_update():
    """With Var[Z_s] -> 0 the noise is known, exp(m_s): the mean unit gets the homoscedastic
    innovation with sigma_v^2 = exp(m_s) and the noise unit's moments do not move."""
    m_mu, v_mu, m_s, y = 0.3, 0.2, np.log(0.25), 1.1
    s2 = 1e-12
    d_mean, d_var = (np.asarray(a)[0] for a in tagi.heteroscedastic_deltas(
        jnp.asarray([[m_mu, m_s]]), jnp.asarray([[v_mu, s2]]), jnp.asarray([y])))
    S = v_mu + 0.25
    np.testing.assert_allclose(d_mean[0], (y - m_mu) / S, rtol=1e-9)
    np.testing.assert_allclose(d_var[0], -1 / S, rtol=1e-9)
    assert np.isfinite(d_mean[1]) and np.isfinite(d_var[1])
    assert abs(s2 * d_mean[1]) < 1e-11 and abs(s2**2 * d_var[1]) < 1e-22


def hetero_1d(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    return x[:, None], np.sin(x) + (0.1 + 0.3 * np.abs(x)) * rng.standard_normal(n)


def test_learns_an_input_dependent_noise_and_beats_the_fixed_noise_network():
    X, y = hetero_1d(600, 0)
    X_test, y_test = hetero_1d(4000, 1)
    lls, noise = {}, None
    for het in (False, True):
        spec = tagi.TAGISpec(n_in=1, hidden=(50,), heteroscedastic=het, sigma_v=0.3)
        state = tagi.init(jax.random.PRNGKey(0), spec)
        for _ in range(40):
            state = tagi.update(state, X, y)
        mean, var = (np.asarray(a) for a in tagi.predict(state, X_test))
        total = var + np.asarray(tagi.noise_variance(state, X_test))
        lls[het] = np.mean(-0.5 * (np.log(2 * np.pi * total) + (y_test - mean) ** 2 / total))
        if het:
            noise = np.sqrt(np.asarray(tagi.noise_variance(state, np.array([[-2.5], [0.0], [2.5]]))))
            assert int(state.rejected) == 0
    assert lls[True] > lls[False] + 0.2, lls
    assert noise[0] > 2.5 * noise[1] and noise[2] > 2.5 * noise[1], noise  # truth: 0.85 vs 0.1
    assert 0.5 < noise[0] < 1.3 and 0.5 < noise[2] < 1.3, noise


def test_heteroscedastic_network_shape_and_errors():
    spec = tagi.TAGISpec(n_in=2, hidden=(4,), heteroscedastic=True, sigma_v=0.5)
    assert spec.layer_sizes == (2, 4, 2) and spec.weight_shapes[-1] == (2, 5)
    state = tagi.init(jax.random.PRNGKey(0), spec)
    np.testing.assert_allclose(float(state.means[-1][1, -1]), np.log(0.25))  # noise unit starts at sigma_v^2
    with pytest.raises(ValueError, match="needs X"):
        tagi.noise_variance(state)
    with pytest.raises(ValueError, match="homoscedastic"):
        tagi.select_sigma_v(np.zeros((20, 2)), np.arange(20.0), spec=spec)

"""The dense layer piece: its pullback against autodiff of its forward map, its moments against
Monte Carlo, and PBP built from explicit layer pieces equal to the default network."""

import jax
import jax.numpy as jnp
import numpy as np

from probprop.layers import Dense
from probprop.learners import pbp


def test_pullback_is_the_vjp_of_the_forward_moments():
    rng = np.random.default_rng(0)
    M, V = rng.normal(size=(4, 6)), rng.uniform(0.1, 1.0, size=(4, 6))
    mean, var = rng.normal(size=5), rng.uniform(0.1, 1.0, size=5)
    g_mean, g_var = rng.normal(size=4), rng.normal(size=4)
    layer = Dense()
    inputs, _ = layer.forward(M, V, mean, var, True)
    dM, dV, d_mean, d_var = layer.pullback(M, V, inputs, g_mean, g_var, True)

    def f(M, V, mean, var):
        _, (m, v) = layer.forward(M, V, mean, var, True)
        return jnp.sum(g_mean * m + g_var * v)

    want = jax.grad(f, argnums=(0, 1, 2, 3))(M, V, mean, var)
    for got, ref in zip((dM, dV, d_mean, d_var), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    a, b, x = layer.deterministic_factors(M, layer.forward(M, V, mean, None, True)[0], g_mean, g_var)
    dM0, dV0, _, _ = layer.pullback(M, V, (x, None), g_mean, g_var, True)
    np.testing.assert_allclose(np.outer(a, x), dM0, rtol=1e-12)
    np.testing.assert_allclose(np.outer(b, x * x), dV0, rtol=1e-12)


def test_forward_moments_match_monte_carlo():
    rng = np.random.default_rng(1)
    M, V = rng.normal(size=(3, 4)), rng.uniform(0.1, 0.5, size=(3, 4))
    mean, var = rng.normal(size=3), rng.uniform(0.1, 0.5, size=3)
    _, (m, v) = Dense().forward(M, V, mean, var, True)
    n = 400_000
    W = M + np.sqrt(V) * rng.standard_normal((n, 3, 4))
    z = np.concatenate([mean + np.sqrt(var) * rng.standard_normal((n, 3)), np.ones((n, 1))], 1)
    a = np.einsum("njk,nk->nj", W, z) / np.sqrt(4)
    se = a.std(0) / np.sqrt(n)
    assert np.all(np.abs(a.mean(0) - m) < 5 * se)
    assert np.all(np.abs(a.var(0) - v) < 5 * a.var(0) * np.sqrt(2 / n) + 1e-12)


def test_pbp_with_explicit_dense_pieces_is_the_default_network():
    X = np.random.default_rng(2).normal(size=(40, 3))
    y = X[:, 0] - X[:, 1]
    key = jax.random.PRNGKey(0)
    default = pbp.init(key, pbp.PBPSpec(n_in=3, hidden=(5,)))
    explicit = pbp.init(key, pbp.PBPSpec(n_in=3, hidden=(5,), layers=(Dense(), Dense())))
    for _ in range(2):
        default, explicit = pbp.update(default, X, y), pbp.update(explicit, X, y)
    for a, b in zip(default.means + default.variances, explicit.means + explicit.variances):
        np.testing.assert_array_equal(a, b)

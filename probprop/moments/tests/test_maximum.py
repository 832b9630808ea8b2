"""Clark's closed-form slopes of the maximum of two Gaussians and the hand-written pullback of max
pooling (probprop.moments.maximum) against autodiff of the plain formulas. The moments themselves
are checked against Monte Carlo in ``layers/tests/test_conv.py``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from probprop.learners.base import float64
from probprop.moments import maximum

_plain_pool = maximum.plain_max_pool_moments  # the chain left to autodiff: the oracle


@float64
def _slopes_against_autodiff(m1, v1, m2, v2):
    args = tuple(map(jnp.asarray, (m1, v1, m2, v2)))
    jac = jax.vmap(jax.jacrev(maximum.max_moments, argnums=(0, 1, 2, 3)))(*args)
    auto = (jac[0][0], jac[0][2], jac[0][1], jac[1][0], jac[1][2], jac[1][1], jac[1][3])
    _, var, slopes = maximum.max_moments_and_slopes(*args)
    return [np.asarray(a) for a in auto], [np.asarray(s) for s in slopes], np.asarray(jac[0][3]), np.asarray(var)


@float64
def _moments(m1, v1, m2, v2):
    return [np.asarray(a) for a in maximum.max_moments(*map(jnp.asarray, (m1, v1, m2, v2)))]


def test_clark_slopes_equal_autodiff_of_the_moments():
    rng = np.random.default_rng(0)
    n = 400
    m1, m2 = rng.normal(0, 2, n), rng.normal(0, 2, n)
    v1, v2 = rng.uniform(1e-4, 3.0, n), rng.uniform(1e-4, 3.0, n)
    # far tails (b up to ~200) and one variance zero
    m1[:40] += 30.0
    v1[40:80] = 0.0
    auto, slopes, dmean_dv2, var = _slopes_against_autodiff(m1, v1, m2, v2)
    # the centred variance does not round below zero here (E[max^2] - E[max]^2 did for 3 of the pairs with v1 = 0)
    assert (var > 0).all()
    for a, s in zip(auto, slopes):
        np.testing.assert_allclose(s, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(slopes[2], dmean_dv2, rtol=1e-9, atol=1e-12)  # d mean / d v2 = d mean / d v1
    # the centred variance is Clark's E[max^2] - E[max]^2 (near zero, where that loses nothing)
    near = slice(80, None)
    mean, _ = _moments(m1[near], v1[near], m2[near], v2[near])
    s_ = np.sqrt(v1[near] + v2[near])
    b_ = (m1[near] - m2[near]) / s_
    p, q, d = norm.cdf(b_), norm.cdf(-b_), norm.pdf(b_)
    second = (m1[near] ** 2 + v1[near]) * p + (m2[near] ** 2 + v2[near]) * q + (m1[near] + m2[near]) * s_ * d
    np.testing.assert_allclose(var[near], second - mean**2, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype, shift", [("float64", 1e9), ("float32", 1e4)])
def test_clark_variance_and_slopes_are_shift_invariant(dtype, shift):
    """max(x1 + c, x2 + c) = max(x1, x2) + c: the variance and every slope are the same at means
    shifted far from zero. The means lie on a grid of 1/64, so that m + c is exact and the centred
    forms give the same numbers (to the bit, as measured); E[max^2] - E[max]^2 and the slopes
    through E[max] lost about eps c^2 and eps c (measured: float32 at c = 1e4 up to 32 in the
    variance and 3e-3 in the slopes, float64 at c = 1e9 383 and 4e-7)."""
    rng = np.random.default_rng(1)
    n = 200
    m1, m2 = np.round(rng.normal(0, 2, n) * 64) / 64, np.round(rng.normal(0, 2, n) * 64) / 64
    v1, v2 = rng.uniform(0.05, 3.0, n), rng.uniform(0.05, 3.0, n)

    def run(m1, m2):
        with jax.enable_x64(True):  # float32 arrays stay float32
            args = [jnp.asarray(a, dtype) for a in (m1, v1, m2, v2)]
            mean, var, slopes = maximum.max_moments_and_slopes(*args)
            assert mean.dtype == var.dtype == slopes[-1].dtype == np.dtype(dtype)
            return np.asarray(mean, np.float64), [np.asarray(a, np.float64) for a in (var, *slopes)]

    mean, near = run(m1, m2)
    mean_far, far = run(m1 + shift, m2 + shift)
    np.testing.assert_allclose(mean_far - shift, mean, atol=4 * np.finfo(dtype).eps * shift)
    for a, b in zip(far, near):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_clark_slopes_where_both_variances_vanish_select_the_larger():
    auto, slopes, _, _ = _slopes_against_autodiff([1.0, -2.0], [0.0, 0.0], [0.5, 3.0], [0.0, 0.0])
    for a, s in zip(auto, slopes):
        np.testing.assert_array_equal(s, a)
    np.testing.assert_array_equal(slopes[0], [1.0, 0.0])  # d mean / d m1: the first is the larger, then not


@float64
def _pullbacks(mean, var, window, cotangent_seed, dtype):
    mean, var = jnp.asarray(mean, dtype), jnp.asarray(var, dtype)
    out, pull = jax.vjp(lambda a, b: maximum.max_pool_moments(a, b, window), mean, var)
    ref, ref_pull = jax.vjp(lambda a, b: _plain_pool(a, b, window), mean, var)
    rng = np.random.default_rng(cotangent_seed)
    g = tuple(jnp.asarray(rng.normal(size=out[0].shape), dtype) for _ in range(2))
    return [np.asarray(x) for x in (*out, *pull(g))], [np.asarray(x) for x in (*ref, *ref_pull(g))]


@pytest.mark.parametrize("shape, window", [((2, 3, 7, 9), 2), ((3, 6, 6), 3), ((1, 4, 5), 2), ((2, 1, 8, 8), 4)])
def test_max_pooling_pullback_equals_autodiff(shape, window):
    """Leading axes, windows of 2-4 (chains of 3-15 pairs), rows and columns past the last whole
    window (their cotangents are zero), and units with no variance (data inputs)."""
    rng = np.random.default_rng(1)
    mean = rng.normal(size=shape)
    var = rng.uniform(0.01, 1.0, size=shape)
    var[..., 0, :] = 0.0  # pairs with s = 0 in the first row of windows
    mean[..., 0, :] -= 3.0  # which never dominate far (else rounding may clip a variance, where autodiff differs)
    got, want = _pullbacks(mean, var, window, 2, jnp.float64)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert np.all(got[2][..., (shape[-2] // window) * window:, :] == 0)


def test_max_pooling_pullback_in_float32():
    rng = np.random.default_rng(3)
    mean, var = rng.normal(size=(4, 6, 6)), rng.uniform(0.05, 1.0, size=(4, 6, 6))
    got, want = _pullbacks(mean, var, 2, 4, jnp.float32)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 2**31 - 1), st.floats(-8.0, 8.0), st.floats(-12.0, 2.0))
def test_max_pooling_pullback_equals_autodiff_over_scales(seed, shift, log_var):
    """Means spread and shifted, variances spread around exp(log_var), from about 1e-8 to 1e3 (b far
    in the tails for some pairs)."""
    rng = np.random.default_rng(seed)
    mean = shift + rng.normal(0, 3, size=(2, 4, 4))
    var = np.exp(log_var + rng.normal(0, 2, size=(2, 4, 4)))
    got, want = _pullbacks(mean, var, 2, seed + 1, jnp.float64)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-10 * (1 + np.abs(w).max()))


@float64
def _second_order(mean, var):
    def loss(pool, a):
        return jnp.sum(pool(a, jnp.asarray(var), 2)[1] ** 2)

    outer = lambda pool: jax.grad(lambda a: jnp.sum(jax.grad(lambda b: loss(pool, b))(a) ** 2))(jnp.asarray(mean))
    return np.asarray(outer(maximum.max_pool_moments)), np.asarray(outer(_plain_pool))


def test_max_pooling_gradient_of_gradient_equals_autodiff():
    rng = np.random.default_rng(5)
    got, want = _second_order(rng.normal(size=(2, 4, 4)), rng.uniform(0.1, 1.0, size=(2, 4, 4)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)

"""Tests of probprop.data.toy and load_diabetes."""

from __future__ import annotations

import numpy as np
import pytest

from probprop.data import load_diabetes, make_linear_gaussian, make_toy_1d, toy_grid


def test_toy_1d_defaults():
    x, y = make_toy_1d(random_state=0)
    assert x.shape == (20, 1) and y.shape == (20,)
    assert x.dtype == y.dtype == np.float64
    assert np.all((x >= -4.0) & (x <= 4.0))
    resid = y - x[:, 0] ** 3
    assert 0.5 < resid.std() < 8.0  # noise_std = 3


def test_toy_1d_noiseless_is_cubic():
    x, y = make_toy_1d(50, noise_std=0.0, low=-1.0, high=2.0, random_state=1)
    np.testing.assert_allclose(y, x[:, 0] ** 3)
    assert np.all((x >= -1.0) & (x <= 2.0))


def test_toy_1d_reproducible():
    a = make_toy_1d(random_state=42)
    b = make_toy_1d(random_state=42)
    c = make_toy_1d(random_state=43)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(make_toy_1d(random_state=g1)[1], make_toy_1d(random_state=g2)[1])
    r1, r2 = np.random.RandomState(5), np.random.RandomState(5)
    np.testing.assert_array_equal(make_toy_1d(random_state=r1)[1], make_toy_1d(random_state=r2)[1])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n": 0}, ValueError),
        ({"n": 2.5}, TypeError),
        ({"noise_std": -1.0}, ValueError),
        ({"low": 1.0, "high": 1.0}, ValueError),
    ],
)
def test_toy_1d_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        make_toy_1d(**kwargs)


def test_linear_gaussian():
    X, y, w = make_linear_gaussian(500, 3, random_state=0)
    assert X.shape == (500, 3) and y.shape == (500,) and w.shape == (3,)
    assert X.dtype == y.dtype == w.dtype == np.float64
    resid = y - X @ w
    assert abs(resid.std() - 0.5) < 0.1
    assert abs(resid.mean()) < 0.1
    X2, y2, w2 = make_linear_gaussian(500, 3, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(w, w2)


def test_linear_gaussian_noiseless_with_bias():
    X, y, w = make_linear_gaussian(20, 4, noise_std=0.0, bias=2.5, random_state=3)
    np.testing.assert_allclose(y, X @ w + 2.5)
    with pytest.raises(ValueError):
        make_linear_gaussian(10, 0)


def test_toy_grid():
    g = toy_grid()
    assert g.shape == (200, 1) and g.dtype == np.float64
    assert g[0, 0] == -6.0 and g[-1, 0] == 6.0
    assert np.all(np.diff(g[:, 0]) > 0)
    assert toy_grid(0, 1, 11)[5, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        toy_grid(1, 0)


def test_load_diabetes_offline():
    X, y = load_diabetes()
    assert X.shape == (442, 10) and y.shape == (442,)
    assert X.dtype == y.dtype == np.float64

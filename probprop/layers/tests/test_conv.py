"""The convolution layer piece: an exact special case (a kernel the size of the image is a dense
layer), its moments against Monte Carlo (average pooling exact, max pooling within the measured
error of Clark's approximation), its pullback against finite differences, PBP with it against PBP
with the dense layer, its checks of shapes, and the products TAGI's conditioning takes from it (and
from the dense piece) against autodiff's Jacobians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probprop.layers import LAYERS, Conv2D, Dense
from probprop.layers import conv as conv_module
from probprop.layers.conv import conv_stack
from probprop.learners import pbp
from probprop.moments.maximum import max_moments, max_pool_moments


def _random_layer(rng, layer):
    shape = layer.weight_shape(layer.n_in, layer.n_out, True)
    M, V = rng.normal(size=shape), rng.uniform(0.05, 0.3, size=shape)
    m, v = rng.normal(size=layer.n_in), rng.uniform(0.05, 0.5, size=layer.n_in)
    return M, V, m, v


def test_a_kernel_the_size_of_the_image_is_a_dense_layer():
    rng = np.random.default_rng(0)
    layer = Conv2D((2, 4, 4), 3, kernel=4)
    M, V, m, v = _random_layer(rng, layer)
    for var in (v, None):
        got = layer.forward(M, V, m, var, True)[1]
        want = Dense().forward(M, V, m, var, True)[1]
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-13)


def _monte_carlo_layer(rng, layer, M, V, m, v, n=60_000):
    """Pre-activations of the layer for n joint draws of weights and inputs (pooled as the layer)."""
    c, h, w = layer.in_shape
    k, o, p = layer.kernel, layer.channels, layer.pool
    W = M + np.sqrt(V) * rng.standard_normal((n, *M.shape))
    z = (m + np.sqrt(v) * rng.standard_normal((n, m.size))).reshape(n, c, h, w)
    K = W[:, :, :-1].reshape(n, o, c, k, k)
    ho, wo = h - k + 1, w - k + 1
    a = np.empty((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            a[:, :, i, j] = np.einsum("nocuv,ncuv->no", K, z[:, :, i:i + k, j:j + k]) + W[:, :, -1]
    a /= np.sqrt(M.shape[1])
    if p > 1:
        a = a[:, :, : ho // p * p, : wo // p * p].reshape(n, o, ho // p, p, wo // p, p)
        a = a.mean(axis=(3, 5)) if layer.pooling == "avg" else a.max(axis=(3, 5))
    return a.reshape(n, -1)


@pytest.mark.parametrize("pool", [1, 2, 3])
def test_average_pooled_convolution_moments_match_monte_carlo(pool):
    """Exact: the window's units share their weights, and the moments account for it."""
    rng = np.random.default_rng(pool)
    layer = Conv2D((2, 7, 7), 2, kernel=3, pool=pool)
    M, V, m, v = _random_layer(rng, layer)
    mean, var = map(np.asarray, layer.forward(M, V, m, v, True)[1])
    a = _monte_carlo_layer(rng, layer, M, V, m, v)
    n = len(a)
    se_mean = a.std(0) / np.sqrt(n)
    se_var = np.sqrt((np.mean((a - a.mean(0)) ** 4, 0) - a.var(0) ** 2) / n)
    assert np.all(np.abs(a.mean(0) - mean) < 5 * se_mean)
    assert np.all(np.abs(a.var(0) - var) < 5 * se_var)
    # data inputs: the same map with no input variance
    mean0, var0 = map(np.asarray, layer.forward(M, V, m, None, True)[1])
    a0 = _monte_carlo_layer(rng, layer, M, V, m, np.zeros_like(v))
    assert np.all(np.abs(a0.var(0) - var0) < 5 * np.sqrt(2 / n) * var0)
    np.testing.assert_allclose(mean0, mean, rtol=1e-12)


def test_clark_maximum_of_two_gaussians_is_exact():
    rng = np.random.default_rng(3)
    m1, m2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.01, 2.0, size=8), rng.uniform(0.01, 2.0, size=8)
    mean, var = map(np.asarray, max_moments(m1, v1, m2, v2))
    n = 400_000
    x = np.maximum(m1 + np.sqrt(v1) * rng.standard_normal((n, 8)), m2 + np.sqrt(v2) * rng.standard_normal((n, 8)))
    assert np.all(np.abs(x.mean(0) - mean) < 5 * x.std(0) / np.sqrt(n))
    assert np.all(np.abs(x.var(0) - var) < 5 * np.sqrt(2 / n) * x.var(0))
    # degenerate: no variance -> the larger mean, exactly
    mean, var = max_moments(jnp.asarray([1.0, -2.0]), jnp.zeros(2), jnp.asarray([0.5, 3.0]), jnp.zeros(2))
    np.testing.assert_array_equal(mean, [1.0, 3.0])
    np.testing.assert_array_equal(var, [0.0, 0.0])


def test_max_pooling_of_independent_units_matches_monte_carlo_within_clarks_error():
    """Clark's pairwise matching of 4 independent units is an approximation (each intermediate
    maximum is taken as Gaussian). Measured over 2,000 random windows (means N(0, 1), variances
    U(0.1, 1)): mean error median 0.006 and at most 0.07 predictive stds; variance error median
    3 %, 99th percentile 16 %, at most 27 %, always an underestimate where large."""
    rng = np.random.default_rng(4)
    mean = rng.normal(size=(3, 4, 4))
    var = rng.uniform(0.1, 1.0, size=(3, 4, 4))
    m, v = map(np.asarray, max_pool_moments(jnp.asarray(mean), jnp.asarray(var), 2))
    n = 100_000
    x = (mean + np.sqrt(var) * rng.standard_normal((n, 3, 4, 4))).reshape(n, 3, 2, 2, 2, 2).max(axis=(3, 5))
    assert np.all(np.abs(x.mean(0) - m) < 0.05 * x.std(0))
    assert np.all(np.abs(x.var(0) / v - 1) < 0.20)
    assert np.median(np.abs(x.var(0) / v - 1)) < 0.05


def test_max_pooled_convolution_within_the_measured_error():
    """A whole layer with max pooling: the window's units are correlated (shared weights and
    overlapping inputs), which Clark's matching ignores. Measured on this draw: mean error up to
    0.07 of the predictive std, variance up to 15 %; the bounds below leave room for the seed."""
    rng = np.random.default_rng(5)
    layer = Conv2D((2, 6, 6), 2, kernel=3, pool=2, pooling="max")
    M, V, m, v = _random_layer(rng, layer)
    mean, var = map(np.asarray, layer.forward(M, V, m, v, True)[1])
    a = _monte_carlo_layer(rng, layer, M, V, m, v)
    assert np.all(np.abs(a.mean(0) - mean) < 0.15 * a.std(0))
    assert np.all(np.abs(a.var(0) / var - 1) < 0.30)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pullback_matches_finite_differences(pooling):
    rng = np.random.default_rng(6)
    layer = Conv2D((2, 6, 6), 3, kernel=3, pool=2, pooling=pooling)
    M, V, m, v = _random_layer(rng, layer)
    g_mean, g_var = rng.normal(size=layer.n_out), rng.normal(size=layer.n_out)

    @jax.jit
    def objective(M, V, m, v):
        mean, var = layer.forward(M, V, m, v, True)[1]
        return jnp.sum(g_mean * mean + g_var * var)

    f = lambda *args: float(objective(*args))

    grads = jax.jit(lambda M, V, m, v: layer.pullback(M, V, (m, v), g_mean, g_var, True))(M, V, m, v)
    args, h = [M, V, m, v], 1e-6
    for which, grad in enumerate(grads):
        flat = np.asarray(grad).ravel()
        for idx in rng.choice(flat.size, size=6, replace=False):
            up, down = [a.copy() for a in args], [a.copy() for a in args]
            up[which].flat[idx] += h
            down[which].flat[idx] -= h
            fd = (f(*up) - f(*down)) / (2 * h)
            assert abs(fd - flat[idx]) < 1e-6 * max(1.0, abs(fd)), (which, idx, fd, flat[idx])
    dM, _, d_mean, d_var = layer.pullback(M, V, (m, None), g_mean, g_var, True)
    assert d_mean is None and d_var is None and dM.shape == M.shape


def test_pbp_with_an_image_sized_kernel_learns_as_the_dense_network():
    """The whole ADF path through the piece (forward, pullback, update) against the dense layer's
    factored one: the same posterior after two epochs, to rounding."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 9))
    y = X[:, 0] - X[:, 4] + 0.1 * rng.normal(size=60)
    key = jax.random.PRNGKey(0)
    dense = pbp.init(key, pbp.PBPSpec(n_in=9, hidden=(4,)))
    conv = pbp.init(key, pbp.PBPSpec(n_in=9, hidden=(4,), layers=(Conv2D((1, 3, 3), 4, kernel=3), Dense())))
    for _ in range(2):
        dense, conv = pbp.update(dense, X, y), pbp.update(conv, X, y)
    for a, b in zip(dense.means + dense.variances, conv.means + conv.variances):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="in_shape"):
        Conv2D((28, 28), 4)
    with pytest.raises(ValueError, match="does not fit"):
        Conv2D((1, 4, 4), 4, kernel=5)
    with pytest.raises(ValueError, match="pooling 3x3"):
        Conv2D((1, 5, 5), 4, kernel=4, pool=3)
    with pytest.raises(ValueError, match="unknown pooling"):
        Conv2D((1, 8, 8), 4, kernel=3, pooling="median")
    with pytest.raises(ValueError, match="channels"):
        Conv2D((1, 8, 8), 10**6, kernel=3)
    layer = Conv2D((1, 8, 8), 4, kernel=3, pool=2)
    assert layer.out_shape == (4, 3, 3) and layer.weight_shape(64, 36, True) == (4, 10)
    with pytest.raises(ValueError, match="network gives it"):
        layer.weight_shape(63, 36, True)
    with pytest.raises(ValueError, match="layer 2"):
        conv_stack((1, 8, 8), ((4, 3, 2), (4, 5, 1)))
    assert LAYERS["conv2d"] is Conv2D


def _direct_point(layer, K, b, x):
    """The point-estimate layer by loops over positions (the oracle of Conv2D.point)."""
    c, h, w = layer.in_shape
    k, p = layer.kernel, layer.pool
    z = x.reshape(len(x), c, h, w)
    ho, wo = h - k + 1, w - k + 1
    a = np.empty((len(x), layer.channels, ho, wo))
    for i in range(ho):
        for j in range(wo):
            a[:, :, i, j] = np.einsum("ocuv,ncuv->no", K, z[:, :, i:i + k, j:j + k]) + b
    if p > 1:
        a = a[:, :, : ho // p * p, : wo // p * p].reshape(len(x), layer.channels, ho // p, p, wo // p, p)
        a = a.mean(axis=(3, 5)) if layer.pooling == "avg" else a.max(axis=(3, 5))
    return a.reshape(len(x), -1)


@pytest.fixture(params=["gathered", "xla"])
def conv_form(request, monkeypatch):
    """Both forms of the correlation: gathered patches (what small inputs take) and XLA's
    convolution (``GATHER_MAX`` 0: what large ones take)."""
    if request.param == "xla":
        monkeypatch.setattr(conv_module, "GATHER_MAX", 0)
    return request.param


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("pool", [1, 2, 3])
def test_point_estimate_forward_matches_a_direct_convolution(pooling, pool, conv_form):
    rng = np.random.default_rng(10 * pool + (pooling == "max"))
    layer = Conv2D((2, 8, 7), 3, kernel=3, pool=pool, pooling=pooling)
    K, b = rng.normal(size=layer.kernel_shape), rng.normal(size=layer.channels)
    x = rng.normal(size=(4, layer.n_in))
    got = np.asarray(layer.point(jnp.asarray(K), jnp.asarray(b), jnp.asarray(x)))
    assert got.shape == (4, layer.n_out)
    np.testing.assert_allclose(got, _direct_point(layer, K, b, x), rtol=1e-12, atol=1e-12)
    # and the mean of the moments with no weight variance, in PBP's scaled parameterisation
    if pooling == "avg":
        n = layer.weight_shape(layer.n_in, layer.n_out, True)[1]
        M = np.sqrt(n) * np.concatenate([K.reshape(layer.channels, -1), b[:, None]], axis=1)
        mean, var = layer.moments(jnp.asarray(M), jnp.zeros_like(M), jnp.asarray(x), None, True)
        np.testing.assert_allclose(mean, got, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(var, 0.0, atol=1e-15)


def _autodiff_tagi_products(layer, M, m, d_mean, d_var):
    """TAGI's backward products from the explicit Jacobians of the unscaled pre-activation means
    (jax.jacfwd), row by row: sum_n J_W^T d, sum_n (J_W o J_W)^T d, J_A^T d, (J_A o J_A)^T d."""
    V = jnp.ones_like(M)  # the means do not depend on the variances
    dM, dV, d_in_mean, d_in_var = 0.0, 0.0, [], []
    for x, gm, gv in zip(m, d_mean, d_var):
        JW = jax.jacfwd(lambda M: layer.forward(M, V, x, None, True, scaled=False)[1][0])(M)  # (n_out, *M.shape)
        JA = jax.jacfwd(lambda x: layer.forward(M, V, x, None, True, scaled=False)[1][0])(x)  # (n_out, n_in)
        dM = dM + jnp.tensordot(gm, JW, 1)
        dV = dV + jnp.tensordot(gv, JW * JW, 1)
        d_in_mean.append(gm @ JA)
        d_in_var.append(gv @ (JA * JA))
    return dM, dV, jnp.stack(d_in_mean), jnp.stack(d_in_var)


@pytest.mark.parametrize(("layer", "bias_input"), [
    (Conv2D((2, 6, 6), 3, kernel=3, pool=1), False),
    (Conv2D((2, 7, 7), 3, kernel=3, pool=2), False),
    (Conv2D((1, 8, 8), 2, kernel=2, pool=3), False),
    (Dense(), True),
])
def test_tagi_pullback_matches_autodiff(layer, bias_input):
    """Every product TAGI's conditioning takes from a layer (the weight Jacobian and the input
    Jacobian, plain and squared entrywise, summed over rows) against the Jacobians autodiff forms."""
    rng = np.random.default_rng(11)
    if isinstance(layer, Dense):
        n_in, n_out = 5, 4
        M = rng.normal(size=(n_out, n_in + 1))
    else:
        n_in, n_out = layer.n_in, layer.n_out
        M = rng.normal(size=layer.weight_shape(n_in, n_out, True))
    m = rng.normal(size=(3, n_in))
    d_mean, d_var = rng.normal(size=(3, n_out)), -rng.uniform(0.1, 1.0, size=(3, n_out))
    # the dense piece takes its inputs with the bias input appended, as TAGI stores them
    stored = np.concatenate([m, np.ones((3, 1))], 1) if bias_input else m
    want = _autodiff_tagi_products(layer, M, m, d_mean, d_var)
    got = layer.tagi_pullback(M, stored, d_mean, d_var, True)
    for name, a, b in zip(("J_W^T d", "(J_W^2)^T d", "J_A^T d", "(J_A^2)^T d"), got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12, err_msg=name)
    dM, _, none_mean, none_var = layer.tagi_pullback(M, stored, d_mean, d_var, False)
    assert none_mean is None and none_var is None
    np.testing.assert_allclose(np.asarray(dM), np.asarray(want[0]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_unscaled_moments_are_the_scaled_ones_of_rescaled_weights(pooling):
    """scaled=False (TAGI's a = K * x + b) equals PBP's a = (K * x + b) / sqrt(n) with the weight
    means times sqrt(n) and variances times n."""
    rng = np.random.default_rng(3)
    layer = Conv2D((2, 6, 6), 2, kernel=3, pool=2, pooling=pooling)
    M, V, m, v = _random_layer(rng, layer)
    n = M.shape[1]
    for var in (v, None):
        got = layer.forward(M, V, m, var, True, scaled=False)[1]
        want = layer.forward(M * np.sqrt(n), V * n, m, var, True)[1]
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_tagi_pullback_refuses_max_pooling():
    layer = Conv2D((1, 6, 6), 2, kernel=3, pool=2, pooling="max")
    M = np.zeros(layer.weight_shape(layer.n_in, layer.n_out, True))
    with pytest.raises(ValueError, match="pool by average"):
        layer.tagi_pullback(M, np.zeros((1, 36)), np.zeros((1, 8)), np.zeros((1, 8)))


@pytest.mark.parametrize(("shape", "kernel", "stride"), [
    ((1, 28, 28), 6, 2), ((16, 12, 12), 6, 2), ((3, 9, 7), 3, 1), ((2, 10, 11), 4, 3), ((2, 5, 5), 5, 1),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gathered_correlation_and_its_transposes_equal_xlas(shape, kernel, stride, dtype, monkeypatch):
    """The gathered-patch correlation (few rows) against XLA's convolution (many rows): values,
    and the transposes in the kernel and in the images (what the pullbacks take), in either dtype."""
    rng = np.random.default_rng(kernel + 10 * stride)
    x = jnp.asarray(rng.normal(size=(2, *shape)), dtype)
    K = jnp.asarray(rng.normal(size=(3, shape[0], kernel, kernel)), dtype)
    out, vjp = jax.vjp(lambda x, K: conv_module._conv(x, K, stride), x, K)
    g = jnp.asarray(rng.normal(size=out.shape), dtype)
    grads = vjp(g)
    assert out.dtype == dtype and all(a.dtype == dtype for a in grads)
    tol = 1e-12 if dtype == "float64" else 2e-5
    program = lambda x: str(jax.make_jaxpr(lambda x: conv_module._conv(x, K, stride))(x))
    assert "gather" in program(x) and "conv_general_dilated" not in program(x)
    monkeypatch.setattr(conv_module, "GATHER_MAX", 0)
    assert "conv_general_dilated" in program(x)
    out_xla, vjp_xla = jax.vjp(lambda x, K: conv_module._conv(x, K, stride), x, K)
    np.testing.assert_allclose(out, out_xla, rtol=tol, atol=tol)
    for a, b in zip(grads, vjp_xla(g)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_correlation_refuses_mixed_dtypes_and_bounds_an_empty_batchs_index():
    x, K = jnp.zeros((1, 2, 6, 6)), jnp.zeros((3, 2, 3, 3), jnp.float32)
    with pytest.raises(TypeError, match="float64 images with a float32 kernel"):
        conv_module._conv(x, K, 1)
    # no rows: the threshold counts one, so a layer too large to gather for one row is not gathered for none
    conv_module._patch_index.cache_clear()
    out = conv_module._conv(jnp.zeros((0, 64, 80, 80)), jnp.zeros((2, 64, 5, 5)), 1)
    assert out.shape == (0, 2, 76, 76) and conv_module._patch_index.cache_info().misses == 0

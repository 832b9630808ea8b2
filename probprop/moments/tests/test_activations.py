"""Leaky ReLU, GELU, sigmoid and tanh moment maps against Monte Carlo, quadrature,
high-precision references, autodiff and finite differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

import probprop  # noqa: F401  (enables float64)
from probprop.moments import (
    ACTIVATIONS,
    gelu,
    gelu_with_jacobian,
    leaky_relu,
    leaky_relu_with_jacobian,
    probit_var,
    relu,
    sigmoid,
    sigmoid_with_jacobian,
    tanh,
    tanh_with_jacobian,
)
from probprop.moments.gelu import _direct, _direct_w, _series
from probprop.moments.sigmoid import PROBIT_SCALE, SIGMOID_MAX_ERROR, TANH_MAX_ERROR

N_MC = 100_000
Z_MAX = 5.0  # accept MC disagreement up to 5 standard errors
LAM = PROBIT_SCALE

# (m, v) grid: standardised means up to +-8 at narrow, unit and wide (v = 25) inputs
ALPHAS = np.array([-8.0, -4.0, -2.0, -1.0, -0.3, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
VARS = np.array([0.01, 0.3, 1.0, 4.0, 25.0])
GRID_V = np.repeat(VARS, ALPHAS.size)
GRID_M = np.tile(ALPHAS, VARS.size) * np.sqrt(GRID_V)
PAD = 96


def call(fn, m, v):
    """fn(m, v) on 1-d inputs padded (cyclically) to a multiple of PAD elements, outputs cut back.

    Eager JAX compiles every primitive once per shape and dtype; one common length lets the
    tests share those compilations (GELU and its gradient are a few thousand primitives)."""
    m, v = jnp.asarray(m), jnp.asarray(v)
    n = m.shape[0]
    size = -(-n // PAD) * PAD
    out = fn(jnp.resize(m, (size,)), jnp.resize(v, (size,)))
    return jax.tree_util.tree_map(lambda x: x[:n], out)


def grads(fn, m, v, out):
    """(d/dm, d/dv) of output ``out`` of an elementwise map: the gradient of the sum."""
    return call(jax.grad(lambda a, b: jnp.sum(fn(a, b)[out]), argnums=(0, 1)), m, v)


def _log_normal(a, mu, var):
    return -0.5 * (a - mu) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def mc_moments(fn, m, v, centre, tilts=(), seed=0):
    """Importance-sampled E[f(a)], Var[f(a)] for a ~ N(m, v), with standard errors.

    The proposal is an equal mixture of N(m, v) and the Gaussians ``tilts`` (lists of (mu, var)
    arrays), N_MC / K draws from each: weights p/q are at most K, and the tilted components
    reach the far tails that dominate E[f] and E[f^2] when |m|/sqrt(v) is large (without them
    MC sees no draw there). Both moments are estimated for d = f - c with the constant
    c = ``centre`` (the closed-form mean; any constant keeps the estimates unbiased), which
    keeps the weight noise out when f is nearly constant (e.g. sigmoid(a) ~ 1 for m >> 0):
    E[f] = c + E_q[w d], Var[f] = E_q[w d^2] - E_q[w d]^2.
    """
    rng = np.random.default_rng(seed)
    comps = [(m, v)] + list(tilts)
    k = len(comps)
    n_each = N_MC // k
    a = np.concatenate([mu + np.sqrt(var) * rng.standard_normal((n_each, m.size)) for mu, var in comps])
    if k == 1:
        w = np.ones_like(a)
    else:
        log_q = np.logaddexp.reduce([_log_normal(a, mu, var) for mu, var in comps], axis=0) - np.log(k)
        w = np.exp(_log_normal(a, m, v) - log_q)
    n = a.shape[0]
    d = fn(a) - centre
    wd, wd2 = w * d, w * d * d
    shift = wd.mean(0)
    mean = centre + shift
    var = wd2.mean(0) - shift**2
    se_mean = wd.std(0) / np.sqrt(n)
    se_var = (wd2 - 2 * shift * wd).std(0) / np.sqrt(n)
    return mean, var, se_mean, se_var


def _gelu_np(a):
    return a * special.ndtr(a)


def _probit_tilts(k):
    """Proposals for the tails of Phi(k a) and a Phi(a) (k = 1), a ~ N(m, v), |m| >> sqrt(v).

    There phi(k a) N(a; m, v) ~ N(m/(1+k^2 v), v/(1+k^2 v)) carries the first moment and
    phi(k a)^2 N(a; m, v) ~ N(m/(1+2k^2 v), v/(1+2k^2 v)) the second; a wider copy of the latter
    covers the other side of 0 (for GELU at m = -40, v = 25 half of E[f^2] comes from a in
    [0, 3]). Checked over 30 seeds on GRID: |estimate - closed form| / SE <= 4.1, beyond 3
    for 0.3% of the cases, as for a Gaussian error, so the SE is trustworthy here."""

    def tilts(m, v):
        k2v = k * k * v
        return [
            (m / (1 + k2v), v / (1 + k2v)),
            (m / (1 + 2 * k2v), v / (1 + 2 * k2v)),
            (m / (1 + 2 * k2v), 1 / (k * k) + 4 * v / (1 + 2 * k2v)),
        ]

    return tilts


def _kink_tilt(m, v):
    """The piecewise-linear maps: N(0, v) puts draws on the far side of the kink."""
    return [(np.zeros_like(m), v)]


EXACT_MAPS = {
    "leaky_relu": (leaky_relu, lambda a: np.maximum(a, 0.01 * a), _kink_tilt),
    "leaky_relu_0.2": (
        functools.partial(leaky_relu, slope=0.2),
        lambda a: np.maximum(a, 0.2 * a),
        _kink_tilt,
    ),
    "gelu": (gelu, _gelu_np, _probit_tilts(1.0)),
    # the probit surrogates themselves: exact moments of Phi(lam a) and 2 Phi(2 lam a) - 1
    "probit_sigmoid": (sigmoid, lambda a: special.ndtr(LAM * a), _probit_tilts(LAM)),
    "probit_tanh": (tanh, lambda a: 2 * special.ndtr(2 * LAM * a) - 1, _probit_tilts(2 * LAM)),
}


@pytest.mark.parametrize("name", sorted(EXACT_MAPS))
def test_exact_moment_maps_match_monte_carlo(name):
    fn, f_np, tilts = EXACT_MAPS[name]
    mean, var = map(np.asarray, call(fn, GRID_M, GRID_V))
    t = tilts(GRID_M, GRID_V) if tilts else ()
    mc_mean, mc_var, se_mean, se_var = mc_moments(f_np, GRID_M, GRID_V, mean, t)
    tiny = 1e-300
    np.testing.assert_array_less(np.abs(mc_mean - mean), Z_MAX * se_mean + 1e-12 * np.abs(mean) + tiny)
    np.testing.assert_array_less(np.abs(mc_var - var), Z_MAX * se_var + 1e-12 * var + tiny)


def test_gelu_far_tail_monte_carlo_is_informative():
    """The tilted proposal really resolves the tail: at m/sqrt(v) = -8 the MC standard error is
    a few percent of the (tiny) moments, so the comparison above is a relative one."""
    m, v = np.array([-8.0 * 5.0, -8.0]), np.array([25.0, 1.0])
    mean, var = map(np.asarray, call(gelu, m, v))
    mc_mean, mc_var, se_mean, se_var = mc_moments(_gelu_np, m, v, mean, _probit_tilts(1.0)(m, v))
    assert np.all(se_mean < 0.05 * np.abs(mean)) and np.all(se_var < 0.05 * var)
    assert np.all(var > 0) and np.all(mean < 0)


@pytest.mark.parametrize(
    "name, fn, f_np, bound",
    [
        ("sigmoid", sigmoid, special.expit, SIGMOID_MAX_ERROR),
        ("tanh", tanh, np.tanh, TANH_MAX_ERROR),
    ],
)
def test_sigmoid_tanh_match_monte_carlo_within_documented_error(name, fn, f_np, bound):
    mean, var = map(np.asarray, call(fn, GRID_M, GRID_V))
    mc_mean, mc_var, se_mean, se_var = mc_moments(f_np, GRID_M, GRID_V, mean)
    np.testing.assert_array_less(np.abs(mc_mean - mean), Z_MAX * se_mean + bound["mean"])
    np.testing.assert_array_less(np.abs(mc_var - var), Z_MAX * se_var + bound["var"])


def _exact_moments(fn, m, v):
    """E[f(a)] and Var[f(a)] by adaptive quadrature (centred second moment)."""
    if v == 0:
        return fn(m), 0.0
    s = np.sqrt(v)
    z0 = -m / s
    pts = sorted({-40.0, 40.0, *[z0 + d / s for d in (-10, -3, -1, 0, 1, 3, 10) if abs(z0 + d / s) < 40]})

    def quad(g):
        return sum(
            integrate.quad(g, lo, hi, limit=200, epsabs=1e-15, epsrel=1e-11)[0] for lo, hi in zip(pts, pts[1:])
        )

    pdf = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)  # noqa: E731
    mean = quad(lambda z: fn(m + s * z) * pdf(z))
    return mean, quad(lambda z: (fn(m + s * z) - mean) ** 2 * pdf(z))


@pytest.mark.parametrize(
    "fn, f_np, bound, worst",
    [
        (sigmoid, special.expit, SIGMOID_MAX_ERROR, [(-2.7636, 0.0), (0.0, 9.44)]),
        (tanh, np.tanh, TANH_MAX_ERROR, [(-1.3818, 0.0), (0.0, 2.37)]),
    ],
)
def test_probit_approximation_error(fn, f_np, bound, worst):
    """The documented max errors hold on a grid and are attained (within 2%) at the worst points."""
    ms = np.linspace(-12, 12, 13)
    vs = np.array([0.0, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 100.0, 1e3])
    pts = [(m, v) for m in ms for v in vs] + [(8.0 * np.sqrt(v) * sgn, v) for v in (1.0, 25.0) for sgn in (-1, 1)]
    pts += worst
    ref = np.array([_exact_moments(f_np, m, v) for m, v in pts])
    mean, var = map(np.asarray, call(fn, [p[0] for p in pts], [p[1] for p in pts]))
    err_mean, err_var = np.abs(mean - ref[:, 0]), np.abs(var - ref[:, 1])
    assert err_mean.max() <= bound["mean"]
    assert err_var.max() <= bound["var"]
    assert err_mean[-2] > 0.98 * bound["mean"] and err_var[-1] > 0.98 * bound["var"]


def test_probit_var_matches_owens_t_and_tail_quadrature():
    """Var[Phi(x)] = Phi(h) Phi(-h) - 2 T(h, a) (scipy's Owen's T) in the bulk; in the tails,
    where that subtraction loses everything, against quadrature of the positive integrand."""
    h = np.array([0.0, 0.3, -0.8, 1.5, -2.5, 3.0])
    v = np.array([0.01, 0.5, 1.0, 3.0, 10.0, 1e3])
    hh, vv = np.meshgrid(h, v)
    hh, vv = hh.ravel(), vv.ravel()
    m = hh * np.sqrt(1 + vv)
    a = 1 / np.sqrt(1 + 2 * vv)
    ref = special.ndtr(hh) * special.ndtr(-hh) - 2 * special.owens_t(hh, a)
    np.testing.assert_allclose(call(probit_var, m, vv), ref, rtol=1e-11, atol=1e-16)

    tails = [(-8.0, 0.3), (-8.0, 25.0), (12.0, 1.0), (-20.0, 1e-3), (-30.0, 100.0), (6.0, 1e-9)]
    got = call(probit_var, [h_ * np.sqrt(1 + v_) for h_, v_ in tails], [v_ for _, v_ in tails])
    for (h_, v_), got_ in zip(tails, np.asarray(got)):
        big_h, a_ = h_ * h_, 1 / np.sqrt(1 + 2 * v_)
        one_minus_a = 2 * v_ / (1 + 2 * v_) / (1 + a_)
        # I = exp(-H (1 + a^2)/2) / pi * int_0^{1-a} exp(-H t (t + 2a)/2) / (1 + (a+t)^2) dt
        g = lambda t: np.exp(-0.5 * big_h * t * (t + 2 * a_)) / (1 + (a_ + t) ** 2)  # noqa: B023, E731
        scale = min(one_minus_a, 1 / (big_h * a_), 1 / np.sqrt(big_h))
        brk = [scale * k for k in (1, 4, 16, 64) if scale * k < one_minus_a]
        val = integrate.quad(g, 0, one_minus_a, points=brk or None, epsabs=0, epsrel=1e-13, limit=200)[0]
        log_ref = np.log(val) - 0.5 * big_h * (1 + a_ * a_) - np.log(np.pi)
        assert got_ > 0
        assert abs(np.log(got_) - log_ref) < 1e-10, (h_, v_)


# mpmath at 45 digits: closed-form mean, variance = quadrature of (f - E f)^2 split at the peak
GELU_REFERENCE = [
    (-0.7517915, 1e-06, -0.16997099173291144, 9.309377707947802e-14),  # small v at the minimum
    (-0.7517915, 0.0001, -0.1699496329158636, 9.31163137395413e-10),
    (0.1, 1e-08, 0.05398278767738073, 3.358470163920226e-09),
    (0.7, 1e-08, 0.5306254458013661, 9.537750961520232e-09),
    (-2.4, 0.09, -0.023371955015987645, 0.00024375005561563275),  # Hermite series side
    (-2.6532998322843198, 0.11, -0.01389224904252549, 0.00013671617806264232),  # direct side
    (2.6532998322843198, 0.11, 2.6394075832417943, 0.11719428222751925),  # reflected
    (0.0, 0.11, 0.041652518081543084, 0.030644320046064263),
    (-3.0, 3.0, -0.006145210307736607, 0.03464256441068673),
    (0.0, 25.0, 1.955975454388567, 8.638500596105084),
    (0.0, 10000.0, 39.89223347833215, 3408.607832693177),
    (17.88854381999832, 5.0, 17.88854381999794, 5.000000000011337),
    (-17.88854381999832, 5.0, -3.8163346993062937e-13, 6.608238269941035e-15),  # m/sqrt(v) = -8
    (-40.0, 25.0, -2.0239148861113817e-15, 5.478194812209137e-16),  # m/sqrt(v) = -8
    (-60.0, 25.0, -5.478387511664031e-32, 2.6663081059907406e-33),  # m/sqrt(v) = -12
]


def test_gelu_matches_high_precision_reference():
    ref = np.array(GELU_REFERENCE)
    mean, var = call(gelu, ref[:, 0], ref[:, 1])
    np.testing.assert_allclose(mean, ref[:, 2], rtol=1e-12, atol=0)
    np.testing.assert_allclose(var, ref[:, 3], rtol=1e-9, atol=0)  # 5.5e-10 at m/sqrt(v) = -12
    np.testing.assert_allclose(var[:-1], ref[:-1, 3], rtol=1e-10, atol=0)


def test_gelu_series_and_direct_forms_agree():
    """The Hermite series (v <= 0.1, rho h^2 <= 2) and the direct S - E^2 form, evaluated at the
    same points on both sides of the switch, agree with each other (values and derivatives);
    so do the direct form and its reflection Var(m) = Var(-m) + v (erf(h/sqrt2) + 2 h phi/t^2)."""
    for v in (0.05, 0.1, 0.15):
        t = np.sqrt(1 + v)
        h = np.linspace(-1, 1, 21) * np.sqrt(2 * (1 + v) / v)
        m, vv = h * t, np.full(h.shape, v)
        series = call(lambda a, b: _series(a, b, True)[1:], m, vv)
        direct = call(lambda a, b: _direct(a, b, True), m, vv)
        for a, b in zip(series, direct):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-300)
    m, v = jnp.asarray(np.linspace(-3, 3, 31)), jnp.full(31, 0.7)
    h = np.asarray(m) / np.sqrt(1.7)
    shift = 0.7 * (special.erf(h / np.sqrt(2)) + 2 * h * np.exp(-h * h / 2) / np.sqrt(2 * np.pi) / 1.7)
    w_plus = call(lambda a, b: _direct_w(a, b, False), m, v)
    w_minus = call(lambda a, b: _direct_w(a, b, False), -m, v)
    np.testing.assert_allclose(w_plus, w_minus + shift, rtol=1e-10)


def test_leaky_relu_limits():
    m = jnp.asarray(np.linspace(-6, 6, 25))
    v = jnp.asarray(np.linspace(0.1, 4, 25))
    mean0, var0 = call(functools.partial(leaky_relu, slope=0.0), m, v)
    ref_mean, ref_var = call(relu, m, v)
    np.testing.assert_allclose(mean0, ref_mean, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(var0, ref_var, rtol=1e-12, atol=1e-300)
    mean1, var1 = call(functools.partial(leaky_relu, slope=1.0), m, v)
    np.testing.assert_allclose(mean1, m, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(var1, v, rtol=1e-14)


JACOBIAN_MAPS = {
    "leaky_relu": (leaky_relu, leaky_relu_with_jacobian),
    "leaky_relu_0.3": (functools.partial(leaky_relu, slope=0.3), functools.partial(leaky_relu_with_jacobian, slope=0.3)),
    "gelu": (gelu, gelu_with_jacobian),
    "sigmoid": (sigmoid, sigmoid_with_jacobian),
    "tanh": (tanh, tanh_with_jacobian),
}


def _jacobian_points():
    rng = np.random.default_rng(7)
    m = rng.normal(scale=3.0, size=40)
    v = np.exp(rng.uniform(np.log(1e-4), np.log(30.0), size=40))
    # branch points of gelu and far tails
    m_extra = [0.0, 0.0, -0.7518, 2.0, -2.0, 1.2, -45.0, -31.0, 35.0, -8.0 * 5, 8.0 * 5]
    v_extra = [1.0, 0.05, 0.1, 0.1, 0.1001, 0.3, 1.0, 1.0, 1.0, 25.0, 25.0]
    return np.concatenate([m, m_extra]), np.concatenate([v, v_extra]), 40


@pytest.mark.parametrize("name", sorted(JACOBIAN_MAPS))
def test_jacobian_matches_autodiff_and_finite_differences(name):
    fn, fn_jac = JACOBIAN_MAPS[name]
    m_np, v_np, n_fd = _jacobian_points()
    m, v = jnp.asarray(m_np), jnp.asarray(v_np)
    out_mean, out_var, jac = call(fn_jac, m, v)
    ref_mean, ref_var = call(fn, m, v)
    np.testing.assert_allclose(out_mean, ref_mean, rtol=1e-13, atol=0)
    np.testing.assert_allclose(out_var, ref_var, rtol=1e-13, atol=0)
    # elementwise maps: the gradient of the sum is the elementwise derivative
    auto = [*grads(fn, m, v, 0), *grads(fn, m, v, 1)]
    # central differences with steps scaled to the input's own scale
    h_m = 1e-4 * np.minimum(np.sqrt(v_np), 1.0)
    h_v = 1e-4 * v_np
    fd = []
    for out in (0, 1):
        fd.append((np.asarray(call(fn, m + h_m, v)[out]) - np.asarray(call(fn, m - h_m, v)[out])) / (2 * h_m))
        fd.append((np.asarray(call(fn, m, v + h_v)[out]) - np.asarray(call(fn, m, v - h_v)[out])) / (2 * h_v))
    for k in range(4):
        np.testing.assert_allclose(jac[k], auto[k], rtol=1e-9, atol=1e-14, err_msg=f"{name} autodiff jac[{k}]")
        np.testing.assert_allclose(
            np.asarray(jac[k])[:n_fd], fd[k][:n_fd], rtol=1e-5, atol=1e-8, err_msg=f"{name} fd jac[{k}]"
        )


EXTREME_M = np.array([-1e30, -1e6, -100.0, -40.0, -1.0, 0.0, 1e-3, 1.0, 40.0, 100.0, 1e6, 1e30])
EXTREME_V = np.array([0.0, 1e-300, 1e-30, 1e-8, 1.0, 25.0, 1e6])


def _extreme_points(dtype):
    mm, vv = np.meshgrid(EXTREME_M, EXTREME_V)
    tails = [(s * 40.0 * np.sqrt(v), v) for v in (1e-8, 1e-2, 1.0, 25.0, 1e4) for s in (-1, 1)]
    m = np.concatenate([mm.ravel(), [t[0] for t in tails]])
    v = np.concatenate([vv.ravel(), [t[1] for t in tails]])
    return jnp.asarray(m, dtype), jnp.asarray(v, dtype)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", sorted(JACOBIAN_MAPS))
def test_values_and_gradients_finite_in_extreme_cases(name, dtype):
    fn, fn_jac = JACOBIAN_MAPS[name]
    m, v = _extreme_points(dtype)
    mean, var = call(fn, m, v)
    mean_j, var_j, jac = call(fn_jac, m, v)
    for x in (mean, var, mean_j, var_j, *jac):
        assert x.dtype == dtype
        assert np.all(np.isfinite(np.asarray(x))), name
    assert np.all(np.asarray(var) >= 0)
    if dtype == jnp.float32:
        return  # float32: values and the closed-form jacobian (what the engine uses) suffice
    for g in (*grads(fn, m, v, 0), *grads(fn, m, v, 1)):
        assert np.all(np.isfinite(np.asarray(g))), name


def test_extreme_limits():
    big, one = np.array([1e6, -1e6]), np.ones(2)
    mean, var = call(gelu, big, one)
    np.testing.assert_allclose(mean, [1e6, 0.0], atol=1e-300)
    np.testing.assert_allclose(var, [1.0, 0.0], rtol=1e-12, atol=1e-300)
    mean, var = call(leaky_relu, big, one)
    np.testing.assert_allclose(mean, [1e6, -1e4])
    np.testing.assert_allclose(var, [1.0, 1e-4], rtol=1e-12)
    for fn, lo in ((sigmoid, 0.0), (tanh, -1.0)):
        mean, var = call(fn, big, one)
        np.testing.assert_allclose(mean, [1.0, lo])
        np.testing.assert_allclose(var, [0.0, 0.0], atol=1e-300)
    # zero input variance: the activation itself, with no spread
    x, zero = np.array([-1.0, 0.3, 2.0]), np.zeros(3)
    np.testing.assert_allclose(call(gelu, x, zero)[0], x * special.ndtr(x), rtol=1e-14)
    np.testing.assert_allclose(call(leaky_relu, x, zero)[0], np.maximum(x, 0.01 * x), rtol=1e-14)
    np.testing.assert_allclose(call(sigmoid, x, zero)[0], special.ndtr(LAM * x), rtol=1e-14)
    for fn in (gelu, leaky_relu, sigmoid, tanh):
        assert np.all(np.asarray(call(fn, x, zero)[1]) < 1e-300)


def test_registered_activations():
    m, v = np.array([-1.0, 0.5]), np.array([0.5, 2.0])
    for name, fn in [("gelu", gelu), ("sigmoid", sigmoid), ("tanh", tanh), ("leaky_relu", leaky_relu)]:
        mean, var, jac = call(ACTIVATIONS[name], m, v)
        ref = call(fn, m, v)
        np.testing.assert_array_equal(mean, ref[0])
        np.testing.assert_array_equal(var, ref[1])
        assert len(jac) == 4
    assert ACTIVATIONS["leaky_relu"].keywords == {"slope": 0.01}
    # jit and float32 through the registry (as the PBP engine calls it)
    m32, v32 = jnp.asarray(m, jnp.float32), jnp.asarray(v, jnp.float32)
    mean, var, jac = jax.jit(ACTIVATIONS["gelu"])(m32, v32)
    assert mean.dtype == jnp.float32 and all(j.dtype == jnp.float32 for j in jac)
    np.testing.assert_allclose(mean, call(gelu, m, v)[0], rtol=1e-5)

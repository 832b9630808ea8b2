"""Moments of the logistic sigmoid and tanh of a ~ N(m, v), via the probit approximation.

Approximation (the only one in this module)
-------------------------------------------
sigma(x) = 1 / (1 + exp(-x)) is replaced by Phi(lam x) with lam^2 = pi / 8 (equal slope at 0;
max |sigma(x) - Phi(lam x)| = 0.018), and tanh(x) = 2 sigma(2x) - 1 by 2 Phi(2 lam x) - 1.
For the probit surrogate both moments are then exact. With t^2 = 1 + lam^2 v,
h = lam m / t:

    E[sigma(a)]   ~ Phi(h)
    Var[sigma(a)] ~ Var[Phi(lam a)] = probit_var(lam m, lam^2 v)
    E[tanh(a)]    ~ erf(h2 / sqrt(2)),  h2 = 2 lam m / sqrt(1 + 4 lam^2 v)
    Var[tanh(a)]  ~ 4 probit_var(2 lam m, 4 lam^2 v)

Error of the approximation, measured against the exact moments of sigma(a) and tanh(a)
(adaptive quadrature) over m in [-30, 30] (step 0.25), v in {0} and [1e-4, 1e4] (33 log
steps), |m|/sqrt(v) <= 40, refined around the maxima:

    sigmoid: |error of E| <= 0.0177 (at v = 0, m = -+2.76: the surrogate's own max error),
             |error of Var| <= 0.0071 (at m = 0, v = 9.4); relative error of Var up to 16%
             where Var > 1e-3 (the Gaussian tail of Phi is lighter than the logistic one)
    tanh:    |error of E| <= 0.0354 (v = 0, m = -+1.38), |error of Var| <= 0.0284 (m = 0,
             v = 2.4); relative error of Var up to 31% where Var > 1e-3

The errors shrink for wide inputs (v >= 100: sigmoid 8.5e-4 / 3.7e-3). The bounds are
``SIGMOID_MAX_ERROR`` / ``TANH_MAX_ERROR``; ``test_probit_approximation_error`` re-measures
them. For the surrogate activations Phi(lam a) and 2 Phi(2 lam a) - 1 themselves the moments
below are exact.

The exact part: Var[Phi(x)] for x ~ N(m, v)
-------------------------------------------
E[Phi(x)] = Phi(h) with h = m / sqrt(1 + v), and E[Phi(x)^2] = Phi2(h, h; rho), the
bivariate normal CDF on the diagonal with rho = v / (1 + v). ``probit_var`` returns
I = Phi2(h, h; rho) - Phi(h)^2 >= 0 without subtracting the two: with a = 1/sqrt(1 + 2v)
(Owen's a = sqrt((1 - rho)/(1 + rho))) and H = h^2,

    I = (1/pi) int_a^1 exp(-H (1 + y^2) / 2) / (1 + y^2) dy      (= 2 [T(h, 1) - T(h, a)]),

a positive integrand, evaluated by one of three fixed quadratures, chosen by the
exponent range lam_e = H (1 - a^2) / 2 over [a, 1] and b = a |h|:

1. lam_e <= 2: 16-point Gauss-Legendre on y in [a, 1].
2. lam_e > 2, b <= 2: I = Q(|h|) - Q(|h|)^2 - 2 T(h, a), T(h, a) by 16-point Gauss-Legendre
   on [0, a] (Q = 1 - Phi; at most a factor 20 of cancellation).
3. lam_e > 2, b > 2: I = exp(-H (1 + a^2)/2) / (pi b) int_0^inf e^-t exp(-t^2/(2 b^2)) /
   (|h| (1 + y(t)^2)) dt - Q(|h|)^2, y = (b + t/b)/|h|, by 24-point Gauss-Laguerre
   (the subtracted term is below e^-2 of the first).

Against adaptive quadrature (QUADPACK, rtol 1.2e-14, of the same integral scaled by its
peak) on 1980 points (|h| <= 38, v in [1e-10, 1e6]) the relative error of I is <= 2e-12;
it stays relative far into the tails, where I underflows only when the true value does.
Derivatives are closed form (custom JVP):

    dI/dh = -2 sign(h) phi(h) (Q(a|h|) - Q(|h|)),
    dI/dm = dI/dh / t,   dI/dv = -dI/dh h / (2 t^2) + exp(-m^2/(1+2v)) / (2 pi (1+v) sqrt(1+2v))

(t^2 = 1 + v), i.e. dPhi2/dh = 2 phi(h) Phi(a h) and dPhi2/drho = the bivariate density.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.moments.gaussian import SQRT_HALF, norm_pdf

#: lam^2 = pi / 8: Phi(lam x) has the slope of sigma(x) at 0.
PROBIT_SCALE = float(np.sqrt(np.pi / 8.0))
#: Measured max absolute error of the probit moments vs the exact sigmoid / tanh moments.
SIGMOID_MAX_ERROR = {"mean": 0.0177, "var": 0.0071}
TANH_MAX_ERROR = {"mean": 0.0354, "var": 0.0284}

_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_LAG_T, _LAG_W = np.polynomial.laguerre.laggauss(24)
_LAM_SWITCH = 2.0  # exponent range below which plain Gauss-Legendre on [a, 1] is used
_B_SWITCH = 2.0  # a |h| above which the Gauss-Laguerre tail form is used
_H_CLIP = 50.0  # |h| beyond this: every term has underflowed in float64 (and float32)
_INV_PI = 1.0 / np.pi
_INV_2PI = 0.5 / np.pi


def _upper(x):
    """Q(x) = 1 - Phi(x) with full relative accuracy for x >> 0."""
    return 0.5 * lax.erfc(x * SQRT_HALF)


def _prep(mean, var):
    dtype = jnp.result_type(mean, var, float)
    m = jnp.asarray(mean, dtype)
    v = jnp.maximum(jnp.asarray(var, dtype), 0.0)
    tau2 = 1.0 + v
    h = m / jnp.sqrt(tau2)
    return m, v, tau2, jnp.clip(h, -_H_CLIP, _H_CLIP)


def _probit_var_value(m, v, tau2, h):
    dtype = h.dtype
    c = jnp.abs(h)
    big_h = c * c
    one_plus_2v = 1.0 + 2.0 * v
    a2 = 1.0 / one_plus_2v
    a = jnp.sqrt(a2)
    one_minus_a2 = 2.0 * v / one_plus_2v
    b = a * c
    lam = 0.5 * big_h * one_minus_a2
    q_c = _upper(c)
    x = jnp.asarray(0.5 * (_GL_X + 1.0), dtype)  # nodes on [0, 1]
    w = jnp.asarray(0.5 * _GL_W, dtype)
    big_h_ = big_h[..., None]

    # 1. short exponent range: Gauss-Legendre on y in [a, 1] (1 - a without cancellation)
    one_minus_a = one_minus_a2 / (1.0 + a)
    y = a[..., None] + one_minus_a[..., None] * x
    y2 = y * y
    i1 = _INV_PI * one_minus_a * jnp.sum(w * jnp.exp(-0.5 * big_h_ * (1.0 + y2)) / (1.0 + y2), -1)

    # 2. small a|h|: Owen's T(h, a) by Gauss-Legendre on [0, a]; I = Q - Q^2 - 2T
    s = a[..., None] * x
    s2 = s * s
    owen_t = _INV_2PI * a * jnp.sum(w * jnp.exp(-0.5 * big_h_ * (1.0 + s2)) / (1.0 + s2), -1)
    i2 = q_c - q_c * q_c - 2.0 * owen_t

    # 3. large a|h|: Gauss-Laguerre for the Gaussian tail beyond b, minus Q^2
    case3 = (lam > _LAM_SWITCH) & (b > _B_SWITCH)
    bs = jnp.where(case3, b, _B_SWITCH)
    cs = jnp.where(case3, c, 1.0)
    t = jnp.asarray(_LAG_T, dtype)
    yt = (bs[..., None] + t / bs[..., None]) / cs[..., None]
    tail = jnp.sum(
        jnp.asarray(_LAG_W, dtype) * jnp.exp(-0.5 * (t / bs[..., None]) ** 2) / (1.0 + yt * yt), -1
    )
    i3 = jnp.exp(-0.5 * big_h * (1.0 + a2)) * _INV_PI / (bs * cs) * tail - q_c * q_c

    out = jnp.where(lam <= _LAM_SWITCH, i1, jnp.where(b <= _B_SWITCH, i2, i3))
    return jnp.maximum(out, 0.0)


def _probit_var_partials(m, v, tau2, h):
    """(dI/dm, dI/dv) in closed form."""
    c = jnp.abs(h)
    one_plus_2v = 1.0 + 2.0 * v
    a = 1.0 / jnp.sqrt(one_plus_2v)
    d_dh = -2.0 * jnp.sign(h) * norm_pdf(h) * (_upper(a * c) - _upper(c))
    # bivariate density term; m^2 / (1 + 2v) = h^2 (1 + v) / (1 + 2v) keeps it finite for huge m
    dens = jnp.exp(-h * h * tau2 / one_plus_2v) * _INV_2PI / (tau2 * jnp.sqrt(one_plus_2v))
    tau = jnp.sqrt(tau2)
    return d_dh / tau, -0.5 * d_dh * h / tau2 + dens


@jax.custom_jvp
def probit_var(mean, var):
    """Var[Phi(x)] for x ~ N(mean, var), exact up to ~1e-12 relative (see module docstring)."""
    return _probit_var_value(*_prep(mean, var))


@probit_var.defjvp
def _probit_var_jvp(primals, tangents):
    mean, var = primals
    dm, dv = tangents
    args = _prep(mean, var)
    out = _probit_var_value(*args)
    gm, gv = _probit_var_partials(*args)
    return out, gm * dm + gv * dv


def probit_var_with_grad(mean, var):
    """Return (Var[Phi(x)], dVar/dmean, dVar/dvar) for x ~ N(mean, var)."""
    args = _prep(mean, var)
    gm, gv = _probit_var_partials(*args)
    return _probit_var_value(*args), gm, gv


def _scaled_probit(mean, var, k):
    """E and Var of Phi(k a), a ~ N(mean, var), and their (m, v) derivatives."""
    km, k2v = k * mean, (k * k) * var
    _, _, tau2, h = _prep(km, k2v)
    pdf = norm_pdf(h)
    tau = jnp.sqrt(tau2)
    i, im, iv = probit_var_with_grad(km, k2v)
    d_mean = (k * pdf / tau, -0.5 * (k * k) * pdf * h / tau2)
    d_var = (k * im, (k * k) * iv)
    return h, i, d_mean, d_var


def sigmoid(mean, var):
    """Mean and variance of sigma(a), a ~ N(mean, var) (probit approximation)."""
    h = _prep(PROBIT_SCALE * mean, (PROBIT_SCALE**2) * var)[3]
    out_mean = 0.5 * lax.erfc(-h * SQRT_HALF)
    return out_mean, probit_var(PROBIT_SCALE * mean, (PROBIT_SCALE**2) * var)


def sigmoid_with_jacobian(mean, var):
    """Return ``(out_mean, out_var, (dE_dm, dE_dv, dVar_dm, dVar_dv))`` (probit approximation)."""
    h, i, (em, ev), (vm, vv) = _scaled_probit(mean, var, PROBIT_SCALE)
    return 0.5 * lax.erfc(-h * SQRT_HALF), i, (em, ev, vm, vv)


def tanh(mean, var):
    """Mean and variance of tanh(a) = 2 sigma(2a) - 1, a ~ N(mean, var) (probit approximation)."""
    k = 2.0 * PROBIT_SCALE
    h = _prep(k * mean, (k * k) * var)[3]
    return lax.erf(h * SQRT_HALF), 4.0 * probit_var(k * mean, (k * k) * var)


def tanh_with_jacobian(mean, var):
    """Return ``(out_mean, out_var, (dE_dm, dE_dv, dVar_dm, dVar_dv))`` (probit approximation)."""
    h, i, (em, ev), (vm, vv) = _scaled_probit(mean, var, 2.0 * PROBIT_SCALE)
    return lax.erf(h * SQRT_HALF), 4.0 * i, (2.0 * em, 2.0 * ev, 4.0 * vm, 4.0 * vv)


__all__ = [
    "PROBIT_SCALE",
    "SIGMOID_MAX_ERROR",
    "TANH_MAX_ERROR",
    "probit_var",
    "probit_var_with_grad",
    "sigmoid",
    "sigmoid_with_jacobian",
    "tanh",
    "tanh_with_jacobian",
]

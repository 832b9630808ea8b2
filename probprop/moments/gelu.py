"""Moments of GELU(a) = a Phi(a) for a ~ N(m, v), in closed form, and their derivatives.

Notation: t^2 = 1 + v, h = m / t, a_ = 1 / sqrt(1 + 2 v) (so a_ h = m / sqrt((1+v)(1+2v))),
rho = v / (1 + v), Phi2(h, h; rho) the bivariate normal CDF on the diagonal.

Mean (exact; Hirayama et al., "MP-GELU Bayesian neural networks"):

    E[f] = m Phi(h) + (v / t) phi(h)
    dE/dm = Phi(h) + h phi(h) / t^2          dE/dv = phi(h) (2 + v - h^2) / (2 t^3)

Second moment (exact): with P2 = E[Phi(a)^2] = Phi2(h, h; rho), Q = E[Phi(a) phi(a)] =
phi(h) Phi(a_ h) / t and R = E[a Phi(a) phi(a)] = phi(h)/t [m Phi(a_ h)/t^2 + v a_ phi(a_ h)/t],
Stein's lemma E[a g(a)] = m E[g] + v E[g'] gives

    S = E[a^2 Phi(a)^2] = (m^2 + v) P2 + 2 m v Q + 2 v R,        Var = S - E[f]^2.

P2 = Phi(h)^2 + Var[Phi(a)] is taken from ``probit_var`` (sigmoid.py), a positive-integrand
quadrature of the bivariate normal CDF with relative error <= 2e-12 (no Owen's T
subtraction, so it stays accurate in the far tail).

Two rearrangements avoid cancellation (both exact):

* m >> 0: f(a) = a - g(a) with g(a) = a Phi(-a) = -GELU(-a), so by Stein
  Var[f](m) = Var[f](-m) + v (erf(h / sqrt 2) + 2 h phi(h) / t^2). Used for h > 1; the
  direct S - E^2 is then only ever evaluated at h <= 1.
* v small: S - E^2 loses about eps * E[f]^2 / Var[f] (measured: 5e-5 relative at v = 1e-6
  near the GELU minimum m = -0.75). For v <= 0.1 with rho h^2 <= 2 the variance is taken
  instead from the exact Hermite expansion Var[f(a)] = sum_{n>=1} v^n E[f^(n)(a)]^2 / n!,
  whose terms are all positive, with E[f'] = dE/dm above and, for n >= 2 (f'' = phi - phi''),

      E[f^(n)(a)] = (-1)^n phi(h) t^-(n+1) (t^2 He_{n-2}(h) - He_n(h)),

  truncated after n = 20 (term n is about max(rho, rho h^2)^n / n! of the total; against 40
  terms the truncation changes values and derivatives by <= 4e-15 relative). Its
  derivatives are the same series (dE[f^(n)]/dm = E[f^(n+1)], dE[f^(n)]/dv = E[f^(n+2)]/2).
  Where the two forms overlap (v in [0.05, 0.15]) they agree to 1e-11.

Derivatives of the direct form, with G = E[phi(a)^2] = exp(-m^2/(1+2v)) / (2 pi sqrt(1+2v)),
m'' = m / (1+2v), v'' = v / (1+2v), m' = m / t^2, v' = v / t^2 and the Stein recursion
B1 = R = m' Q + v' G, B2 = m' B1 + v' (Q + G m''), B3 = m' B2 + v' (2 B1 + G (m''^2 + v''))
(B_k = E[a^k Phi(a) phi(a)]):

    dS/dm = 2 (m P2 + 2 v Q) + 2 B2          (= E[2 f f'])
    dS/dv = P2 + 4 R + G (m''^2 + v'') - B3  (= E[f'^2 + f f''])

Accuracy, measured against mpmath at 45 digits (closed-form mean, variance by quadrature of
(f - E f)^2) on 402 points: m/sqrt(v) in [-40, 40] (23 values) x v in [1e-8, 1e4] (16 values)
with |m| <= 60, plus 64 central (m, v) pairs:

    mean:     relative error <= 4.7e-13 (absolute <= 4.5e-16 (1 + |m|))
    variance: relative error <= 6e-15 where the Hermite series is used, <= 4.4e-11 for
              |m|/sqrt(v) <= 8, <= 5.5e-10 overall (the worst at m/sqrt(v) = -12, v = 25, where
              S - E^2 ~ 3e-33 is a 1/4000 remainder of S's terms).

Values, the closed-form jacobian and autodiff gradients are finite (variance >= 0) for any
finite m and v >= 0 in float64; in float32 values and jacobian are (autodiff gradients
overflow only for v ~ 1e30).
"""

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.moments.gaussian import SQRT_HALF, norm_pdf
from probprop.moments.sigmoid import probit_var

_H_CLIP = 50.0  # beyond |h| = 50 every phi(h) term has underflowed
_SERIES_V = 0.1  # use the Hermite series for v <= 0.1 ...
_SERIES_RHO_H2 = 2.0  # ... and rho h^2 <= 2
_SERIES_TERMS = 20
_REFLECT_H = 1.0  # use the reflection for h > 1
_INV_2PI = 0.5 / np.pi


def _cdf(x):
    return 0.5 * lax.erfc(-x * SQRT_HALF)


def _prep(mean, var):
    dtype = jnp.result_type(mean, var, float)
    m = jnp.asarray(mean, dtype)
    v = jnp.maximum(jnp.asarray(var, dtype), 0.0)
    return m, v


def _mean_terms(m, v):
    tau2 = 1.0 + v
    tau = jnp.sqrt(tau2)
    h = jnp.clip(m / tau, -_H_CLIP, _H_CLIP)
    cdf, pdf = _cdf(h), norm_pdf(h)
    mean = m * cdf + v / tau * pdf
    c1 = cdf + h * pdf / tau2  # dE/dm = E[f']
    half_c2 = pdf * (2.0 + v - h * h) / (2.0 * tau * tau2)  # dE/dv = E[f''] / 2
    return mean, c1, half_c2, h, tau2, tau, pdf


_N = np.arange(2, _SERIES_TERMS + 1, dtype=np.float64)  # series index n = 2..N
_INV_FACT = np.exp(-np.array([math.lgamma(n + 1.0) for n in _N]))  # 1 / n!
_INV_FACT_PREV = _INV_FACT * _N  # 1 / (n-1)!


def _series(m, v, jacobian):
    """Hermite-series variance (and optionally its derivatives) for small v."""
    mean, c1, _, h, tau2, tau, pdf = _mean_terms(m, v)
    rho = v / tau2
    n_max = _SERIES_TERMS + (2 if jacobian else 0)
    p = [pdf, h * pdf]  # P_k = phi(h) He_k(h), by the (stable) three-term recursion
    for k in range(1, n_max):
        p.append(h * p[k] - k * p[k - 1])
    p = jnp.stack(p, axis=-1)
    d = tau2[..., None] * p[..., :-2] - p[..., 2:]  # d_n = t^2 P_(n-2) - P_n, n = 2..n_max
    n_terms = _SERIES_TERMS - 1
    dtype = d.dtype
    rho_ = rho[..., None]
    coef = jnp.power(rho_, jnp.asarray(_N, dtype)) * jnp.asarray(_INV_FACT, dtype)  # rho^n / n!
    d_n = d[..., :n_terms]
    var = v * c1 * c1 + jnp.sum(coef * d_n * d_n, -1) / tau2
    if not jacobian:
        return mean, var
    coef_prev = jnp.power(rho_, jnp.asarray(_N - 1.0, dtype)) * jnp.asarray(_INV_FACT_PREV, dtype)
    acc_m = jnp.sum(coef * d_n * d[..., 1 : n_terms + 1], -1)
    acc_v = jnp.sum(coef_prev * d_n * d_n + coef * d_n * d[..., 2 : n_terms + 2], -1)
    c2 = d[..., 0] / (tau * tau2)
    c3 = -d[..., 1] / (tau2 * tau2)
    var_m = 2.0 * v * c1 * c2 - 2.0 * acc_m / (tau * tau2)
    var_v = c1 * c1 + v * c1 * c3 + acc_v / (tau2 * tau2)
    return mean, var, var_m, var_v


def _direct_w(mu, v, jacobian):
    """S - E^2 at mean mu (only used for h <= 1), and optionally its derivatives."""
    tau2 = 1.0 + v
    tau = jnp.sqrt(tau2)
    mu = jnp.maximum(mu, -_H_CLIP * tau)
    mean, c1, half_c2, h, _, _, pdf = _mean_terms(mu, v)
    one_plus_2v = 1.0 + 2.0 * v
    a = 1.0 / jnp.sqrt(one_plus_2v)
    ah = a * h
    p2 = _cdf(h) ** 2 + probit_var(mu, v)
    big_q = pdf * _cdf(ah) / tau
    g = jnp.exp(-h * h * tau2 / one_plus_2v) * _INV_2PI * a  # E[phi(a)^2]
    m1, v1 = mu / tau2, v / tau2
    b1 = m1 * big_q + v1 * g  # = R = E[a Phi phi]
    s = (mu * mu + v) * p2 + 2.0 * v * (mu * big_q) + 2.0 * v * b1
    w = s - mean * mean
    if not jacobian:
        return w
    m2, v2 = mu / one_plus_2v, v / one_plus_2v
    b2 = m1 * b1 + v1 * (big_q + g * m2)
    b3 = m1 * b2 + v1 * (2.0 * b1 + g * (m2 * m2 + v2))
    ds_dm = 2.0 * (mu * p2 + 2.0 * v * big_q) + 2.0 * b2
    ds_dv = p2 + 4.0 * b1 + g * (m2 * m2 + v2) - b3
    return w, ds_dm - 2.0 * mean * c1, ds_dv - 2.0 * mean * half_c2


def _direct(m, v, jacobian):
    tau2 = 1.0 + v
    tau = jnp.sqrt(tau2)
    h = jnp.clip(m / tau, -_H_CLIP, _H_CLIP)
    reflect = h > _REFLECT_H
    mu = jnp.where(reflect, -m, m)
    pdf = norm_pdf(h)
    e = lax.erf(h * SQRT_HALF) + 2.0 * h * pdf / tau2
    shift = jnp.where(reflect, v * e, 0.0)  # Var(m) - Var(-m)
    if not jacobian:
        return _direct_w(mu, v, False) + shift
    w, w_m, w_v = _direct_w(mu, v, True)
    br = 1.0 + (1.0 - h * h) / tau2
    shift_m = 2.0 * v * pdf / tau * br
    shift_v = e - v * h * pdf / tau2 * (br + 2.0 / tau2)
    var_m = jnp.where(reflect, shift_m - w_m, w_m)
    var_v = jnp.where(reflect, shift_v + w_v, w_v)
    return w + shift, var_m, var_v


def _use_series(m, v):
    tau2 = 1.0 + v
    h = jnp.clip(m / jnp.sqrt(tau2), -_H_CLIP, _H_CLIP)
    return (v <= _SERIES_V) & (v * h * h <= _SERIES_RHO_H2 * tau2)  # rho h^2 <= 2


def gelu(mean, var):
    """Mean and variance of GELU(a) = a Phi(a), a ~ N(mean, var) (exact)."""
    m, v = _prep(mean, var)
    series = _use_series(m, v)
    out_mean = _mean_terms(m, v)[0]
    _, var_s = _series(m, jnp.where(series, v, 0.0), False)
    var_d = _direct(m, jnp.where(series, 1.0, v), False)
    out_var = jnp.where(series, var_s, var_d)
    return out_mean, jnp.maximum(out_var, 0.0)


def gelu_with_jacobian(mean, var):
    """Return ``(out_mean, out_var, (dE_dm, dE_dv, dVar_dm, dVar_dv))``."""
    m, v = _prep(mean, var)
    series = _use_series(m, v)
    out_mean, c1, half_c2, *_ = _mean_terms(m, v)
    _, var_s, vm_s, vv_s = _series(m, jnp.where(series, v, 0.0), True)
    var_d, vm_d, vv_d = _direct(m, jnp.where(series, 1.0, v), True)
    out_var = jnp.maximum(jnp.where(series, var_s, var_d), 0.0)
    var_m = jnp.where(series, vm_s, vm_d)
    var_v = jnp.where(series, vv_s, vv_d)
    return out_mean, out_var, (c1, half_c2, var_m, var_v)

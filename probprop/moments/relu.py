"""Moments of max(0, a) for a ~ N(m, v) (the rectified Gaussian), and their derivatives.

With s = sqrt(v), alpha = m / s, Phi = Phi(alpha), gamma = phi(alpha)/Phi(alpha) and
r = alpha + gamma (Hernández-Lobato & Adams 2015, eqs. 10-11, written with r):

    E[z]   = Phi * s * r                                  (= m Phi + s phi)
    Var[z] = E[z] * s * r * Phi(-alpha) + Phi * v * (1 - gamma * r)

Derivatives (closed form, used by the hand-written backward pass):

    dE/dm = Phi                 dE/dv = phi / (2 s)
    dVar/dm = 2 E Phi(-alpha)   dVar/dv = Phi - E phi / s
"""

import jax.numpy as jnp

from probprop._compute_once import compute_once
from probprop.moments.gaussian import mills_terms


def _terms(mean, var):
    # Python scalars (weakly typed: they follow an array argument's float type) and lists become
    # arrays of the common float type, as in the other activations; arrays of one float type pass
    # through unchanged.
    dtype = jnp.result_type(mean, var, float)
    m = jnp.asarray(mean, dtype)
    # A unit with zero input variance would divide by zero: floor at the smallest normal.
    v = jnp.maximum(jnp.asarray(var, dtype), jnp.finfo(dtype).tiny)
    s = jnp.sqrt(v)
    alpha = m / s
    v, s, alpha = compute_once(v, s, alpha)
    cdf, upper, gamma, r = mills_terms(alpha)
    return v, s, cdf, upper, gamma, r


def relu(mean, var):
    """Mean and variance of max(0, a) for a ~ N(mean, var) (stable tail form)."""
    v, s, cdf, upper, gamma, r = _terms(mean, var)
    out_mean = cdf * s * r
    out_var = out_mean * s * r * upper + cdf * v * (1.0 - gamma * r)
    return out_mean, jnp.maximum(out_var, 0.0)


def relu_with_jacobian(mean, var):
    """Return ``(out_mean, out_var, (dE_dm, dE_dv, dVar_dm, dVar_dv))``."""
    v, s, cdf, upper, gamma, r = _terms(mean, var)
    out_mean = cdf * s * r
    out_var = jnp.maximum(out_mean * s * r * upper + cdf * v * (1.0 - gamma * r), 0.0)
    pdf_over_s = cdf * gamma / s  # phi(alpha)/s, written through gamma so it is finite in the tail
    jac = (cdf, 0.5 * pdf_over_s, 2.0 * out_mean * upper, cdf - out_mean * pdf_over_s)
    return out_mean, out_var, jac

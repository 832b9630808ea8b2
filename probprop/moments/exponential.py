"""Exponential of a Gaussian (log-normal moments): the positive link of a variance head.

For Z ~ N(m, v) and A = exp(Z), exactly:

    E[A]      = exp(m + v / 2)
    Var[A]    = E[A]^2 (exp(v) - 1)             (expm1 keeps it accurate for small v)
    Cov(Z, A) = v E[A]                          (Stein's lemma: v E[exp'(Z)])

so the regression coefficient of A on Z is J = Cov(Z, A) / v = E[A] = dE[A]/dm, the same
convention as the other moment maps' Jacobians. Used by the heteroscedastic TAGI head
(:mod:`probprop.learners.tagi`), where exp(Z) is the noise variance.
"""

from __future__ import annotations

import jax.numpy as jnp


def exponential(mean, var):
    """``(E[exp Z], Var[exp Z], J)`` for Z ~ N(mean, var), elementwise; J = dE/dm = E[exp Z]."""
    e = jnp.exp(mean + 0.5 * var)
    return e, e * e * jnp.expm1(var), e

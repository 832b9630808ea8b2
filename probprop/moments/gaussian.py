"""Standard normal helpers with forms that stay accurate in the tails."""

import jax
import jax.numpy as jnp
from jax import lax

from probprop._compute_once import compute_once

SQRT_HALF = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327

#: Below this standardised value the inverse Mills ratio is taken from its asymptotic
#: series (as in the reference PBP code); float32 underflows earlier, so it switches at -10.
TAIL_SWITCH = {jnp.dtype("float64"): -30.0, jnp.dtype("float32"): -10.0}


def norm_cdf(a):
    """Phi(a) via erfc, which (unlike 0.5 * (1 + erf)) keeps full relative accuracy for a << 0."""
    return 0.5 * lax.erfc(-a * SQRT_HALF)


def norm_pdf(a):
    return INV_SQRT_2PI * jnp.exp(-0.5 * a * a)


@jax.custom_jvp
def mills_terms(a):
    """Return (Phi(a), Phi(-a), gamma, r) with gamma = phi(a)/Phi(a) and r = a + gamma.

    One erfc serves both tails: Phi(-|a|) is accurate to full relative precision and the
    other tail is 1 minus it. ``r`` is the mean of max(0, z) in units of sqrt(v)*Phi:
    E[max(0, z)] = sqrt(v) * Phi(a) * r for z ~ N(a sqrt(v), v). Below the tail switch,
    gamma and r come from the asymptotic series gamma = -a - 1/a + 2/a^3, r = -1/a + 2/a^3
    (reference PBP code, plus the next term -10/a^5, which makes the switch continuous to
    1e-7), which avoids 0/0 once Phi underflows and the cancellation in a + gamma.
    Derivatives are given in closed form (see below): autodiff of phi/Phi would square Phi,
    which underflows in the tail.
    """
    switch = TAIL_SWITCH.get(jnp.dtype(a.dtype), -30.0)
    tail = a < switch
    small = 0.5 * lax.erfc(jnp.abs(a) * SQRT_HALF)  # Phi(-|a|)
    # erfc and exp once per unit, in one kernel (see probprop._compute_once)
    a, small, pdf = compute_once(a, small, norm_pdf(a))
    negative = a < 0
    cdf = jnp.where(negative, small, 1.0 - small)
    upper = jnp.where(negative, 1.0 - small, small)
    gamma_direct = pdf / jnp.where(tail, 1.0, cdf)
    inv = 1.0 / jnp.where(tail, a, switch)
    inv2 = inv * inv
    r_tail = inv * (-1.0 + inv2 * (2.0 - 10.0 * inv2))
    gamma = jnp.where(tail, r_tail - a, gamma_direct)
    r = jnp.where(tail, r_tail, a + gamma_direct)
    return compute_once(cdf, upper, gamma, r)


@mills_terms.defjvp
def _mills_terms_jvp(primals, tangents):
    """dPhi/da = Phi gamma, d(1-Phi)/da = -Phi gamma, dgamma/da = -gamma r, dr/da = 1 - gamma r."""
    (a,), (da,) = primals, tangents
    cdf, upper, gamma, r = mills_terms(a)
    pdf = cdf * gamma
    gr = gamma * r
    return (cdf, upper, gamma, r), (pdf * da, -pdf * da, -gr * da, (1.0 - gr) * da)

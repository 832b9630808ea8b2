"""Moments of the leaky ReLU f(a) = max(a, s a) (0 <= s <= 1) for a ~ N(m, v), exact.

Write f = s a + (1 - s) z with z = max(0, a). With sd = sqrt(v), alpha = m / sd and the
rectified-Gaussian moments E_z = E[z], V_z = Var[z] (relu.py), Stein's lemma gives
Cov(a, z) = v E[1{a > 0}] = v Phi(alpha), hence (every term >= 0, no cancellation):

    E[f]   = s m + (1 - s) E_z
    Var[f] = s^2 v + (1 - s)^2 V_z + 2 s (1 - s) v Phi(alpha)

(equivalently E[f^2] = s^2 (m^2 + v) + (1 - s^2) E[z^2], using E[a z] = E[z^2]).
Derivatives (closed form; phi = phi(alpha)):

    dE/dm   = s + (1 - s) Phi                     dE/dv = (1 - s) phi / (2 sd)
    dVar/dm = 2 (1 - s)^2 E_z Phi(-alpha) + 2 s (1 - s) sd phi
    dVar/dv = s^2 + (1 - s)^2 (Phi - E_z phi / sd) + 2 s (1 - s) (Phi - alpha phi / 2)

E_z and V_z use the tail-stable Mills-ratio form of relu.py for alpha <= 0 and the
cancellation-free V_z / v = alpha^2 Phi Phi(-alpha) + Phi + alpha phi (1 - 2 Phi) - phi^2 with
E_z = m Phi + sd phi for alpha > 0, so huge |m| and v -> 0 stay finite (alpha is clipped
to +-50, where every Gaussian tail term has underflowed). Zero variance is floored at the
smallest normal number, as in relu.py. s = 1 gives the identity, s = 0 ReLU.
"""

import functools

import jax.numpy as jnp

from probprop.moments.gaussian import mills_terms

DEFAULT_SLOPE = 0.01
_ALPHA_CLIP = 50.0


def _terms(mean, var):
    dtype = jnp.result_type(mean, var, float)
    m = jnp.asarray(mean, dtype)
    v = jnp.maximum(jnp.asarray(var, dtype), jnp.finfo(dtype).tiny)
    sd = jnp.sqrt(v)
    alpha = jnp.clip(m / sd, -_ALPHA_CLIP, _ALPHA_CLIP)
    cdf, upper, gamma, r = mills_terms(alpha)
    pdf = cdf * gamma  # phi(alpha), through gamma so it is finite in the far tail
    positive = alpha > 0
    # E_z / sd and V_z / v, each in its cancellation-free form
    ez_over_sd = jnp.where(positive, alpha * cdf + pdf, cdf * r)
    ez = jnp.where(positive, m * cdf + sd * pdf, sd * cdf * r)
    vz_pos = alpha * alpha * cdf * upper + cdf + alpha * pdf * (upper - cdf) - pdf * pdf
    vz_neg = cdf * r * r * upper + cdf * (1.0 - gamma * r)
    vz = v * jnp.where(positive, vz_pos, vz_neg)
    return m, v, sd, alpha, cdf, upper, pdf, ez, ez_over_sd, vz


def leaky_relu(mean, var, slope=DEFAULT_SLOPE):
    """Mean and variance of max(a, slope * a), a ~ N(mean, var) (exact)."""
    m, v, sd, alpha, cdf, upper, pdf, ez, _, vz = _terms(mean, var)
    s = slope
    out_mean = s * m + (1.0 - s) * ez
    out_var = s * s * v + (1.0 - s) ** 2 * vz + 2.0 * s * (1.0 - s) * v * cdf
    return out_mean, jnp.maximum(out_var, 0.0)


def leaky_relu_with_jacobian(mean, var, slope=DEFAULT_SLOPE):
    """Return ``(out_mean, out_var, (dE_dm, dE_dv, dVar_dm, dVar_dv))``."""
    m, v, sd, alpha, cdf, upper, pdf, ez, ez_over_sd, vz = _terms(mean, var)
    s = slope
    t = 1.0 - s
    out_mean = s * m + t * ez
    out_var = jnp.maximum(s * s * v + t * t * vz + 2.0 * s * t * v * cdf, 0.0)
    jac = (
        s + t * cdf,
        0.5 * t * pdf / sd,
        2.0 * t * t * ez * upper + 2.0 * s * t * sd * pdf,
        s * s + t * t * (cdf - ez_over_sd * pdf) + 2.0 * s * t * (cdf - 0.5 * alpha * pdf),
    )
    return out_mean, out_var, jac


def make_leaky_relu(slope=DEFAULT_SLOPE):
    """The moment map with jacobian for a given negative-side slope (for ``ACTIVATIONS``)."""
    return functools.partial(leaky_relu_with_jacobian, slope=slope)

"""Moments of the maximum of Gaussians (Clark 1961), for max pooling by moment matching.

For independent x1 ~ N(m1, v1) and x2 ~ N(m2, v2), with s = sqrt(v1 + v2) and b = (m1 - m2) / s:

    E[max]   = m1 Phi(b) + m2 Phi(-b) + s phi(b)
    E[max^2] = (m1^2 + v1) Phi(b) + (m2^2 + v2) Phi(-b) + (m1 + m2) s phi(b)

both exact. The maximum of more than two is matched pairwise, each intermediate maximum replaced
by the Gaussian with its moments (the approximation of Clark's paper; Gast & Roth 2018 use it for
max pooling): :func:`max_pool_moments` over a window. Correlations between the pooled units are
not carried (the units of a feature map share weights and inputs); ``layers/tests/test_conv.py``
measures the error this leaves against Monte Carlo of a whole convolution + pooling layer.
"""

import jax.numpy as jnp

from probprop.moments.gaussian import norm_cdf, norm_pdf

#: Below this, s = sqrt(v1 + v2) counts as zero: the maximum of the two means, variance of the larger.
MIN_SCALE = 1e-12


def max_moments(m1, v1, m2, v2):
    """Mean and variance of max(x1, x2) for independent Gaussians (exact, Clark 1961)."""
    s2 = v1 + v2
    degenerate = s2 <= MIN_SCALE * MIN_SCALE
    s = jnp.sqrt(jnp.where(degenerate, 1.0, s2))
    b = (m1 - m2) / s
    p, q, d = norm_cdf(b), norm_cdf(-b), norm_pdf(b)
    mean = m1 * p + m2 * q + s * d
    second = (m1 * m1 + v1) * p + (m2 * m2 + v2) * q + (m1 + m2) * s * d
    var = jnp.maximum(second - mean * mean, 0.0)
    first = m1 >= m2
    mean = jnp.where(degenerate, jnp.where(first, m1, m2), mean)
    var = jnp.where(degenerate, jnp.where(first, v1, v2), var)
    return mean, var


def max_pool_moments(mean, var, window: int):
    """Max pooling (non-overlapping ``window`` x ``window``, stride ``window``) of independent
    Gaussian units ``(mean, var)`` of shape (..., C, H, W): the window's maximum matched pairwise
    by :func:`max_moments`, row by row within the window. Returns (..., C, H // window, W // window);
    rows and columns past the last whole window are dropped (as in "valid" pooling)."""
    *lead, c, h, w = mean.shape
    ho, wo = h // window, w // window

    def windows(a):
        a = a[..., : ho * window, : wo * window].reshape(*lead, c, ho, window, wo, window)
        return jnp.moveaxis(a, -3, -2).reshape(*lead, c, ho, wo, window * window)

    m, v = windows(mean), windows(var)
    out_m, out_v = m[..., 0], v[..., 0]
    for i in range(1, window * window):
        out_m, out_v = max_moments(out_m, out_v, m[..., i], v[..., i])
    return out_m, out_v

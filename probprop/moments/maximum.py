"""Moments of the maximum of Gaussians (Clark 1961), for max pooling by moment matching.

For independent x1 ~ N(m1, v1) and x2 ~ N(m2, v2), with s = sqrt(v1 + v2) and b = (m1 - m2) / s:

    E[max]   = m1 Phi(b) + m2 Phi(-b) + s phi(b)
    E[max^2] = (m1^2 + v1) Phi(b) + (m2^2 + v2) Phi(-b) + (m1 + m2) s phi(b)

both exact. The maximum of more than two is matched pairwise, each intermediate maximum replaced
by the Gaussian with its moments (the approximation of Clark's paper; Gast & Roth 2018 use it for
max pooling): :func:`max_pool_moments` over a window. Correlations between the pooled units are
not carried (the units of a feature map share weights and inputs); ``layers/tests/test_conv.py``
measures the error this leaves against Monte Carlo of a whole convolution + pooling layer.

ADF pulls back through the pooling once per data point, and autodiff's pullback of these formulas
(and of the window reshapes) cost about ten times their forward. Their derivatives are closed forms
(the terms through b cancel in the mean; Clark 1961):

    d E[max] / d m1 = Phi(b),  d E[max] / d m2 = Phi(-b),  d E[max] / d v1 = d E[max] / d v2 = phi(b) / (2 s)
    d E[max^2] / d m1 = 2 m1 Phi(b) + s phi(b) + phi(b) (v1 - v2) / s       (m2: swap 1 and 2, Phi(-b))
    d E[max^2] / d v1 = Phi(b) + (m1 + m2) phi(b) / (2 s) - phi(b) (m1 - m2) (v1 - v2) / (2 s^3)

and Var = E[max^2] - E[max]^2. Both the variance and its slopes are computed centred on the
means: m1 - E[max] = s (b Phi(-b) - phi(b)), m2 - E[max] = -s (b Phi(b) + phi(b)), and

    Var = v1 Phi(b) + v2 Phi(-b) + s^2 [b^2 Phi(b) Phi(-b) + b phi(b) (Phi(-b) - Phi(b)) - phi(b)^2]
        = v1 Phi(b) + v2 Phi(-b) + s^2 (b Phi(-b) - phi(b)) (b Phi(b) + phi(b))     (computed so),

so that they depend on the means through b only: shifting both means leaves them unchanged, where
E[max^2] - E[max]^2 lost about eps m^2 and the slopes eps m to rounding (float32 networks with
outputs far from zero; the tests check shift invariance). :func:`max_pool_moments` keeps them from its forward pass and
pulls back through the window's chain of pairs with them (a ``jax.custom_vjp``: reverse mode only,
which is what ADF and the gradient learners use); the tests check it against autodiff of the plain
formulas.
"""

from functools import partial

import jax
import jax.numpy as jnp

from probprop.moments.gaussian import norm_cdf, norm_pdf

#: Below this, s = sqrt(v1 + v2) counts as zero: the maximum of the two means, variance of the larger.
MIN_SCALE = 1e-12


def max_moments_and_slopes(m1, v1, m2, v2):
    """Mean and variance of max(x1, x2) for independent Gaussians (exact, Clark 1961), and their
    partial derivatives ``(dmean/dm1, dmean/dm2, dmean/dv, dvar/dm1, dvar/dm2, dvar/dv1, dvar/dv2)``
    (dmean/dv1 = dmean/dv2 = dmean/dv). Where s = 0 the maximum is the larger mean with its
    variance, whose derivatives are those of the selection. Where rounding would make the variance
    negative it is 0 and its slopes are still the exact
    function's (autodiff of the clipped form would give 0, or 1/2 at a tie)."""
    s2 = v1 + v2
    degenerate = s2 <= MIN_SCALE * MIN_SCALE
    s = jnp.sqrt(jnp.where(degenerate, 1.0, s2))
    b = (m1 - m2) / s
    p, q, d = norm_cdf(b), norm_cdf(-b), norm_pdf(b)
    mean = m1 * p + m2 * q + s * d
    # centred forms (m1 - mean = s (b q - d), m2 - mean = -s (b p + d)): no m^2 to cancel
    bq, bp = b * q - d, b * p + d
    var = jnp.maximum(v1 * p + v2 * q + s2 * bq * bp, 0.0)   # the factored form: no b^2 to overflow
    # slopes of the mean, then of the variance (d E[max^2] - 2 E[max] d E[max], centred)
    dv = d / (2 * s)
    x = d * (v1 - v2) / s
    common = s * (bq - bp) * dv - x * b / (2 * s)
    cm1 = 2 * s * p * bq + s * d + x
    cm2 = -2 * s * q * bp + s * d - x
    cv1 = p + common
    cv2 = q + common
    # s = 0: the larger of the two, passed through
    first = m1 >= m2
    one, zero = jnp.ones_like(p), jnp.zeros_like(p)
    pick1, pick2 = jnp.where(first, one, zero), jnp.where(first, zero, one)
    mean = jnp.where(degenerate, jnp.where(first, m1, m2), mean)
    var = jnp.where(degenerate, jnp.where(first, v1, v2), var)
    slopes = (jnp.where(degenerate, pick1, p), jnp.where(degenerate, pick2, q), jnp.where(degenerate, zero, dv),
              jnp.where(degenerate, zero, cm1), jnp.where(degenerate, zero, cm2),
              jnp.where(degenerate, pick1, cv1), jnp.where(degenerate, pick2, cv2))
    return mean, var, slopes


def max_moments(m1, v1, m2, v2):
    """Mean and variance of max(x1, x2) for independent Gaussians (exact, Clark 1961)."""
    return max_moments_and_slopes(m1, v1, m2, v2)[:2]


def _windows(a, window: int):
    """(..., C, H, W) -> (..., C, H // window, W // window, window^2): each window's units, row by row."""
    *lead, c, h, w = a.shape
    ho, wo = h // window, w // window
    a = a[..., : ho * window, : wo * window].reshape(*lead, c, ho, window, wo, window)
    return jnp.moveaxis(a, -3, -2).reshape(*lead, c, ho, wo, window * window)


def _unwindows(parts, window: int, shape):
    """The transpose of :func:`_windows` for a list of the window's window^2 units (zeros past the
    last whole window)."""
    *lead, c, h, w = shape
    ho, wo = h // window, w // window
    a = jnp.stack(parts, -1).reshape(*lead, c, ho, wo, window, window)
    a = jnp.moveaxis(a, -2, -3).reshape(*lead, c, ho * window, wo * window)
    return jnp.pad(a, [(0, 0)] * (len(shape) - 2) + [(0, h - ho * window), (0, w - wo * window)])


def _chain(mean, var, window: int):
    """The window's units matched pairwise, row by row: pooled (mean, var) and each pair's slopes."""
    m, v = _windows(mean, window), _windows(var, window)
    out_m, out_v = m[..., 0], v[..., 0]
    slopes = []
    for i in range(1, window * window):
        out_m, out_v, s = max_moments_and_slopes(out_m, out_v, m[..., i], v[..., i])
        slopes.append(s)
    return out_m, out_v, slopes


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def max_pool_moments(mean, var, window: int):
    """Max pooling (non-overlapping ``window`` x ``window``, stride ``window``) of independent
    Gaussian units ``(mean, var)`` of shape (..., C, H, W): the window's maximum matched pairwise
    by :func:`max_moments`, row by row within the window. Returns (..., C, H // window, W // window);
    rows and columns past the last whole window are dropped (as in "valid" pooling). Reverse-mode
    differentiable by Clark's closed-form slopes (no forward mode)."""
    return _chain(mean, var, window)[:2]


def plain_max_pool_moments(mean, var, window: int):
    """:func:`max_pool_moments` left to autodiff (forward and reverse mode): the reference its
    pullback is tested against, and the baseline of ``probprop bench conv-speed``."""
    return _chain(mean, var, window)[:2]


def _max_pool_forward(mean, var, window: int):
    out_m, out_v, slopes = _chain(mean, var, window)
    # zero-size arrays carry the inputs' shape and dtypes to the backward pass
    return (out_m, out_v), (slopes, jnp.zeros((0,) + mean.shape, mean.dtype), jnp.zeros((0,), var.dtype))


def _max_pool_backward(window: int, residuals, cotangents):
    slopes, shape_of_mean, like_var = residuals
    g_m, g_v = cotangents
    g_ms, g_vs = [], []
    for a1, a2, dv, cm1, cm2, cv1, cv2 in reversed(slopes):   # the chain of pairs, last pair first
        g_ms.append(g_m * a2 + g_v * cm2)
        g_vs.append(g_m * dv + g_v * cv2)
        g_m, g_v = g_m * a1 + g_v * cm1, g_m * dv + g_v * cv1
    g_ms.append(g_m)
    g_vs.append(g_v)
    shape = shape_of_mean.shape[1:]
    return (_unwindows(g_ms[::-1], window, shape).astype(shape_of_mean.dtype),
            _unwindows(g_vs[::-1], window, shape).astype(like_var.dtype))


max_pool_moments.defvjp(_max_pool_forward, _max_pool_backward)

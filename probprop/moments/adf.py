"""Shared assumed-density-filtering building blocks (Minka 2001; Hernández-Lobato & Adams 2015).

These formulas are used both by the per-datapoint PBP update and by the EP refinement of the
prior, so they live here, once.
"""

import jax.numpy as jnp

#: Weight updates whose new variance falls at or below this are rejected (reference PBP code).
MIN_VARIANCE = 1e-100


def gaussian_log_z(y, mean, var):
    """log N(y | mean, var) without the -0.5 log(2 pi) constant (it cancels wherever used)."""
    return -0.5 * (jnp.log(var) + (y - mean) ** 2 / var)


def student_log_z(y, mean, var, shape, rate):
    """log Z, log Z1, log Z2 for a Gaussian observation whose precision has a Gamma(shape, rate).

    The Student-t marginal is approximated by plugging in the mean of the noise variance:
    Z(a, b) ~= N(y | mean, var + b / (a - 1)); Z1 = Z(a + 1, b), Z2 = Z(a + 2, b) (PBP eq. 12).
    The three are computed as one stacked array (one fused kernel instead of three).
    """
    offsets = jnp.asarray([-1.0, 0.0, 1.0])
    expand = lambda a: jnp.expand_dims(jnp.asarray(a), -1)  # noqa: E731
    log_z = gaussian_log_z(expand(y), expand(mean), expand(var) + expand(rate) / (expand(shape) + offsets))
    return log_z[..., 0], log_z[..., 1], log_z[..., 2]


def innovation(dlogz_dm, dlogz_dv):
    """The moment match of :func:`gaussian_update` in TAGI's innovation form: the posterior is
    N(m + v delta_mu, v + v^2 delta_var) with

        delta_mu = dlogZ/dm,    delta_var = 2 dlogZ/dv - (dlogZ/dm)^2

    (for a Gaussian observation of variance s2, ((y - m)/S, -1/S) with S = v + s2)."""
    return dlogz_dm, 2.0 * dlogz_dv - dlogz_dm * dlogz_dm


def gaussian_update(m, v, dlogz_dm, dlogz_dv):
    """ADF moment match of a Gaussian N(m, v) (Minka 2001, eqs. 5.12-5.13; PBP eqs. 5-6):

        m_new = m + v dlogZ/dm,    v_new = v - v^2 [(dlogZ/dm)^2 - 2 dlogZ/dv]
    """
    return m + v * dlogz_dm, v - v * v * (dlogz_dm * dlogz_dm - 2.0 * dlogz_dv)


def update_gradients(m, v, m_new, v_new):
    """The inverse of :func:`gaussian_update`: the (dlogZ/dm, dlogZ/dv) that turned N(m, v) into
    N(m_new, v_new),

        dlogZ/dm = (m_new - m) / v,    dlogZ/dv = [(v_new - v) / v^2 + (dlogZ/dm)^2] / 2.

    Any learner whose step is a Gaussian moment match (PBP's ADF, TAGI's conditioning) thereby
    reveals the gradient of the log evidence of the rows it learned with respect to its prior
    moments (for a TAGI mini-batch, that of the rows' summed innovations)."""
    g_m = (m_new - m) / v
    return g_m, 0.5 * ((v_new - v) / (v * v) + g_m * g_m)


def gaussian_update_outer(m, v, a, b, x):
    """:func:`gaussian_update` of a weight matrix whose gradients are outer products with
    deterministic inputs x, ``dlogZ/dm = a x^T`` and ``dlogZ/dv = b (x^2)^T`` (the first
    layer of a network). With t = v x (per weight) the update factors as

        m_new = m + t a,    v_new = v - t^2 (a^2 - 2 b)

    four operations per weight instead of ten (the per-row a^2 - 2 b is formed once).
    """
    t = v * x
    return m + t * a[:, None], v - t * t * (a * a - 2.0 * b)[:, None]


def gamma_update(shape, rate, log_z, log_z1, log_z2):
    """ADF moment match of a Gamma(shape, rate) from Z, Z(a+1), Z(a+2) (PBP eqs. 7-8):

        a_new = 1 / (Z Z2 / Z1^2 (a + 1) / a - 1)
        b_new = 1 / (Z2 / Z1 (a + 1) / b - Z1 / Z a / b)
    """
    shape_new = 1.0 / (jnp.exp(log_z + log_z2 - 2.0 * log_z1) * (shape + 1.0) / shape - 1.0)
    rate_new = 1.0 / (
        jnp.exp(log_z2 - log_z1) * (shape + 1.0) / rate - jnp.exp(log_z1 - log_z) * shape / rate
    )
    return shape_new, rate_new


def valid_gaussian(m_new, v_new):
    """True where an update gives a finite mean and a finite variance above MIN_VARIANCE."""
    return (v_new > MIN_VARIANCE) & jnp.isfinite(v_new) & jnp.isfinite(m_new)


def valid_gamma(shape_new, rate_new):
    """True where a Gamma update is usable: finite, rate > 0, shape > 1 (so b/(a-1) > 0)."""
    return jnp.isfinite(shape_new) & jnp.isfinite(rate_new) & (rate_new > 0) & (shape_new > 1.0)

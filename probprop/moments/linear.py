"""Moments of a linear layer with independent Gaussian weights and uncertain inputs.

For output unit j with weights w_jk ~ N(M_jk, V_jk) and inputs z_k ~ (m_k, v_k), all
independent, and the PBP scaling 1/sqrt(n) (n = fan_in + 1, the bias being an input fixed
to 1 with variance 0):

    E[a_j]   = sum_k M_jk m_k / sqrt(n)
    Var[a_j] = sum_k (M_jk^2 v_k + V_jk m_k^2 + V_jk v_k) / n

``scaled=False`` drops the 1/sqrt(n) (TAGI's and DVI's parameterisation, a = W z). This is the
one implementation of the linear moment map: PBP, TAGI and DVI all call :func:`linear`.
"""

import jax.numpy as jnp


def append_bias(mean, var):
    """Append the constant bias input (mean 1, variance 0) along the last axis.

    ``var=None`` stands for deterministic inputs and stays None.
    """
    one = jnp.ones(mean.shape[:-1] + (1,), mean.dtype)
    mean = jnp.concatenate([mean, one], -1)
    return mean, None if var is None else jnp.concatenate([var, jnp.zeros_like(one)], -1)


def linear(M, V, in_mean, in_var, scaled: bool = True):
    """Pre-activation moments of ``a = W z / sqrt(n)`` (``scaled=False``: ``a = W z``); ``M, V``
    have shape (out, n).

    ``in_mean, in_var`` have shape (..., n) (the bias entry already appended, where there is
    one); ``in_var=None`` means deterministic inputs (the data layer). Returns ``(mean, var)``
    of shape (..., out).
    """
    if not scaled:
        mean = in_mean @ M.T
        if in_var is None:
            return mean, (in_mean * in_mean) @ V.T
        return mean, in_var @ (M * M).T + (in_mean * in_mean + in_var) @ V.T
    n = M.shape[-1]
    if M.shape[0] == 1 and in_mean.ndim == 1:
        # one output unit for one point: both moments in one reduction (XLA:CPU otherwise
        # emits three small dot kernels, each split in two reductions)
        in_var_ = jnp.zeros_like(in_mean) if in_var is None else in_var
        terms = jnp.stack([M[0] * in_mean / jnp.sqrt(n), (in_var_ * M[0] * M[0] + (in_mean * in_mean + in_var_) * V[0]) / n])
        out = jnp.sum(terms, axis=-1)
        return out[:1], out[1:]
    mean = in_mean @ M.T / jnp.sqrt(n)
    if in_var is None:
        return mean, (in_mean * in_mean) @ V.T / n
    var = ((in_var @ (M * M).T) + (in_mean * in_mean + in_var) @ V.T) / n
    return mean, var


def linear_vjp(M, V, in_mean, in_var, g_mean, g_var):
    """Cotangents of a scalar f through :func:`linear` for one data point.

    Given ``g_mean = df/dE[a]`` and ``g_var = df/dVar[a]`` (shape (out,)), returns
    ``(dM, dV, d_in_mean, d_in_var)``. The weight gradients are outer products formed
    from the pre-activation cotangents (the fast form on XLA:CPU, see engine notes):

        df/dM = g_mean m^T / sqrt(n) + 2 M * (g_var v^T) / n
        df/dV = g_var (m^2 + v)^T / n
        df/dm = M^T g_mean / sqrt(n) + 2 m * (V^T g_var) / n
        df/dv = (M^2 + V)^T g_var / n

    With ``in_var=None`` (deterministic inputs) the input cotangents are not formed.
    """
    n = M.shape[-1]
    rs = 1.0 / jnp.sqrt(n)
    if in_var is None:
        dM = jnp.outer(g_mean * rs, in_mean)
        dV = jnp.outer(g_var / n, in_mean * in_mean)
        return dM, dV, None, None
    dM = jnp.outer(g_mean * rs, in_mean) + 2.0 * M * jnp.outer(g_var / n, in_var)
    dV = jnp.outer(g_var / n, in_mean * in_mean + in_var)
    Vg = (g_var / n) @ V
    d_in_mean = (g_mean * rs) @ M + 2.0 * in_mean * Vg
    d_in_var = (g_var / n) @ (M * M) + Vg
    return dM, dV, d_in_mean, d_in_var


def linear_shared(M, V, in_mean, in_var, in_cov, scaled: bool = True):
    """:func:`linear` for inputs that share a noise source: ``in_cov`` (..., n, d) holds
    Cov(z_k, eps) for a standard normal eps of d dimensions (the input noise, see
    :mod:`probprop.moments.input_noise`), so the inputs' covariance is
    ``diag(in_var - |C_k|^2) + C C^T`` rather than ``diag(in_var)``. Returns ``(mean, var, cov)``
    of the pre-activations, ``cov`` (..., out, d) = Cov(a_j, eps) = (M C)_j (scaled as the mean).

    The weights stay independent of the inputs and of each other, so only the term of the
    weight means changes: :func:`linear` counts the shared part as ``sum_k M_jk^2 |C_k|^2``,
    and the exact term is ``|(M C)_j|^2``::

        Var[a_j] = linear(...)_j + (|(M C)_j|^2 - sum_k M_jk^2 |C_k|^2) / n
    """
    mean, var = linear(M, V, in_mean, in_var, scaled)
    cov = jnp.einsum("jk,...kd->...jd", M, in_cov)
    shared = jnp.sum(in_cov * in_cov, axis=-1) @ (M * M).T
    if scaled:
        n = M.shape[-1]
        cov = cov / jnp.sqrt(n)
        shared = shared / n
    return mean, jnp.maximum(var + (jnp.sum(cov * cov, axis=-1) - shared), 0.0), cov

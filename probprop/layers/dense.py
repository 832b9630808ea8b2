"""The dense layer with Gaussian weights, as PBP parameterises it (Hernández-Lobato & Adams 2015).

Weights W of shape (out, fan_in + 1), the last column multiplying a constant bias input (mean 1,
variance 0), pre-activations a = W z / sqrt(fan_in + 1). The moment map and its pullback are the
formulas of :mod:`probprop.moments.linear`; this class is how a learner uses them layer by layer:

    layer.weight_shape(n_in, n_out, bias)          -> (out, n_in + bias)
    inputs, (mean, var) = layer.forward(M, V, mean, var, bias)    # scaled=False: a = W z (TAGI)
    mean, var, cov = layer.forward_shared(M, V, mean, var, cov, bias)   # uncertain inputs
    dM, dV, d_mean, d_var = layer.pullback(M, V, inputs, g_mean, g_var, bias)
    layer.deterministic_factors(M, inputs, g_mean, g_var)   -> (a, b, x) with dM = a x^T, dV = b (x^2)^T
    layer.tagi_pullback(M, in_mean, d_mean, d_var, below)  -> TAGI's backward products (unscaled)

``inputs`` are the layer's input moments as the forward pass saw them (bias appended); ``var``
None stands for deterministic inputs (the data). The pullback drops the bias input's cotangent.
A layer whose inputs are the data may use the factored update of
:func:`probprop.moments.adf.gaussian_update_outer` through :meth:`Dense.deterministic_factors`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from probprop.moments import input_noise
from probprop.moments.linear import append_bias, linear, linear_shared, linear_vjp


@dataclass(frozen=True)
class Dense:
    """A fully connected layer (see the module docstring)."""

    def weight_shape(self, n_in: int, n_out: int, bias: bool) -> tuple[int, int]:
        return (n_out, n_in + int(bias))

    def forward(self, M, V, mean, var, bias: bool, scaled: bool = True):
        if bias:
            mean, var = append_bias(mean, var)
        return (mean, var), linear(M, V, mean, var, scaled)

    def tagi_pullback(self, M, in_mean, d_mean, d_var, below: bool = True):
        """What TAGI's layer-wise conditioning needs of the layer (unscaled, a = W x, the bias input
        appended to ``in_mean``), summed over the rows: ``(d_mean^T x, d_var^T x^2, d_mean W,
        d_var W^2)``, i.e. J_W^T d_mean, (J_W o J_W)^T d_var and, when ``below``, J_A^T d_mean,
        (J_A o J_A)^T d_var with the bias input dropped (see :meth:`probprop.layers.Conv2D.tagi_pullback`)."""
        dM, dV = d_mean.T @ in_mean, d_var.T @ (in_mean * in_mean)
        if not below:
            return dM, dV, None, None
        W = M[:, :-1]
        return dM, dV, d_mean @ W, d_var @ (W * W)

    def forward_shared(self, M, V, mean, var, cov, bias: bool):
        """The forward moments for inputs that share a noise source, ``cov`` = Cov(z, eps) of
        shape (..., n_in, d) (:mod:`probprop.moments.input_noise`); returns ``(mean, var, cov)``."""
        if bias:
            mean, var, cov = input_noise.append_bias(mean, var, cov)
        return linear_shared(M, V, mean, var, cov)

    def pullback(self, M, V, inputs, g_mean, g_var, bias: bool):
        in_mean, in_var = inputs
        dM, dV, d_mean, d_var = linear_vjp(M, V, in_mean, in_var, g_mean, g_var)
        if bias and d_mean is not None:
            d_mean, d_var = d_mean[:-1], d_var[:-1]
        return dM, dV, d_mean, d_var

    def deterministic_factors(self, M, inputs, g_mean, g_var):
        """``(a, b, x)`` with ``dM = a x^T`` and ``dV = b (x^2)^T`` (the factors of
        :func:`probprop.moments.linear.linear_vjp` for deterministic inputs)."""
        n = M.shape[-1]
        return g_mean * (1.0 / jnp.sqrt(n)), g_var / n, inputs[0]

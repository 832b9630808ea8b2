"""Pure moment maps: input (mean, variance) -> output (mean, variance). No state, no learning."""

from probprop.moments.gaussian import mills_terms, norm_cdf, norm_pdf
from probprop.moments.linear import append_bias, linear, linear_vjp
from probprop.moments.relu import relu, relu_with_jacobian

#: Activation name -> moment map returning (mean, var, jacobian); see relu_with_jacobian.
ACTIVATIONS = {"relu": relu_with_jacobian}

__all__ = [
    "ACTIVATIONS",
    "append_bias",
    "linear",
    "linear_vjp",
    "mills_terms",
    "norm_cdf",
    "norm_pdf",
    "relu",
    "relu_with_jacobian",
]

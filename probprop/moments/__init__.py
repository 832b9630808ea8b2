"""Pure moment maps: input (mean, variance) -> output (mean, variance). No state, no learning."""

from probprop.moments.exponential import exponential
from probprop.moments.gaussian import mills_terms, norm_cdf, norm_pdf
from probprop.moments.gelu import gelu, gelu_with_jacobian
from probprop.moments.leaky_relu import leaky_relu, leaky_relu_with_jacobian, make_leaky_relu
from probprop.moments.linear import append_bias, linear, linear_vjp
from probprop.moments.mixture import mixture_moments
from probprop.moments.relu import relu, relu_with_jacobian
from probprop.moments.sigmoid import probit_var, sigmoid, sigmoid_with_jacobian, tanh, tanh_with_jacobian

#: Activation name -> moment map returning (mean, var, jacobian); see relu_with_jacobian.
ACTIVATIONS = {
    "relu": relu_with_jacobian,
    "leaky_relu": make_leaky_relu(0.01),  # functools.partial(leaky_relu_with_jacobian, slope=0.01)
    "gelu": gelu_with_jacobian,
    "sigmoid": sigmoid_with_jacobian,  # probit approximation, see sigmoid.py
    "tanh": tanh_with_jacobian,  # probit approximation, see sigmoid.py
}

__all__ = [
    "ACTIVATIONS",
    "append_bias",
    "exponential",
    "gelu",
    "gelu_with_jacobian",
    "leaky_relu",
    "leaky_relu_with_jacobian",
    "linear",
    "linear_vjp",
    "make_leaky_relu",
    "mixture_moments",
    "mills_terms",
    "norm_cdf",
    "norm_pdf",
    "probit_var",
    "relu",
    "relu_with_jacobian",
    "sigmoid",
    "sigmoid_with_jacobian",
    "tanh",
    "tanh_with_jacobian",
]

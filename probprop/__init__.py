"""probprop: Bayesian neural networks learned by probabilistic backpropagation.

Every weight has a Gaussian posterior; inputs flow through the network as means and
variances, and each observation updates the posterior in closed form (assumed density
filtering with moment matching, Hernández-Lobato & Adams, ICML 2015).

float64 is the engine's precision (the Gamma and EP-site arithmetic cancels badly in float32),
but importing probprop changes nothing in the rest of the process: every probprop computation
enables JAX's 64-bit types for its own duration (``jax.enable_x64``, see
:func:`probprop.learners.base.float64`). Estimators take ``dtype="float32"`` on request.
"""

from probprop._version import __version__
from probprop.distributions import GaussianPrediction
from probprop.estimators import (
    DeepEnsembleRegressor,
    DivergedError,
    DriftWarning,
    DVIRegressor,
    MAPRegressor,
    MCDropoutRegressor,
    PBPEnsembleRegressor,
    PBPRegressor,
    TAGIRegressor,
    fit_together,
)

__all__ = [
    "PBPRegressor",
    "PBPEnsembleRegressor",
    "TAGIRegressor",
    "DVIRegressor",
    "MAPRegressor",
    "MCDropoutRegressor",
    "DeepEnsembleRegressor",
    "GaussianPrediction",
    "DriftWarning",
    "DivergedError",
    "fit_together",
    "__version__",
]

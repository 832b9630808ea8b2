"""probprop: Bayesian neural networks learned by probabilistic backpropagation.

Every weight has a Gaussian posterior; inputs flow through the network as means and
variances, and each observation updates the posterior in closed form (assumed density
filtering with moment matching, Hernández-Lobato & Adams, ICML 2015).
"""

import jax as _jax

# float64 is the default numerical precision of the engine (see DEVELOPERS.md): the
# Gamma and EP-site arithmetic cancels badly in float32. Users can still ask an
# estimator for dtype="float32".
_jax.config.update("jax_enable_x64", True)

from probprop.distributions import GaussianPrediction  # noqa: E402
from probprop.estimators import (  # noqa: E402
    DeepEnsembleRegressor,
    DVIRegressor,
    MAPRegressor,
    MCDropoutRegressor,
    PBPEnsembleRegressor,
    PBPRegressor,
    TAGIRegressor,
    fit_together,
)

__version__ = "0.1.0"
__all__ = [
    "PBPRegressor",
    "PBPEnsembleRegressor",
    "TAGIRegressor",
    "DVIRegressor",
    "MAPRegressor",
    "MCDropoutRegressor",
    "DeepEnsembleRegressor",
    "GaussianPrediction",
    "fit_together",
    "__version__",
]

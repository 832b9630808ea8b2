"""probprop: Bayesian neural networks learned by probabilistic backpropagation.

Every weight has a Gaussian posterior; inputs flow through the network as means and
variances, and each observation updates the posterior in closed form (assumed density
filtering with moment matching, Hernández-Lobato & Adams, ICML 2015).

float64 is the engine's precision (the Gamma and EP-site arithmetic cancels badly in float32),
but importing probprop changes nothing in the rest of the process: every probprop computation
enables JAX's 64-bit types for its own duration (``jax.enable_x64``, see
:func:`probprop.learners.base.float64`). Estimators take ``dtype="float32"`` on request.

``import probprop`` is light: the names below are imported from their modules on first use
(PEP 562), so that the command line and ``import probprop`` do not pay for JAX, scikit-learn
and SciPy before they need them.
"""

from __future__ import annotations

import importlib

from probprop._version import __version__

#: The package's public names and the module each lives in.
_EXPORTS = {
    "PBPRegressor": "probprop.estimators",
    "PBPEnsembleRegressor": "probprop.estimators",
    "TAGIRegressor": "probprop.estimators",
    "DVIRegressor": "probprop.estimators",
    "MAPRegressor": "probprop.estimators",
    "MCDropoutRegressor": "probprop.estimators",
    "DeepEnsembleRegressor": "probprop.estimators",
    "LaplaceRegressor": "probprop.estimators",
    "PBPClassifier": "probprop.estimators",
    "PBPEnsembleClassifier": "probprop.estimators",
    "MAPClassifier": "probprop.estimators",
    "LaplaceClassifier": "probprop.estimators",
    "LaplaceEnsembleClassifier": "probprop.estimators",
    "DeepEnsembleClassifier": "probprop.estimators",
    "TAGIClassifier": "probprop.estimators",
    "MCDropoutClassifier": "probprop.estimators",
    "GaussianPrediction": "probprop.distributions",
    "ClassPrediction": "probprop.distributions",
    "DriftWarning": "probprop.estimators",
    "DivergedError": "probprop.estimators",
    "fit_together": "probprop.estimators",
    "ConformalRegressor": "probprop.calibration",
    "QuantileRecalibratedRegressor": "probprop.calibration",
    "RecalibratedClassifier": "probprop.calibration",
}

__all__ = [  # noqa: RUF022 - the order of the documentation
    "PBPRegressor",
    "PBPEnsembleRegressor",
    "TAGIRegressor",
    "DVIRegressor",
    "MAPRegressor",
    "MCDropoutRegressor",
    "DeepEnsembleRegressor",
    "LaplaceRegressor",
    "PBPClassifier",
    "PBPEnsembleClassifier",
    "MAPClassifier",
    "LaplaceClassifier",
    "LaplaceEnsembleClassifier",
    "DeepEnsembleClassifier",
    "TAGIClassifier",
    "MCDropoutClassifier",
    "GaussianPrediction",
    "ClassPrediction",
    "DriftWarning",
    "DivergedError",
    "fit_together",
    "ConformalRegressor",
    "QuantileRecalibratedRegressor",
    "RecalibratedClassifier",
    "__version__",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'probprop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

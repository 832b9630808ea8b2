"""The scikit-learn estimators: thin layers over the learners (:mod:`probprop.learners`).

| module | holds |
|---|---|
| :mod:`~probprop.estimators.base` | validation, standardisation, the one fit loop, ``partial_fit``, prediction, files |
| :mod:`~probprop.estimators.pbp` | ``PBPRegressor``, ``PBPEnsembleRegressor``, ``fit_together`` |
| :mod:`~probprop.estimators.tagi` | ``TAGIRegressor`` |
| :mod:`~probprop.estimators.classifier` | ``MomentClassifier``, ``PBPClassifier``, ``PBPEnsembleClassifier``, ``MAPClassifier``, ``LaplaceClassifier``, ``LaplaceEnsembleClassifier``, ``DeepEnsembleClassifier``, ``TAGIClassifier``, ``MCDropoutClassifier`` |
| :mod:`~probprop.estimators.gradient` | ``DVIRegressor``, ``MAPRegressor``, ``LaplaceRegressor``, ``DeepEnsembleRegressor``, ``MCDropoutRegressor`` |

Each estimator registers itself with :mod:`probprop.io`, which reads and writes every one of
them through the same file layout.
"""

from probprop.estimators.base import DivergedError, DriftWarning, MomentEstimator, MomentRegressor, OnlineRegressor
from probprop.estimators.classifier import (
    DeepEnsembleClassifier,
    LaplaceClassifier,
    LaplaceEnsembleClassifier,
    MAPClassifier,
    MCDropoutClassifier,
    MomentClassifier,
    OnlineClassifier,
    PBPClassifier,
    PBPEnsembleClassifier,
    TAGIClassifier,
)
from probprop.estimators.gradient import (
    DeepEnsembleRegressor,
    DVIRegressor,
    LaplaceRegressor,
    MAPRegressor,
    MCDropoutRegressor,
)
from probprop.estimators.pbp import PBPEnsembleRegressor, PBPRegressor, fit_together
from probprop.estimators.tagi import TAGIRegressor

__all__ = [
    "DVIRegressor",
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "DivergedError",
    "DriftWarning",
    "LaplaceClassifier",
    "LaplaceEnsembleClassifier",
    "LaplaceRegressor",
    "MAPClassifier",
    "MAPRegressor",
    "MCDropoutClassifier",
    "MCDropoutRegressor",
    "MomentClassifier",
    "MomentEstimator",
    "MomentRegressor",
    "OnlineClassifier",
    "OnlineRegressor",
    "PBPClassifier",
    "PBPEnsembleClassifier",
    "PBPEnsembleRegressor",
    "PBPRegressor",
    "TAGIClassifier",
    "TAGIRegressor",
    "fit_together",
]

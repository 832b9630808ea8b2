"""scikit-learn's estimator checks, run on every probprop estimator.

Expected failures (each still runs, as xfail), with the reason:

- check_regressors_train (3 variants), every estimator but ConformalRegressor (whose score is R^2,
  as it gives intervals and no density): it asserts ``score(X, y) > 0.5``, a
  threshold meant for R^2, while a probprop regressor's ``score`` is the mean log predictive
  density (a proper scoring rule for the distributions the estimators exist to give). What the
  check does besides that threshold is tested with R^2 in
  test_estimators.py::test_regressors_train_without_r2_threshold.

The probprop estimators do not inherit from ``sklearn.base.BaseEstimator`` (importing any of
scikit-learn costs about a second, more than a warm first fit: ``probprop.estimators._api``),
so scikit-learn warns once per estimator that this "might lead to unexpected behavior" when it
collects the checks; the checks themselves are what this module runs, and they pass.
"""

from __future__ import annotations

import functools
import warnings

import pytest
from sklearn.utils.estimator_checks import estimator_checks_generator

from probprop import (
    ConformalRegressor,
    DeepEnsembleClassifier,
    DeepEnsembleRegressor,
    DVIRegressor,
    LaplaceClassifier,
    LaplaceEnsembleClassifier,
    LaplaceRegressor,
    MAPClassifier,
    MAPRegressor,
    MCDropoutClassifier,
    MCDropoutRegressor,
    PBPClassifier,
    PBPEnsembleClassifier,
    PBPEnsembleRegressor,
    PBPRegressor,
    QuantileRecalibratedRegressor,
    TAGIClassifier,
    TAGIRegressor,
)

pytestmark = pytest.mark.filterwarnings("ignore:Estimator .* does not inherit from:UserWarning")

EXPECTED_FAILED = {
    "check_regressors_train": "score() is the mean log predictive density, not R^2; the check's "
    "'score > 0.5' threshold assumes R^2",
}

#: Small, fast configurations (fixed hyperparameters where a default would search a grid).
ESTIMATORS = [
    PBPRegressor(epochs=5, random_state=0),
    PBPRegressor(hidden=(8,), epochs=3, heteroscedastic=True, random_state=0),
    PBPEnsembleRegressor(n_members=2, hidden=(8,), epochs=3, random_state=0),
    TAGIRegressor(hidden=(8,), epochs=3, sigma_v=0.3, random_state=0),
    TAGIRegressor(hidden=(8,), epochs=3, heteroscedastic=True, random_state=0),
    DVIRegressor(hidden=(8,), epochs=3, random_state=0),
    MAPRegressor(hidden=(8,), epochs=3, random_state=0),
    LaplaceRegressor(hidden=(8,), epochs=3, random_state=0),
    DeepEnsembleRegressor(hidden=(8,), epochs=3, n_members=2, random_state=0),
    MCDropoutRegressor(hidden=(8,), epochs=3, dropout=0.05, tau=10.0, n_samples=10, random_state=0),
    ConformalRegressor(PBPRegressor(hidden=(8,), epochs=3, random_state=0), random_state=0),
    QuantileRecalibratedRegressor(PBPRegressor(hidden=(8,), epochs=3, random_state=0), random_state=0),
    PBPClassifier(hidden=(), epochs=10, random_state=0),
    PBPEnsembleClassifier(n_members=2, hidden=(), epochs=10, random_state=0),
    MAPClassifier(hidden=(), epochs=20, learning_rate=1e-2, random_state=0),
    LaplaceClassifier(hidden=(), epochs=20, learning_rate=1e-2, n_samples=20, random_state=0),
    DeepEnsembleClassifier(hidden=(), epochs=20, n_members=2, learning_rate=1e-2, random_state=0),
    LaplaceEnsembleClassifier(hidden=(), epochs=20, n_members=2, learning_rate=1e-2, n_samples=20, random_state=0),
    TAGIClassifier(hidden=(), epochs=10, random_state=0),
    MCDropoutClassifier(hidden=(), epochs=20, dropout=0.05, n_samples=10, learning_rate=1e-2, random_state=0),
]


def _expected_failed(estimator) -> dict:
    """The R^2 threshold fails for every estimator whose score is a log density; the conformal
    wrapper's score is R^2 (it has no density), so the check applies to it as written."""
    classifiers = (PBPClassifier, PBPEnsembleClassifier, MAPClassifier, LaplaceClassifier, LaplaceEnsembleClassifier, DeepEnsembleClassifier,
                   TAGIClassifier, MCDropoutClassifier)
    return {} if isinstance(estimator, (ConformalRegressor, *classifiers)) else EXPECTED_FAILED


def _check_id(obj):
    if isinstance(obj, functools.partial):
        keywords = ",".join(f"{k}={v}" for k, v in obj.keywords.items())
        return f"{obj.func.__name__}({keywords})" if keywords else obj.func.__name__
    if hasattr(obj, "get_params"):
        extra = "-het" if getattr(obj, "heteroscedastic", False) and type(obj) in (TAGIRegressor, PBPRegressor) else ""
        return type(obj).__name__ + extra
    return type(obj).__name__


def _checks() -> list:
    """Every (estimator, check) pair; scikit-learn's warning that the estimators do not inherit
    from BaseEstimator (module docstring) is raised while the checks are listed, so it is
    silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Estimator .* does not inherit from", UserWarning)
        return [pair for est in ESTIMATORS
                for pair in estimator_checks_generator(est, expected_failed_checks=_expected_failed(est), mark="xfail")]


# parametrize_with_checks does the same but hands pytest a generator, which pytest deprecates
@pytest.mark.parametrize("estimator, check", _checks(), ids=_check_id)
def test_sklearn_compatible(estimator, check):
    check(estimator)

"""Post-hoc recalibration of class probabilities, for any classifier with ``predict_proba``.

``"temperature"`` (Guo et al. 2017): p ∝ exp(log p_model / T), one T > 0 chosen by the
log loss of a calibration set; it keeps every prediction's ranking (accuracy is unchanged) and
fixes over- (T > 1) or under-confidence (T < 1).

``"dirichlet"`` (Kull et al. 2019, "Beyond temperature scaling"): a multinomial logistic
regression on the log probabilities, p = softmax(W log p_model + b), with its L2 penalty chosen by
cross-validation on the calibration set (scikit-learn's ``LogisticRegressionCV``). It can also
correct class-dependent biases that one temperature cannot; with few calibration points per class
it may overfit where temperature scaling does not.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

__all__ = ["CLASSIFIER_METHODS", "RecalibratedClassifier", "fit_temperature"]

CLASSIFIER_METHODS = ("temperature", "dirichlet")

#: Probabilities are floored here before the log (a model's exact 0 would give -inf logits).
PROB_FLOOR = 1e-300

#: The searched range of log T.
LOG_T_RANGE = (-7.0, 7.0)


def _log_probs(proba) -> np.ndarray:
    proba = np.asarray(proba, np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"predict_proba must give an (n, n_classes >= 2) array, got shape {proba.shape}")
    if not np.all(np.isfinite(proba)) or np.any(proba < 0):
        raise ValueError("predict_proba gave NaN, infinite or negative probabilities")
    return np.log(np.maximum(proba, PROB_FLOOR))


def fit_temperature(log_probs, labels) -> float:
    """The T > 0 minimising the mean log loss of softmax(log_probs / T) on integer ``labels``."""
    log_probs = np.asarray(log_probs, np.float64)
    labels = np.asarray(labels)
    rows = np.arange(len(labels))

    def loss(log_t):
        return -np.mean(log_softmax(log_probs / np.exp(log_t), axis=1)[rows, labels])

    result = minimize_scalar(loss, bounds=LOG_T_RANGE, method="bounded", options={"xatol": 1e-8})
    return float(np.exp(result.x))


class RecalibratedClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose probabilities are recalibrated on held-out data (module docstring).

    Parameters
    ----------
    estimator : classifier with ``predict_proba`` (required)
    method : {"temperature", "dirichlet"}, default "temperature"
    calibration_size : float in (0, 1) or int, default 0.2
    prefit : bool, default False (True: ``estimator`` is fitted; ``fit`` only calibrates)
    random_state : int, RandomState or None (the stratified calibration split)

    Attributes: ``estimator_``, ``classes_``, ``temperature_`` (temperature scaling) or
    ``calibrator_`` (the fitted ``LogisticRegressionCV``).
    """

    def __init__(self, estimator=None, *, method: str = "temperature", calibration_size=0.2, prefit: bool = False,
                 random_state=None):
        self.estimator = estimator
        self.method = method
        self.calibration_size = calibration_size
        self.prefit = prefit
        self.random_state = random_state

    def _check(self):
        if self.method not in CLASSIFIER_METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(CLASSIFIER_METHODS)}")
        if self.estimator is None or not hasattr(self.estimator, "predict_proba"):
            raise TypeError("RecalibratedClassifier needs an estimator with predict_proba")
        size = self.calibration_size
        if isinstance(size, bool) or not isinstance(size, numbers.Real) or size <= 0 or (
                not isinstance(size, numbers.Integral) and size >= 1):
            raise ValueError(f"calibration_size must be a fraction in (0, 1) or a number of rows, got {size!r}")

    def fit(self, X, y):
        self._check()
        if self.prefit:
            check_is_fitted(self.estimator)
            self.estimator_ = self.estimator
            return self.calibrate(X, y)
        X_fit, X_cal, y_fit, y_cal = train_test_split(X, y, test_size=self.calibration_size,
                                                      random_state=self.random_state, stratify=y)
        self.estimator_ = clone(self.estimator).fit(X_fit, y_fit)
        return self.calibrate(X_cal, y_cal)

    def calibrate(self, X, y):
        """Fit the recalibration on (X, y) with the fitted model (not refitted)."""
        self._check()
        check_is_fitted(self, "estimator_")
        self.classes_ = self.estimator_.classes_
        log_p = _log_probs(self.estimator_.predict_proba(X))
        y = np.asarray(y)
        if len(y) != len(log_p):
            raise ValueError(f"X has {len(log_p)} rows but y has {len(y)} labels")
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        unknown = sorted({v for v in y.tolist() if v not in index}, key=str)
        if unknown:
            raise ValueError(f"calibration labels {unknown[:5]} are not among the model's classes_ {self.classes_.tolist()}")
        labels = np.array([index[v] for v in y.tolist()])
        if self.method == "temperature":
            self.temperature_ = fit_temperature(log_p, labels)
        else:
            from sklearn.linear_model import LogisticRegressionCV

            folds = int(min(5, np.bincount(labels, minlength=len(self.classes_)).min()))
            if folds < 2:
                raise ValueError("dirichlet calibration needs at least 2 calibration points of every class")
            self.calibrator_ = LogisticRegressionCV(Cs=10, cv=folds, scoring="neg_log_loss", max_iter=2000)
            self.calibrator_.fit(log_p, labels)
        self.n_calibration_ = len(labels)
        return self

    def predict_log_proba(self, X):
        check_is_fitted(self, "estimator_")
        log_p = _log_probs(self.estimator_.predict_proba(X))
        if self.method == "temperature":
            return log_softmax(log_p / self.temperature_, axis=1)
        out = np.full(log_p.shape, -np.inf)
        out[:, self.calibrator_.classes_] = self.calibrator_.predict_log_proba(log_p)
        return out

    def predict_proba(self, X):
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_log_proba(X), axis=1)]

"""The scikit-learn meta-estimator shared by the post-hoc calibration wrappers: hold out a
calibration part of ``fit``'s data (or take a fitted model, ``prefit=True``), fit the model on the
rest, and hand the model's predictive distributions on the calibration rows to the method."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, column_or_1d

from probprop.distributions import GaussianPrediction
from probprop.metrics._validation import check_level


def check_confidence(confidence) -> float:
    """``confidence`` as a float strictly between 0 and 1, or a ValueError naming it."""
    return check_level(confidence, "confidence")


def check_targets(y, n: int | None = None) -> np.ndarray:
    """Calibration targets as a finite 1-D float64 array (of length n where given); a column
    is flattened with scikit-learn's DataConversionWarning."""
    if y is None:
        raise ValueError("this estimator requires y to be passed, but the target y is None")
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"y must be numeric ({err})") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D or a single column, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("y is empty: calibration needs at least one point")
    if not np.all(np.isfinite(y)):
        raise ValueError("Input y contains NaN or infinity.")
    if n is not None and y.size != n:
        raise ValueError(f"X has {n} rows but y has {y.size} values")
    return y


def gaussian(dist) -> GaussianPrediction:
    """A model's ``predict_dist`` result as the Gaussian these methods calibrate."""
    if isinstance(dist, GaussianPrediction):
        return dist
    return GaussianPrediction(np.asarray(dist.mean), np.asarray(dist.std) ** 2, 0.0)


class PostHocRegressor(RegressorMixin, BaseEstimator):
    """Base of the calibration wrappers (see the module docstring). Subclasses implement
    ``_calibrate(predictions, y)`` and may check their own parameters in ``_check_params``."""

    def __init__(self, estimator=None, *, calibration_size=0.2, prefit: bool = False, random_state=None):
        self.estimator = estimator
        self.calibration_size = calibration_size
        self.prefit = prefit
        self.random_state = random_state

    def _check_params(self) -> None:  # pragma: no cover - hook
        pass

    def _calibrate(self, predictions: GaussianPrediction, y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _model(self):
        if self.estimator is not None:
            if not hasattr(self.estimator, "predict_dist"):
                raise TypeError(f"{type(self.estimator).__name__} has no predict_dist: calibration needs a model "
                                "that gives predictive distributions (every probprop regressor does)")
            return self.estimator
        from probprop.estimators import PBPRegressor

        return PBPRegressor()

    def _check_size(self):
        size = self.calibration_size
        if isinstance(size, bool) or not isinstance(size, numbers.Real):
            raise ValueError(f"calibration_size must be a fraction in (0, 1) or a number of rows, got {size!r}")
        if isinstance(size, numbers.Integral):
            if size < 1:
                raise ValueError(f"calibration_size must be at least 1 row, got {size}")
            return int(size)
        if not 0.0 < float(size) < 1.0:
            raise ValueError(f"calibration_size as a fraction must lie strictly between 0 and 1, got {size!r}")
        return float(size)

    def fit(self, X, y):
        """Fit the model on part of (X, y) and calibrate on the rest (``calibration_size``); with
        ``prefit=True``, calibrate the fitted ``estimator`` on all of (X, y)."""
        self._check_params()
        model = self._model()
        if self.prefit:
            check_is_fitted(model)
            self.estimator_ = model
            return self.calibrate(X, y)
        size = self._check_size()
        y = check_targets(y)
        n = len(y)
        n_cal = size if isinstance(size, int) else int(np.ceil(size * n))
        if not 1 <= n_cal <= n - 2:
            raise ValueError(f"got n_samples={n}: calibration_size={self.calibration_size!r} leaves {n - n_cal} rows "
                             "to fit the model; it needs at least 2 (and calibration at least 1)")
        X_fit, X_cal, y_fit, y_cal = train_test_split(X, y, test_size=n_cal, random_state=self.random_state)
        self.estimator_ = clone(model).fit(X_fit, y_fit)
        return self.calibrate(X_cal, y_cal)

    def calibrate(self, X, y):
        """Calibrate (again) on (X, y) with the fitted model, which is not refitted."""
        self._check_params()
        check_is_fitted(self, "estimator_")
        predictions = self._base_dist(X)
        self._calibrate(predictions, check_targets(y, len(predictions)))
        self.n_calibration_ = len(predictions)
        return self

    def _base_dist(self, X) -> GaussianPrediction:
        check_is_fitted(self, "estimator_")
        return gaussian(self.estimator_.predict_dist(X))

    @property
    def n_features_in_(self):
        return self.estimator_.n_features_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

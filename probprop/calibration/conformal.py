"""Split conformal prediction intervals around any regressor with a ``predict_dist``.

Three conformity scores, for a calibration point (x, y) and the model's predictive distribution
F (mean μ, std σ) at x (Lei et al. 2018; Romano, Patterson & Candès 2019; Angelopoulos & Bates
2023, "Conformal prediction: a gentle introduction", §2):

``"absolute"``      s = |y - μ|                interval μ ± q
``"normalized"``    s = |y - μ| / σ            interval μ ± q σ
``"cqr"``           s = max(l - y, y - u)      interval [l - q, u + q]

where [l, u] is the model's own central interval of the requested mass (conformalized quantile
regression with the quantiles read off the predictive distribution; q may be negative, which
narrows intervals that were too wide; where that empties a point's interval, it is returned as
the single point at its middle, which covers nothing, as the empty set would). q is the ⌈(n + 1) c⌉-th smallest of the n calibration
scores for confidence c: with exchangeable calibration and test points, the interval covers the
test target with probability at least c (and below c + 1/(n + 1) when the scores have no ties),
whatever the model. That needs ⌈(n + 1) c⌉ <= n, i.e. n >= c / (1 - c) calibration points
(:func:`min_calibration_size`; 9 for 90 %, 19 for 95 %); with fewer, the only valid interval is
the whole line, which is an error here unless asked for (``unbounded=True``).

This is the construction of MAPIE's ``SplitConformalRegressor`` (``"absolute"``) and of crepes'
``ConformalRegressor`` (``"absolute"``, and ``"normalized"`` with the model's σ as its sigmas);
the benchmark (``probprop bench uci --calibrate conformal``) runs both beside these on the same
predictions and checks that the intervals agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probprop.calibration._wrapper import PostHocRegressor, check_confidence
from probprop.distributions import GaussianPrediction

__all__ = ["METHODS", "ConformalPrediction", "ConformalRegressor", "conformal_quantile", "min_calibration_size"]

#: The conformity scores (see the module docstring).
METHODS = ("absolute", "normalized", "cqr")

#: A predictive std is floored at this fraction of the largest one before dividing by it.
STD_FLOOR = 1e-12


def min_calibration_size(confidence: float) -> int:
    """The fewest calibration points for a finite split-conformal interval of mass ``confidence``:
    the smallest n with ⌈(n + 1) c⌉ <= n."""
    c = check_confidence(confidence)
    return max(1, math.ceil(c / (1.0 - c) - 1e-9))


def conformal_quantile(scores, confidence: float, unbounded: bool = False) -> float:
    """The ⌈(n + 1) c⌉-th smallest of the n ``scores``: the split-conformal quantile.

    Raises ValueError when n < :func:`min_calibration_size` (c), unless ``unbounded`` (then
    ``inf``, the whole line, as MAPIE's ``unbounded=True``).
    """
    c = check_confidence(confidence)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n = s.size
    if n == 0 or not np.all(np.isfinite(s)):
        raise ValueError("conformity scores must be a non-empty array of finite numbers")
    k = math.ceil((n + 1) * c - 1e-9)
    if k > n:
        if unbounded:
            return math.inf
        raise ValueError(
            f"a {c:.4g} conformal interval needs at least {min_calibration_size(c)} calibration points "
            f"(ceil((n + 1) * {c:.4g}) <= n), and there are {n}: use more calibration data or a lower "
            "confidence, or pass unbounded=True to get the whole line (-inf, inf)")
    return float(np.partition(s, k - 1)[k - 1])


@dataclass(frozen=True)
class ConformalCalibration:
    """What a split-conformal method keeps from its calibration set: the method, the model's
    predictive distributions at the calibration inputs and the calibration targets."""

    method: str
    predictions: GaussianPrediction
    y: np.ndarray

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown conformal method {self.method!r}; choose one of {', '.join(METHODS)}")
        y = np.asarray(self.y, np.float64).ravel()
        if y.shape != self.predictions.mean.shape:
            raise ValueError(f"{y.size} calibration targets for {len(self.predictions)} predictions")
        if not np.all(np.isfinite(y)):
            raise ValueError("calibration targets contain NaN or infinity")
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return self.y.size

    def scores(self, confidence: float) -> np.ndarray:
        """The conformity scores of the calibration points (``cqr``'s depend on the level)."""
        p, y = self.predictions, self.y
        if self.method == "absolute":
            return np.abs(y - p.mean)
        if self.method == "normalized":
            return np.abs(y - p.mean) / _floored(p.std)
        lower, upper = p.interval(confidence)
        return np.maximum(lower - y, y - upper)

    def interval(self, base: GaussianPrediction, confidence: float, unbounded: bool = False):
        """The conformal interval (lower, upper) of mass ``confidence`` for the predictions ``base``."""
        q = conformal_quantile(self.scores(confidence), confidence, unbounded)
        if self.method == "absolute":
            return base.mean - q, base.mean + q
        if self.method == "normalized":
            width = q * _floored(base.std) if np.isfinite(q) else np.full(base.mean.shape, np.inf)
            return base.mean - width, base.mean + width
        lower, upper = base.interval(confidence)
        lower, upper = lower - q, upper + q
        if q < 0:  # the set {y: s <= q} is empty where the model's interval is narrower than -2q
            middle = 0.5 * (lower + upper)
            crossed = lower > upper
            lower, upper = np.where(crossed, middle, lower), np.where(crossed, middle, upper)
        return lower, upper


def _floored(std: np.ndarray) -> np.ndarray:
    std = np.asarray(std, np.float64)
    top = float(np.max(std)) if std.size else 1.0
    return np.maximum(std, STD_FLOOR * max(top, np.finfo(np.float64).tiny))


@dataclass(frozen=True)
class ConformalPrediction:
    """Split-conformal predictions for some points: ``mean`` (the model's), ``interval(confidence)``
    with the finite-sample coverage guarantee, and ``base``, the model's own predictive
    distributions. A split-conformal method gives intervals, not a density: there is no
    ``logpdf`` (use :class:`probprop.calibration.QuantileRecalibratedRegressor` for a
    recalibrated distribution)."""

    base: GaussianPrediction
    calibration: ConformalCalibration

    @property
    def mean(self) -> np.ndarray:
        return self.base.mean

    @property
    def method(self) -> str:
        return self.calibration.method

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index) -> ConformalPrediction:
        return ConformalPrediction(self.base[index], self.calibration)

    def interval(self, confidence: float = 0.9, unbounded: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) of mass ``confidence``: covers a new exchangeable target with probability
        >= confidence. ValueError when the calibration set is too small for the level, unless
        ``unbounded`` (then the whole line)."""
        return self.calibration.interval(self.base, confidence, unbounded)


class ConformalRegressor(PostHocRegressor):
    """Split conformal prediction around a probprop regressor (or any regressor with
    ``predict_dist``): intervals with a finite-sample coverage guarantee.

    Parameters
    ----------
    estimator : regressor with ``predict_dist``, default ``PBPRegressor()``
    method : {"normalized", "absolute", "cqr"}, default "normalized"
        The conformity score (module docstring). ``"normalized"`` scales the interval with the
        model's predictive std (narrower where the model is sure); ``"absolute"`` gives every point
        the same width; ``"cqr"`` widens or narrows the model's own central interval by a constant.
    calibration_size : float in (0, 1) or int, default 0.2
        The part of the data ``fit`` holds out to calibrate (a fraction, or a number of rows).
    prefit : bool, default False
        ``True``: ``estimator`` is already fitted and ``fit(X, y)`` only calibrates, on all of (X, y).
    random_state : int, RandomState or None
        The split of ``fit``'s data into training and calibration rows.

    Attributes
    ----------
    estimator_ : the fitted model.
    calibration_ : :class:`ConformalCalibration`.
    n_calibration_ : int

    ``predict`` gives the model's mean; ``predict_interval(X, confidence)`` the conformal interval;
    ``predict_dist(X)`` a :class:`ConformalPrediction`. ``score`` is scikit-learn's R² of the
    mean (``RegressorMixin.score``: there is no density to score).
    """

    def __init__(self, estimator=None, *, method: str = "normalized", calibration_size=0.2, prefit: bool = False,
                 random_state=None):
        super().__init__(estimator, calibration_size=calibration_size, prefit=prefit, random_state=random_state)
        self.method = method

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown conformal method {self.method!r}; choose one of {', '.join(METHODS)}")

    def _calibrate(self, predictions: GaussianPrediction, y: np.ndarray) -> None:
        self.calibration_ = ConformalCalibration(self.method, predictions, y)

    def predict(self, X):
        """The model's predictive mean."""
        return self._base_dist(X).mean

    def predict_dist(self, X) -> ConformalPrediction:
        return ConformalPrediction(self._base_dist(X), self.calibration_)

    def predict_interval(self, X, confidence: float = 0.9, unbounded: bool = False):
        """The conformal interval (lower, upper) of mass ``confidence`` for each row of X."""
        return self.predict_dist(X).interval(confidence, unbounded)

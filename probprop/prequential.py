"""Prequential (test-then-train) evaluation of an online probprop model on a stream.

    from probprop import PBPRegressor
    from probprop.prequential import prequential, summarise
    rows = prequential(PBPRegressor(forgetting="learn"), X, y, warmup=50)
    summarise(rows)          # {"log_loss": ..., "rmse": ..., "coverage": ..., ...}

Each row is first predicted by the model as it stands, then learned: exactly what a model
deployed on the stream would have scored. The first ``warmup`` rows only set the model's scaling
and start it (``partial_fit``), unscored; every later row is predicted and learned in order by the
learner's online step (``Learner.step``: PBP one row at a time; TAGI ``batch_size`` rows at once,
all predicted from the posterior before their step), preceded by the drift transition when the
model has ``forgetting``, in one compiled scan per chunk of rows, so a stream of 10,000 rows
costs about what one epoch over them does. Without forgetting this is ADF one row at a time,
with no EP prior step in between (``partial_fit`` row by row would also refine PBP's prior after
every row).

Per-row scores (a :class:`pandas.DataFrame`, one row per scored stream row, index = position in
the stream):

* regression: ``mean``, ``std`` (predictive: epistemic + noise), ``log_loss`` = -log N(y | mean,
  std^2), ``squared_error``, ``covered`` (y inside the central ``level`` interval), from the
  regressor's own ``GaussianPrediction``;
* classification: ``predicted`` (label), ``p_true`` (probability of the true class), ``log_loss``
  = -log p_true (floored at 1e-300), ``correct``;
* both: ``gamma``, the forgetting factor the row's step used (1 without forgetting).

:func:`summarise` turns them into the stream's numbers: mean log loss (cumulative log loss per
row), RMSE or accuracy, interval coverage.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from probprop.distributions import GaussianPrediction
from probprop.estimators._api import ClassifierMixin
from probprop.estimators.base import StreamLearning, padded
from probprop.estimators.classifier import _refuse_non_finite_rows, log_probability
from probprop.learners.base import float64
from probprop.metrics.scoring import inside_interval

__all__ = ["prequential", "summarise"]

#: Rows per compiled scan (padded to a power of two, so at most two scan shapes per stream).
CHUNK = 2048


@float64
def prequential(model, X, y, *, warmup: int = 50, classes=None, level: float = 0.9, chunk: int = CHUNK) -> pd.DataFrame:
    """Score ``model`` on the stream (X, y) test-then-train (module docstring). ``model`` is an
    online probprop estimator (PBP or TAGI, regressor or classifier), fitted or not; it is
    trained in place. ``classes``: every label of a classification stream (default: those of
    y; a fitted classifier keeps its own and refuses others). Returns the per-row scores of rows
    ``warmup`` onwards."""
    if not isinstance(model, StreamLearning) or model._learner().step is None:
        raise TypeError("prequential needs an online probprop estimator that learns row by row (PBPRegressor, "
                        f"PBPClassifier, TAGIRegressor, TAGIClassifier), got {type(model).__name__}")
    classify = isinstance(model, ClassifierMixin)
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be 2-D with one row per target, got X {X.shape} and y {y.shape}")
    warmup = _positive_int("warmup", warmup)
    chunk = _positive_int("chunk", chunk)
    if not 2 <= warmup < len(y):
        raise ValueError(f"warmup must be at least 2 and below the stream's {len(y)} rows, got {warmup}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if classify and (classes is not None or not hasattr(model, "state_")):
        # the first call fixes the classes; a fitted model's partial_fit checks them against classes_
        model.partial_fit(X[:warmup], y[:warmup], classes=np.unique(y) if classes is None else classes)
    else:
        model.partial_fit(X[:warmup], y[:warmup])
    parts = []
    for lo in range(warmup, len(y), chunk):
        Xc, yc = X[lo : lo + chunk], y[lo : lo + chunk]
        Xv, yv = model._validate_X_y(Xc, yc, reset=False, min_samples=1)
        Xp, yp, mask = padded(*model._standardise(Xv, yv))
        moments, gammas = model._stream(Xp, yp, mask, record=True)
        rows = len(yc)
        moments = [np.asarray(a, np.float64)[:rows] for a in moments]
        frame = _class_scores(model, moments, yc, yv) if classify else _scores(model, moments, yc, level)
        frame["gamma"] = np.asarray(gammas, np.float64)[:rows]
        frame.index = np.arange(lo, lo + rows)
        parts.append(frame)
    return pd.concat(parts)


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _scores(model, moments, y, level) -> pd.DataFrame:
    dist = GaussianPrediction(*model._user_moments(*moments))
    y = np.asarray(y, np.float64)
    return pd.DataFrame({
        "y": y, "mean": dist.mean, "std": dist.std,
        "log_loss": -dist.logpdf(y),
        "squared_error": (y - dist.mean) ** 2,
        "covered": inside_interval(y, dist.mean, dist.std, level),
    })


def _class_scores(model, moments, y, index) -> pd.DataFrame:
    _refuse_non_finite_rows(moments[0], moments[1])
    probs = model._probabilities(moments[0], moments[1])
    index = np.asarray(index, np.int64)
    p_true = probs[np.arange(len(index)), index]
    return pd.DataFrame({
        "y": np.asarray(y), "predicted": model.classes_[np.argmax(probs, axis=1)], "p_true": p_true,
        "log_loss": -log_probability(p_true),
        "correct": np.argmax(probs, axis=1) == index,
    })


def summarise(rows: pd.DataFrame) -> dict:
    """The stream's numbers from :func:`prequential`'s rows (or any frame with the same columns):
    ``log_loss`` (mean per row), ``rows``, and ``rmse`` + ``coverage`` (regression) or
    ``accuracy`` (classification)."""
    out = {"rows": len(rows), "log_loss": float(rows["log_loss"].mean())}
    if "squared_error" in rows:
        out["rmse"] = float(np.sqrt(rows["squared_error"].mean()))
        if "covered" in rows:
            out["coverage"] = float(rows["covered"].mean())
    if "correct" in rows:
        out["accuracy"] = float(rows["correct"].mean())
    return out

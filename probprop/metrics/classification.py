"""Metrics of class probabilities and of uncertainty scores (classifiers, OOD detection).

Every function takes labels as class indices 0..K-1 and probabilities of shape (n, K) (rows
summing to 1), except the detection metrics, which take scores (higher = more uncertain).
scikit-learn computes what it has (log loss, ROC AUC, average precision); calibration errors
are here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "brier", "classification_metrics", "detection_metrics", "entropy",
           "expected_calibration_error", "nll", "reliability"]


def entropy(p, axis: int = -1) -> np.ndarray:
    """Entropy (nats) of probability vectors along ``axis`` (0 log 0 = 0)."""
    p = np.asarray(p, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def _check(y, proba):
    y = np.asarray(y)
    proba = np.asarray(proba, np.float64)
    if proba.ndim != 2 or len(proba) != len(y) or len(y) == 0:
        raise ValueError(f"need probabilities of shape (n, K) for n = {len(y)} labels, got {proba.shape}")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= proba.shape[1]:
        raise ValueError(f"labels must be class indices 0..{proba.shape[1] - 1}")
    if not np.all(np.isfinite(proba)) or np.any(proba < 0):
        raise ValueError("probabilities must be finite and >= 0")
    return y, proba


def accuracy(y, proba) -> float:
    y, proba = _check(y, proba)
    return float(np.mean(proba.argmax(1) == y))


def nll(y, proba) -> float:
    """Mean negative log probability of the true class (log loss, natural log)."""
    from sklearn.metrics import log_loss

    y, proba = _check(y, proba)
    return float(log_loss(y, proba, labels=np.arange(proba.shape[1])))


def brier(y, proba) -> float:
    """Mean over points of sum_k (p_k - 1[y = k])^2 (the multi-class Brier score, in [0, 2])."""
    y, proba = _check(y, proba)
    onehot = np.eye(proba.shape[1])[y]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def reliability(y, proba, bins: int = 15, adaptive: bool = False):
    """Confidence bins of the top-class probability: ``(confidence, accuracy, count)`` per bin
    (empty bins dropped). Equal-width bins over [0, 1], or with ``adaptive`` equal-mass bins."""
    y, proba = _check(y, proba)
    conf = proba.max(1)
    correct = (proba.argmax(1) == y).astype(np.float64)
    if adaptive:
        order = np.argsort(conf, kind="stable")
        groups = np.array_split(order, bins)
    else:
        which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (0, 1/B], (1/B, 2/B], ...
        groups = [np.flatnonzero(which == b) for b in range(bins)]
    groups = [g for g in groups if len(g)]
    return (np.array([conf[g].mean() for g in groups]), np.array([correct[g].mean() for g in groups]),
            np.array([len(g) for g in groups]))


def expected_calibration_error(y, proba, bins: int = 15, adaptive: bool = False) -> float:
    """ECE: sum over confidence bins of (bin share) x abs(accuracy - confidence) (Guo et al. 2017;
    15 equal-width bins by default, equal-mass bins with ``adaptive``)."""
    conf, acc, count = reliability(y, proba, bins, adaptive)
    return float(np.sum(count * np.abs(acc - conf)) / np.sum(count))


def classification_metrics(y, proba) -> dict[str, float]:
    """accuracy, error, nll, brier, ece (15 bins), ece_adaptive (15 equal-mass bins)."""
    acc = accuracy(y, proba)
    return {"accuracy": acc, "error": 1.0 - acc, "nll": nll(y, proba), "brier": brier(y, proba),
            "ece": expected_calibration_error(y, proba), "ece_adaptive": expected_calibration_error(y, proba, adaptive=True)}


def detection_metrics(score_in, score_out) -> dict[str, float]:
    """How well a score (higher = more uncertain) separates out-of-distribution points (positives)
    from in-distribution ones: AUROC and AUPR with the OOD points as positives (scikit-learn)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    s_in, s_out = np.asarray(score_in, np.float64), np.asarray(score_out, np.float64)
    if not (np.all(np.isfinite(s_in)) and np.all(np.isfinite(s_out))) or not len(s_in) or not len(s_out):
        raise ValueError("scores must be finite, with at least one point on each side")
    labels = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    scores = np.r_[s_in, s_out]
    return {"auroc": float(roc_auc_score(labels, scores)), "aupr": float(average_precision_score(labels, scores))}

"""Recalibrated class probabilities: temperature scaling recovers a known over-confidence, Dirichlet
calibration improves the log loss, and the classifier contract holds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import log_loss
from sklearn.naive_bayes import GaussianNB

from probprop.calibration import RecalibratedClassifier, fit_temperature

TRUE_W = np.array([[1.0, -0.5, 0.2], [-0.3, 0.8, -1.0], [0.0, 0.4, 0.9]])


class Overconfident(ClassifierMixin, BaseEstimator):
    """A 'fitted' classifier whose logits are the true ones times ``scale`` (> 1: over-confident)."""

    def __init__(self, scale=3.0, labels=("a", "b", "c")):
        self.scale = scale
        self.labels = labels

    def fit(self, X, y):
        return self

    @property
    def classes_(self):
        return np.array(self.labels)

    def __sklearn_is_fitted__(self):
        return True

    def predict_proba(self, X):
        return softmax(self.scale * X @ TRUE_W, axis=1)


def _data(n, seed, labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    p = softmax(X @ TRUE_W, axis=1)
    index = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return X, np.array(labels)[index], p


def test_temperature_recovers_the_known_overconfidence():
    X, y, _ = _data(20_000, 0)
    model = RecalibratedClassifier(Overconfident(3.0), prefit=True).fit(X, y)
    assert model.temperature_ == pytest.approx(3.0, rel=0.05)
    X_test, y_test, p_true = _data(5000, 1)
    calibrated = model.predict_proba(X_test)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert np.max(np.abs(calibrated - p_true)) < 0.05
    assert log_loss(y_test, calibrated, labels=model.classes_) < log_loss(y_test, Overconfident(3.0).predict_proba(X_test))
    np.testing.assert_array_equal(model.predict(X_test), Overconfident(3.0).classes_[np.argmax(p_true, axis=1)])


def test_fit_temperature_is_the_minimiser():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(500, 4)) * 2
    labels = (rng.uniform(size=(500, 1)) > np.cumsum(softmax(logits / 2, axis=1), axis=1)).sum(axis=1)
    t = fit_temperature(logits, labels)

    def loss(temp):
        z = logits / temp
        return -np.mean(z[np.arange(500), labels] - np.log(np.exp(z).sum(axis=1)))

    assert t == pytest.approx(2.0, rel=0.3)
    assert loss(t) <= min(loss(t * 1.01), loss(t / 1.01))


def test_dirichlet_improves_the_log_loss_towards_the_truth():
    X, y, _ = _data(5000, 3)
    model = RecalibratedClassifier(Overconfident(2.5), method="dirichlet", prefit=True).fit(X, y)
    X_test, y_test, p_true = _data(5000, 4)
    ours = log_loss(y_test, model.predict_proba(X_test), labels=model.classes_)
    assert ours < log_loss(y_test, Overconfident(2.5).predict_proba(X_test)) - 0.1
    assert ours < log_loss(y_test, p_true) + 0.01
    assert np.all(np.isfinite(model.predict_log_proba(X_test)))


def test_unfitted_estimator_is_fitted_on_a_stratified_part():
    X, y, _ = _data(600, 5)
    model = RecalibratedClassifier(GaussianNB(), random_state=0).fit(X, y)
    assert model.n_calibration_ == 120 and list(model.classes_) == ["a", "b", "c"]
    assert model.score(X, y) == pytest.approx(np.mean(model.predict(X) == y))


def test_bad_input():
    X, y, _ = _data(100, 6)
    with pytest.raises(TypeError, match="predict_proba"):
        RecalibratedClassifier().fit(X, y)
    with pytest.raises(ValueError, match="unknown method 'platt'"):
        RecalibratedClassifier(GaussianNB(), method="platt").fit(X, y)
    with pytest.raises(ValueError, match="calibration_size"):
        RecalibratedClassifier(GaussianNB(), calibration_size=2.5).fit(X, y)
    with pytest.raises(ValueError, match=r"labels \['z'\] are not among"):
        RecalibratedClassifier(Overconfident(), prefit=True).fit(X, np.where(np.arange(100) == 0, "z", y))

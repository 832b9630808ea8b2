"""Classification metrics against hand computations and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from probprop.metrics.classification import (
    brier,
    classification_metrics,
    detection_metrics,
    expected_calibration_error,
    reliability,
)


def test_binary_brier_is_twice_scikit_learns():
    rng = np.random.default_rng(0)
    p1 = rng.uniform(size=200)
    y = (rng.uniform(size=200) < p1).astype(int)
    proba = np.c_[1 - p1, p1]
    assert brier(y, proba) == pytest.approx(2 * brier_score_loss(y, p1), rel=1e-12)


def test_ece_by_hand_and_zero_for_a_calibrated_forecaster():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    # bins: confidence 0.9 (accuracy 1) and 0.6 (accuracy 1): (2 * 0.1 + 2 * 0.4) / 4
    assert expected_calibration_error(y, proba) == pytest.approx(0.25)
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1, 200_000)
    y = (rng.uniform(size=p.size) >= p).astype(int)  # class 0 with probability p
    assert expected_calibration_error(y, np.c_[p, 1 - p]) < 0.005
    _, _, count = reliability(y, np.c_[p, 1 - p], adaptive=True)
    assert count.sum() == p.size and np.abs(count - p.size / 15).max() <= 1


def test_detection_metrics_and_errors():
    out = detection_metrics([0.1, 0.2, 0.3], [0.25, 0.9])
    assert out["auroc"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="finite"):
        detection_metrics([np.nan], [1.0])
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics(np.array([0, 3]), np.full((2, 2), 0.5))

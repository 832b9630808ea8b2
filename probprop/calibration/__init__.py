"""Post-hoc calibration: intervals with a coverage guarantee and recalibrated distributions.

- :class:`ConformalRegressor`: split conformal intervals around any probprop regressor
  (absolute, normalised by the predictive std, or conformalized-quantile from the predictive
  distribution), with the finite-sample marginal coverage guarantee.
- :class:`QuantileRecalibratedRegressor`: quantile recalibration of the whole predictive CDF
  (Kuleshov et al. 2018), returning distributions whose ``cdf``, ``ppf``, ``interval`` and
  ``logpdf`` stay consistent.
- :class:`RecalibratedClassifier`: temperature scaling or Dirichlet calibration of any
  classifier's ``predict_proba``.

Each takes an unfitted model (``fit`` holds out ``calibration_size`` of the data to calibrate on)
or a fitted one (``prefit=True``); ``calibrate(X, y)`` recalibrates without refitting.
"""

from probprop.calibration.classification import RecalibratedClassifier, fit_temperature
from probprop.calibration.conformal import (
    ConformalCalibration,
    ConformalPrediction,
    ConformalRegressor,
    conformal_quantile,
    min_calibration_size,
)
from probprop.calibration.recalibration import (
    QuantileRecalibratedRegressor,
    RecalibratedPrediction,
    RecalibrationMap,
    fit_recalibration,
)

__all__ = [
    "ConformalCalibration",
    "ConformalPrediction",
    "ConformalRegressor",
    "QuantileRecalibratedRegressor",
    "RecalibratedClassifier",
    "RecalibratedPrediction",
    "RecalibrationMap",
    "conformal_quantile",
    "fit_recalibration",
    "fit_temperature",
    "min_calibration_size",
]

"""probprop's online models inside river (``pip install probprop[streams]``): ``learn_one`` /
``predict_one`` / ``predict_proba_one`` on dicts, so that river's own tools
(``river.evaluate.progressive_val_score``, pipelines, metrics) run them.

    from river import datasets, evaluate, metrics
    from probprop import PBPRegressor
    from probprop.river_adapter import RiverRegressor

    model = RiverRegressor(PBPRegressor(hidden=(20,), forgetting="learn"))
    evaluate.progressive_val_score(datasets.TrumpApproval(), model, metrics.MAE())

The wrapped estimator needs a few rows to set its standardisation: the first ``warmup`` rows are
collected and learned together by one ``partial_fit`` (until then ``predict_one`` answers with the
mean of the targets seen so far, and ``predict_proba_one`` with their frequencies); every later
row is learned by ``partial_fit`` on that one row. The features are the keys of the first row, in
its order; a later row must have the same keys (extra keys are refused, not dropped silently).
This module imports river; the rest of probprop never does.
"""

from __future__ import annotations

import numpy as np
from river import base

__all__ = ["RiverClassifier", "RiverRegressor"]


class _Adapter:
    def __init__(self, estimator, warmup: int = 20):
        from probprop.estimators.base import StreamLearning

        if not isinstance(estimator, StreamLearning):
            raise TypeError(f"needs an online probprop estimator (PBP or TAGI), got {type(estimator).__name__}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
            raise ValueError(f"warmup must be an integer >= 2, got {warmup!r}")
        self.estimator = estimator
        self.warmup = warmup
        self._features: list | None = None
        self._buffer: list = []

    def _row(self, x: dict) -> np.ndarray:
        if self._features is None:
            self._features = list(x)
        missing = [k for k in self._features if k not in x]
        extra = [k for k in x if k not in set(self._features)]
        if missing or extra:
            raise ValueError(f"the row's features differ from the first row's: missing {missing[:5]}, extra {extra[:5]}")
        try:
            return np.asarray([[float(x[k]) for k in self._features]], np.float64)
        except (TypeError, ValueError):
            raise ValueError("every feature must be a number") from None

    @property
    def _started(self) -> bool:
        return hasattr(self.estimator, "state_")

    def _learn(self, x: dict, y, **start) -> None:
        row = self._row(x)
        if self._started:
            self.estimator.partial_fit(row, np.asarray([y]))
            return
        self._buffer.append((row[0], y))
        if len(self._buffer) >= self.warmup:
            X = np.stack([r for r, _ in self._buffer])
            ys = np.asarray([t for _, t in self._buffer])
            self.estimator.partial_fit(X, ys, **start)
            self._buffer = []


class RiverRegressor(_Adapter, base.Regressor):
    """A probprop online regressor (``PBPRegressor``, ``TAGIRegressor``) as a river regressor."""

    def learn_one(self, x: dict, y) -> None:
        self._learn(x, float(y))

    def predict_one(self, x: dict) -> float:
        row = self._row(x)
        if not self._started:
            return float(np.mean([t for _, t in self._buffer])) if self._buffer else 0.0
        return float(self.estimator.predict(row)[0])


class RiverClassifier(_Adapter, base.Classifier):
    """A probprop online classifier (``PBPClassifier``, ``TAGIClassifier``) as a river classifier.
    ``classes``: every label of the stream (the network's outputs are fixed at the start)."""

    def __init__(self, estimator, classes, warmup: int = 20):
        super().__init__(estimator, warmup)
        classes = list(classes)
        if len(set(classes)) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes must name at least two distinct labels, got {classes!r}")
        self.classes = classes

    @property
    def _multiclass(self) -> bool:
        return len(self.classes) > 2

    def learn_one(self, x: dict, y) -> None:
        if y not in self.classes:
            raise ValueError(f"label {y!r} is not among the classes {self.classes!r}")
        self._learn(x, y, classes=self.classes)

    def predict_proba_one(self, x: dict) -> dict:
        row = self._row(x)
        if not self._started:
            seen = [t for _, t in self._buffer]
            if not seen:
                return {c: 1.0 / len(self.classes) for c in self.classes}
            return {c: seen.count(c) / len(seen) for c in self.classes}
        proba = self.estimator.predict_proba(row)[0]
        return {c: float(p) for c, p in zip(self.estimator.classes_, proba)}

    def predict_one(self, x: dict):
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.get)

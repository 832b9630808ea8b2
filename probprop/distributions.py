"""Gaussian predictive distributions returned by the estimators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class GaussianPrediction:
    """Per-point Gaussian predictive distributions N(mean, epistemic_var + noise_var).

    ``epistemic_var`` is the variance of the network output under the weight posterior
    (moment propagation); ``noise_var`` the posterior-mean observation noise. All in the
    user's units. Methods mirror ``scipy.stats.norm`` and NGBoost's ``pred_dist``.
    """

    mean: np.ndarray
    epistemic_var: np.ndarray
    noise_var: np.ndarray

    def __post_init__(self):
        mean = np.asarray(self.mean, dtype=np.float64)
        object.__setattr__(self, "mean", mean)
        for name in ("epistemic_var", "noise_var"):
            value = np.broadcast_to(np.asarray(getattr(self, name), dtype=np.float64), mean.shape)
            object.__setattr__(self, name, value)

    @property
    def var(self) -> np.ndarray:
        return self.epistemic_var + self.noise_var

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    @property
    def epistemic_std(self) -> np.ndarray:
        return np.sqrt(self.epistemic_var)

    @property
    def params(self) -> dict:
        return {"loc": self.mean, "scale": self.std}

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, index) -> GaussianPrediction:
        return GaussianPrediction(self.mean[index], self.epistemic_var[index], self.noise_var[index])

    def _norm(self):
        return stats.norm(loc=self.mean, scale=self.std)

    def logpdf(self, y) -> np.ndarray:
        return self._norm().logpdf(np.asarray(y, dtype=np.float64).reshape(self.mean.shape))

    def pdf(self, y) -> np.ndarray:
        return np.exp(self.logpdf(y))

    def cdf(self, y) -> np.ndarray:
        return self._norm().cdf(np.asarray(y, dtype=np.float64).reshape(self.mean.shape))

    def ppf(self, q) -> np.ndarray:
        """Quantiles: a scalar ``q`` gives one per point; an array of levels gives (n, len(q))."""
        q = np.asarray(q, dtype=np.float64)
        if np.any((q <= 0) | (q >= 1)):
            raise ValueError("quantile levels must lie strictly between 0 and 1")
        if q.ndim == 0:
            return self._norm().ppf(q)
        return stats.norm.ppf(q[None, :], loc=self.mean[:, None], scale=self.std[:, None])

    def interval(self, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Central interval holding ``confidence`` of the predictive mass: (lower, upper)."""
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
        return self._norm().interval(confidence)

    def sample(self, n: int = 1, random_state=None) -> np.ndarray:
        """``n`` draws per point, shape (n, n_points)."""
        rng = np.random.default_rng(random_state)
        return self.mean + self.std * rng.standard_normal((n, len(self.mean)))

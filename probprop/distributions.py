"""Predictive distributions returned by the estimators: Gaussian (regressors) and categorical (classifiers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianPrediction:
    """Per-point Gaussian predictive distributions N(mean, epistemic_var + noise_var).

    ``epistemic_var`` is the variance of the network output under the weight posterior
    (moment propagation); ``noise_var`` the posterior-mean observation noise. All in the
    user's units. Methods mirror ``scipy.stats.norm`` and NGBoost's ``pred_dist``.

    The variances must be ``>= 0`` and not NaN (a ``ValueError`` names the field otherwise);
    they are broadcast to the shape of ``mean``. ``logpdf``, ``pdf`` and ``cdf`` broadcast ``y``
    against the points as NumPy does: ``y`` of shape ``(n,)`` gives one value per point, a
    scalar the same ``y`` at every point, ``(k, n)`` (e.g. ``sample(k)``) gives ``(k, n)``. A
    column of shape ``(n, 1)`` is refused as ambiguous (broadcasting would make an ``(n, n)``
    table); pass ``y.ravel()``.
    """

    mean: np.ndarray
    epistemic_var: np.ndarray
    noise_var: np.ndarray

    def __post_init__(self):
        mean = np.asarray(self.mean, dtype=np.float64)
        object.__setattr__(self, "mean", mean)
        for name in ("epistemic_var", "noise_var"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            n_nan = int(np.count_nonzero(np.isnan(value)))
            if n_nan:
                raise ValueError(f"{name} contains {n_nan} NaN value(s); variances must be numbers >= 0")
            negative = np.flatnonzero(value < 0)
            if negative.size:
                i = int(negative[0])
                raise ValueError(
                    f"{name} must be >= 0 (it is a variance), but {negative.size} value(s) are negative, "
                    f"e.g. {float(value.ravel()[i])!r} at flat index {i}"
                )
            try:
                value = np.broadcast_to(value, mean.shape)
            except ValueError:
                raise ValueError(
                    f"{name} of shape {value.shape} does not match mean of shape {mean.shape} (pass one "
                    "variance per point, or a scalar)"
                ) from None
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
        from scipy import stats  # on first use: scipy.stats takes about half a second to import

        return stats.norm(loc=self.mean, scale=self.std)

    def _targets(self, y) -> np.ndarray:
        """``y`` as float64, checked to broadcast against the points."""
        y = np.asarray(y, dtype=np.float64)
        n = self.mean.size
        if self.mean.ndim == 1 and n > 1 and y.shape == (n, 1):
            raise ValueError(
                f"y has shape {y.shape}, a column for {n} points: broadcasting it would evaluate every "
                f"value at every point, a ({n}, {n}) table. Pass y.ravel() for one value per point, "
                f"or a (k, {n}) array for k values per point."
            )
        try:
            np.broadcast_shapes(y.shape, self.mean.shape)
        except ValueError:
            raise ValueError(
                f"y of shape {y.shape} does not broadcast against the {n} points (shape {self.mean.shape}); "
                f"pass a scalar, one value per point {self.mean.shape}, or a (k, {n}) array"
            ) from None
        return y

    def logpdf(self, y) -> np.ndarray:
        """Log density of ``y``, broadcast against the points (``(k, n)`` in gives ``(k, n)``)."""
        return self._norm().logpdf(self._targets(y))

    def pdf(self, y) -> np.ndarray:
        """Density of ``y``, broadcast against the points like :meth:`logpdf`."""
        return np.exp(self.logpdf(y))

    def cdf(self, y) -> np.ndarray:
        """``P(Y <= y)``, broadcast against the points like :meth:`logpdf`."""
        return self._norm().cdf(self._targets(y))

    def ppf(self, q) -> np.ndarray:
        """Quantiles: a scalar ``q`` gives one per point; a 1-D array of levels gives (n, len(q)).

        Levels must lie in [0, 1]; ``q = 0`` gives ``-inf`` and ``q = 1`` gives ``+inf``, as in
        ``scipy.stats.norm.ppf``.
        """
        q = np.asarray(q, dtype=np.float64)
        if q.ndim > 1:
            raise ValueError(f"q must be a scalar or a 1-D array of levels, got an array of shape {q.shape}")
        bad = np.isnan(q) | (q < 0) | (q > 1)
        if np.any(bad):
            raise ValueError(
                f"quantile levels must lie in [0, 1] (0 and 1 give -inf and +inf); got "
                f"{np.atleast_1d(q)[np.atleast_1d(bad)].tolist()}"
            )
        if q.ndim == 0:
            return self._norm().ppf(q)
        from scipy import stats

        return stats.norm.ppf(q[None, :], loc=self.mean[:, None], scale=self.std[:, None])

    def interval(self, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Central interval holding ``confidence`` of the predictive mass: (lower, upper)."""
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
        # scipy.stats.norm's interval, without building a frozen distribution (~2 ms): the same
        # loc + scale * ndtri(level), bit for bit
        from scipy.special import ndtri

        std = self.std
        return self.mean + std * ndtri((1.0 - confidence) / 2.0), self.mean + std * ndtri((1.0 + confidence) / 2.0)

    def sample(self, n: int = 1, random_state=None) -> np.ndarray:
        """``n`` draws per point, shape (n, n_points)."""
        rng = np.random.default_rng(random_state)
        return self.mean + self.std * rng.standard_normal((n, len(self.mean)))


def normalise_rows(probabilities) -> np.ndarray:
    """Class probabilities (n, K) divided by their row sums: rows summing to 1 to the last bit."""
    p = np.asarray(probabilities, np.float64)
    return p / p.sum(axis=-1, keepdims=True)


def member_summaries(member_probabilities):
    """Mean (n, K), variance (n, K) and mean entropy (n,) across the leading axis of S networks'
    class probabilities (S, n, K): what a prediction averaged over networks is built from."""
    from probprop.metrics.classification import entropy

    p = np.asarray(member_probabilities, np.float64)
    return p.mean(axis=0), p.var(axis=0), entropy(p, axis=-1).mean(axis=0)


@dataclass(frozen=True)
class ClassPrediction:
    """Per-point class probabilities and the uncertainty scores that flag inputs, from a
    classifier's ``predict_dist``.

    ``probabilities`` (n, K): the predictive probabilities (rows sum to 1), columns in the order
    of ``classes``; ``variance`` (n, K): the variance of each class probability p(k | x, w) under
    the weight posterior (epistemic); ``expected_entropy`` (n,): E_w H[p(. | x, w)], the aleatoric
    part of the predictive entropy. Derived scores (higher = more uncertain, except
    ``max_probability``): ``max_probability`` (Hendrycks & Gimpel's baseline), ``entropy`` of the
    predictive probabilities (total uncertainty), ``mutual_information`` = entropy -
    expected_entropy (epistemic: high where weights disagree, e.g. far from the training data),
    ``epistemic_variance`` (the per-class variances summed). Entropies in nats.

    ``epistemic`` is False for a point estimate (one network, no weight uncertainty, as
    :class:`probprop.MAPClassifier`): its variance and mutual information are zero by
    construction, so :meth:`scores` leaves them out rather than rank inputs by a constant.
    """

    probabilities: np.ndarray
    variance: np.ndarray
    expected_entropy: np.ndarray
    classes: np.ndarray
    epistemic: bool = True

    @classmethod
    def from_members(cls, member_probabilities, classes) -> ClassPrediction:
        """The prediction of networks averaged with equal weights (an ensemble, or one network
        when the leading axis has length 1): ``member_probabilities`` (M, n, K), each row summing
        to 1. Probabilities = the members' mean, variance and expected entropy across members;
        one member gives a point estimate (``epistemic=False``)."""
        p = np.asarray(member_probabilities, np.float64)
        if p.ndim != 3 or len(p) == 0:
            raise ValueError(f"member probabilities must have shape (members, n, K), got {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(axis=2), 1.0, rtol=0, atol=1e-6):
            raise ValueError("member probabilities must be finite, >= 0, and sum to 1 over the classes")
        mean, variance, expected = member_summaries(p)
        return cls(normalise_rows(mean), variance, expected, classes, epistemic=len(p) > 1)

    def __post_init__(self):
        p = np.asarray(self.probabilities, np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.classes):
            raise ValueError(f"probabilities of shape {p.shape} do not match {len(self.classes)} classes")
        object.__setattr__(self, "probabilities", p)
        object.__setattr__(self, "variance", np.broadcast_to(np.asarray(self.variance, np.float64), p.shape))
        object.__setattr__(self, "expected_entropy", np.asarray(self.expected_entropy, np.float64))

    @property
    def predicted(self) -> np.ndarray:
        """The most probable class of each point (a label of ``classes``)."""
        return np.asarray(self.classes)[np.argmax(self.probabilities, axis=1)]

    @property
    def max_probability(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @property
    def entropy(self) -> np.ndarray:
        from probprop.metrics.classification import entropy

        return entropy(self.probabilities, axis=1)

    @property
    def mutual_information(self) -> np.ndarray:
        return np.maximum(self.entropy - self.expected_entropy, 0.0)

    @property
    def epistemic_variance(self) -> np.ndarray:
        return self.variance.sum(axis=1)

    def scores(self) -> dict[str, np.ndarray]:
        """The uncertainty scores by name, each oriented so that higher means more uncertain
        (``max_probability`` enters as ``1 - max_probability``): what OOD detection ranks by.
        A point estimate (``epistemic=False``) has only the first two."""
        out = {"max_probability": 1.0 - self.max_probability, "entropy": self.entropy}
        if self.epistemic:
            out.update(mutual_information=self.mutual_information, epistemic_variance=self.epistemic_variance)
        return out

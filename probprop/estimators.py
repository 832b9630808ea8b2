"""scikit-learn estimators: input validation, standardisation, and units live here only.

The learners work on standardised float arrays; these classes validate what the user gives,
standardise with training statistics, call the learner, and map results back.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers

import jax
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from tqdm.auto import tqdm

from probprop.distributions import GaussianPrediction
from probprop.learners import pbp
from probprop.moments import ACTIVATIONS

_DTYPES = ("float64", "float32")


#: Prediction runs in blocks of at most this many rows, each padded to a power of two so
#: that a handful of compiled shapes serve every batch size.
_PREDICT_BLOCK = 8192


def standardisation(a: np.ndarray, constant_tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and population std (ddof=0) per column; (near-)constant columns get std 1.

    A column is constant when its std is at most ``constant_tol`` times its magnitude (naval
    has a column whose std is float rounding noise, about 1e-13); ``constant_tol=0`` keeps
    the reference code's rule (only an exactly zero std).
    """
    mean = a.mean(axis=0)
    std = a.std(axis=0)
    constant = std <= constant_tol * np.abs(mean) + np.finfo(np.float64).tiny
    return mean, np.where(constant, 1.0, std)


def _bucket(n: int) -> int:
    """Smallest power of two >= n (at least 8)."""
    return max(8, 1 << (int(n) - 1).bit_length())


class _MomentRegressor(RegressorMixin, BaseEstimator):
    """Shared surface of the probprop regressors: validation, standardisation, prediction.

    Subclasses fit a learner in standardised units and implement ``_standardised_moments(Xs)``
    returning the predictive mean, the epistemic variance and the noise variance (scalar or
    per point), all in standardised units. Fitted state lives in ``state_``.
    """

    def _validate_X_y(self, X, y, *, reset: bool, min_samples: int):
        try:
            X, y = validate_data(
                self,
                X,
                y,
                reset=reset,
                dtype=[np.float64, np.float32],
                y_numeric=True,
                multi_output=True,
                ensure_min_samples=min_samples,
            )
        except ValueError as err:
            raise _clearer(err) from err
        if y.ndim == 2 and y.shape[1] != 1:
            raise ValueError(f"y must be 1-D or a single column, got shape {y.shape}")
        try:  # y_numeric converts only object arrays; a string array would fail here
            y = column_or_1d(y, warn=True).astype(np.float64)
        except ValueError as err:
            raise _clearer(err) from err
        if not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        return np.asarray(X, np.float64), y

    def _validate_X(self, X) -> np.ndarray:
        check_is_fitted(self, "state_")
        try:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        except ValueError as err:
            raise _clearer(err) from err
        return np.asarray(X, np.float64)

    def _set_scaling(self, X, y, constant_tol: float = 1e-9) -> None:
        self.x_mean_, self.x_scale_ = standardisation(X, constant_tol)
        y_mean, y_scale = standardisation(y[:, None])
        self.y_mean_, self.y_scale_ = float(y_mean[0]), float(y_scale[0])

    def _standardise(self, X, y=None):
        Xs = (X - self.x_mean_) / self.x_scale_
        if y is None:
            return Xs
        return Xs, (y - self.y_mean_) / self.y_scale_

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _standardised_moments(self, Xs):  # pragma: no cover - abstract
        raise NotImplementedError

    def _moments(self, X):
        """(mean, epistemic_var, noise_var) in the user's units, in padded blocks."""
        Xs = self._standardise(self._validate_X(X))
        parts = []
        for start in range(0, len(Xs), _PREDICT_BLOCK):
            block = Xs[start : start + _PREDICT_BLOCK]
            padded = np.zeros((_bucket(len(block)), Xs.shape[1]))
            padded[: len(block)] = block
            m, v, noise = self._standardised_moments(padded)
            noise = np.broadcast_to(np.asarray(noise, np.float64), np.shape(m))
            parts.append([np.asarray(a, np.float64)[: len(block)] for a in (m, v, noise)])
        mean, epistemic, noise = (np.concatenate(column) for column in zip(*parts))
        scale2 = self.y_scale_**2
        return mean * self.y_scale_ + self.y_mean_, epistemic * scale2, noise * scale2

    def predict(self, X, return_std: bool = False):
        """Predictive mean; with ``return_std=True`` also the predictive std (epistemic + noise)."""
        mean, epistemic, noise = self._moments(X)
        if return_std:
            return mean, np.sqrt(epistemic + noise)
        return mean

    def predict_dist(self, X) -> GaussianPrediction:
        """Per-point Gaussian predictive distributions (``.mean .std .epistemic_var .noise_var``,
        ``.logpdf .cdf .ppf .interval .sample``), in the units of ``y``."""
        return GaussianPrediction(*self._moments(X))

    def score(self, X, y, sample_weight=None):
        """Mean test log predictive density of y (higher is better), in the units of ``y``."""
        dist = self.predict_dist(X)
        try:
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        except ValueError as err:
            raise _clearer(err) from err
        y = column_or_1d(y, warn=False)
        check_consistent_length(dist.mean, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, dist.mean)
        return float(np.average(dist.logpdf(y), weights=sample_weight))

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (arrays + JSON metadata, no pickle)."""
        from probprop.io import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` of this class; never executes code from the file."""
        from probprop.io import load_model

        return load_model(path, cls)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.non_deterministic = getattr(self, "random_state", None) is None
        return tags


class PBPRegressor(_MomentRegressor):
    """Bayesian neural network regression by probabilistic backpropagation.

    Hernández-Lobato & Adams (ICML 2015): every weight has a Gaussian posterior, learned by
    one assumed-density-filtering update per data point (a closed-form moment match), with a
    Gamma posterior on the noise precision and an EP-refined Gamma prior on the weights.

    Parameters
    ----------
    hidden : tuple of int, default=(50,)
        Units per hidden layer; ``()`` gives a Bayesian linear model.
    epochs : int, default=40
        Passes over the data in :meth:`fit` (each pass: a new random order, one ADF update
        per point, then one EP refinement of the prior), as in the paper.
    noise : "learn" or float, default="learn"
        ``"learn"``: Gamma(6, 6) prior on the noise precision (in standardised units), updated
        by ADF. A positive float: a fixed noise variance, in the units of ``y`` squared.
    activation : str, default="relu"
        Hidden-unit nonlinearity (one of ``probprop.moments.ACTIVATIONS``).
    dtype : {"float64", "float32"}, default="float64"
        Precision of the network moments (Gamma and EP-site arithmetic stays float64).
    constant_tol : float, default=1e-9
        Input columns whose training std is at most this fraction of their mean's magnitude
        are treated as constant (left unscaled). 0 reproduces the reference code, which only
        treats an exactly zero std so (see the naval note in docs/benchmarks).
    random_state : int, RandomState or None, default=None
        Seeds the initial weight means and the per-epoch shuffling.
    verbose : bool, default=False
        Show a progress bar over epochs and report rejected updates.

    Attributes
    ----------
    state_ : probprop.learners.pbp.PBPState
        The posterior, in standardised units.
    n_rejected_ : int
        Weight or noise updates refused by the variance guard during training.
    rejected_per_epoch_ : list of int
    noise_variance_ : float
        Posterior mean of the noise variance, in the units of ``y`` squared.
    n_features_in_, feature_names_in_ : as in scikit-learn.
    """

    def __init__(
        self,
        hidden=(50,),
        epochs=40,
        noise="learn",
        activation="relu",
        dtype="float64",
        constant_tol=1e-9,
        random_state=None,
        verbose=False,
    ):
        self.hidden = hidden
        self.epochs = epochs
        self.noise = noise
        self.activation = activation
        self.dtype = dtype
        self.constant_tol = constant_tol
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation

    def _validated_params(self) -> dict:
        hidden = _check_hidden(self.hidden)
        _check_positive_int("epochs", self.epochs)
        if isinstance(self.noise, str):
            if self.noise != "learn":
                raise ValueError(f"noise must be 'learn' or a positive float (a variance), got {self.noise!r}")
        elif (
            isinstance(self.noise, bool)
            or not isinstance(self.noise, numbers.Real)
            or not (np.isfinite(self.noise) and self.noise > 0)
        ):
            raise ValueError(f"noise must be 'learn' or a positive float (a variance), got {self.noise!r}")
        _check_activation_and_dtype(self.activation, self.dtype)
        if not (isinstance(self.constant_tol, numbers.Real) and not isinstance(self.constant_tol, bool)
                and 0 <= self.constant_tol < 1):
            raise ValueError(f"constant_tol must be a float in [0, 1), got {self.constant_tol!r}")
        return {"hidden": hidden}

    # ------------------------------------------------------------------ training

    def _start(self, X, y):
        params = self._validated_params()
        self._set_scaling(X, y, self.constant_tol)
        learn = self.noise == "learn"
        spec = pbp.PBPSpec(
            n_in=X.shape[1],
            hidden=params["hidden"],
            activation=self.activation,
            learn_noise=learn,
            noise_variance=None if learn else float(self.noise) / self.y_scale_**2,
            dtype=self.dtype,
        )
        self.state_ = jax.device_get(pbp.init(jax.random.PRNGKey(self._seed()), spec))
        self.n_rejected_ = 0
        self.rejected_per_epoch_ = []

    def _run_epochs(self, Xs, ys, epochs: int, mask=None):
        state = self.state_
        before = int(_rejected(state))
        bar = tqdm(range(epochs), desc="PBP epochs", unit="epoch", disable=not self.verbose, leave=False)
        for _ in bar:
            state = pbp.update(state, Xs, ys, mask)
            now = int(_rejected(state))
            self.rejected_per_epoch_.append(now - before)
            before = now
        self.state_ = jax.device_get(state)
        self.n_rejected_ = int(_rejected(self.state_))
        if self.verbose:
            print(f"PBP: {len(self.rejected_per_epoch_)} epochs, {self.n_rejected_} rejected updates")

    def fit(self, X, y):
        """Fit from scratch: standardise with (X, y)'s statistics, then ``epochs`` PBP epochs."""
        X, y = self._validate_X_y(X, y, reset=True, min_samples=2)
        self._start(X, y)
        Xs, ys = self._standardise(X, y)
        self._run_epochs(Xs, ys, self.epochs)
        return self

    def partial_fit(self, X, y, epochs: int = 1):
        """Keep learning from (X, y) by ADF, starting from the current posterior.

        The first call on an unfitted model sets the standardisation (needs 2+ rows);
        later calls reuse it, accept any number of rows, and need the same features.
        Each of the ``epochs`` passes shuffles the batch, makes one ADF update per row, and
        refines the prior by EP.
        """
        first = not hasattr(self, "state_")
        X, y = self._validate_X_y(X, y, reset=first, min_samples=2 if first else 1)
        if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        if first:
            self._start(X, y)
        Xs, ys = self._standardise(X, y)
        # pad to a power-of-two length so that a stream of ragged batches reuses compilations
        n, size = len(ys), _bucket(len(ys))
        mask = np.arange(size) < n
        Xp = np.zeros((size, Xs.shape[1]), Xs.dtype)
        Xp[:n] = Xs
        yp = np.zeros(size)
        yp[:n] = ys
        self._run_epochs(Xp, yp, epochs, mask)
        return self

    # ------------------------------------------------------------------ prediction

    def _standardised_moments(self, Xs):
        mean, epistemic = pbp.predict(self.state_, Xs)
        return mean, epistemic, pbp.noise_variance(self.state_)

    @property
    def noise_variance_(self) -> float:
        """Posterior mean of the noise variance, in the units of ``y`` squared."""
        check_is_fitted(self, "state_")
        return float(pbp.noise_variance(self.state_)) * self.y_scale_**2


#: One PBP epoch of several independent networks, each on its own data, as one program.
_update_together = jax.jit(jax.vmap(functools.partial(pbp.update, unroll=pbp.BATCHED_SWEEP_UNROLL)))


def _rejected(state) -> np.ndarray:
    """Refused updates so far, per network (a leading batch axis is kept), counted on the host:
    an eager sum on the device compiles a small program for every new weight shape."""
    counts = sum(np.asarray(r).sum(axis=(-2, -1), dtype=np.int64) for r in state.rejections)
    return counts + np.asarray(state.noise_rejections, np.int64)


def fit_together(estimators, Xs, ys, verbose=None) -> list:
    """Fit several :class:`PBPRegressor` models, each on its own data, as one batched program.

    ``estimators[i]`` is fitted on ``(Xs[i], ys[i])`` exactly as ``estimators[i].fit`` would
    (its own standardisation, initial weights and shuffling from its ``random_state``), but
    the epochs of all of them run together through ``jax.vmap`` of the PBP update, so the
    fixed cost of each compiled step is shared: cross-validation folds, benchmark splits or
    seeds of the same problem train faster per model on one CPU core (``probprop bench
    speed`` measures by how much). The results equal separate fits up to floating-point
    rounding: the batched kernels may sum in another order (the tests hold the predictive mean
    to 1e-9 and the variance to 1e-7, relative).

    The estimators must share their parameters apart from ``random_state`` and ``verbose``,
    and the data sets their shape. ``verbose`` (default: any estimator's ``verbose``) shows a
    progress bar over epochs. Returns the list of fitted estimators.
    """
    estimators, Xs, ys = list(estimators), list(Xs), list(ys)
    if not estimators:
        raise ValueError("fit_together needs at least one estimator")
    if not len(estimators) == len(Xs) == len(ys):
        raise ValueError(f"fit_together got {len(estimators)} estimators, {len(Xs)} X and {len(ys)} y; "
                         "give one data set per estimator")
    for est in estimators:
        if type(est) is not PBPRegressor:
            raise TypeError(f"fit_together fits PBPRegressor models, got {type(est).__name__}")
    ignored = ("random_state", "verbose")
    first = {k: v for k, v in estimators[0].get_params().items() if k not in ignored}
    for i, est in enumerate(estimators[1:], start=1):
        other = {k: v for k, v in est.get_params().items() if k not in ignored}
        differ = sorted(k for k in first if not _same_param(first[k], other[k]))
        if differ:
            raise ValueError(f"fit_together needs the same parameters apart from random_state and verbose; "
                             f"estimator {i} differs from estimator 0 in {', '.join(differ)}")
    data = []
    for est, X, y in zip(estimators, Xs, ys):
        X, y = est._validate_X_y(X, y, reset=True, min_samples=2)
        est._start(X, y)
        data.append(est._standardise(X, y))
    shapes = sorted({Xs_.shape for Xs_, _ in data})
    if len(shapes) > 1:
        raise ValueError(f"fit_together needs data sets of one shape, got X shapes {shapes}")
    if len(estimators) == 1:
        estimators[0]._run_epochs(*data[0], estimators[0].epochs)
        return estimators

    state = jax.tree.map(lambda *leaves: np.stack(leaves), *(est.state_ for est in estimators))
    X_all = np.stack([Xs_ for Xs_, _ in data])
    y_all = np.stack([ys_ for _, ys_ in data])
    verbose = any(est.verbose for est in estimators) if verbose is None else bool(verbose)
    before = np.zeros(len(estimators), np.int64)
    per_epoch = []
    desc = f"PBP epochs ({len(estimators)} models)"
    for _ in tqdm(range(estimators[0].epochs), desc=desc, unit="epoch", disable=not verbose, leave=False):
        state = _update_together(state, X_all, y_all)
        now = _rejected(state)
        per_epoch.append(now - before)
        before = now
    state = jax.device_get(state)
    for i, est in enumerate(estimators):
        est.state_ = jax.tree.map(lambda leaf: np.array(leaf[i]), state)
        est.rejected_per_epoch_ = [int(counts[i]) for counts in per_epoch]
        est.n_rejected_ = int(_rejected(est.state_))
        if est.verbose:
            print(f"PBP: {len(per_epoch)} epochs, {est.n_rejected_} rejected updates")
    return estimators


def _same_param(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_param(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b



def _clearer(err: ValueError) -> ValueError:
    """Name the problem for the commonest input mistakes; keep scikit-learn's text otherwise."""
    text = str(err)
    if "could not convert" in text or "Unable to convert" in text or "argument must be" in text:
        return ValueError(f"Input contains non-numeric values: {text}")
    return err



def _candidates(name: str, value, default: tuple[float, ...], upper: float = np.inf) -> tuple[float, ...]:
    """A hyperparameter given as ``"select"`` (``default``, a grid to search), one number, or a
    sequence of numbers (a grid), each in (0, upper); one value means no search."""
    if isinstance(value, str):
        if value != "select":
            raise ValueError(f"{name} must be 'select', a number or a sequence of numbers, got {value!r}")
        return default
    values = (value,) if isinstance(value, numbers.Real) else value
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be 'select', a number or a sequence of numbers, got {value!r}") from None
    ok = [isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v < upper for v in values]
    if not values or not all(ok):
        bound = f"in (0, {upper:g})" if np.isfinite(upper) else "positive"
        raise ValueError(f"{name} values must be {bound}, got {value!r}")
    return tuple(float(v) for v in values)


def _check_positive_int(name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_activation_and_dtype(activation, dtype) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")


def _check_hidden(hidden) -> tuple[int, ...]:
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        hidden = tuple(hidden)
    except TypeError:
        raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}") from None
    if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise ValueError(f"hidden must be a tuple of positive ints (e.g. (50,) or ()), got {hidden!r}")
    return tuple(int(h) for h in hidden)


class PBPEnsembleRegressor(_MomentRegressor):
    """An ensemble of independently initialised PBP networks, combined as a mixture.

    Each member is a :class:`PBPRegressor` posterior trained on the same data with its own
    initial weights and shuffling. The predictive distribution is the equally weighted
    mixture of the members' Gaussians, reported by its first two moments:
    mean = avg m_k; epistemic = avg v_k + Var_k(m_k); noise = avg noise_k.

    Parameters are those of :class:`PBPRegressor` plus ``n_members`` (default 5).
    """

    def __init__(
        self,
        n_members=5,
        hidden=(50,),
        epochs=40,
        activation="relu",
        dtype="float64",
        constant_tol=1e-9,
        random_state=None,
        verbose=False,
    ):
        self.n_members = n_members
        self.hidden = hidden
        self.epochs = epochs
        self.activation = activation
        self.dtype = dtype
        self.constant_tol = constant_tol
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Fit ``n_members`` PBP networks (``epochs`` epochs each) from different seeds, together
        (see :func:`fit_together`)."""
        n_members = _check_positive_int("n_members", self.n_members)
        X, y = self._validate_X_y(X, y, reset=True, min_samples=2)
        self._set_scaling(X, y, self.constant_tol)
        rng = check_random_state(self.random_state)
        members = [
            PBPRegressor(
                hidden=self.hidden,
                epochs=self.epochs,
                activation=self.activation,
                dtype=self.dtype,
                constant_tol=self.constant_tol,
                random_state=int(rng.randint(np.iinfo(np.int32).max)),
            )
            for _ in range(n_members)
        ]
        # the members train together, one batched program (same data, their own seeds)
        self.members_ = fit_together(members, [X] * n_members, [y] * n_members, verbose=self.verbose)
        self.state_ = tuple(m.state_ for m in self.members_)
        self.n_rejected_ = sum(m.n_rejected_ for m in self.members_)
        return self

    def _standardised_moments(self, Xs):
        moments = []
        for state, member in zip(self.state_, self.members_):
            # members share this model's scaling (same data), so their units agree
            mean, var = pbp.predict(state, Xs)
            moments.append((np.asarray(mean), np.asarray(var), float(pbp.noise_variance(state))))
        means = np.stack([m for m, _, _ in moments])
        epistemic = np.mean([v for _, v, _ in moments], axis=0) + means.var(axis=0)
        return means.mean(axis=0), epistemic, np.mean([n for _, _, n in moments])


class TAGIRegressor(_MomentRegressor):
    """Tractable approximate Gaussian inference (Goulet, Nguyen & Amiri, JMLR 2021).

    Closed-form forward moments and a layer-by-layer Gaussian conditioning of the hidden
    states and the weights (no gradients), over mini-batches (``probprop.learners.tagi``).

    Parameters
    ----------
    hidden, epochs, activation, dtype, random_state, verbose : as in :class:`PBPRegressor`.
    sigma_v : "select" or float, default="select"
        Observation-noise standard deviation in standardised target units (fixed during
        training). ``"select"`` picks it from (0.1, 0.2, 0.3, 0.5, 0.7) by log-likelihood on a
        validation tenth of the training data (never the test data). With
        ``heteroscedastic=True`` it is only the noise's starting value (``"select"``: 0.3).
    batch_size : int, default=10
    heteroscedastic : bool, default=False
        Learn an input-dependent noise variance with a second output unit (AGVI, Deka, Nguyen
        & Goulet 2024; derivation in ``probprop.learners.tagi``); ``predict_dist(X).noise_var``
        is then per point.
    init_gain, init_bias_variance : float, default=0.25, 0.01
        Initial weight variance ``init_gain / fan_in`` (weight means drawn from the same
        variance) and initial bias variance: TAGI-MAT's UCI setting. pytagi's He
        initialisation corresponds to ``init_gain=1`` (see ``docs/benchmarks/pytagi``).
    """

    def __init__(
        self,
        hidden=(50,),
        epochs=40,
        sigma_v="select",
        batch_size=10,
        heteroscedastic=False,
        init_gain=0.25,
        init_bias_variance=0.01,
        activation="relu",
        dtype="float64",
        random_state=None,
        verbose=False,
    ):
        self.hidden = hidden
        self.epochs = epochs
        self.sigma_v = sigma_v
        self.batch_size = batch_size
        self.heteroscedastic = heteroscedastic
        self.init_gain = init_gain
        self.init_bias_variance = init_bias_variance
        self.activation = activation
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        from probprop.learners import tagi

        hidden = _check_hidden(self.hidden)
        epochs = _check_positive_int("epochs", self.epochs)
        batch_size = _check_positive_int("batch_size", self.batch_size)
        _check_activation_and_dtype(self.activation, self.dtype)
        select = isinstance(self.sigma_v, str) and self.sigma_v == "select"
        if not select and not (
            isinstance(self.sigma_v, numbers.Real) and not isinstance(self.sigma_v, bool) and self.sigma_v > 0
        ):
            raise ValueError(f"sigma_v must be 'select' or a positive float, got {self.sigma_v!r}")
        X, y = self._validate_X_y(X, y, reset=True, min_samples=2)
        self._set_scaling(X, y)
        Xs, ys = self._standardise(X, y)
        key = jax.random.PRNGKey(self._seed())
        key, select_key = jax.random.split(key)
        if not isinstance(self.heteroscedastic, (bool, np.bool_)):
            raise ValueError(f"heteroscedastic must be True or False, got {self.heteroscedastic!r}")
        for name in ("init_gain", "init_bias_variance"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0 and np.isfinite(value)):
                raise ValueError(f"{name} must be a positive float, got {value!r}")
        spec = tagi.TAGISpec(
            n_in=X.shape[1], hidden=hidden, activation=self.activation, batch_size=batch_size, dtype=self.dtype,
            init_gain=float(self.init_gain), init_bias_variance=float(self.init_bias_variance),
        )
        if self.heteroscedastic:
            self.sigma_v_ = spec.sigma_v if select else float(self.sigma_v)
            spec = dataclasses.replace(spec, heteroscedastic=True)
        elif select:
            choice = tagi.select_sigma_v(X, y, epochs=epochs, key=select_key, spec=spec)
            self.sigma_v_ = float(choice.sigma_v)
            self.sigma_v_validation_ = dict(zip(map(float, choice.grid), map(float, choice.val_log_likelihood)))
        else:
            self.sigma_v_ = float(self.sigma_v)
        spec = dataclasses.replace(spec, sigma_v=self.sigma_v_)
        state = tagi.init(key, spec)
        for _ in tqdm(range(epochs), desc="TAGI epochs", disable=not self.verbose, leave=False):
            state = tagi.update(state, Xs, ys)
        self.state_ = jax.device_get(state)
        self.n_rejected_ = int(self.state_.rejected)
        return self

    def _standardised_moments(self, Xs):
        from probprop.learners import tagi

        mean, var = tagi.predict(self.state_, Xs)
        return mean, var, tagi.noise_variance(self.state_, Xs)


class _EpochLearnerRegressor(_MomentRegressor):
    """An estimator over a learner module with ``init(key, spec)``, ``update(state, X, y)``
    (one epoch), ``predict(state, X) -> (mean, epistemic var)`` and
    ``noise_variance(state, X)``. Subclasses name the module and build its spec."""

    _learner_module: str = ""
    _progress_label: str = "epochs"

    def _learner(self):
        import importlib

        return importlib.import_module(f"probprop.learners.{self._learner_module}")

    def _make_spec(self, n_in: int, hidden: tuple[int, ...]):  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, Xs, ys, key):
        """Hook before training (e.g. hyperparameter selection on a validation split)."""
        return key

    def fit(self, X, y):
        hidden = _check_hidden(self.hidden)
        epochs = _check_positive_int("epochs", self.epochs)
        X, y = self._validate_X_y(X, y, reset=True, min_samples=2)
        self._set_scaling(X, y)
        Xs, ys = self._standardise(X, y)
        key = jax.random.PRNGKey(self._seed())
        self.spec_ = self._make_spec(X.shape[1], hidden)
        key = self._prepare(Xs, ys, key)
        learner = self._learner()
        state = learner.init(key, self.spec_)
        for _ in tqdm(range(epochs), desc=self._progress_label, disable=not self.verbose, leave=False):
            state = learner.update(state, Xs, ys)
        self.state_ = jax.device_get(state)
        return self

    def _standardised_moments(self, Xs):
        learner = self._learner()
        mean, var = learner.predict(self.state_, Xs)
        return mean, var, learner.noise_variance(self.state_, Xs)


class DVIRegressor(_EpochLearnerRegressor):
    """Deterministic variational inference (Wu et al., ICLR 2019): mean-field Gaussian weights,
    the ELBO's expected log-likelihood from propagated moments (no sampling), Adam.

    ``heteroscedastic=True`` adds an input-dependent noise head (the paper's default);
    ``empirical_bayes=True`` sets the prior variance per layer under an InvGamma(1, 10)
    hyper-prior. Epochs default to 100 (chosen on validation folds of training data).
    """

    _learner_module = "dvi"
    _progress_label = "DVI epochs"

    def __init__(self, hidden=(50,), epochs=100, heteroscedastic=True, empirical_bayes=True,
                 learning_rate=3e-3, batch_size=32, random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.heteroscedastic = heteroscedastic
        self.empirical_bayes = empirical_bayes
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, hidden):
        from probprop.learners import dvi

        return dvi.DVISpec(n_in=n_in, hidden=hidden, heteroscedastic=bool(self.heteroscedastic),
                           empirical_bayes=bool(self.empirical_bayes), learning_rate=float(self.learning_rate),
                           batch_size=_check_positive_int("batch_size", self.batch_size))


class MAPRegressor(_EpochLearnerRegressor):
    """A point-estimate network trained by backpropagation (Adam) with a learned Gaussian
    noise (homoscedastic, or an input-dependent head): the non-Bayesian baseline. Its
    epistemic variance is zero by construction."""

    _learner_module = "mapnet"
    _progress_label = "MAP epochs"

    def __init__(self, hidden=(50,), epochs=40, heteroscedastic=False, learning_rate=1e-2, batch_size=32,
                 random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.heteroscedastic = heteroscedastic
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, hidden):
        from probprop.learners import mapnet

        return mapnet.MAPSpec(n_in=n_in, hidden=hidden, heteroscedastic=bool(self.heteroscedastic),
                              learning_rate=float(self.learning_rate),
                              batch_size=_check_positive_int("batch_size", self.batch_size))


class DeepEnsembleRegressor(_EpochLearnerRegressor):
    """Deep ensembles (Lakshminarayanan et al. 2017): ``n_members`` heteroscedastic networks
    trained on the NLL from different initialisations, combined as a Gaussian mixture;
    epistemic = variance of the member means, noise = mean member variance.

    ``learning_rate`` is Adam's step size: a number, a sequence of them (a grid), or
    ``"select"`` (the grid 1e-3, 3e-3, 1e-2, 3e-2). A grid is searched on an 80/20 split of the
    training data by validation log-likelihood, each candidate trained for ``epochs`` epochs,
    never on test data; the chosen value is ``learning_rate_`` and the scores
    ``validation_scores_``. A search costs about ``len(grid) * 0.8 + 1`` fits.
    """

    _learner_module = "ensemble"
    _progress_label = "ensemble epochs"

    def __init__(self, hidden=(50,), epochs=40, n_members=5, learning_rate=1e-2, batch_size=32,
                 random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.n_members = n_members
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, hidden):
        from probprop.learners import ensemble

        grid = _candidates("learning_rate", self.learning_rate, ensemble.GRID_LEARNING_RATE)
        return ensemble.EnsembleSpec(n_in=n_in, hidden=hidden,
                                     n_members=_check_positive_int("n_members", self.n_members),
                                     learning_rate=grid[0],
                                     batch_size=_check_positive_int("batch_size", self.batch_size))

    def _prepare(self, Xs, ys, key):
        from probprop.learners import ensemble

        grid = _candidates("learning_rate", self.learning_rate, ensemble.GRID_LEARNING_RATE)
        if len(grid) > 1:
            key, sub = jax.random.split(key)
            choice = ensemble.select_learning_rate(Xs, ys, self.spec_, epochs=int(self.epochs), grid=grid, key=sub)
            self.spec_ = choice.spec
            self.validation_scores_ = choice.scores
        self.learning_rate_ = float(self.spec_.learning_rate)
        return key


class MCDropoutRegressor(_EpochLearnerRegressor):
    """MC dropout (Gal & Ghahramani 2016): dropout before every layer, weight decay from the
    prior length-scale and the model precision tau, T stochastic passes at prediction.

    Parameters
    ----------
    dropout : "select", float in (0, 1), or a sequence of them, default="select"
        The dropout rate; a sequence is a grid to choose from, ``"select"`` the authors' grid
        (0.005, 0.01, 0.05, 0.1).
    tau : "select", positive float, or a sequence of them, default="select"
        The model precision (1 / noise variance) in the units of ``1 / y**2``, as in the
        authors' ``tau_values.txt``; a sequence is a grid, ``"select"`` a default grid of
        noise standard deviations from 1 to 1/16 of the training std of ``y``.

    Grids are searched on an 80/20 split of the training data by validation log-likelihood
    (the grid protocol of the authors' corrected code), never on test data; the chosen values
    are ``dropout_`` and ``tau_`` (in the units of ``1 / y**2``).
    """

    _learner_module = "mcdropout"
    _progress_label = "MC dropout epochs"

    def __init__(self, hidden=(50,), epochs=400, dropout="select", tau="select", n_samples=100,
                 random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.dropout = dropout
        self.tau = tau
        self.n_samples = n_samples
        self.random_state = random_state
        self.verbose = verbose

    def _candidates(self, name: str, default: tuple[float, ...], upper: float = np.inf) -> tuple[float, ...]:
        """The values of ``dropout`` or ``tau`` to consider (one value: no search)."""
        return _candidates(name, getattr(self, name), default, upper)

    def _grids(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Candidate dropout rates and taus, the taus as precisions of the standardised y."""
        from probprop.learners import mcdropout

        scale2 = self.y_scale_**2  # tau in 1/y^2 -> precision of the standardised target
        grid_p = self._candidates("dropout", mcdropout.GRID_P, upper=1.0)
        user_tau = self._candidates("tau", tuple(t / scale2 for t in mcdropout.GRID_TAU))
        return grid_p, tuple(t * scale2 for t in user_tau)

    def _make_spec(self, n_in, hidden):
        from probprop.learners import mcdropout

        n_samples = _check_positive_int("n_samples", self.n_samples)
        grid_p, grid_tau = self._grids()
        return mcdropout.MCDropoutSpec(n_in=n_in, hidden=hidden, n_samples=n_samples, dropout=grid_p[0], tau=grid_tau[0])

    def _prepare(self, Xs, ys, key):
        from probprop.learners import mcdropout

        grid_p, grid_tau = self._grids()
        if len(grid_p) > 1 or len(grid_tau) > 1:
            key, sub = jax.random.split(key)
            choice = mcdropout.select_hyperparameters(Xs, ys, grid_p=grid_p, grid_tau=grid_tau,
                                                      epochs=int(self.epochs), key=sub, spec=self.spec_)
            self.spec_ = choice.spec
            self.validation_scores_ = choice.scores
        self.dropout_ = float(self.spec_.dropout)
        self.tau_ = float(self.spec_.tau) / self.y_scale_**2
        return key

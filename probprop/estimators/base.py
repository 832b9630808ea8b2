"""The scikit-learn surface shared by every probprop regressor: validation, standardisation,
one fit loop, one ``partial_fit``, prediction in the user's units, saving and loading.

A concrete estimator names its learner (``_learner_name``, a key of
:data:`probprop.learners.REGISTRY`) and says how its hyperparameters become the learner's spec
(``_make_spec``) and, where it searches hyperparameters, how (``_configure``). Everything else is
here: learners only ever see standardised data, and everything returned is in the units of y.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from probprop import learners
from probprop.distributions import GaussianPrediction
from probprop.estimators import _checks
from probprop.estimators._api import (
    ClassifierMixin,
    Estimator,
    RegressorMixin,
    check_is_fitted,
    check_random_state,
    validate_data,
)
from probprop.learners import _threefry
from probprop.learners._order import ROUND_LIMITS
from probprop.learners.base import bucket, count_rejections, float64
from probprop.learners.memory import check_memory
from probprop.preprocessing import standardisation

#: ``partial_fit`` warns (:class:`DriftWarning`) when the batch's mean |z| (distance of y from the
#: predictive mean, in predictive standard deviations) exceeds this.
DRIFT_Z = 6.0

#: A target is constant when its std is at most this fraction of its mean's magnitude: float
#: rounding, not data (the std of ``[0.1] * 48`` computes as 1.4e-16 of the mean; the near-constant
#: rule of the inputs, 1e-9, would call ``1e12 + 50 * signal`` constant).
Y_CONSTANT_TOL = 64 * float(np.finfo(np.float64).eps)

#: The largest standardised input or target accepted: the moments square it (and more), so
#: beyond this they would overflow float64 (about 1.8e308).
MAX_STANDARDISED = 1e100


class DriftWarning(UserWarning):
    """A ``partial_fit`` batch lies many predictive standard deviations away from the model: the
    data changed (drift) or came in other units."""


class DivergedError(FloatingPointError, ValueError):
    """Training produced non-finite numbers (the loss or the weights overflowed)."""


#: Prediction runs in blocks of at most this many rows, each padded to a power of two so
#: that a handful of compiled shapes serve every batch size.
PREDICT_BLOCK = 8192
#: A plain prediction's blocks hold about this many numbers per layer (rows x the widest layer),
#: so that a block's intermediate arrays stay in the core's caches (`probprop bench predict-speed`,
#: docs/benchmarks/predict-speed: the MNIST CNN's predict_proba 0.24 ms per image in blocks of 32
#: rows against 0.81 in blocks of 8,192; PBP 13-50-1's predict 1.6 against 5.8 us per row).
PREDICT_BLOCK_NUMBERS = 1 << 17


class _Quiet:
    """A progress bar that shows nothing (``verbose=False``), without importing tqdm."""

    def __init__(self, iterable=()):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress(iterable=None, *, verbose: bool, **kwargs):
    """tqdm's bar over ``iterable`` (or with ``total=``) when ``verbose``, else a silent stand-in
    (tqdm is imported only to show something: about 40 ms of a first fit). Use it in a ``with``
    block: the bar is closed when the block ends, also by an exception."""
    if not verbose:
        return _Quiet(() if iterable is None else iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, leave=False, **kwargs)


def fit_rows(n: int) -> int:
    """The row count ``fit`` pads n training rows to: n rounded up to a multiple of an eighth of
    the largest power of two <= n (at least 8), so at most 8 compiled sizes per doubling of the
    data and at most 12.5 % padded rows; never across a row count at which the epoch's shuffle
    needs another sorting round (:data:`probprop.learners._order.ROUND_LIMITS`), so the padded
    fit gives the same results as an unpadded one."""
    n = int(n)
    step = max(8, (1 << (max(n, 1).bit_length() - 1)) // 8)
    rows = -(-n // step) * step
    for limit in ROUND_LIMITS:
        if n <= limit < rows:
            return limit
    return rows


#: From this many rows on, ``partial_fit`` pads a batch as ``fit`` pads its rows (:func:`fit_rows`)
#: rather than to a power of two: masked rows cost a full step each, every pass, so 60,000 rows
#: take 61,440 steps a pass rather than 65,536 (shorter batches keep one compiled size per doubling).
PARTIAL_FIT_FINE_ROWS = 8192


def batch_rows(n: int) -> int:
    """The row count ``partial_fit`` pads a batch of n rows to: :func:`fit_rows` from
    :data:`PARTIAL_FIT_FINE_ROWS` rows (the same padded length, and so the same order of the
    real rows, as ``fit``), else the power of two :func:`probprop.learners.base.bucket` gives."""
    return fit_rows(n) if int(n) >= PARTIAL_FIT_FINE_ROWS else bucket(n)


def padded(Xs, ys=None, size: int | None = None):
    """Rows padded with zeros to ``size`` (default :func:`bucket` length), and the mask of the
    real rows (a prefix)."""
    n, size = len(Xs), bucket(len(Xs)) if size is None else int(size)
    Xp = np.zeros((size, Xs.shape[1]), Xs.dtype)
    Xp[:n] = Xs
    mask = np.arange(size) < n
    if ys is None:
        return Xp, mask
    yp = np.zeros(size)
    yp[:n] = ys
    return Xp, yp, mask


class MomentEstimator(Estimator):
    """What every probprop estimator shares, regressor or classifier (see the module docstring).

    Subclasses set ``_learner_name`` and implement ``_validated_params()`` (check the
    hyperparameters, return what ``_make_spec`` needs) and ``_make_spec(n_in, params)``; they may
    override ``_configure(Xs, ys, key, spec, search)`` (hyperparameter searches on the
    standardised training data; returns the final spec and key) and ``_initial_state(key, spec)``.
    ``_saved`` names the fitted attributes, besides the learner state and the standardisation,
    that a model file keeps. Fitted state lives in ``state_`` (the learner's state) and ``spec_``.
    """

    _learner_name: str = ""
    _progress_label: str = "epochs"
    _saved: tuple[str, ...] = ()

    # ------------------------------------------------------------------ the learner

    @classmethod
    def _learner(cls):
        return learners.get(cls._learner_name)

    def _validated_params(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _make_spec(self, n_in: int, params: dict):  # pragma: no cover - abstract
        raise NotImplementedError

    def _configure(self, Xs, ys, key, spec, search: bool):
        """Hook before training (hyperparameter searches); returns ``(spec, key)``."""
        return spec, key

    def _initial_state(self, key, spec):
        return self._learner().init(key, spec)

    # ------------------------------------------------------------------ validation

    def _validate_X(self, X) -> np.ndarray:
        check_is_fitted(self, "state_")
        try:
            X = validate_data(self, X, reset=False)
        except ValueError as err:
            raise _checks.clearer(err) from err
        return np.asarray(X, np.float64)

    # ------------------------------------------------------------------ units

    def _set_scaling(self, X, y) -> None:
        """Input statistics with the near-constant rule (``constant_tol``); the target's scale is its
        std unless that is float rounding noise (:data:`Y_CONSTANT_TOL` of its mean's magnitude): a
        target far from zero, such as ``1e12 + 50 * signal``, is not constant, while ``[0.1] * n``
        (whose computed std is about 1e-17) is. Statistics that overflow float64 are refused."""
        with np.errstate(over="ignore", invalid="ignore"):
            x_mean, x_scale = standardisation(X, getattr(self, "constant_tol", 1e-9))
        bad = np.flatnonzero(~(np.isfinite(x_mean) & np.isfinite(x_scale)))
        if bad.size:
            raise ValueError(f"X column(s) {bad[:5].tolist()} are too large to standardise (their mean or std "
                             "overflows float64); rescale them")
        self.x_mean_, self.x_scale_ = x_mean, x_scale
        self._set_target_scaling(y)

    def _set_target_scaling(self, y) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _standardise(self, X, y=None):
        with np.errstate(over="ignore", invalid="ignore"):
            Xs = (X - self.x_mean_) / self.x_scale_
        rows = np.flatnonzero(~np.all(np.abs(Xs) <= MAX_STANDARDISED, axis=1))
        if rows.size:
            raise ValueError(f"X row(s) {rows[:5].tolist()} are too far from the training data to represent "
                             f"(standardised values beyond {MAX_STANDARDISED:g}); check their units")
        if y is None:
            return Xs
        return Xs, self._standardise_target(y)

    def _standardise_target(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    # ------------------------------------------------------------------ training

    def _begin(self, X, y, search: bool = True):
        """Standardisation, spec, hyperparameter searches and the initial state, from (X, y)."""
        import jax

        params = self._validated_params()
        if isinstance(self, StreamLearning):
            self._forgetting()  # an invalid forgetting or replay is refused before any work
            self._replay()
            self.__dict__.pop("drift_", None)  # a new posterior starts its forgetting afresh
            self.__dict__.pop("replay_window_", None)  # and its replay window empty
        self._set_scaling(X, y)
        Xs, ys = self._standardise(X, y)
        spec = self._make_spec(X.shape[1], params)
        check_memory(spec)  # before anything is built
        spec, key = self._configure(Xs, ys, _threefry.key(self._seed()), spec, search)
        self.spec_ = spec
        self.state_ = jax.device_get(self._initial_state(key, spec))
        if hasattr(self.state_, "rejections"):  # the ADF learners count refused updates
            self.n_rejected_ = 0
            self.rejected_per_epoch_ = []
        return Xs, ys

    def _run_epochs(self, Xs, ys, epochs: int, mask=None) -> None:
        import jax

        learner = self._learner()
        state = self.state_
        counts = hasattr(state, "rejections")
        before = int(np.sum(count_rejections(state))) if counts else 0
        with progress(range(epochs), verbose=self.verbose, desc=self._progress_label, unit="epoch") as bar:
            for _ in bar:
                state = learner.update(state, Xs, ys, mask)
                if counts:
                    now = int(np.sum(count_rejections(state)))
                    self.rejected_per_epoch_.append(now - before)
                    before = now
        self.state_ = jax.device_get(state)
        if counts:
            self.n_rejected_ = int(np.sum(count_rejections(self.state_)))
            if self.verbose:
                name = self._progress_label.rsplit(" ", 1)[0]  # "PBP epochs" -> "PBP"
                print(f"{name}: {len(self.rejected_per_epoch_)} epochs, {self.n_rejected_} rejected updates")

    @float64
    def fit(self, X, y):
        """Fit from scratch: standardise with (X, y)'s statistics, search hyperparameters where
        asked (on a validation part of (X, y) only), then ``epochs`` epochs of the learner."""
        self._validated_params()
        X, y = self._validate_X_y(X, y, reset=True, min_samples=2)
        Xs, ys = self._begin(X, y)
        if self._learner().online:
            # the ADF learners take padded rows exactly (masked rows are no-ops, the real rows
            # are shuffled as unpadded ones): one compiled epoch serves many row counts
            Xp, yp, mask = padded(Xs, ys, fit_rows(len(Xs)))
            self._run_epochs(Xp, yp, self.epochs, mask)
        else:
            self._run_epochs(Xs, ys, self.epochs)
        self._finish(Xs, ys)
        return self

    def _finish(self, Xs, ys) -> None:
        """The learner's ``finish`` (a posterior fitted once after the last epoch of a fit, on the
        standardised training rows), where it has one."""
        import jax

        finish = self._learner().finish
        if finish is not None:
            self.state_ = jax.device_get(finish(self.state_, Xs, ys, None))

    # ------------------------------------------------------------------ prediction

    #: How the learner may propagate uncertain inputs through the activations (``propagation`` of
    #: :meth:`predict_dist`); the sampling learners draw inputs instead and take only the default.
    _propagations: tuple[str, ...] = ("moments",)

    def _input_variance(self, X_var, shape) -> np.ndarray | None:
        """``X_var`` (user's units) checked, broadcast to ``shape`` and standardised (divided by
        ``x_scale_**2``, as the inputs are scaled); None when there is no input noise at all."""
        if X_var is None:
            return None
        n_rows, n_features = shape
        accepted = (f"a scalar, a per-feature vector of shape ({n_features},) or an array of shape "
                    f"({n_rows}, {n_features}) (n_rows, n_features)")
        values = np.asarray(X_var)
        if values.dtype == object:  # lists of numbers mixed with other things, pandas object columns
            if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                       for v in values.flat):
                raise ValueError("X_var must hold numbers (input variances); it holds non-numeric values")
            try:
                values = values.astype(np.float64)
            except OverflowError:  # a Python int beyond float64
                raise ValueError("X_var contains a number too large for float64; input variances must be finite") from None
        if values.dtype.kind not in "iuf":
            raise ValueError(f"X_var must hold real numbers (input variances), got dtype {values.dtype}")
        values = values.astype(np.float64)
        if values.shape not in ((), (n_features,), (n_rows, n_features)):
            raise ValueError(f"X_var has shape {values.shape}; it must be {accepted}")
        if np.any(np.isnan(values)):
            raise ValueError("X_var contains NaN; input variances must be finite and >= 0")
        if np.any(np.isinf(values)):
            raise ValueError("X_var contains infinity; input variances must be finite and >= 0")
        if np.any(values < 0):
            raise ValueError(f"X_var contains negative values (smallest {values.min():g}); input variances must be >= 0")
        if not np.any(values > 0):
            return None
        with np.errstate(over="ignore"):
            scaled = np.broadcast_to(values / self.x_scale_**2, shape)
        if not np.all(scaled <= MAX_STANDARDISED):
            raise ValueError(f"X_var is too large to represent (standardised beyond {MAX_STANDARDISED:g}); check its "
                             "units (variances, in the units of X squared)")
        return scaled

    def _plain_block(self, n_features: int) -> int:
        """Rows per block of a plain prediction: about :data:`PREDICT_BLOCK_NUMBERS` numbers per
        layer of the widest layer (inputs, hidden units, convolution maps; times the members of an
        ensemble), at least the last-layer posterior's D parameters where there is one (a power of
        two, at least 8, at most :data:`PREDICT_BLOCK`)."""
        spec = getattr(self.spec_, "member", self.spec_)
        widths = [n_features, *getattr(spec, "hidden", ())]
        for piece in (*(getattr(spec, "conv", None) or ()), *(getattr(spec, "layers", None) or ())):
            widths += [int(getattr(piece, "n_in", 0)), int(getattr(piece, "n_out", 0))]
        members = int(getattr(self.spec_, "n_members", 1) or 1)  # ensembles run their members side by side
        rows = PREDICT_BLOCK_NUMBERS // (max(1, *widths) * members)
        rows = 1 << max(0, rows.bit_length() - 1)
        # a last-layer posterior (Laplace) sets up about D^3 work per call for D^2 per row: blocks of
        # at least D rows keep the set-up below the rows' own work
        posterior = int(getattr(spec, "n_parameters", 0) or 0)
        if posterior > 1:
            rows = max(rows, 1 << (posterior - 1).bit_length())
        return int(min(PREDICT_BLOCK, max(8, rows)))

    def _noisy_block(self, n_features: int) -> int:
        """Rows per block for uncertain inputs: every unit then carries an n_features-vector
        (:mod:`probprop.moments.input_noise`), so blocks hold at most about 2^23 such numbers per
        layer (a power of two, at least 8, at most :data:`PREDICT_BLOCK`)."""
        spec = getattr(self.spec_, "member", self.spec_)
        width = max([n_features, *getattr(spec, "hidden", ())])
        rows = (1 << 23) // max(1, n_features * width)
        return int(min(PREDICT_BLOCK, max(8, 1 << max(0, rows.bit_length() - 1))))

    @float64
    def _learner_moments(self, X, X_var=None, propagation: str = "moments"):
        """The learner's (mean, epistemic_var, noise_var) per row of X, in standardised units, in
        padded blocks; ``X_var`` and ``propagation`` as in :meth:`predict_dist`."""
        if propagation not in self._propagations:
            raise ValueError(f"propagation must be one of {list(self._propagations)} for {type(self).__name__}, "
                             f"got {propagation!r}")
        Xs = self._standardise(self._validate_X(X))
        Vs = self._input_variance(X_var, Xs.shape)
        learner = self._learner()
        plain = Vs is None and propagation == "moments"  # the plain compiled pass, unchanged
        options = {} if propagation == "moments" else {"propagation": propagation}
        # the sampling learners' passes cost what plain ones do; the moment learners' grow with X's width
        rows = self._plain_block(Xs.shape[1]) if plain or len(self._propagations) == 1 else self._noisy_block(
            Xs.shape[1])
        parts = []
        for start in range(0, len(Xs), rows):
            block = Xs[start : start + rows]
            Xp, _ = padded(block)
            if plain:
                moments = learner.predict(self.state_, Xp)
            else:
                Vp = np.zeros_like(Xp)
                if Vs is not None:
                    Vp[: len(block)] = Vs[start : start + rows]
                moments = learner.predict(self.state_, Xp, Vp, **options)
            parts.append([np.asarray(a, np.float64)[: len(block)] for a in moments])
        return tuple(np.concatenate(column) for column in zip(*parts))

    # ------------------------------------------------------------------ files

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (arrays + JSON metadata, no pickle)."""
        from probprop.io import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` of this class; never executes code from the file."""
        from probprop.io import load_model

        return load_model(path, cls)

    @classmethod
    def _restore(cls, params: dict, spec, state, scaling, feature_names, fitted: dict):
        """A fitted estimator from what a model file holds (the one hook :mod:`probprop.io`
        calls, after it has checked the state against ``spec``): constructor ``params``, the
        learner ``spec`` and ``state``, ``scaling = (x_mean, x_scale, y_mean, y_scale)``, the
        feature names (or None) and the ``fitted`` values of ``_saved``. Raises ValueError
        naming whatever is inconsistent."""
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise ValueError(f"{cls.__name__} has no parameter(s) {', '.join(map(str, unknown))}")
        estimator = cls(**params)
        try:
            checked = estimator._validated_params()
        except ValueError as err:
            raise ValueError(f"invalid estimator parameters ({err})") from err
        disagree = estimator._spec_disagreements(spec, checked)
        if disagree:
            raise ValueError(f"the estimator parameters and the network spec disagree ({', '.join(disagree)})")
        x_mean, x_scale, y_mean, y_scale = scaling
        if not (np.all(np.isfinite(x_mean)) and np.all(np.isfinite(x_scale)) and np.all(x_scale > 0)):
            raise ValueError("the input standardisation holds non-finite or non-positive values")
        if not (np.isfinite(y_mean) and np.isfinite(y_scale) and y_scale > 0):
            raise ValueError("the target standardisation must be finite with a positive scale")
        n_in = int(spec.n_in)
        if feature_names and len(feature_names) != n_in:
            raise ValueError(f"{len(feature_names)} feature names for {n_in} features")
        for attr in fitted:
            if attr not in cls._saved:
                raise ValueError(f"{cls.__name__} has no saved attribute {attr!r}")
        fitted = {attr: _fitted_value(attr, value) for attr, value in fitted.items()}
        disagree = _chosen_disagreements(spec, fitted)
        if disagree:
            raise ValueError(f"the fitted values and the network spec disagree ({', '.join(disagree)})")
        if "n_rejected_" in fitted and hasattr(state, "rejections"):  # the total of the state's own counters
            counted = int(np.sum(count_rejections(state)))
            if fitted["n_rejected_"] != counted:
                raise ValueError(f"n_rejected_ {fitted['n_rejected_']} against the {counted} rejected updates the "
                                 "network's counters hold")
        estimator.x_mean_, estimator.x_scale_, estimator.y_mean_, estimator.y_scale_ = scaling
        estimator.n_features_in_ = n_in
        if feature_names:
            estimator.feature_names_in_ = np.asarray(feature_names, dtype=object)
        for attr, value in fitted.items():
            setattr(estimator, attr, value)
        if isinstance(estimator, StreamLearning):
            estimator._check_drift_state()
        estimator.spec_, estimator.state_ = spec, state
        return estimator

    #: Hyperparameters that reach the learner's spec unchanged under the same name.
    _SPEC_PARAMS = ("hidden", "activation", "dtype", "n_members", "batch_size", "heteroscedastic", "n_samples",
                    "variance_update", "prior_precision", "hessian_structure")

    def _spec_disagreements(self, spec, checked: dict) -> list[str]:
        """The hyperparameters that a spec contradicts (a model file's parameters are checked
        against its spec this way): ``hidden`` as validated, the others as given."""
        fields = _spec_fields(spec)
        params = self.get_params()
        out = []
        classes = getattr(getattr(spec, "output_likelihood", None), "n_classes", 0)
        if bool(classes) != isinstance(self, ClassifierMixin):
            out.append(f"a {'classifier' if classes else 'regression'} network in a "
                       f"{'classifier' if isinstance(self, ClassifierMixin) else 'regressor'}'s file")
        if fields.get("conv") and "conv" not in params:
            out.append(f"convolutions in the file's network, which a {type(self).__name__} does not build")
        for name in self._SPEC_PARAMS:
            if name in fields and name in params:
                mine = tuple(checked["hidden"]) if name == "hidden" else params[name]
                if mine != fields[name]:
                    out.append(f"{name} {mine!r} against {fields[name]!r}")
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.non_deterministic = getattr(self, "random_state", None) is None
        return tags


def _spec_fields(spec) -> dict:
    """A learner spec's fields by name, an ensemble's member spec's included (the outer spec wins)."""
    fields = {}
    for part in (getattr(spec, "member", None), spec):
        if dataclasses.is_dataclass(part):
            fields.update({f.name: getattr(part, f.name) for f in dataclasses.fields(part)})
    return fields


#: The chosen scalars an estimator keeps beside its spec, each the spec field it is a copy of.
#: (``tau_`` is not one: it is the spec's tau in y's units, and older files kept it otherwise.)
_CHOSEN = {"sigma_v_": "sigma_v", "learning_rate_": "learning_rate", "dropout_": "dropout"}


def _chosen_disagreements(spec, fitted: dict) -> list[str]:
    """The chosen scalars among ``fitted`` that their spec field contradicts (a model file could
    claim a value its network was not fitted with)."""
    fields = _spec_fields(spec)
    out = []
    for attr, name in _CHOSEN.items():
        if attr not in fitted:
            continue
        value = _checks.finite_number(fields.get(name))
        if value is None:
            out.append(f"{attr} {fitted[attr]!r} for a network without a {name}")
        elif not np.isclose(fitted[attr], value, rtol=1e-12, atol=0.0):
            out.append(f"{attr} {fitted[attr]!r} against the spec's {name} {value!r}")
    return out


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def _fitted_value(attr: str, value):
    """A model file's fitted value in the form the estimator keeps (the counters as ints, the
    chosen scalars as floats), or a ValueError naming it; the others pass unchanged (``classes_``
    and ``drift_`` are checked by their owners; ``validation_scores_`` and
    ``sigma_v_validation_`` are informational)."""
    if attr == "n_rejected_":
        if not _is_count(value):
            raise ValueError(f"n_rejected_ must be a non-negative integer, got {value!r}")
        return int(value)
    if attr == "rejected_per_epoch_":
        if not (isinstance(value, (list, tuple)) and all(_is_count(v) for v in value)):
            raise ValueError("rejected_per_epoch_ must be a list of non-negative integers")
        return [int(v) for v in value]
    if attr in ("sigma_v_", "learning_rate_", "tau_", "dropout_"):
        x = _checks.finite_number(value)
        # tau_ is the spec's tau / y_scale**2 (informational), which an extreme target scale can
        # take to 0 or inf in an honest file
        if x is None:
            x = np.inf if attr == "tau_" and isinstance(value, (float, np.floating)) and value == np.inf else np.nan
        ok, allowed = {"dropout_": (0.0 <= x < 1.0, "[0, 1)"), "tau_": (x >= 0.0, "[0, inf]")}.get(
            attr, (0.0 < x < np.inf, "(0, inf)"))
        if not ok:
            raise ValueError(f"{attr} must be a number in {allowed}, got {repr(value)[:40]}")
        return x
    return value


class MomentRegressor(RegressorMixin, MomentEstimator):
    """Base of the probprop regressors: targets standardised with their training mean and std,
    predictions returned in the units of y (see the module docstring)."""

    def _validate_X_y(self, X, y, *, reset: bool, min_samples: int):
        try:
            X, y = validate_data(self, X, y, reset=reset, y_numeric=True, multi_output=True,
                                 ensure_min_samples=min_samples)
        except ValueError as err:
            raise _checks.clearer(err) from err
        if y.ndim == 2 and y.shape[1] != 1:
            raise ValueError(f"y must be 1-D or a single column, got shape {y.shape}")
        try:  # y_numeric converts only object arrays; a string array would fail here
            y = (y if y.ndim == 1 else _column_or_1d(y, warn=True)).astype(np.float64)
        except ValueError as err:
            raise _checks.clearer(err) from err
        if not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        return np.asarray(X, np.float64), y

    def _set_target_scaling(self, y) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            y_mean, y_scale = standardisation(y[:, None], constant_tol=Y_CONSTANT_TOL)
        if not (np.isfinite(y_mean[0]) and np.isfinite(y_scale[0])):
            raise ValueError("y is too large to standardise (its mean or std overflows float64); rescale it")
        self.y_mean_, self.y_scale_ = float(y_mean[0]), float(y_scale[0])

    def _standardise_target(self, y):
        with np.errstate(over="ignore", invalid="ignore"):
            ys = (y - self.y_mean_) / self.y_scale_
        rows = np.flatnonzero(~(np.abs(ys) <= MAX_STANDARDISED))
        if rows.size:
            raise ValueError(f"y value(s) at row(s) {rows[:5].tolist()} are too far from the training targets to "
                             f"represent (standardised beyond {MAX_STANDARDISED:g}); check their units")
        return ys

    def _moments(self, X, X_var=None, propagation: str = "moments"):
        """(mean, epistemic_var, noise_var) in the user's units; ``X_var`` and ``propagation`` as
        in :meth:`predict_dist`."""
        return self._user_moments(*self._learner_moments(X, X_var, propagation))

    def _user_moments(self, mean, epistemic, noise):
        """The learner's (standardised) moments per row in the user's units, refused (naming the
        rows) where they are not finite."""
        scale2 = self.y_scale_**2
        with np.errstate(over="ignore", invalid="ignore"):
            out = mean * self.y_scale_ + self.y_mean_, epistemic * scale2, noise * scale2
        rows = np.flatnonzero(~np.all(np.isfinite(np.stack(out)), axis=0))
        if rows.size:
            raise ValueError(f"the predictions for X row(s) {rows[:5].tolist()} overflow float64 (inputs too far "
                             "from the training data, or a diverged model); check their units")
        return out

    def predict(self, X, return_std: bool = False, X_var=None, propagation: str = "moments"):
        """Predictive mean; with ``return_std=True`` also the predictive std (epistemic + noise).
        ``X_var`` and ``propagation``: uncertain inputs, as in :meth:`predict_dist`."""
        mean, epistemic, noise = self._moments(X, X_var, propagation)
        if return_std:
            return mean, np.sqrt(epistemic + noise)
        return mean

    def predict_dist(self, X, X_var=None, propagation: str = "moments") -> GaussianPrediction:
        """Per-point Gaussian predictive distributions (``.mean .std .epistemic_var .noise_var``,
        ``.logpdf .cdf .ppf .interval .sample``), in the units of ``y``.

        ``X_var``: the inputs are uncertain, x ~ N(X, X_var), independent per entry (sensor noise,
        imputed values); the variances in the units of X squared, as a scalar (every entry), a
        per-feature vector of shape (n_features,) or an array of X's shape. None or all zeros:
        deterministic inputs (exactly the plain prediction). The input noise's share of the
        predictive variance is part of ``epistemic_var`` (the variance of the network output).
        The moment learners propagate it in closed form, with the covariances it induces between
        hidden units (:mod:`probprop.moments.input_noise`); MAP and deep ensembles average 64 input
        draws, MC dropout gives each of its passes its own input draw (keys derived from the
        model, so predictions are repeatable).

        ``propagation`` (moment learners): ``"moments"`` (default) matches the moments of every
        activation for Gaussian pre-activations, and agrees with Monte Carlo over the inputs and
        the weights (on small test networks the variance within 10 % up to an input sd of 0.3
        training std and 20 % up to 1; on trained UCI networks a median error of 0.4-10 % and a
        largest one up to 38 %, ``docs/benchmarks/noisy-inputs``);
        ``"linear"`` linearises each activation at its input mean (Petersen et al., ICLR 2024),
        for the whole pass, weight uncertainty included. Linearisation is the less faithful of
        the two to the model and no faster, but on noisy UCI test inputs it gave the higher
        test log-likelihood on energy (noise up to 0.5 std) and Boston (0.5-1 std), moment
        matching on concrete and kin8nm (``docs/benchmarks/noisy-inputs``).
        """
        return GaussianPrediction(*self._moments(X, X_var, propagation))

    def score(self, X, y, sample_weight=None):
        """Mean test log predictive density of y (higher is better), in the units of ``y``."""
        from sklearn.utils.validation import _check_sample_weight, check_array, check_consistent_length

        dist = self.predict_dist(X)
        try:
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        except ValueError as err:
            raise _checks.clearer(err) from err
        y = _column_or_1d(y, warn=False)
        check_consistent_length(dist.mean, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, dist.mean)
            if np.any(sample_weight < 0) or not np.all(np.isfinite(sample_weight)):
                raise ValueError("sample_weight must be finite and >= 0")
            if not np.sum(sample_weight) > 0:
                raise ValueError("sample_weight must not be all zero (the weighted mean is undefined)")
        return float(np.average(dist.logpdf(y), weights=sample_weight))



def _column_or_1d(y, warn: bool):
    from sklearn.utils.validation import column_or_1d

    return column_or_1d(y, warn=warn)


class StreamLearning:
    """What the online estimators share (mixed into :class:`OnlineRegressor` and the online
    classifier): the drift model of ``partial_fit`` (``forgetting``, :mod:`probprop.learners.drift`)
    and the ordered, recorded sweep that prequential evaluation runs (:mod:`probprop.prequential`).

    A concrete estimator has a ``forgetting`` parameter (the PBP ensembles have none: their
    learner has no online step yet); its learned state is ``drift_`` (saved with the model) and the
    current factor ``gamma_``. With a ``replay`` parameter, each step is followed by replayed
    steps on the recent rows (:class:`probprop.learners.drift.Replay`); the window of recent rows
    is ``replay_window_``, working memory that is not saved with the model (a loaded model starts
    with an empty window)."""

    def _adf_option(self, name: str, parse, why: str):
        """The stream parameter ``name`` parsed by ``parse`` (None when unset, or absent as on PBP
        ensembles); refused unless ``inference='adf'``, saying ``why``."""
        value = parse(getattr(self, name, None))
        if value is not None and getattr(self, "inference", "adf") != "adf":
            raise ValueError(f"{name} needs inference='adf' ({why})")
        return value

    def _forgetting(self):
        from probprop.learners import drift

        return self._adf_option("forgetting", drift.as_forgetting, "an SEP site belongs to a fixed data set")

    def _replay(self):
        from probprop.learners import drift

        return self._adf_option("replay", drift.as_replay, "it repeats ADF steps on recent rows")

    @property
    def gamma_(self) -> float:
        """The forgetting factor per row that the next ``partial_fit`` row starts from (1.0 without
        forgetting; the learned value with ``forgetting='learn'``)."""
        from probprop.learners import drift

        check_is_fitted(self, "state_")
        forgetting = self._forgetting()
        if forgetting is None:
            return 1.0
        if not forgetting.learn or not hasattr(self, "drift_"):
            return float(forgetting.gamma)
        return float(float64(drift.gamma)(drift.DriftState(*np.asarray(self.drift_, np.float64)), forgetting))

    def _stream(self, Xs, ys, mask, record: bool = False):
        """Learn standardised rows in order, each step after the drift transition (none without
        forgetting), through the learner's ``step``; returns the recorded predictions (see
        :func:`probprop.learners.drift.sweep`) when ``record``."""
        import jax

        from probprop.learners import drift

        forgetting = self._forgetting()
        replay = self._replay()
        learner = self._learner()
        state = drift.init(forgetting) if forgetting is not None else None
        if forgetting is not None and hasattr(self, "drift_"):
            state = drift.DriftState(*(np.float64(v) for v in self.drift_))
        prior = drift.prior(learner, self.spec_)
        if replay is None:
            self.__dict__.pop("replay_window_", None)  # rows learned without replay would be missing from it
            new, state, recorded = drift.sweep(learner, self.state_, state, prior, Xs, ys, mask, forgetting, record)
        else:
            window = getattr(self, "replay_window_", None)
            if window is None or window.X.shape != (replay.window, Xs.shape[1]):  # a new window size: start afresh
                window = drift.empty_window(replay, Xs.shape[1], Xs.dtype, np.asarray(ys).dtype, self._seed())
            new, state, recorded, window = drift.sweep(learner, self.state_, state, prior, Xs, ys, mask, forgetting,
                                                       record, replay, window)
            self.replay_window_ = jax.device_get(window)
        self.state_ = jax.device_get(new)
        if forgetting is not None:
            self.drift_ = np.asarray([float(v) for v in state], np.float64)
        if hasattr(self.state_, "rejections"):
            self.n_rejected_ = int(np.sum(count_rejections(self.state_)))
        return jax.device_get(recorded) if record else None

    def _learn_batch(self, Xs, ys, epochs: int) -> None:
        """``partial_fit``'s learning: today's shuffled epochs without forgetting or replay, the
        ordered drift sweep with either (one pass)."""
        Xp, yp, mask = padded(Xs, ys, batch_rows(len(Xs)))
        if self._forgetting() is None and self._replay() is None:
            self.__dict__.pop("replay_window_", None)  # rows learned without replay would be missing from it
            self._run_epochs(Xp, yp, epochs, mask)
            return
        if epochs != 1:
            raise ValueError(f"with forgetting or replay, partial_fit learns each row once in the order given (epochs=1), "
                             f"got epochs={epochs}")
        self._stream(Xp, yp, mask)

    def _check_drift_state(self) -> None:
        """A model file's ``forgetting`` must be valid and its ``drift_`` usable by the next step
        (:func:`probprop.learners.drift.check_state`)."""
        from probprop.learners import drift

        forgetting = self._forgetting()
        self._replay()  # an invalid replay is refused on load too
        if hasattr(self, "drift_"):
            if forgetting is None:
                raise ValueError("a drift state without forgetting")
            drift.check_state(self.drift_, forgetting)


class OnlineRegressor(StreamLearning, MomentRegressor):
    """A regressor whose learner continues from its posterior (ADF): ``partial_fit``."""

    @float64
    def partial_fit(self, X, y, epochs: int = 1):
        """Keep learning from (X, y), starting from the current posterior.

        The first call on an unfitted model sets the standardisation (needs 2+ rows) and starts
        from the prior, with no hyperparameter search (the defaults stand in for ``"select"``);
        later calls reuse both, accept any number of rows, and need the same features. Each of the
        ``epochs`` passes shuffles the batch and learns each row once. Batches are padded
        (:func:`batch_rows`: to a power of two below 8,192 rows, as ``fit`` pads from there), so a
        stream of ragged batches reuses compiled programs.

        With ``forgetting`` set (the drift model, :mod:`probprop.learners.drift`), the rows are a
        stream instead: learned once each (``epochs`` must be 1) in the order given, every step
        preceded by the transition that relaxes the posterior towards the prior by gamma (fixed, or
        learned online from the predictive log-likelihood: ``gamma_``), with no EP prior step;
        ``fit`` ignores it. With ``replay`` set (with or without ``forgetting``) likewise, each
        step followed by its replayed steps on recent rows (:class:`probprop.learners.drift.Replay`).

        Before learning a batch, a fitted model compares it with its own predictions: when the
        batch's mean ``|y - mean| / std`` (predictive mean and standard deviation) exceeds
        :data:`DRIFT_Z` (6), it warns with a :class:`DriftWarning` (the data drifted, or came in
        other units), then learns the batch as asked. Filter the warning to silence it, or turn it
        into an error (``warnings.simplefilter("error", probprop.DriftWarning)``) to stop such batches.
        """
        first = not hasattr(self, "state_")
        X, y = self._validate_X_y(X, y, reset=first, min_samples=2 if first else 1)
        epochs = _checks.positive_int("epochs", epochs)
        if first:
            self._validated_params()
            self._begin(X, y, search=False)
        Xs, ys = self._standardise(X, y)
        if not first:
            Xp, yp, mask = padded(Xs, ys)
            self._warn_drift(Xp, yp, mask)
        self._learn_batch(Xs, ys, epochs)
        return self

    def _warn_drift(self, Xp, yp, mask) -> None:
        moments = self._learner().predict(self.state_, Xp)
        mean, epistemic, noise = (np.asarray(a, np.float64)[mask] for a in moments)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = float(np.mean(np.abs(yp[mask] - mean) / np.sqrt(epistemic + noise)))
        if not z <= DRIFT_Z:
            warnings.warn(
                f"this batch of {int(mask.sum())} rows lies on average {z:.3g} predictive standard deviations "
                f"from the model's predictions (more than {DRIFT_Z:g}): the data may have drifted or be in other "
                "units; learning it anyway", DriftWarning, stacklevel=4)

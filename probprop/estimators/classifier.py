"""Classifiers: the scikit-learn classifier surface over the moment learners.

:class:`MomentClassifier` is what every probprop classifier shares (label encoding, the classifier
contract, class probabilities and uncertainty scores); :class:`PBPClassifier` is PBP with a probit
likelihood (binary) or the multinomial probit (K classes), :mod:`probprop.likelihoods.classification`;
:class:`MAPClassifier` the point-estimate softmax network (the baseline).

The learner sees the class index (0..K-1) as its target and returns the output moments per row,
shape (n,) for two classes and (n, K) for K; the likelihood turns them into probabilities.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from probprop.distributions import ClassPrediction, member_summaries, normalise_rows
from probprop.estimators import _checks
from probprop.estimators import tagi as tagi_estimator
from probprop.estimators._api import ClassifierMixin, check_is_fitted, validate_data
from probprop.estimators.base import MomentEstimator, StreamLearning
from probprop.estimators.gradient import EnsembleStepSize, LastLayerLaplace
from probprop.estimators.pbp import PBPMembers, _field_disagreements
from probprop.io import register_estimator
from probprop.layers import Dense
from probprop.layers.conv import POOLINGS, conv_stack
from probprop.learners import pbp, pbp_ensemble, tagi
from probprop.learners.base import float64
from probprop.likelihoods.classification import MultinomialProbit, Probit
from probprop.moments.mixture import class_mixture

#: How the inputs are scaled before the network sees them (``input_scaling``).
INPUT_SCALINGS = ("features", "global", "none")

#: The std of the initial weight means of PBPClassifier, in PBP's scaled parameterisation (PBP's
#: regression uses 1 / sqrt(fan_in + 1), which starts the hidden units nearly alike: after one pass
#: over 5,000 MNIST images a 784-100-100-10 network had 76 % test error with it, 14 % with 1).
INIT_MEAN_STD = 1.0

#: Rows per compiled block of the class probabilities and of the uncertainty scores (the
#: multinomial probit's quadrature holds rows x K x K x nodes numbers; the scores 2K times that).
PROBA_BLOCK = 512
SCORES_BLOCK = 32
#: At most this many probabilities (networks x rows x classes) per block of the averaging learners.
SAMPLES_BLOCK_NUMBERS = 4_000_000


def _blocked(fn, rows: int, *arrays):
    """``fn`` over ``arrays`` in padded blocks of ``rows`` (one compiled shape), concatenated."""
    n = len(arrays[0])
    outs = []
    for start in range(0, n, rows):
        parts = []
        for a in arrays:
            block = np.zeros((rows, *a.shape[1:]), np.float64)
            chunk = a[start : start + rows]
            block[: len(chunk)] = chunk
            parts.append(block)
        result = fn(*parts)
        outs.append([np.asarray(r, np.float64)[: min(rows, n - start)] for r in (result if isinstance(result, tuple) else (result,))])
    return tuple(np.concatenate(column) for column in zip(*outs))


def _refuse_non_finite_rows(*arrays) -> None:
    """A ValueError naming the rows (first axis) where any of ``arrays`` is not finite."""
    bad = np.zeros(len(arrays[0]), bool)
    for a in arrays:
        bad |= ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    rows = np.flatnonzero(bad)
    if rows.size:
        raise ValueError(f"the predictions for X row(s) {rows[:5].tolist()} overflow float64 (inputs too far "
                         "from the training data, or a diverged model); check their units")


def _plain_labels(y) -> bool:
    """Class labels that scikit-learn's ``check_classification_targets`` accepts without looking
    further: a 1-D array of bools, integers, strings, or finite floats that are whole numbers."""
    if y.ndim != 1 or y.dtype.kind not in "biuUf":
        return False
    # scikit-learn calls floats that are not whole numbers, or beyond int64, continuous
    return y.dtype.kind != "f" or bool(np.all((y == np.round(y)) & (y >= -(2.0**63)) & (y < 2.0**63)))


class MomentClassifier(ClassifierMixin, MomentEstimator):
    """Base of the probprop classifiers (see the module docstring). Subclasses give the learner
    (``_learner_name``), ``_validated_params`` and ``_make_spec(n_in, params)``, whose spec's
    ``output_likelihood`` turns output moments into class probabilities (``probabilities``,
    ``probability_moments``); ``classes_`` is set before ``_make_spec`` runs."""

    _saved: tuple[str, ...] = ("classes_",)
    _point_estimate = False  # True: one network without weight uncertainty (ClassPrediction.epistemic)

    def _spec_disagreements(self, spec, checked: dict) -> list[str]:
        """As for every estimator; where the spec lists its convolutions (a ``conv`` field: MAP,
        deep ensemble, TAGI), also the convolutions the estimator's parameters build, none
        included (PBP's convolutions are layer pieces, checked by :class:`PBPClassifier`)."""
        out = super()._spec_disagreements(spec, checked)
        if "conv" in checked and hasattr(spec, "conv"):
            out += _conv_disagreements(self, spec, checked)
        return out

    @property
    def n_classes_(self) -> int:
        check_is_fitted(self, "classes_")
        return len(self.classes_)

    # ------------------------------------------------------------------ labels

    def _validate_X_y(self, X, y, *, reset: bool, min_samples: int, classes=None):
        """Validated X and the labels encoded as class indices (floats), setting ``classes_`` on
        ``reset``. Raises a ValueError naming the problem: NaN labels, one class only, continuous
        targets, labels not among ``classes_``."""
        try:
            X, y = validate_data(self, X, y, reset=reset, multi_output=True, ensure_min_samples=min_samples)
        except ValueError as err:
            raise _checks.clearer(err) from err
        if y.ndim == 2 and y.shape[1] != 1:
            raise ValueError(f"y must be 1-D or a single column of labels, got shape {y.shape}")
        if y.ndim != 1:
            from sklearn.utils.validation import column_or_1d

            y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity; class labels must be given for every row")
        if y.dtype == object and any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y):
            raise ValueError("y contains missing labels (None or NaN); class labels must be given for every row")
        if not _plain_labels(y):  # scikit-learn's check names what else y is (continuous, multilabel, ...)
            from sklearn.utils.multiclass import check_classification_targets

            check_classification_targets(y)
        if reset:
            labels = np.unique(y) if classes is None else self._checked_classes(classes, y)
            if len(labels) < 2:
                raise ValueError(f"a classifier needs at least 2 classes; y has only one class, {labels[0]!r} "
                                 "(pass classes=... to partial_fit to name the others)")
            self.classes_ = labels
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unseen = self.classes_[index] != y
        if np.any(unseen):
            bad = np.unique(y[unseen])[:5].tolist()
            raise ValueError(f"y holds label(s) {bad} that are not among the classes {self.classes_.tolist()} this "
                             "model was fitted with; pass every class to the first partial_fit (classes=...) or refit")
        return np.asarray(X, np.float64), index.astype(np.float64)

    @staticmethod
    def _checked_classes(classes, y):
        labels = np.asarray(classes)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"classes must be a 1-D list of labels, got {classes!r}")
        unique = np.unique(labels)
        if len(unique) != len(labels):
            raise ValueError(f"classes holds repeated labels: {classes!r}")
        return unique

    # ------------------------------------------------------------------ scaling

    def _set_scaling(self, X, y) -> None:
        super()._set_scaling(X, y)
        scaling = self._input_scaling()
        if scaling == "global":
            with np.errstate(over="ignore", invalid="ignore"):
                mean, std = float(np.mean(X)), float(np.std(X))
            if not (np.isfinite(mean) and np.isfinite(std)):
                raise ValueError("X is too large to standardise (its mean or std overflows float64); rescale it")
            self.x_mean_ = np.full(X.shape[1], mean)
            self.x_scale_ = np.full(X.shape[1], std if std > 0 else 1.0)
        elif scaling == "none":
            self.x_mean_, self.x_scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])

    def _input_scaling(self) -> str:
        scaling = getattr(self, "input_scaling", "features")
        if scaling not in INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {list(INPUT_SCALINGS)}, got {scaling!r}")
        return scaling

    def _set_target_scaling(self, y) -> None:
        self.y_mean_, self.y_scale_ = 0.0, 1.0  # class indices are used as they are

    def _standardise_target(self, y):
        return np.asarray(y, np.float64)

    # ------------------------------------------------------------------ prediction

    def _output_moments(self, X):
        """The network outputs' mean and variance per row ((n,) or (n, K)), checked finite."""
        mean, var, _ = self._learner_moments(X)
        _refuse_non_finite_rows(mean, var)
        return mean, var

    def _networks(self) -> int:
        """How many networks a sampling learner averages: dropout samples, ensemble members, draws of
        a Laplace posterior's last layer, or members x draws for a Laplace ensemble."""
        spec = self.spec_
        return int(getattr(spec, "n_samples", None) or 1) * int(getattr(spec, "n_members", None) or 1)

    def _has_spread(self) -> bool:
        """Whether the sampling learner's scores hold an epistemic part (more than one network)."""
        return self._networks() > 1 and not self._point_estimate

    def _sample_summaries(self, X):
        """For learners that average networks (``Learner.class_samples``: ensembles, MC dropout):
        the S networks' mean class probabilities (n, K), their variance across networks (n, K)
        and the mean of their entropies (n,), computed block by block (blocks small enough that
        S x rows x K numbers stay below :data:`SAMPLES_BLOCK_NUMBERS`), so memory stays
        O(n K) whatever S is; None for the other learners."""
        sample = self._learner().class_samples
        if sample is None:
            return None

        def summaries(Xp):
            probs = sample(self.state_, Xp)  # (S, rows, K)
            with np.errstate(invalid="ignore"):  # a non-finite network output stays NaN here, refused below
                return member_summaries(probs)

        return self._summaries_in_blocks(summaries, lambda: self._networks() * len(self.classes_), X)

    def _summaries_in_blocks(self, summaries, numbers_per_row, X):
        """``summaries`` (standardised rows -> arrays per row) over X's rows in blocks of at most
        :data:`SAMPLES_BLOCK_NUMBERS` // ``numbers_per_row()`` rows (called once X is validated,
        so an unfitted model fails there), or over all rows at once where ``numbers_per_row`` is
        None (``summaries`` blocks them itself); non-finite rows refused."""
        Xs = self._standardise(self._validate_X(X))
        if numbers_per_row is None:
            out = tuple(np.asarray(part, np.float64) for part in summaries(Xs))
        else:
            rows = int(max(1, min(PROBA_BLOCK, SAMPLES_BLOCK_NUMBERS // numbers_per_row())))
            out = _blocked(summaries, rows, Xs)
        _refuse_non_finite_rows(*out)
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, K), columns in the order of ``classes_``; rows sum to 1."""
        summaries = self._sample_summaries(X)
        if summaries is not None:
            return normalise_rows(summaries[0])
        return self._probabilities(*self._output_moments(X))

    def _probabilities(self, mean, var) -> np.ndarray:
        """Class probabilities (rows summing to 1) from the output moments of a moment learner."""
        likelihood = self.spec_.output_likelihood
        (probs,) = _blocked(partial(_compiled_probabilities, likelihood), PROBA_BLOCK, mean, var)
        return normalise_rows(probs)

    def predict_log_proba(self, X) -> np.ndarray:
        """Natural log of :meth:`predict_proba` (probabilities below 1e-300 give about -690)."""
        return log_probability(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row (labels of ``classes_``)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def decision_function(self, X) -> np.ndarray:
        """Two classes: the log-odds log P(classes_[1]) - log P(classes_[0]), shape (n,), positive
        for ``classes_[1]``. More classes: the log probabilities, shape (n, K)."""
        log_p = self.predict_log_proba(X)
        return log_p[:, 1] - log_p[:, 0] if len(self.classes_) == 2 else log_p

    def predict_dist(self, X) -> ClassPrediction:
        """Class probabilities with the uncertainty scores that flag unusual inputs (a
        :class:`probprop.distributions.ClassPrediction`: ``.probabilities``, ``.variance`` of each
        class probability under the weight posterior, ``.max_probability``, ``.entropy``,
        ``.mutual_information``, ``.epistemic_variance``), in one deterministic pass (no sampling;
        see :mod:`probprop.likelihoods.classification` for how each is computed). For learners that
        average networks (ensembles) the probabilities are the networks' average and the scores
        their spread (variance across networks, mutual information = entropy of the average
        minus the average entropy)."""
        summaries = self._sample_summaries(X)
        if summaries is not None:
            probs, variance, expected = summaries
            epistemic = self._has_spread()
            return ClassPrediction(normalise_rows(probs), variance, expected, self.classes_, epistemic=epistemic)
        mean, var = self._output_moments(X)
        likelihood = self.spec_.output_likelihood
        probs, variance, expected = _blocked(partial(_compiled_probability_moments, likelihood), SCORES_BLOCK, mean, var)
        return ClassPrediction(normalise_rows(probs), variance, expected, self.classes_,
                               epistemic=not self._point_estimate)

    # ------------------------------------------------------------------ files

    @classmethod
    def _restore(cls, params, spec, state, scaling, feature_names, fitted):
        fitted = dict(fitted)
        labels = _checks.class_labels(fitted.get("classes_"))
        likelihood = getattr(spec, "output_likelihood", None)
        k = getattr(likelihood, "n_classes", None)
        if k != len(labels):
            raise ValueError(f"{len(labels)} class labels for a network with {k} classes")
        fitted["classes_"] = np.sort(labels)
        return super()._restore(params, spec, state, scaling, feature_names, fitted)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.target_tags.single_output = True
        return tags


class OnlineClassifier(StreamLearning, MomentClassifier):
    """A classifier whose learner continues from its posterior (ADF): ``partial_fit``."""

    @float64
    def partial_fit(self, X, y, classes=None, epochs: int = 1):
        """Keep learning from (X, y), starting from the current posterior.

        The first call fixes the classes: ``classes`` (every label the stream will hold), or the
        labels of this first batch when ``classes`` is None (it must then hold at least two).
        Later calls accept labels among ``classes_`` only, any number of rows, the same features;
        ``classes``, if given again, must equal ``classes_``. The first call also sets the input
        scaling (needs 2+ rows). Each of the ``epochs`` passes shuffles the batch and learns each
        row once; batches are padded (:func:`probprop.estimators.base.batch_rows`: to a power of
        two below 8,192 rows, as ``fit`` pads from there) so that compiled programs are reused.

        With ``forgetting`` set (the drift model, :mod:`probprop.learners.drift`), the rows are a
        stream instead: learned once each (``epochs`` must be 1) in the order given, every step
        preceded by the transition that relaxes the posterior towards the prior by gamma (fixed, or
        learned online from the predictive log-likelihood: ``gamma_``); ``fit`` ignores it. With
        ``replay`` set (with or without ``forgetting``) likewise, each step followed by its
        replayed steps on recent rows (:class:`probprop.learners.drift.Replay`)."""
        first = not hasattr(self, "state_")
        if not first and classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes {list(classes)!r} differ from the classes {self.classes_.tolist()} of the "
                             "first partial_fit call")
        if first:
            self._validated_params()
        X, y = self._validate_X_y(X, y, reset=first, min_samples=2 if first else 1, classes=classes)
        epochs = _checks.positive_int("epochs", epochs)
        if first:
            self._begin(X, y, search=False)
        Xs, ys = self._standardise(X, y)
        self._learn_batch(Xs, ys, epochs)
        return self


#: The floor of the probabilities whose log is taken (:meth:`MomentClassifier.predict_log_proba`).
PROBABILITY_FLOOR = 1e-300


def log_probability(p):
    """log p with p floored at :data:`PROBABILITY_FLOOR` (about -690 at most)."""
    return np.log(np.maximum(p, PROBABILITY_FLOOR))


def _compiled(fn_name):
    import jax

    @partial(jax.jit, static_argnums=0)
    def run(likelihood, mean, var):
        return getattr(likelihood, fn_name)(mean, var)

    def call(likelihood, mean, var):
        return float64(run)(likelihood, mean, var)

    return call


_compiled_probabilities = _compiled("probabilities")
_compiled_probability_moments = _compiled("probability_moments")


@register_estimator
class PBPClassifier(OnlineClassifier):
    """Bayesian neural network classification by probabilistic backpropagation.

    PBP (Hernández-Lobato & Adams 2015: Gaussian weights, one assumed-density-filtering update per
    data point) with a classification likelihood: the probit for two
    classes (log Z exact) and the multinomial probit for more (log Z by a 1-D quadrature exact to
    about 1e-10); see :mod:`probprop.likelihoods.classification` for the choice and its checks.

    Parameters
    ----------
    hidden : tuple of int, default=(50,)
        Units per hidden (dense) layer; ``()`` gives a Bayesian linear (probit) model.
    epochs : int, default=40
        Passes over the data in :meth:`fit` (each: a new random order, one ADF update per point,
        then the EP step of the prior). One pass is often enough on large data sets.
    conv : sequence of (channels, kernel, pool), default=()
        Convolution layers before the dense ones, for rows that are images (flattened
        channel-major): ``((16, 5, 2), (32, 5, 2))`` is two 5x5 convolutions with 16 and 32 maps,
        each followed by 2x2 pooling (``pool`` 1: none). Every weight is Gaussian and learned by
        the same per-point ADF (:class:`probprop.layers.Conv2D`).
    image_shape : (channels, height, width) or (height, width), default=None
        The images' shape when ``conv`` is given; None: one square channel.
    pooling : {"avg", "max"}, default="avg"
        The convolutions' pooling: average (exact moments) or max (Clark's moment matching).
    activation : str, default="relu"
    dtype : {"float64", "float32"}, default="float64"
    input_scaling : {"features", "global", "none"}, default="features"
        ``"features"``: each input column standardised with its training mean and std (constant
        columns left unscaled); ``"global"``: one mean and std over all inputs (images: every
        pixel on the same scale, so rare pixels are not blown up); ``"none"``: inputs as given.
    constant_tol : float, default=1e-9
        Columns whose std is at most this fraction of their mean's magnitude count as constant.
    inference : {"adf", "sep"}, default="adf"
        As in :class:`probprop.PBPRegressor`.
    learn_prior : bool, default=False
        False: the weights keep the fixed Gaussian prior they start from (variance 1.2 in PBP's
        scaled parameterisation). True: PBP's EP refinement of a Gamma prior on the weight
        precision after every pass, as the regressor does; on Fashion-MNIST (784-100-100-10, three
        passes) it left the prior Gamma improper and then broad, and one seed in three ended at
        43 % test error (12.8 % with the fixed prior, which matched it on the other seeds).
    forgetting : None, "learn", float in (0, 1] or probprop.learners.drift.Forgetting, default=None
        The drift model of ``partial_fit`` for a stream whose relationship changes: before each
        row each weight's variance relaxes towards its prior variance, gamma^2 v + (1 - gamma^2)
        v0, its mean kept (the drift model of Titsias et al., ICLR 2024, with the mean kept:
        ``Forgetting(shrink_mean=True)`` shrinks it by gamma too). A number fixes gamma; ``"learn"`` learns it online
        from each new row's predictive log-likelihood (``gamma_``). None: ``partial_fit`` as without
        a drift model (shuffled epochs). ``fit`` ignores it.
    replay : int or (int, int), default=0
        As in :class:`probprop.PBPRegressor`: replayed steps on recent rows after each step of the
        ordered stream sweep (``partial_fit``, prequential evaluation); 0: none.
    random_state : int, RandomState or None, default=None
    verbose : bool, default=False

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (sorted), in the order of the probability columns.
    state_ : probprop.learners.pbp.PBPState
    n_rejected_, rejected_per_epoch_ : as in :class:`probprop.PBPRegressor`.
    """

    _learner_name = "pbp"
    _progress_label = "PBP epochs"
    _saved = ("classes_", "n_rejected_", "rejected_per_epoch_", "drift_")

    def __init__(self, hidden=(50,), epochs=40, conv=(), image_shape=None, pooling="avg", activation="relu",
                 dtype="float64", input_scaling="features", constant_tol=1e-9, inference="adf", learn_prior=False,
                 forgetting=None, replay=0, random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.conv = conv
        self.image_shape = image_shape
        self.pooling = pooling
        self.activation = activation
        self.dtype = dtype
        self.input_scaling = input_scaling
        self.constant_tol = constant_tol
        self.inference = inference
        self.learn_prior = learn_prior
        self.forgetting = forgetting
        self.replay = replay
        self.random_state = random_state
        self.verbose = verbose

    def _validated_params(self) -> dict:
        hidden = _checks.hidden_sizes(self.hidden)
        _checks.positive_int("epochs", self.epochs)
        _checks.boolean("learn_prior", self.learn_prior)
        _checks.activation_and_dtype(self.activation, self.dtype)
        _checks.constant_tol(self.constant_tol)
        self._input_scaling()
        return {"hidden": hidden, "inference": _checks.inference(self.inference), "conv": _conv_params(self)}

    def _likelihood(self):
        """Probit for two classes, the multinomial probit for more."""
        k = len(self.classes_)
        return Probit() if k == 2 else MultinomialProbit(k)

    def _architecture(self, n_in, params):
        """The spec's ``(hidden, layers)``: the convolutions' output sizes before the dense hidden
        sizes, and the layer pieces (None: all dense)."""
        if not params["conv"]:
            return params["hidden"], None
        convs = _conv_pieces(self, n_in, params["conv"])
        return tuple(piece.n_out for piece in convs) + params["hidden"], convs + (Dense(),) * (len(params["hidden"]) + 1)

    def _spec_disagreements(self, spec, checked: dict) -> list[str]:
        """As for every estimator, with the network's shape checked as a whole (convolutions,
        then the dense layers), and every other field of the spec against the one these
        parameters make for its number of classes (the likelihood, the inference, the prior)."""
        if not isinstance(spec, pbp.PBPSpec):
            return [f"a network of type {type(spec).__name__}, not a PBP network"]
        out = [d for d in super()._spec_disagreements(spec, checked) if not d.startswith("hidden ")]
        try:
            hidden, layers = self._architecture(int(spec.n_in), checked)
        except ValueError as err:
            return [*out, f"conv {checked['conv']!r} does not fit the inputs ({err})"]
        if (tuple(hidden), layers) != (tuple(spec.hidden), spec.layers):
            out.append(f"layers {hidden!r} {layers!r} against {tuple(spec.hidden)!r} {spec.layers!r}")
        k = getattr(spec.output_likelihood, "n_classes", None)
        if k is None:  # a regression likelihood: the base check names it
            return out
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            return [*out, f"likelihood {spec.output_likelihood!r} against a probit over 2 or more classes"]
        probe = type(self)(**self.get_params())
        probe.classes_ = np.arange(k)
        return out + _field_disagreements(spec, probe._make_spec(int(spec.n_in), checked), out)

    def _make_spec(self, n_in, params):
        hidden, layers = self._architecture(n_in, params)
        return pbp.PBPSpec(n_in=n_in, hidden=hidden, activation=self.activation, dtype=self.dtype,
                           likelihood=self._likelihood(), inference=params["inference"], init_mean_std=INIT_MEAN_STD,
                           learn_prior=bool(self.learn_prior), layers=layers)


@register_estimator
class PBPEnsembleClassifier(PBPMembers, OnlineClassifier):
    """An ensemble of independently initialised PBP classifiers, their probabilities averaged.

    Each member is a :class:`PBPClassifier` posterior trained on the same data with its own
    initial weights and shuffling (the members train together, as one batched program:
    :mod:`probprop.learners.pbp_ensemble`). The prediction is the equally weighted mixture of
    the members' predictive distributions, without sampling: the class probabilities are the
    members' average; each probability's variance is the members' own variance under their weight
    posteriors, averaged, plus the variance of their probabilities; the expected entropy is the
    members' average (:func:`probprop.moments.mixture.class_mixture`), so the mutual information
    holds both the members' disagreement and each member's weight uncertainty.

    Parameters are those of :class:`PBPClassifier` (ADF only: no ``inference``, ``learn_prior``,
    ``forgetting`` or ``replay``) plus ``n_members`` (default 5). ``partial_fit`` continues every
    member from its posterior. ``members_`` gives each as a fitted :class:`PBPClassifier`.
    """

    _learner_name = "pbp_ensemble"
    _progress_label = "PBP ensemble epochs"
    _saved = ("classes_", "n_rejected_", "rejected_per_epoch_")
    _member_fitted = (*PBPMembers._member_fitted, "classes_")
    _member_class = PBPClassifier

    def __init__(self, n_members=5, hidden=(50,), epochs=40, conv=(), image_shape=None, pooling="avg",
                 activation="relu", dtype="float64", input_scaling="features", constant_tol=1e-9, random_state=None,
                 verbose=False):
        self.n_members = n_members
        self.hidden = hidden
        self.epochs = epochs
        self.conv = conv
        self.image_shape = image_shape
        self.pooling = pooling
        self.activation = activation
        self.dtype = dtype
        self.input_scaling = input_scaling
        self.constant_tol = constant_tol
        self.random_state = random_state
        self.verbose = verbose

    def _member(self, random_state) -> PBPClassifier:
        """A member network: this ensemble's parameters but ``n_members``, silent, seeded by ``random_state``."""
        params = self.get_params(deep=False)
        for name in ("n_members", "verbose", "random_state"):
            del params[name]
        return self._member_class(**params, random_state=random_state)

    def partial_fit(self, X, y, classes=None, epochs: int = 1):
        """Keep learning from (X, y), every member from its current posterior.

        The first call fixes the classes: ``classes`` (every label the stream will hold), or the
        labels of this first batch when ``classes`` is None (it must then hold at least two).
        Later calls accept labels among ``classes_`` only, any number of rows, the same features;
        ``classes``, if given again, must equal ``classes_``. The first call also sets the input
        scaling (needs 2+ rows). Each of the ``epochs`` passes shuffles the batch (every member
        its own order) and learns each row once; batches are padded as :class:`PBPClassifier`'s
        are (compiled programs are reused). The members have no drift model (no ``forgetting`` or
        ``replay``: :class:`PBPClassifier` has them)."""
        return super().partial_fit(X, y, classes=classes, epochs=epochs)

    def _validated_params(self) -> dict:
        n_members = _checks.positive_int("n_members", self.n_members)
        return {**self._member(None)._validated_params(), "n_members": n_members}

    def _make_spec(self, n_in, params):
        member = self._member(None)
        member.classes_ = self.classes_
        return pbp_ensemble.PBPEnsembleSpec(member=member._make_spec(n_in, params), n_members=params["n_members"])

    def _spec_disagreements(self, spec, checked: dict) -> list[str]:
        """The base checks of the ensemble's own fields and :class:`PBPClassifier`'s of the
        member network (its layers, convolutions included, and every other field: likelihood,
        ADF, the fixed prior)."""
        out = [d for d in super()._spec_disagreements(spec, checked) if not d.startswith("hidden ")]
        named = {message.split(" ", 1)[0] for message in out}
        mine = self._member(None)._spec_disagreements(getattr(spec, "member", None), checked)
        return [*out, *(f"member {d}" for d in mine if d.split(" ", 1)[0] not in named)]

    def _output_moments(self, X):
        raise TypeError("a PBPEnsembleClassifier has no single Gaussian over its outputs (the learner's moment-matched "
                        "mixture is for regression); its probabilities are the members' average: predict_proba, "
                        "predict_dist")

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, K): the members' average (rows sum to 1)."""
        X = self._validate_X(X)
        return normalise_rows(np.mean([m.predict_proba(X) for m in self._fitted_members(False)], axis=0))

    def predict_dist(self, X) -> ClassPrediction:
        """As :meth:`PBPClassifier.predict_dist`, for the members' mixture (class docstring)."""
        X = self._validate_X(X)
        dists = [m.predict_dist(X) for m in self._fitted_members(False)]
        parts = (np.stack([getattr(d, name) for d in dists]) for name in ("probabilities", "variance",
                                                                          "expected_entropy"))
        probs, variance, expected = (np.asarray(a, np.float64) for a in float64(class_mixture)(*parts))
        return ClassPrediction(normalise_rows(probs), variance, expected, self.classes_, epistemic=True)


def _conv_params(estimator) -> tuple[tuple[int, int, int], ...]:
    """An image classifier's checked ``conv`` (its ``pooling`` and the form of its ``image_shape``
    checked too, with or without convolutions)."""
    conv = _checks.conv_layers(estimator.conv)
    _checks.image_shape_form(estimator.image_shape)
    if estimator.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {estimator.pooling!r}")
    return conv


def _conv_pieces(estimator, n_in: int, conv) -> tuple:
    """The convolution layer pieces of checked ``conv`` on rows of ``n_in`` features (the images
    of the estimator's ``image_shape``); () without convolutions."""
    return conv_stack(_checks.image_shape(estimator.image_shape, n_in), conv, estimator.pooling) if conv else ()


def _conv_disagreements(estimator, spec, checked: dict) -> list[str]:
    """Where a spec's ``conv`` pieces (a spec with a ``conv`` field: MAP, ensemble, TAGI) differ
    from those the estimator's checked parameters build."""
    try:
        pieces = _conv_pieces(estimator, int(spec.n_in), checked["conv"])
    except ValueError as err:
        return [f"conv {checked['conv']!r} does not fit the inputs ({err})"]
    return [] if pieces == tuple(spec.conv) else [f"conv {pieces!r} against {tuple(spec.conv)!r}"]


def _softmax_network_params(estimator) -> dict:
    """The checked parameters the softmax-network classifiers share (hidden, epochs, batch size,
    prior variance, input scaling, convolutions)."""
    _checks.positive_int("epochs", estimator.epochs)
    _checks.constant_tol(estimator.constant_tol)
    estimator._input_scaling()
    prior = None if estimator.prior_var is None else _checks.positive_float("prior_var", estimator.prior_var)
    return {"hidden": _checks.hidden_sizes(estimator.hidden), "prior_var": prior,
            "batch_size": _checks.positive_int("batch_size", estimator.batch_size), "conv": _conv_params(estimator)}


class _SoftmaxNetwork(MomentClassifier):
    """Base of the classifiers trained by gradients whose networks may start with convolutions
    (``conv``, ``image_shape``, ``pooling`` as in :class:`PBPClassifier`, kernels as point
    estimates: :meth:`probprop.layers.Conv2D.point`)."""


@register_estimator
class MAPClassifier(_SoftmaxNetwork):
    """A point-estimate softmax network trained by backpropagation (Adam, L2 from a Gaussian prior
    on the weights): the baseline every uncertainty method is compared with. It has no epistemic
    uncertainty (mutual information and probability variance are zero); its max probability and
    entropy are the usual scores.

    Parameters
    ----------
    hidden, epochs, learning_rate, batch_size : as in :class:`probprop.MAPRegressor`.
    conv, image_shape, pooling : as in :class:`PBPClassifier`, with point-estimate kernels (each
        convolution followed by a ReLU; :meth:`probprop.layers.Conv2D.point`).
    prior_var : float or None, default=1.0
        Variance of the Gaussian prior on the weight matrices and kernels (weight decay
        1 / (2 N prior_var)); None: maximum likelihood.
    input_scaling, constant_tol, random_state, verbose : as in :class:`PBPClassifier`.
    """

    _learner_name = "map"
    _progress_label = "MAP epochs"
    _point_estimate = True  # predict_dist's scores: max probability and entropy only

    def __init__(self, hidden=(50,), epochs=40, conv=(), image_shape=None, pooling="avg", learning_rate=1e-3,
                 batch_size=32, prior_var=1.0, input_scaling="features", constant_tol=1e-9, random_state=None,
                 verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.conv = conv
        self.image_shape = image_shape
        self.pooling = pooling
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.prior_var = prior_var
        self.input_scaling = input_scaling
        self.constant_tol = constant_tol
        self.random_state = random_state
        self.verbose = verbose

    def _validated_params(self) -> dict:
        return {**_softmax_network_params(self),
                "learning_rate": _checks.positive_float("learning_rate", self.learning_rate)}

    def _make_spec(self, n_in, params):
        from probprop.learners import mapnet

        return mapnet.MAPSpec(n_in=n_in, hidden=params["hidden"], learning_rate=params["learning_rate"],
                              batch_size=params["batch_size"], prior_var=params["prior_var"],
                              n_classes=len(self.classes_), conv=_conv_pieces(self, n_in, params["conv"]))


class LaplaceLink:
    """The Laplace classifiers' ``link_approx``: how a prediction reads the logits' Gaussian. "mc"
    averages the softmax over the stored draws of the last layer (the learner's
    ``class_samples``); "probit", "bridge" and "bridge_norm" are the closed forms of
    :mod:`probprop.moments.softmax` (the learner's ``class_moments``), one deterministic pass with
    no draws. Read at prediction time, so one fitted model can be read every way
    (``set_params(link_approx=...)``). The learner takes all rows at once and passes them in
    blocks, from each row's Jacobian or, from about D / 2 rows on, through each member's
    posterior covariance blocks formed once per call (:func:`probprop.learners.laplace.class_moments`)."""

    def _link(self) -> str:
        from probprop.moments.softmax import LINKS

        link = getattr(self, "link_approx", "mc")
        if not isinstance(link, str) or link not in LINKS:
            raise ValueError(f"link_approx must be one of {list(LINKS)}, got {link!r}")
        return link

    def _validated_params(self) -> dict:
        self._link()
        return super()._validated_params()

    def _has_spread(self) -> bool:
        return True if self._link() != "mc" else super()._has_spread()

    def _sample_summaries(self, X):
        link = self._link()
        if link == "mc":
            return super()._sample_summaries(X)
        # all rows in one call: the learner forms the posterior's blocks once and blocks the rows itself
        return self._summaries_in_blocks(lambda Xs: self._learner().class_moments(self.state_, Xs, link=link),
                                         None, X)


@register_estimator
class LaplaceClassifier(LaplaceLink, LastLayerLaplace, MAPClassifier):
    """A MAP softmax network with a last-layer Laplace approximation (Kristiadi, Hein & Hennig 2020;
    laplace-torch's ``last_layer`` posterior with the full Hessian, or its Kronecker factorisation):
    after training, a Gaussian posterior over the last layer's weights and biases from the exact
    Hessian of the cross-entropy there (``hessian_structure``), with a prior precision chosen by
    the Laplace evidence. Class
    probabilities average the softmax over ``n_samples`` draws of the last layer (shared by every
    row, fixed by the fitted state); the uncertainty scores are their spread (mutual information,
    probability variance); ``link_approx`` reads the logits' Gaussian in closed form instead
    (:class:`LaplaceLink`). See :mod:`probprop.learners.laplace`. The last layer may have at most
    :data:`probprop.learners.laplace.MAX_PARAMETERS` parameters ((units of the last hidden layer +
    1) x classes) for the full posterior, a dense matrix; ``hessian_structure="kron"`` takes wider ones.

    Parameters
    ----------
    hidden, epochs, conv, image_shape, pooling, learning_rate, batch_size, prior_var, input_scaling, constant_tol, random_state, verbose :
        as in :class:`MAPClassifier` (the network and its training).
    prior_precision : float or None, default=None
        Precision of the Gaussian prior on the last layer's parameters in the posterior; None:
        the value of :data:`probprop.learners.laplace.PRIOR_PRECISION_GRID` with the largest
        Laplace evidence (``prior_precision_``).
    hessian_structure : {"full", "kron"}, default="full"
        The last layer's curvature: "full", the exact D x D matrix (D = (units of the last hidden
        layer + 1) x outputs, at most :data:`probprop.learners.laplace.MAX_PARAMETERS`), or "kron",
        its Kronecker factorisation (KFAC; laplace-torch's names), which never forms a D x D matrix
        and takes layers of up to 4,096 units and 4,097 outputs
        (:data:`probprop.learners.laplace.MAX_KRON_FACTOR` rows per factor); the softmax's
        curvature is then averaged over the rows (B = mean of diag(p) - p p^T).
    n_samples : int, default=100
        Draws of the last layer a prediction averages (at most 10,000; with ``link_approx="mc"``).
    link_approx : {"mc", "probit", "bridge", "bridge_norm"}, default="mc"
        How a prediction reads the logits' Gaussian: the average over the draws, or a closed form
        without them (:class:`LaplaceLink`; laplace-torch's ``link_approx``). Read when
        predicting.
    """

    _learner_name = "laplace"
    _progress_label = "MAP epochs"
    _point_estimate = False

    def __init__(self, hidden=(50,), epochs=40, conv=(), image_shape=None, pooling="avg", learning_rate=1e-3,
                 batch_size=32, prior_var=1.0, prior_precision=None, hessian_structure="full", n_samples=100,
                 link_approx="mc", input_scaling="features", constant_tol=1e-9, random_state=None, verbose=False):
        super().__init__(hidden=hidden, epochs=epochs, conv=conv, image_shape=image_shape, pooling=pooling,
                         learning_rate=learning_rate, batch_size=batch_size, prior_var=prior_var,
                         input_scaling=input_scaling, constant_tol=constant_tol, random_state=random_state,
                         verbose=verbose)
        self.prior_precision = prior_precision
        self.hessian_structure = hessian_structure
        self.n_samples = n_samples
        self.link_approx = link_approx

    def _validated_params(self) -> dict:
        return {**super()._validated_params(), "n_samples": _checks.positive_int("n_samples", self.n_samples)}

    def _make_spec(self, n_in, params):
        from probprop.learners import laplace

        return laplace.LaplaceSpec.from_network(super()._make_spec(n_in, params), params["prior_precision"],
                                                params["n_samples"], params["hessian_structure"])


class _LaplaceEnsembleNetworks(_SoftmaxNetwork):
    """The networks' parameters of :class:`LaplaceEnsembleClassifier` (its posterior's are
    :class:`LastLayerLaplace`'s)."""

    def _validated_params(self) -> dict:
        return {**_softmax_network_params(self),
                "learning_rate": _checks.positive_float("learning_rate", self.learning_rate),
                "n_members": _checks.positive_int("n_members", self.n_members),
                "n_samples": _checks.positive_int("n_samples", self.n_samples)}


@register_estimator
class LaplaceEnsembleClassifier(LaplaceLink, LastLayerLaplace, _LaplaceEnsembleNetworks):
    """A mixture of last-layer Laplace approximations (Eschenhagen et al. 2021, "MoLA"): a deep
    ensemble of ``n_members`` softmax networks (as :class:`DeepEnsembleClassifier` trains them,
    but with the Gaussian prior of ``prior_var`` on the weights, as :class:`LaplaceClassifier`'s
    network), each given the last-layer Laplace posterior of :class:`LaplaceClassifier` after
    training (its own prior precision, chosen by its evidence unless given). Class probabilities
    average the softmax over ``n_samples`` draws of every member's last layer; the uncertainty
    scores (mutual information, probability variance) are the spread of all of them: the members'
    disagreement and each member's last-layer uncertainty (``link_approx``: each member's closed
    form, mixed). See :mod:`probprop.learners.laplace_ensemble`. The members' posteriors together may hold at most
    as many numbers as one posterior of :data:`probprop.learners.laplace.MAX_PARAMETERS` parameters,
    and their draws as many as 10,000 draws of one; at most
    :data:`probprop.learners.ensemble.MAX_MEMBERS` members.

    Parameters
    ----------
    hidden, epochs, conv, image_shape, pooling, batch_size, input_scaling, constant_tol, random_state, verbose :
        as in :class:`MAPClassifier`.
    n_members : int, default=5
        At most :data:`probprop.learners.ensemble.MAX_MEMBERS` (256).
    learning_rate : float, default=1e-3
        Adam's step size.
    prior_var : float or None, default=1.0
        As in :class:`MAPClassifier`.
    prior_precision : float or None, default=None
        As in :class:`LaplaceClassifier`, for every member (``prior_precision_``: one per member).
    hessian_structure : {"full", "kron"}, default="full"
        As in :class:`LaplaceClassifier`, for every member.
    n_samples : int, default=100
        Draws of each member's last layer a prediction averages (at most 10,000; with
        ``link_approx="mc"``).
    link_approx : {"mc", "probit", "bridge", "bridge_norm"}, default="mc"
        As in :class:`LaplaceClassifier`; a closed form is each member's, mixed uniformly.
    """

    _learner_name = "laplace_ensemble"
    _progress_label = "ensemble epochs"
    _point_estimate = False

    def __init__(self, hidden=(50,), epochs=40, conv=(), image_shape=None, pooling="avg", n_members=5,
                 learning_rate=1e-3, batch_size=32, prior_var=1.0, prior_precision=None, hessian_structure="full",
                 n_samples=100, link_approx="mc", input_scaling="features", constant_tol=1e-9, random_state=None,
                 verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.conv = conv
        self.image_shape = image_shape
        self.pooling = pooling
        self.n_members = n_members
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.prior_var = prior_var
        self.prior_precision = prior_precision
        self.hessian_structure = hessian_structure
        self.n_samples = n_samples
        self.link_approx = link_approx
        self.input_scaling = input_scaling
        self.constant_tol = constant_tol
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, params):
        from probprop.learners import laplace_ensemble

        return laplace_ensemble.LaplaceEnsembleSpec(
            n_in=n_in, hidden=params["hidden"], n_members=params["n_members"], learning_rate=params["learning_rate"],
            batch_size=params["batch_size"], prior_var=params["prior_var"], n_classes=len(self.classes_),
            conv=_conv_pieces(self, n_in, params["conv"]), prior_precision=params["prior_precision"],
            n_samples=params["n_samples"], hessian_structure=params["hessian_structure"])


@register_estimator
class DeepEnsembleClassifier(EnsembleStepSize, _SoftmaxNetwork):
    """Deep ensembles for classification (Lakshminarayanan, Pritzel & Blundell 2017): ``n_members``
    softmax networks trained on the cross-entropy from different initialisations and shuffles
    (one compiled epoch for all of them; one compiled step per mini-batch with ``conv``), their
    class probabilities averaged. The uncertainty
    scores are the members' disagreement: mutual information (entropy of the average minus the
    average entropy) and the variance of each class probability across members.

    Parameters
    ----------
    hidden, epochs, conv, image_shape, pooling, batch_size, input_scaling, constant_tol, random_state, verbose :
        as in :class:`MAPClassifier`.
    n_members : int, default=5
        At most :data:`probprop.learners.ensemble.MAX_MEMBERS` (256).
    learning_rate : float, sequence of floats, or "select", default=1e-3
        Adam's step size; a sequence (or ``"select"``: 1e-3, 3e-3, 1e-2, 3e-2) is searched on an
        80/20 split of the training data by held-out log probability, as the regressor does.
    prior_var : float or None, default=None
        Variance of a Gaussian prior on the weights (weight decay); None: none, as in the paper.
    """

    _learner_name = "ensemble"
    _progress_label = "ensemble epochs"
    _saved = ("classes_", "learning_rate_", "validation_scores_")

    def __init__(self, hidden=(50,), epochs=40, conv=(), image_shape=None, pooling="avg", n_members=5,
                 learning_rate=1e-3, batch_size=32, prior_var=None, input_scaling="features", constant_tol=1e-9,
                 random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.conv = conv
        self.image_shape = image_shape
        self.pooling = pooling
        self.n_members = n_members
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.prior_var = prior_var
        self.input_scaling = input_scaling
        self.constant_tol = constant_tol
        self.random_state = random_state
        self.verbose = verbose

    def _validated_params(self) -> dict:
        return {**_softmax_network_params(self), "learning_rate": self._grid()[0],
                "n_members": _checks.positive_int("n_members", self.n_members)}

    def _make_spec(self, n_in, params):
        from probprop.learners import ensemble

        return ensemble.EnsembleSpec(n_in=n_in, hidden=params["hidden"], n_members=params["n_members"],
                                     learning_rate=params["learning_rate"], batch_size=params["batch_size"],
                                     prior_var=params["prior_var"], n_classes=len(self.classes_),
                                     conv=_conv_pieces(self, n_in, params["conv"]))


@register_estimator
class TAGIClassifier(OnlineClassifier):
    """Classification by tractable approximate Gaussian inference (TAGI, Goulet, Nguyen & Amiri
    2021): closed-form forward moments and layer-by-layer Gaussian conditioning over mini-batches
    (no gradients), with the classification likelihoods of :class:`PBPClassifier` at the output
    (probit for two classes, multinomial probit for more; the output units' innovation is their
    ADF moment match, :mod:`probprop.learners.tagi`). ``partial_fit`` continues from the posterior.

    Parameters
    ----------
    hidden, epochs, activation, dtype, input_scaling, constant_tol, random_state, verbose :
        as in :class:`PBPClassifier`.
    conv, image_shape : as in :class:`PBPClassifier`: convolutions with Gaussian kernels before
        the dense hidden layers, conditioned on by the same layer-wise TAGI update (a kernel weight
        is shared by every position of its maps, so its update sums over them, as pytagi's does;
        its initial variance is ``init_gain / (C kernel^2)``). With convolutions the rows of a
        mini-batch combine by ``variance_update="sum"`` only.
    pooling : {"avg"}, default="avg"
        TAGI's convolutions pool by average (max pooling's moment matching has no linear Jacobian
        for TAGI's conditioning).
    batch_size : int, default=10
        Rows conditioned on at once (from the same prior moments; pytagi's UCI setting).
    init_gain, init_bias_variance : float, default=1.0, 0.01
        Initial weight variance ``init_gain / fan_in`` (means drawn from the same variance) and
        bias variance, as in :class:`probprop.TAGIRegressor`; the gain 1 is pytagi's He
        initialisation (the regressor keeps TAGI-MAT's 0.25): one pass over 10,000 MNIST training
        images (784-100-100-10) scored on 2,000 other training images gave 13.5 % error with
        0.25 and 10.2 % with 1 (validation images, not the test set).
    variance_update : {"sum", "precision"}, default="sum"
        How a mini-batch's rows combine, as in :class:`probprop.TAGIRegressor`.
    forgetting : as in :class:`PBPClassifier` (TAGI steps ``batch_size`` rows at a time, each step
        preceded by gamma^batch_size).
    replay : as in :class:`probprop.PBPRegressor` (each replayed step draws ``batch_size`` rows).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    state_ : probprop.learners.tagi.TAGIState
    n_rejected_, rejected_per_epoch_ : parameter updates the variance guard refused.
    """

    _learner_name = "tagi"
    _progress_label = "TAGI epochs"
    _saved = ("classes_", "n_rejected_", "rejected_per_epoch_", "drift_")

    def __init__(self, hidden=(50,), epochs=40, conv=(), image_shape=None, pooling="avg", batch_size=10, init_gain=1.0,
                 init_bias_variance=0.01, variance_update="sum", activation="relu", dtype="float64",
                 input_scaling="features", constant_tol=1e-9, forgetting=None, replay=0, random_state=None,
                 verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.conv = conv
        self.image_shape = image_shape
        self.pooling = pooling
        self.batch_size = batch_size
        self.init_gain = init_gain
        self.init_bias_variance = init_bias_variance
        self.variance_update = variance_update
        self.activation = activation
        self.dtype = dtype
        self.input_scaling = input_scaling
        self.constant_tol = constant_tol
        self.forgetting = forgetting
        self.replay = replay
        self.random_state = random_state
        self.verbose = verbose

    def _validated_params(self) -> dict:
        _checks.constant_tol(self.constant_tol)
        self._input_scaling()
        conv = _conv_params(self)
        params = {**tagi_estimator.network_params(self), "conv": conv}
        if conv:  # refused before anything is fitted (the spec refuses the same)
            tagi.check_conv_options({self.pooling}, self.variance_update)
        return params

    def _make_spec(self, n_in, params):
        return tagi_estimator.network_spec(self, n_in, params, n_classes=len(self.classes_),
                                           conv=_conv_pieces(self, n_in, params["conv"]))


@register_estimator
class MCDropoutClassifier(MomentClassifier):
    """MC dropout for classification (Gal & Ghahramani 2016): a softmax network with dropout
    before every layer, trained on the cross-entropy with the weight decay of the dropout prior
    (length-scale 1e-2), and T stochastic passes at prediction whose class probabilities are
    averaged; mutual information and probability variance are the passes' disagreement
    (:mod:`probprop.learners.mcdropout`).

    Parameters
    ----------
    hidden, epochs, learning_rate, batch_size, input_scaling, constant_tol, random_state, verbose :
        as in :class:`MAPClassifier`.
    dropout : "select", float in (0, 1), or a sequence of them, default="select"
        The dropout rate; a sequence is a grid searched on an 80/20 split of the training data by
        held-out log probability (never test data), ``"select"`` the authors' grid (0.005, 0.01,
        0.05, 0.1). The chosen rate is ``dropout_``, the scores ``validation_scores_``.
    n_samples : int, default=100
        Stochastic passes (sampled networks) per prediction.
    """

    _learner_name = "mcdropout"
    _progress_label = "MC dropout epochs"
    _saved = ("classes_", "dropout_", "validation_scores_")

    def __init__(self, hidden=(50,), epochs=40, dropout="select", n_samples=100, learning_rate=1e-3, batch_size=32,
                 input_scaling="features", constant_tol=1e-9, random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.dropout = dropout
        self.n_samples = n_samples
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.input_scaling = input_scaling
        self.constant_tol = constant_tol
        self.random_state = random_state
        self.verbose = verbose

    def _grid(self) -> tuple[float, ...]:
        from probprop.learners import mcdropout

        return _checks.candidates("dropout", self.dropout, mcdropout.GRID_P, 1.0)

    def _validated_params(self) -> dict:
        _checks.positive_int("epochs", self.epochs)
        _checks.constant_tol(self.constant_tol)
        self._input_scaling()
        return {"hidden": _checks.hidden_sizes(self.hidden), "dropout": self._grid(),
                "n_samples": _checks.positive_int("n_samples", self.n_samples),
                "learning_rate": _checks.positive_float("learning_rate", self.learning_rate),
                "batch_size": _checks.positive_int("batch_size", self.batch_size)}

    def _make_spec(self, n_in, params):
        from probprop.learners import mcdropout

        return mcdropout.MCDropoutSpec(n_in=n_in, hidden=params["hidden"], dropout=params["dropout"][0], tau=1.0,
                                       learning_rate=params["learning_rate"], batch_size=params["batch_size"],
                                       n_samples=params["n_samples"], n_classes=len(self.classes_))

    def _configure(self, Xs, ys, key, spec, search):
        import jax

        grid = self._grid()
        self.__dict__.pop("validation_scores_", None)  # from an earlier fit with a search
        if len(grid) > 1:
            key, sub = jax.random.split(key)
            choice = self._learner().select(Xs, ys, spec, epochs=int(self.epochs), key=sub, grid={"dropout": grid})
            spec = choice.spec
            self.validation_scores_ = np.asarray(choice.scores)[:, 0]
        self.dropout_ = float(spec.dropout)
        return spec, key

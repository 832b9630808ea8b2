"""The TAGI estimator (:mod:`probprop.learners.tagi`)."""

from __future__ import annotations

import dataclasses
import numbers

from probprop.estimators import _checks
from probprop.estimators.base import OnlineRegressor
from probprop.io import register_estimator
from probprop.learners import _threefry, tagi
from probprop.moments.input_noise import PROPAGATIONS


def network_params(estimator) -> dict:
    """The checks of the TAGI network parameters a TAGI estimator (regressor or classifier) shares:
    ``hidden``, ``epochs``, ``batch_size``, ``activation``, ``dtype``, ``init_gain`` and
    ``init_bias_variance``, ``variance_update``; returns the checked ``hidden`` and ``batch_size``."""
    hidden = _checks.hidden_sizes(estimator.hidden)
    _checks.positive_int("epochs", estimator.epochs)
    batch_size = _checks.positive_int("batch_size", estimator.batch_size)
    _checks.activation_and_dtype(estimator.activation, estimator.dtype)
    for name in ("init_gain", "init_bias_variance"):
        _checks.positive_float(name, getattr(estimator, name))
    if not (isinstance(estimator.variance_update, str) and estimator.variance_update in tagi.VARIANCE_UPDATES):
        raise ValueError(f"variance_update must be one of {list(tagi.VARIANCE_UPDATES)}, got {estimator.variance_update!r}")
    return {"hidden": hidden, "batch_size": batch_size}


def network_spec(estimator, n_in: int, params: dict, **fields) -> tagi.TAGISpec:
    """The :class:`TAGISpec` of a TAGI estimator's network (``fields``: the rest, e.g. ``n_classes``)."""
    return tagi.TAGISpec(n_in=n_in, hidden=params["hidden"], activation=estimator.activation,
                         batch_size=params["batch_size"], dtype=estimator.dtype, init_gain=float(estimator.init_gain),
                         init_bias_variance=float(estimator.init_bias_variance),
                         variance_update=estimator.variance_update, **fields)


@register_estimator
class TAGIRegressor(OnlineRegressor):
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
    variance_update : {"sum", "precision"}, default="sum"
        How a mini-batch's rows combine: their increments summed (the paper, pytagi; summed
        variance decrements can overshoot below zero, and such updates are refused), or as
        independent observations in precision form, which does not overshoot while each row's
        decrement alone is valid (``probprop.learners.tagi._precision_increments``; a batch costs
        1.2-2.2x the summed form's).
    forgetting : None, "learn", float in (0, 1] or probprop.learners.drift.Forgetting, default=None
        The drift model of ``partial_fit`` for a stream whose relationship changes: before each
        row each weight's variance relaxes towards its prior variance, gamma^2 v + (1 - gamma^2)
        v0, its mean kept (the drift model of Titsias et al., ICLR 2024, with the mean kept:
        ``Forgetting(shrink_mean=True)`` shrinks it by gamma too), A number fixes gamma; ``"learn"`` learns it online from each new row's
        predictive log-likelihood (``gamma_``). None: ``partial_fit`` as without a drift model
        (shuffled epochs). ``fit`` ignores it.
    replay : as in :class:`probprop.PBPRegressor` (each replayed step draws ``batch_size`` rows).
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
        variance_update="sum",
        activation="relu",
        dtype="float64",
        forgetting=None,
        replay=0,
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
        self.variance_update = variance_update
        self.activation = activation
        self.dtype = dtype
        self.forgetting = forgetting
        self.replay = replay
        self.random_state = random_state
        self.verbose = verbose

    _learner_name = "tagi"
    _propagations = PROPAGATIONS
    _progress_label = "TAGI epochs"
    _saved = ("n_rejected_", "rejected_per_epoch_", "sigma_v_", "sigma_v_validation_", "drift_")

    def _validated_params(self) -> dict:
        network = network_params(self)
        select = isinstance(self.sigma_v, str) and self.sigma_v == "select"
        if not select and not (
            isinstance(self.sigma_v, numbers.Real) and not isinstance(self.sigma_v, bool) and self.sigma_v > 0
        ):
            raise ValueError(f"sigma_v must be 'select' or a positive float, got {self.sigma_v!r}")
        _checks.boolean("heteroscedastic", self.heteroscedastic)
        return {**network, "select": select}

    def _make_spec(self, n_in, params):
        return dataclasses.replace(network_spec(self, n_in, params), heteroscedastic=bool(self.heteroscedastic))

    def _configure(self, Xs, ys, key, spec, search):
        key, select_key = _threefry.split(key)
        select = isinstance(self.sigma_v, str)
        if spec.heteroscedastic or (select and not search):
            self.sigma_v_ = spec.sigma_v if select else float(self.sigma_v)
        elif select:
            choice = self._learner().select(Xs, ys, spec, epochs=int(self.epochs), key=select_key)
            self.sigma_v_ = float(choice.chosen["sigma_v"])
            self.sigma_v_validation_ = dict(zip(map(float, choice.grid["sigma_v"]), map(float, choice.scores)))
        else:
            self.sigma_v_ = float(self.sigma_v)
        return dataclasses.replace(spec, sigma_v=self.sigma_v_), key

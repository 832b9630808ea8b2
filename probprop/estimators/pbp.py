"""PBP estimators: :class:`PBPRegressor`, :class:`PBPEnsembleRegressor`, and
:func:`fit_together`, which trains several PBP models as one batched program."""

from __future__ import annotations

import dataclasses
import itertools
import numbers

import jax
import numpy as np

from probprop.estimators import _checks
from probprop.estimators._api import check_is_fitted, check_random_state
from probprop.estimators.base import OnlineRegressor, progress
from probprop.io import register_estimator
from probprop.learners import _threefry, pbp, pbp_ensemble
from probprop.learners.base import count_rejections, float64
from probprop.likelihoods import HeteroscedasticGaussian
from probprop.moments.input_noise import PROPAGATIONS


@register_estimator
class PBPRegressor(OnlineRegressor):
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
    heteroscedastic : bool, default=False
        True: the noise variance depends on the input. The network gets a second output l, the
        log noise variance (y = f + e, e ~ N(0, exp(l))), learned by the same per-point ADF: each
        update differentiates log Z = log of the integral of N(y | m_f, v_f + e^l) N(l | m_l, v_l)
        dl, a 1-D quadrature (``probprop.likelihoods.gaussian.heteroscedastic_log_z``). The
        predictive noise is E[exp(l)] per row. Needs ``noise="learn"`` (the default). Use it
        with ``inference="sep"``: by ADF alone the noise output's variances shrink with the
        epochs and the intervals come out too narrow (docs/benchmarks/pbp-het: 90 % coverage
        0.66 on yacht by ADF, 0.88-0.93 on all 9 UCI sets with SEP).
    noise_feedback : bool, default=True
        With ``heteroscedastic=True``: True, each update moves every weight by the exact
        gradient of log Z, so the hidden layers learn from the noise output as well as from the
        mean. False cuts that feedback (``HeteroscedasticGaussian(feedback=False)``): the hidden
        layers learn from the mean output only and the noise output's weights learn the noise on
        the features the mean learned (a "cut" model). With feedback, the noise output can
        explain residuals that the mean has not fitted yet, which slows the mean's updates
        there. Measured (docs/benchmarks/pbp-het-cut-val): two hidden layers by SEP, epochs
        chosen on validation rows, energy test RMSE 0.525 cut against 1.94 with feedback, test
        LL higher by 0.124 +- 0.036 (paired over 20 splits); but on yacht the cut noise is too
        wide (90 % coverage 1.0 on 17 of 20 splits, test LL lower by 2.5, by 1.4 without one
        split whose variance overflowed), and with one hidden layer and the protocol's epochs
        (docs/benchmarks/pbp-het-cut) it is lower on Boston, kin8nm and protein. So the
        feedback stays the default; try the cut where the mean underfits.
    activation : str, default="relu"
        Hidden-unit nonlinearity (one of ``probprop.moments.ACTIVATIONS``).
    dtype : {"float64", "float32"}, default="float64"
        Precision of the network moments (Gamma and EP-site arithmetic stays float64).
    constant_tol : float, default=1e-9
        Input columns whose training std is at most this fraction of their mean's magnitude
        are treated as constant (left unscaled). 0 reproduces the reference code, which only
        treats an exactly zero std so (see the naval note in docs/benchmarks).
    inference : {"adf", "sep"}, default="adf"
        ``"adf"``: PBP as published (each epoch adds every point's likelihood again, so the
        posterior variances shrink with the epochs). ``"sep"``: stochastic expectation
        propagation (Li, Hernández-Lobato & Turner, NIPS 2015): one tied site per weight stands
        for the average data point and a point's update first removes its share, so the
        variances settle (``probprop.learners.pbp.sep_update``). ``partial_fit`` counts N as
        the rows of each call.
    forgetting : None, "learn", float in (0, 1] or probprop.learners.drift.Forgetting, default=None
        The drift model of ``partial_fit`` for a stream whose relationship changes: before each
        row each weight's variance relaxes towards its prior variance, gamma^2 v + (1 - gamma^2)
        v0, its mean kept (the drift model of Titsias et al., ICLR 2024, with the mean kept:
        ``Forgetting(shrink_mean=True)`` shrinks it by gamma too), and a learned noise forgets its evidence at the
        same rate. A number fixes gamma; ``"learn"`` learns it online from each new row's
        predictive log-likelihood (``gamma_``). None: ``partial_fit`` as without a drift model
        (shuffled epochs). ``fit`` ignores it.
    replay : int or (int, int), default=0
        In the ordered stream sweep (``partial_fit``, which with ``replay`` learns each row once
        in order with no EP prior step, as with ``forgetting``; prequential evaluation), each step
        is followed by this many replayed steps on rows drawn from the last 64 rows learned (or
        ``(rows, window)``): online multi-pass ADF over recent rows, for a stream's early rows,
        which one pass learns slowly (:class:`probprop.learners.drift.Replay`). Needs no
        ``forgetting``; with a learned one, gamma learns from the posterior that counts each row
        once (each weight's precision keeps the prior's and 1 / (rows + 1) of what the data
        added), not from replay's repeated evidence. 0: none. ``fit``
        ignores it.
    shards : int or None, default=None
        With ``inference="sep"``: :meth:`fit` splits the rows into this many shards, each with
        its own tied site, whose SEP updates run in parallel and are merged in natural parameters
        up to 64 times per shard per epoch, damped by K^(-1/4) (the first epoch by 1/sqrt(K);
        ``probprop.learners.pbp_sharded.schedule``); one shard is serial SEP. None: the serial fit. ``partial_fit`` ignores it.
    backend : {"local", "ray"}, default="local"
        Where the shards run: one vmapped program in this process, or one Ray actor per shard
        (``pip install "probprop[ray]"``; the cluster of ``$RAY_ADDRESS`` or of a running
        ``ray.init``, else a local one on this process's cores; ``probprop.distributed``).
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

    _learner_name = "pbp"
    _propagations = PROPAGATIONS
    _progress_label = "PBP epochs"
    _saved = ("n_rejected_", "rejected_per_epoch_", "drift_")

    def __init__(
        self,
        hidden=(50,),
        epochs=40,
        noise="learn",
        heteroscedastic=False,
        noise_feedback=True,
        activation="relu",
        dtype="float64",
        constant_tol=1e-9,
        inference="adf",
        forgetting=None,
        replay=0,
        shards=None,
        backend="local",
        random_state=None,
        verbose=False,
    ):
        self.hidden = hidden
        self.epochs = epochs
        self.noise = noise
        self.heteroscedastic = heteroscedastic
        self.noise_feedback = noise_feedback
        self.activation = activation
        self.dtype = dtype
        self.constant_tol = constant_tol
        self.inference = inference
        self.forgetting = forgetting
        self.replay = replay
        self.shards = shards
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose

    def _validated_params(self) -> dict:
        hidden = _checks.hidden_sizes(self.hidden)
        _checks.positive_int("epochs", self.epochs)
        if isinstance(self.noise, str):
            if self.noise != "learn":
                raise ValueError(f"noise must be 'learn' or a positive float (a variance), got {self.noise!r}")
        elif (
            isinstance(self.noise, bool)
            or not isinstance(self.noise, numbers.Real)
            or not (np.isfinite(self.noise) and self.noise > 0)
        ):
            raise ValueError(f"noise must be 'learn' or a positive float (a variance), got {self.noise!r}")
        _checks.boolean("heteroscedastic", self.heteroscedastic)
        if self.heteroscedastic and self.noise != "learn":
            raise ValueError(f"heteroscedastic=True learns the noise per input: it needs noise='learn', got noise={self.noise!r}")
        _checks.boolean("noise_feedback", self.noise_feedback)
        if not self.heteroscedastic and not self.noise_feedback:
            raise ValueError("noise_feedback=False cuts the noise output's feedback: it needs heteroscedastic=True")
        _checks.activation_and_dtype(self.activation, self.dtype)
        _checks.constant_tol(self.constant_tol)
        inference = _checks.inference(self.inference)
        from probprop.distributed import check_backend

        check_backend(self.backend)
        if self.shards is not None:
            _checks.positive_int("shards", self.shards)
            if inference != "sep":
                raise ValueError(f"shards needs inference='sep' (sharded stochastic EP), got inference={inference!r}")
        elif self.backend != "local":
            raise ValueError(f"backend={self.backend!r} runs the shards of a sharded fit: set shards (and inference='sep')")
        return {"hidden": hidden, "inference": inference}

    @float64
    def fit(self, X, y):
        """Fit from scratch (see the class docstring); with ``shards``, by sharded SEP."""
        if self.shards is None:
            return super().fit(X, y)
        self._validated_params()
        if self.backend == "ray":
            from probprop.distributed import require_ray

            require_ray()  # before any work
        X, y = self._validate_X_y(X, y, reset=True, min_samples=2)
        if self.shards > len(y):
            raise ValueError(f"shards={self.shards} is more than the {len(y)} rows to fit")
        Xs, ys = self._begin(X, y)
        try:
            self._run_sharded(Xs, ys)
        except BaseException:
            self.__dict__.pop("state_", None)  # no half-fitted model to predict from
            raise
        return self

    def _run_sharded(self, Xs, ys) -> None:
        from probprop.distributed import fit_sharded

        before = [0]
        with progress(total=self.epochs, verbose=self.verbose, desc=f"PBP-SEP epochs ({self.shards} shards)",
                      unit="epoch") as bar:

            def after_epoch(epoch, state):
                now = int(np.sum(count_rejections(state)))
                self.rejected_per_epoch_.append(now - before[0])
                before[0] = now
                bar.update(1)

            state, _ = fit_sharded(self.state_, Xs, ys, int(self.shards), int(self.epochs), backend=self.backend,
                                   callback=after_epoch)
        self.state_ = jax.device_get(state)
        self.n_rejected_ = int(np.sum(count_rejections(self.state_)))

    def _make_spec(self, n_in, params):
        learn = self.noise == "learn"
        return pbp.PBPSpec(
            n_in=n_in,
            hidden=params["hidden"],
            activation=self.activation,
            learn_noise=learn,
            noise_variance=None if learn else float(self.noise) / self.y_scale_**2,
            dtype=self.dtype,
            inference=params["inference"],
            likelihood=HeteroscedasticGaussian(feedback=bool(self.noise_feedback)) if self.heteroscedastic else None,
        )

    def _spec_disagreements(self, spec, checked: dict) -> list[str]:
        """The base checks, ``heteroscedastic`` and ``noise_feedback`` against the spec's
        likelihood (a PBP spec says them through its likelihood), then every other field these
        parameters would make otherwise (``inference``, the priors, ...)."""
        out = super()._spec_disagreements(spec, checked)
        if bool(self.heteroscedastic) != pbp.heteroscedastic(spec):
            out.append(f"heteroscedastic {self.heteroscedastic!r} against a network with "
                       f"{spec.n_outputs} output(s)")
        elif self.heteroscedastic and bool(self.noise_feedback) != spec.output_likelihood.feedback:
            out.append(f"noise_feedback {self.noise_feedback!r} against a network with feedback "
                       f"{spec.output_likelihood.feedback!r}")
        if isinstance(spec, pbp.PBPSpec):
            out += _field_disagreements(spec, _spec_from_params(self, spec.n_in, checked), out, skip=("likelihood",))
        return out

    @property
    def noise_variance_(self) -> float:
        """Posterior mean of the noise variance, in the units of ``y`` squared (a homoscedastic
        model's; a heteroscedastic one has a noise per input: ``predict_dist(X).noise_var``)."""
        check_is_fitted(self, "state_")
        if pbp.heteroscedastic(self.state_.spec):
            raise AttributeError("a heteroscedastic PBPRegressor has a noise variance per input, not one "
                                 "noise_variance_: see predict_dist(X).noise_var")
        return float(pbp.noise_variance(self.state_)) * self.y_scale_**2


def fit_together(estimators, Xs, ys, verbose=None, backend="local", address=None) -> list:
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

    ``backend="ray"`` (``pip install "probprop[ray]"``) spreads the models over the Ray cluster at
    ``address`` (default: a local one on this process's cores): one batch per CPU, each fitted as
    above by one Ray task (:func:`probprop.distributed.map_tasks`; a task whose worker dies is run
    again), the fitted states copied back into ``estimators``. The numbers equal a local
    ``fit_together`` up to the same rounding.
    """
    from probprop.distributed import check_backend

    check_backend(backend)
    if address and backend != "ray":
        raise ValueError("address is the Ray cluster's: it needs backend='ray'")
    if backend == "ray":
        return _fit_on_ray(estimators, Xs, ys, verbose, address)
    with jax.enable_x64(True):
        return _fit_together(estimators, Xs, ys, verbose)


def _fit_group(estimators, Xs, ys, verbose) -> list:
    """One Ray task of :func:`fit_together`: a batch fitted locally, returned fitted."""
    return fit_together(estimators, Xs, ys, verbose)


def _fit_on_ray(estimators, Xs, ys, verbose, address) -> list:
    from probprop.distributed import map_tasks, ray_session, require_ray

    estimators, Xs, ys = _checked_together(estimators, Xs, ys)
    _validated_together(estimators, Xs, ys)  # the local path's checks, before any cluster starts
    require_ray()
    with ray_session(address) as ray:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        groups = [g for g in np.array_split(np.arange(len(estimators)), min(cpus, len(estimators))) if len(g)]
        calls = [(([estimators[i] for i in g], [Xs[i] for i in g], [ys[i] for i in g], verbose), {}) for g in groups]
        outcomes = list(map_tasks(_fit_group, calls, address=address))
    failed = [o for o in outcomes if not o.ok]
    if failed:  # nothing is copied back: no mix of fitted and unfitted models
        raise RuntimeError(f"fit_together on Ray: a batch failed: {failed[0].error}")
    for outcome in outcomes:
        for i, fitted in zip(groups[outcome.index], outcome.value):
            # the fitted attributes only (scikit-learn's trailing underscore); the parameters stay the caller's
            estimators[i].__dict__.update({k: v for k, v in fitted.__dict__.items()
                                           if k.endswith("_") and not k.startswith("__")})
    return estimators


def _checked_together(estimators, Xs, ys):
    """The checks of :func:`fit_together` that need no data validation: counts, types, parameters."""
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
    if estimators[0].shards is not None:
        raise ValueError("fit_together fits unsharded models (shards=None); fit a sharded model on its own")
    return estimators, Xs, ys


def _validated_together(estimators, Xs, ys) -> list:
    """Every estimator's parameters and data checked, the data sets of one shape: the validated
    ``(X, y)`` pairs."""
    data = []
    for est, X, y in zip(estimators, Xs, ys):
        est._validated_params()
        data.append(est._validate_X_y(X, y, reset=True, min_samples=2))
    shapes = sorted({X.shape for X, _ in data})
    if len(shapes) > 1:
        raise ValueError(f"fit_together needs data sets of one shape, got X shapes {shapes}")
    return data


def _fit_together(estimators, Xs, ys, verbose) -> list:
    estimators, Xs, ys = _checked_together(estimators, Xs, ys)
    data = [est._begin(X, y) for est, (X, y) in zip(estimators, _validated_together(estimators, Xs, ys))]
    if len(estimators) == 1:
        estimators[0]._run_epochs(*data[0], estimators[0].epochs)
        return estimators

    state = pbp_ensemble.stack([est.state_ for est in estimators])
    X_all = np.stack([Xs_ for Xs_, _ in data])
    y_all = np.stack([ys_ for _, ys_ in data])
    verbose = any(est.verbose for est in estimators) if verbose is None else bool(verbose)
    before = np.zeros(len(estimators), np.int64)
    per_epoch = []
    desc = f"PBP epochs ({len(estimators)} models)"
    with progress(range(estimators[0].epochs), verbose=verbose, desc=desc, unit="epoch") as bar:
        for _ in bar:
            state = pbp_ensemble.update_together(state, X_all, y_all)
            now = count_rejections(state)
            per_epoch.append(now - before)
            before = now
    state = jax.device_get(state)
    for i, est in enumerate(estimators):
        est.state_ = pbp_ensemble.unstack(state, i)
        est.rejected_per_epoch_ = [int(counts[i]) for counts in per_epoch]
        est.n_rejected_ = int(count_rejections(est.state_))
        if est.verbose:
            print(f"PBP: {len(per_epoch)} epochs, {est.n_rejected_} rejected updates")
    return estimators


def _same_param(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_param(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _same_fitted(a, b) -> bool:
    """Whether two fitted values (arrays, numbers or None) are equal."""
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype.kind == b.dtype.kind and bool(np.all(a == b))


def _spec_from_params(model: PBPRegressor, n_in: int, checked: dict) -> pbp.PBPSpec:
    """The spec ``model``'s parameters make for ``n_in`` inputs (a copy of it with a unit target
    scale: the fixed noise variance it sets is not compared). A model file's spec must equal it
    field by field, so a change of a default in ``_make_spec`` needs a migration of old files."""
    probe = type(model)(**model.get_params())
    probe.y_scale_ = 1.0
    return probe._make_spec(int(n_in), checked)


def _field_disagreements(spec, expected, reported, prefix: str = "", skip=()) -> list[str]:
    """The compared fields in which ``spec`` differs from ``expected``, leaving out ``skip`` and
    any field a message in ``reported`` already names."""
    named = {message.split(" ", 1)[0] for message in reported}
    return [f"{prefix}{f.name} {getattr(spec, f.name)!r} against {getattr(expected, f.name)!r}"
            for f in dataclasses.fields(spec)
            if f.compare and f.name not in skip and f.name not in named
            and getattr(spec, f.name) != getattr(expected, f.name)]


class PBPMembers:
    """What the PBP ensembles share (:class:`PBPEnsembleRegressor`,
    :class:`probprop.PBPEnsembleClassifier`): members that start as their single-network
    estimator (``_member(random_state)``, a ``_member_class``) would, and the fitted members as
    such estimators."""

    #: The fitted values a member shares with the ensemble.
    _member_fitted = ("x_mean_", "x_scale_", "y_mean_", "y_scale_", "n_features_in_")
    #: The single-network estimator a member is.
    _member_class: type

    def member_seeds(self, n_members: int | None = None) -> list[int]:
        """The ``random_state`` of each member: member k starts exactly as the single-network
        estimator ``members_[k]`` is, built with ``random_state=member_seeds()[k]``, would (and,
        trained on the same rows for the same epochs, learns the same posterior up to float
        rounding: fit the members as separate jobs, then :meth:`from_members`). ``n_members``
        defaults to the ensemble's own. The same seeds on every call for an int
        ``random_state`` only (None or a ``RandomState`` draws afresh)."""
        n = _checks.positive_int("n_members", self.n_members if n_members is None else n_members)
        rng = check_random_state(self.random_state)
        return [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(n)]

    def member_estimator(self, k: int):
        """Member ``k`` as an unfitted single-network estimator (seeded with ``member_seeds()[k]``)."""
        seeds = self.member_seeds()
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k < len(seeds):
            raise ValueError(f"member must be an integer in [0, {len(seeds)}), got {k!r}")
        return self._member(seeds[int(k)])

    def _initial_state(self, key, spec):
        keys = [_threefry.key(self._member(seed)._seed()) for seed in self.member_seeds(spec.n_members)]
        return pbp_ensemble.init_members(keys, spec.member)

    @classmethod
    def from_members(cls, members, verbose=False):
        """The ensemble of fitted single-network models (say, fitted in separate processes or on
        separate machines, each with one of :meth:`member_seeds`): each member's posterior as it
        is, combined as :meth:`fit` combines its own. The members must be fitted instances of the
        ensemble's member class with the same parameters but ``random_state`` (and ``verbose``)
        and the same inputs: features, input scaling (and classes). The ensemble takes those
        parameters, ``n_members=len(members)`` and ``random_state=None``."""
        import jax

        members = list(members) if isinstance(members, (list, tuple)) else members
        if not isinstance(members, list) or not members:
            raise ValueError(f"members must be a non-empty list of fitted models, got {type(members).__name__}")
        kind = cls._member_class
        for i, member in enumerate(members):
            if type(member) is not kind:
                raise TypeError(f"members[{i}] is a {type(member).__name__}; a {cls.__name__} combines "
                                f"{kind.__name__} models")
            check_is_fitted(member, "state_")
        first = members[0].get_params(deep=False)
        own = {name: first[name] for name in cls._get_param_names()
               if name in first and name not in ("verbose", "random_state")}
        ensemble = cls(**own, n_members=len(members), verbose=verbose)
        expected = ensemble._member(None).get_params(deep=False)
        for i, member in enumerate(members):
            params = member.get_params(deep=False)
            for name, value in expected.items():
                if name not in ("random_state", "verbose") and not _same_param(params[name], value):
                    raise ValueError(f"members[{i}] has {name}={params[name]!r} where the ensemble's members have "
                                     f"{value!r}" + ("" if i else f" (a {cls.__name__} has no {name} parameter)"))
            for name in (*cls._member_fitted, "feature_names_in_"):
                if not _same_fitted(getattr(member, name, None), getattr(members[0], name, None)):
                    raise ValueError(f"members[{i}]'s {name} differs from members[0]'s: the members must be fitted "
                                     "on the same features (and, for input scaling, the same rows or statistics)")
            if member.spec_ != members[0].spec_:
                raise ValueError(f"members[{i}]'s network differs from members[0]'s")
        for name in (*cls._member_fitted, "feature_names_in_"):
            if hasattr(members[0], name):
                setattr(ensemble, name, getattr(members[0], name))
        ensemble.spec_ = pbp_ensemble.PBPEnsembleSpec(member=members[0].spec_, n_members=len(members))
        ensemble.state_ = pbp_ensemble.stack([jax.device_get(m.state_) for m in members])
        ensemble.n_rejected_ = int(np.sum(count_rejections(ensemble.state_)))
        per_epoch = [list(getattr(m, "rejected_per_epoch_", [])) for m in members]
        ensemble.rejected_per_epoch_ = [int(sum(counts)) for counts in
                                        itertools.zip_longest(*per_epoch, fillvalue=0)]
        return ensemble

    @property
    def members_(self) -> list:
        """The members as fitted single-network models (sharing this model's scaling)."""
        return self._fitted_members(feature_names=True)

    def _fitted_members(self, feature_names: bool) -> list:
        check_is_fitted(self, "state_")
        members = []
        for i in range(self.spec_.n_members):
            member = self._member(None)
            for name in self._member_fitted:
                setattr(member, name, getattr(self, name))
            if feature_names and hasattr(self, "feature_names_in_"):
                member.feature_names_in_ = self.feature_names_in_
            member.state_ = pbp_ensemble.unstack(self.state_, i)
            member.spec_ = self.spec_.member
            member.n_rejected_ = int(count_rejections(member.state_))
            members.append(member)
        return members


@register_estimator
class PBPEnsembleRegressor(PBPMembers, OnlineRegressor):
    """An ensemble of independently initialised PBP networks, combined as a mixture.

    Each member is a :class:`PBPRegressor` posterior trained on the same data with its own
    initial weights and shuffling. The predictive distribution is the equally weighted
    mixture of the members' Gaussians, reported by its first two moments:
    mean = avg m_k; epistemic = avg v_k + Var_k(m_k); noise = avg noise_k.

    Parameters are those of :class:`PBPRegressor` plus ``n_members`` (default 5). The members
    train together, as one batched program (:mod:`probprop.learners.pbp_ensemble`); ``members_``
    gives each as a fitted :class:`PBPRegressor`.
    """

    _member_class = PBPRegressor
    _learner_name = "pbp_ensemble"
    _propagations = PROPAGATIONS
    _progress_label = "PBP ensemble epochs"
    _saved = ("n_rejected_", "rejected_per_epoch_")

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

    def _validated_params(self) -> dict:
        n_members = _checks.positive_int("n_members", self.n_members)
        params = self._member(None)._validated_params()
        return {**params, "n_members": n_members}

    def _member(self, random_state) -> PBPRegressor:
        return self._member_class(hidden=self.hidden, epochs=self.epochs, activation=self.activation, dtype=self.dtype,
                            constant_tol=self.constant_tol, random_state=random_state)

    def _make_spec(self, n_in, params):
        member = self._member(None)
        member.y_scale_ = self.y_scale_
        return pbp_ensemble.PBPEnsembleSpec(member=member._make_spec(n_in, params), n_members=params["n_members"])

    def _spec_disagreements(self, spec, checked: dict) -> list[str]:
        """The base checks, plus every field of the member network that these parameters would
        not make (a file's member spec with, say, a heteroscedastic likelihood or SEP sites is
        refused: the ensemble has no such parameter and would not read it right)."""
        out = super()._spec_disagreements(spec, checked)
        member = getattr(spec, "member", None)
        if isinstance(member, pbp.PBPSpec):
            expected = _spec_from_params(self._member(None), member.n_in, checked)
            out += _field_disagreements(member, expected, out, prefix="member ")
        return out


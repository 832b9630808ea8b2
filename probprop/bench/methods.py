"""Method adapters for the UCI benchmark: one small function per method.

Every adapter has the signature

    fit_predict(X_train, y_train, X_test, info, seed) -> (mean, std, fit_seconds)

or ``(mean, std, fit_seconds, extra)`` with ``extra`` a dict of results columns that the adapter
fills itself (``pbp2-sep-het-val``: the ``epochs`` it chose, instead of the protocol's).

with ``info`` a :class:`DatasetInfo` (the dataset's name and the protocol's hidden units and
epochs) and ``seed`` the split index. ``mean`` and ``std`` are the Gaussian predictive
distribution on ``X_test`` in the units of ``y``; ``fit_seconds`` times training only.

:data:`METHODS` maps registry names to adapters; :data:`BATCHED` holds, for the methods that
can, an adapter fitting several splits of one dataset as one batched program. Optional methods (ngboost, pytagi) are
imported inside their adapter; :func:`check_available` says, in one line, why one cannot run.
"""

from __future__ import annotations

import importlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from probprop.preprocessing import standardisation

__all__ = [
    "DatasetInfo",
    "MethodUnavailable",
    "METHODS",
    "BATCHED",
    "LABELS",
    "REQUIRES",
    "check_available",
    "resolve_methods",
    "estimated_seconds",
]


class MethodUnavailable(RuntimeError):
    """The method's optional dependency is not importable here."""


@dataclass(frozen=True)
class DatasetInfo:
    """What an adapter may know about the dataset besides the arrays."""

    name: str
    n_hidden: int = 50
    n_epochs: int = 40
    n_features: int = 0
    n_train: int = 0
    tau_values: tuple[float, ...] = ()
    dropout_rates: tuple[float, ...] = ()


def _fit_predict(model, X_train, y_train, X_test):
    """Fit an estimator with ``predict(X, return_std=True)`` (probprop's, or a scikit-learn
    pipeline), time the fit, return (mean, std, fit_seconds)."""
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    mean, std = model.predict(X_test, return_std=True)
    return np.asarray(mean), np.asarray(std), fit_seconds


def _pbp_params(info: DatasetInfo, variant: str) -> dict:
    """PBPRegressor parameters of the PBP methods: the paper's protocol (one hidden layer of
    ``info.n_hidden`` ReLU units, ``info.n_epochs`` epochs, learned noise); ``refscale`` leaves
    only exactly constant columns unscaled, as the reference code (``constant_tol=0``: on
    naval, a column whose std is rounding noise, ~1e-13, is then divided by it and becomes a
    second constant input next to the bias); ``pbp2`` / ``pbp3`` have two / three hidden layers
    of that width; ``pbp-sep`` is PBP with stochastic EP (``inference="sep"``); ``pbp-het`` heteroscedastic PBP
    (a second output for the log noise variance, ``heteroscedastic=True``; ``-cut``: with
    ``noise_feedback=False``, the noise output's feedback into the hidden layers cut); ``-single`` marks the same model fitted one split at a time (never batched:
    the benchmark's check that batched fits equal single ones)."""
    width = int(info.n_hidden)
    params = {"hidden": (width,), "epochs": int(info.n_epochs)}
    variant = variant.removesuffix("-single")
    if variant == "pbp-refscale":
        params["constant_tol"] = 0.0
    elif variant == "pbp-sep":
        params["inference"] = "sep"
    elif variant == "pbp-het":
        params["heteroscedastic"] = True
    elif variant in ("pbp-sep-het", "pbp-sep-het-cut"):
        params["heteroscedastic"] = True
        params["inference"] = "sep"
        params["noise_feedback"] = variant == "pbp-sep-het"
    elif variant in ("pbp2", "pbp3"):
        params["hidden"] = (width,) * int(variant[-1])
    return params


def _pbp_together(variant: str):
    def adapter(sets, info: DatasetInfo, seeds):
        """Fit one PBP model per ``(X_train, y_train, X_test)`` in ``sets`` (``random_state`` =
        its seed) as one batched program (:func:`probprop.fit_together`); each model's
        ``fit_seconds`` is the batch's fit time divided by the number of models."""
        from probprop.estimators import PBPRegressor, fit_together

        params = _pbp_params(info, variant)
        models = [PBPRegressor(random_state=seed, **params) for seed in seeds]
        start = time.perf_counter()
        fit_together(models, [s[0] for s in sets], [s[1] for s in sets])
        share = (time.perf_counter() - start) / len(models)
        results = []
        for model, (_, _, X_test) in zip(models, sets):
            mean, std = model.predict(X_test, return_std=True)
            results.append((np.asarray(mean), np.asarray(std), share))
        return results

    adapter.__name__ = f"{variant.replace('-', '_')}_together"
    return adapter


def _pbp_single(variant: str):
    together = _pbp_together(variant)

    def adapter(X_train, y_train, X_test, info: DatasetInfo, seed: int):
        return together([(X_train, y_train, X_test)], info, [seed])[0]

    adapter.__name__ = variant.replace("-", "_")
    adapter.__doc__ = _pbp_params.__doc__
    return adapter


pbp, pbp_refscale, pbp_sep, pbp_het, pbp_sep_het, pbp_sep_het_cut, pbp2, pbp3, pbp2_single, pbp3_single = (
    _pbp_single(v) for v in ("pbp", "pbp-refscale", "pbp-sep", "pbp-het", "pbp-sep-het", "pbp-sep-het-cut", "pbp2", "pbp3",
                             "pbp2-single", "pbp3-single"))


def _validation_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(val, fit)``: a random ``fraction`` of ``n`` training rows (seeded by the
    split) that the adapters choosing a hyperparameter hold out; never test rows. (The learners'
    own searches use :func:`probprop.learners._sgd.holdout`, drawn with a JAX key.)"""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(fraction * n)
    return perm[:n_val], perm[n_val:]


#: The epoch counts ``pbp2-sep-het-val`` and ``pbp2-sep-het-cut-val`` choose from: checkpoints of
#: one run on four fifths of the training split, scored by the test log-likelihood on the other fifth.
PBP_EPOCH_GRID = (40, 100, 200, 400)

#: The methods that choose their epochs on validation data (:data:`PBP_EPOCH_GRID`,
#: :data:`ENSEMBLE_EPOCH_GRID`, :data:`TAGI_EPOCH_GRID`) and fill the results row's ``epochs``.
EPOCHS_ON_VALIDATION = ("pbp2-sep-het-val", "pbp2-sep-het-cut-val", "ensemble2-val", "tagi-he-prec-val", "pytagi-val")


def _pbp2_sep_het_val(feedback: bool):
    def adapter(X_train, y_train, X_test, info: DatasetInfo, seed: int):
        return _epochs_on_validation(X_train, y_train, X_test, info, seed, feedback)

    adapter.__name__ = "pbp2_sep_het_val" if feedback else "pbp2_sep_het_cut_val"
    adapter.__doc__ = _epochs_on_validation.__doc__
    return adapter


def _epochs_on_validation(X_train, y_train, X_test, info: DatasetInfo, seed: int, feedback: bool):
    """Heteroscedastic PBP with stochastic EP, two hidden layers of ``info.n_hidden`` units
    (``noise_feedback=False`` for ``pbp2-sep-het-cut-val``), and
    the number of epochs chosen from :data:`PBP_EPOCH_GRID` on validation data carved from the
    training split: one run on a random four fifths, its mean log predictive density on the other
    fifth scored at each checkpoint (``partial_fit`` continues the run; a checkpoint whose
    predictions overflow, a diverged run, scores -inf and ends it), then a fit of the best number
    of epochs (the smaller on a tie) on the whole training split (where that fit diverges on its
    own training rows, the next best number; a FloatingPointError when all do). Budget: at most
    400 epochs on 80 % of the rows plus 400 on all of them; ``fit_seconds`` counts everything. The
    results row's ``epochs`` is the number chosen."""
    from probprop.estimators import PBPRegressor

    start = time.perf_counter()
    val, fit = _validation_rows(len(y_train), 0.2, seed)
    X_fit, y_fit, X_val, y_val = X_train[fit], y_train[fit], X_train[val], y_train[val]
    params = {"hidden": (int(info.n_hidden),) * 2, "inference": "sep", "heteroscedastic": True,
              "noise_feedback": feedback, "random_state": seed}

    def scored(model) -> float:
        try:
            value = model.score(X_val, y_val)
        except ValueError:  # predictions overflow: the run diverged
            return -np.inf
        return value if np.isfinite(value) else -np.inf

    model = PBPRegressor(epochs=PBP_EPOCH_GRID[0], **params).fit(X_fit, y_fit)
    scores = [scored(model)]
    for done, epochs in itertools.pairwise(PBP_EPOCH_GRID):
        if scores[-1] == -np.inf:
            break
        model.partial_fit(X_fit, y_fit, epochs=epochs - done)
        scores.append(scored(model))
    for index in np.argsort(-np.asarray(scores), kind="stable"):  # best first; fewer epochs on a tie
        final = PBPRegressor(epochs=PBP_EPOCH_GRID[index], **params).fit(X_train, y_train)
        try:
            final.predict(X_train)  # refuses overflowing predictions: this fit diverged
        except ValueError:
            continue
        break
    else:
        raise FloatingPointError(f"every epoch count tried ({list(PBP_EPOCH_GRID[:len(scores)])}) "
                                 "diverged on the whole training split")
    fit_seconds = time.perf_counter() - start
    mean, std = final.predict(X_test, return_std=True)
    return np.asarray(mean), np.asarray(std), fit_seconds, {"epochs": int(final.epochs)}


pbp2_sep_het_val, pbp2_sep_het_cut_val = _pbp2_sep_het_val(True), _pbp2_sep_het_val(False)


#: The epoch counts ``ensemble2-val`` chooses from (separate fits: the ensemble has no ``partial_fit``).
ENSEMBLE_EPOCH_GRID = (100, 200, 400, 1000)


def _best_of_separate_fits(grid, fit_one, X_train, y_train, seed: int):
    """The number of epochs chosen from ``grid`` on validation data carved from the training split,
    one separate fit per count: ``fit_one(epochs, X, y)`` (a fitted estimator) on a random four
    fifths, each scored by the mean log predictive density on the other fifth (a fit that raises
    ValueError, e.g. DivergedError, overflowing predictions or a non-finite score: -inf), then a fit
    of the best count (the smaller on a tie) on the whole training split (where that fit fails, or
    its training predictions overflow, the next best). Returns ``(final, epochs, fit_seconds)``,
    the seconds counting every fit (not the final check); a FloatingPointError when no count scores
    finite on validation or every final fit fails."""
    start = time.perf_counter()
    val, fit = _validation_rows(len(y_train), 0.2, seed)
    scores = []
    for epochs in grid:
        try:
            value = fit_one(epochs, X_train[fit], y_train[fit]).score(X_train[val], y_train[val])
        except ValueError:
            value = -np.inf
        scores.append(value if np.isfinite(value) else -np.inf)
    if not np.isfinite(max(scores)):
        raise FloatingPointError(f"no epoch count of {list(grid)} gave a finite validation score")
    failure = None
    for index in np.argsort(-np.asarray(scores), kind="stable"):  # best first; fewer epochs on a tie
        epochs = grid[index]
        try:
            final = fit_one(epochs, X_train, y_train)
            fit_seconds = time.perf_counter() - start
            final.predict(X_train)  # refuses overflowing predictions
        except ValueError as err:
            failure = err
            continue
        return final, epochs, fit_seconds
    raise FloatingPointError(f"every epoch count tried ({list(grid)}) failed on the whole "
                             f"training split; the last: {failure}") from failure


def ensemble2_val(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """The deep ensemble (5 heteroscedastic MAP networks, Adam at its default step size) with two
    hidden layers of ``info.n_hidden`` units and the number of epochs chosen from
    :data:`ENSEMBLE_EPOCH_GRID` on validation data (:func:`_best_of_separate_fits`). Budget: the
    grid's epochs on 80 % of the rows plus at most 1,000 on all of them. The results row's
    ``epochs`` is the count chosen."""
    from probprop.estimators import DeepEnsembleRegressor

    params = {"hidden": (int(info.n_hidden),) * 2, "random_state": seed}
    final, epochs, fit_seconds = _best_of_separate_fits(
        ENSEMBLE_EPOCH_GRID, lambda epochs, X, y: DeepEnsembleRegressor(epochs=epochs, **params).fit(X, y),
        X_train, y_train, seed)
    mean, std = final.predict(X_test, return_std=True)
    return np.asarray(mean), np.asarray(std), fit_seconds, {"epochs": int(epochs)}


def _pbp_sharded(shards: int):
    def adapter(X_train, y_train, X_test, info: DatasetInfo, seed: int):
        """PBP with stochastic EP (the paper's protocol otherwise) fitted by sharded SEP over
        ``shards`` shards in the worker's process (``probprop.learners.pbp_sharded``: the same
        numbers as one Ray actor per shard, to rounding)."""
        from probprop.estimators import PBPRegressor

        model = PBPRegressor(random_state=seed, shards=shards, **_pbp_params(info, "pbp-sep"))
        return _fit_predict(model, X_train, y_train, X_test)

    adapter.__name__ = f"pbp_sep_k{shards}"
    return adapter


#: Sharded SEP with K shards: ``pbp-sep-k2``, ``-k4``, ``-k8`` (beside ``pbp-sep``, serial SEP).
SHARDED = {f"pbp-sep-k{k}": _pbp_sharded(k) for k in (2, 4, 8)}


def pbp_ensemble(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """Five independently initialised PBP networks (paper protocol each), mixed."""
    from probprop.estimators import PBPEnsembleRegressor

    model = PBPEnsembleRegressor(
        n_members=5, hidden=(int(info.n_hidden),), epochs=int(info.n_epochs), random_state=seed
    )
    return _fit_predict(model, X_train, y_train, X_test)


def tagi(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """probprop's TAGI: 1 hidden layer, batch 10, ``info.n_epochs`` epochs, sigma_v chosen on a
    validation tenth of the training split."""
    from probprop.estimators import TAGIRegressor

    model = TAGIRegressor(hidden=(int(info.n_hidden),), epochs=int(info.n_epochs), random_state=seed)
    return _fit_predict(model, X_train, y_train, X_test)


def tagi_prec(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """The ``tagi`` adapter with the mini-batch rows combined in precision form
    (``variance_update="precision"``)."""
    from probprop.estimators import TAGIRegressor

    model = TAGIRegressor(hidden=(int(info.n_hidden),), epochs=int(info.n_epochs), variance_update="precision",
                          random_state=seed)
    return _fit_predict(model, X_train, y_train, X_test)


def tagi_he_prec(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """The ``tagi-he`` adapter (pytagi-like He start) with the precision-form batch update."""
    from probprop.estimators import TAGIRegressor

    model = TAGIRegressor(hidden=(int(info.n_hidden),), epochs=int(info.n_epochs), init_gain=1.0,
                          init_bias_variance=1.0 / max(int(info.n_features), 1), variance_update="precision",
                          random_state=seed)
    return _fit_predict(model, X_train, y_train, X_test)


#: The epoch counts ``tagi-he-prec-val`` chooses from (separate fits, no padding: ``partial_fit``
#: pads its rows to a power of two, which costs up to twice the work on protein and naval).
TAGI_EPOCH_GRID = (40, 100, 200, 400)


def tagi_he_prec_val(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """The ``tagi-he-prec`` network (He-like start, precision-form batch update, one hidden layer
    of ``info.n_hidden`` units, batch 10) with the number of epochs chosen from
    :data:`TAGI_EPOCH_GRID` on validation data (:func:`_best_of_separate_fits`). sigma_v is
    chosen once, by TAGIRegressor's own search in the first fit that succeeds (normally the grid's
    first count on the four fifths; the search holds out a tenth of them), and kept by every later fit. Budget: the
    search (5 sigma_v x 40 epochs on 72 % of the rows), the grid's 740 epochs on 80 % and at most
    400 on all of them. The results row's ``epochs`` is the count chosen."""
    from probprop.estimators import TAGIRegressor

    params = {"hidden": (int(info.n_hidden),), "init_gain": 1.0,
              "init_bias_variance": 1.0 / max(int(info.n_features), 1), "variance_update": "precision",
              "random_state": seed}

    def fit_one(epochs, X, y):
        model = TAGIRegressor(epochs=epochs, **params).fit(X, y)
        params.setdefault("sigma_v", model.sigma_v_)  # the first fit's search: kept from then on
        return model

    final, epochs, fit_seconds = _best_of_separate_fits(TAGI_EPOCH_GRID, fit_one, X_train, y_train, seed)
    mean, std = final.predict(X_test, return_std=True)
    return np.asarray(mean), np.asarray(std), fit_seconds, {"epochs": int(epochs)}


def tagi_het(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """probprop's heteroscedastic TAGI (AGVI noise unit): 1 hidden layer, batch 10,
    ``info.n_epochs`` epochs, no noise level to choose."""
    from probprop.estimators import TAGIRegressor

    model = TAGIRegressor(hidden=(int(info.n_hidden),), epochs=int(info.n_epochs), heteroscedastic=True,
                          random_state=seed)
    return _fit_predict(model, X_train, y_train, X_test)


def tagi_he(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """The ``tagi`` adapter with pytagi's He initialisation as far as one bias variance allows:
    weight variance 1 / fan_in (``init_gain=1``, TAGI-MAT: 0.25 / fan_in) and bias variance
    1 / n_features (pytagi: 1 / fan_in per layer; TAGI-MAT: 0.01)."""
    from probprop.estimators import TAGIRegressor

    model = TAGIRegressor(hidden=(int(info.n_hidden),), epochs=int(info.n_epochs), init_gain=1.0,
                          init_bias_variance=1.0 / max(int(info.n_features), 1), random_state=seed)
    return _fit_predict(model, X_train, y_train, X_test)


def _estimator(name: str, **kwargs):
    """An adapter that fits ``probprop.<name>(hidden=(n_hidden,), random_state=seed, **kwargs)``."""

    def adapter(X_train, y_train, X_test, info: DatasetInfo, seed: int):
        from probprop import estimators

        model = getattr(estimators, name)(hidden=(int(info.n_hidden),), random_state=seed, **kwargs)
        return _fit_predict(model, X_train, y_train, X_test)

    adapter.__name__ = adapter.__qualname__ = f"{name}_{'_'.join(f'{k}_{v}' for k, v in kwargs.items())}"
    adapter.__doc__ = f"probprop.{name} with its documented defaults{', ' if kwargs else ''}" + ", ".join(
        f"{k}={v!r}" for k, v in kwargs.items()
    )
    return adapter


#: MC dropout trains 100x the protocol's 40 epochs (GAL-REPO's result files) on datasets up to
#: this many training rows, 10x above it (GAL-PAPER's "10x"; 100x would take hours per split
#: on these CPUs). Yacht, for one, is far from converged after 400 epochs of 3 mini-batches.
MCDROPOUT_LONG_MAX_ROWS = 2000


def mcdropout_epochs(info: DatasetInfo) -> int:
    return 4000 if info.n_train <= MCDROPOUT_LONG_MAX_ROWS else 400


def mcdropout(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """MC dropout with the authors' grid protocol: the dataset's ``dropout_rates.txt`` x
    ``tau_values.txt`` (4 x 3 points, tau in 1/y^2) searched on an 80/20 split of the training
    data (the estimator's default grid where the files are missing), 100 passes.

    Epochs: :func:`mcdropout_epochs` (GAL-REPO's result files are named ``100_xepochs``, i.e.
    4000 epochs; the large datasets get the 10x = 400 of GAL-PAPER for compute)."""
    from probprop.estimators import MCDropoutRegressor

    model = MCDropoutRegressor(
        hidden=(int(info.n_hidden),),
        epochs=mcdropout_epochs(info),
        dropout=info.dropout_rates or "select",
        tau=info.tau_values or "select",
        random_state=seed,
    )
    return _fit_predict(model, X_train, y_train, X_test)


def bayesridge(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """scikit-learn's BayesianRidge on standardised inputs; ``return_std`` includes the noise."""
    from sklearn.linear_model import BayesianRidge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return _fit_predict(make_pipeline(StandardScaler(), BayesianRidge()), X_train, y_train, X_test)


def ngboost(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """NGBoost with its default settings and a Normal distribution (``pred_dist(X).params``)."""
    try:
        from ngboost import NGBRegressor
        from ngboost.distns import Normal
    except ImportError as err:
        raise MethodUnavailable(f"ngboost is not importable here ({err}); pip install ngboost") from err

    model = NGBRegressor(Dist=Normal, random_state=seed, verbose=False)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    params = model.pred_dist(X_test).params
    return np.asarray(params["loc"]), np.asarray(params["scale"]), fit_seconds


def import_pytagi():
    """Import pytagi. Its extension links libnccl.so.2 and libmpi_cxx.so.40: the first comes
    with the ``nvidia-nccl-cu12`` wheel, which is loaded here from its package folder so that no
    ``LD_LIBRARY_PATH`` is needed; the second is a system library (Debian ``libopenmpi3``)."""
    import ctypes
    import glob
    import os

    try:
        import nvidia.nccl

        for folder in nvidia.nccl.__path__:
            for lib in sorted(glob.glob(os.path.join(folder, "lib", "libnccl.so*"))):
                ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                break
    except (ImportError, OSError):
        pass  # the import below then says what is missing
    import pytagi as module

    return module


#: sigma_v candidates of the pytagi adapter (those of probprop's TAGIRegressor).
PYTAGI_SIGMA_V = (0.1, 0.2, 0.3, 0.5, 0.7)


def _pytagi_train(Xs, ys, n_hidden: int, epochs: int, sigma_v: float, seed: int, batch: int = 10):
    """A pytagi 1-hidden-layer network (MixtureReLU: the exact rectified-Gaussian moments, the
    moment map probprop's TAGI uses; pytagi's default He initialisation) trained ``epochs``
    epochs in shuffled mini-batches of ``batch`` rows with a fixed sigma_v."""
    pytagi = import_pytagi()
    from pytagi.nn import Linear, MixtureReLU, OutputUpdater, Sequential

    pytagi.manual_seed(int(seed))
    net = Sequential(Linear(Xs.shape[1], n_hidden), MixtureReLU(), Linear(n_hidden, 1))
    net.set_threads(1)
    updater = OutputUpdater(net.device)
    rng = np.random.default_rng(seed)
    X32, y32 = Xs.astype(np.float32), ys.astype(np.float32)
    for _ in range(epochs):
        order = rng.permutation(len(ys))
        for start in range(0, len(ys), batch):
            rows = order[start:start + batch]
            net(X32[rows].ravel())
            updater.update(output_states=net.output_z_buffer, mu_obs=y32[rows],
                           var_obs=np.full(len(rows), sigma_v**2, np.float32),
                           delta_states=net.input_delta_z_buffer)
            net.backward()
            net.step()
    return net


def _pytagi_predict(net, Xs, batch: int = 10):
    """Epistemic mean and variance, in chunks no larger than the training batch (pytagi sizes
    its buffers by the first batch it sees)."""
    X32 = Xs.astype(np.float32)
    means, variances = [], []
    for start in range(0, len(X32), batch):
        m, v = net(X32[start:start + batch].ravel())
        means.append(np.asarray(m, np.float64))
        variances.append(np.asarray(v, np.float64))
    return np.concatenate(means), np.concatenate(variances)


def _standardiser(X, y):
    """``(scale, y_mean, y_std)`` from training statistics: only an exactly constant column (or
    target) keeps scale 1 (:func:`probprop.preprocessing.standardisation`, ``constant_tol=0``)."""
    x_mean, x_std = standardisation(X, constant_tol=0.0)
    (y_mean,), (y_std,) = standardisation(np.reshape(y, (-1, 1)), constant_tol=0.0)
    return lambda A: (A - x_mean) / x_std, float(y_mean), float(y_std)


def _pytagi_sigma_v(X, y, hidden: int, epochs: int, seed: int) -> float:
    """sigma_v from :data:`PYTAGI_SIGMA_V` by the log-likelihood of ``epochs``-epoch fits on a random
    tenth of ``(X, y)`` (the rest standardised on its own), in their standardised units."""
    from probprop.metrics.scoring import log_likelihood

    val, fit = _validation_rows(len(y), 0.1, seed)
    scale, y_mean, y_std = _standardiser(X[fit], y[fit])
    scores = []
    for sigma_v in PYTAGI_SIGMA_V:
        net = _pytagi_train(scale(X[fit]), (y[fit] - y_mean) / y_std, hidden, epochs, sigma_v, seed)
        m, v = _pytagi_predict(net, scale(X[val]))
        diverged = not (np.all(np.isfinite(m)) and np.all(np.isfinite(v)) and np.all(v + sigma_v**2 > 0))
        scores.append(-np.inf if diverged else log_likelihood((y[val] - y_mean) / y_std, m, np.sqrt(v + sigma_v**2)))
    return PYTAGI_SIGMA_V[int(np.argmax(scores))]


class _PytagiModel:
    """A pytagi network fitted on standardised ``(X, y)`` with a fixed sigma_v, behind the two
    methods :func:`_best_of_separate_fits` calls: ``predict(X, return_std=True)`` in the data's
    units and ``score`` (mean Gaussian log predictive density)."""

    def __init__(self, X, y, hidden: int, epochs: int, sigma_v: float, seed: int):
        self._scale, self._y_mean, self._y_std = _standardiser(X, y)
        self.sigma_v = sigma_v
        self._net = _pytagi_train(self._scale(X), (y - self._y_mean) / self._y_std, hidden, epochs, sigma_v, seed)

    def moments(self, X):
        """Predictive mean and standard deviation in the data's units, as pytagi gives them."""
        m, v = _pytagi_predict(self._net, self._scale(np.asarray(X, np.float64)))
        return self._y_mean + self._y_std * m, self._y_std * np.sqrt(v + self.sigma_v**2)

    def predict(self, X, return_std: bool = False):
        """:meth:`moments`, refusing non-finite ones (a diverged fit) with a ValueError, as
        probprop's estimators do."""
        mean, std = self.moments(X)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError("pytagi's predictions are not finite: the fit diverged")
        return (mean, std) if return_std else mean

    def score(self, X, y) -> float:
        from probprop.metrics.scoring import log_likelihood

        return log_likelihood(y, *self.predict(X, return_std=True))


def pytagi(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """TAGI through pytagi, with the protocol of the ``tagi`` adapter: 1 hidden layer of
    ``info.n_hidden`` units, batch 10, ``info.n_epochs`` epochs, sigma_v chosen from
    :data:`PYTAGI_SIGMA_V` by log-likelihood on a random tenth of the training split (the rest
    standardised on its own), then a fit on the whole training split. float32 (pytagi's)."""
    check_available("pytagi")
    X_train, y_train, X_test = (np.asarray(a, np.float64) for a in (X_train, y_train, X_test))
    start = time.perf_counter()
    hidden, epochs = int(info.n_hidden), int(info.n_epochs)
    sigma_v = _pytagi_sigma_v(X_train, y_train, hidden, epochs, seed)
    model = _PytagiModel(X_train, y_train, hidden, epochs, sigma_v, seed)
    fit_seconds = time.perf_counter() - start
    mean, std = model.moments(X_test)  # a diverged fit's row is kept, as before
    return mean, std, fit_seconds


def pytagi_val(X_train, y_train, X_test, info: DatasetInfo, seed: int):
    """pytagi given ``tagi-he-prec-val``'s budget: the ``pytagi`` network with the number of epochs
    chosen from :data:`TAGI_EPOCH_GRID` on validation data (:func:`_best_of_separate_fits`, the
    same rows, order and rule). sigma_v is chosen once, by the ``pytagi`` adapter's search at the
    grid's first count on the four fifths, and kept by every later fit. The results row's
    ``epochs`` is the count chosen. float32 (pytagi's)."""
    check_available("pytagi")
    X_train, y_train, X_test = (np.asarray(a, np.float64) for a in (X_train, y_train, X_test))
    hidden, chosen = int(info.n_hidden), {}

    def fit_one(epochs, X, y):
        if "sigma_v" not in chosen:  # the first fit's search: kept from then on
            chosen["sigma_v"] = _pytagi_sigma_v(X, y, hidden, epochs, seed)
        return _PytagiModel(X, y, hidden, epochs, chosen["sigma_v"], seed)

    final, epochs, fit_seconds = _best_of_separate_fits(TAGI_EPOCH_GRID, fit_one, X_train, y_train, seed)
    mean, std = final.predict(X_test, return_std=True)
    return mean, std, fit_seconds, {"epochs": int(epochs)}


METHODS: dict[str, Callable] = {
    "pbp": pbp,
    "pbp-refscale": pbp_refscale,
    "pbp-sep": pbp_sep,
    "pbp-het": pbp_het,
    "pbp-sep-het": pbp_sep_het,
    "pbp-sep-het-cut": pbp_sep_het_cut,
    "pbp2-sep-het-val": pbp2_sep_het_val,
    "pbp2-sep-het-cut-val": pbp2_sep_het_cut_val,
    **SHARDED,
    "pbp2": pbp2,
    "pbp3": pbp3,
    "pbp2-single": pbp2_single,
    "pbp3-single": pbp3_single,
    "pbp-ensemble": pbp_ensemble,
    "tagi": tagi,
    "tagi-het": tagi_het,
    "tagi-he": tagi_he,
    "tagi-prec": tagi_prec,
    "tagi-he-prec": tagi_he_prec,
    "tagi-he-prec-val": tagi_he_prec_val,
    "dvi": _estimator("DVIRegressor", heteroscedastic=False),
    "dvi-het": _estimator("DVIRegressor", heteroscedastic=True),
    "map": _estimator("MAPRegressor"),
    "laplace": _estimator("LaplaceRegressor"),
    "mcdropout": mcdropout,
    "ensemble": _estimator("DeepEnsembleRegressor"),
    "ensemble-select": _estimator("DeepEnsembleRegressor", learning_rate="select"),
    "ensemble2-val": ensemble2_val,
    "bayesridge": bayesridge,
    "ngboost": ngboost,
    "pytagi": pytagi,
    "pytagi-val": pytagi_val,
}

LABELS: dict[str, str] = {
    "pbp": "probprop PBP",
    "pbp-refscale": "probprop PBP, reference scaling",
    "pbp-sep": "probprop PBP, stochastic EP",
    "pbp-het": "probprop PBP (heterosc.)",
    "pbp-sep-het": "probprop PBP, stochastic EP (heterosc.)",
    "pbp-sep-het-cut": "probprop PBP, stochastic EP (heterosc., cut)",
    "pbp2-sep-het-val": "probprop PBP, 2 layers, SEP (heterosc.), epochs on validation",
    "pbp2-sep-het-cut-val": "probprop PBP, 2 layers, SEP (heterosc., cut), epochs on validation",
    **{name: f"probprop PBP, sharded SEP, K = {name[-1]}" for name in SHARDED},
    "pbp2": "probprop PBP, 2 hidden layers",
    "pbp3": "probprop PBP, 3 hidden layers",
    "pbp2-single": "probprop PBP, 2 hidden layers, one split per fit",
    "pbp3-single": "probprop PBP, 3 hidden layers, one split per fit",
    "pbp-ensemble": "probprop PBP ensemble (5)",
    "tagi": "probprop TAGI",
    "tagi-het": "probprop TAGI (heterosc.)",
    "tagi-he": "probprop TAGI, He init",
    "tagi-prec": "probprop TAGI, precision-form batch update",
    "tagi-he-prec": "probprop TAGI, He init, precision-form batch update",
    "tagi-he-prec-val": "probprop TAGI, He init, precision form, epochs chosen on validation",
    "dvi": "probprop DVI (homosc.)",
    "dvi-het": "probprop DVI (heterosc.)",
    "map": "probprop MAP net",
    "laplace": "probprop last-layer Laplace (on the MAP net)",
    "mcdropout": "probprop MC dropout",
    "ensemble": "probprop deep ensemble (5)",
    "ensemble-select": "probprop deep ensemble (5), step size selected",
    "ensemble2-val": "probprop deep ensemble (5), 2 layers, epochs on validation",
    "bayesridge": "BayesianRidge",
    "ngboost": "NGBoost (ours)",
    "pytagi": "pytagi",
    "pytagi-val": "pytagi, epochs chosen on validation",
}

#: Methods that can fit several splits of one dataset as one batched program (same signature
#: as the others, but lists: ``(sets, info, seeds) -> [(mean, std, fit_seconds), ...]``).
BATCHED: dict[str, Callable] = {name: _pbp_together(name) for name in ("pbp", "pbp-refscale", "pbp-sep", "pbp-het", "pbp-sep-het",
                                                                       "pbp-sep-het-cut", "pbp2", "pbp3")}

#: The module each method needs beyond probprop's own dependencies.
REQUIRES: dict[str, str | None] = {name: None for name in METHODS} | {"ngboost": "ngboost", "pytagi": "pytagi",
                                                                                 "pytagi-val": "pytagi"}


def check_available(name: str) -> None:
    """Raise :class:`MethodUnavailable` with a one-line reason if ``name`` cannot run here."""
    resolve_methods([name])
    module = REQUIRES[name]
    if module is None:
        return
    try:
        import_pytagi() if module == "pytagi" else importlib.import_module(module)
    except Exception as err:  # a broken install can fail with more than ImportError
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MethodUnavailable(f"{name}: skipped, 'import {module}' failed ({reason})") from None


def resolve_methods(names) -> list[str]:
    """Validate method names (``"all"`` = every registered one); raise ValueError listing valid ones."""
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise ValueError(f"no method given; valid methods: {', '.join(METHODS)}")
    if names == ["all"]:
        return list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; valid methods: {', '.join(METHODS)}, all")
    return list(dict.fromkeys(names))


def _tagi_grid_epochs() -> float:
    """Full-data epochs of ``tagi-he-prec-val`` / ``pytagi-val``: the sigma_v search (5 fits at the
    grid's first count on 72 % of the rows), every count of :data:`TAGI_EPOCH_GRID` on 80 %, and at
    most the largest on all of them."""
    return 0.72 * 5 * TAGI_EPOCH_GRID[0] + 0.8 * sum(TAGI_EPOCH_GRID) + max(TAGI_EPOCH_GRID)


def estimated_seconds(name: str, info: DatasetInfo) -> float:
    """A rough single-core cost of one fit, used only to start the longest tasks first."""
    n, d = max(info.n_train, 1), max(info.n_features, 1)
    if name.startswith("pbp"):
        weights = info.n_hidden * (d + 1) + info.n_hidden + 1
        if name.startswith(("pbp2", "pbp3")):
            weights += (int(name[3]) - 1) * info.n_hidden * (info.n_hidden + 1)
        members = 5 if name == "pbp-ensemble" else 1
        if name in EPOCHS_ON_VALIDATION:  # SEP (~4x ADF) for up to 400 epochs on 80 % of the rows + 400 on all
            return 4 * n * 1.8 * PBP_EPOCH_GRID[-1] * (1.5e-6 + 7e-9 * weights) + 8.0
        return members * n * info.n_epochs * (1.5e-6 + 7e-9 * weights) + 4.0
    if name in ("tagi", "tagi-he"):
        return 6 * n * info.n_epochs * 1e-6 + 4.0
    if name == "tagi-het":
        return n * info.n_epochs * 1e-6 + 4.0
    if name == "tagi-he-prec-val":
        return n * _tagi_grid_epochs() * 1e-6 + 6.0
    if name == "mcdropout":
        # 12 grid points in one vmapped program (~5x one fit), then the final fit
        return 6 * mcdropout_epochs(info) * max(n, 128) * 8e-7 + 10.0
    if name == "ensemble2-val":  # 1,700 epochs on 80 % of the rows, up to 1,000 on all, 2 layers
        return 2.4 * n * 1000 * 4e-7 * 5 + 8.0
    if name == "ensemble-select":  # 4 step sizes on 80 % of the rows, then the final fit
        return 4.2 * n * 100 * 3e-7 * 5 + 8.0
    if name in ("dvi", "dvi-het", "map", "laplace", "ensemble"):
        return n * 100 * 3e-7 * (5 if name == "ensemble" else 1) + 5.0
    if name == "ngboost":
        return 10.0 + 500 * n * d * 4e-7  # 500 boosting rounds with a fixed per-round overhead
    if name == "pytagi":  # 5 sigma_v candidates on 90 % of the rows, then the final fit
        return 5.5 * n * info.n_epochs * 4e-6 + 2.0
    if name == "pytagi-val":
        return n * _tagi_grid_epochs() * 4e-6 + 2.0
    return 1e-6 * n * d

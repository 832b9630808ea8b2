"""Pool-based batch active learning for regression: which rows to label next.

    from probprop import PBPRegressor
    from probprop.active import select
    model = PBPRegressor().fit(X_labelled, y_labelled)
    picks = select(model, X_pool, 10, method="lcmd", random_state=0)   # indices into X_pool

Rules (``method``):

* ``"random"``: a uniform sample without replacement (the baseline every rule must beat);
* ``"variance"``: the ``batch_size`` rows with the largest epistemic variance (the model's
  uncertainty about f, ``predict_dist(X).epistemic_var``; the noise is not reducible by labels),
  any probprop regressor;
* ``"greedy"``: (:mod:`probprop.learners.acquisition`) the most uncertain row, then the
  posterior updated as if that row were labelled (with its predictive mean), then the most
  uncertain row under the updated posterior, and so on, so that a batch spreads out instead of
  piling onto one uncertain region; the online learners (PBP, TAGI);
* ``"reduction"``: greedy reduction of the pool's summed posterior variance (Cohn 1996's
  integrated variance): each pick is the candidate whose pseudo-labelled update leaves the least
  epistemic variance over the pool (estimated on :data:`REFERENCE` sampled pool rows, among
  :data:`CANDIDATES` sampled candidates), then the posterior is updated on it; unlike the rules
  above it prefers rows whose labels inform many others (representative rows) to outliers that
  are uncertain only about themselves; the online learners;
* ``"lcmd"``: (:func:`probprop.learners.acquisition.largest_cluster`) the largest-cluster-maximum-
  distance rule of Holzmüller et al. (JMLR 2023) on the model's own posterior kernel: each row is
  the gradient of its predicted mean with respect to the weight means, scaled by the weights'
  posterior standard deviations (:func:`~probprop.learners.acquisition.gradient_features`, sketched
  to :data:`FEATURES` dimensions), so the squared distance between two rows is the linearised
  posterior variance of f(x) - f(x'); the rows already labelled (``exclude``, and
  ``X_labelled``) are cluster centers, every pool row joins its nearest center, and each pick is
  the row farthest from its center in the cluster of largest summed squared distance, which then
  becomes a center. Batches spread over the input density rather than chasing outliers; the
  learners whose posterior has weight means and variances (PBP, TAGI).

``"lcmd"`` is the default: on the UCI pools it is the rule that beats random acquisition
(``docs/benchmarks/active-lcmd``); the rules that read only variances chase outliers.

The picks are deterministic given ``random_state`` (``"random"`` and ``"reduction"``'s samples
and ``"lcmd"``'s random sketch draw from it; ties go to the lower index), never repeat a row,
and never pick a row of ``exclude``.
"""

from __future__ import annotations

import numbers

import numpy as np

from probprop.estimators._api import check_is_fitted, check_random_state
from probprop.estimators.base import MomentRegressor, padded

__all__ = ["METHODS", "select"]

METHODS = ("random", "variance", "greedy", "reduction", "lcmd")

#: ``"reduction"`` scores at most this many candidate rows per batch (a seeded sample of the rows
#: left), each against this many reference rows (a seeded sample of the pool standing for it).
CANDIDATES, REFERENCE = 128, 256

#: ``"lcmd"``'s feature dimension: gradients of networks with more weights are sketched to this many
#: random projections (bmdal-reg's default sketch size).
FEATURES = 512


def select(model, X_pool, batch_size: int, *, method: str = "lcmd", random_state=None, exclude=None,
           X_labelled=None) -> np.ndarray:
    """Indices (into ``X_pool``) of the ``batch_size`` rows to label next (module docstring).

    ``model``: a fitted probprop regressor; ``X_pool``: the unlabelled rows, (n, n_features);
    ``exclude``: indices of rows not to pick (already labelled, say; ``"lcmd"`` keeps its picks
    away from them); ``X_labelled``: labelled rows outside the pool, for ``"lcmd"`` to keep away
    from too (the other rules ignore it). Raises ValueError naming
    the problem for a non-finite or wrongly shaped pool, a batch larger than the rows left, an
    unknown method or a model that cannot run the rule."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(model, MomentRegressor):
        raise ValueError(f"active learning here is for probprop regressors, got {type(model).__name__}")
    check_is_fitted(model, "state_")
    X = model._validate_X(X_pool)
    n = len(X)
    allowed = np.ones(n, bool)
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.size and (exclude.dtype.kind not in "iu" or exclude.min() < 0 or exclude.max() >= n):
            raise ValueError(f"exclude must hold row indices of the pool (0..{n - 1})")
        allowed[exclude.astype(np.int64)] = False
    left = int(allowed.sum())
    if batch_size > left:
        raise ValueError(f"batch_size {batch_size} is larger than the {left} pool rows left to pick")
    candidates = np.flatnonzero(allowed)
    if method == "random":
        return np.sort(check_random_state(random_state).choice(candidates, size=batch_size, replace=False))
    if method == "variance":
        var = model.predict_dist(X[candidates]).epistemic_var
        order = np.lexsort((candidates, -var))  # largest first, ties to the lower index
        return candidates[order[:batch_size]]
    if method == "greedy":
        picked, _ = _greedy(model, X[candidates], batch_size)
        return candidates[picked]
    if method == "lcmd":
        return _lcmd(model, X, batch_size, candidates, X_labelled, check_random_state(random_state))
    rng = check_random_state(random_state)
    scored = candidates if len(candidates) <= CANDIDATES else np.sort(rng.choice(candidates, CANDIDATES, replace=False))
    if batch_size > len(scored):
        raise ValueError(f"method 'reduction' scores at most {CANDIDATES} candidates per batch; batch_size "
                         f"{batch_size} is larger")
    reference = np.arange(n) if n <= REFERENCE else np.sort(rng.choice(n, REFERENCE, replace=False))
    picked, _ = _reduction(model, X, batch_size, scored, reference)
    return picked


def _reduction(model, X, batch_size, candidates, reference):
    """(picked rows of X, summed reference variance before each pick) by greedy variance reduction."""
    from probprop.learners import acquisition

    learner = _online(model, "reduction")
    Xs = model._standardise(X)
    indices, total = acquisition.variance_reduction(learner, model.state_, Xs, batch_size, candidates, reference)
    return np.asarray(indices, np.int64), np.asarray(total, np.float64)


def _lcmd(model, X, batch_size, candidates, X_labelled, rng):
    from probprop.learners import acquisition

    learner = model._learner()
    if learner.name not in acquisition.FEATURE_LEARNERS:
        raise ValueError(f"method 'lcmd' needs one network's posterior over weights (PBP, TAGI); {type(model).__name__} "
                         "has none: use method='variance'")
    rows = X
    if X_labelled is not None and np.shape(X_labelled)[:1] != (0,):  # no labelled rows outside the pool: none to add
        rows = np.concatenate([X, model._validate_X(X_labelled)])
    seed = int(rng.randint(2**31 - 1))
    features = np.asarray(acquisition.gradient_features(learner, model.state_, model._standardise(rows), FEATURES, seed))
    centers = np.setdiff1d(np.arange(len(rows)), candidates)  # excluded pool rows and X_labelled
    return acquisition.largest_cluster(features, batch_size, candidates, centers)


def _online(model, method):
    learner = model._learner()
    if learner.step is None:
        raise ValueError(f"method {method!r} needs an online learner (PBP, TAGI); {type(model).__name__} has none: "
                         "use method='variance'")
    return learner


def _greedy(model, X, batch_size):
    """(picked rows of X, summed pool variance before each pick) by the compiled greedy rule."""
    from probprop.learners import acquisition

    learner = _online(model, "greedy")
    Xp, valid = padded(model._standardise(X))
    indices, total = acquisition.greedy_variance(learner, model.state_, Xp, batch_size, valid)
    return np.asarray(indices, np.int64), np.asarray(total, np.float64)

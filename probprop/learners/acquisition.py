"""Batch acquisition by the posterior update itself: greedy posterior-variance reduction.

For a pool of unlabelled rows, pick the row whose prediction is most uncertain (largest
epistemic variance), update the posterior as if it were labelled, and pick the next from the
updated posterior; k picks make a batch. The label is not known, so the update uses the
predictive mean as the pseudo-label: for ADF the variance update barely depends on the label
(PBP's does only through the second derivative of log Z in the output mean, which for a
Gaussian likelihood it does not at all), and the variances are what the next pick reads. A batch
picked this way spreads over the regions the model is unsure about instead of piling onto one
(the failure of taking the top k variances at once). The rule is in the spirit of the
uncertainty-reduction batch methods surveyed by Holzmüller et al. (JMLR 2023), with the
model's own update standing in for a kernel's conditioning.

One compiled ``lax.scan`` over the k picks for any learner with an online ``step``
(:mod:`probprop.learners.base`); the pool is predicted once per pick.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.learners.base import Learner, bucket, float64

__all__ = ["gradient_features", "greedy_variance", "largest_cluster", "variance_reduction"]


@float64
def greedy_variance(learner: Learner, state, X, k: int, valid=None):
    """Pick ``k`` rows of the pool ``X`` (standardised, (n, d)) one at a time, each the largest
    epistemic variance under the posterior updated on the rows picked before (pseudo-labelled
    with their predictive means). ``valid`` (n,) marks the real rows of a padded pool.

    Returns ``(indices, pool_variance)``: the k picked rows in order, and the summed epistemic
    variance of the pool's valid rows before each pick (k,), which the picks drive down."""
    if learner.step is None:
        raise ValueError(f"the {learner.name} learner has no online step to condition on a picked row")
    X = jnp.asarray(X)
    valid = jnp.ones((X.shape[0],), bool) if valid is None else jnp.asarray(valid, bool)
    return _greedy(learner, state, X, int(k), valid)


@partial(jax.jit, static_argnums=(0, 3))
def _greedy(learner, state, X, k, valid):
    def body(carry, _):
        state, chosen = carry
        moments = learner.predict(state, X)
        var = jnp.where(valid, moments.epistemic_var, 0.0)
        score = jnp.where(chosen | ~valid, -jnp.inf, moments.epistemic_var)
        i = jnp.argmax(score)
        state = learner.step(state, X[i][None], moments.mean[i][None], jnp.ones((1,), bool))
        return (state, chosen.at[i].set(True)), (i, jnp.sum(var))

    _, (indices, total) = lax.scan(body, (state, jnp.zeros(X.shape[0], bool)), None, length=k)
    return indices, total


@float64
def variance_reduction(learner: Learner, state, X, k: int, candidates, reference):
    """Pick ``k`` of the ``candidates`` (indices into the pool ``X``, standardised) one at a time,
    each the one whose pseudo-labelled update leaves the smallest summed epistemic variance over
    the ``reference`` rows (indices into X: a sample of the pool standing for all of it), under
    the posterior updated on the picks before: greedy reduction of the pool's posterior variance
    (Cohn 1996's integrated variance, with the model's own update as the conditioning).

    Returns ``(indices, reference_variance)``: the k picked rows of X in order and the summed
    reference variance before each pick."""
    if learner.step is None:
        raise ValueError(f"the {learner.name} learner has no online step to condition on a picked row")
    return _reduction(learner, state, jnp.asarray(X), int(k), jnp.asarray(candidates), jnp.asarray(reference))


@partial(jax.jit, static_argnums=(0, 3))
def _reduction(learner, state, X, k, candidates, reference):
    Xc, Xr = X[candidates], X[reference]
    one = jnp.ones((1,), bool)

    def body(carry, _):
        state, chosen = carry
        base = jnp.sum(learner.predict(state, Xr).epistemic_var)
        mean = learner.predict(state, Xc).mean

        def left_after(x, y):
            return jnp.sum(learner.predict(learner.step(state, x[None], y[None], one), Xr).epistemic_var)

        totals = jax.vmap(left_after)(Xc, mean)
        i = jnp.argmin(jnp.where(chosen | ~jnp.isfinite(totals), jnp.inf, totals))
        state = learner.step(state, Xc[i][None], mean[i][None], one)
        return (state, chosen.at[i].set(True)), (candidates[i], base)

    _, (indices, total) = lax.scan(body, (state, jnp.zeros(Xc.shape[0], bool)), None, length=k)
    return indices, total


#: The learners whose state is one network's Gaussian posterior over weights (``means`` and
#: ``variances`` per layer), for :func:`gradient_features`. (An ensemble's stacked members are not:
#: the spread between the members' means is part of its epistemic variance, which these features
#: would leave out.)
FEATURE_LEARNERS = ("pbp", "tagi")

#: :func:`gradient_features` computes at most about this many gradient entries at once (rows per
#: chunk times weights; 8 bytes each in float64).
FEATURE_BUDGET = 2**24


@float64
def gradient_features(learner: Learner, state, X, dim: int = 512, seed: int = 0, chunk: int = 2048):
    """Rows ``X`` (standardised, (n, d)) as posterior-scaled gradient features (n, D): the gradient
    of the predicted mean with respect to the weight means, each entry times the weight's
    posterior standard deviation, so that ``phi(x) . phi(x')`` is the covariance of f(x) and f(x')
    under the weight posterior with the mean network linearised (``|phi(x)|^2`` is the linearised
    epistemic variance). With more than ``dim`` weights the features are sketched to ``dim``
    Gaussian random projections (seeded by ``seed``; inner products kept in expectation), as
    bmdal-reg sketches its gradient kernel (Holzmüller et al., JMLR 2023); the projection holds
    weights x ``dim`` numbers. Rows go through in chunks of at most ``chunk`` rows and about
    :data:`FEATURE_BUDGET` gradient entries, padded to a power of two, at least 8 (a few compiled programs
    for any number of rows). The learners of :data:`FEATURE_LEARNERS` (PBP, TAGI)."""
    if learner.name not in FEATURE_LEARNERS or not (hasattr(state, "means") and hasattr(state, "variances")):
        raise ValueError(f"gradient features need one network's posterior over weights ({', '.join(FEATURE_LEARNERS)}); "
                         f"the {learner.name} learner has none")
    X = jnp.asarray(X)
    n = X.shape[0]
    total = sum(int(m.size) for m in state.means)
    projection = None
    if total > dim:
        projection = jax.random.normal(jax.random.key(seed), (total, dim), state.means[0].dtype) / jnp.sqrt(dim)
    rows = bucket(max(1, min(int(chunk), FEATURE_BUDGET // total, n)))  # one compiled program across pool sizes
    out = []
    for start in range(0, n, rows):
        part = X[start:start + rows]
        short = rows - part.shape[0]
        if short:
            part = jnp.concatenate([part, jnp.zeros((short, X.shape[1]), X.dtype)])
        out.append(_features(learner, state, part, projection)[:rows - short])
    return jnp.concatenate(out) if out else jnp.zeros((0, dim if projection is not None else total))


@partial(jax.jit, static_argnums=(0,))
def _features(learner, state, X, projection):
    def mean_of(means, x):
        return learner.predict(state.replace(means=means), x[None]).mean[0]

    grads = jax.vmap(jax.grad(mean_of), in_axes=(None, 0))(tuple(state.means), X)
    phi = jnp.concatenate([(g * jnp.sqrt(v)).reshape(X.shape[0], -1) for g, v in zip(grads, state.variances)], axis=1)
    return phi if projection is None else phi @ projection


def largest_cluster(features, k: int, candidates, centers=()):
    """Largest-cluster-maximum-distance batch selection (LCMD; Holzmüller et al., JMLR 2023) on
    feature rows: every row belongs to its nearest center (the ``centers``, indices into
    ``features``: rows already labelled, and the picks so far); each pick is, in the cluster whose
    rows' squared distances to their center sum to the most, the row farthest from that center.
    Without centers the first pick is the row of largest norm (largest linearised variance for
    :func:`gradient_features`). Picks among ``candidates`` (indices, none of them a center) only,
    never twice; ties go to the lower index, also between clusters of equal size. NumPy, float64.
    Returns the k picked indices in order.

    Two choices where bmdal-reg's code differs from this (its paper's description): it takes the
    row of largest norm first even when there are centers, and it merges clusters of tied size.
    """
    F = np.asarray(features, np.float64)
    n = F.shape[0]
    allowed = np.zeros(n, bool)
    allowed[np.asarray(candidates, np.int64)] = True
    centers = np.asarray(centers, np.int64).ravel()
    if allowed[centers].any():
        raise ValueError("a row cannot be both a candidate and a center")
    if k > int(allowed.sum()):
        raise ValueError(f"cannot pick {k} rows from {int(allowed.sum())} candidates")
    sq = np.einsum("ij,ij->i", F, F)
    d2 = np.full(n, np.inf)
    owner = np.full(n, -1, np.int64)

    def absorb(new):
        """Distances to the new centers (rows of F) and reassignment where they are nearer."""
        nonlocal d2, owner
        for s in range(0, len(new), 256):
            block = new[s:s + 256]
            dist = np.maximum(sq[:, None] + sq[block][None, :] - 2.0 * F @ F[block].T, 0.0)
            j = np.argmin(dist, axis=1)
            best = dist[np.arange(n), j]
            nearer = best < d2
            d2 = np.where(nearer, best, d2)
            owner = np.where(nearer, block[j], owner)

    if len(centers):
        absorb(centers)
    picked = []
    for _ in range(int(k)):
        if not len(centers) and not picked:  # no center yet
            score = np.where(allowed, sq, -np.inf)
        else:
            size = np.bincount(owner[allowed], weights=d2[allowed], minlength=n)
            # the largest cluster that still holds a candidate
            has = np.bincount(owner[allowed], minlength=n) > 0
            cluster = int(np.argmax(np.where(has, size, -np.inf)))
            score = np.where(allowed & (owner == cluster), d2, -np.inf)
        i = int(np.argmax(score))
        picked.append(i)
        allowed[i] = False
        absorb(np.array([i]))
    return np.asarray(picked, np.int64)

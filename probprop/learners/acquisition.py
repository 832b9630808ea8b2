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
from jax import lax

from probprop.learners.base import Learner, float64

__all__ = ["greedy_variance"]


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

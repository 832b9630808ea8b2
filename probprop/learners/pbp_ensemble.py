"""Several PBP networks trained side by side as one batched program, and their mixture.

The state is a :class:`probprop.learners.pbp.PBPState` whose leaves carry a leading axis of
``n_members`` networks; :func:`update_together` runs one PBP epoch of every network, each on its
own data, as ``jax.vmap`` of :func:`probprop.learners.pbp.update` (one compiled program, the fixed
cost of each step shared: cross-validation folds, benchmark splits, seeds, ensembles). The
ensemble learner trains every member on the same data (each with its own initial weights and
shuffles) and predicts with the equally weighted mixture of the members' Gaussians
(:func:`probprop.moments.mixture_moments`): mean = avg m_k, epistemic = avg v_k + Var_k(m_k),
noise = avg noise_k.

    state = init(key, PBPEnsembleSpec(member=PBPSpec(n_in=13), n_members=5))
    state = update(state, X, y)           # one epoch of every member on (X, y)
    moments = predict_moments(state, X)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from probprop.learners import pbp
from probprop.learners.base import Learner, Moments, float64
from probprop.moments import input_noise
from probprop.moments.mixture import mixture_moments


@dataclass(frozen=True)
class PBPEnsembleSpec:
    """``n_members`` PBP networks of one ``member`` spec."""

    member: pbp.PBPSpec
    n_members: int = 5

    def __post_init__(self):
        if not isinstance(self.member, pbp.PBPSpec):
            raise TypeError(f"member must be a PBPSpec, got {type(self.member).__name__}")
        if not (isinstance(self.n_members, int) and not isinstance(self.n_members, bool) and self.n_members >= 1):
            raise ValueError(f"n_members must be a positive int, got {self.n_members!r}")

    @property
    def n_in(self) -> int:
        return self.member.n_in

    @property
    def output_likelihood(self):
        """The members' output likelihood. A classifier turns each member's output moments into
        class probabilities with it and averages those (:class:`probprop.PBPEnsembleClassifier`);
        :func:`predict_moments`' moment-matched mixture is for regression only."""
        return self.member.output_likelihood


def stack(states) -> pbp.PBPState:
    """One batched state from a sequence of PBP states of one spec (leaves stacked on axis 0)."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(leaf) for leaf in leaves]), *states)


def unstack(state: pbp.PBPState, i: int) -> pbp.PBPState:
    """Network ``i`` of a batched state."""
    return jax.tree.map(lambda leaf: np.asarray(leaf[i]), state)


@float64
def init_members(keys, member: pbp.PBPSpec) -> pbp.PBPState:
    """The batched prior of one network per key (each exactly ``pbp.init(key, member)``)."""
    states = [pbp.init(k, member) for k in keys]
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(states[0])):  # under jax.eval_shape
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    return stack([jax.device_get(state) for state in states])


@float64
def init(key: jax.Array, spec: PBPEnsembleSpec) -> pbp.PBPState:
    """Independent initialisations, one per member, from ``jax.random.split(key, n_members)``."""
    return init_members(jax.random.split(key, spec.n_members), spec.member)


#: One network's PBP epoch as the batched programs below run it (two updates per loop iteration).
_epoch = partial(pbp._update, unroll=pbp.BATCHED_SWEEP_UNROLL)

#: One PBP epoch of several independent networks, each on its own data, as one program.
_update_together = jax.jit(jax.vmap(_epoch))


@float64
def update_together(state: pbp.PBPState, Xs, ys, masks=None) -> pbp.PBPState:
    """One epoch of every network, network i on ``(Xs[i], ys[i])`` (leading axis: networks)."""
    if masks is None:
        return _update_together(state, Xs, ys)
    return _update_together(state, Xs, ys, masks)


#: One PBP epoch of several networks on the same data, as one program: the data enter it once
#: (not one copy per network: 376 MB per copy of 60,000 MNIST images in float64), and each
#: network draws its own order from its own key.
_update_shared = jax.jit(jax.vmap(_epoch, in_axes=(0, None, None)))
_update_shared_masked = jax.jit(jax.vmap(_epoch, in_axes=(0, None, None, None)))


@float64
def update(state: pbp.PBPState, X, y, mask=None) -> pbp.PBPState:
    """One epoch of every member on the same data (each with its own shuffle): the same numbers
    as :func:`update_together` on one copy of the data per member, without the copies."""
    if mask is None:
        return _update_shared(state, X, y)
    return _update_shared_masked(state, X, y, mask)


@float64
def predict_moments(state: pbp.PBPState, X, X_var=None, propagation: str = "moments") -> Moments:
    """The members' mixture, moment-matched (module docstring); ``X_var`` and ``propagation`` as
    in :func:`probprop.learners.pbp.predict_moments`, for every member."""
    return input_noise.predict_with(_predict_moments, _predict_moments_noisy, state, X, X_var, propagation)


@jax.jit
def _predict_moments(state, X):
    means, variances, noise = jax.vmap(lambda s: pbp._predict_moments(s, X))(state)
    return Moments(*mixture_moments(means, noise, variances))


@partial(jax.jit, static_argnames="propagation")
def _predict_moments_noisy(state, X, X_var, propagation):
    means, variances, noise = jax.vmap(lambda s: pbp._predict_moments_noisy(s, X, X_var, propagation))(state)
    return Moments(*mixture_moments(means, noise, variances))


#: PBP ensembles behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="pbp_ensemble", spec_class=PBPEnsembleSpec, init=init, update=update,
                  predict=predict_moments, online=True)

"""A mixture of last-layer Laplace approximations: a deep ensemble whose every member gets the
last-layer Laplace posterior of :mod:`probprop.learners.laplace` (Eschenhagen, Daxberger,
Kristiadi, Hennig, Lakshminarayanan et al., "Mixtures of Laplace approximations for improved
post-hoc uncertainty in deep learning", 2021: MoLA). Classification only.

The members are :mod:`probprop.learners.ensemble`'s softmax networks (trained together, each
from its own initialisation and shuffles, with the Gaussian prior of ``prior_var`` on the
weights); after the last epoch :func:`finish` fits each member's last-layer posterior exactly as
:func:`probprop.learners.laplace.finish` does for one network (the exact last-layer
generalised Gauss-Newton matrix of its training loss, or its Kronecker factorisation with
``hessian_structure="kron"``, the prior precision chosen by that
member's Laplace evidence or given, ``n_samples`` draws of its last layer from its own key).
The predictive is the uniform mixture of the members' Laplace predictives:

    p(y | x) = (1/M) sum_m (1/S) sum_s softmax(theta_{m,s}^T phi~_m(x)),

so :func:`class_samples` returns all M S draws' class probabilities; their spread (mutual
information, probability variance) holds both the members' disagreement and each member's
last-layer uncertainty. :func:`class_moments` mixes the members' closed forms instead (the
probit approximation or the Laplace bridge, without draws). Each member is the state of :mod:`probprop.learners.laplace` (its
functions run on :meth:`LaplaceEnsembleState.member`), so every formula lives there.

    state = init(key, spec)                  # the members' MAP networks; posteriors = the prior
    state = update(state, X, y)              # one epoch for every member
    state = finish(state, X, y)              # every member's last-layer posterior
    probabilities = class_samples(state, X).mean(0)

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from probprop.learners import ensemble, laplace
from probprop.learners._sgd import check_positive
from probprop.learners.base import Learner, Moments, float64
from probprop.moments.mixture import class_mixture, mixture_moments


@dataclass(frozen=True)
class LaplaceEnsembleSpec(ensemble.EnsembleSpec):
    """An :class:`probprop.learners.ensemble.EnsembleSpec` of softmax networks (``n_classes`` >= 2)
    with each member's last-layer posterior as in :class:`probprop.learners.laplace.LaplaceSpec`:
    ``prior_precision`` (None: chosen per member by its evidence), ``n_samples`` draws per
    member and ``hessian_structure``."""

    prior_var: float | None = 1.0
    prior_precision: float | None = None
    n_samples: int = 100
    hessian_structure: str = "full"

    def __post_init__(self):
        super().__post_init__()
        if self.n_classes < 2:
            raise ValueError("a Laplace ensemble classifies (n_classes >= 2); for regression take "
                             "laplace.LaplaceSpec or ensemble.EnsembleSpec")
        check_positive("prior_precision", self.prior_precision, allow_none=True)
        lspec = self.laplace_spec  # validates n_samples, hessian_structure and the last layer's size
        d = lspec.n_parameters
        posterior = lspec.n_features**2 + lspec.n_out**2 if lspec.kron else d * d
        if self.n_members * posterior > laplace.MAX_PARAMETERS**2:
            held = (f"Kronecker factors of {lspec.n_features} x {lspec.n_features} and {lspec.n_out} x {lspec.n_out}"
                    if lspec.kron else f"dense last-layer posteriors of {d} parameters")
            raise ValueError(f"{self.n_members} members' {held} each hold more numbers than one dense posterior of "
                             f"{laplace.MAX_PARAMETERS} parameters (the largest probprop takes): take fewer members or "
                             "a smaller last layer")
        if self.n_members * self.n_samples * d > laplace.MAX_SAMPLES * laplace.MAX_PARAMETERS:
            raise ValueError(f"{self.n_members} members x {self.n_samples} draws (n_samples) of {d} last-layer parameters "
                             f"are more numbers than {laplace.MAX_SAMPLES} draws of {laplace.MAX_PARAMETERS} (the most "
                             "probprop keeps): take fewer members or fewer draws")

    @functools.cached_property
    def laplace_spec(self) -> laplace.LaplaceSpec:
        """Each member's :class:`probprop.learners.laplace.LaplaceSpec` (its network is
        :attr:`member_spec`), built once per spec."""
        return laplace.LaplaceSpec.from_network(self.member_spec, self.prior_precision, self.n_samples,
                                                self.hessian_structure)

    @property
    def n_parameters(self) -> int:
        """D: the parameters of one member's last layer."""
        return self.laplace_spec.n_parameters


@partial(jax.tree_util.register_dataclass, data_fields=["network", "eigenvectors", "posterior_variances",
                                                          "prior_precision", "deviations"], meta_fields=["spec"])
@dataclass(frozen=True)
class LaplaceEnsembleState:
    """The members' networks (:class:`probprop.learners.ensemble.EnsembleState`) and each member's
    posterior, stacked on a leading axis of size M: eigenvectors (M, D, D) (Kronecker-factored: the
    pair (M, F, F), (M, K, K)), variances (M, D),
    prior precisions (M,), the draws' deviations (M, S, D) (fields of
    :class:`probprop.learners.laplace.LaplaceState`)."""

    network: ensemble.EnsembleState
    eigenvectors: jax.Array
    posterior_variances: jax.Array
    prior_precision: jax.Array
    deviations: jax.Array
    spec: LaplaceEnsembleSpec

    def replace(self, **changes) -> LaplaceEnsembleState:
        return dataclasses.replace(self, **changes)

    def member(self, m: int) -> laplace.LaplaceState:
        """Member m as a stand-alone :class:`probprop.learners.laplace.LaplaceState`."""
        return laplace.LaplaceState(self.network.member(m), jax.tree_util.tree_map(lambda a: a[m], self.eigenvectors),
                                    self.posterior_variances[m], self.prior_precision[m], self.deviations[m],
                                    self.spec.laplace_spec)


def _stacked(members: list[laplace.LaplaceState]) -> dict:
    """The posterior fields of ``members`` stacked on a leading axis."""
    names = ("eigenvectors", "posterior_variances", "prior_precision", "deviations")
    return {name: jax.tree_util.tree_map(lambda *parts: jnp.stack(parts), *[getattr(s, name) for s in members])
            for name in names}


@float64
def init(key: jax.Array, spec: LaplaceEnsembleSpec) -> LaplaceEnsembleState:
    """The ensemble's initial networks; every member's posterior is the prior until :func:`finish`."""
    if not isinstance(spec, LaplaceEnsembleSpec):
        raise TypeError(f"init takes a LaplaceEnsembleSpec, got {type(spec).__name__}")
    network = ensemble.init(key, spec)
    lspec, m = spec.laplace_spec, spec.n_members
    Q, c, lam = laplace.prior_posterior(lspec)
    deviations = jax.vmap(lambda k: laplace.draw_deviations(k, Q, c, lspec.n_samples))(network.keys)
    stacked = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (m, *a.shape)), Q)
    return LaplaceEnsembleState(network, stacked, jnp.broadcast_to(c, (m, *c.shape)),
                                jnp.broadcast_to(lam, (m,)), deviations, spec)


@float64
def update(state: LaplaceEnsembleState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None):
    """One epoch for every member (:func:`probprop.learners.ensemble.update`); the posteriors are
    refitted by :func:`finish`."""
    return state.replace(network=ensemble.update(state.network, X, y, mask))


@float64
def finish(state: LaplaceEnsembleState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None):
    """Every member's last-layer posterior at its current weights
    (:func:`probprop.learners.laplace.finish`, member by member)."""
    members = [laplace.finish(state.member(m), X, y, mask) for m in range(state.spec.n_members)]
    return state.replace(**_stacked(members))


def check_state(state: LaplaceEnsembleState) -> None:
    """:func:`probprop.learners.laplace.check_state` for every member (a model file's posterior)."""
    for m in range(state.spec.n_members):
        try:
            laplace.check_state(state.member(m))
        except ValueError as err:
            raise ValueError(f"member {m}: {err}") from None


@float64
def class_samples(state: LaplaceEnsembleState, X: jax.Array) -> jax.Array:
    """The class probabilities under every member's draws, shape (M S, n, K) (member by member,
    :func:`probprop.learners.laplace.class_samples`); their average is the mixture's prediction."""
    X = jnp.asarray(X)
    return jnp.concatenate([laplace.class_samples(state.member(m), X) for m in range(state.spec.n_members)])


@float64
def predict(state: LaplaceEnsembleState, X: jax.Array, X_var: jax.Array | None = None) -> Moments:
    """The logits' moments under the mixture: per member the Laplace means and variances
    (:func:`probprop.learners.laplace.predict`), mixed uniformly
    (:func:`probprop.moments.mixture.mixture_moments`: the mean, and as the epistemic part the
    members' spread plus their average variance); no observation noise (the members' zeros).
    With ``X_var`` each member draws its input noise from its own key
    (:func:`probprop.learners.laplace.predict`)."""
    moments = [laplace.predict(state.member(m), X, X_var) for m in range(state.spec.n_members)]
    means = jnp.stack([mo.mean for mo in moments])
    mean, epistemic, noise = mixture_moments(means, jnp.stack([mo.noise_var for mo in moments]),
                                             jnp.stack([mo.epistemic_var for mo in moments]))
    return Moments(mean, epistemic, noise)


@float64
def class_moments(state: LaplaceEnsembleState, X: jax.Array, link: str):
    """The mixture's (probabilities, their variances, expected entropy) without draws: each
    member's closed form (:func:`probprop.learners.laplace.class_moments` with ``link``), mixed
    uniformly: the mean probabilities, the members' average variance plus their spread
    (:func:`probprop.moments.mixture.class_mixture`), the average expected entropy."""
    X = np.asarray(X)  # each member blocks the rows itself (laplace.class_moments)
    members = [laplace.class_moments(state.member(m), X, link) for m in range(state.spec.n_members)]
    probs, variances, expected = (jnp.stack(parts) for parts in zip(*members, strict=True))
    return class_mixture(probs, variances, expected)


#: The mixture of last-layer Laplace networks behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="laplace_ensemble", spec_class=LaplaceEnsembleSpec, init=init, update=update, predict=predict,
                  class_samples=class_samples, finish=finish, class_moments=class_moments)

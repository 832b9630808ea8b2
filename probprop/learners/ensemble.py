"""Deep ensembles: Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017.

Regression below; for classification (``EnsembleSpec.n_classes`` = K) the members are softmax
networks trained on the cross-entropy, and the prediction is the average of their class
probabilities (:func:`class_samples`), as in the paper.

M heteroscedastic MAP networks (:mod:`probprop.learners.mapnet` with two outputs, mean mu_m(x)
and variance sigma_m^2(x) = softplus(r_m(x)) + 1e-6), each trained on the Gaussian NLL with its
own random initialisation and its own random shuffles. The members are stacked along a leading
axis and trained together with ``jax.vmap`` (one compiled epoch for all of them; with
convolutions, ``EnsembleSpec.conv``, one compiled step for all of them per mini-batch, the
members one after another within it: :func:`mapnet.map_members`).

The predictive is the uniform mixture of the member Gaussians, moment-matched to one Gaussian:

    mean  = (1/M) sum_m mu_m
    total = (1/M) sum_m (sigma_m^2 + mu_m^2) - mean^2
          = Var_m(mu_m)          (epistemic, :func:`predict`)
          + (1/M) sum_m sigma_m^2 (aleatoric, :func:`noise_variance`)

with Var_m the population variance (1/M), so the two parts add up to the mixture variance
exactly. Adversarial training (fast gradient sign, the paper's optional "AT") is available
through ``adversarial_eps`` (in standardised input units) and is off by default (0); no weight
decay by default (``prior_var=None``), as in the paper.

    state = init(key, spec)
    state = update(state, X, y)                 # one epoch for every member
    mean, epistemic = predict(state, X)
    aleatoric = noise_variance(state, X)
    mean, total = predictive_moments(state, X)  # mixture mean and variance
    choice = select_learning_rate(X, y, spec, epochs=40)   # Adam step size by validation LL

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol.

The paper does not state its optimiser settings; :func:`select_learning_rate` picks Adam's
step size from :data:`GRID_LEARNING_RATE` on a validation part of the training data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from probprop.learners import mapnet
from probprop.learners._sgd import as_xy, holdout
from probprop.learners.base import Learner, Moments, Selection, float64
from probprop.likelihoods.classification import log_mean_probability_of
from probprop.moments.mixture import mixture_moments

#: At most this many members (a model file declaring more is refused before its state is built).
MAX_MEMBERS = 256
#: Adam step sizes :func:`select_learning_rate` tries by default.
GRID_LEARNING_RATE = (1e-3, 3e-3, 1e-2, 3e-2)


@dataclass(frozen=True)
class EnsembleSpec:
    """Static description of a deep ensemble; the member networks are ``member_spec``."""

    n_in: int
    hidden: tuple[int, ...] = (50,)
    n_members: int = 5
    learning_rate: float = 1e-2
    batch_size: int = 32
    prior_var: float | None = None
    min_variance: float = 1e-6
    adversarial_eps: float = 0.0
    dtype: str = "float64"
    n_classes: int = 0
    #: Convolution layer pieces before the dense layers, as in :class:`mapnet.MAPSpec`.
    conv: tuple = ()

    def __post_init__(self):
        if isinstance(self.n_members, bool) or not (isinstance(self.n_members, int) and 1 <= self.n_members <= MAX_MEMBERS):
            raise ValueError(f"n_members must be an int from 1 to {MAX_MEMBERS}, got {self.n_members!r}")
        object.__setattr__(self, "conv", self.member_spec.conv)  # validates the remaining fields

    @property
    def member_spec(self) -> mapnet.MAPSpec:
        return mapnet.MAPSpec(
            n_in=self.n_in,
            hidden=self.hidden,
            heteroscedastic=not self.n_classes,
            variance_link="softplus",
            min_variance=self.min_variance,
            prior_var=self.prior_var,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            adversarial_eps=self.adversarial_eps,
            dtype=self.dtype,
            n_classes=self.n_classes,
            conv=self.conv,
        )

    @property
    def output_likelihood(self):
        """Classification (``n_classes`` >= 2): each member's softmax (:func:`class_samples`
        averages them); None for regression."""
        return self.member_spec.output_likelihood


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["params", "opt_state", "keys", "epoch", "loss"],
    meta_fields=["spec"],
)
@dataclass(frozen=True)
class EnsembleState:
    """Member parameters and Adam states stacked on a leading axis of size n_members; one
    shuffling key per member; ``loss`` (n_members,) the mean NLL of each member's last epoch."""

    params: dict
    opt_state: object
    keys: jax.Array
    epoch: jax.Array
    loss: jax.Array
    spec: EnsembleSpec

    def replace(self, **changes) -> EnsembleState:
        return dataclasses.replace(self, **changes)

    def member(self, m: int) -> mapnet.MAPState:
        """Member m as a stand-alone :class:`mapnet.MAPState`."""
        take = lambda a: a[m]
        return mapnet.MAPState(
            params=jax.tree.map(take, self.params),
            opt_state=jax.tree.map(take, self.opt_state),
            key=self.keys[m],
            epoch=self.epoch,
            loss=self.loss[m],
            spec=self.spec.member_spec,
        )


@float64
def init(key: jax.Array, spec: EnsembleSpec) -> EnsembleState:
    """Independent initialisations and shuffling keys, one per member."""
    members = [mapnet._init(k, spec.member_spec) for k in jax.random.split(key, spec.n_members)]
    stack = lambda *a: jnp.stack(a)
    return EnsembleState(
        params=jax.tree.map(stack, *[s.params for s in members]),
        opt_state=jax.tree.map(stack, *[s.opt_state for s in members]),
        keys=jnp.stack([s.key for s in members]),
        epoch=jnp.zeros((), jnp.int32),
        loss=jnp.full(spec.n_members, jnp.nan, jnp.dtype(spec.dtype)),
        spec=spec,
    )


@float64
def update(state: EnsembleState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> EnsembleState:
    """One epoch for every member (vmapped), each with its own shuffle (with convolutions one
    compiled call per mini-batch, the members unrolled in it: :func:`mapnet.stepwise_epoch_of`,
    :func:`mapnet.map_members`)."""
    if state.spec.conv:
        params, opt_state, keys, loss = mapnet.stepwise_epoch_of(state.spec.member_spec, state.params,
                                                                 state.opt_state, state.keys, X, y, mask, members=True)
        return state.replace(params=params, opt_state=opt_state, keys=keys, epoch=state.epoch + 1, loss=loss)
    return _update(state, X, y, mask)


@jax.jit
def _update(state: EnsembleState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> EnsembleState:
    member_spec = state.spec.member_spec

    def one(params, opt_state, key):
        return mapnet.epoch_step(params, opt_state, key, X, y, member_spec, mask)

    params, opt_state, keys, loss = jax.vmap(one)(state.params, state.opt_state, state.keys)
    return state.replace(params=params, opt_state=opt_state, keys=keys, epoch=state.epoch + 1, loss=loss)


@jax.jit
def member_predictions(state: EnsembleState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-member mean and variance, each of shape (n_members, n)."""
    spec = state.spec.member_spec
    return mapnet.map_members(spec, lambda p: mapnet.forward(p, spec, X), state.params)


@float64
def predict_moments(state: EnsembleState, X: jax.Array, X_var: jax.Array | None = None) -> Moments:
    """:class:`Moments` of the mixture per row (:func:`probprop.moments.mixture_moments`): mean,
    Var_m(mu_m) (epistemic) and the member average of sigma_m^2(x) (aleatoric), one pass.

    With ``X_var`` (variances of uncertain inputs, broadcastable to X, standardised units): the
    mixture over the members and :data:`probprop.learners.mapnet.INPUT_DRAWS` input draws (the
    same draws for every member, from the first member's key), whose epistemic part then holds
    the input noise's share of the variance of f too."""
    if X_var is None:
        return _predict_moments(state, jnp.asarray(X))
    X = jnp.asarray(X)
    X_var = jnp.broadcast_to(jnp.asarray(X_var, X.dtype), X.shape)
    return _predict_moments_noisy(state, X, X_var, mapnet.INPUT_DRAWS)


@jax.jit
def _predict_moments(state, X):
    return Moments(*mixture_moments(*member_predictions(state, X)))


@partial(jax.jit, static_argnums=3)
def _predict_moments_noisy(state, X, X_var, n_draws):
    dtype = jnp.dtype(state.spec.member_spec.dtype)
    X, X_var = X.astype(dtype), X_var.astype(dtype)
    sd = jnp.sqrt(X_var)
    eps = mapnet.input_noise_draws(state.keys[0], n_draws, X.shape[-1], dtype)
    mu, sigma2 = jax.lax.map(lambda e: member_predictions(state, X + sd * e), eps)  # (draws, members, n)
    n = X.shape[:-1]
    return Moments(*mixture_moments(mu.reshape(-1, *n), sigma2.reshape(-1, *n)))


@float64
def class_samples(state: EnsembleState, X: jax.Array) -> jax.Array:
    """Classification: each member's class probabilities (softmax of its logits), shape
    (n_members, n, K); their average is the ensemble's prediction."""
    return _class_samples(state, jnp.asarray(X))


@jax.jit
def _class_samples(state, X):
    return jax.nn.softmax(member_predictions(state, X)[0], axis=-1)


def predict(state: EnsembleState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mixture mean and the epistemic part of its variance, Var_m(mu_m)."""
    mean, epistemic, _ = predict_moments(state, X)
    return mean, epistemic


def noise_variance(state: EnsembleState, X: jax.Array) -> jax.Array:
    """Aleatoric part of the mixture variance, the member average of sigma_m^2(x)."""
    return predict_moments(state, X).noise_var


def predictive_moments(state: EnsembleState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mixture mean and total variance avg(sigma_m^2 + mu_m^2) - mean^2 (epistemic + aleatoric)."""
    mean, epistemic, aleatoric = predict_moments(state, X)
    return mean, epistemic + aleatoric


def gaussian_log_likelihood(state: EnsembleState, X, y) -> jax.Array:
    """Mean log density of y under the moment-matched mixture N(mean, total variance)."""
    mean, epistemic, aleatoric = _predict_moments(state, X)
    total = epistemic + aleatoric
    return jnp.mean(norm.logpdf(jnp.asarray(y, mean.dtype), mean, jnp.sqrt(total)))


def validation_score(state: EnsembleState, X, y) -> jax.Array:
    """What a search maximises: :func:`gaussian_log_likelihood` for regression; for a classifier
    the mean log probability of the true class (y the class index) under the averaged members."""
    if not state.spec.n_classes:
        return gaussian_log_likelihood(state, X, y)
    return jnp.mean(log_mean_probability_of(member_predictions(state, X)[0], y))


@float64
def select_learning_rate(X, y, spec: EnsembleSpec, epochs: int = 40, grid=GRID_LEARNING_RATE,
                         key=None, val_fraction: float = 0.2) -> Selection:
    """Choose Adam's step size on a held-out part of the *training* data (never test data).

    A random ``val_fraction`` of the rows of (X, y) is held out (:func:`_sgd.holdout`); for every
    step size in ``grid`` the ensemble is trained for ``epochs`` epochs on the rest (same
    initialisation and shuffles for every candidate) and scored by
    :func:`gaussian_log_likelihood` on the held-out rows; a candidate whose score is not finite
    loses (a classifier is scored by :func:`validation_score`, its held-out log probability).
    Retrain on all of (X, y) with ``result.spec``. Returns a :class:`Selection`
    (``chosen`` and ``grid`` keyed by ``"learning_rate"``).
    """
    X, y = as_xy(X, y)
    grid = tuple(float(lr) for lr in grid)
    if not grid or not all(lr > 0 and np.isfinite(lr) for lr in grid):
        raise ValueError(f"grid must hold positive finite step sizes, got {grid!r}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    key = jax.random.PRNGKey(0) if key is None else key
    split_key, init_key = jax.random.split(key)
    val, fit = holdout(X.shape[0], val_fraction, split_key)
    X_fit, y_fit, X_val, y_val = (jnp.asarray(a) for a in (X[fit], y[fit], X[val], y[val]))
    scores = []
    for lr in grid:
        state = init(init_key, dataclasses.replace(spec, learning_rate=lr))
        for _ in range(epochs):
            state = update(state, X_fit, y_fit)
        score = float(validation_score(state, X_val, y_val))
        scores.append(score if np.isfinite(score) else -np.inf)
    scores = np.asarray(scores)
    best = int(np.argmax(scores))
    return Selection(spec=dataclasses.replace(spec, learning_rate=grid[best]), chosen={"learning_rate": grid[best]},
                     grid={"learning_rate": grid}, scores=scores)


def select(X, y, spec: EnsembleSpec, *, epochs: int = 40, key=None, grid=None) -> Selection:
    """The learner protocol's search: :func:`select_learning_rate` (``grid``: step sizes)."""
    return select_learning_rate(X, y, spec, epochs=epochs, key=key, grid=GRID_LEARNING_RATE if grid is None else grid)


#: Deep ensembles behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="ensemble", spec_class=EnsembleSpec, init=init, update=update, predict=predict_moments,
                  select=select, class_samples=class_samples)

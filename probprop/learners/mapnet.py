"""MAP network: a ReLU MLP (optionally after convolutions, ``MAPSpec.conv``) with a Gaussian
likelihood or a softmax over classes, trained by Adam on the log posterior.

Model, in standardised units::

    y | x, w ~ N(mu_w(x), sigma^2(x)),     w ~ N(0, prior_var)  (weight matrices and kernels only)

* homoscedastic head (``heteroscedastic=False``): one output mu(x) and a learned global
  ``log_noise = log sigma^2`` (a point estimate, flat prior);
* heteroscedastic head: two outputs (mu(x), r(x)) with sigma^2(x) = softplus(r) + min_variance
  (``variance_link="softplus"``, the deep-ensembles choice) or sigma^2 = exp(r) + min_variance
  (``variance_link="exp"``, r a log-variance).

Objective per mini-batch (the negative log posterior divided by N, the number of training rows):

    mean_batch[ 0.5 log(2 pi sigma^2) + (y - mu)^2 / (2 sigma^2) ] + sum_l ||W_l||^2 / (2 N prior_var)

i.e. L2 weight decay 1 / (2 N prior_var) on the weight matrices (biases have a flat prior);
``prior_var=None`` drops the prior (maximum likelihood). With ``adversarial_eps > 0`` each row's
loss is nll(x) + nll(x + eps sign(d nll / dx)) (fast gradient sign, Lakshminarayanan et al. 2017,
with eps in standardised input units); off by default.

The MAP network has no weight uncertainty: ``predict`` returns zero epistemic variance and
``noise_variance`` the (learned) aleatoric variance per point.

    state = init(key, spec)
    state = update(state, X, y)              # one epoch of Adam (_sgd.sgd_epoch; with convolutions
                                             # _sgd.stepwise_epoch, one compiled call per batch)
    mean, var = predict(state, X)            # var == 0
    noise_variance(state, X)                 # sigma^2(x), shape (n,)

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from probprop.layers.conv import check_conv_stack
from probprop.learners._sgd import (
    GradientState,
    adam,
    batches,
    check_network_spec,
    check_positive,
    sgd_epoch,
    sgd_step,
    stepwise_epoch,
)
from probprop.learners.base import Learner, Moments, float64
from probprop.likelihoods.classification import Softmax, softmax_nll
from probprop.moments.mixture import mixture_moments

VARIANCE_LINKS = ("softplus", "exp")


@dataclass(frozen=True)
class MAPSpec:
    """Static description of a MAP network (hashable: one compilation per spec and data shape)."""

    n_in: int
    hidden: tuple[int, ...] = (50,)
    heteroscedastic: bool = False
    variance_link: str = "softplus"
    min_variance: float = 1e-6
    prior_var: float | None = 1.0
    learning_rate: float = 1e-2
    batch_size: int = 32
    init_noise_variance: float = 0.1
    adversarial_eps: float = 0.0
    dtype: str = "float64"
    n_classes: int = 0
    #: Convolution layer pieces (:class:`probprop.layers.Conv2D`, each followed by a ReLU) before
    #: the dense hidden layers, with point-estimate kernels (:meth:`~probprop.layers.Conv2D.point`).
    conv: tuple = ()

    def __post_init__(self):
        check_network_spec(self)
        object.__setattr__(self, "conv", check_conv_stack(self.conv, self.n_in))
        if self.variance_link not in VARIANCE_LINKS:
            raise ValueError(f"variance_link must be one of {VARIANCE_LINKS}, got {self.variance_link!r}")
        if not (self.min_variance >= 0 and math.isfinite(self.min_variance)):
            raise ValueError(f"min_variance must be finite and >= 0, got {self.min_variance!r}")
        check_positive("prior_var", self.prior_var, allow_none=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("init_noise_variance", self.init_noise_variance)
        if not (self.adversarial_eps >= 0 and math.isfinite(self.adversarial_eps)):
            raise ValueError(f"adversarial_eps must be finite and >= 0, got {self.adversarial_eps!r}")
        if self.n_classes and (self.n_classes < 2 or self.heteroscedastic):
            raise ValueError(f"n_classes must be 0 (regression) or >= 2 with a homoscedastic head, got {self.n_classes!r}")

    @property
    def n_out(self) -> int:
        if self.n_classes:
            return self.n_classes
        return 2 if self.heteroscedastic else 1

    @property
    def output_likelihood(self):
        """Classification (``n_classes`` >= 2): the softmax over the K outputs; None for regression."""
        if not self.n_classes:
            return None
        return Softmax(self.n_classes)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Units per layer: the inputs, each convolution's (pooled) maps, the dense layers."""
        return (self.n_in, *(piece.n_out for piece in self.conv), *self.hidden, self.n_out)


#: MAPState is the shared :class:`GradientState`; here ``params = {"layers": ((W, b), ...),
#: "log_noise": scalar}`` (W of shape (fan_in, fan_out); ``log_noise`` only for the homoscedastic
#: head; with convolutions also ``"conv": ((kernel, bias), ...)``), the Adam state, the shuffling key, the number of epochs done and the mean objective of the
#: last epoch.

MAPState = GradientState


optimizer = adam


def _softplus_inverse(x: float) -> float:
    return x + math.log(-math.expm1(-x))


def init_params(key: jax.Array, spec: MAPSpec) -> dict:
    """LeCun-normal weights N(0, 1/fan_in), zero biases (kernels too: fan_in = C kernel^2); the
    variance output starts at ``init_noise_variance`` (bias of the variance unit, or ``log_noise``)."""
    dtype = jnp.dtype(spec.dtype)
    sizes = spec.layer_sizes[len(spec.conv):]
    key, *conv_keys = jax.random.split(key, len(spec.conv) + 1)
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:]):
        W = jax.random.normal(k, (fan_in, fan_out), dtype) / math.sqrt(fan_in)
        layers.append((W, jnp.zeros(fan_out, dtype)))
    params = {}
    target = spec.init_noise_variance - spec.min_variance
    if spec.heteroscedastic:
        raw = math.log(target) if spec.variance_link == "exp" else _softplus_inverse(target)
        W, b = layers[-1]
        layers[-1] = (W.at[:, 1].multiply(0.1), b.at[1].set(raw))
    else:
        params["log_noise"] = jnp.asarray(math.log(spec.init_noise_variance), dtype)
    params["layers"] = tuple(layers)
    if spec.conv:
        params["conv"] = tuple(
            (jax.random.normal(k, piece.kernel_shape, dtype) / math.sqrt(math.prod(piece.kernel_shape[1:])),
             jnp.zeros(piece.channels, dtype)) for k, piece in zip(conv_keys, spec.conv))
    return params


@float64
def init(key: jax.Array, spec: MAPSpec) -> MAPState:
    """LeCun-normal weights (:func:`init_params`) and a fresh Adam state."""
    return _init(key, spec)


@partial(jax.jit, static_argnums=1)
def _init(key: jax.Array, spec: MAPSpec) -> MAPState:
    key, sub = jax.random.split(key)
    params = init_params(sub, spec)
    return MAPState(
        params=params,
        opt_state=optimizer(spec).init(params),
        key=key,
        epoch=jnp.zeros((), jnp.int32),
        loss=jnp.asarray(jnp.nan, jnp.dtype(spec.dtype)),
        spec=spec,
    )


def mlp(layers, X: jax.Array) -> jax.Array:
    """ReLU MLP with a linear output layer; returns shape (..., n_out)."""
    h = X
    for W, b in layers[:-1]:
        h = jax.nn.relu(h @ W + b)
    W, b = layers[-1]
    return h @ W + b


def forward(params: dict, spec: MAPSpec, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and noise variance (mu(x), sigma^2(x)), each of shape (n,); for a classifier the
    logits (n, K) and zeros."""
    h = jnp.asarray(X).astype(jnp.dtype(spec.dtype))
    for piece, (kernel, bias) in zip(spec.conv, params["conv"] if spec.conv else (), strict=True):
        h = jax.nn.relu(piece.point(kernel, bias, h))
    out = mlp(params["layers"], h)
    if spec.n_classes:
        return out, jnp.zeros_like(out)
    mu = out[..., 0]
    if spec.heteroscedastic:
        raw = out[..., 1]
        link = jnp.exp if spec.variance_link == "exp" else jax.nn.softplus
        return mu, link(raw) + spec.min_variance
    return mu, jnp.broadcast_to(jnp.exp(params["log_noise"]), mu.shape)


def gaussian_nll(y, mu, var):
    """-log N(y | mu, var), elementwise."""
    return 0.5 * (jnp.log(2.0 * jnp.pi * var) + (y - mu) ** 2 / var)


def weight_penalty(params: dict, spec: MAPSpec, n_train) -> jax.Array:
    """-log p(w) / N up to a constant: sum ||W||^2 / (2 N prior_var) over the weight matrices
    and kernels."""
    if spec.prior_var is None:
        return jnp.zeros((), jnp.dtype(spec.dtype))
    sq = sum(jnp.sum(W * W) for W, _ in (*(params["conv"] if spec.conv else ()), *params["layers"]))
    return sq / (2.0 * n_train * spec.prior_var)


def row_losses(params: dict, spec: MAPSpec, X: jax.Array, y: jax.Array) -> jax.Array:
    """Per-row negative log-likelihood, with the fast-gradient-sign term if adversarial_eps > 0."""

    def nll(X):
        mu, var = forward(params, spec, X)
        if spec.n_classes:  # softmax cross-entropy of the class index y
            return softmax_nll(mu, y)
        return gaussian_nll(y, mu, var)

    losses = nll(X)
    if spec.adversarial_eps > 0:
        # rows do not interact, so the gradient of the sum is each row's own input gradient
        gx = jax.grad(lambda X: jnp.sum(nll(X)))(X)
        X_adv = jax.lax.stop_gradient(X + spec.adversarial_eps * jnp.sign(gx))
        losses = losses + nll(X_adv)
    return losses


def make_loss(spec: MAPSpec, n_train):
    """The :mod:`_sgd` loss: (per-row NLL, weight penalty) for a training set of n_train rows."""

    def loss_fn(params, X, y, key):
        del key
        return row_losses(params, spec, X, y), weight_penalty(params, spec, n_train)

    return loss_fn


def _training_arrays(spec: MAPSpec, X, y, mask):
    """(X, y) in the network's dtype and the number of training rows (the mask's count when
    padded), which the weight penalty divides by: both epochs' common start."""
    X, y = (jnp.asarray(a).astype(jnp.dtype(spec.dtype)) for a in (X, y))
    return X, y, X.shape[0] if mask is None else jnp.sum(mask)


def epoch_step(params, opt_state, key, X, y, spec: MAPSpec, mask=None):
    """One epoch on raw params (traceable and vmappable; used by :mod:`ensemble`)."""
    X, y, n_train = _training_arrays(spec, X, y, mask)
    return sgd_epoch(params, opt_state, key, X, y, make_loss(spec, n_train), optimizer(spec), spec.batch_size, mask)


def batch_step(params, opt_state, X, y, order, keep, key, n_train, spec: MAPSpec, masked: bool):
    """One Adam step on the rows ``order`` of (X, y) (traceable and vmappable): the step of
    :func:`stepwise_epoch_of`."""
    loss_fn = make_loss(spec, n_train)
    return sgd_step(params, opt_state, X[order], y[order], keep, key, loss_fn, optimizer(spec), masked)


_batch_step = jax.jit(batch_step, static_argnames=("spec", "masked"))


def map_members(spec: MAPSpec, fn, *stacked):
    """``fn`` over networks stacked along the leading axis of every leaf of ``stacked``, the
    results stacked the same way: vmapped for dense networks; for networks with convolutions one
    network after another within the same program (unrolled), since XLA:CPU runs the vmapped
    convolutions (grouped over the networks) about three times slower than one network at a
    time (docs/engine.md)."""
    if not spec.conv:
        return jax.vmap(fn)(*stacked)
    outs = [fn(*jax.tree.map(lambda a, m=m: a[m], stacked)) for m in range(jax.tree.leaves(stacked)[0].shape[0])]
    return jax.tree.map(lambda *a: jnp.stack(a), *outs)


@partial(jax.jit, static_argnames=("spec", "masked"))
def _member_steps(params, opt_state, X, y, order, keep, key, n_train, spec: MAPSpec, masked: bool):
    """:func:`batch_step` for networks stacked along a leading axis, each with its own batch."""
    return map_members(spec, lambda p, o, i, k, kk: batch_step(p, o, X, y, i, k, kk, n_train, spec, masked),
                       params, opt_state, order, keep, key)


@partial(jax.jit, static_argnums=(1, 2))
def _member_batches(keys, n: int, batch_size: int, mask=None):
    """:func:`_sgd.batches` for each of the stacked networks' keys, the batch axis first."""
    key, order, keep, batch_keys = jax.vmap(lambda k: batches(k, n, batch_size, mask))(keys)
    return key, *(jnp.moveaxis(a, 0, 1) for a in (order, keep, batch_keys))


def stepwise_epoch_of(spec: MAPSpec, params, opt_state, key, X, y, mask=None, members: bool = False):
    """:func:`epoch_step`'s epoch with one compiled call per mini-batch (:func:`_sgd.stepwise_epoch`),
    for networks with convolutions, which XLA:CPU runs slowly inside the epoch's loop (see
    docs/engine.md); ``members``: params, optimiser states and keys stacked along a leading axis
    (:mod:`ensemble`), each network with its own shuffle. The same arithmetic as the one-loop epoch
    (equal to rounding). Returns ``(params, opt_state, key, mean_loss)``."""
    X, y, n_train = _training_arrays(spec, X, y, mask)
    n, masked = X.shape[0], mask is not None
    plan, steps = (_member_batches, _member_steps) if members else (batches, _batch_step)

    def step(params, opt_state, order, keep, key):
        return steps(params, opt_state, X, y, order, keep, key, n_train, spec, masked)

    return stepwise_epoch(lambda key: plan(key, n, spec.batch_size, mask), step, params, opt_state, key)


@float64
def update(state: MAPState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> MAPState:
    """One epoch: shuffle with the state's key, one Adam step per mini-batch (one lax.scan; with
    convolutions one compiled call per mini-batch, :func:`stepwise_epoch_of`)."""
    if state.spec.conv:
        params, opt_state, key, loss = stepwise_epoch_of(state.spec, state.params, state.opt_state, state.key, X, y, mask)
        return state.replace(params=params, opt_state=opt_state, key=key, epoch=state.epoch + 1, loss=loss)
    return _update(state, X, y, mask)


@jax.jit
def _update(state: MAPState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> MAPState:
    params, opt_state, key, loss = epoch_step(state.params, state.opt_state, state.key, X, y, state.spec, mask)
    return state.replace(params=params, opt_state=opt_state, key=key, epoch=state.epoch + 1, loss=loss)


@jax.jit
def _predict(state, X):
    return forward(state.params, state.spec, X)


@float64
def predict(state: MAPState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Predictive mean of f(x) and its epistemic variance, which is zero for a point estimate."""
    mu, _ = _predict(state, jnp.asarray(X))
    return mu, jnp.zeros_like(mu)


@float64
def noise_variance(state: MAPState, X: jax.Array) -> jax.Array:
    """Aleatoric variance sigma^2(x) per row (constant for the homoscedastic head)."""
    return _predict(state, jnp.asarray(X))[1]


@float64
def predict_moments(state: MAPState, X: jax.Array, X_var: jax.Array | None = None) -> Moments:
    """:class:`Moments` per row from one pass: mu(x), 0, sigma^2(x).

    With ``X_var`` (variances of uncertain inputs, broadcastable to X, standardised units): the
    moments over :data:`INPUT_DRAWS` input draws (:func:`input_noise_draws`), the mean of mu, its
    variance over the draws as the variance of f (``epistemic_var``) and the mean of sigma^2."""
    if X_var is None:
        mu, noise = _predict(state, jnp.asarray(X))
        return Moments(mu, jnp.zeros_like(mu), noise)
    X = jnp.asarray(X)
    return _predict_noisy(state, X, jnp.broadcast_to(jnp.asarray(X_var, X.dtype), X.shape), INPUT_DRAWS)


#: Input draws per prediction with uncertain inputs (``X_var``) for the point-estimate networks
#: (MAP, deep ensembles): the Monte Carlo standard error of the predictive mean is then an
#: eighth of the input noise's share of the predictive standard deviation.
INPUT_DRAWS = 64
#: Salt that separates the input-noise key from the shuffling key carried in a state.
_INPUT_SALT = 0x1A9E7


def input_noise_draws(key: jax.Array, n_draws: int, n_features: int, dtype) -> jax.Array:
    """Standard normal draws eps of shape (n_draws, n_features), one per draw shared by every row
    (input draw t is ``X + sqrt(X_var) * eps[t]``, so a row's prediction does not depend on the
    other rows, as MC dropout shares its masks), from ``fold_in(key, salt)``: a state's key gives
    the same draws every time."""
    return jax.random.normal(jax.random.fold_in(key, _INPUT_SALT), (n_draws, n_features), dtype)


@partial(jax.jit, static_argnums=3)
def _predict_noisy(state, X, X_var, n_draws):
    dtype = jnp.dtype(state.spec.dtype)
    X, X_var = X.astype(dtype), X_var.astype(dtype)
    sd = jnp.sqrt(X_var)
    eps = input_noise_draws(state.key, n_draws, X.shape[-1], dtype)
    mu, sigma2 = jax.lax.map(lambda e: forward(state.params, state.spec, X + sd * e), eps)
    return Moments(*mixture_moments(mu, sigma2))


#: The MAP network behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="map", spec_class=MAPSpec, init=init, update=update, predict=predict_moments)

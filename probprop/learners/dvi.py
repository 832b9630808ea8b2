"""Deterministic variational inference (DVI): Wu et al., "Deterministic Variational Inference
for Robust Bayesian Neural Networks", ICLR 2019 -- the diagonal variant ("dDVI").

Mean-field Gaussian weights q(w) = prod N(mu, softplus(rho)^2) (weights and biases), a ReLU MLP
with unscaled linear layers a = z W + b, and the ELBO

    ELBO = N * mean_i E_q[log p(y_i | x_i, w)] - KL(q || p)

maximised by Adam on mini-batches (objective per row: -E_q[log p(y_i | .)] + kl_weight * KL / N).
No sampling: the expected log-likelihood comes from the moments (m, v) of the network output
under q, propagated layer by layer:

* linear layer, independent weights and inputs z ~ (m_z, v_z):
  E[a] = m_z M + M_b,  Var[a] = v_z (M*M) + (m_z^2 + v_z) V + V_b   (``linear_moments``);
* ReLU: exact rectified-Gaussian moments of a ~ N(E a, Var a) (:func:`probprop.moments.relu`);
* units of one layer are treated as independent (the diagonal approximation of dDVI; DVI
  proper would propagate their covariance). With one hidden layer and deterministic inputs
  the pre-activations are exactly Gaussian and independent, so the output moments are exact.

Expected log-likelihood per point:

* homoscedastic head (one output f, a learned point estimate ``log_noise = log s^2``), exact
  given the moments of f:  E[log N(y | f, s^2)] = -0.5 log(2 pi s^2) - ((y - m_f)^2 + v_f) / (2 s^2);
* heteroscedastic head (outputs f and l = log sigma^2), the paper's approximation with f and l
  treated as independent and l as Gaussian N(m_l, v_l) (so E[e^{-l}] is a lognormal mean):

      E[log N(y | f, e^l)] ~= -0.5 [log 2 pi + m_l + ((y - m_f)^2 + v_f) exp(-m_l + v_l / 2)].

KL to the prior N(0, s_L) of each layer L (closed form, summed over weights and biases):

    KL = 0.5 sum [ (sigma^2 + mu^2) / s_L - 1 - log(sigma^2 / s_L) ].

Prior variance: fixed ``prior_var``, or (``empirical_bayes=True``, the paper's default) set per
layer at every step to the maximiser of E_q[log N(w | 0, s)] + log InvGamma(s | alpha, beta)
(alpha = 1, beta = 10 as in the paper):

    s_L* = (beta + 0.5 sum_L (sigma^2 + mu^2)) / (alpha + 1 + n_L / 2),

held fixed (stop_gradient) when differentiating, which by the envelope theorem gives the
gradient of the ELBO maximised over s. ``kl_warmup_epochs`` ramps kl_weight linearly from
1/warmup to 1 over the first epochs (0: no warm-up).

Predictions: :func:`predict` returns (E f, Var f), the epistemic moments; :func:`noise_variance`
the aleatoric variance, s^2 (homoscedastic) or E[e^l] = exp(m_l + v_l / 2) (heteroscedastic).

    state = init(key, spec)
    state = update(state, X, y)          # one epoch
    mean, var = predict(state, X)
    noise_variance(state, X)

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol. The
expected log-likelihood comes from the spec's likelihood (:mod:`probprop.likelihoods`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from probprop.learners._sgd import GradientState, adam, check_network_spec, check_positive, sgd_epoch
from probprop.learners.base import Learner, Moments, float64
from probprop.learners.mapnet import _softplus_inverse
from probprop.likelihoods import GaussianNoise, HeteroscedasticGaussian
from probprop.moments import ACTIVATIONS, input_noise, linear, relu
from probprop.moments.linear import linear_shared


@dataclass(frozen=True)
class DVISpec:
    """Static description of a dDVI network (hashable: one compilation per spec and data shape).

    ``init_std`` is the initial posterior standard deviation of every weight; the means start
    LeCun-normal, N(0, 1/fan_in), biases at 0. Defaults (Adam 3e-3, batch 32) were picked on
    three random 80/20 folds of the Boston split-0 training rows, where the validation LL peaked
    near 100 epochs (40: slightly worse; 200-400: slightly worse, the EB prior lets it overfit).
    """

    n_in: int
    hidden: tuple[int, ...] = (50,)
    heteroscedastic: bool = True
    prior_var: float = 1.0
    empirical_bayes: bool = True
    eb_alpha: float = 1.0
    eb_beta: float = 10.0
    learning_rate: float = 3e-3
    batch_size: int = 32
    init_std: float = 1e-3
    init_noise_variance: float = 0.1
    kl_warmup_epochs: int = 0
    dtype: str = "float64"

    def __post_init__(self):
        check_network_spec(self)
        for name in ("prior_var", "eb_alpha", "eb_beta", "learning_rate", "init_std", "init_noise_variance"):
            check_positive(name, getattr(self, name))
        if not (isinstance(self.kl_warmup_epochs, int) and self.kl_warmup_epochs >= 0):
            raise ValueError(f"kl_warmup_epochs must be an int >= 0, got {self.kl_warmup_epochs!r}")

    @property
    def likelihood(self):
        """The observation model (:mod:`probprop.likelihoods`)."""
        return HeteroscedasticGaussian() if self.heteroscedastic else GaussianNoise()

    @property
    def n_out(self) -> int:
        return self.likelihood.n_outputs

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_in, *self.hidden, self.n_out)


#: DVIState is the shared :class:`GradientState`; here ``params = {"layers": ({"w_mu", "w_rho",
#: "b_mu", "b_rho"}, ...), "log_noise": scalar}`` (``w_*`` of shape (fan_in, fan_out); ``log_noise``
#: only for the homoscedastic head), the Adam state, the shuffling key, epochs done and the last
#: epoch's mean objective (-ELBO / N).

DVIState = GradientState


optimizer = adam


def init_params(key: jax.Array, spec: DVISpec) -> dict:
    dtype = jnp.dtype(spec.dtype)
    sizes = spec.layer_sizes
    rho0 = _softplus_inverse(spec.init_std)
    layers = []
    for k, fan_in, fan_out in zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:]):
        layers.append(
            {
                "w_mu": jax.random.normal(k, (fan_in, fan_out), dtype) / math.sqrt(fan_in),
                "w_rho": jnp.full((fan_in, fan_out), rho0, dtype),
                "b_mu": jnp.zeros(fan_out, dtype),
                "b_rho": jnp.full(fan_out, rho0, dtype),
            }
        )
    params = {}
    if spec.heteroscedastic:
        last = layers[-1]
        last["w_mu"] = last["w_mu"].at[:, 1].multiply(0.1)
        last["b_mu"] = last["b_mu"].at[1].set(math.log(spec.init_noise_variance))
    else:
        params["log_noise"] = jnp.asarray(math.log(spec.init_noise_variance), dtype)
    params["layers"] = tuple(layers)
    return params


@float64
def init(key: jax.Array, spec: DVISpec) -> DVIState:
    """LeCun-normal means, posterior std ``init_std``, a fresh Adam state."""
    return _init(key, spec)


@partial(jax.jit, static_argnums=1)
def _init(key: jax.Array, spec: DVISpec) -> DVIState:
    key, sub = jax.random.split(key)
    params = init_params(sub, spec)
    return DVIState(
        params=params,
        opt_state=optimizer(spec).init(params),
        key=key,
        epoch=jnp.zeros((), jnp.int32),
        loss=jnp.asarray(jnp.nan, jnp.dtype(spec.dtype)),
        spec=spec,
    )


# ---------------------------------------------------------------------------------------------
# Moments


def layer_moments(layer: dict) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(w mean, w variance, b mean, b variance) of one layer under q."""
    return (
        layer["w_mu"],
        jax.nn.softplus(layer["w_rho"]) ** 2,
        layer["b_mu"],
        jax.nn.softplus(layer["b_rho"]) ** 2,
    )


def linear_moments(w_mean, w_var, b_mean, b_var, in_mean, in_var):
    """Moments of a = z W + b for independent Gaussian W (fan_in, fan_out), b and independent
    inputs z ~ (m, v); ``in_var=None`` means deterministic inputs: the unscaled
    :func:`probprop.moments.linear` plus the bias."""
    mean, var = linear(w_mean.T, w_var.T, in_mean, in_var, scaled=False)
    return mean + b_mean, var + b_var


def output_moments(params: dict, spec: DVISpec, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of every network output under q, shape (n, n_out) each."""
    mean, var = jnp.asarray(X).astype(jnp.dtype(spec.dtype)), None
    last = len(params["layers"]) - 1
    for i, layer in enumerate(params["layers"]):
        mean, var = linear_moments(*layer_moments(layer), mean, var)
        if i < last:
            mean, var = relu(mean, var)
    return mean, var


def expected_log_likelihood(params: dict, spec: DVISpec, X: jax.Array, y: jax.Array) -> jax.Array:
    """E_q[log p(y_i | x_i, w)] per row from the output moments (see the module docstring)."""
    mean, var = output_moments(params, spec, X)
    y = jnp.asarray(y).astype(mean.dtype)
    return spec.likelihood.expected_log_likelihood(y, mean, var, params.get("log_noise"))


def _layer_stats(layer: dict):
    w_mean, w_var, b_mean, b_var = layer_moments(layer)
    second = jnp.sum(w_var + w_mean**2) + jnp.sum(b_var + b_mean**2)
    log_var = jnp.sum(jnp.log(w_var)) + jnp.sum(jnp.log(b_var))
    return second, log_var, w_mean.size + b_mean.size


def prior_variances(params: dict, spec: DVISpec) -> tuple[jax.Array, ...]:
    """Prior variance of each layer: ``prior_var``, or the empirical-Bayes optimum (held fixed
    for differentiation) s* = (beta + 0.5 sum(sigma^2 + mu^2)) / (alpha + 1 + n / 2)."""
    out = []
    for layer in params["layers"]:
        if spec.empirical_bayes:
            second, _, n = _layer_stats(layer)
            s = (spec.eb_beta + 0.5 * second) / (spec.eb_alpha + 1.0 + 0.5 * n)
            out.append(jax.lax.stop_gradient(s))
        else:
            out.append(jnp.asarray(spec.prior_var, jnp.dtype(spec.dtype)))
    return tuple(out)


def kl_divergence(params: dict, spec: DVISpec, prior_vars=None) -> jax.Array:
    """KL(q || prod_L N(0, s_L)) in closed form, summed over every weight and bias."""
    prior_vars = prior_variances(params, spec) if prior_vars is None else prior_vars
    total = 0.0
    for layer, s in zip(params["layers"], prior_vars):
        second, log_var, n = _layer_stats(layer)
        total = total + 0.5 * (second / s - n - log_var + n * jnp.log(s))
    return total


def sample_network(key: jax.Array, params: dict) -> tuple[tuple[jax.Array, jax.Array], ...]:
    """One draw of every weight and bias from q, as ((W, b), ...) for :func:`mapnet.mlp`."""
    layers = []
    for k, layer in zip(jax.random.split(key, len(params["layers"])), params["layers"]):
        kw, kb = jax.random.split(k)
        w_mean, w_var, b_mean, b_var = layer_moments(layer)
        W = w_mean + jnp.sqrt(w_var) * jax.random.normal(kw, w_mean.shape, w_mean.dtype)
        b = b_mean + jnp.sqrt(b_var) * jax.random.normal(kb, b_mean.shape, b_mean.dtype)
        layers.append((W, b))
    return tuple(layers)


# ---------------------------------------------------------------------------------------------
# Learning


def kl_weight(spec: DVISpec, epoch: jax.Array) -> jax.Array:
    """Linear KL warm-up: (epoch + 1) / kl_warmup_epochs, capped at 1."""
    if spec.kl_warmup_epochs == 0:
        return jnp.ones((), jnp.dtype(spec.dtype))
    return jnp.minimum(1.0, (epoch + 1.0) / spec.kl_warmup_epochs).astype(jnp.dtype(spec.dtype))


def make_loss(spec: DVISpec, n_train, weight):
    """The :mod:`_sgd` loss: (-E_q log p(y_i | .) per row, weight * KL / N)."""

    def loss_fn(params, X, y, key):
        del key
        return -expected_log_likelihood(params, spec, X, y), weight * kl_divergence(params, spec) / n_train

    return loss_fn


@float64
def update(state: DVIState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> DVIState:
    """One epoch of Adam on -ELBO / N: shuffle with the state's key, one step per mini-batch."""
    return _update(state, X, y, mask)


@jax.jit
def _update(state: DVIState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> DVIState:
    """One epoch of Adam on -ELBO / N: shuffle with the state's key, one step per mini-batch."""
    spec = state.spec
    X = jnp.asarray(X).astype(jnp.dtype(spec.dtype))
    y = jnp.asarray(y).astype(jnp.dtype(spec.dtype))
    n_train = X.shape[0] if mask is None else jnp.sum(mask)
    loss_fn = make_loss(spec, n_train, kl_weight(spec, state.epoch))
    params, opt_state, key, loss = sgd_epoch(
        state.params, state.opt_state, state.key, X, y, loss_fn, optimizer(spec), spec.batch_size, mask
    )
    return state.replace(params=params, opt_state=opt_state, key=key, epoch=state.epoch + 1, loss=loss)


def elbo(state: DVIState, X: jax.Array, y: jax.Array) -> jax.Array:
    """sum_i E_q[log p(y_i | x_i, w)] - KL (with the current prior variances)."""
    return jnp.sum(expected_log_likelihood(state.params, state.spec, X, y)) - kl_divergence(state.params, state.spec)


@float64
def predict(state: DVIState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(E f, Var f) of the mean output under q (epistemic)."""
    mean, var, _ = _predict_moments(state, jnp.asarray(X))
    return mean, var


@float64
def noise_variance(state: DVIState, X: jax.Array) -> jax.Array:
    """Aleatoric variance per row: s^2 (homoscedastic) or E[e^l] = exp(m_l + v_l / 2)."""
    return _predict_moments(state, jnp.asarray(X)).noise_var


def output_moments_noisy(params: dict, spec: DVISpec, X: jax.Array, X_var: jax.Array, propagation: str = "moments"):
    """:func:`output_moments` for uncertain inputs x ~ N(X, X_var) (per entry, independent of each
    other and of the weights), with the covariances the input noise induces between units
    (:mod:`probprop.moments.input_noise`); ``propagation="linear"`` linearises the ReLUs."""
    dtype = jnp.dtype(spec.dtype)
    mean, var, cov = input_noise.input_moments(jnp.asarray(X).astype(dtype), jnp.asarray(X_var).astype(dtype))
    last = len(params["layers"]) - 1
    for i, layer in enumerate(params["layers"]):
        w_mean, w_var, b_mean, b_var = layer_moments(layer)
        mean, var, cov = linear_shared(w_mean.T, w_var.T, mean, var, cov, scaled=False)
        mean, var = mean + b_mean, var + b_var  # the bias: independent, shares no input noise
        if i < last:
            mean, var, cov = input_noise.activate(ACTIVATIONS["relu"], mean, var, cov, propagation)
    return mean, var


@float64
def predict_moments(state: DVIState, X: jax.Array, X_var: jax.Array | None = None,
                    propagation: str = "moments") -> Moments:
    """:class:`Moments` per row from one pass: (E f, Var f) and the noise variance.

    ``X_var`` (broadcastable to X): the variances of uncertain inputs, in standardised units
    (None: deterministic inputs, the plain compiled pass). ``propagation``: ``"moments"`` or
    ``"linear"`` (:mod:`probprop.moments.input_noise`)."""
    return input_noise.predict_with(_predict_moments, _predict_moments_noisy, state, X, X_var, propagation)


@partial(jax.jit, static_argnames="propagation")
def _predict_moments_noisy(state, X, X_var, propagation):
    return _output_moments(state, *output_moments_noisy(state.params, state.spec, X, X_var, propagation))


@jax.jit
def _predict_moments(state, X):
    return _output_moments(state, *output_moments(state.params, state.spec, X))


def _output_moments(state, mean, var):
    if state.spec.heteroscedastic:
        noise = state.spec.likelihood.noise_from_outputs(mean, var)
    else:
        noise = jnp.broadcast_to(jnp.exp(state.params["log_noise"]), mean.shape[:-1])
    return Moments(mean[..., 0], var[..., 0], noise)


#: DVI behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="dvi", spec_class=DVISpec, init=init, update=update, predict=predict_moments)

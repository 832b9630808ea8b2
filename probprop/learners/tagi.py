"""Tractable approximate Gaussian inference (TAGI): Goulet, Nguyen & Amiri, JMLR 22(20), 2021.

A network (dense layers, optionally after convolutions; regression or classification) whose
weights and biases are independent Gaussians N(mu, var). Learning needs no gradients: the forward
pass propagates closed-form moments and the covariances between hidden states and parameters,
and the backward pass conditions each layer on the observation by Gaussian conditioning, top
down, like a Rauch-Tung-Striebel smoother, in the "innovation" (delta) form that pytagi's layers
implement (``delta_mu``, ``delta_var``; TAGI-MAT, the paper's MATLAB code, writes the same gains
in covariance form).

Pure functions over an immutable :class:`TAGIState`:

    state = init(key, spec)
    state = update(state, X, y)          # one epoch: shuffle, one lax.scan over mini-batches
    mean, var = predict(state, X)        # epistemic moments of the network output
    noise_variance(state)                # sigma_v^2 (fixed; see select_sigma_v)
    noise_variance(state, X)             # E[noise variance] per row (heteroscedastic=True)

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol. The
output's innovation comes from the spec's likelihood (:mod:`probprop.likelihoods`): a Gaussian of
variance sigma_v^2, or the AGVI head.

Everything works in standardised units; the estimator converts at the edge.

Forward (per data point, vectorised over a mini-batch; l-th layer Z = W A + b, all factors
independent, the bias an input fixed to 1 with variance 0):

    E[Z_j]         = sum_k mu_w_jk mu_a_k + mu_b_j
    Var[Z_j]       = sum_k (var_w var_a + var_w mu_a^2 + var_a mu_w^2)_jk + var_b_j
    Cov(Z_j, w_jk) = var_w_jk mu_a_k,          Cov(Z_j, b_j) = var_b_j
    Cov(Z+_j, A_k) = mu_w_jk var_a_k           (Z+ the next layer's pre-activation)
    Cov(A_k, Z_k)  = J_k var_z_k,              J = dE[A]/dm of the activation moment map

The activation moments (E[A], Var[A]) come from :data:`probprop.moments.ACTIVATIONS`. For
Gaussian Z, Stein's lemma gives Cov(g(Z), Z) = Var[Z] E[g'(Z)] = Var[Z] dE[g(Z)]/dm exactly,
so J = dE_dm is the exact regression coefficient of A on Z (for ReLU, J = Phi(m / s)).

Backward, with delta_mu = Var^-1 (posterior mean - prior mean) and
delta_var = Var^-1 (posterior var - prior var) Var^-1 the innovation of a unit:

    output (y = Z_out + V, V ~ N(0, sigma_v^2)), S = var_z + sigma_v^2:
        delta_mu_Z = (y - mu_z) / S,       delta_var_Z = -1 / S
    parameters of a layer (summed over the mini-batch):
        mu_theta  += sum_n Cov(theta, Z_n) delta_mu_Z_n
        var_theta += sum_n Cov(theta, Z_n)^2 delta_var_Z_n
    hidden state below (diagonal covariances, as in the paper):
        delta_mu_A  = sum_j mu_w_jk delta_mu_Z+_j,   delta_var_A = sum_j mu_w_jk^2 delta_var_Z+_j
        delta_mu_Z  = J delta_mu_A,                  delta_var_Z = J^2 delta_var_A

(Cov(A, Z+) / Var(A) = mu_w and Cov(Z, A) / Var(Z) = J turn the smoother gains of TAGI-MAT
``backwardHiddeStateUpdate`` into these products.) Every covariance uses the parameter moments
from before the mini-batch. With no hidden layer and one observation the update is the exact
Bayesian linear-regression posterior marginal.

Heteroscedastic noise (``TAGISpec(heteroscedastic=True)``): AGVI, the approximate Gaussian
variance inference of Deka, Nguyen & Goulet ("Analytically tractable heteroscedastic uncertainty
quantification in Bayesian neural networks for regression tasks", Neurocomputing 2024). The
output layer has two units, Z_mu (the mean) and Z_s; the noise variance is the hidden state
Vbar2 = exp(Z_s) (moments from :func:`probprop.moments.exponential`), y = Z_mu + V with
V | Vbar2 ~ N(0, Vbar2). Everything stays Gaussian conditioning, in four steps per point
(:func:`heteroscedastic_deltas`, with mu = E[Vbar2], s2 = Var[Z_s], c = 3 expm1(s2) + 2):

    1. y = Z_mu + V with V ~ N(0, mu), S = var_mu + mu: the mean head gets the homoscedastic
       innovation with sigma_v^2 = mu, and V | y ~ N(m_V, v_V), m_V = mu (y - mu_z) / S,
       v_V = mu var_mu / S.
    2. V^2 | y: E = m_V^2 + v_V, Var = 2 v_V^2 + 4 m_V^2 v_V (moments of a squared Gaussian).
    3. Prior of (Vbar2, V^2): E[V^2] = mu; Cov(Vbar2, V^2) = Var[Vbar2] = mu^2 expm1(s2);
       Var[V^2] = 3 E[Vbar2^2] - mu^2 = mu^2 c (E[V^4 | Vbar2] = 3 Vbar2^2). Conditioning Vbar2
       on V^2 (an RTS step with gain K = Cov / Var[V^2]) and Z_s on Vbar2 (gain
       J = Cov(Z_s, Vbar2) / Var[Vbar2] = s2 / (mu expm1(s2))) gives the innovation of Z_s
    4.     delta_mu_Zs  = (E[V^2 | y] - mu) / (mu c)
           delta_var_Zs = (Var[V^2 | y] - mu^2 c) / (mu c)^2
       (J K = s2 / (mu c): the s2 and expm1 factors cancel, so small variances are safe).

The two output units' innovations then go down the network together (the layer below sums
both units' contributions). The prediction's noise variance is E[Vbar2] = exp(m_s + s2 / 2).

Classification (``TAGISpec(n_classes=K)``): the output units are the latent utilities of the
probit (K = 2, one unit) or the multinomial probit (K units) of
:mod:`probprop.likelihoods.classification`, the likelihoods PBP's classifier uses. Their
innovation is the ADF moment match of each unit under that likelihood (log Z exact, or by a 1-D
quadrature): delta_mu = dlogZ/dm, delta_var = 2 dlogZ/dv - (dlogZ/dm)^2
(:meth:`probprop.likelihoods.base.Likelihood.tagi_deltas`; for a Gaussian it is the innovation
above), and everything below the output is TAGI's Gaussian conditioning unchanged. With no
hidden layer and one observation this is the exact ADF update of a Bayesian linear probit model.

Convolutions (``TAGISpec(conv=...)``, :class:`probprop.layers.Conv2D` pieces before the dense
layers, each followed by the activation): the same conditioning with the products a layer piece
forms (``tagi_pullback``). A kernel weight is shared by every position of its maps, so its
Cov(Z, w) = var_w mu_a holds at each position with the input mean the weight meets there, and its
increments sum over the rows and the positions (as pytagi's convolution layer sums them; each
position counts as one more observation of the weight). Average pooling of the pre-activations
keeps E[Z] linear in the kernel and the inputs (the stride-``pool`` correlation of the moving
average of the input means with the kernel, or of the inputs with the spread kernel), so the gains
stay exact products; max pooling (Clark's matching) has no such Jacobian and is refused, as are
the precision form and uncertain inputs (``X_var``). A convolution whose kernel covers the image
is a dense layer and conditions exactly as one (tested).

Where this follows the paper and where pytagi:

* covariances, output update, batch summation and the hidden-state update: TAGI-MAT
  (``tagi.m``) and pytagi alike;
* activation: the exact Gaussian moments of the moment map with J = dE[A]/dm, which for ReLU is
  pytagi's ``MixtureReLU`` (E, Var of the rectified Gaussian, J = Phi(m / s)); TAGI-MAT's
  ``relu`` and pytagi's ``ReLU`` linearise instead (mu_A = max(0, mu_Z), J = 1[mu_Z > 0],
  Var A = J^2 Var Z);
* initialisation as TAGI-MAT ``initializeWeightBias`` with its UCI setting ``factor4Wp =
  0.25``: weight variance ``init_gain / fan_in`` (fan_in without the bias) for every
  activation (TAGI-MAT uses 2 / (fan_in + fan_out) for tanh) and weight means ~ N(0, that
  variance); bias variance ``init_bias_variance`` (TAGI-MAT ``factor4Bp = 0.01``) and bias
  mean 0 (TAGI-MAT draws it from N(0, 0.01)). pytagi's He init differs: means ~ N(0, 1/fan_in)
  whatever the gain, var = gain^2 / fan_in (``init_gain = gain_w^2``), biases the same with
  ``gain_b``;
* ``sigma_v`` 0.3 and ``batch_size`` 10: pytagi's UCI benchmark (TAGI-MAT: 0.32 and 1);
* the variance guard is ours (neither reference has one, see :func:`batch_update`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.layers import Dense
from probprop.layers.conv import check_conv_stack
from probprop.learners import _threefry
from probprop.learners._order import permutation, shuffled_order
from probprop.learners._sgd import as_xy, holdout
from probprop.learners.base import Learner, Moments, Selection, float64, light_jit
from probprop.likelihoods import GaussianNoise, HeteroscedasticGaussian
from probprop.moments import ACTIVATIONS, adf, append_bias, input_noise, linear
from probprop.moments.linear import linear_shared
from probprop.preprocessing import standardisation

#: How a mini-batch's rows are combined: their increments summed (the paper, pytagi), or as
#: independent observations in precision form (:func:`_precision_increments`).
VARIANCE_UPDATES = ("sum", "precision")


def check_conv_options(poolings, variance_update: str) -> None:
    """What a TAGI network with convolutions refuses (a ValueError naming it): pooling other than
    average (max pooling's moments, Clark's, have no linear Jacobian for the conditioning) and the
    precision form (written for dense layers). ``poolings``: the convolutions' pooling kinds."""
    other = sorted(set(poolings) - {"avg"})
    if other:
        raise ValueError(f"TAGI's convolutions pool by average: pooling={other[0]!r} (Clark's max-pooling moments) "
                         "has no linear Jacobian for its conditioning; use pooling='avg'")
    if variance_update != "sum":
        raise ValueError("variance_update='precision' is written for dense layers; a TAGI network with "
                         "convolutions sums its rows' increments (variance_update='sum')")


@dataclass(frozen=True)
class TAGISpec:
    """Static description of a TAGI network (hashable: one compilation per spec and data shape).

    ``sigma_v`` is the standard deviation of the observation noise in standardised units, kept
    fixed while learning (choose it with :func:`select_sigma_v`). ``batch_size`` rows are
    conditioned on at once from the same prior moments; the last partial batch of an epoch is
    padded and masked so that every batch has the compiled shape. ``init_gain`` is the factor of
    the initial weight variance ``init_gain / fan_in``; ``init_bias_variance`` the initial bias
    variance. ``heteroscedastic=True`` adds the AGVI noise-variance unit (module docstring);
    ``sigma_v`` then only sets its initial value (the unit's bias mean is log sigma_v^2).
    ``variance_update``: ``"sum"`` adds the rows' increments (paper, pytagi; a batch's summed
    variance decrements can overshoot below zero, and the guard then refuses the update);
    ``"precision"`` combines the rows as independent observations in precision form, which does
    not overshoot when every row's variance innovation is a decrease that the row alone could make
    (:func:`_precision_increments`).
    """

    n_in: int
    hidden: tuple[int, ...] = (50,)
    activation: str = "relu"
    sigma_v: float = 0.3
    batch_size: int = 10
    init_gain: float = 0.25
    init_bias_variance: float = 0.01
    heteroscedastic: bool = False
    dtype: str = "float64"
    n_classes: int = 0
    variance_update: str = "sum"
    #: Convolution layer pieces (:class:`probprop.layers.Conv2D`, average pooling, each followed by
    #: the activation) before the dense hidden layers (module docstring).
    conv: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "conv", check_conv_stack(self.conv, self.n_in))
        if self.conv:
            check_conv_options({piece.pooling for piece in self.conv}, self.variance_update)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        if not (self.sigma_v > 0 and np.isfinite(self.sigma_v)):
            raise ValueError(f"sigma_v must be positive and finite, got {self.sigma_v!r}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size!r}")
        if not (self.init_gain > 0 and self.init_bias_variance > 0):
            raise ValueError("init_gain and init_bias_variance must be positive")
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, (int, np.integer)) or (
                self.n_classes == 1 or self.n_classes < 0):
            raise ValueError(f"n_classes must be 0 (regression) or an integer >= 2, got {self.n_classes!r}")
        if self.n_classes and self.heteroscedastic:
            raise ValueError("a TAGI classifier (n_classes >= 2) has no heteroscedastic noise head")
        if self.variance_update not in VARIANCE_UPDATES:
            raise ValueError(f"variance_update must be one of {list(VARIANCE_UPDATES)}, got {self.variance_update!r}")

    @property
    def likelihood(self):
        """The observation model (:mod:`probprop.likelihoods`): the Gaussian noise (AGVI head when
        heteroscedastic), or for ``n_classes`` >= 2 the probit (two classes, one output) or the
        multinomial probit (K outputs), whose output innovation is the ADF moment match of each
        unit (:meth:`probprop.likelihoods.base.Likelihood.tagi_deltas`)."""
        if self.n_classes:
            from probprop.likelihoods.classification import MultinomialProbit, Probit

            return Probit() if self.n_classes == 2 else MultinomialProbit(int(self.n_classes))
        return HeteroscedasticGaussian() if self.heteroscedastic else GaussianNoise()

    @property
    def output_likelihood(self):
        """Classification: the likelihood that turns output moments into class probabilities;
        None for regression."""
        return self.likelihood if self.n_classes else None

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Units per layer: the inputs, the convolutions' (pooled) maps, the dense hidden layers,
        the outputs."""
        return (self.n_in, *(piece.n_out for piece in self.conv), *self.hidden, self.likelihood.n_outputs)

    @property
    def layer_pieces(self) -> tuple:
        """One layer piece per weight layer: the convolutions, then dense layers."""
        return tuple(self.conv) + (Dense(),) * (len(self.hidden) + 1)

    @property
    def weight_shapes(self) -> tuple[tuple[int, int], ...]:
        """(out, fan_in + 1) per layer, the last column being the bias (as in PBP); a
        convolution's rows are its maps, (channels, C kernel^2 + 1)."""
        sizes = self.layer_sizes
        return tuple(piece.weight_shape(inp, out, True)
                     for piece, inp, out in zip(self.layer_pieces, sizes[:-1], sizes[1:]))


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["means", "variances", "rejections", "key"],
    meta_fields=["spec"],
)
@dataclass(frozen=True)
class TAGIState:
    """Posterior of a TAGI network. ``means[l]``/``variances[l]`` have shape (out, fan_in + 1),
    the last column being the bias (a convolution's: (channels, C kernel^2 + 1)).
    ``rejections[l]`` counts, per parameter, the mini-batch updates refused by the variance guard
    since ``init``; ``rejected`` is their total."""

    means: tuple[jax.Array, ...]
    variances: tuple[jax.Array, ...]
    rejections: tuple[jax.Array, ...]
    key: jax.Array
    spec: TAGISpec

    def replace(self, **changes) -> TAGIState:
        return dataclasses.replace(self, **changes)

    @property
    def rejected(self) -> jax.Array:
        """Total number of refused parameter updates since ``init``."""
        return sum(jnp.sum(r, dtype=jnp.int64) for r in self.rejections)


@float64
def init(key: jax.Array, spec: TAGISpec) -> TAGIState:
    """Prior: weights N(mu, g / fan_in) with mu ~ N(0, g / fan_in), biases N(0, init_bias_variance)."""
    # built from host arrays: JAX arrays by a transfer that compiles nothing
    return jax.device_put(_init(key, spec))


def _init(key: jax.Array, spec: TAGISpec) -> TAGIState:
    """Built on the host, as NumPy arrays, like PBP's (:func:`probprop.learners.pbp._init`): only
    the normal draws run on the device, through the sampler PBP shares
    (:func:`~probprop.learners._threefry.normal_over`; a compiled init per network shape cost
    1.3-1.7 s of compilation on a first fit). Under :func:`jax.eval_shape` (a traced key) it
    traces and allocates nothing; under ``jit`` its means may differ from the host's by one unit
    in the last place (XLA folds the scale into the sampler's constant sqrt(2))."""
    dtype = np.dtype(spec.dtype)
    key, *layer_keys = _threefry.split(key, len(spec.weight_shapes) + 1)  # on the host for a concrete key
    traced = isinstance(key, jax.core.Tracer)
    xp = jnp if traced else np
    means, variances = [], []
    last = len(spec.weight_shapes) - 1
    for layer, (k, (out, n)) in enumerate(zip(layer_keys, spec.weight_shapes)):
        var_w = spec.init_gain / (n - 1)
        draw = _threefry.normal(k, out * (n - 1)) if traced else _threefry.normal_over(k, (out * (n - 1),), 1.0)
        mean_w = draw.reshape(out, n - 1) * np.sqrt(var_w)  # jax.random.normal's numbers
        mean_b = xp.zeros((out, 1), np.float64)
        if spec.heteroscedastic and layer == last:  # noise unit starts at sigma_v^2
            start = np.log(spec.sigma_v**2)
            if traced:
                mean_b = mean_b.at[1, 0].set(start)
            else:
                mean_b[1, 0] = start
        means.append(xp.concatenate([mean_w, mean_b], 1).astype(dtype))
        var = xp.concatenate([xp.full((out, n - 1), var_w), xp.full((out, 1), spec.init_bias_variance)], 1)
        variances.append(var.astype(dtype))
    return TAGIState(
        means=tuple(means),
        variances=tuple(variances),
        rejections=tuple(xp.zeros(s, np.int32) for s in spec.weight_shapes),
        key=key,
        spec=spec,
    )


@float64
def noise_variance(state: TAGIState, X: jax.Array | None = None) -> jax.Array:
    """The observation-noise variance in standardised units: the fixed sigma_v^2, or, for the
    heteroscedastic network, E[exp(Z_s)] per row of ``X`` (which it then needs)."""
    if not state.spec.heteroscedastic:
        return jnp.asarray(state.spec.sigma_v**2, jnp.float64)
    if X is None:
        raise ValueError("a heteroscedastic TAGI network needs X for its noise variance")
    return _noise_variance(state, jnp.asarray(X))


@jax.jit
def _noise_variance(state, X):
    return _predict_moments(state, X).noise_var


def n_parameters(spec: TAGISpec) -> int:
    return sum(a * b for a, b in spec.weight_shapes)


# ---------------------------------------------------------------------------------------------
# Forward moments


class LayerMoments(NamedTuple):
    """What the backward pass needs of one layer, for inputs of shape (..., ·).

    ``in_mean``/``in_var``: the layer's inputs A with the bias input (1, 0) appended (a
    convolution's: the input maps, flat, without it);
    ``z_mean``/``z_var``: its pre-activations Z; ``jacobian``: J = dE[A]/dm = Cov(A, Z)/Var(Z)
    of the activation that follows (ones for the linear output layer).
    """

    in_mean: jax.Array
    in_var: jax.Array
    z_mean: jax.Array
    z_var: jax.Array
    jacobian: jax.Array


def linear_moments(M, V, in_mean, in_var):
    """Mean and variance of Z = W A for independent W ~ N(M, V), A ~ (in_mean, in_var): the
    unscaled :func:`probprop.moments.linear` (E[Z] = M mu_a, Var[Z] = V var_a + V mu_a^2 + M^2 var_a).
    ``in_var=None`` means deterministic inputs."""
    return linear(M, V, in_mean, in_var, scaled=False)


def forward_moments(state: TAGIState, X: jax.Array) -> tuple[LayerMoments, ...]:
    """Moments of every layer for inputs X of shape (..., n_in) (each row a separate point)."""
    activation = ACTIVATIONS[state.spec.activation]
    mean = jnp.asarray(X).astype(state.means[0].dtype)
    var = None
    layers = []
    last = len(state.means) - 1
    for layer, (M, V, piece) in enumerate(zip(state.means, state.variances, state.spec.layer_pieces)):
        if isinstance(piece, Dense):
            in_mean, in_var = append_bias(mean, jnp.zeros_like(mean) if var is None else var)
            z_mean, z_var = linear_moments(M, V, in_mean, None if var is None else in_var)
        else:
            (in_mean, in_var), (z_mean, z_var) = piece.forward(M, V, mean, var, True, scaled=False)
            in_var = jnp.zeros_like(in_mean) if in_var is None else in_var
        if layer < last:
            mean, var, (dE_dm, *_) = activation(z_mean, z_var)
            jacobian = dE_dm
        else:
            jacobian = jnp.ones_like(z_mean)
        layers.append(LayerMoments(in_mean, in_var, z_mean, z_var, jacobian))
    return tuple(layers)


def forward(state: TAGIState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of the network output for inputs X of shape (..., n_in)."""
    out = forward_moments(state, X)[-1]
    return out.z_mean[..., 0], out.z_var[..., 0]


@float64
def predict(state: TAGIState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Predictive mean and epistemic variance of f(x) (add :func:`noise_variance` for y)."""
    return _predict(state, jnp.asarray(X))


@light_jit
def _predict(state, X):
    return forward(state, X)


def forward_noisy(state: TAGIState, X: jax.Array, X_var: jax.Array, propagation: str = "moments"):
    """Mean and variance of every output unit, shape (..., n_out) each, for uncertain inputs
    x ~ N(X, X_var) (per entry, independent of each other and of the weights), with the
    covariances the input noise induces between units (:mod:`probprop.moments.input_noise`);
    ``propagation="linear"`` linearises the activations. Dense networks only."""
    if state.spec.conv:
        raise ValueError("uncertain inputs (X_var) are not supported by TAGI networks with convolutions")
    activation = ACTIVATIONS[state.spec.activation]
    dtype = state.means[0].dtype
    mean, var, cov = input_noise.input_moments(jnp.asarray(X).astype(dtype), jnp.asarray(X_var).astype(dtype))
    last = len(state.means) - 1
    for layer, (M, V) in enumerate(zip(state.means, state.variances)):
        mean, var, cov = linear_shared(M, V, *input_noise.append_bias(mean, var, cov), scaled=False)
        if layer < last:
            mean, var, cov = input_noise.activate(activation, mean, var, cov, propagation)
    return mean, var


@float64
def predict_moments(state: TAGIState, X: jax.Array, X_var: jax.Array | None = None,
                    propagation: str = "moments") -> Moments:
    """:class:`Moments` per row from one forward pass: mean, epistemic variance, noise variance
    (sigma_v^2, or the heteroscedastic head's E[exp(Z_s)]).

    ``X_var`` (broadcastable to X): the variances of uncertain inputs, in standardised units
    (None: deterministic inputs, the plain compiled pass). ``propagation``: ``"moments"`` or
    ``"linear"`` (:mod:`probprop.moments.input_noise`)."""
    return input_noise.predict_with(_predict_moments, _predict_moments_noisy, state, X, X_var, propagation)


def _output_moments(state, z_mean, z_var):
    if state.spec.n_classes > 2:  # the K latent utilities; no noise beyond the likelihood's own
        return Moments(z_mean, z_var, jnp.zeros_like(z_mean))
    mean, var = z_mean[..., 0], z_var[..., 0]
    if state.spec.n_classes:
        noise = jnp.zeros_like(mean)
    elif state.spec.heteroscedastic:
        noise = state.spec.likelihood.noise_from_outputs(z_mean, z_var)
    else:
        noise = jnp.broadcast_to(jnp.asarray(state.spec.sigma_v**2, jnp.float64), mean.shape)
    return Moments(mean, var, noise)


@light_jit
def _predict_moments(state, X):
    out = forward_moments(state, X)[-1]
    return _output_moments(state, out.z_mean, out.z_var)


@partial(jax.jit, static_argnames="propagation")
def _predict_moments_noisy(state, X, X_var, propagation):
    return _output_moments(state, *forward_noisy(state, X, X_var, propagation))


def covariances(state: TAGIState, layers: tuple[LayerMoments, ...]) -> list[dict[str, jax.Array]]:
    """The covariances TAGI's backward pass uses, written out densely (for tests and study).

    Per layer, for points of shape (B, ·):

    * ``z_theta`` (B, out, fan_in + 1): Cov(Z_j, theta_jk) = var_theta_jk mu_a_k (Z_j does not
      depend on the parameters of other units);
    * ``a_z`` (B, out), hidden layers only: Cov(A_j, Z_j) = J_j var_z_j;
    * ``z_below`` (B, out, fan_in), all but the first layer: Cov(Z_j, A_k) = mu_w_jk var_a_k
      between this layer's pre-activations and its (non-bias) inputs, the layer below's A.
    """
    if state.spec.conv:
        raise ValueError("covariances() writes out dense layers only")
    result = []
    for layer, (lm, M, V) in enumerate(zip(layers, state.means, state.variances)):
        entry = {"z_theta": V[None] * lm.in_mean[:, None, :]}
        if layer < len(layers) - 1:
            entry["a_z"] = lm.jacobian * lm.z_var
        if layer > 0:
            entry["z_below"] = M[None, :, :-1] * lm.in_var[:, None, :-1]
        result.append(entry)
    return result


# ---------------------------------------------------------------------------------------------
# Backward: layer-wise Gaussian conditioning


def output_deltas(out: LayerMoments, y: jax.Array, keep: jax.Array, noise_var, likelihood=None):
    """The output units' innovation from the likelihood (:mod:`probprop.likelihoods`): for a
    Gaussian of variance ``noise_var``, ((y - mu_z)/S, -1/S) with S = var_z + noise_var; for the
    two-unit heteroscedastic output, :func:`heteroscedastic_deltas` (``noise_var`` unused).
    Rows with ``keep`` False get zero deltas, so they leave every update unchanged."""
    if likelihood is None:
        likelihood = HeteroscedasticGaussian() if out.z_mean.shape[-1] == 2 else GaussianNoise()
    return likelihood.tagi_deltas(out.z_mean, out.z_var, y, keep, noise_var)


def heteroscedastic_deltas(z_mean: jax.Array, z_var: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """AGVI innovations of the output units (Z_mu, Z_s) for observations y (module docstring;
    the formulas live in :meth:`probprop.likelihoods.HeteroscedasticGaussian.tagi_deltas`).

    ``z_mean``/``z_var`` have shape (B, 2), ``y`` shape (B,); returns ``(delta_mu, delta_var)``
    of shape (B, 2): column 0 for the mean unit, column 1 for the noise unit.
    """
    return HeteroscedasticGaussian().tagi_deltas(z_mean, z_var, y, jnp.ones(jnp.shape(y), bool))


def backward(state: TAGIState, layers: tuple[LayerMoments, ...], d_mean, d_var, combine: str = "sum"):
    """Parameter increments from the output deltas, top down: summed over the batch's rows
    (``combine="sum"``), or combined in precision form (``"precision"``, :func:`_precision_increments`).

    ``d_mean``/``d_var`` have shape (B, n_out). Returns ``(delta_means, delta_variances)``, per layer
    of the shape of ``state.means[l]``:

        delta_mu_theta  = var_theta   * sum_n mu_a_n   delta_mu_Z_n     (Cov(Z, w) = var_w mu_a)
        delta_var_theta = var_theta^2 * sum_n mu_a_n^2 delta_var_Z_n

    A convolution's kernel weight is shared by every position of its maps: the sums then run over
    the rows and the positions (mu_a the input means the weight meets there, averaged over the
    pooling window), as in pytagi's convolution layer; the layer piece's ``tagi_pullback`` forms
    these products and the hidden-state ones.
    """
    n_layers = len(state.means)
    delta_means, delta_vars = [None] * n_layers, [None] * n_layers
    pieces = state.spec.layer_pieces
    for layer in range(n_layers - 1, -1, -1):
        M, V = state.means[layer], state.variances[layer]
        lm = layers[layer]
        dM, dV, d_in_mean, d_in_var = pieces[layer].tagi_pullback(M, lm.in_mean, d_mean, d_var, layer > 0)
        if combine == "precision":
            delta_means[layer], delta_vars[layer] = _precision_increments(M, V, lm.in_mean, d_mean, d_var)
        else:
            delta_means[layer], delta_vars[layer] = V * dM, V * V * dV
        if layer > 0:
            J = layers[layer - 1].jacobian
            d_mean, d_var = J * d_in_mean, J * J * d_in_var
    return delta_means, delta_vars


def _precision_increments(M, V, in_mean, d_mean, d_var):
    """A batch's increments combined in precision form (``TAGISpec(variance_update="precision")``).

    Row n alone would give theta the variance v + v^2 d_n, d_n = mu_a_n^2 delta_var_Z_n (the summed
    form adds these decrements, which can take v below zero), i.e. the precision increment
    -d_n / (1 + v d_n), and the mean m + v mu_a_n delta_mu_Z_n: the conditioning on a Gaussian
    pseudo-observation of theta. The rows are combined as independent pseudo-observations from the
    same prior, as the summed form assumes too:

        1 / v_new = 1 / v + sum_n -d_n / (1 + v d_n)            (positive when every delta_var <= 0)
        m_new     = m + v_new sum_n mu_a_n delta_mu_Z_n / (1 + v d_n)

    One row (or padding rows only) gives the summed form exactly; for a one-parameter linear
    Gaussian model it is the exact posterior of the batch, where the summed form is not (tests).
    The new variance is positive whenever every row's delta_var <= 0 and no row alone would take
    the variance to zero (1 + v d_n > 0, always so for the output units' Gaussian innovation); a
    row with 1 + v d_n <= 0 (possible below the output, where the deltas are approximate) makes
    the parameter's update non-finite, so the guard refuses and counts it, as it refuses the
    summed form's overshoot. Cost: the (B, out, fan_in + 1) terms make a batch 1.2-2.2x slower
    than the summed form's matrix products (docs/benchmarks/tagi-prec).
    Shapes: ``in_mean`` (B, fan_in + 1), ``d_mean``/``d_var`` (B, out); returns the increments
    (m_new - m, v_new - v), of the shape of ``M``."""
    a = in_mean[:, None, :]
    d = d_var[:, :, None] * a * a  # (B, out, fan_in + 1)
    share = 1.0 + V[None] * d
    share = jnp.where(share > 0.0, share, jnp.nan)  # refused by the guard (non-finite increments)
    precision = 1.0 / V - jnp.sum(d / share, axis=0)
    v_new = 1.0 / precision  # <= 0 or inf when a positive delta_var outweighs the prior: refused
    m_new = M + v_new * jnp.sum(d_mean[:, :, None] * a / share, axis=0)
    return m_new - M, v_new - V


def batch_update(state: TAGIState, X: jax.Array, y: jax.Array, mask=None, noise_var=None) -> TAGIState:
    """Condition on one mini-batch (X of shape (B, n_in), y of shape (B,)).

    All covariances use the moments from before the batch and the parameter increments are
    summed over its rows (paper §3, pytagi), or combined in precision form
    (``spec.variance_update="precision"``, :func:`_precision_increments`). Rows with ``mask`` False are ignored exactly (their
    inputs are zeroed first, so even NaN padding is harmless). ``noise_var`` defaults to
    ``sigma_v^2``.

    A parameter whose new variance would be non-positive (at or below ``adf.MIN_VARIANCE``) or
    non-finite, or whose new mean would be non-finite, keeps its old moments; such refusals are
    counted in ``state.rejections``. (Summing a batch's variance decrements can overshoot the
    variance; the references do not guard against it.)
    """
    dtype = state.means[0].dtype
    X = jnp.asarray(X).astype(dtype)
    y = jnp.asarray(y).astype(dtype)
    keep = jnp.ones(y.shape, bool) if mask is None else jnp.asarray(mask, bool)
    X = jnp.where(keep[:, None], X, 0.0)
    y = jnp.where(keep, y, 0.0)
    if noise_var is None:
        noise_var = state.spec.sigma_v**2
    layers = forward_moments(state, X)
    d_mean, d_var = output_deltas(layers[-1], y, keep, jnp.asarray(noise_var, dtype), state.spec.likelihood)
    delta_means, delta_vars = backward(state, layers, d_mean, d_var, state.spec.variance_update)
    means, variances, rejections = [], [], []
    for M, V, dM, dV, count in zip(state.means, state.variances, delta_means, delta_vars, state.rejections):
        m_new, v_new = M + dM, V + dV
        ok = adf.valid_gaussian(m_new, v_new)
        means.append(jnp.where(ok, m_new, M))
        variances.append(jnp.where(ok, v_new, V))
        rejections.append(count + jnp.where(ok, 0, 1).astype(count.dtype))
    return state.replace(means=tuple(means), variances=tuple(variances), rejections=tuple(rejections))


def step(state: TAGIState, X: jax.Array, y: jax.Array, keep: jax.Array | None = None) -> TAGIState:
    """Condition on the rows of X at once (the learner's online step, called with ``batch_size``
    rows by :func:`probprop.learners.drift.sweep`): :func:`batch_update`."""
    return batch_update(state, X, y, keep)


def sweep(state: TAGIState, X: jax.Array, y: jax.Array, mask=None, noise_var=None) -> TAGIState:
    """Mini-batch updates over the rows of X in order, in one ``lax.scan``.

    The rows are padded to a multiple of ``batch_size`` with masked rows, so every batch has the
    same shape; rows with ``mask`` False are skipped.
    """
    batch = state.spec.batch_size
    X = jnp.asarray(X).astype(state.means[0].dtype)
    y = jnp.asarray(y)
    n = y.shape[0]
    keep = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool)
    pad = -n % batch
    if pad:
        X = jnp.concatenate([X, jnp.zeros((pad, X.shape[1]), X.dtype)])
        y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
        keep = jnp.concatenate([keep, jnp.zeros((pad,), bool)])
    n_batches = (n + pad) // batch
    batches = (
        X.reshape(n_batches, batch, X.shape[1]),
        y.reshape(n_batches, batch),
        keep.reshape(n_batches, batch),
    )

    def step(carry, rows):
        return batch_update(carry, *rows, noise_var=noise_var), None

    state, _ = lax.scan(step, state, batches)
    return state


def _epoch(state: TAGIState, X, y, mask, noise_var) -> TAGIState:
    key, sub = _threefry.split(state.key)
    if mask is None:
        order = permutation(sub, y.shape[0])
        state = sweep(state, X[order], y[order], None, noise_var)
    else:
        order = shuffled_order(sub, mask)
        state = sweep(state, X[order], y[order], mask[order], noise_var)
    return state.replace(key=key)


@float64
def update(state: TAGIState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> TAGIState:
    """One TAGI epoch: a fresh random order, then one conditioning step per mini-batch.

    ``mask`` (optional) marks the real rows of X when the data are padded to a reusable shape;
    the padded rows go last in the order and are skipped.
    """
    return _update(state, X, y, mask)


@jax.jit
def _update(state: TAGIState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> TAGIState:
    """One TAGI epoch: a fresh random order, then one conditioning step per mini-batch.

    ``mask`` (optional) marks the real rows of X when the data are padded to a reusable shape;
    the padded rows go last in the order and are skipped.
    """
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    return _epoch(state, X, y, mask, state.spec.sigma_v**2)


# ---------------------------------------------------------------------------------------------
# Observation noise chosen on a validation split


@jax.jit
def _grid_epoch(states, X, y, noise_vars):
    return jax.vmap(_epoch, in_axes=(0, None, None, None, 0))(states, X, y, None, noise_vars)


@jax.jit
def _grid_log_likelihood(states, X, y, noise_vars):
    mean, var = jax.vmap(forward, in_axes=(0, None))(states, X)
    total = var + noise_vars[:, None]
    log_lik = -0.5 * (jnp.log(2.0 * jnp.pi * total) + (y[None] - mean) ** 2 / total)
    return jnp.mean(log_lik, axis=1)


def select_sigma_v(
    X,
    y,
    grid=(0.1, 0.2, 0.3, 0.5, 0.7),
    epochs: int = 40,
    key: jax.Array | None = None,
    val_fraction: float = 0.1,
    spec: TAGISpec | None = None,
) -> Selection:
    """Choose sigma_v by validation log-likelihood on a split carved from the training data.

    Pass only training data: a random ``val_fraction`` of its rows is held out, the rest (the
    fit part) is standardised with its own statistics (X per column, y), a TAGI network
    (``spec``, default ``TAGISpec(n_in=X.shape[1])``; its ``sigma_v`` is ignored) is trained for
    ``epochs`` epochs for every grid value from the same initial state and data order, and the
    value with the highest mean log-likelihood of the held-out rows (standardised the same way,
    epistemic variance + sigma_v^2) wins; ties go to the smaller value. The grid values are in
    standardised units, like ``TAGISpec.sigma_v``. All grid values are trained at once
    (``vmap``), so the cost is one compilation. Returns a :class:`Selection` (``chosen`` and
    ``grid`` keyed by ``"sigma_v"``).
    """
    with jax.enable_x64(True):
        return _select_sigma_v(X, y, grid, epochs, key, val_fraction, spec)


def _select_sigma_v(X, y, grid, epochs, key, val_fraction, spec) -> Selection:
    X, y = as_xy(X, y)
    grid = tuple(float(s) for s in grid)
    if not grid or any(not (s > 0 and np.isfinite(s)) for s in grid):
        raise ValueError(f"grid must hold positive finite values, got {grid!r}")
    n = y.shape[0]
    if not 1 <= round(val_fraction * n) <= n - 2:
        raise ValueError(f"val_fraction={val_fraction!r} leaves no usable split of {n} rows")
    key = _threefry.key(0) if key is None else key
    k_split, k_init = _threefry.split(key)
    val, fit = holdout(n, val_fraction, k_split)
    # the fit part standardised on its own, with the exactly-constant rule (constant_tol=0)
    x_mean, x_std = standardisation(X[fit], constant_tol=0.0)
    y_mean, y_std = (float(a[0]) for a in standardisation(y[fit, None], constant_tol=0.0))
    Xs, ys = (X - x_mean) / x_std, (y - y_mean) / y_std

    spec = TAGISpec(n_in=X.shape[1]) if spec is None else dataclasses.replace(spec, n_in=X.shape[1])
    if spec.heteroscedastic:
        raise ValueError("select_sigma_v is for the homoscedastic network; the heteroscedastic one learns its noise")
    if spec.n_classes:
        raise ValueError("select_sigma_v is for regression; a TAGI classifier has no observation noise to choose")
    state = _init(k_init, spec)
    # host arrays into the compiled programs (handed over once): eager jnp operations here compiled
    # eight small programs of their own on a first call (the same numbers: x * x rounds the same)
    states = jax.device_put(jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a), (len(grid),) + a.shape),
                                                   state))
    dtype = np.dtype(state.means[0].dtype)
    noise_vars = jax.device_put(np.asarray(grid, dtype) ** 2)
    X_fit, y_fit = jax.device_put((np.asarray(Xs[fit], dtype), np.asarray(ys[fit], dtype)))
    for _ in range(int(epochs)):
        states = _grid_epoch(states, X_fit, y_fit, noise_vars)
    scores = np.asarray(
        _grid_log_likelihood(states, np.asarray(Xs[val], dtype), np.asarray(ys[val], dtype), noise_vars),
        np.float64,
    )
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    best = grid[int(np.argmax(scores))]
    return Selection(spec=dataclasses.replace(spec, sigma_v=best), chosen={"sigma_v": best},
                     grid={"sigma_v": grid}, scores=scores)


def select(X, y, spec: TAGISpec, *, epochs: int = 40, key=None, grid=None) -> Selection:
    """The learner protocol's search: :func:`select_sigma_v` (``grid``: sigma_v values)."""
    kwargs = {} if grid is None else {"grid": grid}
    return select_sigma_v(X, y, epochs=epochs, key=key, spec=spec, **kwargs)


#: TAGI behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="tagi", spec_class=TAGISpec, init=init, update=update, predict=predict_moments,
                  select=select, online=True, step=step)

"""Last-layer Laplace approximation over a MAP network (Kristiadi, Hein & Hennig, ICML 2020; the
``last_layer`` / ``full`` setting of laplace-torch, Daxberger et al., NeurIPS 2021).

The network is a :mod:`probprop.learners.mapnet` network trained as MAP (Adam; its ``update`` is
the MAP epoch). After the last epoch :func:`finish` puts a Gaussian over the last layer's weights
and biases, theta = (W; b) of shape (F, K) with F = features + 1 (phi~(x) = (phi(x), 1), phi the
output of the layers below, fixed at their MAP values), centred on the MAP weights, with the
precision

    P = G + lambda I,    G = sum_n kron(phi~_n phi~_n^T, Lambda_n)

the generalised Gauss-Newton matrix of the data (exact for the last layer: the logits are linear
in theta and the losses convex in the logits), Lambda_n = diag(p_n) - p_n p_n^T for the softmax
(p_n the MAP class probabilities) and 1 / sigma^2 for the Gaussian likelihood (sigma^2 the MAP
noise; a homoscedastic head only). theta is indexed (i, k) -> i K + k. ``lambda``, the prior
precision on every last-layer parameter, is ``spec.prior_precision`` or, by default, the value
that maximises the Laplace evidence with the MAP weights held fixed (MacKay 1992; laplace-torch's
``optimize_prior_precision(method="marglik")``),

    log Z(lambda) = const - lambda ||theta*||^2 / 2 + (D / 2) log lambda - (1/2) sum_d log(g_d + lambda),

g_d the eigenvalues of G (D = F K), over the grid :data:`PRIOR_PRECISION_GRID`. The state keeps
G's eigenvectors and the posterior's eigen-variances 1 / (g_d + lambda), so the covariance
Sigma = Q diag(1 / (g + lambda)) Q^T is positive definite by construction.

Predictions: the logits f(x) = theta^T phi~(x) are Gaussian, mean the MAP logits, covariance
J Sigma J^T with J = I_K (x) phi~(x)^T; :func:`predict` returns their means and variances
(regression: the mean, the variance of f and sigma^2). A classifier's class probabilities average
the softmax over :attr:`LaplaceSpec.n_samples` draws of the last layer theta_s ~ N(theta*, Sigma)
(:func:`class_samples`; the draws are shared by every row and derived from the state's key, so the
same state gives the same prediction; laplace-torch's ``link_approx="mc"``).

    state = init(key, spec)                  # the MAP network's init; the posterior = the prior
    state = update(state, X, y)              # one MAP epoch (the posterior is not refitted)
    state = finish(state, X, y)              # the last-layer posterior at the current weights
    mean, epistemic, noise = predict(state, X)

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol (its
``finish`` runs after a fit's last epoch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from probprop.learners import mapnet
from probprop.learners._sgd import GradientState, check_positive
from probprop.learners.base import Learner, Moments, float64
from probprop.moments.mixture import mixture_moments

#: Prior precisions the evidence is maximised over (log-spaced); the ends are kept when the
#: maximum lies beyond them.
PRIOR_PRECISION_GRID = np.logspace(-6.0, 6.0, 1201)
#: At most this many last-layer parameters (the posterior is a dense D x D matrix, decomposed once).
MAX_PARAMETERS = 6144
#: Rows per block of the curvature's sum (a block holds rows x D numbers).
CURVATURE_BLOCK = 1024
#: Salt that separates the draws of the last layer from the shuffling key carried in the state.
_DRAW_SALT = 0x1A91A


@dataclass(frozen=True)
class LaplaceSpec(mapnet.MAPSpec):
    """A :class:`probprop.learners.mapnet.MAPSpec` (homoscedastic head) with the last layer's
    posterior: ``prior_precision`` (None: chosen by the evidence) and ``n_samples``, the draws of
    the last layer a classifier's probabilities average."""

    prior_precision: float | None = None
    n_samples: int = 100

    def __post_init__(self):
        super().__post_init__()
        if self.heteroscedastic:
            raise ValueError("the last-layer Laplace approximation takes a homoscedastic head (heteroscedastic=False)")
        check_positive("prior_precision", self.prior_precision, allow_none=True)
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or self.n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {self.n_samples!r}")
        if self.n_parameters > MAX_PARAMETERS:
            raise ValueError(
                f"the last layer has {self.n_parameters} parameters ({self.n_features} features x {self.n_out} "
                f"outputs), more than the {MAX_PARAMETERS} a dense last-layer posterior takes here; use fewer units "
                "in the last hidden layer")

    @property
    def n_features(self) -> int:
        """F: the last layer's inputs plus one (the bias)."""
        return self.layer_sizes[-2] + 1

    @property
    def n_parameters(self) -> int:
        """D = F K: the parameters the posterior covers."""
        return self.n_features * self.n_out

    @property
    def network(self) -> mapnet.MAPSpec:
        """The MAP network's own spec (its compiled programs are the MAP learner's)."""
        names = {f.name for f in dataclasses.fields(mapnet.MAPSpec)}
        return mapnet.MAPSpec(**{name: getattr(self, name) for name in names})


@partial(jax.tree_util.register_dataclass, data_fields=["network", "eigenvectors", "posterior_variances",
                                                          "prior_precision"], meta_fields=["spec"])
@dataclass(frozen=True)
class LaplaceState:
    """The MAP network's state (:class:`GradientState`), the eigenvectors Q (D, D) of the data's
    curvature G, the posterior's variances along them 1 / (g + lambda) (D,), the prior precision
    lambda, and the spec."""

    network: GradientState
    eigenvectors: jax.Array
    posterior_variances: jax.Array
    prior_precision: jax.Array
    spec: LaplaceSpec

    def replace(self, **changes) -> LaplaceState:
        return dataclasses.replace(self, **changes)


def _initial_precision(spec: LaplaceSpec) -> float:
    """lambda before :func:`finish` chooses it: the given one, else the MAP prior's 1 / prior_var."""
    if spec.prior_precision is not None:
        return float(spec.prior_precision)
    return 1.0 if spec.prior_var is None else 1.0 / float(spec.prior_var)


@float64
def init(key: jax.Array, spec: LaplaceSpec) -> LaplaceState:
    """The MAP network's initial state; the posterior is the prior N(0, I / lambda) until :func:`finish`."""
    if not isinstance(spec, LaplaceSpec):
        raise TypeError(f"init takes a LaplaceSpec, got {type(spec).__name__}")
    network = mapnet.init(key, spec.network)
    d, dtype = spec.n_parameters, jnp.float64
    lam = _initial_precision(spec)
    return LaplaceState(network, jnp.eye(d, dtype=dtype), jnp.full((d,), 1.0 / lam, dtype), jnp.asarray(lam, dtype), spec)


@float64
def update(state: LaplaceState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> LaplaceState:
    """One MAP epoch (:func:`probprop.learners.mapnet.update`); the posterior is refitted by :func:`finish`."""
    return state.replace(network=mapnet.update(state.network, X, y, mask))


def features(params: dict, spec: mapnet.MAPSpec, X: jax.Array) -> jax.Array:
    """phi~(x): the output of every layer below the last (convolutions, hidden ReLU layers), with
    a column of ones appended for the bias; shape (n, F)."""
    h = jnp.asarray(X).astype(jnp.dtype(spec.dtype))
    for piece, (kernel, bias) in zip(spec.conv, params["conv"] if spec.conv else (), strict=True):
        h = jax.nn.relu(piece.point(kernel, bias, h))
    for W, b in params["layers"][:-1]:
        h = jax.nn.relu(h @ W + b)
    h = h.reshape(h.shape[0], -1).astype(jnp.float64)
    return jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)


def last_layer(params: dict) -> jax.Array:
    """theta* = (W; b), shape (F, K): the MAP last layer as the posterior's mean."""
    W, b = params["layers"][-1]
    return jnp.concatenate([W, b[None]], axis=0).astype(jnp.float64)


def output_curvature(spec: mapnet.MAPSpec, logits: jax.Array, params: dict) -> jax.Array:
    """Lambda_n per row, shape (n, K, K): the Hessian of -log p(y | f) in the outputs f (softmax:
    diag(p) - p p^T; Gaussian: 1 / sigma^2)."""
    if spec.n_classes:
        p = jax.nn.softmax(logits.astype(jnp.float64), axis=-1)
        return jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
    precision = jnp.exp(-params["log_noise"]).astype(jnp.float64)
    return jnp.broadcast_to(precision, (logits.shape[0], 1, 1))


@partial(jax.jit, static_argnames=("spec", "block"))
def curvature(params: dict, spec: mapnet.MAPSpec, X: jax.Array, mask: jax.Array | None = None,
              block: int = CURVATURE_BLOCK) -> jax.Array:
    """G = sum_n mask_n kron(phi~_n phi~_n^T, Lambda_n), shape (D, D), summed over blocks of
    ``block`` rows (one compiled loop)."""
    n = X.shape[0]
    keep = jnp.ones(n, bool) if mask is None else jnp.asarray(mask, bool)
    blocks = -(-n // block)
    pad = blocks * block - n
    Xb = jnp.pad(X, ((0, pad),) + ((0, 0),) * (X.ndim - 1)).reshape(blocks, block, *X.shape[1:])
    kb = jnp.pad(keep, (0, pad)).reshape(blocks, block)
    W, b = params["layers"][-1]
    f_dim, k_dim = W.shape[0] + 1, W.shape[1]

    def add(G, xs):
        Xi, ki = xs
        phi = features(params, spec, Xi) * ki[:, None]  # a masked row adds nothing
        logits = phi[:, :-1].astype(W.dtype) @ W + b
        lam = output_curvature(spec, logits, params)
        return G + jnp.einsum("ni,nkl,nj->ikjl", phi, lam, phi), None

    G0 = jnp.zeros((f_dim, k_dim, f_dim, k_dim), jnp.float64)
    G, _ = jax.lax.scan(add, G0, (Xb, kb))
    G = G.reshape(f_dim * k_dim, f_dim * k_dim)
    return 0.5 * (G + G.T)


def log_evidence(eigenvalues, theta_sq: float, precisions) -> np.ndarray:
    """The Laplace evidence's terms that depend on lambda (module docstring) for each of ``precisions``."""
    g = np.clip(np.asarray(eigenvalues, np.float64), 0.0, None)
    lam = np.asarray(precisions, np.float64)
    return -0.5 * lam * theta_sq + 0.5 * g.size * np.log(lam) - 0.5 * np.log(g[None, :] + lam[:, None]).sum(axis=1)


def choose_prior_precision(eigenvalues, theta_sq: float, grid=PRIOR_PRECISION_GRID) -> float:
    """The lambda of ``grid`` with the largest :func:`log_evidence`."""
    return float(np.asarray(grid)[int(np.argmax(log_evidence(eigenvalues, theta_sq, grid)))])


@float64
def finish(state: LaplaceState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> LaplaceState:
    """The last-layer posterior at the network's current weights from the training rows (X, y)
    (y unused: the softmax's and the Gaussian's curvature do not depend on it); lambda by the
    evidence unless the spec fixes it."""
    del y
    spec, params = state.spec, state.network.params
    G = curvature(params, spec.network, jnp.asarray(X), None if mask is None else jnp.asarray(mask))
    g, Q = np.linalg.eigh(np.asarray(G))
    g = np.clip(g, 0.0, None)  # rounding can leave the null directions slightly negative
    theta_sq = float(np.sum(np.asarray(last_layer(params)) ** 2))
    lam = float(spec.prior_precision) if spec.prior_precision is not None else choose_prior_precision(g, theta_sq)
    return state.replace(eigenvectors=jnp.asarray(Q), posterior_variances=jnp.asarray(1.0 / (g + lam)),
                         prior_precision=jnp.asarray(lam, jnp.float64))


def covariance(state: LaplaceState) -> jax.Array:
    """Sigma = Q diag(1 / (g + lambda)) Q^T, shape (D, D)."""
    Q = state.eigenvectors
    return (Q * state.posterior_variances) @ Q.T


def _output_moments(state: LaplaceState, X: jax.Array):
    """Per row: the outputs' means (n, K) and variances (n, K) under the last-layer posterior."""
    spec = state.spec
    phi = features(state.network.params, spec.network, X)
    f_dim, k_dim = spec.n_features, spec.n_out
    mean = phi @ last_layer(state.network.params)
    blocks = covariance(state).reshape(f_dim, k_dim, f_dim, k_dim)
    diagonal = jnp.einsum("ikjk->kij", blocks)  # Cov(theta_ik, theta_jk) per output k
    var = jnp.einsum("ni,kij,nj->nk", phi, diagonal, phi)
    return mean, jnp.maximum(var, 0.0)


@jax.jit
def _predict(state: LaplaceState, X: jax.Array) -> Moments:
    mean, var = _output_moments(state, X)
    if state.spec.n_classes:
        return Moments(mean, var, jnp.zeros_like(mean))
    noise = jnp.exp(state.network.params["log_noise"]).astype(jnp.float64)
    return Moments(mean[:, 0], var[:, 0], jnp.broadcast_to(noise, mean[:, 0].shape))


@partial(jax.jit, static_argnums=3)
def _predict_noisy(state: LaplaceState, X, X_var, n_draws):
    eps = mapnet.input_noise_draws(state.network.key, n_draws, X.shape[-1], X.dtype)
    moments = jax.lax.map(lambda e: _predict(state, X + jnp.sqrt(X_var) * e), eps)
    return Moments(*mixture_moments(moments.mean, moments.noise_var, moments.epistemic_var))


@float64
def predict(state: LaplaceState, X: jax.Array, X_var: jax.Array | None = None) -> Moments:
    """:class:`Moments` per row: the MAP outputs, their variance under the last-layer posterior,
    and the noise (sigma^2 for regression; zeros for a classifier, whose outputs are logits of
    shape (n, K)). With ``X_var`` (regression, uncertain inputs): the mixture over
    :data:`probprop.learners.mapnet.INPUT_DRAWS` input draws, as the MAP network does."""
    X = jnp.asarray(X)
    if X_var is None:
        return _predict(state, X)
    X_var = jnp.broadcast_to(jnp.asarray(X_var, X.dtype), X.shape)
    return _predict_noisy(state, X, X_var, mapnet.INPUT_DRAWS)


def last_layer_draws(state: LaplaceState, n_samples: int) -> jax.Array:
    """``n_samples`` draws theta_s ~ N(theta*, Sigma), shape (S, F, K), from a key derived from the
    state's (the same state gives the same draws)."""
    spec = state.spec
    key = jax.random.fold_in(state.network.key, _DRAW_SALT)
    z = jax.random.normal(key, (n_samples, spec.n_parameters), jnp.float64)
    deltas = (z * jnp.sqrt(state.posterior_variances)) @ state.eigenvectors.T
    return last_layer(state.network.params)[None] + deltas.reshape(n_samples, spec.n_features, spec.n_out)


@jax.jit
def _class_samples(state: LaplaceState, X: jax.Array) -> jax.Array:
    phi = features(state.network.params, state.spec.network, X)
    thetas = last_layer_draws(state, state.spec.n_samples)
    return jax.nn.softmax(jnp.einsum("ni,sik->snk", phi, thetas), axis=-1)


@float64
def class_samples(state: LaplaceState, X: jax.Array) -> jax.Array:
    """Classification: the class probabilities under each of the ``n_samples`` last-layer draws
    (:func:`last_layer_draws`), shape (S, n, K); their average is the prediction."""
    if not state.spec.n_classes:
        raise ValueError("class_samples is for a Laplace classifier (n_classes >= 2)")
    return _class_samples(state, jnp.asarray(X))


#: The last-layer Laplace network behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="laplace", spec_class=LaplaceSpec, init=init, update=update, predict=predict,
                  class_samples=class_samples, finish=finish)


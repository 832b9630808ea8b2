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

``hessian_structure="kron"`` (laplace-torch's KFAC, Ritter, Botev & Barber 2018, for the last
layer) replaces G by kron(A, B), A = sum_n phi~_n phi~_n^T (F x F) and B the mean of Lambda_n
(K x K) (:func:`kron_factors`; Martens & Grosse 2015's expectation approximation, exact where
Lambda_n does not depend on the row, as for the Gaussian likelihood): the eigenvectors are
U_A (x) U_B, the eigenvalues a_i b_k, the evidence and the variances as above, and nothing of
size D x D is formed, so the last layer may be far wider (:data:`MAX_KRON_FACTOR` per factor);
a row's logit covariance is U_B diag(s) U_B^T with s_k = sum_i (phi~^T u_i)^2 / (a_i b_k + lambda)
(F^2 + F K + K^3 products).

Predictions: the logits f(x) = theta^T phi~(x) are Gaussian, mean the MAP logits, covariance
J Sigma J^T with J = I_K (x) phi~(x)^T; :func:`predict` returns their means and variances
(regression: the mean, the variance of f and sigma^2). A classifier's class probabilities average
the softmax over :attr:`LaplaceSpec.n_samples` draws of the last layer theta_s ~ N(theta*, Sigma)
(:func:`class_samples`; laplace-torch's ``link_approx="mc"``), or, without draws, a closed form
of the logits' Gaussian (:func:`class_moments`: the probit approximation or the Laplace bridge of
:mod:`probprop.moments.softmax`). :func:`finish` draws them once, from
a key derived from the state's, and the state keeps their deviations theta_s - theta* (S, D): every
row and every call uses the same draws, and a model file's draws are checked against the
posterior and the key they come from (:func:`check_state`).

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
from probprop.moments.softmax import LINKS, link_summaries

#: Prior precisions the evidence is maximised over (log-spaced); the ends are kept when the
#: maximum lies beyond them.
PRIOR_PRECISION_GRID = np.logspace(-6.0, 6.0, 1201)
#: At most this many last-layer parameters for the full posterior (a dense D x D matrix, decomposed once).
MAX_PARAMETERS = 6144
#: How the last layer's curvature is approximated: "full" (the exact D x D matrix) or "kron" (its
#: Kronecker factorisation, laplace-torch's ``hessian_structure`` names).
HESSIAN_STRUCTURES = ("full", "kron")
#: At most this many rows and columns in each Kronecker factor (F = units + 1, or K outputs).
MAX_KRON_FACTOR = 4097
#: At most this many draws of the last layer (a model file declaring more is refused), as MC dropout's passes.
MAX_SAMPLES = 10_000
#: Rows per block of the curvature's sum (a block's products hold rows x F x F x K numbers at most; of the
#: Kronecker factors', rows x F and rows x K).
CURVATURE_BLOCK = 256
#: At most this many numbers in one chunk of the evidence's grid (precisions x eigenvalues).
_EVIDENCE_NUMBERS = 8_000_000
#: Salt that separates the draws of the last layer from the shuffling key carried in the state.
_DRAW_SALT = 0x1A91A


@dataclass(frozen=True)
class LaplaceSpec(mapnet.MAPSpec):
    """A :class:`probprop.learners.mapnet.MAPSpec` (homoscedastic head) with the last layer's
    posterior: ``prior_precision`` (None: chosen by the evidence), ``n_samples``, the draws of
    the last layer a classifier's probabilities average, and ``hessian_structure`` ("full" or
    "kron": :data:`HESSIAN_STRUCTURES`)."""

    prior_precision: float | None = None
    n_samples: int = 100
    hessian_structure: str = "full"

    def __post_init__(self):
        super().__post_init__()
        if self.heteroscedastic:
            raise ValueError("the last-layer Laplace approximation takes a homoscedastic head (heteroscedastic=False)")
        check_positive("prior_precision", self.prior_precision, allow_none=True)
        if (isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int)
                or not 1 <= self.n_samples <= MAX_SAMPLES):
            raise ValueError(f"n_samples must be an int from 1 to {MAX_SAMPLES}, got {self.n_samples!r}")
        if not isinstance(self.hessian_structure, str) or self.hessian_structure not in HESSIAN_STRUCTURES:
            raise ValueError(f"hessian_structure must be one of {list(HESSIAN_STRUCTURES)}, got {self.hessian_structure!r}")
        if self.kron:
            if max(self.n_features, self.n_out) > MAX_KRON_FACTOR:
                raise ValueError(
                    f"the last layer's Kronecker factors are {self.n_features} x {self.n_features} (its inputs with "
                    f"the bias) and {self.n_out} x {self.n_out} (its outputs); each may have at most "
                    f"{MAX_KRON_FACTOR} rows here")
            if self.n_samples * self.n_parameters > MAX_SAMPLES * MAX_PARAMETERS:
                raise ValueError(f"{self.n_samples} draws (n_samples) of {self.n_parameters} last-layer parameters are "
                                 f"more numbers than {MAX_SAMPLES} draws of {MAX_PARAMETERS} (the most probprop keeps): "
                                 "take fewer draws")
        elif self.n_parameters > MAX_PARAMETERS:
            wider = (self.n_out > 1 and max(self.n_features, self.n_out) <= MAX_KRON_FACTOR
                     and self.n_samples * self.n_parameters <= MAX_SAMPLES * MAX_PARAMETERS)
            raise ValueError(
                f"the last layer has {self.n_parameters} parameters ({self.n_features} inputs with its bias x "
                f"{self.n_out} outputs), more than the {MAX_PARAMETERS} a dense last-layer posterior takes here; "
                "the last layer's inputs are the last hidden layer's units (or the convolutions' outputs, or the "
                "features without hidden layers)" + ("; hessian_structure='kron' takes this layer" if wider else ""))

    @property
    def kron(self) -> bool:
        """Whether the posterior is Kronecker-factored (``hessian_structure="kron"``)."""
        return self.hessian_structure == "kron"

    @property
    def n_features(self) -> int:
        """F: the last layer's inputs plus one (the bias)."""
        return self.layer_sizes[-2] + 1

    @classmethod
    def from_network(cls, network: mapnet.MAPSpec, prior_precision: float | None = None,
                     n_samples: int = 100, hessian_structure: str = "full") -> LaplaceSpec:
        """The spec of ``network`` (a :class:`probprop.learners.mapnet.MAPSpec`) with a last-layer
        posterior (the inverse of :attr:`network`)."""
        names = {f.name for f in dataclasses.fields(mapnet.MAPSpec)}
        return cls(**{name: getattr(network, name) for name in names}, prior_precision=prior_precision,
                   n_samples=n_samples, hessian_structure=hessian_structure)

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
                                                          "prior_precision", "deviations"], meta_fields=["spec"])
@dataclass(frozen=True)
class LaplaceState:
    """The MAP network's state (:class:`GradientState`), the eigenvectors Q (D, D) of the data's
    curvature G (Kronecker-factored: the pair (U_A (F, F), U_B (K, K)), Q = U_A (x) U_B), the
    posterior's variances along them 1 / (g + lambda) (D,; Kronecker-factored, indexed (a, k) ->
    a K + k with eigenvalues a_a b_k), the prior precision lambda, the draws' deviations
    theta_s - theta* (S, D) (:func:`draw_deviations`), and the spec."""

    network: GradientState
    eigenvectors: jax.Array
    posterior_variances: jax.Array
    prior_precision: jax.Array
    deviations: jax.Array
    spec: LaplaceSpec

    def replace(self, **changes) -> LaplaceState:
        return dataclasses.replace(self, **changes)

    @property
    def spec_shape(self) -> tuple[int, int]:
        """(F, K): the last layer's shape."""
        return self.spec.n_features, self.spec.n_out


def _initial_precision(spec: LaplaceSpec) -> float:
    """lambda before :func:`finish` chooses it: the given one, else the MAP prior's 1 / prior_var."""
    if spec.prior_precision is not None:
        return float(spec.prior_precision)
    return 1.0 if spec.prior_var is None else 1.0 / float(spec.prior_var)


def prior_posterior(spec: LaplaceSpec) -> tuple:
    """The posterior before :func:`finish`, the prior N(0, I / lambda): eigenvectors I (D, D) (or
    the pair I (F, F), I (K, K)), variances 1 / lambda (D,) and lambda (:func:`_initial_precision`)."""
    d, dtype = spec.n_parameters, jnp.float64
    lam = _initial_precision(spec)
    eigenvectors = ((jnp.eye(spec.n_features, dtype=dtype), jnp.eye(spec.n_out, dtype=dtype)) if spec.kron
                    else jnp.eye(d, dtype=dtype))
    return eigenvectors, jnp.full((d,), 1.0 / lam, dtype), jnp.asarray(lam, dtype)


@float64
def init(key: jax.Array, spec: LaplaceSpec) -> LaplaceState:
    """The MAP network's initial state; the posterior is the prior N(0, I / lambda) until :func:`finish`."""
    if not isinstance(spec, LaplaceSpec):
        raise TypeError(f"init takes a LaplaceSpec, got {type(spec).__name__}")
    network = mapnet.init(key, spec.network)
    Q, c, lam = prior_posterior(spec)
    return LaplaceState(network, Q, c, lam, draw_deviations(network.key, Q, c, spec.n_samples), spec)


@float64
def update(state: LaplaceState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> LaplaceState:
    """One MAP epoch (:func:`probprop.learners.mapnet.update`); the posterior is refitted by :func:`finish`."""
    return state.replace(network=mapnet.update(state.network, X, y, mask))


@float64
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


@float64
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


def curvature_sum(spec: mapnet.MAPSpec, logits: jax.Array, params: dict, weights: jax.Array) -> jax.Array:
    """sum_n w_n Lambda_n (K, K) (:func:`output_curvature`) without the rows' K x K matrices:
    diag(sum_n w_n p_n) - P^T diag(w) P for the softmax (P the rows' probabilities), sum_n w_n /
    sigma^2 for the Gaussian."""
    w = weights.astype(jnp.float64)
    if spec.n_classes:
        p = jax.nn.softmax(logits.astype(jnp.float64), axis=-1)
        return jnp.diag(w @ p) - (p * w[:, None]).T @ p
    precision = jnp.exp(-params["log_noise"]).astype(jnp.float64)
    return jnp.reshape(precision * jnp.sum(w), (1, 1))


@float64
def curvature(params: dict, spec: mapnet.MAPSpec, X: jax.Array, mask: jax.Array | None = None,
              block: int = CURVATURE_BLOCK) -> jax.Array:
    """G = sum_n mask_n kron(phi~_n phi~_n^T, Lambda_n), shape (D, D), summed over blocks of
    ``block`` rows (one compiled loop)."""
    return _curvature(params, spec, jnp.asarray(X), None if mask is None else jnp.asarray(mask), block)


def _sum_over_rows(params: dict, spec: mapnet.MAPSpec, X: jax.Array, mask: jax.Array | None, block: int, term,
                   start):
    """start + the sum of ``term(phi~, logits, keep)`` over X's rows in padded blocks of ``block``
    (one compiled loop; a masked or padded row's phi~ is zero and its keep False)."""
    n = X.shape[0]
    keep = jnp.ones(n, bool) if mask is None else jnp.asarray(mask, bool)
    blocks = -(-n // block)
    pad = blocks * block - n
    Xb = jnp.pad(X, ((0, pad),) + ((0, 0),) * (X.ndim - 1)).reshape(blocks, block, *X.shape[1:])
    kb = jnp.pad(keep, (0, pad)).reshape(blocks, block)
    W, b = params["layers"][-1]

    def add(total, xs):
        Xi, ki = xs
        phi = features(params, spec, Xi) * ki[:, None]  # a masked row adds nothing
        logits = phi[:, :-1].astype(W.dtype) @ W + b
        return jax.tree_util.tree_map(jnp.add, total, term(phi, logits, ki)), None

    return jax.lax.scan(add, start, (Xb, kb))[0]


@partial(jax.jit, static_argnames=("spec", "block"))
def _curvature(params: dict, spec: mapnet.MAPSpec, X: jax.Array, mask: jax.Array | None, block: int) -> jax.Array:
    W = params["layers"][-1][0]
    f_dim, k_dim = W.shape[0] + 1, W.shape[1]

    def term(phi, logits, keep):
        return jnp.einsum("ni,nkl,nj->ikjl", phi, output_curvature(spec, logits, params), phi)

    G = _sum_over_rows(params, spec, X, mask, block, term, jnp.zeros((f_dim, k_dim, f_dim, k_dim), jnp.float64))
    G = G.reshape(f_dim * k_dim, f_dim * k_dim)
    return 0.5 * (G + G.T)


@float64
def kron_factors(params: dict, spec: mapnet.MAPSpec, X: jax.Array, mask: jax.Array | None = None,
                 block: int = CURVATURE_BLOCK) -> tuple[jax.Array, jax.Array]:
    """The Kronecker factors of G (Martens & Grosse 2015's expectation approximation for the last
    layer): A = sum_n mask_n phi~_n phi~_n^T (F, F) and B = the mean of Lambda_n over the rows kept
    (K, K), so that G ~ kron(A, B), exact where Lambda_n is the same for every row (a Gaussian
    likelihood's 1 / sigma^2)."""
    return _kron_factors(params, spec, jnp.asarray(X), None if mask is None else jnp.asarray(mask), block)


@partial(jax.jit, static_argnames=("spec", "block"))
def _kron_factors(params: dict, spec: mapnet.MAPSpec, X: jax.Array, mask: jax.Array | None, block: int):
    W = params["layers"][-1][0]
    f_dim, k_dim = W.shape[0] + 1, W.shape[1]
    keep = jnp.ones(X.shape[0], bool) if mask is None else jnp.asarray(mask, bool)

    def term(phi, logits, kept):
        return phi.T @ phi, curvature_sum(spec, logits, params, kept)

    start = (jnp.zeros((f_dim, f_dim), jnp.float64), jnp.zeros((k_dim, k_dim), jnp.float64))
    A, B = _sum_over_rows(params, spec, X, mask, block, term, start)
    B = B / jnp.maximum(jnp.sum(keep), 1)
    return 0.5 * (A + A.T), 0.5 * (B + B.T)


def log_evidence(eigenvalues, theta_sq: float, precisions) -> np.ndarray:
    """The Laplace evidence's terms that depend on lambda (module docstring) for each of ``precisions``."""
    g = np.clip(np.asarray(eigenvalues, np.float64), 0.0, None).ravel()
    lam = np.asarray(precisions, np.float64).ravel()
    chunk = max(1, _EVIDENCE_NUMBERS // max(g.size, 1))  # a Kronecker-factored D may be far above the full one's
    log_det = np.concatenate([np.log(g[None, :] + lam[i : i + chunk, None]).sum(axis=1)
                              for i in range(0, lam.size, chunk)]) if lam.size else np.zeros(0)
    return -0.5 * lam * theta_sq + 0.5 * g.size * np.log(lam) - 0.5 * log_det


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
    if spec.kron:  # G ~ kron(A, B): eigenvectors U_A (x) U_B, eigenvalues a_i b_k
        factors = [np.asarray(f) for f in kron_factors(params, spec.network, X, mask)]
    else:
        factors = [np.asarray(curvature(params, spec.network, X, mask))]
    theta = np.asarray(last_layer(params))
    if not (all(np.all(np.isfinite(f)) for f in factors) and np.all(np.isfinite(theta))):  # diverged: no posterior
        nan = jnp.full_like(state.posterior_variances, jnp.nan)
        return state.replace(posterior_variances=nan, deviations=jnp.full_like(state.deviations, jnp.nan))
    decomposed = [np.linalg.eigh(f) for f in factors]
    # rounding can leave the null directions slightly negative
    g = np.clip(decomposed[0][0], 0.0, None)
    Q = decomposed[0][1]
    if spec.kron:
        g = np.outer(g, np.clip(decomposed[1][0], 0.0, None)).ravel()
        Q = (jnp.asarray(Q), jnp.asarray(decomposed[1][1]))
    theta_sq = float(np.sum(theta**2))
    lam = float(spec.prior_precision) if spec.prior_precision is not None else choose_prior_precision(g, theta_sq)
    Q, c = (Q if spec.kron else jnp.asarray(Q)), jnp.asarray(1.0 / (g + lam))
    return state.replace(eigenvectors=Q, posterior_variances=c, prior_precision=jnp.asarray(lam, jnp.float64),
                         deviations=draw_deviations(state.network.key, Q, c, spec.n_samples))


@float64
def draw_deviations(key: jax.Array, eigenvectors: jax.Array, variances: jax.Array, n_samples: int) -> jax.Array:
    """``n_samples`` draws of theta_s - theta* ~ N(0, Q diag(c) Q^T), shape (S, D), from a key
    derived from ``key`` (the network's: the same state gives the same draws); ``eigenvectors`` Q
    or the pair (U_A, U_B) of a Kronecker-factored posterior."""
    return _draw_deviations(key, eigenvectors, variances, int(n_samples))


@partial(jax.jit, static_argnums=3)
def _draw_deviations(key, eigenvectors, variances, n_samples):
    z = jax.random.normal(jax.random.fold_in(key, _DRAW_SALT), (n_samples, variances.shape[0]), jnp.float64)
    return _from_eigenbasis(eigenvectors, z * jnp.sqrt(variances))


def _from_eigenbasis(eigenvectors, z: jax.Array) -> jax.Array:
    """z Q^T for coordinates z (..., D) in the posterior's eigenbasis; for a Kronecker-factored Q =
    U_A (x) U_B, U_A Z U_B^T per row with Z = z as (F, K), never forming Q."""
    if isinstance(eigenvectors, tuple):
        ua, ub = eigenvectors
        zz = z.reshape(*z.shape[:-1], ua.shape[0], ub.shape[0])
        return jnp.einsum("ia,...ag,kg->...ik", ua, zz, ub).reshape(z.shape)
    return z @ eigenvectors.T


def check_state(state: LaplaceState) -> None:
    """What a model file's posterior must satisfy, or a ValueError naming what it breaks: a positive
    prior precision (the spec's where it fixes one), variances in (0, 1 / lambda] (each is
    1 / (g + lambda) with g >= 0), and the draws the posterior and the network's key give."""
    spec = state.spec
    lam = float(np.asarray(state.prior_precision))
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"the last-layer posterior's prior precision must be positive, got {lam!r}")
    if spec.prior_precision is not None and not np.isclose(lam, spec.prior_precision, rtol=1e-12, atol=0):
        raise ValueError(f"the posterior's prior precision {lam!r} is not the spec's {spec.prior_precision!r}")
    c = np.asarray(state.posterior_variances)
    if not (np.all(c > 0) and np.all(c <= (1.0 + 1e-9) / lam)):
        raise ValueError("the last-layer posterior's variances must lie in (0, 1 / prior precision]")
    if spec.kron and not _is_outer_product(1.0 / c.reshape(state.spec_shape) - lam, lam):
        raise ValueError("the Kronecker-factored posterior's variances are not 1 / (a_i b_k + prior precision) "
                         "for any two factors' eigenvalues a, b")
    expected = np.asarray(draw_deviations(state.network.key, state.eigenvectors, state.posterior_variances,
                                          spec.n_samples))
    scale = float(np.sqrt(np.max(c)))
    if not np.allclose(np.asarray(state.deviations), expected, rtol=1e-9, atol=1e-9 * scale):
        raise ValueError("the last layer's draws are not those of the posterior and the network's key")


def _is_outer_product(r: np.ndarray, lam: float) -> bool:
    """Whether r (F, K) is a b^T for some a, b >= 0, to rounding (r = 1 / c - lambda: its entries
    carry errors of about 1e-16 (r + lambda)): the outer product of r's largest row and column
    over their common entry."""
    tol = 1e-8 * (float(np.max(r)) + lam)
    i, k = np.unravel_index(int(np.argmax(r)), r.shape)
    if r[i, k] <= tol:  # no curvature anywhere: the prior
        return bool(np.all(np.abs(r) <= tol))
    return bool(np.all(np.abs(np.outer(r[:, k], r[i, :]) / r[i, k] - r) <= tol))


@float64
def covariance(state: LaplaceState) -> jax.Array:
    """Sigma = Q diag(1 / (g + lambda)) Q^T, shape (D, D) (Kronecker-factored: Q = U_A (x) U_B
    formed, for checks on small layers)."""
    Q = jnp.kron(*state.eigenvectors) if state.spec.kron else state.eigenvectors
    return (Q * state.posterior_variances) @ Q.T


def _last_layer_inputs(state: LaplaceState, X: jax.Array):
    """phi~(x) (n, F) and the MAP outputs (n, K)."""
    phi = features(state.network.params, state.spec.network, X)
    return phi, phi @ last_layer(state.network.params)


def _eigenvectors_fkd(state: LaplaceState) -> jax.Array:
    """A full posterior's eigenvectors indexed (F, K, D)."""
    return state.eigenvectors.reshape(*state.spec_shape, -1)


def _kron_spread(state: LaplaceState, phi: jax.Array) -> jax.Array:
    """A Kronecker-factored posterior's J Sigma J^T = U_B diag(s) U_B^T per row: s (n, K) with
    s_g = sum_a (phi~^T u_a)^2 c_(a, g), where J (U_A (x) U_B) = (phi~^T U_A) (x) U_B."""
    ua, _ = state.eigenvectors
    return ((phi @ ua) ** 2) @ state.posterior_variances.reshape(state.spec_shape)


def _output_moments(state: LaplaceState, X: jax.Array):
    """Per row: the outputs' means (n, K) and variances (n, K) under the last-layer posterior."""
    phi, mean = _last_layer_inputs(state, X)
    if state.spec.kron:
        var = _kron_spread(state, phi) @ (state.eigenvectors[1] ** 2).T
    else:
        Q = _eigenvectors_fkd(state)
        diagonal = jnp.einsum("ikd,d,jkd->kij", Q, state.posterior_variances, Q)  # Cov(theta_ik, theta_jk) per output k
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


@float64
def last_layer_draws(state: LaplaceState, n_samples: int | None = None) -> jax.Array:
    """Draws theta_s ~ N(theta*, Sigma), shape (S, F, K): the state's own (``n_samples`` None) or
    ``n_samples`` fresh ones from the same key (:func:`draw_deviations`)."""
    spec = state.spec
    deviations = state.deviations if n_samples is None else draw_deviations(
        state.network.key, state.eigenvectors, state.posterior_variances, n_samples)
    return last_layer(state.network.params)[None] + deviations.reshape(-1, spec.n_features, spec.n_out)


@jax.jit
def _class_samples(state: LaplaceState, X: jax.Array) -> jax.Array:
    phi = features(state.network.params, state.spec.network, X)
    thetas = last_layer(state.network.params)[None] + state.deviations.reshape(-1, *state.spec_shape)
    return jax.nn.softmax(jnp.einsum("ni,sik->snk", phi, thetas), axis=-1)


@float64
def class_samples(state: LaplaceState, X: jax.Array) -> jax.Array:
    """Classification: the class probabilities under each of the ``n_samples`` last-layer draws
    (:func:`last_layer_draws`), shape (S, n, K); their average is the prediction."""
    if not state.spec.n_classes:
        raise ValueError("class_samples is for a Laplace classifier (n_classes >= 2)")
    return _class_samples(state, jnp.asarray(X))


#: Rows per block of the closed forms (:func:`class_moments`), fewer where a block's numbers per
#: row (K (K + 1) F / 2 products, or a row's Jacobian of K x D; Kronecker-factored, F + 2 K^2)
#: would exceed :data:`CLOSED_FORM_BLOCK_NUMBERS`.
CLOSED_FORM_BLOCK_ROWS = 512
CLOSED_FORM_BLOCK_NUMBERS = 4_000_000


@float64
def covariance_blocks(state: LaplaceState) -> jax.Array:
    """Sigma's F x F blocks Cov(theta_{.k}, theta_{.l}) for the pairs k <= l (``np.triu_indices(K)``
    order), laid out (F, P, F) with P = K (K + 1) / 2: Sigma = Q diag(1 / (g + lambda)) Q^T formed
    once (D^3 products), so that a row's logit covariance phi~^T Sigma_kl phi~ costs K (K + 1) F^2 / 2
    products in one matrix product over a block of rows (:func:`logit_moments`). While it is formed,
    about three D x D matrices more than Q are held (at :data:`MAX_PARAMETERS`, about 0.9 GB)."""
    if state.spec.kron:
        raise ValueError("covariance_blocks is for a full posterior (a Kronecker-factored one needs no blocks)")
    return _covariance_blocks(state)


@jax.jit
def _covariance_blocks(state: LaplaceState) -> jax.Array:
    f, k = state.spec_shape
    sigma = (state.eigenvectors * state.posterior_variances) @ state.eigenvectors.T
    upper, lower = np.triu_indices(k)
    return jnp.swapaxes(sigma.reshape(f, k, f, k)[:, upper, :, lower], 0, 1)  # [i, p, j] = Sigma[(i, k_p), (j, l_p)]


def _blocked_logit_moments(state: LaplaceState, blocks: jax.Array, X: jax.Array):
    """(MAP logits, J Sigma J^T) from Sigma's blocks (:func:`covariance_blocks`)."""
    phi, mean = _last_layer_inputs(state, X)
    f, k = state.spec_shape
    upper, lower = np.triu_indices(k)
    pairs = jnp.einsum("npj,nj->np", (phi @ blocks.reshape(f, -1)).reshape(len(phi), len(upper), f), phi)
    cov = jnp.zeros((len(phi), k, k), pairs.dtype).at[:, upper, lower].set(pairs).at[:, lower, upper].set(pairs)
    return mean, cov


def _jacobian_logit_moments(state: LaplaceState, X: jax.Array):
    """(MAP logits, J Sigma J^T) from each row's J Q diag(sqrt(c)) (K x D per row, no D^3 set-up);
    Kronecker-factored, U_B diag(s) U_B^T (:func:`_kron_spread`)."""
    phi, mean = _last_layer_inputs(state, X)
    if state.spec.kron:
        ub = state.eigenvectors[1]
        return mean, jnp.einsum("kg,ng,lg->nkl", ub, _kron_spread(state, phi), ub)
    J = jnp.einsum("ni,ikd->nkd", phi, _eigenvectors_fkd(state)) * jnp.sqrt(state.posterior_variances)  # (n, K, D)
    return mean, jnp.einsum("nkd,nld->nkl", J, J)


def _uses_blocks(spec: LaplaceSpec, n_rows: int) -> bool:
    """Sigma's blocks pay for their D^3 set-up from about D / 2 rows on (a row's Jacobian costs about
    2 K F D products where a row through the blocks costs K (K + 1) F^2 / 2); a Kronecker-factored
    posterior needs neither (F^2 + F K + K^3 per row)."""
    return not spec.kron and 2 * n_rows >= spec.n_parameters


def _logit_moments(state: LaplaceState, blocks: jax.Array | None, X: jax.Array):
    """(MAP logits, J Sigma J^T) through Sigma's blocks, or each row's Jacobian where ``blocks`` is None."""
    return _jacobian_logit_moments(state, X) if blocks is None else _blocked_logit_moments(state, blocks, X)


_compiled_logit_moments = jax.jit(_logit_moments)


@partial(jax.jit, static_argnames=("link",))
def _class_moments(state: LaplaceState, blocks: jax.Array | None, X: jax.Array, link: str):
    return link_summaries(link, *_logit_moments(state, blocks, X))


def closed_form_rows(spec: LaplaceSpec, blocks: bool = True) -> int:
    """Rows per block of :func:`class_moments` (:data:`CLOSED_FORM_BLOCK_ROWS`, fewer for a wide
    last layer): through Sigma's blocks (``blocks``) or per-row Jacobians."""
    k = spec.n_out
    if spec.kron:
        per_row = spec.n_features + 2 * k * k
    else:
        per_row = (k * (k + 1) // 2 * spec.n_features if blocks else k * spec.n_parameters) + k * k
    return int(max(1, min(CLOSED_FORM_BLOCK_ROWS, CLOSED_FORM_BLOCK_NUMBERS // per_row)))


def _in_blocks(state: LaplaceState, X, fn):
    """``fn(state, blocks or None, X block)`` over X's rows in padded blocks, through Sigma's
    blocks where :func:`_uses_blocks` says they pay, its outputs concatenated (an empty X gives
    empty outputs of their shapes); a block holds :func:`closed_form_rows` rows, or the power of
    two at or above the row count where that is fewer (a few compiled shapes)."""
    X = np.asarray(X)
    blocks = _covariance_blocks(state) if _uses_blocks(state.spec, len(X)) else None
    rows = min(closed_form_rows(state.spec, blocks is not None), 1 << max(len(X) - 1, 0).bit_length())
    outs = []
    for start in range(0, max(len(X), 1), rows):
        chunk = X[start : start + rows]
        padded = np.zeros((rows, *X.shape[1:]), X.dtype)
        padded[: len(chunk)] = chunk
        outs.append([np.asarray(part)[: len(chunk)] for part in fn(state, blocks, jnp.asarray(padded))])
    return tuple(np.concatenate(column) for column in zip(*outs, strict=True))


@float64
def logit_moments(state: LaplaceState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The logits' Gaussian under the last-layer posterior per row: the MAP logits (n, K) and
    their covariance J Sigma J^T (n, K, K), J = I_K (x) phi~(x)^T: from each row's Jacobian for
    fewer than D / 2 rows, else from Sigma's blocks formed once (:func:`covariance_blocks`)."""
    return _in_blocks(state, X, _compiled_logit_moments)


@float64
def class_moments(state: LaplaceState, X: jax.Array, link: str):
    """Classification without draws: (probabilities (n, K), their variances (n, K), expected
    entropy (n,)) of the logits' Gaussian (:func:`logit_moments`, the same choice of Jacobians or
    Sigma's blocks, formed once per call) under the closed-form ``link`` ("probit", "bridge",
    "bridge_norm": :mod:`probprop.moments.softmax`), the rows in padded blocks of
    :func:`closed_form_rows`."""
    if not state.spec.n_classes:
        raise ValueError("class_moments is for a Laplace classifier (n_classes >= 2)")
    if link not in LINKS[1:]:
        raise ValueError(f"link must be one of {list(LINKS[1:])}, got {link!r}")
    return _in_blocks(state, X, partial(_class_moments, link=link))


#: The last-layer Laplace network behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="laplace", spec_class=LaplaceSpec, init=init, update=update, predict=predict,
                  class_samples=class_samples, finish=finish, class_moments=class_moments)


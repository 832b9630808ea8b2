"""MC dropout: Gal & Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.

The network of their UCI code (``net/net.py`` of yaringal/DropoutUncertaintyExps, GAL-REPO):
ReLU hidden layers (one by default), inverted dropout with rate p on the input of every layer
(the data included), trained by Adam on

    mean_batch (y - f(x))^2 + reg * sum_l ||W_l||^2,      reg = length_scale^2 (1 - p) / (2 N tau)

(mean squared error plus Keras ``l2(reg)`` on every weight matrix, biases unregularised; N the
number of training rows, tau the model precision, ``length_scale`` = 1e-2 as in their code).
Everything is in standardised units here, so tau is the precision of standardised y.

Prediction keeps dropout on: T stochastic passes f_t(x) (``n_samples``, 100 by default), each
a network with one dropout mask per layer shared by every row (T sampled networks), so that a
row's prediction does not depend on its position or on the other rows of the batch,

    mean = (1/T) sum_t f_t,   var = (1/T) sum_t (f_t - mean)^2     (epistemic, :func:`predict`)
    noise_variance = 1 / tau                                         (aleatoric)

and :func:`log_likelihood` gives their test metric, the log of the mixture
(1/T) sum_t N(y | f_t, 1/tau) (logsumexp over passes), rather than a Gaussian fit.

Classification (``MCDropoutSpec(n_classes=K)``, K >= 2): K softmax outputs trained on the
cross-entropy plus the same weight decay with tau = 1 (there is no noise precision;
reg = length_scale^2 (1 - p) / (2 N)), and the prediction is the average of the T passes' class
probabilities, :func:`class_samples` (Gal & Ghahramani's classification setting); the search
then scores the held-out mean log probability of the true class, over the dropout grid only.

p and tau are chosen by :func:`select_hyperparameters`, the "grid" protocol of GAL-REPO (2018):
train on 80 % of the training data for every (p, tau) in the grid, keep the pair with the best
validation log-likelihood; the caller then trains on all the training data with it. The test
split is never touched. Every grid point starts from the same initialisation and shuffles
(common random numbers make the comparison less noisy); all grid points train together in one
compiled program (``vmap`` over the grid). The benchmark passes each dataset's own grid
(``dropout_rates.txt`` x ``tau_values.txt``: 4 x 3 points, tau in the units of 1/y^2).

    state = init(key, spec)
    state = update(state, X, y)                   # one epoch
    mean, var = predict(state, X)                 # T passes, key derived from the state
    noise_variance(state, X)                      # 1 / tau

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from probprop.learners._sgd import (
    GradientState,
    adam,
    as_xy,
    check_network_spec,
    check_positive,
    holdout,
    sgd_epoch,
)
from probprop.learners.base import Learner, Moments, Selection, float64
from probprop.learners.mapnet import input_noise_draws, mlp
from probprop.likelihoods.classification import Softmax, log_mean_probability_of, softmax_nll

#: The dropout grid of GAL-REPO's grid search.
GRID_P = (0.005, 0.01, 0.05, 0.1)
#: A default tau grid for standardised targets (noise sd from 1 down to 1/16 of the target sd).
GRID_TAU = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
#: The most stochastic passes a prediction may take (a model file declaring more is refused).
MAX_SAMPLES = 10_000
#: Salt that separates the prediction key from the shuffling key carried in the state.
_PREDICT_SALT = 0x5EED


@dataclass(frozen=True)
class MCDropoutSpec:
    """Static description of an MC-dropout network.

    ``dropout`` and ``tau`` are passed to the compiled functions as traced values (one
    compilation serves every grid point); ``n_samples`` is the default T of :func:`predict`.
    """

    n_in: int
    hidden: tuple[int, ...] = (50,)
    dropout: float = 0.05
    tau: float = 10.0
    length_scale: float = 1e-2
    learning_rate: float = 1e-3
    batch_size: int = 128
    n_samples: int = 100
    dtype: str = "float64"
    n_classes: int = 0

    def __post_init__(self):
        check_network_spec(self)
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, (int, np.integer)) or (
                self.n_classes == 1 or self.n_classes < 0):
            raise ValueError(f"n_classes must be 0 (regression) or an integer >= 2, got {self.n_classes!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("tau", "length_scale", "learning_rate"):
            check_positive(name, getattr(self, name))
        for name in ("batch_size", "n_samples"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.n_samples > MAX_SAMPLES:
            raise ValueError(f"n_samples must be at most {MAX_SAMPLES:,} stochastic passes, got {self.n_samples!r}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_in, *self.hidden, self.n_classes or 1)

    @property
    def output_likelihood(self):
        """Classification: the softmax of each pass (:func:`class_samples` averages them); None
        for regression."""
        return Softmax(self.n_classes) if self.n_classes else None

    @property
    def structure(self) -> MCDropoutSpec:
        """The spec with its traced values (dropout, tau, n_samples) set to fixed placeholders:
        the static key of the compiled functions."""
        return dataclasses.replace(self, dropout=0.0, tau=1.0, n_samples=1)


#: MCDropoutState is the shared :class:`GradientState`; here ``params = {"layers": ((W, b), ...)}``
#: (W of shape (fan_in, fan_out)), the Adam state, the key (shuffles, dropout masks; predictions use
#: a key derived from it), epochs done and the last epoch's mean objective.

MCDropoutState = GradientState


optimizer = adam


def init_params(key: jax.Array, spec: MCDropoutSpec) -> dict:
    """Glorot-uniform weights (the Keras default of the reference code), zero biases."""
    dtype = jnp.dtype(spec.dtype)
    sizes = spec.layer_sizes
    layers = []
    for k, fan_in, fan_out in zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:]):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        layers.append((jax.random.uniform(k, (fan_in, fan_out), dtype, -limit, limit), jnp.zeros(fan_out, dtype)))
    return {"layers": tuple(layers)}


@float64
def init(key: jax.Array, spec: MCDropoutSpec) -> MCDropoutState:
    """Glorot-uniform weights (:func:`init_params`) and a fresh Adam state."""
    return _init(key, spec.structure).replace(spec=spec)  # one compilation for every (p, tau)


@partial(jax.jit, static_argnums=1)
def _init(key, spec):
    key, sub = jax.random.split(key)
    params = init_params(sub, spec)
    return MCDropoutState(
        params=params,
        opt_state=optimizer(spec).init(params),
        key=key,
        epoch=jnp.zeros((), jnp.int32),
        loss=jnp.asarray(jnp.nan, jnp.dtype(spec.dtype)),
        spec=spec,
    )


# ---------------------------------------------------------------------------------------------
# The stochastic network


def _mask_key(key: jax.Array) -> jax.Array:
    """An ``rbg`` key (XLA's RngBitGenerator) from a threefry key: dropout masks are most of the
    random numbers drawn here, and with threefry bits the compiled epoch took about 3x longer to
    compile (measured on the 2-core CPU machines). rbg draws are not
    vmap-invariant, so code that must reproduce the same masks uses ``lax.map``/``lax.scan``."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = jnp.ravel(key).astype(jnp.uint32)
    words = jnp.concatenate([words, ~words[::-1]])[:4] if words.size < 4 else words[:4]
    return jax.random.wrap_key_data(words, impl="rbg")


def dropout_forward(layers, X: jax.Array, key: jax.Array, p, shared: bool = False) -> jax.Array:
    """One stochastic pass, f(x) of shape (n,) (a network with K > 1 outputs, a classifier's
    logits: (n, K)): inverted dropout (keep with probability 1 - p,
    scale kept units by 1 / (1 - p)) on the input of every layer, masks independent per row
    (training), or with ``shared=True`` one mask per layer for every row (one sampled network:
    prediction, where a row's output must not depend on the other rows)."""
    keep = 1.0 - p
    h = X
    keys = jax.random.split(_mask_key(key), len(layers))
    for i, ((W, b), k) in enumerate(zip(layers, keys)):
        mask = jax.random.bernoulli(k, keep, h.shape[-1:] if shared else h.shape)
        h = jnp.where(mask, h / keep, 0.0) @ W + b
        if i < len(layers) - 1:
            h = jax.nn.relu(h)
    return h[..., 0] if h.shape[-1] == 1 else h


def regulariser(N, p, tau, length_scale):
    """Weight decay of the reference code: reg = length_scale^2 (1 - p) / (2 N tau)."""
    return length_scale**2 * (1.0 - p) / (2.0 * N * tau)


def _epoch(structure, params, opt_state, key, X, y, p, tau, mask=None):
    X = jnp.asarray(X).astype(jnp.dtype(structure.dtype))
    y = jnp.asarray(y).astype(jnp.dtype(structure.dtype))
    n_train = X.shape[0] if mask is None else jnp.sum(mask)
    reg = regulariser(n_train, p, tau, structure.length_scale)

    def loss_fn(params, Xb, yb, k):
        f = dropout_forward(params["layers"], Xb, k, p)
        penalty = reg * sum(jnp.sum(W * W) for W, _ in params["layers"])
        return (softmax_nll(f, yb) if structure.n_classes else (yb - f) ** 2), penalty

    return sgd_epoch(params, opt_state, key, X, y, loss_fn, optimizer(structure), structure.batch_size, mask)


def _train_loop(structure, params, opt_state, key, X, y, p, tau, mask, epochs):
    dtype = jnp.dtype(structure.dtype)

    def body(_, carry):
        params, opt_state, key, _ = carry
        return _epoch(structure, params, opt_state, key, X, y, p, tau, mask)

    carry = (params, opt_state, key, jnp.asarray(jnp.nan, dtype))
    return jax.lax.fori_loop(0, epochs, body, carry)


#: ``epochs`` epochs in one compiled loop (the trip count is traced: one compilation serves
#: :func:`update`, which runs one epoch per call, and the final fit after a grid search).
_train = jax.jit(_train_loop, static_argnums=0)


@partial(jax.jit, static_argnums=0)
def _train_grid(structure, params, opt_state, key, X, y, ps, taus, mask, epochs):
    """:func:`_train` for every ``(ps[i], taus[i])`` at once (``vmap`` over the grid): the same
    initialisation, shuffles and uniform draws for every grid point (only the dropout
    threshold and the weight decay differ), so their comparison has common random numbers.
    One program over all grid points runs 2-3x faster than the points one after another
    (measured on the 2-core CPU machines)."""
    run = lambda p, tau: _train_loop(structure, params, opt_state, key, X, y, p, tau, mask, epochs)  # noqa: E731
    return jax.vmap(run)(ps, taus)


def _as_mask(mask, n):
    return jnp.ones(n, bool) if mask is None else jnp.asarray(mask, bool)


@float64
def update(state: MCDropoutState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> MCDropoutState:
    """One epoch of Adam with dropout: shuffle with the state's key, one step per mini-batch."""
    spec = state.spec
    X = jnp.asarray(X).astype(jnp.dtype(spec.dtype))
    y = jnp.asarray(y).astype(jnp.dtype(spec.dtype))
    params, opt_state, key, loss = _train(
        spec.structure,
        state.params,
        state.opt_state,
        state.key,
        X,
        y,
        spec.dropout,
        spec.tau,
        _as_mask(mask, X.shape[0]),
        1,
    )
    return state.replace(params=params, opt_state=opt_state, key=key, epoch=state.epoch + 1, loss=loss)


# ---------------------------------------------------------------------------------------------
# Prediction


def _predict_key(state: MCDropoutState, key):
    return jax.random.fold_in(state.key, _PREDICT_SALT) if key is None else key


@partial(jax.jit, static_argnums=(3,))
def _sample(layers, X, key, n_samples, p):
    keys = jax.random.split(key, n_samples)
    return jax.lax.map(lambda k: dropout_forward(layers, X, k, p, shared=True), keys)


def _moments_impl(layers, X, key, n_samples, p, y=None, tau=None, X_var=None):
    """Mean and (1/T) variance of T passes, accumulated pass by pass (memory O(n)); with y, also
    the running logsumexp of -tau (y - f_t)^2 / 2 for the mixture log-likelihood. With ``X_var``
    (variances of uncertain inputs), pass t also draws its own input, ``X + sqrt(X_var) eps_t``
    (one eps_t for every row, :func:`probprop.learners.mapnet.input_noise_draws` from pass t's key)."""
    keys = jax.random.split(key, n_samples)
    X = jnp.asarray(X)
    dtype = layers[0][0].dtype
    shift = mlp(layers, X)[..., 0]  # the deterministic network: centres the sums
    zero = jnp.zeros(X.shape[0], dtype)
    sd = None if X_var is None else jnp.sqrt(jnp.asarray(X_var, dtype))

    def step(carry, k):
        s1, s2, lse = carry
        if sd is None:
            d = dropout_forward(layers, X, k, p, shared=True) - shift
        else:
            eps = input_noise_draws(k, 1, X.shape[-1], dtype)[0]
            d = dropout_forward(layers, X + sd * eps, k, p, shared=True) - shift
        if y is not None:
            lse = jnp.logaddexp(lse, -0.5 * tau * (y - shift - d) ** 2)
        return (s1 + d, s2 + d * d, lse), None

    (s1, s2, lse), _ = jax.lax.scan(step, (zero, zero, jnp.full_like(zero, -jnp.inf)), keys)
    mean_d = s1 / n_samples
    var = jnp.maximum(s2 / n_samples - mean_d * mean_d, 0.0)
    return shift + mean_d, var, lse


_moments = jax.jit(_moments_impl, static_argnums=(3,))


@partial(jax.jit, static_argnums=(3,))
def _moments_noisy(layers, X, key, n_samples, p, X_var):
    return _moments_impl(layers, X, key, n_samples, p, X_var=X_var)


@partial(jax.jit, static_argnums=(3,))
def _mixture_log_likelihood_grid(layers, X, key, n_samples, ps, y, taus):
    """Mean held-out :func:`log_likelihood` of every grid point (``layers`` stacked over it)."""

    def score(layers, p, tau):
        _, _, lse = _moments_impl(layers, X, key, n_samples, p, y, tau)
        return jnp.mean(lse) - jnp.log(n_samples) - 0.5 * jnp.log(2.0 * jnp.pi) + 0.5 * jnp.log(tau)

    return jax.vmap(score)(layers, ps, taus)


@float64
def sample_outputs(state: MCDropoutState, X: jax.Array, key=None, n_samples: int | None = None) -> jax.Array:
    """The T stochastic passes themselves, shape (T, n) (a classifier's logits: (T, n, K)); pass t uses ``split(key, T)[t]`` (the
    same masks as :func:`predict` with the same key)."""
    T = state.spec.n_samples if n_samples is None else int(n_samples)
    X = jnp.asarray(X).astype(jnp.dtype(state.spec.dtype))
    return _sample(state.params["layers"], X, _predict_key(state, key), T, state.spec.dropout)


def _refuse_classifier(state, name: str) -> None:
    if state.spec.n_classes:
        raise ValueError(f"{name} is for an MC dropout regressor; a classifier's passes are class_samples")


@float64
def class_samples(state: MCDropoutState, X: jax.Array, key=None, n_samples: int | None = None) -> jax.Array:
    """Classification: the class probabilities (softmax) of each of the T sampled networks, shape
    (T, n, K), pass t with one mask per layer shared by every row (:func:`sample_outputs`); their
    average is the prediction."""
    if not state.spec.n_classes:
        raise ValueError("class_samples is for an MC dropout classifier (n_classes >= 2)")
    return jax.nn.softmax(sample_outputs(state, X, key, n_samples), axis=-1)


@partial(jax.jit, static_argnums=(3,))
def _class_log_probability_grid(layers, X, key, n_samples, ps, y):
    """Mean held-out log probability of the true class under the T-pass average, per grid point
    (``layers`` stacked over it)."""

    def score(layers, p):
        return jnp.mean(log_mean_probability_of(_sample(layers, X, key, n_samples, p), y))

    return jax.vmap(score)(layers, ps)


@float64
def predict(state: MCDropoutState, X: jax.Array, key=None, n_samples: int | None = None, X_var=None):
    """Mean and epistemic variance (1/T) of T stochastic passes (T = spec.n_samples by default).

    Without ``key`` the masks come from a key derived from the state, so the same state gives
    the same prediction. ``X_var`` (variances of uncertain inputs, broadcastable to X,
    standardised units): every pass also draws its own input (:func:`_moments_impl`), so the
    variance holds the input noise's share too."""
    _refuse_classifier(state, "predict")
    T = state.spec.n_samples if n_samples is None else int(n_samples)
    if T < 1:
        raise ValueError(f"n_samples must be >= 1, got {T}")
    X = jnp.asarray(X).astype(jnp.dtype(state.spec.dtype))
    if X_var is None:
        mean, var, _ = _moments(state.params["layers"], X, _predict_key(state, key), T, state.spec.dropout)
    else:
        X_var = jnp.broadcast_to(jnp.asarray(X_var, X.dtype), X.shape)
        mean, var, _ = _moments_noisy(state.params["layers"], X, _predict_key(state, key), T, state.spec.dropout,
                                      X_var)
    return mean, var


@float64
def noise_variance(state: MCDropoutState, X: jax.Array) -> jax.Array:
    """The model's aleatoric variance 1 / tau, per row."""
    n = jnp.asarray(X).shape[0]
    return jnp.full(n, 1.0 / state.spec.tau, jnp.dtype(state.spec.dtype))


@float64
def predict_moments(state: MCDropoutState, X: jax.Array, X_var: jax.Array | None = None) -> Moments:
    """:class:`Moments` per row: :func:`predict` (T passes, the key derived from the state; with
    ``X_var``, each pass with its own input draw) and the noise variance 1 / tau."""
    mean, var = predict(state, X, X_var=X_var)
    return Moments(mean, var, noise_variance(state, X))


@float64
def log_likelihood(state: MCDropoutState, X, y, key=None, n_samples: int | None = None) -> jax.Array:
    """Per-row log (1/T) sum_t N(y | f_t(x), 1/tau): the reference code's test log-likelihood."""
    _refuse_classifier(state, "log_likelihood")
    spec = state.spec
    T = spec.n_samples if n_samples is None else int(n_samples)
    X = jnp.asarray(X).astype(jnp.dtype(spec.dtype))
    y = jnp.asarray(y).astype(jnp.dtype(spec.dtype))
    _, _, lse = _moments(state.params["layers"], X, _predict_key(state, key), T, spec.dropout, y, spec.tau)
    return lse - math.log(T) - 0.5 * math.log(2.0 * math.pi) + 0.5 * jnp.log(spec.tau)


# ---------------------------------------------------------------------------------------------
# Hyper-parameter selection (GAL-REPO "grid" protocol)


@float64
def select_hyperparameters(
    X,
    y,
    grid_p=GRID_P,
    grid_tau=GRID_TAU,
    epochs: int = 400,
    key=None,
    spec: MCDropoutSpec | None = None,
    val_fraction: float = 0.2,
    n_samples: int = 100,
) -> Selection:
    """Grid search of (dropout, tau) by validation log-likelihood (GAL-REPO "grid" protocol).

    A random ``val_fraction`` of the rows of the *training* data (X, y) is held out (GAL-REPO
    holds out the last 20 % of its already shuffled training rows); every grid point is trained
    for ``epochs`` epochs on the rest from the same initialisation and shuffles (the held-out
    rows are masked, so the compiled loop is the one the final fit on all rows reuses), scored by
    the mean of :func:`log_likelihood` (T = ``n_samples`` passes) on the held-out rows (a
    classifier, ``spec.n_classes`` >= 2: the mean log probability of the true class under the
    T-pass average, one tau only). ``spec``
    gives the network and optimiser (default ``MCDropoutSpec(n_in=X.shape[1])``). Retrain on all
    of (X, y) with ``result.spec`` afterwards. Returns a :class:`Selection` (``chosen`` and
    ``grid`` keyed by ``"dropout"`` and ``"tau"``; ``scores[i, j]`` for ``(grid_p[i], grid_tau[j])``).
    """
    X, y = as_xy(X, y)
    grid_p, grid_tau = tuple(float(p) for p in grid_p), tuple(float(t) for t in grid_tau)
    if not grid_p or not grid_tau:
        raise ValueError("grid_p and grid_tau must not be empty")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    spec = MCDropoutSpec(n_in=X.shape[1]) if spec is None else spec
    if spec.n_classes and len(grid_tau) > 1:
        raise ValueError("an MC dropout classifier has no noise precision tau to search; pass one tau")
    for p in grid_p:
        dataclasses.replace(spec, dropout=p)  # validates
    for t in grid_tau:
        dataclasses.replace(spec, tau=t)
    n = X.shape[0]
    key = jax.random.PRNGKey(0) if key is None else key
    split_key, init_key, pred_key = jax.random.split(key, 3)
    val, _ = holdout(n, val_fraction, split_key)
    # train on all rows with the validation rows masked out: the same compiled loop (and, by the
    # padding invariance of _sgd, the same result) as training on the other rows alone, and the
    # same shapes as the final fit on all of (X, y)
    train_mask = np.ones(n, bool)
    train_mask[val] = False
    dtype = jnp.dtype(spec.dtype)
    Xj, yj = jnp.asarray(X, dtype), jnp.asarray(y, dtype)
    Xv, yv = Xj[val], yj[val]
    base = init(init_key, spec)  # one initialisation and one shuffle sequence for all grid points
    ps, taus = (jnp.asarray(a.ravel(), dtype) for a in np.meshgrid(grid_p, grid_tau, indexing="ij"))
    params, _, _, _ = _train_grid(
        spec.structure, base.params, base.opt_state, base.key, Xj, yj, ps, taus, jnp.asarray(train_mask), epochs
    )
    if spec.n_classes:
        scores = _class_log_probability_grid(params["layers"], Xv, pred_key, int(n_samples), ps, yv)
    else:
        scores = _mixture_log_likelihood_grid(params["layers"], Xv, pred_key, int(n_samples), ps, yv, taus)
    scores = np.asarray(scores, np.float64).reshape(len(grid_p), len(grid_tau))
    if not np.any(np.isfinite(scores)):
        raise FloatingPointError("MC dropout grid search: no grid point gave a finite validation log-likelihood")
    i, j = np.unravel_index(np.nanargmax(np.where(np.isfinite(scores), scores, np.nan)), scores.shape)
    best = dataclasses.replace(spec, dropout=grid_p[i], tau=grid_tau[j])
    return Selection(spec=best, chosen={"dropout": grid_p[i], "tau": grid_tau[j]},
                     grid={"dropout": grid_p, "tau": grid_tau}, scores=scores)


def select(X, y, spec: MCDropoutSpec, *, epochs: int = 400, key=None, grid=None) -> Selection:
    """The learner protocol's search: :func:`select_hyperparameters`; ``grid`` a dict with
    ``"dropout"`` and ``"tau"`` candidates (default :data:`GRID_P` x :data:`GRID_TAU`)."""
    grid = {} if grid is None else dict(grid)
    default_tau = (spec.tau,) if spec.n_classes else GRID_TAU
    return select_hyperparameters(X, y, grid_p=grid.get("dropout", GRID_P), grid_tau=grid.get("tau", default_tau),
                                  n_samples=spec.n_samples,
                                  epochs=epochs, key=key, spec=spec)


#: MC dropout behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="mcdropout", spec_class=MCDropoutSpec, init=init, update=update, predict=predict_moments,
                  select=select, class_samples=class_samples)

"""Probabilistic backpropagation (PBP): Hernández-Lobato & Adams, ICML 2015.

A fully connected network with Gaussian weights q(w) = prod N(m, v), a Gamma posterior on
the noise precision and a shared Gamma-distributed prior precision whose per-weight factors
are refined by expectation propagation. Learning is one assumed-density-filtering (ADF)
update per data point, each a closed-form moment match through the forward moments.

Pure functions over an immutable :class:`PBPState`:

    state = init(key, spec)
    state = update(state, X, y)          # one epoch: shuffle, ADF sweep (one lax.scan), EP prior
    mean, var = predict(state, X)        # epistemic moments of the network output
    noise_variance(state)                # E[1/gamma] = rate / (shape - 1)
    noise_variance(state, X)             # E[exp(l)] per row (heteroscedastic likelihood)

and :data:`learner`, the same behind the :class:`probprop.learners.base.Learner` protocol.
The output likelihood is a piece of the spec (``PBPSpec.likelihood``, default PBP's Gaussian
with a learned Gamma noise, :mod:`probprop.likelihoods`; heteroscedastic PBP is
``likelihood=HeteroscedasticGaussian()``, two outputs (f, log noise variance) whose log Z is a 1-D
quadrature, and predictions then carry a noise per row) and so are the layers
(``PBPSpec.layers``, default dense, :mod:`probprop.layers`).

Everything works in standardised units; the estimator converts at the edge.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop._compute_once import compute_once
from probprop.layers import Dense
from probprop.learners import _threefry
from probprop.learners._order import permutation, shuffled_order
from probprop.learners.base import Learner, Moments, float64, light_jit
from probprop.likelihoods import Gamma, GaussianGammaNoise, GaussianNoise
from probprop.moments import ACTIVATIONS, adf, input_noise


@dataclass(frozen=True)
class PBPSpec:
    """Static description of a PBP network (hashable: one compilation per spec and data shape).

    ``noise_shape`` / ``noise_rate`` and ``prior_shape`` / ``prior_rate`` are the Gamma
    hyper-priors of the noise precision and of the shared weight precision (PBP: 6, 6, i.e.
    three pseudo-observations of unit variance). With ``learn_noise=False`` the noise Gamma is
    kept fixed; ``noise_variance`` then sets it so that rate / (shape - 1) equals that variance.

    ``likelihood`` (a :class:`probprop.likelihoods.Likelihood`) replaces the Gaussian observation
    model these fields describe; ``layers`` (one layer piece per weight layer, e.g.
    :class:`probprop.layers.Dense`) replaces the dense layers. ``None``: the defaults.

    ``learn_prior``: refine the shared Gamma prior on the weight precision by EP after every
    epoch (PBP); False keeps the Gaussian prior the weights start from (the classifier's default).

    ``init_mean_std``: the std of the initial weight means (None: PBP's 1 / sqrt(fan_in + 1)).

    ``inference``: ``"adf"`` (PBP: each point's likelihood is added again every epoch) or
    ``"sep"`` (stochastic expectation propagation, Li, Hernández-Lobato & Turner 2015: one
    tied site per weight stands for the average data point and is removed before each update;
    see :func:`sep_update`).
    """

    n_in: int
    hidden: tuple[int, ...] = (50,)
    activation: str = "relu"
    learn_noise: bool = True
    # only read by init; excluded from eq/hash so fixed-noise models share compilations
    noise_variance: float | None = field(default=None, compare=False)
    bias: bool = True
    noise_shape: float = 6.0
    noise_rate: float = 6.0
    prior_shape: float = 6.0
    prior_rate: float = 6.0
    dtype: str = "float64"
    likelihood: object = None
    layers: tuple | None = None
    inference: str = "adf"
    init_mean_std: float | None = None
    learn_prior: bool = True

    @property
    def n_outputs(self) -> int:
        """Network outputs: one for the regression likelihoods, K for a K-class one."""
        return int(self.output_likelihood.n_outputs)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_in, *self.hidden, self.n_outputs)

    @property
    def output_likelihood(self):
        """The observation model: ``likelihood``, or the Gaussian the noise fields describe."""
        if self.likelihood is not None:
            return self.likelihood
        return GaussianGammaNoise(self.noise_shape, self.noise_rate) if self.learn_noise else GaussianNoise()

    @property
    def layer_pieces(self) -> tuple:
        """One layer piece per weight layer: ``layers``, or dense layers."""
        return (Dense(),) * (len(self.layer_sizes) - 1) if self.layers is None else tuple(self.layers)

    @property
    def weight_shapes(self) -> tuple[tuple[int, int], ...]:
        sizes = self.layer_sizes
        return tuple(layer.weight_shape(inp, out, self.bias)
                     for layer, inp, out in zip(self.layer_pieces, sizes[:-1], sizes[1:]))


class PriorSites(NamedTuple):
    """EP sites of the prior, one per weight: the Gaussian part in natural parameters (natural
    mean, precision), the Gamma part as increments of (shape, rate) (the reference code stores
    the rate's as a natural parameter, -rate)."""

    natmean: tuple[jax.Array, ...]
    precision: tuple[jax.Array, ...]
    shape: tuple[jax.Array, ...]
    rate: tuple[jax.Array, ...]


class TiedSites(NamedTuple):
    """SEP's tied likelihood site of every weight in natural parameters (float64): the
    posterior is prior sites x site^N, N the number of data points (``inference="sep"``)."""

    natmean: tuple[jax.Array, ...]
    precision: tuple[jax.Array, ...]


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["means", "variances", "noise", "prior", "sites", "rejections", "noise_rejections", "key", "tied"],
    meta_fields=["spec"],
)
@dataclass(frozen=True)
class PBPState:
    """Posterior of a PBP network. ``means[l]``/``variances[l]`` have shape (out, fan_in + 1),
    the last column being the bias. ``tied``: SEP's tied sites (None for ADF, so an ADF state and
    its model file are unchanged). ``rejections[l]`` counts, per weight, the updates refused by
    the variance guard since ``init`` (``noise_rejections`` those of the noise Gamma); the
    property ``rejected`` is their total. (Per-weight counters cost less inside the compiled
    loop than a reduction per update, and show where rejections happen.)"""

    means: tuple[jax.Array, ...]
    variances: tuple[jax.Array, ...]
    noise: Gamma
    prior: Gamma
    sites: PriorSites
    rejections: tuple[jax.Array, ...]
    noise_rejections: jax.Array
    key: jax.Array
    spec: PBPSpec
    tied: TiedSites | None = None

    def replace(self, **changes) -> PBPState:
        return dataclasses.replace(self, **changes)

    @property
    def rejected(self) -> jax.Array:
        """Total number of refused updates (weights and noise) since ``init``."""
        return sum(jnp.sum(r, dtype=jnp.int64) for r in self.rejections) + self.noise_rejections


@float64
def init(key: jax.Array, spec: PBPSpec) -> PBPState:
    """Prior posterior: means ~ N(0, 1/(fan_in + 1)), variances b/(a-1) = 1.2 (PBP §3.1)."""
    if spec.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {spec.activation!r}; choose from {sorted(ACTIVATIONS)}")
    if spec.inference not in INFERENCE:
        raise ValueError(f"unknown inference {spec.inference!r}; choose from {list(INFERENCE)}")
    fixed = spec.likelihood is None and not spec.learn_noise
    if fixed and not (spec.noise_variance is not None and spec.noise_variance > 0):
        raise ValueError(f"a fixed noise needs a positive noise_variance, got {spec.noise_variance!r}")
    state = _init(key, spec)
    # outside the compiled part: a fixed noise value is not part of the jit key
    state = state.replace(noise=spec.output_likelihood.init_params(spec.noise_variance))
    # built from host arrays: JAX arrays (immutable, with .at) by a transfer that compiles nothing
    return jax.device_put(state)


def _init(key: jax.Array, spec: PBPSpec) -> PBPState:
    """Built on the host, as NumPy arrays (:func:`init` hands them to JAX): only the normal draws
    run on the device, through one compiled sampler per power-of-two size (a compiled init per
    network shape cost ~0.8 s of compilation; each ``jnp.asarray`` of a host array compiled a
    copy program, ~10 ms each on a first call).
    Under :func:`jax.eval_shape` (a traced key) nothing is allocated: the model-file loader
    learns the state's structure and shapes this way before it reads any array."""
    dtype = np.dtype(spec.dtype)
    key, *layer_keys = _threefry.split(key, len(spec.weight_shapes) + 1)  # on the host for a concrete key
    prior_var = spec.prior_rate / (spec.prior_shape - 1.0)
    xp = jnp if isinstance(key, jax.core.Tracer) else np
    if xp is jnp:
        normal = lambda k, shape, divisor: jax.random.normal(k, shape, jnp.float64) / divisor  # noqa: E731
    else:
        normal = _threefry.normal_over
    full = lambda value, dtype: tuple(xp.full(s, value, dtype) for s in spec.weight_shapes)  # noqa: E731
    means = tuple(
        normal(k, shape, _mean_divisor(spec, shape)).astype(dtype)
        for k, shape in zip(layer_keys, spec.weight_shapes)
    )
    f64 = np.float64
    zeros = full(0.0, f64)
    return PBPState(
        means=means,
        variances=full(prior_var, dtype),
        noise=None,  # the likelihood's parameters, set by init
        prior=Gamma(xp.asarray(spec.prior_shape, f64), xp.asarray(spec.prior_rate, f64)),
        sites=PriorSites(zeros, full(1.0 / prior_var, f64), zeros, zeros),
        rejections=full(0, np.int32),
        noise_rejections=xp.asarray(0, np.int64),
        key=key,
        spec=spec,
        tied=TiedSites(zeros, zeros) if spec.inference == "sep" else None,
    )


def _mean_divisor(spec: PBPSpec, shape) -> float:
    """The initial means are standard normal draws divided by this: sqrt(fan_in + 1) (PBP), or
    1 / ``init_mean_std``."""
    return float(np.sqrt(shape[1])) if spec.init_mean_std is None else 1.0 / float(spec.init_mean_std)


# ---------------------------------------------------------------------------------------------
# Forward moments


def forward(state: PBPState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of the network output for inputs X of shape (..., n_in)."""
    spec = state.spec
    activation = ACTIVATIONS[spec.activation]
    mean, var = X.astype(state.means[0].dtype), None
    last = len(state.means) - 1
    for layer, (piece, M, V) in enumerate(zip(spec.layer_pieces, state.means, state.variances)):
        _, (mean, var) = piece.forward(M, V, mean, var, spec.bias)
        if layer < last:
            mean, var, _ = activation(mean, var)
    return _outputs(spec, mean), _outputs(spec, var)


def _outputs(spec: PBPSpec, a):
    """The output units: shape (...,) for one output (regression), (..., K) for K."""
    return a[..., 0] if spec.n_outputs == 1 else a


@float64
def predict(state: PBPState, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and epistemic variance of the network outputs (add :func:`noise_variance` for y): shape
    (n,) for one output, (n, K) for K (a heteroscedastic network's (f, l): see :func:`predict_moments`)."""
    return _predict(state, jnp.asarray(X))


@light_jit
def _predict(state, X):
    return forward(state, X)


def forward_noisy(state: PBPState, X: jax.Array, X_var: jax.Array, propagation: str = "moments"):
    """:func:`forward` for uncertain inputs x ~ N(X, X_var) (per entry, independent of each other
    and of the weights), with the covariances the input noise induces between units
    (:mod:`probprop.moments.input_noise`); ``propagation="linear"`` linearises the activations."""
    spec = state.spec
    activation = ACTIVATIONS[spec.activation]
    dtype = state.means[0].dtype
    mean, var, cov = input_noise.input_moments(X.astype(dtype), X_var.astype(dtype))
    last = len(state.means) - 1
    for layer, (piece, M, V) in enumerate(zip(spec.layer_pieces, state.means, state.variances)):
        if not hasattr(piece, "forward_shared"):
            raise ValueError(f"the layer piece {piece!r} cannot propagate uncertain inputs (it has no forward_shared)")
        mean, var, cov = piece.forward_shared(M, V, mean, var, cov, spec.bias)
        if layer < last:
            mean, var, cov = input_noise.activate(activation, mean, var, cov, propagation)
    return _outputs(spec, mean), _outputs(spec, var)


@float64
def predict_moments(state: PBPState, X: jax.Array, X_var: jax.Array | None = None,
                    propagation: str = "moments") -> Moments:
    """:class:`Moments` per row: mean, epistemic variance and the (constant) noise variance.

    ``X_var`` (broadcastable to X): the variances of uncertain inputs, in standardised units
    (None: deterministic inputs, the plain compiled pass). ``propagation``: ``"moments"``
    (moment matching through the activations) or ``"linear"`` (local linearisation); see
    :mod:`probprop.moments.input_noise`."""
    return input_noise.predict_with(_predict_moments, _predict_moments_noisy, state, X, X_var, propagation)


@light_jit
def _predict_moments(state, X):
    return _as_moments(state, *forward(state, X))


@partial(jax.jit, static_argnames="propagation")
def _predict_moments_noisy(state, X, X_var, propagation):
    return _as_moments(state, *forward_noisy(state, X, X_var, propagation))


def _as_moments(state, mean, var) -> Moments:
    """Output moments as :class:`Moments`: a heteroscedastic likelihood's two outputs (f, l)
    give f's moments and the noise E[exp(l)] per row; the others a constant noise."""
    if heteroscedastic(state.spec):
        return Moments(mean[..., 0], var[..., 0], state.spec.output_likelihood.noise_from_outputs(mean, var))
    return Moments(mean, var, jnp.broadcast_to(_noise_variance(state), var.shape))


def _noise_variance(state):
    return state.spec.output_likelihood.noise_variance(state.noise)


def heteroscedastic(spec: PBPSpec) -> bool:
    """Whether the spec's likelihood reads its noise from a second output (per input)."""
    return hasattr(spec.output_likelihood, "noise_from_outputs")


@float64
def noise_variance(state: PBPState, X: jax.Array | None = None) -> jax.Array:
    """The likelihood's predictive noise variance; for the Gaussian ones the posterior mean of
    the noise variance, E[1/gamma] = rate / (shape - 1); for a heteroscedastic likelihood
    E[exp(l)] per row of ``X`` (which it then needs)."""
    if not heteroscedastic(state.spec):
        return _noise_variance(state)
    if X is None:
        raise ValueError("a heteroscedastic PBP network needs X for its noise variance")
    return _predict_moments(state, jnp.asarray(X)).noise_var


# ---------------------------------------------------------------------------------------------
# One ADF update


def output_moments_and_grads(state: PBPState, x: jax.Array, y: jax.Array, weight=1.0):
    """Forward moments for one point and d log Z / d(m, v) of every weight.

    Returns ``(out_mean, out_var, grads_m, grads_v)``; see :func:`_moments_grads_and_noise`.
    """
    return _moments_grads_and_noise(state, x, y, weight, True)[:4]


def _output_scalars(state: PBPState, y, out_mean, out_var, weight, keep) -> jax.Array:
    """Everything that follows the forward pass, as one float64 vector

        [d log Z / d out_mean (K), d log Z / d out_var (K), *likelihood parameters, update refused]

    (K = ``spec.n_outputs``: 1 for regression)

    from the spec's likelihood (:mod:`probprop.likelihoods`; for PBP's Gaussian, the noise Gamma
    after its guarded ADF update, unchanged when the noise is fixed). Built as
    one stacked array so that XLA:CPU computes it in one kernel: as separate scalars it made
    about eight tiny kernels per data point.
    """
    f64 = jnp.float64
    m, v = out_mean.astype(f64), out_var.astype(f64)
    g_mean, g_var, noise, refused = state.spec.output_likelihood.adf_output(state.noise, y, m, v, weight, keep)
    parts = [g_mean, g_var, *(jnp.asarray(a, f64) for a in jax.tree.leaves(noise)), refused]
    scalars = jnp.concatenate([jnp.reshape(jnp.asarray(a, f64), (-1,)) for a in parts])
    # summed with zeros: a reduction, which XLA:CPU neither simplifies away nor fuses into its
    # consumers, so the vector is computed once, in one kernel
    return jnp.sum(jnp.stack([scalars, jnp.zeros_like(scalars)]), axis=0)


def _moments_grads_and_noise(state: PBPState, x: jax.Array, y: jax.Array, weight, keep):
    """Forward moments for one point, d log Z / d(m, v) of every weight, and the output scalars
    of :func:`_output_scalars`.

    ``weight`` scales the output cotangents; 0 makes every weight gradient exactly zero, which
    turns the ADF update into a no-op for padded rows without a branch in the scan.

    Backward pass by hand: cotangents of the pre-activation moments first, then the weight
    gradients as separate outer products (XLA:CPU would otherwise recompute the activation
    derivatives for every weight). Returns ``(out_mean, out_var, grads_m, grads_v, scalars,
    first)`` where ``first = (a, b, x)`` factors the first layer's gradients (its inputs are
    the data, deterministic): ``grads_m[0] = a x^T``, ``grads_v[0] = b (x^2)^T``.
    """
    spec = state.spec
    pieces = spec.layer_pieces
    activation = ACTIVATIONS[spec.activation]
    dtype = state.means[0].dtype
    mean, var = x.astype(dtype), None
    inputs, jacobians = [], []
    last = len(state.means) - 1
    for layer, (M, V) in enumerate(zip(state.means, state.variances)):
        layer_inputs, (mean, var) = pieces[layer].forward(M, V, mean, var, spec.bias)
        inputs.append(layer_inputs)
        if layer < last:
            mean, var, jac = activation(mean, var)
            jacobians.append(jac)
    out_mean, out_var = _outputs(spec, mean), _outputs(spec, var)

    k = spec.n_outputs
    scalars = _output_scalars(state, y, out_mean, out_var, weight, keep)
    g_mean, g_var = scalars[0:k].astype(dtype), scalars[k:2 * k].astype(dtype)  # d log Z / d out_mean, out_var

    grads_m, grads_v = [None] * len(state.means), [None] * len(state.means)
    first = None
    mask = spec.output_likelihood.feedback_mask
    feedback = None if mask is None else jnp.asarray(mask, dtype)
    for layer in range(last, -1, -1):
        M, V = state.means[layer], state.variances[layer]
        dM, dV, d_mean, d_var = pieces[layer].pullback(M, V, inputs[layer], g_mean, g_var, spec.bias)
        if layer == last and layer > 0 and feedback is not None:  # cut outputs: not into the hidden layers
            _, _, d_mean, d_var = pieces[layer].pullback(M, V, inputs[layer], g_mean * feedback, g_var * feedback, spec.bias)
        grads_m[layer], grads_v[layer] = dM, dV
        if layer == 0 and hasattr(pieces[0], "deterministic_factors"):
            first = pieces[0].deterministic_factors(M, inputs[0], g_mean, g_var)  # the data: in_var None
        if layer > 0:
            dE_dm, dE_dv, dVar_dm, dVar_dv = jacobians[layer - 1]
            # g_mean = d_mean dE_dm + d_var dVar_dm, g_var = d_mean dE_dv + d_var dVar_dv, written
            # as one small reduction: XLA:CPU then materialises the two vectors once, instead of
            # re-deriving them (and the activation Jacobian) inside every weight-update loop,
            # which took ~50 of the ~65 operations per weight (see docs/engine.md)
            terms = jnp.stack([jnp.stack([d_mean * dE_dm, d_var * dVar_dm]), jnp.stack([d_mean * dE_dv, d_var * dVar_dv])])
            g_mean, g_var = jnp.sum(terms, axis=1)
    return out_mean, out_var, grads_m, grads_v, scalars, first


def adf_update(state: PBPState, x: jax.Array, y: jax.Array, keep=None) -> PBPState:
    """Incorporate one observation (x, y) by ADF, all weights at once from the old posterior.

    With ``keep=False`` the state is returned unchanged (padding rows).

    Weights whose update would give a non-positive or non-finite variance (or a non-finite
    mean) keep their old moments; a non-usable noise-Gamma update is likewise refused (the
    reference code forgot this guard). Refusals are counted in ``state.rejections``.
    """
    weight = 1.0 if keep is None else jnp.where(keep, 1.0, 0.0)
    keep = True if keep is None else keep
    _, _, grads_m, grads_v, scalars, first = _moments_grads_and_noise(state, x, y, weight, keep)
    means, variances, rejections = [], [], []
    for layer, (M, V, dM, dV, count) in enumerate(zip(state.means, state.variances, grads_m, grads_v, state.rejections)):
        if layer == 0 and first is not None and M.dtype == jnp.float64:
            # deterministic inputs: the factored form, fewer operations per weight (in float32
            # XLA:CPU compiles it into a slower loop than the plain form: `probprop bench speed`)
            m_new, v_new = adf.gaussian_update_outer(M, V, *first)
        else:
            m_new, v_new = adf.gaussian_update(M, V, dM, dV)
        ok = adf.valid_gaussian(m_new, v_new)
        means.append(jnp.where(ok, m_new, M))
        variances.append(jnp.where(ok, v_new, V))
        rejections.append(count + jnp.where(ok, 0, 1).astype(count.dtype))
    leaves, treedef = jax.tree.flatten(state.noise)
    start = 2 * state.spec.n_outputs
    k = len(leaves)
    noise = jax.tree.unflatten(treedef, [scalars[start + i].astype(leaf.dtype) for i, leaf in enumerate(leaves)])
    return state.replace(
        means=tuple(means),
        variances=tuple(variances),
        noise=noise,
        rejections=tuple(rejections),
        noise_rejections=state.noise_rejections + scalars[start + k].astype(state.noise_rejections.dtype),
    )


def sep_update(state: PBPState, x: jax.Array, y: jax.Array, n_points, keep=None) -> PBPState:
    """Incorporate one observation by stochastic EP (Li, Hernández-Lobato & Turner, NIPS 2015).

    The posterior is q = (prior sites) x f^N with one tied site f per weight (``state.tied``,
    natural parameters), N = ``n_points``. For the point (x, y): remove one copy of f (the
    cavity q / f), moment-match the cavity times the point's likelihood exactly as ADF does
    (:func:`adf_update` from the cavity), take the point's own site f_n = q_new / cavity, and
    move f a 1/N step towards it, f <- f^(1 - 1/N) f_n^(1/N). Then q = prior sites x f^N, which
    is q_new itself. Unlike ADF, a point seen again replaces its average share instead of being
    added once more, so the variances stop shrinking with the number of epochs.

    Per weight, where the cavity is not a proper Gaussian (its precision <= 0) the update runs
    from q itself and f is left as it is (ADF for that weight); an update the variance guard
    refuses leaves q and f unchanged. The noise Gamma is updated by ADF, as in PBP.
    """
    keep_all = True if keep is None else keep
    f64 = jnp.float64
    cavities, proper = [], []
    for M, V, nat, prec in zip(state.means, state.variances, state.tied.natmean, state.tied.precision):
        m, v = M.astype(f64), V.astype(f64)
        prec_c = 1.0 / v - prec
        ok = (prec_c > 0) & jnp.isfinite(prec_c)
        v_c = jnp.where(ok, 1.0 / jnp.where(ok, prec_c, 1.0), v)
        m_c = jnp.where(ok, (m / v - nat) * v_c, m)
        ok = ok & jnp.isfinite(m_c) & (v_c > adf.MIN_VARIANCE)
        cavities.append((jnp.where(ok, m_c, m).astype(M.dtype), jnp.where(ok, v_c, v).astype(V.dtype)))
        proper.append(ok)
    cavity = state.replace(means=tuple(c[0] for c in cavities), variances=tuple(c[1] for c in cavities))
    new = adf_update(cavity, x, y, keep)
    n = jnp.asarray(n_points, f64)
    means, variances, natmean, precision = [], [], [], []
    for M, V, (Mc, Vc), ok, M1, V1, r0, r1, nat, prec in zip(
        state.means, state.variances, cavities, proper, new.means, new.variances,
        cavity.rejections, new.rejections, state.tied.natmean, state.tied.precision,
    ):
        updated = (r1 == r0) & keep_all  # the guard accepted this weight's update
        m1, v1 = M1.astype(f64), V1.astype(f64)
        mc, vc = Mc.astype(f64), Vc.astype(f64)
        site_prec = 1.0 / v1 - 1.0 / vc  # f_n in natural parameters
        site_nat = m1 / v1 - mc / vc
        move = ok & updated
        natmean.append(jnp.where(move, nat + (site_nat - nat) / n, nat))
        precision.append(jnp.where(move, prec + (site_prec - prec) / n, prec))
        means.append(jnp.where(updated, M1, M))
        variances.append(jnp.where(updated, V1, V))
    return new.replace(means=tuple(means), variances=tuple(variances),
                       tied=TiedSites(tuple(natmean), tuple(precision)))


#: With SEP, the EP prior step skips a weight whose likelihood cavity (the posterior without its
#: prior site) is wider than this many times the prior's variance b / (a - 1): the data leave
#: such a weight at its prior, and the step's plug-in moment match, fed the wide cavity, raises
#: the prior variance, which widens the cavities further. Without the limit (or at 10) PBP-SEP
#: diverges on yacht (test RMSE 5,880 over splits 0-4, one split at 29,370); at 1 it does not
#: (1.31; ADF 1.01), and Boston stays at 3.11 (ADF 3.03). ADF's cavities hold the data 40
#: times over and are never that wide, so ADF keeps the original's rule.
SEP_PRIOR_LIMIT = 1.0

#: The values of ``PBPSpec.inference``: :func:`adf_update` or :func:`sep_update` per point.
INFERENCE = ("adf", "sep")


#: ADF updates per iteration of the compiled loop, for one network and for a batch of networks
#: under ``jax.vmap`` (``probprop.fit_together``). 2 runs as fast as 4 since the per-update
#: kernels were merged, and halves what a first call traces and compiles (issue 14: compiling
#: the 13-50-1 sweep took 1.4 s at 2 against 2.6 s at 4; see ``probprop bench speed``).
SWEEP_UNROLL = 2
BATCHED_SWEEP_UNROLL = 2


def adf_sweep(state: PBPState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None,
              unroll: int = SWEEP_UNROLL) -> PBPState:
    """ADF updates (SEP updates when ``state.spec.inference == "sep"``, with N the number of
    real rows) for the rows of X in order, in one ``lax.scan``; rows with mask False are
    skipped (used to pad data to a reusable shape)."""
    X = jnp.asarray(X).astype(state.means[0].dtype)
    y = jnp.asarray(y, jnp.float64)

    if state.spec.inference == "sep":
        n_points = y.shape[0] if mask is None else jnp.sum(jnp.asarray(mask, bool))

        def step(carry, row):
            return sep_update(carry, *row[:2], n_points, *row[2:]), None
    else:
        def step(carry, row):
            return adf_update(carry, *row), None

    state, _ = lax.scan(step, state, (X, y) if mask is None else (X, y, mask), unroll=unroll)
    return state


# ---------------------------------------------------------------------------------------------
# EP refinement of the prior


def refine_prior(state: PBPState, limit=None) -> PBPState:
    """One EP pass over the prior factors N(w | 0, 1/lambda), lambda ~ Gamma (PBP §3.2).

    ``limit`` (SEP, :data:`SEP_PRIOR_LIMIT`): also skip a weight whose cavity variance exceeds
    ``limit`` times the prior's variance rate / (shape - 1) at its turn.

    Sequential over every weight (layer by layer, row-major), as in the reference code: remove
    the weight's site to form the cavity, moment-match the tilted distribution with the same
    plug-in Student-t approximation, store the new site; the global Gamma on lambda is updated
    immediately, so the next weight's cavity sees it. Weights whose cavity is not proper
    (v_cav <= 0 or >= 1e6, rate <= 0, shape <= 1) are skipped, as in the reference. As there, a
    proper cavity's update is kept even when the new prior Gamma is improper (the following
    cavities are then skipped until the prior recovers); only non-finite results are refused.
    On small data with several hidden layers this happens in the first epoch, and the
    reference's results depend on it (``tests/test_pbp_reference.py``, issue 18).

    Only the Gamma recursion is sequential: the Gaussian cavities are formed before the scan
    and the new sites after it, vectorised, from the cavity Gamma each weight saw.
    """
    shapes = [m.shape for m in state.means]
    sizes = [m.size for m in state.means]
    flat = lambda arrays: jnp.concatenate([jnp.ravel(a).astype(jnp.float64) for a in arrays])  # noqa: E731
    m, v = flat(state.means), flat(state.variances)
    s_nat, s_prec = flat(state.sites.natmean), flat(state.sites.precision)
    s_shape, s_rate = flat(state.sites.shape), flat(state.sites.rate)

    prec_cav = 1.0 / v - s_prec
    nat_cav = m / v - s_nat
    v_cav_raw = 1.0 / prec_cav
    gauss_proper = (v_cav_raw > 0) & (v_cav_raw < 1e6)
    v_cav = jnp.where(gauss_proper, v_cav_raw, 1.0)  # keep the arithmetic finite when skipped
    m_cav = nat_cav * v_cav

    def tilted(m_cav, v_cav, shape_cav, rate_cav):
        """Moments of N(w | m_cav, v_cav) N(w | 0, 1/lambda) Gamma(lambda | shape_cav, rate_cav)."""
        total = v_cav + rate_cav / (shape_cav - 1.0)
        m_new, v_new = adf.gaussian_update(
            m_cav, v_cav, -m_cav / total, 0.5 * (m_cav * m_cav / total - 1.0) / total
        )
        log_z = adf.student_log_z(0.0, m_cav, v_cav, shape_cav, rate_cav)
        shape_new, rate_new = adf.gamma_update(shape_cav, rate_cav, *log_z)
        return m_new, v_new, shape_new, rate_new

    def step(carry, column):
        m_c, v_c, ok_gauss, site_shape, site_rate = column
        prior = Gamma(carry[0], carry[1])
        shape_cav = prior.shape - site_shape
        rate_cav = prior.rate - site_rate
        proper = ok_gauss & (rate_cav > 0) & (shape_cav > 1)
        if limit is not None:  # SEP: weights the data leave at the prior do not move it
            proper = proper & (v_c * (shape_cav - 1.0) < limit * rate_cav)
        shape_cav = jnp.where(proper, shape_cav, 2.0)
        rate_cav = jnp.where(proper, rate_cav, 1.0)
        # only the Gamma part is needed inside the loop; the Gaussian part of the tilted
        # moments is recomputed, vectorised, after it (with a proper cavity and a proper
        # Gaussian prior factor it is always valid: v_new = v_cav V / (v_cav + V) > 0)
        log_z = adf.student_log_z(0.0, m_c, v_c, shape_cav, rate_cav)
        shape_new, rate_new = adf.gamma_update(shape_cav, rate_cav, *log_z)
        # as in the reference code, a proper cavity's update is kept even when the new Gamma is
        # not a distribution (shape <= 1 or rate <= 0): the cavities after it are then improper
        # and skipped until the prior recovers. Refusing it instead (keeping the old prior) lets
        # the prior's shape sink towards 1, its variance grow without bound and the weights of
        # deeper networks blow up (two hidden layers on yacht, issue 18). Non-finite results
        # are refused (the reference would store them and freeze the prior for good).
        ok = proper & jnp.isfinite(shape_new) & jnp.isfinite(rate_new)
        # the whole scalar step as one kernel (see probprop._compute_once): as separate scalars
        # it took about a dozen per weight, 2.6x the time
        out = compute_once(jnp.where(ok, shape_new, prior.shape), jnp.where(ok, rate_new, prior.rate),
                           jnp.where(ok, 1.0, 0.0), shape_cav, rate_cav)
        return jnp.stack(out[:2]), jnp.stack(out[2:])

    carry, columns = lax.scan(
        step, jnp.stack([state.prior.shape, state.prior.rate]), (m_cav, v_cav, gauss_proper, s_shape, s_rate)
    )
    prior = Gamma(carry[0], carry[1])
    ok, shape_cav, rate_cav = columns[:, 0] > 0.5, columns[:, 1], columns[:, 2]
    m_new, v_new, shape_new, rate_new = tilted(m_cav, v_cav, shape_cav, rate_cav)
    ok = ok & adf.valid_gaussian(m_new, v_new)
    pick = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]

    def unflat(vector, dtype):
        return tuple(
            vector[a:b].reshape(shape).astype(dtype) for a, b, shape in zip(offsets[:-1], offsets[1:], shapes)
        )

    dtype = state.means[0].dtype
    f64 = jnp.float64
    sites = PriorSites(
        unflat(pick(m_new / v_new - nat_cav, s_nat), f64),
        unflat(pick(1.0 / v_new - prec_cav, s_prec), f64),
        unflat(pick(shape_new - shape_cav, s_shape), f64),
        unflat(pick(rate_new - rate_cav, s_rate), f64),
    )
    return state.replace(
        means=unflat(pick(m_new, m), dtype),
        variances=unflat(pick(v_new, v), dtype),
        sites=sites,
        prior=prior,
    )


# ---------------------------------------------------------------------------------------------
# One epoch


@float64
def update(state: PBPState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None, *,
           unroll: int = SWEEP_UNROLL) -> PBPState:
    """One PBP epoch: a fresh random order, one ADF update per point, then the EP prior step.

    ``unroll``: ADF updates per iteration of the compiled loop (the results do not depend on it).
    """
    return _update(state, X, y, mask, unroll=unroll)


def _update(state: PBPState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None, *,
            unroll: int = SWEEP_UNROLL) -> PBPState:
    """One PBP epoch as two compiled programs: the shuffled sweep (:func:`_sweep_epoch`, XLA's
    default emitters) and the EP prior step (:func:`_refine_prior`, compiled light). The prior
    step runs once per epoch, over the weights: with the loop emitters it compiled in 0.47 against
    0.83 s (13-50-1, one core, ad hoc) and ran as fast, with the same numbers (bit for bit at XLA's
    default optimisation level here, to rounding at others). As one program, the epoch compiled in
    2.2-2.4 s against 1.4 + 0.5 s for the two (ad hoc); its numbers differ from the two programs' in the last bits
    (XLA fuses across the boundary; ``test_pbp.test_epoch_programs``). Inside another trace
    (``fit_together``'s ``vmap``) both are traced into the caller's program."""
    if mask is None and unroll == SWEEP_UNROLL:
        state = _sweep_epoch(state, X, y)  # the jit's fastest dispatch: positional, default static args
    else:
        state = _sweep_epoch(state, X, y, mask, unroll=unroll)
    if not state.spec.learn_prior:
        return state
    return _refine_prior(state, SEP_PRIOR_LIMIT if state.spec.inference == "sep" else None)


@partial(jax.jit, static_argnames="unroll")
def _sweep_epoch(state: PBPState, X: jax.Array, y: jax.Array, mask: jax.Array | None = None, *,
                 unroll: int = SWEEP_UNROLL) -> PBPState:
    """An epoch's sweep: a fresh random order (the state's key split), one ADF (SEP) update per
    point in that order."""
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    key, sub = _threefry.split(state.key)
    if mask is None:
        order = permutation(sub, y.shape[0])
        state = adf_sweep(state, X[order], y[order], unroll=unroll)
    else:
        order = shuffled_order(sub, mask)
        state = adf_sweep(state, X[order], y[order], mask[order], unroll=unroll)
    return state.replace(key=key)


@light_jit(static_argnums=1)
def _refine_prior(state: PBPState, limit=None) -> PBPState:
    """:func:`refine_prior` as a program of its own, compiled light (see :func:`_update`)."""
    return refine_prior(state, limit)


def step(state: PBPState, X: jax.Array, y: jax.Array, keep: jax.Array | None = None) -> PBPState:
    """ADF updates for the rows of X in the order given (no shuffle, no EP prior step): the
    learner's online step (:mod:`probprop.learners.drift`). ADF only: an SEP site needs the
    number of rows of a fixed data set."""
    if state.spec.inference != "adf":
        raise ValueError("the online step (a stream, forgetting) needs inference='adf'")
    return adf_sweep(state, X, y, keep)


def n_weights(spec: PBPSpec) -> int:
    return sum(a * b for a, b in spec.weight_shapes)


#: PBP behind the learner protocol (:mod:`probprop.learners.base`).
learner = Learner(name="pbp", spec_class=PBPSpec, init=init, update=update, predict=predict_moments, online=True,
                  step=step)

"""Classification likelihoods for the moment learners: the binary probit and the multinomial probit.

Both observe the class through Gaussian noise on the network outputs (the "latent utility"
view): with outputs f and independent noise e ~ N(0, 1),

* :class:`Probit` (two classes, one output): y = 1 when f + e > 0, so p(y = 1 | f) = Phi(f);
* :class:`MultinomialProbit` (K classes, K outputs): y = argmax_k (f_k + e_k).

For PBP's per-point ADF a likelihood must give log Z = log E_{f ~ N(m, diag v)} p(y | f) and its
derivatives in m and v, faithfully: they are the whole update. Here both are exact up to a
1-D quadrature, since f_k + e_k ~ N(m_k, 1 + v_k):

* binary: Z = Phi(s m / sqrt(1 + v)), s = +-1, in closed form with derivatives in closed form;
* K classes: Z_y = P(g_y > g_k for all k != y), g ~ N(m, diag(1 + v)), i.e. with
  s_k = sqrt(1 + v_k)::

      Z_y = integral phi(u) prod_{k != y} Phi((m_y - m_k + s_y u) / s_k) du,

  a 1-D integral of a log-concave function. Training's log Z: a few Newton steps find the
  integrand's mode and curvature, and the trapezoid rule on :data:`N_NODES` nodes runs in a
  variable stretched to the integrand (the mode's width on its steep side, widening to the unit
  width of phi's tail on the other: Gauss-Hermite centred on the mode was off by up to 2e-3 in
  log Z when the variances differ a lot, because that tail is wider than the Gaussian fitted at
  the mode). Everything is in the log domain (``log_ndtr``), so a point the network gets badly
  wrong (Z ~ 1e-300) still has an accurate log Z and gradient; the derivatives are autodiff of
  the quadrature with the nodes held fixed. Prediction computes all K probabilities on one
  shared grid (:func:`_probabilities_shared`, K times cheaper). The tests
  (``probprop/likelihoods/tests/test_classification.py``) check log Z against a fine trapezoid
  integral (relative error below 1e-9 for up to 10 classes, output scales up to 20 and variances
  up to 100), its gradients against finite differences, the shared grid against the per-class
  quadrature, and the probabilities against Monte Carlo.

Why the multinomial probit and not a softmax: a softmax has no closed-form Z, so ADF would run on
an approximation of it. The candidates measured on Gaussian logits (shared/docs
classification-anchors, K = 10): the probit-scaled softmax (each logit mean scaled by
(1 + pi v / 8)^(-1/2)) is within 0.002-0.006 in mean absolute probability error at v = 1-4 - an
error of the approximation, not of a model, which ADF's derivatives would inherit; a log-normal
closed-form softmax is off by 25-670x in its variance at v = 4; the hierarchical binary tree
(pytagi's) leaks probability mass when K is not a power of two. The multinomial probit is a
model whose Z the quadrature gives to 1e-9, so ADF matches the moments of the model it states,
and the probabilities it predicts are that same Z (rows sum to one to quadrature accuracy and
are renormalised exactly).

Uncertainty beyond the mean probabilities (:meth:`probability_moments`): the per-class variance of
p(y | f) under the epistemic f ~ N(m, diag v) and the expected entropy E_f H[p(. | f)] (whose gap
to the entropy of the mean probabilities is the mutual information, the epistemic part). Binary:
1-D Gauss-Hermite over f (accurate). K classes: the third-degree spherical cubature rule
(Arasaratnam & Haykin 2009; 2K points m +- sqrt(K v_k) e_k, equal weights), deterministic and
one pass, exact for the mean and covariance of f; its accuracy against Monte Carlo is in the
tests. Each cubature point moves one coordinate of m, so the class probabilities at all 2K points
are read off one grid (:func:`_cubature_probabilities`): the Gaussian CDFs of the unmoved
coordinates are evaluated once, not at every point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, logsumexp

from probprop.likelihoods.base import Likelihood
from probprop.moments.softmax import cubature_points, diagonal_root, entropy

#: Nodes of the trapezoid rule for the multinomial probit's Z, over x in [-RANGE, RANGE].
N_NODES = 96
_RANGE = 12.0
_SHIFT = 3.0
#: Newton steps for the mode of the integrand (log-concave; started at 0).
N_NEWTON = 8
#: Gauss-Hermite nodes over f of the binary probit's probability variance and expected entropy.
N_NODES_BINARY = 48

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _hermite(n: int):
    x, w = np.polynomial.hermite.hermgauss(n)
    return x, np.log(w) + x * x


def _grid(n: int = N_NODES):
    x = np.linspace(-_RANGE, _RANGE, n)  # NumPy: constants of the traced programs, float64 there
    return x, float(x[1] - x[0])


_GRID = _grid()


def _inverse_mills(z):
    """phi(z) / Phi(z), stable in both tails."""
    return jnp.exp(-0.5 * z * z - _LOG_SQRT_2PI - log_ndtr(z))


@dataclass(frozen=True)
class Probit(Likelihood):
    """Two classes, one output f: p(y = 1 | f) = Phi(f); y is 0 or 1 (see the module docstring)."""

    n_outputs = 1

    @property
    def n_classes(self) -> int:
        return 2

    def log_z(self, y, mean, var, params=()):
        sign = 2.0 * y - 1.0
        return log_ndtr(sign * mean / jnp.sqrt(1.0 + var))

    def adf_output(self, params, y, mean, var, weight, keep):
        """Closed form: with z = s m / sqrt(1 + v) and r = phi(z) / Phi(z),
        d log Z / dm = s r / sqrt(1 + v) and d log Z / dv = -r z / (2 (1 + v))."""
        f64 = jnp.float64
        mean, var = jnp.asarray(mean, f64), jnp.asarray(var, f64)
        scale = jnp.sqrt(1.0 + var)
        sign = 2.0 * y - 1.0
        z = sign * mean / scale
        r = _inverse_mills(z)
        return weight * sign * r / scale, weight * -0.5 * r * z / (1.0 + var), params, jnp.zeros((), f64)

    def probabilities(self, mean, var):
        """(n, 2): P(y = 0), P(y = 1) for outputs of shape (n,)."""
        p1 = jnp.exp(log_ndtr(mean / jnp.sqrt(1.0 + var)))
        return jnp.stack([1.0 - p1, p1], axis=-1)

    def probability_moments(self, mean, var):
        """Mean probabilities (n, 2), their variance under f (n, 2) and E_f H[p(. | f)] (n,),
        by Gauss-Hermite over f ~ N(mean, var)."""
        x, logw = _hermite(N_NODES_BINARY)
        w = jnp.exp(logw - x * x) / math.sqrt(math.pi)
        f = mean[..., None] + jnp.sqrt(2.0 * var)[..., None] * x
        p1 = jnp.exp(log_ndtr(f))
        p0 = jnp.exp(log_ndtr(-f))
        probs = self.probabilities(mean, var)
        second = jnp.sum(w * p1 * p1, axis=-1)
        variance = jnp.maximum(second - probs[..., 1] ** 2, 0.0)
        expected_entropy = jnp.sum(w * entropy(jnp.stack([p0, p1], axis=-1)), axis=-1)
        return probs, jnp.stack([variance, variance], axis=-1), expected_entropy


@dataclass(frozen=True)
class MultinomialProbit(Likelihood):
    """K classes, K outputs: y = argmax_k (f_k + e_k), e ~ N(0, I); y is the class index 0..K-1
    (see the module docstring for log Z and why this likelihood)."""

    n_classes: int = 3

    def __post_init__(self):
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, (int, np.integer)) or self.n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {self.n_classes!r}")

    @property
    def n_outputs(self) -> int:
        return int(self.n_classes)

    def log_z(self, y, mean, var, params=()):
        """log P(y | m, v) for one point: ``mean``/``var`` of shape (K,), y a class index."""
        return _log_class_probability(jnp.asarray(y).astype(jnp.int32), mean, var)

    def probabilities(self, mean, var):
        """(..., K) class probabilities for output moments of shape (..., K), rows summing to 1
        (:func:`_probabilities_shared`)."""
        return _probabilities_shared(mean, var)

    def exact_probabilities(self, mean, var):
        """The same by the per-class quadrature of log Z (K times the cost; the reference)."""
        k = self.n_outputs
        flat_m, flat_v = mean.reshape(-1, k), var.reshape(-1, k)
        logp = jax.vmap(lambda m, v: jax.vmap(lambda c: _log_class_probability(c, m, v))(jnp.arange(k)))(flat_m, flat_v)
        logp = logp - logsumexp(logp, axis=-1, keepdims=True)
        return jnp.exp(logp).reshape(mean.shape)

    def probability_moments(self, mean, var):
        """Mean probabilities (n, K), their variance under f (n, K) and E_f H[p(. | f)] (n,); the
        last two by the spherical cubature rule over f (see the module docstring)."""
        probs = self.probabilities(mean, var)
        at = _cubature_probabilities(mean, var)  # p(. | f) at each cubature point, (n, 2K, K)
        second = jnp.mean(at * at, axis=1)
        first = jnp.mean(at, axis=1)
        variance = jnp.maximum(second - first * first, 0.0)
        expected_entropy = jnp.mean(entropy(at), axis=1)
        return probs, variance, expected_entropy


#: Nodes of the shared grid of :func:`_probabilities_shared`, and for outputs without variance.
N_SHARED = 160
N_GIVEN = 48
#: :func:`_cubature_probabilities`: nodes of the grid shared by the 2K cubature points, and the
#: widest step it may take (else the block goes point by point on grids of N_GIVEN nodes).
N_CUBATURE = 128
CUBATURE_STEP = 0.4


def _probabilities_shared(mean, var, n_nodes: int = N_SHARED):
    """All K class probabilities P(argmax(g) = k), g ~ N(mean, diag(1 + var)), shape (..., K), on
    one grid for every class (what prediction needs; training's log Z uses the per-class
    quadrature of :func:`_log_class_probability`, whose accuracy does not depend on the spread):

        p_k = integral N(t | m_k, s_k^2) prod_{j != k} Phi((t - m_j) / s_j) dt,   s = sqrt(1 + v),

    by the trapezoid rule on :data:`N_SHARED` nodes over [max(m - 9 s), max(m + 9 s)], outside which
    every integrand is below 1e-18 of its peak. Every feature of the integrands is at least 1 wide
    (s >= 1), so while that range is at most N_SHARED (outputs that differ by less than ~140, or
    variances below ~50) the error is below about 1e-8 (tested against the per-class quadrature);
    it costs K times less (the uncertainty scores' 2K cubature points share one grid in turn:
    :func:`_cubature_probabilities`)."""
    s = jnp.sqrt(1.0 + var)
    lo = jnp.max(mean - 9.0 * s, axis=-1, keepdims=True)
    hi = jnp.max(mean + 9.0 * s, axis=-1, keepdims=True)
    frac = np.linspace(0.0, 1.0, n_nodes)
    t = lo + (hi - lo) * frac  # (..., n)
    z = (t[..., :, None] - mean[..., None, :]) / s[..., None, :]  # (..., n, K)
    log_cdf = log_ndtr(z)
    log_terms = jnp.sum(log_cdf, axis=-1, keepdims=True) - log_cdf - 0.5 * z * z - jnp.log(s)[..., None, :]
    p = jnp.exp(logsumexp(log_terms, axis=-2))  # the step and 1/sqrt(2 pi) cancel in the normalisation
    return p / jnp.sum(p, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Softmax(Likelihood):
    """K classes, K outputs read through a softmax: the point-estimate networks' likelihood (MAP),
    whose outputs carry no variance (``var`` is ignored)."""

    n_classes: int = 2

    @property
    def n_outputs(self) -> int:
        return int(self.n_classes)

    def probabilities(self, mean, var):
        return jax.nn.softmax(mean, axis=-1)

    def probability_moments(self, mean, var):
        """Probabilities, zero variance, and their own entropy as the expected one (a point
        estimate has no epistemic part)."""
        probs = self.probabilities(mean, var)
        return probs, jnp.zeros_like(probs), entropy(probs)


def softmax_nll(logits, y):
    """-log softmax(logits)[y] per row: the cross-entropy of class indices ``y`` (n,) (floats or
    ints) under logits (n, K); what the softmax networks (MAP, deep ensembles, MC dropout) train on."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, jnp.asarray(y).astype(jnp.int32)[:, None], axis=-1)[:, 0]


def log_mean_probability_of(logits, y):
    """log (1/S) sum_s softmax(logits[s])[n, y_n] per row: the log probability that the average of
    S networks' class probabilities (logits of shape (S, n, K)) gives the true class indices ``y``
    (n,), by logsumexp (no underflow for a confidently wrong row); the held-out score of the
    classifiers' searches."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    index = jnp.broadcast_to(jnp.asarray(y).astype(jnp.int32)[None, :, None], (log_p.shape[0], log_p.shape[1], 1))
    return logsumexp(jnp.take_along_axis(log_p, index, axis=-1)[..., 0], axis=0) - jnp.log(log_p.shape[0])


def _log_class_probability(y, mean, var):
    """log P(argmax(g) = y), g ~ N(mean, diag(1 + var)), by the trapezoid rule in a stretched
    variable centred on the integrand's mode (see the module docstring)."""
    k = mean.shape[-1]
    scale = jnp.sqrt(1.0 + var)
    others = jnp.arange(k) != y
    a = (mean[y] - mean) / scale
    b = scale[y] / scale

    def log_integrand(u):  # log phi(u) + sum_{k != y} log Phi(a_k + b_k u)
        z = a + b * u[..., None]
        return -0.5 * u * u - _LOG_SQRT_2PI + jnp.sum(jnp.where(others, log_ndtr(z), 0.0), axis=-1)

    # the mode and curvature place the nodes; Z does not depend on them (held fixed)
    a_c, b_c = jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)

    def curvature(u):
        z = a_c + b_c * u
        lam = jnp.where(others, _inverse_mills(z), 0.0)
        return -u + jnp.sum(b_c * lam), 1.0 + jnp.sum(b_c * b_c * lam * (z + lam))

    def newton(u, _):
        grad, minus_hess = curvature(u)
        return u + grad / minus_hess, None

    mode, _ = jax.lax.scan(newton, jnp.zeros((), mean.dtype), None, length=N_NEWTON)
    sigma = 1.0 / jnp.sqrt(curvature(mode)[1])  # <= 1
    # u(x) = mode + sigma x + (1 - sigma) softplus(x - SHIFT): the mode's width on the left (where
    # the integrand only narrows) and near the mode, widening to the unit width of phi's tail
    x, step = _GRID
    u = mode + sigma * x + (1.0 - sigma) * jax.nn.softplus(x - _SHIFT)
    du = sigma + (1.0 - sigma) * jax.nn.sigmoid(x - _SHIFT)
    return logsumexp(log_integrand(u) + jnp.log(du)) + math.log(step)


def _cubature_probabilities(mean, var):
    """p(. | f) at the 2K spherical-cubature points f of N(mean, diag var), (..., 2K, K), in the
    order of :func:`probprop.moments.softmax.cubature_points` (m + sqrt(K v_k) e_k, then minus),
    on one grid for all of them. Point i moves coordinate k = i mod K to f_k, so with
    A_j(t) = log Phi(t - m_j) and L = sum_j A_j, the integrand of class c at point i is

        phi(t - f_c) / Phi(t - f_c) * exp(L(t) - A_k(t) + log Phi(t - f_k))

    (f_c = m_c but for c = k): K + 2K CDFs per node instead of 2K^2, and the sums over the nodes
    one matrix product. The grid spans every point's own range (:func:`_probabilities_shared`:
    max(f) +- 9) in N_CUBATURE nodes; where that makes a step wider than CUBATURE_STEP (the points'
    largest coordinates spread over more than ~33 units: with ten classes, a variance above ~100
    beside a leading class) the block is read point by point
    instead (:func:`_probabilities_shared` with no variance on each point's own grid of N_GIVEN
    nodes, a step of 0.38, within 1e-12 of 160; a ``lax.cond``). Measured against 600 nodes per
    point over random outputs (K = 10, means N(0, 1-10), variances up to 200): steps up to 0.4
    within 2e-11 (0.5: 1e-8, 0.6: 7e-7). Under ``vmap`` the ``lax.cond`` becomes a select: both
    ways run (correct, not faster; no caller maps it)."""
    eye = np.eye(mean.shape[-1], dtype=bool)
    pick = np.concatenate([eye, eye])  # (2K, K): the coordinate each point moves
    points = cubature_points(mean, diagonal_root(var))  # (..., 2K, K)
    moved = jnp.sum(jnp.where(pick, points, 0.0), axis=-1)  # point i's f_k, (..., 2K)
    rest = jnp.max(jnp.where(eye, -jnp.inf, mean[..., None, :]), axis=-1)  # max_{j != k} m_j, (..., K)
    tops = jnp.maximum(jnp.concatenate([rest, rest], axis=-1), moved)  # each point's largest coordinate
    lo = jnp.min(tops, axis=-1, keepdims=True) - 9.0
    hi = jnp.max(tops, axis=-1, keepdims=True) + 9.0

    def shared(_):
        t = lo + (hi - lo) * np.linspace(0.0, 1.0, N_CUBATURE)  # (..., n)
        z = t[..., :, None] - mean[..., None, :]  # (..., n, K)
        log_cdf = log_ndtr(z)
        z_moved = t[..., :, None] - moved[..., None, :]  # (..., n, 2K)
        log_cdf_moved = log_ndtr(z_moved)
        others = jnp.sum(log_cdf, axis=-1, keepdims=True) - jnp.concatenate([log_cdf, log_cdf], axis=-1)
        product = jnp.exp(others + log_cdf_moved)  # prod_j Phi(t - f_j) at each point, (..., n, 2K)
        # phi / Phi of each class (the step and 1/sqrt(2 pi) cancel in the normalisation)
        ratio = jnp.exp(-0.5 * z * z - log_cdf)
        ratio_moved = jnp.exp(-0.5 * z_moved * z_moved - log_cdf_moved)
        p = jnp.einsum("...ti,...tc->...ic", product, ratio)  # (..., 2K, K)
        own = jnp.sum(product * ratio_moved, axis=-2)  # each point's moved class
        p = jnp.where(pick, own[..., :, None], p)
        return p / jnp.sum(p, axis=-1, keepdims=True)

    fits = jnp.all(hi - lo <= (N_CUBATURE - 1) * CUBATURE_STEP)
    return jax.lax.cond(fits, shared, lambda _: _probabilities_shared(points, jnp.zeros_like(points), N_GIVEN), None)

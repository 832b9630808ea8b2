"""Class probabilities of Gaussian logits through a softmax, without sampling (the link
approximations of a Laplace classifier's predictive; laplace-torch's ``link_approx``).

The logits of K classes are f ~ N(m, Sigma) (per row: m (K,), Sigma (K, K)); the predictive is
E[softmax(f)], which has no closed form. Each function here maps (m, Sigma) to the three summaries
a classifier reports (:class:`probprop.distributions.ClassPrediction`): the probabilities (rows
sum to one), each probability's variance under f, and the expected entropy E_f H[softmax(f)]
(the entropy of the probabilities minus it is the mutual information).

* **probit** (:func:`probit_summaries`; MacKay 1992, multi-class as laplace-torch's
  ``link_approx="probit"``): softmax(kappa * m) with kappa_k = (1 + (pi / 8) Sigma_kk)^(-1/2),
  each logit's mean shrunk by its own variance (covariances ignored), but applied to the logits
  with their common shift removed (:func:`drop_shift`: Pf with P = I - 1 1^T / K, an exact step,
  since softmax(f) = softmax(Pf)). laplace-torch applies it to f itself, where the variance of
  a shift of every logit, which a last-layer Laplace posterior keeps at its prior's size (the
  likelihood is flat along it), shrinks every logit and inflates the entropy; here it changes
  nothing, as it changes nothing in E[softmax(f)]. It gives only a mean; the variance and the
  mutual information are the softmax's under the third-degree spherical cubature rule over the same
  Gaussian (:func:`cubature_points`: 2K equally weighted points m +- sqrt(K) r_j, r_j the columns
  of a square root of the covariance, sqrt(w_j) u_j from its eigenvectors; exact for the mean and
  covariance of f, correlations included). The mutual information is the cubature's own, the
  entropy of its mean less its expected entropy (its Jensen gap), and the expected entropy
  reported is the probit probabilities' entropy less that (at least zero), so that entropy minus
  expected entropy is the cubature's mutual information, capped at the probit entropy. Taking
  the cubature's expected entropy as it is would subtract one approximation's expected entropy
  from another's entropy: with two classes the probit entropy is below the cubature's expected
  entropy at every input and the mutual information came out zero (MNIST -> Fashion-MNIST AUROC
  0.755 by it, before this was mended).
* **Laplace bridge** (:func:`laplace_bridge`; Hobbhahn, Kristiadi & Hennig, UAI 2022): the
  Dirichlet whose Laplace approximation in the softmax basis is the Gaussian. First the Gaussian
  is conditioned on sum_k f_k = 0 (:func:`sum_zero`: the softmax basis has that constraint;
  softmax(f) does not change when a constant is added to every logit), then, from the diagonal v,

      alpha_k = (1 - 2/K + e^{m_k} sum_l e^{-m_l} / K^2) / v_k,

  and the predictive is Dir(alpha): probabilities alpha / alpha_0, variances
  alpha_k (alpha_0 - alpha_k) / (alpha_0^2 (alpha_0 + 1)), expected entropy
  psi(alpha_0 + 1) - sum_k (alpha_k / alpha_0) psi(alpha_k + 1) (:func:`dirichlet_summaries`),
  all exact for the Dirichlet. ``normalise=True`` (laplace-torch's ``"bridge_norm"``) first
  rescales the Gaussian by c = mean_k(v_k) / sqrt(K / 2): m <- m / sqrt(c), v <- v / c (the
  mean variance becomes sqrt(K / 2)).

The bridge is computed in the log domain (log alpha = logaddexp(log(1 - 2/K), t_k) - log v_k with
t_k = m_k + logsumexp(-m) - 2 log K), so logits far apart do not overflow; a Dirichlet whose
largest log alpha exceeds :data:`LOG_ALPHA_LIMIT` is scaled down to it as a whole (its mean kept;
that concentrated it is a point for every summary), and log alpha is at least -LOG_ALPHA_LIMIT.
A variance is at least 1e-12 of the row's mean variance (a conditioned variance that rounds to
zero would otherwise take all the probability). Everything assumes float64 (the learners call
these functions with 64-bit types on).

What the tests (``probprop/moments/tests/test_softmax.py``) check: the conditioning against
rejection sampling, the Dirichlet summaries against Monte Carlo, the bridge against laplace-torch's
formula and against its inverse (the Dirichlet's own Laplace approximation maps back to the same
alpha), the probit against its formula (and Monte Carlo of E[softmax(f)] for independent logits of
small variance, within 0.01) and its invariance to a common shift's variance, its mutual information
the cubature's and near Monte Carlo's (two, three and six classes), capped at its entropy. The bridge's mean is
a different distribution's (it does not reduce to softmax(m) as Sigma -> 0); its appeal is its
spread, a full Dirichlet per row. docs/guide/classification.md shows what each gives on MNIST.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, logsumexp

from probprop.moments.sigmoid import PROBIT_SCALE

#: The link approximations a Laplace classifier takes: draws of the last layer ("mc"), or one of
#: the closed forms here.
LINKS = ("mc", "probit", "bridge", "bridge_norm")
#: log alpha is kept within +-this (a Dirichlet beyond e^600 is a point mass for every summary).
LOG_ALPHA_LIMIT = 600.0
#: A variance is raised to at least this share of its row's mean variance (and to 1e-300).
_RELATIVE_VAR_FLOOR = 1e-12


def entropy(p, axis=-1):
    """Entropy in nats of probabilities ``p`` along ``axis`` (0 log 0 = 0)."""
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=axis)


def cubature_points(mean, root):
    """The third-degree spherical cubature rule (Arasaratnam & Haykin 2009) for N(mean, R R^T),
    ``root`` R (..., K, K): 2K equally weighted points mean +- sqrt(K) R[..., :, j], shape
    (..., 2K, K). For a diagonal covariance R = diag(sqrt(var)) (:func:`diagonal_root`)."""
    k = mean.shape[-1]
    columns = math.sqrt(k) * jnp.swapaxes(root, -1, -2)  # row j = column j of R
    return jnp.concatenate([mean[..., None, :] + columns, mean[..., None, :] - columns], axis=-2)


def diagonal_root(var):
    """diag(sqrt(var)) (..., K, K): the square root of a diagonal covariance."""
    return jnp.sqrt(var)[..., None, :] * jnp.eye(var.shape[-1], dtype=var.dtype)


def symmetric_root(cov):
    """U diag(sqrt(max(w, 0))) (..., K, K) from cov = U diag(w) U^T: a square root of a (positive
    semi-definite) covariance."""
    w, u = jnp.linalg.eigh(cov)
    return u * jnp.sqrt(jnp.maximum(w, 0.0))[..., None, :]


def probit_probabilities(mean, var):
    """softmax(kappa * mean), kappa = (1 + (pi / 8) var)^(-1/2) per logit (``var``: the logits'
    variances, shape of ``mean``)."""
    kappa = jax.lax.rsqrt(1.0 + PROBIT_SCALE**2 * var)
    return jax.nn.softmax(kappa * mean, axis=-1)


def drop_shift(mean, cov):
    """Pf for f ~ N(mean, cov), P = I - 1 1^T / K: the logits less their average (softmax(Pf) =
    softmax(f)); returns P mean and P cov P."""
    mean = mean - jnp.mean(mean, axis=-1, keepdims=True)
    cov = cov - jnp.mean(cov, axis=-1, keepdims=True)
    cov = cov - jnp.mean(cov, axis=-2, keepdims=True)
    return mean, cov


def probit_summaries(mean, cov):
    """(probabilities, their variances, expected entropy) for logits N(mean, cov) (..., K) /
    (..., K, K), their common shift dropped (:func:`drop_shift`): the probit probabilities (from
    the diagonal); the variance of softmax(f) and its mutual information by the cubature rule over
    the full covariance, the expected entropy being the probit entropy less that mutual
    information (module docstring)."""
    mean, cov = drop_shift(mean, cov)
    at = jax.nn.softmax(cubature_points(mean, symmetric_root(cov)), axis=-1)  # (..., 2K, K)
    first = jnp.mean(at, axis=-2)
    variance = jnp.maximum(jnp.mean(at * at, axis=-2) - first * first, 0.0)
    probs = probit_probabilities(mean, jnp.diagonal(cov, axis1=-2, axis2=-1))
    mutual = jnp.maximum(entropy(first) - jnp.mean(entropy(at), axis=-1), 0.0)  # the cubature's Jensen gap
    total = entropy(probs)
    return probs, variance, total - jnp.minimum(mutual, total)


def sum_zero(mean, cov):
    """N(mean, cov) (..., K) / (..., K, K) conditioned on sum_k f_k = 0: mean - cov 1 (1^T mean) /
    (1^T cov 1) and cov - cov 1 1^T cov / (1^T cov 1). Where 1^T cov 1 is below 1e-12 of its
    largest possible value K trace(cov) (the sum already has no variance, as in a Gaussian on the
    sum-zero plane) the Gaussian is returned as it is: dividing by rounding errors would not be
    conditioning."""
    row = jnp.sum(cov, axis=-1)  # cov 1
    total = jnp.sum(row, axis=-1)  # 1^T cov 1
    bound = mean.shape[-1] * jnp.trace(cov, axis1=-2, axis2=-1)  # 1^T cov 1 <= K trace(cov)
    total = jnp.where(total > 1e-12 * bound, total, jnp.inf)[..., None]
    mean = mean - row * jnp.sum(mean, axis=-1, keepdims=True) / total
    cov = cov - row[..., :, None] * (row / total)[..., None, :]  # no underflow of row x row
    return mean, cov


def laplace_bridge(mean, cov, normalise: bool = False):
    """log alpha (..., K) of the Dirichlet the Laplace bridge maps N(mean, cov) to (module
    docstring): the sum-zero conditioning, the optional normalisation, the bridge."""
    k = mean.shape[-1]
    mean, cov = sum_zero(mean, cov)
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)
    var = jnp.maximum(var, jnp.maximum(_RELATIVE_VAR_FLOOR * jnp.mean(jnp.abs(var), axis=-1, keepdims=True), 1e-300))
    if normalise:
        c = jnp.mean(var, axis=-1, keepdims=True) / math.sqrt(k / 2.0)
        mean, var = mean / jnp.sqrt(c), var / c
    t = mean + logsumexp(-mean, axis=-1, keepdims=True) - 2.0 * math.log(k)
    if k > 2:
        log_numerator = jnp.logaddexp(math.log(1.0 - 2.0 / k), t)
    else:  # 1 - 2/K = 0
        log_numerator = t
    log_alpha = log_numerator - jnp.log(var)
    # a Dirichlet beyond e^LIMIT is scaled down as a whole (its mean kept), the tiny entries clipped
    excess = jnp.maximum(jnp.max(log_alpha, axis=-1, keepdims=True) - LOG_ALPHA_LIMIT, 0.0)
    return jnp.maximum(log_alpha - excess, -LOG_ALPHA_LIMIT)


def dirichlet_summaries(log_alpha):
    """(probabilities, their variances, expected entropy) of Dir(alpha), from log alpha (..., K):
    alpha / alpha_0, alpha_k (alpha_0 - alpha_k) / (alpha_0^2 (alpha_0 + 1)), and
    psi(alpha_0 + 1) - sum_k (alpha_k / alpha_0) psi(alpha_k + 1)."""
    probs = jax.nn.softmax(log_alpha, axis=-1)
    alpha = jnp.exp(log_alpha)
    alpha0 = jnp.exp(logsumexp(log_alpha, axis=-1, keepdims=True))
    variance = probs * (1.0 - probs) / (alpha0 + 1.0)
    expected = digamma(alpha0[..., 0] + 1.0) - jnp.sum(probs * digamma(alpha + 1.0), axis=-1)
    return probs, variance, jnp.maximum(expected, 0.0)


def link_summaries(link: str, mean, cov):
    """(probabilities, variances, expected entropy) of logits N(mean, cov) under the closed-form
    ``link`` ("probit", "bridge" or "bridge_norm")."""
    if link == "probit":
        return probit_summaries(mean, cov)
    if link in ("bridge", "bridge_norm"):
        return dirichlet_summaries(laplace_bridge(mean, cov, normalise=link == "bridge_norm"))
    raise ValueError(f"link must be one of {list(LINKS[1:])} for a closed form, got {link!r}")

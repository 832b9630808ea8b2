"""The closed-form readings of Gaussian logits through a softmax (probprop.moments.softmax): the
conditioning on a zero sum and the Dirichlet summaries against Monte Carlo, the Laplace bridge
against its inverse (the Dirichlet's own Laplace approximation) and against laplace-torch's
formula written out in NumPy, the probit against its formula and Monte Carlo."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import digamma

from probprop.learners.base import float64
from probprop.moments import softmax


def _run(fn, *args, **kwargs):
    return jax.tree_util.tree_map(np.asarray, float64(fn)(*args, **kwargs))


def _random_gaussian(k, rng, scale=1.0):
    mean = rng.normal(0.0, 2.0, k)
    a = rng.normal(0.0, scale, (k, k))
    return mean, a @ a.T + 0.1 * scale**2 * np.eye(k)


def _softmax_np(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _entropy_np(p):
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def test_sum_zero_is_the_conditional_gaussian_by_rejection():
    """Draws of f whose sum lies within a narrow band around zero have the mean and covariance
    sum_zero states (an oracle that does not use the conditioning formula)."""
    rng = np.random.default_rng(1)
    mean, cov = _random_gaussian(3, rng)
    f = rng.multivariate_normal(mean, cov, size=3_000_000)
    total = f.sum(axis=1)
    kept = f[np.abs(total) < 0.01 * np.sqrt(cov.sum())]
    assert len(kept) > 10_000
    m, c = _run(softmax.sum_zero, mean, cov)
    se = np.sqrt(np.diag(c) / len(kept))
    np.testing.assert_allclose(kept.mean(axis=0), m, atol=5 * se.max() + 1e-3)
    np.testing.assert_allclose(np.cov(kept.T), c, atol=0.03 * np.abs(c).max())
    np.testing.assert_allclose(m.sum(), 0.0, atol=1e-12)
    np.testing.assert_allclose(c.sum(axis=1), 0.0, atol=1e-12 * np.abs(c).max())


def _dirichlet_laplace(alpha):
    """The Laplace approximation of Dir(alpha) in the softmax basis: the mode log alpha - mean,
    and the pseudo-inverse of the Hessian of -sum alpha_k log softmax(z)_k on the sum-zero plane."""
    k = len(alpha)
    hessian = np.diag(alpha) - np.outer(alpha, alpha) / alpha.sum()
    p = np.eye(k) - np.ones((k, k)) / k
    return np.log(alpha) - np.log(alpha).mean(), p @ np.linalg.pinv(p @ hessian @ p) @ p


@pytest.mark.parametrize("k", [2, 3, 10])
def test_the_bridge_inverts_the_dirichlets_laplace_approximation(k):
    """Hobbhahn et al.'s construction: the bridge maps the Laplace approximation of Dir(alpha)
    back to alpha exactly."""
    alpha = np.random.default_rng(k).gamma(2.0, 2.0, k) + 0.3
    mean, cov = _dirichlet_laplace(alpha)
    log_alpha = _run(softmax.laplace_bridge, mean[None], cov[None])[0]
    np.testing.assert_allclose(np.exp(log_alpha), alpha, rtol=1e-9)


def _bridge_reference(mean, cov, normalise):
    """laplace-torch's `link_approx="bridge"` / `"bridge_norm"` (its predictive code, written in
    NumPy for one row): the zero-mean correction, the optional normalisation, alpha."""
    mean, cov = mean.copy(), cov.copy()
    mean -= cov.sum(-1) * mean.sum() / cov.sum()
    cov -= np.outer(cov.sum(-1), cov.sum(-2)) / cov.sum()
    k = len(mean)
    var = np.diag(cov).copy()
    if normalise:
        c = var.mean() / np.sqrt(k / 2)
        mean /= np.sqrt(c)
        var /= c
    return (1 - 2 / k + np.exp(mean) / k**2 * np.exp(-mean).sum()) / var


@pytest.mark.parametrize("normalise", [False, True])
@pytest.mark.parametrize("k", [2, 4, 10])
def test_the_bridge_is_laplace_torchs(k, normalise):
    rng = np.random.default_rng(10 + k)
    for _ in range(5):
        mean, cov = _random_gaussian(k, rng, scale=rng.uniform(0.2, 3.0))
        expected = _bridge_reference(mean, cov, normalise)
        log_alpha = _run(softmax.laplace_bridge, mean[None], cov[None], normalise=normalise)[0]
        np.testing.assert_allclose(np.exp(log_alpha), expected, rtol=1e-9)


def test_the_bridge_stays_finite_for_far_apart_logits():
    """Logits hundreds apart would overflow e^m sum e^-m; the log domain keeps every summary finite."""
    mean = np.array([[800.0, -800.0, 0.0], [5.0, 4.0, -3.0]])
    cov = np.stack([np.eye(3) * 1e-8, np.eye(3) * 50.0])
    for link in ("bridge", "bridge_norm", "probit"):
        probs, var, expected = _run(softmax.link_summaries, link, mean, cov)
        assert np.all(np.isfinite(probs)) and np.all(np.isfinite(var)) and np.all(np.isfinite(expected)), link
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
        assert probs[0].argmax() == 0 and probs[0, 0] > 0.999


def test_a_dirichlet_too_concentrated_is_scaled_down_with_its_mean_kept():
    """Variances scaled by 1e-280 put log alpha far above the limit: the Dirichlet is scaled down
    as a whole, so its mean is the unscaled one's (alpha is proportional to 1 / variance)."""
    rng = np.random.default_rng(3)
    mean, cov = _random_gaussian(4, rng)
    log_alpha = _run(softmax.laplace_bridge, mean[None], cov[None])
    tiny = _run(softmax.laplace_bridge, mean[None], 1e-280 * cov[None])
    assert tiny.max() == softmax.LOG_ALPHA_LIMIT and log_alpha.max() < 100
    np.testing.assert_allclose(_run(softmax.dirichlet_summaries, tiny)[0], _run(softmax.dirichlet_summaries, log_alpha)[0],
                               rtol=1e-9)


@pytest.mark.parametrize("alpha", [[0.5, 1.0, 3.0], [20.0, 1.0, 2.0, 0.2], [2.0, 2.0]])
def test_dirichlet_summaries_against_monte_carlo(alpha):
    alpha = np.asarray(alpha)
    p = np.random.default_rng(len(alpha)).dirichlet(alpha, size=400_000)
    probs, var, expected = _run(softmax.dirichlet_summaries, np.log(alpha)[None])
    np.testing.assert_allclose(probs[0], p.mean(axis=0), atol=3e-3)
    np.testing.assert_allclose(var[0], p.var(axis=0), rtol=0.02, atol=1e-5)
    np.testing.assert_allclose(expected[0], _entropy_np(p).mean(), rtol=5e-3)
    # and the closed forms themselves
    a0 = alpha.sum()
    np.testing.assert_allclose(expected[0], digamma(a0 + 1) - np.sum(alpha / a0 * digamma(alpha + 1)), rtol=1e-12)


def test_probit_is_its_formula_and_close_to_monte_carlo_for_small_variances():
    k = 6
    rng = np.random.default_rng(4)
    mean, cov = rng.normal(0.0, 2.0, k), np.diag(rng.uniform(0.05, 0.5, k))
    probs, var, expected = _run(softmax.probit_summaries, mean[None], cov[None])
    p = np.eye(k) - np.ones((k, k)) / k  # the common shift dropped first
    kappa = 1 / np.sqrt(1 + np.pi / 8 * np.diag(p @ cov @ p))
    np.testing.assert_allclose(probs[0], _softmax_np(kappa * (p @ mean)), rtol=1e-12)
    f = rng.multivariate_normal(mean, cov, size=400_000)
    s = _softmax_np(f)
    # independent logits of small variance: the probit is close
    np.testing.assert_allclose(probs[0], s.mean(axis=0), atol=0.01)
    # the cubature rule over the full covariance: exact for its mean and covariance, close for the softmax's
    np.testing.assert_allclose(var[0], s.var(axis=0), rtol=0.25, atol=2e-4)
    np.testing.assert_allclose(expected[0], _entropy_np(s).mean(), rtol=0.02)


def test_the_probit_ignores_a_common_shifts_variance_as_the_softmax_does():
    """Adding c 1 1^T to the covariance (a shift of every logit, e.g. a last-layer Laplace
    posterior's prior-sized direction) changes nothing in E[softmax(f)]; it changes nothing in the
    probit summaries either, where laplace-torch's probit (on f itself) shrinks every logit."""
    rng = np.random.default_rng(6)
    mean, cov = _random_gaussian(4, rng, scale=0.5)
    base = _run(softmax.probit_summaries, mean[None], cov[None])
    shifted = _run(softmax.probit_summaries, mean[None], (cov + 25.0 * np.ones((4, 4)))[None])
    for a, b in zip(base, shifted, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    naive = _softmax_np(mean / np.sqrt(1 + np.pi / 8 * np.diag(cov + 25.0)))
    f = rng.multivariate_normal(mean, cov + 25.0 * np.ones((4, 4)), size=200_000)
    truth = _softmax_np(f).mean(axis=0)
    assert np.abs(base[0][0] - truth).max() < 0.5 * np.abs(naive - truth).max()


def test_cubature_points_match_the_covariance():
    """The 2K points have the Gaussian's mean and covariance exactly, for a full and a diagonal root."""
    mean, cov = _random_gaussian(5, np.random.default_rng(7))
    for root in (_run(softmax.symmetric_root, cov), np.linalg.cholesky(cov)):
        points = _run(softmax.cubature_points, mean, root)
        assert points.shape == (10, 5)
        np.testing.assert_allclose(points.mean(axis=0), mean, atol=1e-12)
        np.testing.assert_allclose(np.cov(points.T, bias=True), cov, rtol=1e-10, atol=1e-12)
    var = np.diag(cov)
    points = _run(softmax.cubature_points, mean, _run(softmax.diagonal_root, var))
    np.testing.assert_allclose(np.cov(points.T, bias=True), np.diag(var), atol=1e-12)


def test_an_unknown_link_is_refused():
    with pytest.raises(ValueError, match="link must be one of"):
        softmax.link_summaries("mc", np.zeros((1, 3)), np.eye(3)[None])


def test_probit_scores_use_the_correlations():
    """Correlated logits: the cubature over the full covariance gives the softmax's variances and
    mutual information near Monte Carlo; one that dropped the correlations would not give the
    variances."""
    k = 5
    rng = np.random.default_rng(5)
    shared = rng.normal(0.0, 1.0, k)
    cov = 0.8 * np.outer(shared, shared) / k + 0.02 * np.eye(k)  # one strong common direction
    mean = rng.normal(0.0, 1.5, k)
    probs, var, expected = _run(softmax.probit_summaries, mean[None], cov[None])
    s = _softmax_np(rng.multivariate_normal(mean, cov, size=400_000))
    np.testing.assert_allclose(var[0], s.var(axis=0), rtol=0.3, atol=5e-4)
    np.testing.assert_allclose(expected[0], _entropy_np(s).mean(), rtol=0.03)
    truth = _entropy_np(s.mean(axis=0)) - _entropy_np(s).mean()
    np.testing.assert_allclose(_entropy_np(probs[0]) - expected[0], truth, rtol=0.1)
    _, var_diag, _ = _run(softmax.probit_summaries, mean[None], np.diag(np.diag(cov))[None])
    assert np.abs(var_diag[0] - s.var(axis=0)).max() > 3 * np.abs(var[0] - s.var(axis=0)).max()


@pytest.mark.parametrize("k", [2, 3, 6])
def test_probit_mutual_information_is_the_cubatures_and_near_monte_carlo(k):
    """entropy(probit probabilities) - expected entropy is the cubature's own Jensen gap,
    H(mean of the 2K softmaxes) - mean of their entropies, and near the Monte Carlo mutual
    information H(E softmax(f)) - E H(softmax(f)). With two classes it is positive (taking the
    cubature's expected entropy as it is, it came out zero: the probit entropy lies below it)."""
    rng = np.random.default_rng(20 + k)
    for scale in (0.3, 1.0):
        mean, cov = _random_gaussian(k, rng, scale=scale)
        mean = 0.5 * mean
        probs, _, expected = _run(softmax.probit_summaries, mean[None], cov[None])
        mutual = _entropy_np(probs[0]) - expected[0]
        p = np.eye(k) - np.ones((k, k)) / k
        points = _run(softmax.cubature_points, p @ mean, _run(softmax.symmetric_root, p @ cov @ p))
        at = _softmax_np(points)
        np.testing.assert_allclose(mutual, _entropy_np(at.mean(axis=0)) - _entropy_np(at).mean(), rtol=1e-9, atol=1e-12)
        s = _softmax_np(rng.multivariate_normal(mean, cov, size=400_000))
        truth = _entropy_np(s.mean(axis=0)) - _entropy_np(s).mean()
        assert truth > 1e-3 and mutual > 0
        np.testing.assert_allclose(mutual, truth, rtol=0.35)


def test_probit_mutual_information_is_capped_at_the_probit_entropy():
    """Logits whose spread puts the cubature's points far apart: its mutual information exceeds
    the probit probabilities' entropy; the expected entropy is then zero, never negative."""
    mean = np.array([[-14.645, -10.885, -6.326]])
    cov = np.array([[[31.82, -4.404, 14.137], [-4.404, 60.832, 22.767], [14.137, 22.767, 34.447]]])
    probs, _, expected = _run(softmax.probit_summaries, mean, cov)
    p = np.eye(3) - np.ones((3, 3)) / 3
    at = _softmax_np(_run(softmax.cubature_points, p @ mean[0], _run(softmax.symmetric_root, p @ cov[0] @ p)))
    assert _entropy_np(at.mean(axis=0)) - _entropy_np(at).mean() > _entropy_np(probs[0]) > 0  # the cap engages
    assert expected[0] == 0.0

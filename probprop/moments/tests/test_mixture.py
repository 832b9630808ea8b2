"""The mixture moments against pooled samples: an equally weighted mixture's moments are those of
all its members' samples pooled (equal counts, population statistics), exactly."""

import numpy as np
import pytest

from probprop.learners.base import float64
from probprop.metrics.classification import entropy
from probprop.moments.mixture import class_mixture, mixture_moments


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_mixture_equals_the_pooled_samples(seed):
    """Members whose weight posteriors are given by S draws each of logits: each member's mean
    probabilities, their variance and expected entropy, mixed, equal the same statistics of all
    M x S draws pooled."""
    rng = np.random.default_rng(seed)
    M, S, n, K = 3, 400, 5, 4
    logits = rng.normal(rng.normal(0, 2, (M, 1, n, K)), rng.uniform(0.2, 2.0, (M, 1, n, K)), (M, S, n, K))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)  # (M, S, n, K)
    members = p.mean(1), p.var(1), entropy(p, axis=-1).mean(1)
    mean, variance, expected = (np.asarray(a) for a in float64(class_mixture)(*members))
    pooled = p.reshape(M * S, n, K)
    np.testing.assert_allclose(mean, pooled.mean(0), rtol=0, atol=1e-14)
    np.testing.assert_allclose(variance, pooled.var(0), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(expected, entropy(pooled, axis=-1).mean(0), rtol=1e-12)
    # point-estimate members (no variance of their own): the deep ensemble's summaries
    from probprop.distributions import member_summaries

    points = p[:, 0]
    summaries = member_summaries(points)
    mixed = float64(class_mixture)(points, np.zeros_like(points), entropy(points, axis=-1))
    for a, b in zip(mixed, summaries, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-15)


def test_mixture_moments_equal_the_pooled_samples():
    rng = np.random.default_rng(3)
    M, S = 4, 300
    centres, spreads, noise = rng.normal(0, 3, (M, 1, 6)), rng.uniform(0.1, 2, (M, 1, 6)), rng.uniform(0.1, 1, (M, 6))
    draws = centres + spreads * rng.standard_normal((M, S, 6))
    mean, epistemic, noise_mixed = (np.asarray(a) for a in float64(mixture_moments)(draws.mean(1), noise, draws.var(1)))
    pooled = draws.reshape(M * S, 6)
    np.testing.assert_allclose(mean, pooled.mean(0), atol=1e-12)
    np.testing.assert_allclose(epistemic, pooled.var(0), rtol=1e-10)
    np.testing.assert_allclose(noise_mixed, noise.mean(0), rtol=1e-14)

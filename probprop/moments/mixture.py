"""Moments of an equally weighted mixture of Gaussians (ensembles of networks).

For members k = 1..K with predictive N(m_k, e_k + s_k) (e_k epistemic, s_k noise variance):

    mean      = (1/K) sum_k m_k
    epistemic = (1/K) sum_k e_k + (1/K) sum_k (m_k - mean)^2
    noise     = (1/K) sum_k s_k

so that epistemic + noise is the mixture's variance exactly (population variance over members).

For classifiers, :func:`class_mixture` mixes the members' class probabilities the same way: the
mean probabilities, each probability's variance under the mixture (the members' own variances
averaged plus their spread), and the average expected entropy.
"""

from __future__ import annotations

import jax.numpy as jnp


def mixture_moments(means, noise_vars, epistemic_vars=None):
    """``(mean, epistemic, noise)`` of the uniform mixture over axis 0 (see the module docstring);
    ``epistemic_vars=None``: point-estimate members (e_k = 0)."""
    mean = jnp.mean(means, axis=0)
    epistemic = jnp.mean((means - mean) ** 2, axis=0)  # = mean(m^2) - mean^2, without cancellation
    if epistemic_vars is not None:
        epistemic = jnp.mean(epistemic_vars, axis=0) + epistemic
    return mean, epistemic, jnp.mean(noise_vars, axis=0)


def class_mixture(probabilities, variances, expected_entropies):
    """``(probabilities, variances, expected_entropy)`` of the uniform mixture over axis 0 of
    members' class predictions: probabilities (M, n, K), each one's variance under that member's
    posterior (M, n, K) and its expected entropy E_w H[p(. | x, w)] (M, n). The mixture's
    probability is the members' mean; its variance the law of total variance (the members' mean
    variance plus the variance of their probabilities); its expected entropy the members' mean,
    so that the mutual information (entropy of the mean minus this) holds both the members'
    disagreement and each member's own weight uncertainty."""
    # mixture_moments' "noise" slot averages its argument: here the members' expected entropies
    return mixture_moments(probabilities, expected_entropies, variances)

"""What a likelihood gives the learners, and the defaults a new one inherits.

A likelihood is a small frozen (hashable) dataclass: it is part of a learner's spec, so one
compiled program serves each likelihood. The learners ask it for:

* PBP (per-point ADF): ``init_params(noise_variance)``, the likelihood's own parameters (a pytree
  of float64 scalars kept in the state's ``noise`` slot); ``adf_output(params, y, mean, var,
  weight, keep) -> (dlogZ/dmean, dlogZ/dvar, new params, refused)`` for the output's Gaussian
  moments, the derivatives multiplied by ``weight`` (0 for padding rows); ``noise_variance(params)``
  for the predictive noise. The default ``adf_output`` differentiates :meth:`Likelihood.log_z`
  with autodiff and keeps the parameters fixed, so a new likelihood for PBP needs only its
  ``log_z`` = log of the integral of p(y | f) N(f | mean, var) df.
* TAGI (layer-wise conditioning): ``tagi_deltas(z_mean, z_var, y, keep, noise_var)``, the
  innovation (delta_mu, delta_var) of the output units.
* DVI (expected log-likelihood): ``expected_log_likelihood(y, mean, var, log_noise)`` per row.
* Heteroscedastic heads: ``noise_from_outputs(out_mean, out_var)``, the noise variance per row.

``n_outputs`` is the number of network outputs the likelihood reads.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Gamma(NamedTuple):
    """A Gamma(shape, rate) distribution (the noise precision of PBP, the prior precision)."""

    shape: jax.Array
    rate: jax.Array


class Likelihood:
    """Base class of the observation models (see the module docstring)."""

    n_outputs = 1

    def init_params(self, noise_variance=None):
        """The likelihood's parameters in a PBP state (default: none)."""
        return ()

    def noise_variance(self, params):
        """The predictive noise variance implied by ``params`` (default: 0)."""
        return jnp.zeros((), jnp.float64)

    def log_z(self, y, mean, var, params):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} gives no log Z")

    def adf_output(self, params, y, mean, var, weight, keep):
        """d log Z / d(mean, var) by autodiff of :meth:`log_z`, times ``weight``; parameters kept."""
        f64 = jnp.float64
        g_mean, g_var = jax.grad(lambda m, v: self.log_z(y, m, v, params), argnums=(0, 1))(
            jnp.asarray(mean, f64), jnp.asarray(var, f64))
        return weight * g_mean, weight * g_var, params, jnp.zeros((), f64)

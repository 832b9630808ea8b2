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
  innovation (delta_mu, delta_var) of the output units. The default is the ADF moment match of
  each output unit (:meth:`Likelihood.tagi_deltas`), so a likelihood with a ``log_z`` (or an
  ``adf_output``) serves TAGI too.
* DVI (expected log-likelihood): ``expected_log_likelihood(y, mean, var, log_noise)`` per row.
* Heteroscedastic heads: ``noise_from_outputs(out_mean, out_var)``, the noise variance per row.
* PBP's hand-written backward pass also reads ``feedback_mask``: None (the default) carries every
  output's cotangents into the hidden layers; a 0/1 per output cuts the zeros' out of them
  (``HeteroscedasticGaussian(feedback=False)``). TAGI and DVI build their own likelihoods and do
  not read it.

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

    #: Which outputs' cotangents a learner's backward pass carries into the shared hidden
    #: layers, one 0/1 per output; None: all of them (the exact gradient of log Z).
    feedback_mask: tuple[float, ...] | None = None

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

    def tagi_deltas(self, z_mean, z_var, y, keep, noise_var=None):
        """The output units' innovation for a batch (``z_mean``/``z_var`` of shape (B, K), ``y``
        (B,)) from the ADF moment match of each unit (:func:`probprop.moments.adf.gaussian_update`):
        posterior mean m + v dlogZ/dm = m + v delta_mu and posterior variance
        v - v^2 [(dlogZ/dm)^2 - 2 dlogZ/dv] = v + v^2 delta_var, so

            delta_mu = dlogZ/dm,     delta_var = 2 dlogZ/dv - (dlogZ/dm)^2

        (:func:`probprop.moments.adf.innovation`; for a Gaussian of variance s2 this is
        ((y - m)/S, -1/S), S = v + s2). Units are matched
        one by one (the outputs stay independent, as in TAGI's diagonal backward pass); rows with
        ``keep`` False get zero deltas. ``noise_var`` is unused (the likelihood has no free noise)."""
        from probprop.moments.adf import innovation

        params = self.init_params()
        keep = jnp.asarray(keep, bool)

        def row(m, v, t, k):
            g_mean, g_var, _, _ = self.adf_output(params, t, m, v, jnp.float64(1.0), k)
            return g_mean, g_var

        g_mean, g_var = jax.vmap(row)(jnp.asarray(z_mean, jnp.float64), jnp.asarray(z_var, jnp.float64), y, keep)
        shape, dtype = jnp.shape(z_mean), jnp.result_type(z_mean)
        d_mean, d_var = innovation(jnp.reshape(g_mean, shape), jnp.reshape(g_var, shape))
        kept = jnp.reshape(keep, (-1,) + (1,) * (len(shape) - 1))
        return (jnp.where(kept, d_mean, 0.0).astype(dtype), jnp.where(kept, d_var, 0.0).astype(dtype))

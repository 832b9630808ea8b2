"""The three Gaussian observation models of the regression learners.

* :class:`GaussianGammaNoise`: y = f + e, e ~ N(0, 1/gamma), gamma ~ Gamma(shape, rate) learned by
  ADF (PBP's noise model, Hernández-Lobato & Adams 2015, eqs. 7-8 and 12);
* :class:`GaussianNoise`: y = f + e, e ~ N(0, s2) with s2 given (PBP with a fixed noise, TAGI's
  sigma_v^2, DVI's and the homoscedastic heads' point-estimated log s2);
* :class:`HeteroscedasticGaussian`: two network outputs (f, l), y = f + e, e ~ N(0, exp(l))
  (TAGI's AGVI unit, DVI's heteroscedastic head, heteroscedastic PBP's log Z by a 1-D quadrature).

Each gives what the learners need of it (see :mod:`probprop.likelihoods`): PBP the ADF output
step (``adf_output``), TAGI the output innovation (``tagi_deltas``), DVI the expected
log-likelihood (``expected_log_likelihood``), and every learner the predictive noise variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from probprop.likelihoods.base import Gamma, Likelihood
from probprop.moments import adf
from probprop.moments.exponential import exponential

LOG_2PI = math.log(2.0 * math.pi)


def _gaussian_output(y, mean, var, noise_var, weight):
    """d log Z / d mean and d log Z / d var of Z = N(y | mean, var + noise_var), times ``weight``."""
    total = var + noise_var
    resid = y - mean
    g_mean = weight * resid / total
    g_var = weight * 0.5 * (resid * resid / total - 1.0) / total
    return g_mean, g_var


@dataclass(frozen=True)
class GaussianNoise(Likelihood):
    """Gaussian noise of a given variance. For PBP its parameters are ``Gamma(2, s2)`` (so that
    rate / (shape - 1) = s2, the layout of the learned noise), kept fixed; TAGI passes sigma_v^2
    to :meth:`tagi_deltas`; DVI a learned point estimate of log s2 to
    :meth:`expected_log_likelihood`."""

    n_outputs = 1

    def init_params(self, noise_variance):
        if noise_variance is None or not float(noise_variance) > 0:
            raise ValueError(f"a Gaussian noise of given variance needs a positive noise_variance, got {noise_variance!r}")
        return Gamma(np.asarray(2.0, np.float64), np.asarray(float(noise_variance), np.float64))  # host arrays

    def noise_variance(self, params):
        return params.rate / (params.shape - 1.0)

    def log_z(self, y, mean, var, params):
        return adf.gaussian_log_z(y, mean, var + self.noise_variance(params)) - 0.5 * LOG_2PI

    def adf_output(self, params, y, mean, var, weight, keep):
        f64 = jnp.float64
        g_mean, g_var = _gaussian_output(y, mean, var, self.noise_variance(params), weight)
        return g_mean, g_var, params, jnp.zeros((), f64)

    def tagi_deltas(self, z_mean, z_var, y, keep, noise_var):
        """Innovation of the output for y = Z + V: ((y - mu_z)/S, -1/S), S = var_z + noise_var;
        rows with ``keep`` False get zero deltas (they leave every update unchanged)."""
        total = z_var[:, 0] + noise_var
        d_mean = jnp.where(keep, (y - z_mean[:, 0]) / total, 0.0)
        d_var = jnp.where(keep, -1.0 / total, 0.0)
        return d_mean[:, None], d_var[:, None]

    def expected_log_likelihood(self, y, mean, var, log_noise):
        """E[log N(y | f, s2)] for f ~ (mean, var) (exact): -0.5 [log 2 pi s2 + ((y - m)^2 + v) / s2]."""
        sq = (y - mean[..., 0]) ** 2 + var[..., 0]
        return -0.5 * (LOG_2PI + log_noise + sq * jnp.exp(-log_noise))


@dataclass(frozen=True)
class GaussianGammaNoise(GaussianNoise):
    """Gaussian noise whose precision has a Gamma(shape, rate) posterior, updated by ADF with
    every observation (PBP). ``shape``/``rate``: the prior (PBP: 6, 6 in standardised units).

    log Z uses PBP's plug-in approximation of the Student-t marginal,
    Z ~= N(y | m, v + rate / (shape - 1)); the Gamma is moment-matched from Z(a), Z(a+1), Z(a+2)
    (:func:`probprop.moments.adf.gamma_update`) and an unusable update is refused (counted).
    """

    shape: float = 6.0
    rate: float = 6.0

    def init_params(self, noise_variance=None):
        return Gamma(np.asarray(self.shape, np.float64), np.asarray(self.rate, np.float64))  # host arrays

    def adf_output(self, params, y, mean, var, weight, keep):
        f64 = jnp.float64
        g_mean, g_var = _gaussian_output(y, mean, var, self.noise_variance(params), weight)
        shape_new, rate_new = adf.gamma_update(*params, *adf.student_log_z(y, mean, var, *params))
        ok = adf.valid_gamma(shape_new, rate_new) & keep
        shape, rate = jnp.where(ok, shape_new, params.shape), jnp.where(ok, rate_new, params.rate)
        refused = jnp.where(~ok & keep, 1.0, 0.0)
        return g_mean, g_var, type(params)(shape, rate), refused.astype(f64)


@dataclass(frozen=True)
class HeteroscedasticGaussian(Likelihood):
    """Two outputs (f, l) with y | f, l ~ N(f, exp(l)); the noise variance is exp(l), whose
    moments for Gaussian l are log-normal (:func:`probprop.moments.exponential`).

    ``feedback`` (PBP's ADF/SEP): True, every weight moves by the exact gradient of log Z, so the
    shared hidden layers learn from both outputs. False cuts the feedback from the noise output
    into them (a "cut" model, Plummer 2015, as in modular Bayesian inference): the hidden layers
    and f's row learn from f's cotangents only, l's row learns the noise on the features the mean
    learned. When each helps: ``PBPRegressor``'s ``noise_feedback``."""

    n_outputs = 2
    feedback: bool = True

    def __post_init__(self):
        if not isinstance(self.feedback, (bool, np.bool_)):
            raise ValueError(f"feedback must be True or False, got {self.feedback!r}")

    @property
    def feedback_mask(self):
        return None if self.feedback else (1.0, 0.0)

    def log_z(self, y, mean, var, params=()):
        """log of Z = integral N(y | m_f, v_f + exp(l)) N(l | m_l, v_l) dl for one point
        (``mean``/``var`` of shape (2,): f's and l's moments, taken independent), by
        :func:`heteroscedastic_log_z`; what heteroscedastic PBP's ADF differentiates."""
        return heteroscedastic_log_z(y, mean[0], var[0], mean[1], var[1])

    def noise_from_outputs(self, out_mean, out_var):
        """E[exp(l)] = exp(m_l + v_l / 2) per row, from the output moments of shape (..., 2)."""
        return exponential(out_mean[..., 1], out_var[..., 1])[0]

    def tagi_deltas(self, z_mean, z_var, y, keep, noise_var=None):
        """AGVI innovations of (Z_mu, Z_s) (Deka, Nguyen & Goulet 2024; derivation in
        :mod:`probprop.learners.tagi`), zero for rows with ``keep`` False; shape (B, 2) each."""
        m_mu, v_mu = z_mean[:, 0], z_var[:, 0]
        s2 = z_var[:, 1]
        mu, _, _ = exponential(z_mean[:, 1], s2)  # E[Vbar2], the prior noise variance
        c = 3.0 * jnp.expm1(s2) + 2.0  # Var[V^2] / mu^2
        total = v_mu + mu
        resid = y - m_mu
        m_v = mu * resid / total  # V | y
        v_v = mu * v_mu / total
        e_sq = m_v * m_v + v_v  # V^2 | y
        var_sq = 2.0 * v_v * v_v + 4.0 * m_v * m_v * v_v
        d_mean = jnp.stack([resid / total, (e_sq - mu) / (mu * c)], axis=1)
        d_var = jnp.stack([-1.0 / total, (var_sq - mu * mu * c) / (mu * c) ** 2], axis=1)
        return jnp.where(keep[:, None], d_mean, 0.0), jnp.where(keep[:, None], d_var, 0.0)

    def expected_log_likelihood(self, y, mean, var, log_noise=None):
        """DVI's approximation with f and l independent, l ~ N(m_l, v_l):
        E[log N(y | f, e^l)] ~= -0.5 [log 2 pi + m_l + ((y - m_f)^2 + v_f) exp(-m_l + v_l / 2)]."""
        sq = (y - mean[..., 0]) ** 2 + var[..., 0]
        m_l, v_l = mean[..., 1], var[..., 1]
        return -0.5 * (LOG_2PI + m_l + sq * jnp.exp(-m_l + 0.5 * v_l))


#: Trapezoid nodes of :func:`heteroscedastic_log_z`, over [mode - HALF_WIDTH w, mode + HALF_WIDTH w].
N_NODES = 128
HALF_WIDTH = 10.0
#: Bisection steps for the integrand's mode (the bracket is at most ~0.5 v_l + 30 wide).
N_BISECT = 48
_FRACTIONS = np.linspace(-1.0, 1.0, N_NODES)


def heteroscedastic_log_z(y, m_f, v_f, m_l, v_l):
    """log Z, Z = integral N(y | m_f, v_f + e^l) N(l | m_l, v_l) dl: the marginal likelihood of y
    under f ~ N(m_f, v_f), log noise variance l ~ N(m_l, v_l), independent; also the exact
    predictive density of y for those output moments.

    With r = y - m_f, s = v_f + e^l, the log integrand is h(l) = -(log s + r^2 / s) / 2
    - (l - m_l)^2 / (2 v_l) + const. Its likelihood part rises while s < r^2 and falls after,
    with slope at least -1/2, so every mode of h lies in [m_l - v_l / 2, max(m_l, log(r^2 - v_f))];
    bisection on h' finds one (:data:`N_BISECT` steps). Around it, the trapezoid rule on
    :data:`N_NODES` equally spaced nodes over +- :data:`HALF_WIDTH` w, w = min(sd_l, 3 sigma),
    sigma = (-h'')^(-1/2) at the mode: every feature of the likelihood part is about one unit
    of l wide and the integrand is analytic in a strip of width pi, so the rule converges
    geometrically (the tests: absolute error below 1e-4 against a 2-million-node integral over residuals
    0-12, v_f 1e-4 - 1, m_l -6 - 1.5, v_l 1e-5 - 30; in the design study below 3e-5 out to
    residuals of 30 and v_f of 3). The nodes are held fixed under differentiation,
    so autodiff gives the quadrature's own gradient. Known limit: a residual tens of predicted
    noise sds out with a confident l (e.g. r = 5, v_f = 0.01, l ~ N(-8, 0.01)) can make h
    bimodal; the rule then integrates the mode the bisection found and log Z falls short
    (by up to ~2 nats in the tested grid)."""
    f64 = jnp.float64
    y, m_f, v_f, m_l, v_l = (jnp.asarray(a, f64) for a in (y, m_f, v_f, m_l, v_l))
    # below these the answer no longer changes (a log-noise sd of 1e-10, a function variance of
    # 1e-300), and the bisection's 1e-13 resolution of the mode stays inside the nodes' span
    v_l = jnp.maximum(v_l, 1e-20)
    v_f = jnp.maximum(v_f, 1e-300)
    hold = jax.lax.stop_gradient
    r2, vf, ml, vl = hold((y - m_f) ** 2), hold(v_f), hold(m_l), hold(v_l)

    def slope_and_curvature(l):
        s = vf + jnp.exp(l)
        t, q = jnp.exp(l) / s, r2 / s
        slope = 0.5 * t * (q - 1.0) - (l - ml) / vl
        curvature = 0.5 * t * ((1.0 - t) * (q - 1.0) - t * q) - 1.0 / vl
        return slope, curvature

    def bisect(bounds, _):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        rising = slope_and_curvature(mid)[0] > 0.0
        return (jnp.where(rising, mid, lo), jnp.where(rising, hi, mid)), None

    top = jnp.maximum(ml, jnp.log(jnp.maximum(r2 - vf, 1e-300)))
    (lo, hi), _ = jax.lax.scan(bisect, (ml - 0.5 * vl - 1e-6, top), None, length=N_BISECT)
    mode = 0.5 * (lo + hi)
    sigma = 1.0 / jnp.sqrt(jnp.maximum(-slope_and_curvature(mode)[1], 1e-12))
    width = HALF_WIDTH * jnp.minimum(jnp.sqrt(vl), 3.0 * sigma)
    l = mode + width * _FRACTIONS
    s = v_f + jnp.exp(l)
    log_terms = -0.5 * (LOG_2PI + jnp.log(s) + (y - m_f) ** 2 / s) - 0.5 * (
        (l - m_l) ** 2 / v_l + jnp.log(v_l) + LOG_2PI)
    step = width * (_FRACTIONS[1] - _FRACTIONS[0])
    return logsumexp(log_terms) + jnp.log(step)

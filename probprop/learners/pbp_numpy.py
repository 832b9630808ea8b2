"""A plain NumPy implementation of the PBP epoch, one data point at a time.

Written independently of the JAX engine, in the structure of the reference C code
(HIPS/Probabilistic-Backpropagation, ``network.c``: forward pass, hand-written backward
pass, guarded update, Gamma update; then the sequential EP prior refinement). It serves
two purposes: it is the tests' oracle for the compiled engine, and the baseline that
``python -m probprop.bench.speed`` measures the engine against.

The parameters are plain dicts of NumPy arrays:
``{"m": [M_l], "v": [V_l], "noise": [a, b], "prior": [a, b], "site_m": [..], "site_v": [..],
"site_a": [..], "site_b": [..], "rejected": int}`` with the same layout as ``PBPState``
(see :func:`from_state` / :func:`to_arrays`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfc

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def from_state(state) -> dict:
    """Copy a JAX ``PBPState`` into the NumPy parameter dict (float64)."""
    as_list = lambda arrays: [np.array(a, dtype=np.float64) for a in arrays]  # noqa: E731
    return {
        "m": as_list(state.means),
        "v": as_list(state.variances),
        "noise": [float(state.noise.shape), float(state.noise.rate)],
        "prior": [float(state.prior.shape), float(state.prior.rate)],
        "site_m": as_list(state.sites.natmean),
        "site_v": as_list(state.sites.precision),
        "site_a": as_list(state.sites.shape),
        "site_b": as_list(state.sites.rate),
        "rejected": int(state.rejected),
        "learn_noise": bool(state.spec.learn_noise),
        "bias": bool(state.spec.bias),
    }


def _relu_moments(m_a, v_a):
    """Rectified-Gaussian moments and their derivatives, reference-code form (gamma = phi/Phi)."""
    s = np.sqrt(v_a)
    a = m_a / s
    p = 0.5 * erfc(-a / math.sqrt(2.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        # reference asymptote, with the extra -10/a^5 term probprop uses (see moments.gaussian)
        g = np.where(a < -30, -a - 1.0 / a + 2.0 / a**3 - 10.0 / a**5, _INV_SQRT_2PI * np.exp(-0.5 * a * a) / p)
    m_z = p * (m_a + s * g)
    v_z = m_z * (m_a + s * g) * (1.0 - p) + p * v_a * (1.0 - g * g - g * a)
    pdf = p * g
    dm_dm = p
    dm_dv = pdf / (2.0 * s)
    dv_dm = 2.0 * m_z * (1.0 - p)
    dv_dv = p - m_z * pdf / s
    return m_z, v_z, (dm_dm, dm_dv, dv_dm, dv_dv)


def _log_z(y, m, v):
    return -0.5 * (math.log(v) + (y - m) ** 2 / v)


def adf_update(params: dict, x: np.ndarray, y: float) -> None:
    """One ADF update in place (PBP eqs. 5-8), with the per-weight variance guard."""
    bias = params["bias"]
    layers = len(params["m"])
    m_z, v_z = np.asarray(x, np.float64), np.zeros(len(x))
    saved = []
    for layer in range(layers):
        M, V = params["m"][layer], params["v"][layer]
        if bias:
            m_z, v_z = np.append(m_z, 1.0), np.append(v_z, 0.0)
        n = M.shape[1]
        m_a = M @ m_z / math.sqrt(n)
        v_a = ((M * M) @ v_z + V @ (m_z * m_z) + V @ v_z) / n
        saved.append((m_z, v_z))
        if layer < layers - 1:
            m_z, v_z, jac = _relu_moments(m_a, v_a)
            saved[-1] = saved[-1] + (jac,)
        else:
            m_out, v_out = m_a[0], v_a[0]

    a_n, b_n = params["noise"]
    v = v_out + b_n / (a_n - 1.0)
    d_m = np.array([(y - m_out) / v])
    d_v = np.array([-0.5 / v + 0.5 * (y - m_out) ** 2 / v**2])

    grads = [None] * layers
    for layer in range(layers - 1, -1, -1):
        M, V = params["m"][layer], params["v"][layer]
        m_in, v_in = saved[layer][:2]
        n = M.shape[1]
        gM = np.outer(d_m, m_in) / math.sqrt(n) + 2.0 * M * np.outer(d_v, v_in) / n
        gV = np.outer(d_v, m_in * m_in + v_in) / n
        grads[layer] = (gM, gV)
        if layer > 0:
            dm_in = d_m @ M / math.sqrt(n) + 2.0 * m_in * (d_v @ V) / n
            dv_in = d_v @ (M * M + V) / n
            if bias:
                dm_in, dv_in = dm_in[:-1], dv_in[:-1]
            dm_dm, dm_dv, dv_dm, dv_dv = saved[layer - 1][2]
            d_m, d_v = dm_in * dm_dm + dv_in * dv_dm, dm_in * dm_dv + dv_in * dv_dv

    for layer, (gM, gV) in enumerate(grads):
        M, V = params["m"][layer], params["v"][layer]
        v_new = V - V * V * (gM * gM - 2.0 * gV)
        m_new = M + V * gM
        ok = (v_new > 1e-100) & np.isfinite(v_new) & np.isfinite(m_new)
        params["m"][layer] = np.where(ok, m_new, M)
        params["v"][layer] = np.where(ok, v_new, V)
        params["rejected"] += int(np.sum(~ok))

    if params["learn_noise"]:
        lz = _log_z(y, m_out, v_out + b_n / (a_n - 1.0))
        lz1 = _log_z(y, m_out, v_out + b_n / a_n)
        lz2 = _log_z(y, m_out, v_out + b_n / (a_n + 1.0))
        a_new = 1.0 / (math.exp(lz2 - 2.0 * lz1 + lz) * (a_n + 1.0) / a_n - 1.0)
        b_new = 1.0 / (math.exp(lz2 - lz1) * (a_n + 1.0) / b_n - math.exp(lz1 - lz) * a_n / b_n)
        if math.isfinite(a_new) and math.isfinite(b_new) and a_new > 1.0 and b_new > 0.0:
            params["noise"] = [a_new, b_new]
        else:
            params["rejected"] += 1


def refine_prior(params: dict) -> None:
    """The reference code's sequential EP refinement of the prior sites, in place."""
    a_p, b_p = params["prior"]
    for layer in range(len(params["m"])):
        M, V = params["m"][layer], params["v"][layer]
        sm, sv, sa, sb = (params[k][layer] for k in ("site_m", "site_v", "site_a", "site_b"))
        for idx in np.ndindex(M.shape):
            v_cav_nat = 1.0 / V[idx] - sv[idx]
            m_cav_nat = M[idx] / V[idx] - sm[idx]
            v_cav = 1.0 / v_cav_nat
            m_cav = m_cav_nat * v_cav
            a_cav = a_p - sa[idx]
            b_cav = b_p - sb[idx]
            if not (v_cav > 0 and b_cav > 0 and a_cav > 1 and v_cav < 1e6):
                continue
            v0 = v_cav + b_cav / (a_cav - 1.0)
            v1 = v_cav + b_cav / a_cav
            v2 = v_cav + b_cav / (a_cav + 1.0)
            lz, lz1, lz2 = (-0.5 * math.log(t) - 0.5 * m_cav * m_cav / t for t in (v0, v1, v2))
            dm = -m_cav / v0
            dv = -0.5 / v0 + 0.5 * m_cav * m_cav / (v0 * v0)
            m_new = m_cav + v_cav * dm
            v_new = v_cav - v_cav * v_cav * (dm * dm - 2.0 * dv)
            a_new = 1.0 / (math.exp(lz2 - 2.0 * lz1 + lz) * (a_cav + 1.0) / a_cav - 1.0)
            b_new = 1.0 / (math.exp(lz2 - lz1) * (a_cav + 1.0) / b_cav - math.exp(lz1 - lz) * a_cav / b_cav)
            # the reference keeps a proper cavity's update even when the new Gamma is not a
            # distribution; only non-finite results are refused here
            if not (v_new > 1e-100 and math.isfinite(m_new) and math.isfinite(a_new) and math.isfinite(b_new)):
                continue
            sm[idx] = m_new / v_new - m_cav_nat
            sv[idx] = 1.0 / v_new - v_cav_nat
            sa[idx] = a_new - a_cav
            sb[idx] = b_new - b_cav
            M[idx], V[idx] = m_new, v_new
            a_p, b_p = a_new, b_new
    params["prior"] = [a_p, b_p]


def adf_sweep(params: dict, X: np.ndarray, y: np.ndarray) -> None:
    """ADF updates for the rows of X in the given order, in place."""
    for x_i, y_i in zip(np.asarray(X, np.float64), np.asarray(y, np.float64)):
        adf_update(params, x_i, float(y_i))


def epoch(params: dict, X: np.ndarray, y: np.ndarray, order: np.ndarray) -> None:
    """One PBP epoch in the given order (ADF sweep, then EP prior refinement), in place."""
    adf_sweep(params, X[order], y[order])
    refine_prior(params)

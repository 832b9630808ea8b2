"""Parameter drift for the online learners: forgetting before each step, fixed or learned.

Assumed density filtering treats the weights as constant, so on a stream whose relationship
changes the posterior keeps shrinking around a world that no longer exists. The drift model of
Titsias et al. ("Kalman filter for online classification of non-stationary data", ICLR 2024)
lets the weights follow an Ornstein-Uhlenbeck transition before each step,

    w_t = gamma w_{t-1} + sqrt(1 - gamma^2) e_t,    e_t ~ N(0, v0),

whose stationary law is the prior N(0, v0). On the factorised Gaussian posterior that is the
Kalman filter's predict step for a diagonal covariance, per weight::

    m <- gamma m,    v <- gamma^2 v + (1 - gamma^2) v0                 (:func:`transition`)

with v0 the learner's prior variance of that weight (its ``init`` variances). By default
(``Forgetting.shrink_mean=False``) the mean is kept, m <- m, and only the variance relaxes
towards v0: a network's function is in its means, and shrinking them all towards zero makes it
relearn what did not change. Measured prequentially (``probprop bench streams``' streams, PBP
50 units, learned gamma, seed 0): mean log loss friedman-abrupt 2.333 kept / 2.334 shrunk /
2.364 no forgetting; moons-rotating 0.166 / 0.198 / 0.168. gamma = 1 is
no forgetting; smaller gamma forgets faster (the posterior relaxes towards the prior with a
time constant of about 1 / (1 - gamma) rows). A step that learns G rows at once (a TAGI
mini-batch) is preceded by G transitions, gamma^G.

Learned forgetting (``Forgetting(learn=True)``, as in Titsias et al.): gamma climbs the
predictive log-likelihood of each new step, log p(y_t | x_t, data before t, gamma), by an Adam
step on u = log(1 - gamma) (so gamma stays in (0, 1) and its scale is learned, 1e-2 as easily as
1e-5). The derivative needs no extra pass (with replay, one: below): a Gaussian moment match
reveals dlogZ/dm and dlogZ/dv at the transitioned moments
(:func:`probprop.moments.adf.update_gradients`), and the transition is linear in them, so

    dlogZ/dgamma = sum_w dlogZ/dm' G gamma^(G-1) m + dlogZ/dv' 2 G gamma^(2G-1) (v - v0)

(the first term only when the means shrink).

Only the last transition is differentiated (the earlier ones are held fixed: the usual
truncation of online hyperparameter learning). Weights whose update the variance guard
refused contribute zero.

:func:`sweep` runs it: for each step of rows, in the order given (a stream's order; nothing is
shuffled), transition, optionally record the predictive moments of the rows (prequential
evaluation: predict, then learn), learn the rows with the learner's ``step``, then move gamma
(and replay, with ``replay``). It is one compiled ``lax.scan`` for any online learner (``Learner.step``).

Replay (``Replay``, optional): one ADF pass learns a stream's early rows slowly (a network's
curved boundary needs many updates; PBP's own ``fit`` makes 40 passes). With ``Replay(rows=R,
window=W)`` each step is followed by R more steps on rows drawn uniformly (with replacement,
seeded) from a window of the W rows learned before it, without a transition or a move of gamma:
online multi-pass ADF over recent rows, at R + 1 times the cost of a step (R + 2 with learned
forgetting, below). The new row joins the window after its replays; the window holds the most
recent W rows (a ring). Every row is still predicted before it is learned the first time.
Measured prequentially (three seeds, ``probprop bench streams``): see ``docs/benchmarks/streams``.

Replay with learned forgetting: a row is learned once and then replayed about R times while it
is in the window (R draws per step from W rows, for W steps), so the posterior's variances are
about R + 1 times smaller than those of a posterior that counts each row once, and the one-step
predictive that gamma climbs is overconfident for that reason alone. Forgetting then undoes the
overcounting instead of tracking change: on friedman-static (no drift) gamma settled at 0.998 and
forgetting + replay was 2.4 % behind replay alone. So with replay, gamma's gradient is taken at the
posterior that counts each row once: per weight, the transitioned precision keeps the prior's and
1 / (R + 1) of what the data added, 1 / v1 = 1 / v0 + (1 / v' - 1 / v0) / (R + 1) (about
(R + 1) v' where the data dominate, never above v0 where v' is not; multiplying v' by R + 1 and
capping it at v0 instead froze gamma on streams whose rows say little: every weight capped, a zero
gradient); one more ``step`` from those moments per step, whose result is used for the gradient
only (a step then costs R + 2 plain ones). With it (``docs/benchmarks/streams``): friedman-static
1.782 against 1.814 for replay alone, and forgetting + replay still ahead of replay alone on the
four drifting streams.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.learners.base import Learner, float64
from probprop.moments import adf

__all__ = ["DriftState", "Forgetting", "Prior", "Replay", "Window", "as_forgetting", "as_replay", "empty_window", "gamma",
           "init", "prior", "sweep", "transition"]

#: Adam's moment decays and epsilon for the step on log(1 - gamma).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.0, 0.999, 1e-8


@dataclass(frozen=True)
class Forgetting:
    """How a learner forgets on a stream.

    ``gamma``: the forgetting factor per row (fixed), or the starting value when ``learn``;
    ``learn``: move gamma online towards higher predictive log-likelihood; ``learning_rate``:
    the normalised step on log(1 - gamma) per step; ``min_gamma``/``max_gamma``: the range gamma
    is kept in while it learns (below 0.9 the posterior would forget within ten rows, where the
    one-step gradient can settle on forgetting everything); ``shrink_mean``: the transition also
    shrinks the means by gamma (the OU model as written) rather than keeping them.
    """

    gamma: float = 0.999
    learn: bool = True
    learning_rate: float = 0.01
    min_gamma: float = 0.9
    max_gamma: float = 1.0 - 1e-7
    shrink_mean: bool = False

    def __post_init__(self):
        for name in ("gamma", "learning_rate", "min_gamma", "max_gamma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite(value):
                raise ValueError(f"Forgetting.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("learn", "shrink_mean"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Forgetting.{name} must be True or False, got {getattr(self, name)!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"the forgetting factor gamma must be in (0, 1], got {self.gamma!r}")
        if not 0.0 < self.min_gamma < self.max_gamma < 1.0:
            raise ValueError(f"need 0 < min_gamma < max_gamma < 1, got {self.min_gamma!r} and {self.max_gamma!r}")
        if self.learn and not self.min_gamma <= self.gamma <= self.max_gamma:
            raise ValueError(f"a learned gamma starts inside [min_gamma, max_gamma] = [{self.min_gamma}, "
                             f"{self.max_gamma}], got {self.gamma!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"Forgetting.learning_rate must be positive, got {self.learning_rate!r}")


def as_forgetting(value) -> Forgetting | None:
    """The estimators' ``forgetting`` parameter as a :class:`Forgetting` (or None): None (no drift
    model), ``"learn"`` (learned from gamma = 0.999), a number in (0, 1] (that gamma, fixed) or a
    :class:`Forgetting`."""
    if value is None or isinstance(value, Forgetting):
        return value
    if isinstance(value, str):
        if value == "learn":
            return Forgetting()
        raise ValueError(f"unknown forgetting {value!r}; use None, 'learn', a factor in (0, 1] or a Forgetting")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"forgetting must be None, 'learn', a factor in (0, 1] or a Forgetting, got {value!r}")
    return Forgetting(gamma=value, learn=False)


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range (10**400 from a JSON file)
        return False


class DriftState(NamedTuple):
    """The learned forgetting: u = log(1 - gamma) and the normalised step's first and second
    moments and step count (float64 scalars; :data:`ADAM_B1` = 0 makes it RMSProp with Adam's bias
    correction; with a fixed gamma only ``log_one_minus`` is read)."""

    log_one_minus: jax.Array
    first: jax.Array
    second: jax.Array
    steps: jax.Array


def check_state(values, forgetting: Forgetting) -> None:
    """Refuse a drift state (four numbers, e.g. from a model file) that the next step could not
    use: u = log(1 - gamma) inside the forgetting's range when it learns (or <= 0), a finite first
    moment, a second moment and a step count >= 0. Raises ValueError naming the problem."""
    v = np.asarray(values, np.float64)
    if v.shape != (4,):
        raise ValueError(f"a drift state is four numbers, got shape {v.shape}")
    u, first, second, steps = (float(x) for x in v)
    low, high = math.log1p(-forgetting.max_gamma), math.log1p(-forgetting.min_gamma)
    if forgetting.learn and not low <= u <= high:
        raise ValueError(f"the drift state's log(1 - gamma) = {u!r} is outside [{low:.4g}, {high:.4g}]")
    if not (u <= 0 and math.isfinite(first) and math.isfinite(second) and second >= 0
            and math.isfinite(steps) and steps >= 0):
        raise ValueError("the drift state must hold log(1 - gamma) <= 0, a finite first moment and a second "
                         "moment and step count >= 0")


def init(forgetting: Forgetting) -> DriftState:
    u = math.log1p(-forgetting.gamma) if forgetting.gamma < 1.0 else -math.inf
    zero = jnp.asarray(0.0, jnp.float64)
    return DriftState(jnp.asarray(u, jnp.float64), zero, zero, zero)


def gamma(drift: DriftState, forgetting: Forgetting):
    """The current forgetting factor per row."""
    if not forgetting.learn:
        return jnp.asarray(forgetting.gamma, jnp.float64)
    return -jnp.expm1(drift.log_one_minus)


class Prior(NamedTuple):
    """What the transition relaxes towards: the prior variance of every weight and the prior of
    the learned noise (PBP's Gamma; None where the learner has none)."""

    variances: tuple
    noise: object = None


@float64
def prior(learner: Learner, spec) -> Prior:
    """The learner's prior (``init``; its variances and noise do not depend on the key), built once
    per (learner, spec): a stream learned by one-row ``partial_fit`` calls asks for it every row."""
    return _prior(learner, spec)


@functools.lru_cache(maxsize=16)
def _prior(learner: Learner, spec) -> Prior:
    state = learner.init(jax.random.PRNGKey(0), spec)
    noise = getattr(state, "noise", None)
    return Prior(tuple(jnp.asarray(v, jnp.float64) for v in state.variances),
                 None if noise is None else jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), noise))


def transition(state, prior: Prior, factor, shrink_mean: bool = False):
    """The predict step v <- factor^2 v + (1 - factor^2) v0 per weight, and m <- factor m when
    ``shrink_mean`` (``factor`` = gamma^G for G rows). A learned noise forgets its evidence at the same rate: its parameters
    (PBP's Gamma shape and rate, sums of per-row statistics) become factor * now + (1 - factor) *
    prior, exponential forgetting of the rows it has seen."""
    f2 = factor * factor
    means = tuple((factor * m).astype(m.dtype) for m in state.means) if shrink_mean else state.means
    variances = tuple((f2 * v + (1.0 - f2) * v0).astype(v.dtype) for v, v0 in zip(state.variances, prior.variances))
    changes = {"means": means, "variances": variances}
    if prior.noise is not None:
        changes["noise"] = jax.tree.map(lambda a, a0: (factor * a + (1.0 - factor) * a0).astype(a.dtype),
                                        state.noise, prior.noise)
    return state.replace(**changes)


def _gamma_gradient(means, variances, prior_vars, moved, learned, g, rows, shrink_mean=False, chain=None):
    """dlogZ/dgamma of the step just made (module docstring), ``rows`` real rows in the step. The
    weights' share only: the transition also moves a learned noise's Gamma, whose part of the
    derivative is left out (a truncation, like holding the earlier transitions fixed). ``chain``
    (per layer, optional): d(variance the step started from) / d(transitioned variance), when the
    step started from a function of the transitioned posterior (replay's once-counted one)."""
    total = jnp.asarray(0.0, jnp.float64)
    chain = chain or (None,) * len(means)
    for m, v, v0, m1, v1, m2, v2, c in zip(means, variances, prior_vars, moved.means, moved.variances,
                                           learned.means, learned.variances, chain):
        m, v = m.astype(jnp.float64), v.astype(jnp.float64)
        g_m, g_v = adf.update_gradients(m1.astype(jnp.float64), v1.astype(jnp.float64),
                                        m2.astype(jnp.float64), v2.astype(jnp.float64))
        d_m = rows * g ** (rows - 1) * m if shrink_mean else 0.0
        d_v = 2.0 * rows * g ** (2 * rows - 1) * (v - v0)
        if c is not None:
            d_v = c * d_v
        total = total + jnp.sum(g_m * d_m) + jnp.sum(g_v * d_v)
    return total


def _once_counted_gamma_gradient(learner, state, prior, moved, Xg, yg, kg, g, rows, shrink_mean, counts):
    """dlogZ/dgamma of the step's rows at the posterior that counts each row once (module
    docstring): every weight's transitioned precision keeps the prior's and ``1 / counts`` of what
    the data added, 1 / v1 = 1 / v0 + (1 / v' - 1 / v0) / counts (never above the prior variance
    where v' is not).
    One extra ``learner.step`` from those moments; the chain rule through v1 is
    dv1/dv' = v1^2 / (counts v'^2)."""
    once = tuple((1.0 / (1.0 / v0 + (1.0 / v - 1.0 / v0) / counts)).astype(v.dtype)
                 for v, v0 in zip(moved.variances, prior.variances))
    probe = moved.replace(variances=once)
    learned = learner.step(probe, Xg, yg, kg)
    chain = tuple((v1.astype(jnp.float64) / v.astype(jnp.float64)) ** 2 / counts for v1, v in zip(once, moved.variances))
    return _gamma_gradient(state.means, state.variances, prior.variances, probe, learned, g, rows, shrink_mean, chain)


def _adam(drift: DriftState, grad_u, forgetting: Forgetting) -> DriftState:
    steps = drift.steps + 1.0
    first = ADAM_B1 * drift.first + (1.0 - ADAM_B1) * grad_u
    second = ADAM_B2 * drift.second + (1.0 - ADAM_B2) * grad_u * grad_u
    step = forgetting.learning_rate * (first / (1.0 - ADAM_B1**steps)) / (jnp.sqrt(second / (1.0 - ADAM_B2**steps)) + ADAM_EPS)
    low, high = math.log1p(-forgetting.max_gamma), math.log1p(-forgetting.min_gamma)
    u = jnp.clip(drift.log_one_minus + step, low, high)  # ascent: the log-likelihood grows
    return DriftState(u, first, second, steps)


#: The replay window's rows when ``replay`` is given as a number.
REPLAY_WINDOW = 64


class Replay(NamedTuple):
    """Replay of recent rows after each step (module docstring): ``rows`` replayed steps per
    step, drawn from the last ``window`` rows learned."""

    rows: int
    window: int = REPLAY_WINDOW


def as_replay(value) -> Replay | None:
    """An estimator's ``replay`` parameter as a :class:`Replay`: 0 or None (no replay), a
    positive integer R (R replayed steps per step over the last :data:`REPLAY_WINDOW` rows), or
    (R, W). Anything else raises ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, Replay):
        value = tuple(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"replay must be 0, a positive integer or (rows, window), got {value!r}")
        return Replay(int(value)) if value else None
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value):
        return Replay(int(value[0]), int(value[1]))
    raise ValueError(f"replay must be 0, a positive integer or (rows, window) of positive integers, got {value!r}")


class Window(NamedTuple):
    """The replay window: the last ``len(X)`` rows learned (a ring: ``slot`` is the next to
    write, ``filled`` how many hold rows) and the key of the replay draws."""

    X: jax.Array
    y: jax.Array
    slot: jax.Array
    filled: jax.Array
    key: jax.Array


def empty_window(replay: Replay, n_features: int, X_dtype, y_dtype, seed: int = 0) -> Window:
    """An empty replay window for rows of ``n_features`` inputs; its draws come from ``seed``'s
    key folded with 1 (a stream of its own, apart from draws made directly from ``seed``'s key,
    such as an estimator's initial weights)."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    return Window(np.zeros((replay.window, n_features), X_dtype), np.zeros((replay.window,), y_dtype),
                  np.int32(0), np.int32(0), np.asarray(key))


def _replayed(learner, state, window: Window, Xg, yg, kg, real, replay: Replay):
    """``replay.rows`` steps on rows of the window, then the step's rows (``kg``) join it. A step
    of padding rows only (``real`` False: no ``kg``) neither replays nor draws."""
    size = window.X.shape[0]
    key, sub = jax.random.split(window.key)
    key = jnp.where(real, key, window.key)
    picks = jax.random.randint(sub, (replay.rows, Xg.shape[0]), 0, jnp.maximum(window.filled, 1))
    live = real & (window.filled > 0)  # an empty window replays nothing

    def one(s, idx):
        return learner.step(s, window.X[idx], window.y[idx], jnp.broadcast_to(live, idx.shape)), None

    state, _ = lax.scan(one, state, picks)
    added = jnp.sum(kg).astype(jnp.int32)
    order = jnp.cumsum(kg)
    # padding rows, and real rows that later rows of the same step overwrite (a step of more rows
    # than the window holds), go out of range and are dropped: every slot is written at most once
    write = kg & (order > added - size)
    at = jnp.where(write, (window.slot + order - 1) % size, size)
    return state, Window(window.X.at[at].set(Xg.astype(window.X.dtype), mode="drop"),
                         window.y.at[at].set(yg.astype(window.y.dtype), mode="drop"),
                         ((window.slot + added) % size).astype(jnp.int32),
                         jnp.minimum(window.filled + added, size).astype(jnp.int32), key)


@float64
def sweep(learner: Learner, state, drift: DriftState | None, prior: Prior, X, y, mask=None,
          forgetting: Forgetting | None = None, record: bool = False, replay: Replay | None = None,
          window: Window | None = None):
    """Learn the rows of X in order, ``rows = spec.batch_size`` (1 where the spec has none) per
    ``learner.step``, each step preceded by the drift transition (none when ``forgetting`` is None).

    Returns ``(state, drift, recorded)``: when ``record``, ``recorded = (moments, gammas)`` with
    ``moments`` the learner's ``predict`` of every row just before the step that learned it (each
    field of shape (n, ...)) and ``gammas`` (n,) the forgetting factor that step used; else None. Rows with ``mask`` False are skipped (a step of padding rows neither moves the
    weights nor gamma). ``drift`` may be None without learned forgetting.

    With ``replay`` (a :class:`Replay`), each step is followed by its replayed steps on the
    ``window`` (a :class:`Window`; None: an empty one), and the result has a fourth item, the
    window after the sweep, for the next sweep to continue from.
    """
    if learner.step is None:
        raise ValueError(f"the {learner.name} learner has no online step")
    if drift is None:
        drift = init(forgetting or Forgetting(gamma=1.0, learn=False))
    n = y.shape[0]
    keep = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool)
    X, y = jnp.asarray(X), jnp.asarray(y)
    if replay is None:
        return _sweep(learner, state, drift, prior, X, y, keep, forgetting, record, None, None)
    replay = as_replay(replay)  # an int, (R, W) or a Replay, checked
    if replay is None:
        raise ValueError("replay=0 replays nothing: pass replay=None for a sweep without replay")
    if window is None:
        window = empty_window(replay, X.shape[1], X.dtype, y.dtype)
    return _sweep(learner, state, drift, prior, X, y, keep, forgetting, record, replay, window)


@partial(jax.jit, static_argnums=(0, 7, 8, 9))
def _sweep(learner, state, drift, prior, X, y, keep, forgetting, record, replay, window):
    rows = int(getattr(state.spec, "batch_size", 1))
    n = y.shape[0]
    pad = -n % rows
    if pad:
        X = jnp.concatenate([X, jnp.zeros((pad,) + X.shape[1:], X.dtype)])
        y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
        keep = jnp.concatenate([keep, jnp.zeros((pad,), bool)])
    steps = (n + pad) // rows
    groups = (X.reshape((steps, rows) + X.shape[1:]), y.reshape(steps, rows), keep.reshape(steps, rows))

    def body(carry, group):
        state, drift, window = carry
        Xg, yg, kg = group
        count = jnp.sum(kg).astype(jnp.float64)  # the step's real rows: each one transition
        real = count > 0
        moved = state
        if forgetting is not None:
            g = gamma(drift, forgetting)
            moved = jax.tree.map(lambda a, b: jnp.where(real, a, b),
                                 transition(state, prior, g**count, forgetting.shrink_mean), state)
        out = (learner.predict(moved, Xg), jnp.broadcast_to(g if forgetting is not None else 1.0, (rows,))) if record else None
        learned = learner.step(moved, Xg, yg, kg)
        if forgetting is not None and forgetting.learn:
            if replay is None:
                grad_g = _gamma_gradient(state.means, state.variances, prior.variances, moved, learned, g, count,
                                         forgetting.shrink_mean)
            else:  # at the posterior that counts each row once (module docstring)
                grad_g = _once_counted_gamma_gradient(learner, state, prior, moved, Xg, yg, kg, g, count,
                                                      forgetting.shrink_mean, replay.rows + 1.0)
            grad_u = jnp.where(real & jnp.isfinite(grad_g), grad_g * -jnp.exp(drift.log_one_minus), 0.0)
            updated = _adam(drift, grad_u, forgetting)
            drift = jax.tree.map(lambda a, b: jnp.where(real, a, b), updated, drift)
        if replay is not None:
            learned, window = _replayed(learner, learned, window, Xg, yg, kg, real, replay)
        return (learned, drift, window), out

    (state, drift, window), out = lax.scan(body, (state, drift, window), groups)
    if record:
        out = jax.tree.map(lambda a: a.reshape((steps * rows,) + a.shape[2:])[:n], out)
    return (state, drift, out) if replay is None else (state, drift, out, window)

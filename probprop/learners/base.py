"""The learner protocol: one signature for every learning rule in probprop.

A learner is a :class:`Learner`, a named tuple of pure functions over an immutable pytree state
(in the spirit of optax's ``GradientTransformation`` and blackjax's ``SamplingAlgorithm``)::

    learner = probprop.learners.get("pbp")
    state = learner.init(key, spec)                 # the prior / initial network, from a spec
    state = learner.update(state, X, y, mask)       # one epoch over (X, y); mask may be None
    moments = learner.predict(state, X)             # Moments(mean, epistemic_var, noise_var), per row
    moments = learner.predict(state, X, X_var)      # the same for uncertain inputs x ~ N(X, X_var)
    choice = learner.select(X, y, spec, epochs=..., key=...)   # optional: a Selection
    probs = learner.class_samples(state, X)         # optional, classifiers: (S, n, K)
    probs, var, ent = learner.class_moments(state, X, link)   # optional, closed-form classifiers
    state = learner.step(state, X, y, keep)         # optional, online learners: learn rows in order
    state = learner.finish(state, X, y, mask)       # optional: once after a fit's last epoch

Every array is in standardised units (the estimators standardise at the edge). ``update`` takes
``mask`` (n,) marking the real rows of data padded to a reusable shape (``None``: every row is
real). ``predict`` returns the three variances per row, with no key and no dependence of a row's
prediction on the other rows.

``predict(state, X, X_var=None)`` takes the variances of uncertain inputs: ``X_var`` broadcastable
to X (per entry, standardised units), the inputs x ~ N(X, X_var) independent per entry and of the
model; ``None`` (the default) means deterministic inputs and runs the plain compiled pass,
unchanged. The input noise's share of the variance of the network output lands in
``epistemic_var`` (the variance of f), so ``epistemic_var + noise_var`` stays the predictive
variance of y. The moment learners (PBP, PBP ensembles, TAGI, DVI) propagate it in closed form
(:mod:`probprop.moments.input_noise`) and also take ``propagation="moments"`` (default) or
``"linear"``; the sampling learners (MAP, deep ensembles, MC dropout) draw inputs inside their
stochastic passes, with a key derived from the state, so the same state gives the same prediction.

``online`` says whether ``update`` continues learning from the current state the way the learning
rule means it (assumed density filtering: PBP, TAGI), which is what ``partial_fit`` needs; the gradient learners can take more epochs too, but the optimiser's
epoch count and step sizes assume one fixed data set.

``step`` (optional, the online learners) learns the rows of X in the order given, with no
shuffling and nothing done per epoch (PBP's EP prior step), ``keep`` (n,) marking the real rows:
a stream's unit of learning, composed with forgetting by :func:`probprop.learners.drift.sweep`.
A learner that conditions on several rows at once says how many in its spec's ``batch_size``
(TAGI); the drift sweep then calls ``step`` with that many rows (padding rows masked), the
acquisition rules (:mod:`probprop.learners.acquisition`) with one.

``class_samples`` (optional, classification learners that average networks: ensemble members,
dropout masks) gives the class probabilities of each of its S equally weighted networks, shape
(S, n, K); a classifier then averages them, and its uncertainty scores are their spread (mutual
information, probability variance). Learners without it give output moments that the spec's
``output_likelihood`` turns into probabilities.

``class_moments`` (optional, classification learners with a Gaussian over their logits that
can also be read without sampling: the last-layer Laplace ones) gives, for the closed-form
approximation ``link`` it names (:data:`probprop.moments.softmax.LINKS`), the class
probabilities (n, K), each one's variance under the posterior (n, K) and the expected entropy
(n,): what a classifier's scores are built from, in one deterministic pass.

``finish`` (optional) runs once after the last epoch of a fit (``fit``, not ``partial_fit``), on
the training rows: a posterior fitted after training (the last-layer Laplace approximation, :mod:`probprop.learners.laplace`,
whose ``update`` trains the MAP network and leaves its posterior as it was).

Each learner module defines ``learner = Learner(...)``, and :mod:`probprop.learners` lists it in
its registry (one line): a new learning rule is one new module plus that line.

All learner functions run with JAX's 64-bit types enabled for the duration of the call
(:func:`float64`), so that ``import probprop`` changes nothing in the rest of a process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

from probprop import _cache

__all__ = ["Learner", "Moments", "Selection", "bucket", "count_rejections", "float64", "float64_process", "light_jit"]


class Moments(NamedTuple):
    """Predictive moments per row, in the learner's (standardised) units: the mean of the
    network output, its variance under the weight posterior (epistemic) and the observation
    noise variance (aleatoric); each of shape (n,). ``mean ± sqrt(epistemic_var + noise_var)``
    describes y."""

    mean: jax.Array
    epistemic_var: jax.Array
    noise_var: jax.Array


@dataclass(frozen=True)
class Selection:
    """The result of every hyperparameter search (``Learner.select``).

    ``spec``: the base spec with the chosen values; ``chosen``: name -> chosen value; ``grid``:
    name -> the candidate values (one tuple per searched hyperparameter, in the order of the
    axes of ``scores``); ``scores``: the mean validation log-likelihood of every grid point
    (-inf where it was not finite), of shape ``tuple(len(v) for v in grid.values())``.
    Searches use a validation part of the training data only, never test data.
    """

    spec: Any
    chosen: dict
    grid: dict
    scores: np.ndarray


class Learner(NamedTuple):
    """A learning rule as pure functions (see the module docstring)."""

    name: str
    spec_class: type
    init: Callable
    update: Callable
    predict: Callable
    select: Callable | None = None
    online: bool = False
    class_samples: Callable | None = None
    step: Callable | None = None
    finish: Callable | None = None
    class_moments: Callable | None = None


def float64(fn):
    """Run ``fn`` with JAX's 64-bit types enabled (a scoped setting, restored on return). Every
    probprop computation enters through here, so the first one also turns on the persistent
    compilation cache (:mod:`probprop._cache`)."""

    @functools.wraps(fn)
    def scoped(*args, **kwargs):
        if not _cache.enabled:
            _cache.enable()
        if jax.config.jax_enable_x64:  # already on (a probprop process, or inside another call):
            return fn(*args, **kwargs)  # entering the context again costs ~40 µs of jit dispatch
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return scoped


try:  # JAX's trace state (not public API), read once per prediction call
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:  # pragma: no cover - another JAX
    _trace_state_clean = None


def tracing() -> bool:
    """True inside a JAX trace (``jit``, ``vmap``, ``scan``, ``eval_shape``), where a function must
    stage its work rather than compute on the host. Read from JAX's trace state (not public API:
    where it is missing, True, the traced path, which is always correct)."""
    return True if _trace_state_clean is None else not _trace_state_clean()


#: XLA compiler options for programs that run rarely or cost little per element (predictions, the
#: initial weight draw, PBP's once-per-epoch EP prior step): XLA:CPU's loop emitters instead of
#: its MLIR fusion emitters. On one core
#: of this machine that compiled a 13-50-1 PBP prediction in 0.35 against 0.70 s at the same speed
#: on 64 to 100,000 rows. The numbers agree with the default program's to rounding (tested: within
#: 1e-14 of each output's largest value, for PBP and TAGI with every activation) and bit for bit
#: for PBP's ReLU network. PBP's epoch lost about 20 % of its speed with it, so the per-point
#: updates (the sweep) keep the default.
LIGHT_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
_light_options: dict | None = None


def _light_probe(x):
    return x + 1


def light_compile_options() -> dict:
    """:data:`LIGHT_COMPILE_OPTIONS` where this jaxlib takes them (checked once, by compiling a
    one-operation program), else none: a release that drops the option compiles as before."""
    global _light_options
    if _light_options is None:
        try:
            jax.jit(_light_probe, compiler_options=LIGHT_COMPILE_OPTIONS).lower(np.float32(0)).compile()
            _light_options = dict(LIGHT_COMPILE_OPTIONS)
        except Exception:  # noqa: BLE001 - any refusal (unknown option, other backend) means: no options
            _light_options = {}
    return _light_options


class _LightJit:
    """``jax.jit(fun, **kwargs)`` with :func:`light_compile_options`, built on the first use (so
    that importing probprop compiles nothing); attributes (``lower``, ...) are the jit's. Called
    inside a trace (another jit, ``vmap``, ``eval_shape``) it is the plain jit: JAX takes compiler
    options on the outermost program only."""

    def __init__(self, fun, kwargs):
        self._fun, self._kwargs, self._jitted, self._nested = fun, kwargs, None, None
        functools.update_wrapper(self, fun)

    def _jit(self):
        if self._jitted is None:
            self._jitted = jax.jit(self._fun, compiler_options=light_compile_options(), **self._kwargs)
        return self._jitted

    def __call__(self, *args, **kwargs):
        if tracing():
            if self._nested is None:
                self._nested = jax.jit(self._fun, **self._kwargs)
            return self._nested(*args, **kwargs)
        return (self._jitted or self._jit())(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("_"):  # copy, pickle and inspect probe dunders: not the jit's
            raise AttributeError(name)
        return getattr(self._jit(), name)

    def __repr__(self) -> str:
        return f"light_jit({self._fun.__module__}.{self._fun.__qualname__})"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def light_jit(fun=None, **kwargs):
    """``jax.jit`` for a program whose compile time outweighs its run time (see
    :data:`LIGHT_COMPILE_OPTIONS`); usable as ``@light_jit`` or ``@light_jit(static_argnums=1)``."""
    if fun is None:
        return functools.partial(light_jit, **kwargs)
    return _LightJit(fun, kwargs)


def bucket(n: int) -> int:
    """Smallest power of two >= n (at least 8): the row counts that compiled programs are padded
    to, so that a handful of programs serve any number of rows."""
    return max(8, 1 << (int(n) - 1).bit_length())


def float64_process() -> None:
    """Enable JAX's 64-bit types for the whole process: for probprop's own programs (the command
    line, benchmark workers), never called on import."""
    jax.config.update("jax_enable_x64", True)


def count_rejections(state) -> np.ndarray:
    """Updates refused by the variance guards so far (the ``rejections`` counters of PBP and
    TAGI states, plus PBP's ``noise_rejections``), per network: a leading batch axis is kept.
    Counted on the host: an eager sum on the device would compile a small program for every
    new weight shape."""
    counts = sum(np.asarray(r).sum(axis=(-2, -1), dtype=np.int64) for r in state.rejections)
    return counts + np.asarray(getattr(state, "noise_rejections", 0), np.int64)

"""One epoch of mini-batch gradient descent, shared by the gradient-trained learners.

``sgd_epoch`` shuffles the data with a key, cuts it into ``ceil(n / batch_size)`` batches of one
fixed shape (the last partial batch padded with masked rows), and runs every optimiser step in one
``jax.lax.scan``, so one compiled shape serves every epoch.

The loss contract keeps masking out of the learners: a loss function returns the loss of each
row of the batch and a data-independent penalty,

    per_row, penalty = loss_fn(params, X_batch, y_batch, key)      # shapes (B,), ()

and the step minimises ``sum(mask * per_row) / sum(mask) + penalty``: the mean over the real
rows only, so a padded batch gives exactly the gradient of the smaller, unpadded batch (padded
rows must hold finite values: their loss is discarded, but a nan gradient would not be). A batch
with no real row (possible only when the caller passes a ``mask`` of padded data rows) leaves
params and optimiser state untouched: an Adam step with a zero gradient would still move them.

``sgd_epoch`` is traceable (call it inside your own ``jax.jit``, with a loss closing over traced
hyper-parameters, or under ``jax.vmap`` over independent networks); :func:`compiled_epoch` is
the same function jitted with ``loss_fn``, ``optimizer`` and ``batch_size`` static, for loss
functions and optimisers that are hashable and created once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.learners._order import permutation

if TYPE_CHECKING:  # optax is imported where it is used: the regressors that need no optimiser skip it
    import optax

__all__ = ["GradientState", "as_xy", "batch_plan", "batches", "compiled_epoch", "holdout", "masked_objective", "sgd_epoch",
           "sgd_step", "stepwise_epoch"]

@partial(
    jax.tree_util.register_dataclass,
    data_fields=["params", "opt_state", "key", "epoch", "loss"],
    meta_fields=["spec"],
)
@dataclass(frozen=True)
class GradientState:
    """State of a gradient-trained learner (MAP net, DVI, MC dropout): its ``params`` (a pytree
    the learner documents), the optimiser state, the key for shuffles (and dropout masks),
    the number of epochs done, the last epoch's mean objective, and the static ``spec``."""

    params: dict
    opt_state: object
    key: jax.Array
    epoch: jax.Array
    loss: jax.Array
    spec: object

    def replace(self, **changes) -> GradientState:
        return dataclasses.replace(self, **changes)


LossFn = Callable[[object, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def batch_plan(key: jax.Array, n: int, batch_size: int, mask: jax.Array | None = None):
    """The row order and per-batch keys of one epoch, shared by :func:`sgd_epoch` and tests.

    Returns ``(key, order, keep, batch_keys)``: the key to carry to the next epoch, ``order`` of
    shape (n_batches * batch_size,) indexing the data rows (padding repeats row 0), ``keep`` the
    matching boolean mask and ``batch_keys`` one key per batch (for dropout and the like).
    Real rows come first in a uniformly random order; rows with ``mask`` False and padding last.
    The plan of data padded with masked rows is that of the unpadded data (same order of the
    real rows, same batch keys), so padding a data set with masked rows changes no result as
    long as it adds no batch holding a real row.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_batches = max(1, math.ceil(n / batch_size))
    key, perm_key, loss_key = jax.random.split(key, 3)
    keep = jnp.ones(n, bool) if mask is None else jnp.asarray(mask, bool)
    # sort uniform draws, excluded rows last: the draws of row i do not depend on n (threefry is
    # counter-based), so appending masked rows leaves the order of the real rows unchanged
    u = jax.random.uniform(perm_key, (n,))
    order = jnp.argsort(jnp.where(keep, u, 2.0))
    keep = keep[order]
    pad = n_batches * batch_size - n
    order = jnp.concatenate([order, jnp.zeros(pad, order.dtype)])
    keep = jnp.concatenate([keep, jnp.zeros(pad, bool)])
    batch_keys = jax.vmap(lambda b: jax.random.fold_in(loss_key, b))(jnp.arange(n_batches))
    return key, order, keep, batch_keys


def masked_objective(loss_fn: LossFn, params, X, y, keep, key):
    """``sum(keep * per_row) / max(sum(keep), 1) + penalty``: the mean loss over the real rows."""
    per_row, penalty = loss_fn(params, X, y, key)
    total = jnp.sum(jnp.where(keep, per_row, 0.0))  # where, not a product: 0 * inf would be nan
    return total / jnp.maximum(jnp.sum(keep), 1).astype(per_row.dtype) + penalty


def sgd_step(params, opt_state, xs, ys, ks, key, loss_fn: LossFn, optimizer: optax.GradientTransformation,
             masked: bool):
    """One optimiser step on a batch whose rows with ``ks`` False do not count; with ``masked``
    (the caller padded the data with masked rows) a batch with no real row takes no step.
    Returns ``(params, opt_state, objective x real rows)``, the objective as before the step."""
    import optax

    loss, grads = jax.value_and_grad(lambda p: masked_objective(loss_fn, p, xs, ys, ks, key))(params)
    updates, new_opt = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    if masked:  # an all-padding batch must not take an (Adam) step
        real = jnp.any(ks)
        new_params = jax.tree.map(lambda a, b: jnp.where(real, a, b), new_params, params)
        new_opt = jax.tree.map(lambda a, b: jnp.where(real, a, b), new_opt, opt_state)
    return new_params, new_opt, loss * jnp.sum(ks).astype(loss.dtype)


def sgd_epoch(
    params,
    opt_state,
    key: jax.Array,
    X: jax.Array,
    y: jax.Array,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    mask: jax.Array | None = None,
):
    """One shuffled pass over ``(X, y)`` in mini-batches of ``batch_size`` rows.

    ``X`` has shape (n, d), ``y`` shape (n,) or (n, k); ``mask`` (n,) marks the real rows when the
    caller has padded the data itself. Returns ``(params, opt_state, key, mean_loss)`` where
    ``mean_loss`` is the objective of each batch weighted by its number of real rows (the mean
    per-row loss over the epoch, plus the penalty), as evaluated before each step.
    """
    X, y = jnp.asarray(X), jnp.asarray(y)
    key, order, kb, batch_keys = _batches(key, X.shape[0], batch_size, mask)

    def step(carry, batch):
        params, opt_state, weighted = sgd_step(*carry, *batch, loss_fn, optimizer, mask is not None)
        return (params, opt_state), weighted

    (params, opt_state), weighted = lax.scan(step, (params, opt_state), (X[order], y[order], kb, batch_keys))
    return params, opt_state, key, _mean_loss(weighted, kb)


def _mean_loss(weighted, keep):
    """The epoch's objective: the batches' objectives x real rows, summed over batches (axis 0),
    over the real rows (``keep``: batch axis first, rows last; a member axis between them)."""
    total = jnp.sum(keep, axis=(0, -1)).astype(weighted.dtype)
    return jnp.sum(weighted, axis=0) / jnp.maximum(total, 1.0)


def _batches(key: jax.Array, n: int, batch_size: int, mask: jax.Array | None = None):
    """:func:`batch_plan` cut into batches: ``(key, order, keep, batch_keys)`` with ``order`` and
    ``keep`` of shape (n_batches, batch_size)."""
    key, order, keep, batch_keys = batch_plan(key, n, batch_size, mask)
    n_batches = batch_keys.shape[0]
    return key, order.reshape(n_batches, batch_size), keep.reshape(n_batches, batch_size), batch_keys


#: :func:`_batches` compiled (``n`` and ``batch_size`` static), for :func:`stepwise_epoch`.
batches = jax.jit(_batches, static_argnums=(1, 2))


def stepwise_epoch(plan, step, params, opt_state, key):
    """:func:`sgd_epoch`'s arithmetic with one compiled call per batch instead of one loop over
    them, for networks whose operations XLA:CPU runs slowly inside a loop (convolutions: see
    docs/engine.md). ``plan(key)`` returns :func:`batches`' arrays, batch axis first (a member
    axis may follow it); ``step(params, opt_state, order_b, keep_b, key_b)`` returns what
    :func:`sgd_step` returns, taking the batch's rows from the data it closes over. Returns
    ``(params, opt_state, key, mean_loss)`` as :func:`sgd_epoch` does."""
    key, order, keep, batch_keys = plan(key)
    order, keep = np.asarray(order), np.asarray(keep)
    if not jax.dtypes.issubdtype(batch_keys.dtype, jax.dtypes.prng_key):
        batch_keys = np.asarray(batch_keys)  # raw keys: sliced on the host, not one device op per batch
    weighted = []
    for b in range(order.shape[0]):
        params, opt_state, w = step(params, opt_state, order[b], keep[b], batch_keys[b])
        weighted.append(w)
    return params, opt_state, key, _mean_loss(jnp.stack(weighted), jnp.asarray(keep))


#: :func:`sgd_epoch` compiled, with the loss, the optimiser and the batch size static.
compiled_epoch = jax.jit(sgd_epoch, static_argnames=("loss_fn", "optimizer", "batch_size"))


def check_positive(name: str, value, allow_none: bool = False) -> None:
    """Raise ValueError unless ``value`` is a finite number > 0 (or None when allowed)."""
    if value is None and allow_none:
        return
    if value is None or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_network_spec(spec) -> None:
    """The checks every mini-batch network spec shares: n_in, hidden, batch_size, dtype."""
    if not (isinstance(spec.n_in, int) and spec.n_in >= 1):
        raise ValueError(f"n_in must be a positive int, got {spec.n_in!r}")
    if not isinstance(spec.hidden, tuple) or not all(isinstance(h, int) and h >= 1 for h in spec.hidden):
        raise ValueError(f"hidden must be a tuple of positive ints, got {spec.hidden!r}")
    if not (isinstance(spec.batch_size, int) and spec.batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {spec.batch_size!r}")
    if spec.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {spec.dtype!r}")


def adam(spec) -> optax.GradientTransformation:
    """The optimiser of the gradient-trained learners: Adam at ``spec.learning_rate``."""
    import optax

    return optax.adam(spec.learning_rate)


def as_xy(X, y) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` as float64 arrays of shapes (n, d) and (n,), or a ValueError naming the shapes."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    return X, y


def holdout(n: int, val_fraction: float, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(val, fit)`` of a random validation part of ``n`` training rows, the split
    the hyperparameter searches of the gradient learners use (never test data)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n_val = round(val_fraction * n)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves no training or no validation rows (n={n})")
    perm = np.asarray(permutation(key, n))  # jax.random.permutation's, on the host
    return perm[:n_val], perm[n_val:]

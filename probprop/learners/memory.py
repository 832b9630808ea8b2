"""How much memory a learner state takes, known from its spec before anything is built.

The estimators refuse a network that would not fit in this machine's memory before they build it,
and the model-file loader refuses a file that declares one; both ask :func:`check_memory`. The
state's structure and shapes come from ``jax.eval_shape`` of the learner's ``init``
(:func:`state_template`): nothing is allocated.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

#: A learner state takes about this many times its own size in memory while it trains (the
#: state, the updated copy, the gradients or the moments of one step).
TRAINING_MEMORY_FACTOR = 4


def state_template(spec):
    """The learner state's structure and leaf shapes for ``spec``, without building it."""
    import jax

    from probprop.learners import for_spec

    learner = for_spec(spec)

    def init_from_seed(seed):  # named: JAX's trace events (probprop bench speed) show the name
        return learner.init(jax.random.PRNGKey(seed), spec)

    with jax.enable_x64(True):
        # the key made inside the trace: abstract (a concrete one compiled JAX's seeding program),
        # of whatever shape and type JAX's configured generator gives
        return jax.eval_shape(init_from_seed, 0)


def memory_limit() -> int:
    """Bytes a network's state may take: this machine's physical memory (16 GiB when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 16 << 30


def state_bytes(spec) -> int:
    """Bytes of the learner state that ``spec`` declares, from ``jax.eval_shape`` (nothing is built)."""
    try:
        return _state_bytes_cached(spec)
    except TypeError:  # an unhashable spec
        return _state_bytes(spec)


def _state_bytes(spec) -> int:
    import jax

    leaves = jax.tree_util.tree_leaves(state_template(spec))
    return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in leaves)  # exact integers


_state_bytes_cached = functools.lru_cache(maxsize=256)(_state_bytes)


def _network_of(spec) -> tuple[str, str]:
    """What the message names: the network's sizes (convolutions, if any, then hidden sizes) and
    the advice that shrinks it."""
    member = getattr(spec, "member", None)
    spec = spec if member is None else member
    hidden, conv = getattr(spec, "hidden", None), tuple(getattr(spec, "conv", ()) or ())
    if not conv:  # PBP's convolutions are layer pieces, their outputs counted among the hidden sizes
        conv = tuple(piece for piece in getattr(spec, "layers", None) or () if hasattr(piece, "channels"))
        hidden = hidden if not conv or hidden is None else tuple(hidden[len(conv):])
    if not conv:
        return f"hidden sizes {hidden}", "choose smaller hidden sizes"
    maps = [getattr(piece, "channels", None) for piece in conv]
    pools = [getattr(piece, "pool", None) for piece in conv]
    return (f"convolutions of {maps} feature maps (pool sizes {pools}) and hidden sizes {hidden}",
            "choose fewer feature maps, more pooling or smaller hidden sizes")


def check_memory(spec, factor: float = TRAINING_MEMORY_FACTOR) -> int:
    """Raise ValueError, naming the network's sizes and the estimate, when the state ``spec``
    declares would take more than :func:`memory_limit` (``factor`` times its size: training
    needs working copies). Returns the estimate in bytes."""
    need = state_bytes(spec) * factor
    limit = memory_limit()
    if need > limit:
        sizes, advice = _network_of(spec)
        raise ValueError(
            f"a network with {sizes} and {spec.n_in} inputs needs about {_gib(need)} of memory "
            f"(its state {_gib(state_bytes(spec))}), more than this machine's {_gib(limit)}; {advice}"
        )
    return need


def _gib(n: float) -> str:
    return f"{n / (1 << 30):,.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):,.1f} MiB"

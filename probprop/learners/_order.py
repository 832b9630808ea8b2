"""The random order of the data in each epoch, shared by the sequential learners (PBP, TAGI).

``permutation(key, n)`` returns exactly ``jax.random.permutation(key, n)``, about five times
faster on XLA:CPU. JAX shuffles by sorting ``arange(n)`` by fresh 32-bit random keys, in
``ceil(3 log n / log(2**32 - 1))`` rounds, with a stable two-operand sort
(``lax.sort_key_val``), which XLA:CPU runs through a comparator call per comparison: 3.8 ms
for the 10,741 rows of naval, about a tenth of a PBP epoch there. Sorting the single 64-bit
word ``key << 32 | position`` instead orders by key and breaks ties by position, which is
what the stable sort does, so the order is the same bit for bit, and XLA:CPU sorts a single
operand of a primitive type directly (0.7 ms). The random keys come from
:mod:`probprop.learners._threefry` (JAX's numbers, a program that compiles in a fraction of
the time).
"""

import jax
import jax.numpy as jnp
import numpy as np

from probprop.learners import _threefry

_UINT32_MAX = np.iinfo(np.uint32).max
_LOW_32 = 0xFFFFFFFF


def _rounds(n: int) -> int:
    """Sorting rounds of jax.random.permutation (its static stopping rule, exponent 3)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(_UINT32_MAX)))


def _sort_rounds(key, size: int, xp, keep=None):
    """JAX's permutation rounds over ``range(size)`` in ``xp`` (NumPy on the host, else jax.numpy;
    64-bit types needed): each round sorts the 64-bit words ``random key << 32 | position``, which orders by key
    and breaks ties by position as the stable sort does. ``keep(i, position)``, when given, marks
    the positions that draw a key in round ``i``; the others get the largest key and keep their
    position (padding)."""
    order = xp.arange(size, dtype=xp.int64)
    position = xp.arange(size, dtype=xp.uint64)
    for i in range(_rounds(size)):
        key, sub = _threefry.split(key)
        words = xp.asarray(_threefry.bits(sub, size)).astype(xp.uint64) << xp.uint64(32)
        if keep is not None:
            words = xp.where(keep(i, position), words, np.uint64(_LOW_32 << 32))  # the largest key
        ranked = xp.sort(words | position)
        order = order[(ranked & xp.uint64(_LOW_32)).astype(xp.int32)]
    return order


def permutation(key: jax.Array, n: int) -> jax.Array | np.ndarray:
    """A uniformly random order of ``range(n)``: the same array as ``jax.random.permutation(key, n)``.
    For a concrete raw key outside a trace it is computed on the host, in NumPy (int64), compiling
    nothing (JAX's own compiled two programs, ~0.6 s, on a first call). Needs 64-bit types (the
    packed words): without them, and from 2**31 rows, it is ``jax.random.permutation`` itself."""
    n = int(n)
    if n >= 2**31 or not jax.config.jax_enable_x64:
        return jax.random.permutation(key, n)  # positions would not fit, or no 64-bit words
    return _sort_rounds(key, n, np if _threefry.on_host(key) else jnp)


#: Row counts at which :func:`permutation` needs one more sorting round: (2**32 - 1)**(k / 3).
ROUND_LIMITS = (1625, 2_642_245)


def shuffled_order(key: jax.Array, mask: jax.Array) -> jax.Array:
    """A uniformly random order of the rows with mask True, padded rows last.

    When the mask marks a prefix (the real rows first, padding after them, as the estimators
    pad) and JAX's threefry is partitionable (its default: element i of a draw depends on i
    only), the real rows come out in exactly the order ``permutation(key, mask.sum())`` gives
    unpadded data, provided the padded length needs as many sorting rounds as the real one
    (:data:`ROUND_LIMITS`; ``fit``'s row buckets never straddle one). So a padded fit
    reproduces an unpadded one. (``partial_fit`` pads batches under 8,192 rows to powers of two,
    which do straddle them: a batch of 1,025-1,625 rows padded to 2,048 takes one more sorting
    round than unpadded, so its order differs from :func:`permutation`'s, as uniform; longer
    batches are padded as ``fit`` pads.) Each round sorts the real rows' words as :func:`permutation` does and gives the
    padding the largest key, so it sorts after every real row that does not draw that key itself
    (with a prefix mask: after every real row). Without 64-bit types (and from 2**32 rows) it
    argsorts uniform draws instead: still uniform, padding still last, but not
    :func:`permutation`'s order.
    """
    size = mask.shape[0]
    if size >= 2**32 or not jax.config.jax_enable_x64:  # positions would not fit, or no 64-bit words
        u = jax.random.uniform(key, mask.shape)
        return jnp.argsort(jnp.where(mask, u, 2.0))
    mask = jnp.asarray(mask, bool)
    real = jnp.sum(mask).astype(jnp.uint64)

    def keep(i, position):
        # first round: the padded rows themselves; later rounds: the positions past the real
        # rows, where the first round put the padding
        return mask if i == 0 else position < real

    return _sort_rounds(key, size, jnp, keep)

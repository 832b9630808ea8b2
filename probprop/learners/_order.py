"""The random order of the data in each epoch, shared by the sequential learners (PBP, TAGI).

``permutation(key, n)`` returns exactly ``jax.random.permutation(key, n)``, about five times
faster on XLA:CPU. JAX shuffles by sorting ``arange(n)`` by fresh 32-bit random keys, in
``ceil(3 log n / log(2**32 - 1))`` rounds, with a stable two-operand sort
(``lax.sort_key_val``), which XLA:CPU runs through a comparator call per comparison: 3.8 ms
for the 10,741 rows of naval, about a tenth of a PBP epoch there. Sorting the single 64-bit
word ``key << 32 | position`` instead orders by key and breaks ties by position, which is
what the stable sort does, so the order is the same bit for bit, and XLA:CPU sorts a single
operand of a primitive type directly (0.7 ms).
"""

import jax
import jax.numpy as jnp
import numpy as np

_UINT32_MAX = np.iinfo(np.uint32).max
_LOW_32 = 0xFFFFFFFF


def _rounds(n: int) -> int:
    """Sorting rounds of jax.random.permutation (its static stopping rule, exponent 3)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(_UINT32_MAX)))


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random order of ``range(n)``: the same array as ``jax.random.permutation(key, n)``."""
    n = int(n)
    if n >= 2**32:
        return jax.random.permutation(key, n)  # positions would not fit in the low word
    order = jnp.arange(n)
    position = jnp.arange(n, dtype=jnp.uint64)
    for _ in range(_rounds(n)):
        key, sub = jax.random.split(key)
        bits = jax.random.bits(sub, (n,), jnp.uint32).astype(jnp.uint64)
        ranked = jnp.sort((bits << 32) | position)
        order = order[(ranked & _LOW_32).astype(jnp.int32)]
    return order


def shuffled_order(key: jax.Array, mask: jax.Array) -> jax.Array:
    """A uniformly random order of the rows with mask True, padded rows last."""
    u = jax.random.uniform(key, mask.shape)
    return jnp.argsort(jnp.where(mask, u, 2.0))

"""JAX's random keys, split and 32-bit draws, with the same numbers and a cheaper program.

probprop's learners draw from JAX's default generator, the Threefry-2x32 hash with
"partitionable" counters (``jax_threefry_partitionable``, the default): element ``i`` of a draw
hashes the 64-bit counter ``i`` (as its high and low 32-bit words) under the key, a split's
``i``-th key is the hash pair of counter ``i``, and a 32-bit draw is the XOR of the pair. On
XLA:CPU JAX lowers the hash as a rolled loop of five steps, which costs far more to compile
than to run: ``jax.random.bits`` of 512 numbers took 0.21 s to compile (on one core of this
machine) and the same twenty rounds written straight through, as here, 0.05 s (and they run
about three times as fast), so an epoch's shuffle compiles in a fraction of the time. On NumPy
the same arithmetic gives keys and splits on the host with no compiled program at all (a first
fit compiled three small ones for them: seed, split and unstack, about 0.2 s).

Every function returns exactly what its ``jax.random`` counterpart returns (the tests hold
them bit for bit). Where that arithmetic is not JAX's generator (``jax_threefry_partitionable``
off, another ``jax_default_prng_impl``, typed keys from ``jax.random.key``, 64-bit types off)
they are ``jax.random`` itself. Inside a JAX trace (jit, vmap, ``eval_shape``) they trace, as
``jax.random`` would; :func:`normal_over`, which returns a NumPy array, is for concrete keys
outside a trace only.
"""

import operator

import jax
import jax.numpy as jnp
import numpy as np

from probprop.learners.base import light_jit, tracing

#: The rotations of the Threefry-2x32 rounds (Salmon et al. 2011), alternating by groups of four.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def threefry2x32(k1, k2, x0, x1):
    """The Threefry-2x32 hash (20 rounds) of the counter words (x0, x1) under the key (k1, k2),
    elementwise; every argument a uint32 array (NumPy or JAX, broadcast), arithmetic mod 2**32."""
    xp = jnp if any(isinstance(a, jax.Array) for a in (k1, k2, x0, x1)) else np
    u32 = xp.uint32
    k1, k2, x0, x1 = (xp.asarray(a, u32) for a in (k1, k2, x0, x1))
    keys = (k1, k2, k1 ^ k2 ^ u32(_PARITY))
    x0 = x0 + keys[0]
    x1 = x1 + keys[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = (x1 << u32(r)) | (x1 >> u32(32 - r))
            x1 = x0 ^ x1
        x0 = x0 + keys[(block + 1) % 3]
        x1 = x1 + keys[(block + 2) % 3] + u32(block + 1)
    return x0, x1


def _generator_is_ours() -> bool:
    """JAX's generator is the partitionable Threefry-2x32 that this module computes, on raw keys."""
    config = jax.config
    return (bool(config.jax_threefry_partitionable) and config.jax_default_prng_impl == "threefry2x32"
            and not config.jax_enable_custom_prng)


def _ours(key) -> bool:
    """``key`` is a raw key of that generator (uint32[2]), not a typed key."""
    dtype = getattr(key, "dtype", None)
    return (_generator_is_ours() and dtype is not None and not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
            and np.shape(key) == (2,) and np.dtype(dtype) == np.uint32)


def _module(key):
    """NumPy (on the host) for a concrete key outside any trace, else jax.numpy."""
    return jnp if tracing() or isinstance(key, jax.core.Tracer) else np


def _hash_of_counters(key, n: int):
    """The hash pair of the counters 0 .. n-1 under ``key``, and the array module it used."""
    xp = _module(key)
    key = xp.asarray(key)
    return (*threefry2x32(key[0], key[1], *_counters(xp, n)), xp)


def on_host(key) -> bool:
    """:func:`split` and :func:`bits` of ``key`` give NumPy arrays (a concrete raw key of JAX's
    generator, outside any trace)."""
    return _ours(key) and _module(key) is np


def _counters(xp, n: int):
    """The high and low 32-bit words of the counters 0 .. n-1 (n < 2**32: the high words are 0)."""
    return xp.zeros(n, xp.uint32), xp.arange(n, dtype=xp.uint32)


def key(seed) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` (a raw uint32[2] key), built on the host: the 64-bit seed's
    high and low 32-bit words. Where that is not what JAX does (64-bit types off, a negative seed,
    a seed offset, another generator, inside a trace), it is ``jax.random.PRNGKey`` itself."""
    if tracing() or not (_generator_is_ours() and jax.config.jax_enable_x64
                         and not jax.config.jax_random_seed_offset):
        return jax.random.PRNGKey(seed)
    seed = operator.index(seed)  # an integer, as jax.random.PRNGKey requires
    if not 0 <= seed < 2**63:
        return jax.random.PRNGKey(seed)
    return np.array([seed >> 32, seed & 0xFFFFFFFF], np.uint32)


def split(key, num: int = 2):
    """``jax.random.split(key, num)``: shape (num, 2); a NumPy array for a concrete key outside a trace."""
    if not _ours(key):
        return jax.random.split(key, num)
    a, b, xp = _hash_of_counters(key, num)
    return xp.stack([a, b], axis=1)


def bits(key, n: int):
    """``jax.random.bits(key, (n,), uint32)`` (n < 2**32); a NumPy array for a concrete key
    outside a trace."""
    if not _ours(key):
        return jax.random.bits(key, (n,), jnp.uint32)
    a, b, _ = _hash_of_counters(key, n)
    return a ^ b


def normal(key, n: int):
    """``jax.random.normal(key, (n,), float64)``, for use inside a compiled program (called
    outside one it runs operation by operation): 64 random bits per number (the hash pair, high
    word first), a uniform draw in (-1, 1) from their top 52 as JAX makes it, then
    ``sqrt(2) erfinv(u)``. Needs JAX's 64-bit types (else it is ``jax.random.normal``)."""
    if not (_ours(key) and jax.config.jax_enable_x64):
        return jax.random.normal(key, (n,), jnp.float64)
    key = jnp.asarray(key)
    a, b = threefry2x32(key[0], key[1], *_counters(jnp, n))
    u64 = jnp.uint64
    word = (a.astype(u64) << u64(32)) | b.astype(u64)
    one = np.array(1.0, np.float64).view(np.uint64)
    floats = jax.lax.bitcast_convert_type((word >> u64(64 - 52)) | u64(one), jnp.float64) - 1.0
    lo = np.nextafter(np.float64(-1.0), np.float64(0.0))
    u = jnp.maximum(lo, floats * (1.0 - lo) + lo)
    return np.sqrt(2.0) * jax.lax.erf_inv(u)


#: The smallest draw of :func:`normal_over`: every layer of up to this many weights shares one
#: compiled sampler (each further size is another ~0.2 s of compilation on a first fit).
NORMAL_DRAW_MIN = 4096


def normal_over(key, shape: tuple[int, ...], divisor: float) -> np.ndarray:
    """``jax.random.normal(key, shape) / divisor`` in float64 as a NumPy array (bit for bit as a
    jitted draw of that shape; ``divisor`` 1 gives the draw itself), as the prefix of a draw of the
    next power-of-two size (at least :data:`NORMAL_DRAW_MIN`): with JAX's (default) partitionable
    threefry each element depends on its flat index only, so one compiled sampler serves every
    layer shape of every learner (PBP's and TAGI's initial means). For concrete keys outside a
    trace only; for a key of another generator (or a typed key) it draws the shape's own size."""
    size = int(np.prod(shape))
    drawn = max(NORMAL_DRAW_MIN, 1 << (size - 1).bit_length()) if _ours(key) else size
    return np.asarray(_normal_draw(key, drawn, divisor))[:size].reshape(shape)


@light_jit(static_argnums=1)
def _normal_draw(key, size: int, divisor) -> jax.Array:
    # a traced divisor: the same division, in the same kernel, as a normal draw divided by a constant
    return normal(key, size) / divisor  # jax.random.normal's numbers, a cheaper program

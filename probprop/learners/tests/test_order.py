"""The fast epoch order is jax.random.permutation, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probprop  # noqa: F401  (float64, as the learners run)
from probprop.learners._order import permutation, shuffled_order


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 277, 455, 10_741, 41_157, 70_000])
def test_permutation_equals_jax(n):
    for seed in range(3):
        key = jax.random.PRNGKey(1000 * seed + n)
        expected = np.asarray(jax.random.permutation(key, n))
        got = np.asarray(jax.jit(permutation, static_argnums=1)(key, n))
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_permutation_ties_resolved_as_a_stable_sort():
    """With ~1e5 rows the 32-bit sort keys collide (probability ~0.7 per round); the stable
    sort keeps collided rows in their current order, and so does the packed key."""
    n = 100_000

    def has_tie(key):
        bits = np.asarray(jax.random.bits(jax.random.split(key)[1], (n,), jnp.uint32))
        return len(np.unique(bits)) < n

    key = next(k for k in (jax.random.PRNGKey(s) for s in range(40)) if has_tie(k))
    np.testing.assert_array_equal(np.asarray(permutation(key, n)), np.asarray(jax.random.permutation(key, n)))


def test_permutation_under_vmap():
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    got = jax.vmap(lambda k: permutation(k, 500))(keys)
    for k, row in zip(keys, got):
        np.testing.assert_array_equal(np.asarray(row), np.asarray(jax.random.permutation(k, 500)))


def test_shuffled_order_puts_padding_last():
    mask = jnp.arange(16) < 11
    order = np.asarray(shuffled_order(jax.random.PRNGKey(0), mask))
    assert sorted(order[:11]) == list(range(11))
    assert sorted(order[11:]) == list(range(11, 16))


@pytest.mark.parametrize("n, size", [(1, 8), (11, 16), (277, 288), (455, 480), (1600, 1625), (1700, 2048), (10_741, 11_264)])
def test_shuffled_order_of_a_padded_prefix_is_the_unpadded_permutation(n, size):
    mask = jnp.arange(size) < n
    for seed in range(2):
        key = jax.random.PRNGKey(seed)
        order = np.asarray(jax.jit(shuffled_order)(key, mask))
        np.testing.assert_array_equal(order[:n], np.asarray(jax.random.permutation(key, n)))
        np.testing.assert_array_equal(np.sort(order[n:]), np.arange(n, size))


def test_shuffled_order_of_any_mask_is_a_permutation_with_the_masked_rows_last():
    rng = np.random.default_rng(0)
    mask = jnp.asarray(rng.random(3000) < 0.6)  # not a prefix, and two sorting rounds
    order = np.asarray(shuffled_order(jax.random.PRNGKey(1), mask))
    real = int(mask.sum())
    np.testing.assert_array_equal(np.sort(order), np.arange(3000))
    assert np.asarray(mask)[order[:real]].all() and not np.asarray(mask)[order[real:]].any()


@pytest.mark.parametrize("n", [0, 1, 2, 455, 1625, 1626, 10_741])
def test_permutation_on_the_host_equals_jax(n):
    """A concrete key outside a trace: NumPy arrays (no compiled program), jax.random's order."""
    for seed in range(3):
        key = jax.random.PRNGKey(7 * seed + n)
        got = permutation(key, n)
        assert isinstance(got, np.ndarray)
        expected = np.asarray(jax.random.permutation(key, n))
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_permutation_without_64_bit_types_is_jax_random():
    with jax.enable_x64(False):
        key = jax.random.PRNGKey(3)
        np.testing.assert_array_equal(np.asarray(permutation(key, 10)), np.asarray(jax.random.permutation(key, 10)))


def test_shuffled_order_without_64_bit_types_still_shuffles_with_the_padding_last():
    """Without uint64 the packed words would lose the random key (a shift by 32 of a 32-bit word):
    the order must still be a shuffle, not the identity."""
    with jax.enable_x64(False):
        mask = jnp.arange(64) < 50
        orders = [np.asarray(shuffled_order(jax.random.PRNGKey(seed), mask)) for seed in range(2)]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order[:50]), np.arange(50))
        np.testing.assert_array_equal(np.sort(order[50:]), np.arange(50, 64))
        assert not np.array_equal(order[:50], np.arange(50))
    assert not np.array_equal(orders[0], orders[1])

"""Sharded stochastic EP (:mod:`probprop.learners.pbp_sharded`): one shard is serial SEP bit for
bit, the vmapped shards equal the shards run one after another, and on a Bayesian linear model
the sharded fit lands where serial SEP does."""

import jax
import numpy as np
import pytest

import probprop  # noqa: F401  (float64 in the test process)
from probprop.learners import pbp, pbp_sharded
from probprop.learners.tests.test_pbp_sep import _one_hot_problem


def _network_problem(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n)
    state = pbp.init(jax.random.PRNGKey(0), pbp.PBPSpec(n_in=3, hidden=(8,), inference="sep"))
    return X, (y - y.mean()) / y.std(), state


def _equal(a, b, rtol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if rtol:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-12)
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_one_shard_is_serial_sep_bit_for_bit():
    X, y, start = _network_problem()
    serial = start
    for _ in range(3):
        serial = pbp.update(serial, X, y)
    sharded, sites = pbp_sharded.fit(start, X, y, n_shards=1, rounds=3)
    _equal(serial.means, sharded.means)
    _equal(serial.variances, sharded.variances)
    _equal(serial.noise, sharded.noise)
    _equal(serial.sites, sharded.sites)
    _equal(serial.tied, jax.tree.map(lambda a: a[0], sites))
    _equal(serial.key, sharded.key)


def test_vmapped_shards_equal_the_shards_one_after_another():
    X, y, start = _network_problem(n=101)  # shards of 34, 34 and 33 rows: padding and masks
    together, sites_t = pbp_sharded.fit(start, X, y, n_shards=3, rounds=2)
    apart, sites_a = pbp_sharded.fit(start, X, y, n_shards=3, rounds=2, sequential=True)
    _equal(together.means, apart.means, rtol=1e-9)
    _equal(together.variances, apart.variances, rtol=1e-9)
    _equal(sites_t, sites_a, rtol=1e-9)
    moved = [np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in zip(together.means, start.means)]
    assert max(moved) > 0.05  # the rounds did learn


def test_shards_land_where_serial_sep_does_on_a_linear_model():
    """One-hot Bayesian linear model (the SEP test's): 4 shards, 40 rounds, against serial SEP's
    40 epochs (both with the EP prior step): the posterior means and variances agree."""
    X, y, spec, state, _, _ = _one_hot_problem()
    start = pbp.init(jax.random.PRNGKey(0), spec.__class__(**{**spec.__dict__, "inference": "sep"}))
    start = start.replace(means=state.means)
    serial = start
    for _ in range(40):
        serial = pbp.update(serial, X, y)
    order = np.random.default_rng(0).permutation(len(y))  # every shard sees every group
    shards = pbp_sharded.split_rows(X, y, 4, order)
    sites = pbp_sharded.init_sites(start, 4)
    sharded = start
    for _ in range(40):
        sharded, sites = pbp_sharded.round_update(sharded, sites, shards)
    v_serial, v_sharded = np.asarray(serial.variances[0]), np.asarray(sharded.variances[0])
    np.testing.assert_allclose(v_sharded, v_serial, rtol=0.15)
    np.testing.assert_allclose(np.asarray(sharded.means[0]), np.asarray(serial.means[0]),
                               atol=0.3 * np.sqrt(v_serial).max())


def test_bad_input():
    X, y, start = _network_problem(n=10)
    with pytest.raises(ValueError, match="n_shards must lie between 1 and the number of rows"):
        pbp_sharded.split_rows(X, y, 11)
    adf = pbp.init(jax.random.PRNGKey(0), pbp.PBPSpec(n_in=3, hidden=(4,)))
    with pytest.raises(ValueError, match="inference='sep'"):
        pbp_sharded.init_sites(adf, 2)
    shards = pbp_sharded.split_rows(X, y, 2)
    with pytest.raises(ValueError, match="damping"):
        pbp_sharded.round_update(start, pbp_sharded.init_sites(start, 2), shards, damping=1.5)

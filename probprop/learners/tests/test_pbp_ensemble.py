"""The ensemble learner's epoch on shared data, against one copy of the data per member and
against each member's own PBP epoch (the exact special case: members are independent)."""

import jax
import numpy as np
import pytest

import probprop  # noqa: F401  (enables float64)
from probprop.learners import pbp, pbp_ensemble

SPEC = pbp_ensemble.PBPEnsembleSpec(member=pbp.PBPSpec(n_in=3, hidden=(6,)), n_members=3)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 3))
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.normal(size=37)
    mask = rng.random(37) < 0.7
    return X, y, mask


def _leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def _assert_same(a, b, atol):
    for x, z in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(x, z, rtol=0, atol=atol)


@pytest.mark.parametrize("masked", [False, True])
def test_shared_data_gives_what_one_copy_per_member_gives(data, masked):
    X, y, mask = data
    state = pbp_ensemble.init(jax.random.PRNGKey(4), SPEC)
    k = SPEC.n_members
    copies = [np.repeat(a[None], k, axis=0) for a in (X, y, mask)]
    if masked:
        shared = pbp_ensemble.update(state, X, y, mask)
        together = pbp_ensemble.update_together(state, *copies)
    else:
        shared = pbp_ensemble.update(state, X, y)
        together = pbp_ensemble.update_together(state, *copies[:2])
    _assert_same(shared, together, 1e-12)
    assert not np.allclose(np.asarray(shared.means[0]), np.asarray(state.means[0]))  # it learned


@pytest.mark.parametrize("masked", [False, True])
def test_each_member_is_its_own_pbp_epoch(data, masked):
    X, y, mask = data
    state = pbp_ensemble.init(jax.random.PRNGKey(5), SPEC)
    batched = pbp_ensemble.update(state, X, y, mask if masked else None)
    for i in range(SPEC.n_members):
        alone = pbp.update(pbp_ensemble.unstack(state, i), X, y, mask if masked else None)
        _assert_same(pbp_ensemble.unstack(batched, i), alone, 1e-10)

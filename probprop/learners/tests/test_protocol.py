"""Every learner in the registry keeps the one protocol (probprop.learners.base.Learner)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from probprop import learners
from probprop.learners import dvi, ensemble, laplace, laplace_ensemble, mapnet, mcdropout, pbp, pbp_ensemble, tagi
from probprop.learners.base import Learner, Moments

#: A small spec per registered learner: a new learner must add one here to be tested.
SPECS = {
    "pbp": pbp.PBPSpec(n_in=3, hidden=(6,)),
    "pbp_ensemble": pbp_ensemble.PBPEnsembleSpec(member=pbp.PBPSpec(n_in=3, hidden=(6,)), n_members=2),
    "tagi": tagi.TAGISpec(n_in=3, hidden=(6,)),
    "dvi": dvi.DVISpec(n_in=3, hidden=(6,)),
    "map": mapnet.MAPSpec(n_in=3, hidden=(6,)),
    "laplace": laplace.LaplaceSpec(n_in=3, hidden=(6,)),
    "ensemble": ensemble.EnsembleSpec(n_in=3, hidden=(6,), n_members=2),
    "mcdropout": mcdropout.MCDropoutSpec(n_in=3, hidden=(6,), n_samples=30),
}
#: Learners that only classify, with a small spec each (their own protocol test below).
CLASSIFIER_SPECS = {
    "laplace_ensemble": laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(6,), n_members=2, n_classes=3,
                                                             learning_rate=1e-2, n_samples=20),
}


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -1.0, 0.5]) + 0.3 * rng.normal(size=n)


def test_every_registered_learner_has_a_spec_here_and_a_consistent_entry():
    specs = {**SPECS, **CLASSIFIER_SPECS}
    assert len(specs) == len(SPECS) + len(CLASSIFIER_SPECS) and set(specs) == set(learners.REGISTRY)
    for name, learner in learners.REGISTRY.items():
        assert isinstance(learner, Learner) and learner.name == name
        assert type(specs[name]) is learner.spec_class
        assert learners.get(name) is learner and learners.for_spec(specs[name]) is learner
    assert {n for n, lr in learners.REGISTRY.items() if lr.online} == {"pbp", "pbp_ensemble", "tagi"}
    with pytest.raises(ValueError, match="unknown learner 'nope'"):
        learners.get("nope")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_init_update_predict(name):
    learner = learners.get(name)
    X, y = data()
    state = learner.init(jax.random.PRNGKey(0), SPECS[name])
    before = learner.predict(state, X)
    state = learner.update(state, X, y, None)
    mask = np.arange(48) < 40  # padded rows, masked out
    Xp, yp = np.vstack([X, np.full((8, 3), 7.0)]), np.concatenate([y, np.full(8, 99.0)])
    state = learner.update(state, Xp, yp, mask)
    moments = learner.predict(state, X)
    assert isinstance(moments, Moments)
    for field in moments:
        assert np.shape(field) == (40,) and np.all(np.isfinite(field))
    assert np.all(np.asarray(moments.epistemic_var) >= 0) and np.all(np.asarray(moments.noise_var) > 0)
    assert not np.allclose(moments.mean, before.mean)  # it learned something
    # learning made the predictions better than the prior's
    assert np.mean((np.asarray(moments.mean) - y) ** 2) < np.mean((np.asarray(before.mean) - y) ** 2)


@pytest.mark.parametrize("name", sorted(CLASSIFIER_SPECS))
def test_a_classification_learner_learns_and_predicts_each_row_alone(name):
    """init / update (masked rows too) / finish / class_samples of a classify-only learner: class
    probabilities that sum to one, better than the initial state's, and a row's the same alone."""
    learner = learners.get(name)
    X, _ = data(120)
    y = (X[:, 0] > 0).astype(float) + (X[:, 1] > 0.5)
    state = learner.init(jax.random.PRNGKey(0), CLASSIFIER_SPECS[name])

    def log_loss(s):
        p = np.asarray(learner.class_samples(s, X)).mean(0)
        return -np.mean(np.log(p[np.arange(120), y.astype(int)]))

    before = log_loss(state)
    mask = np.arange(128) < 120
    Xp, yp = np.vstack([X, np.full((8, 3), 7.0)]), np.concatenate([y, np.zeros(8)])
    for _ in range(30):
        state = learner.update(state, Xp, yp, mask)
    state = learner.finish(state, X, y, None)
    samples = np.asarray(learner.class_samples(state, X))
    np.testing.assert_allclose(samples.sum(-1), 1.0, rtol=1e-12)
    assert log_loss(state) < 0.7 * before
    np.testing.assert_allclose(np.asarray(learner.class_samples(state, X[5:6])), samples[:, 5:6], rtol=1e-10, atol=1e-12)
    moments = learner.predict(state, X)
    assert isinstance(moments, Moments) and np.shape(moments.mean) == (120, 3)
    assert np.all(np.asarray(moments.epistemic_var) > 0)
    for a, b in zip(moments, learner.predict(state, X, np.zeros_like(X))):  # input variances: none, then some
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(learner.predict(state, X, np.full_like(X, 0.5)).epistemic_var) > np.asarray(moments.epistemic_var))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_rows_prediction_does_not_depend_on_the_other_rows(name):
    """predict(X[perm]) == predict(X)[perm], and a row alone gets the prediction it gets in a batch
    (MC dropout drew its masks per row position before: up to 0.40 apart on 120 rows)."""
    learner = learners.get(name)
    X, y = data(120)
    state = learner.update(learner.init(jax.random.PRNGKey(1), SPECS[name]), X, y, None)
    perm = np.random.default_rng(3).permutation(120)
    full = learner.predict(state, X)
    shuffled = learner.predict(state, X[perm])
    alone = learner.predict(state, X[5:6])
    for a, b, c in zip(full, shuffled, alone):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a)[perm], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(c), np.asarray(a)[5:6], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["tagi", "ensemble", "mcdropout"])
def test_select_returns_one_result_type(name):
    from probprop.learners.base import Selection

    learner = learners.get(name)
    X, y = data(60)
    grids = {"tagi": (0.1, 0.5), "ensemble": (1e-3, 1e-2), "mcdropout": {"dropout": (0.01, 0.1), "tau": (1.0, 4.0)}}
    choice = learner.select(X, y, SPECS[name], epochs=2, key=jax.random.PRNGKey(0), grid=grids[name])
    assert isinstance(choice, Selection) and type(choice.spec) is learner.spec_class
    assert choice.scores.shape == tuple(len(v) for v in choice.grid.values())
    for param, value in choice.chosen.items():
        assert value in choice.grid[param] and getattr(choice.spec, param) == value
    best = np.unravel_index(np.argmax(choice.scores), choice.scores.shape)
    assert tuple(choice.chosen.values()) == tuple(v[i] for v, i in zip(choice.grid.values(), best))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_predict_takes_input_variances(name):
    """``predict(state, X, X_var)``: zero variances give the plain prediction, positive ones a
    larger variance of f, and the same state gives the same prediction twice."""
    learner = learners.get(name)
    X, y = data()
    state = learner.update(learner.init(jax.random.PRNGKey(2), SPECS[name]), X, y, None)
    plain = learner.predict(state, X)
    zero = learner.predict(state, X, np.zeros_like(X))
    for a, b in zip(plain, zero):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-12)
    noisy = learner.predict(state, X, np.full_like(X, 0.5))
    assert isinstance(noisy, Moments)
    assert np.all(np.asarray(noisy.epistemic_var) > np.asarray(plain.epistemic_var))
    again = learner.predict(state, X, np.full_like(X, 0.5))
    np.testing.assert_array_equal(np.asarray(again.epistemic_var), np.asarray(noisy.epistemic_var))

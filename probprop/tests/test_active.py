"""Issue 12, active learning: probprop.active.select and the greedy rules of
probprop.learners.acquisition."""

import numpy as np
import pytest

from probprop import MAPRegressor, PBPClassifier, PBPRegressor, TAGIRegressor
from probprop.active import METHODS, select


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(40, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=40)
    pool = rng.uniform(-4, 4, size=(300, 2))
    return PBPRegressor(hidden=(10,), epochs=20, random_state=0).fit(X, y), pool


@pytest.mark.parametrize("method", METHODS)
def test_selections_are_deterministic_and_never_repeat(fitted, method):
    model, pool = fitted
    exclude = np.arange(0, 300, 3)
    a = select(model, pool, 12, method=method, random_state=5, exclude=exclude)
    b = select(model, pool, 12, method=method, random_state=5, exclude=exclude)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 12 and not set(a.tolist()) & set(exclude.tolist())
    assert a.min() >= 0 and a.max() < 300


def test_variance_takes_the_largest_epistemic_variances(fitted):
    model, pool = fitted
    var = model.predict_dist(pool).epistemic_var
    np.testing.assert_array_equal(np.sort(select(model, pool, 7, method="variance")), np.sort(np.argsort(-var)[:7]))


def test_greedy_starts_with_the_most_uncertain_row_and_lowers_the_pool_variance_at_every_step(fitted):
    from probprop.active import _greedy

    model, pool = fitted
    picks, totals = _greedy(model, pool, 15)
    var = model.predict_dist(pool).epistemic_var
    assert picks[0] == np.argmax(var)
    # the first total is the pool's summed epistemic variance in standardised units
    assert totals[0] == pytest.approx(var.sum() / model.y_scale_**2, rel=1e-6)
    assert np.all(np.diff(totals) < 0)
    # batch-aware: it does not simply take the top 15 variances (they crowd one corner)
    assert set(picks.tolist()) != set(np.argsort(-var)[:15].tolist())


def test_reduction_lowers_the_reference_variance_at_every_step(fitted):
    from probprop.active import _reduction

    model, pool = fitted
    picks, totals = _reduction(model, pool, 10, np.arange(300), np.arange(300))
    assert np.all(np.diff(totals) < 0) and len(set(picks.tolist())) == 10
    # its first pick leaves the least summed variance among one-row updates: checked with PBP's
    # ADF update of one row (pseudo-labelled with its predictive mean) on a handful of other rows
    import copy

    import jax.numpy as jnp

    from probprop.learners import pbp

    def left_after(i):
        m = copy.copy(model)
        xs = jnp.asarray(model._standardise(pool[i:i + 1])[0])
        mean = (model.predict(pool[i:i + 1])[0] - model.y_mean_) / model.y_scale_
        m.state_ = pbp.adf_update(model.state_, xs, jnp.asarray(mean))
        return m.predict_dist(pool).epistemic_var.sum()

    others = [j for j in (0, 50, 100, 150, 250) if j != picks[0]]
    best = left_after(int(picks[0]))
    assert all(best <= left_after(j) * (1 + 1e-9) for j in others)


def test_tagi_runs_the_greedy_rules():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    model = TAGIRegressor(hidden=(8,), sigma_v=0.3, epochs=5, random_state=0).fit(X, X[:, 0])
    for method in ("greedy", "reduction"):
        assert len(select(model, rng.normal(size=(50, 2)), 5, method=method, random_state=0)) == 5


def test_bad_input_gets_a_clear_error(fitted):
    model, pool = fitted
    bad = pool.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        select(model, bad, 5)
    with pytest.raises(ValueError, match="larger than the 300 pool rows left"):
        select(model, pool, 301)
    with pytest.raises(ValueError, match="larger than the 2 pool rows left"):
        select(model, pool, 3, exclude=np.arange(298))
    with pytest.raises(ValueError, match="positive integer"):
        select(model, pool, 0)
    with pytest.raises(ValueError, match="unknown method"):
        select(model, pool, 5, method="magic")
    with pytest.raises(ValueError, match="features"):
        select(model, pool[:, :1], 5)
    with pytest.raises(ValueError, match="row indices of the pool"):
        select(model, pool, 5, exclude=np.array([400]))
    with pytest.raises(ValueError, match="needs an online learner"):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(30, 2))
        select(MAPRegressor(hidden=(4,), epochs=2).fit(X, X[:, 0]), pool, 5, method="greedy")
    with pytest.raises(ValueError, match="for probprop regressors"):
        select(PBPClassifier(hidden=(3,), epochs=1).fit(pool[:20], pool[:20, 0] > 0), pool, 5)


def test_bench_active_budget_below_the_batch_is_refused(tmp_path):
    from probprop.bench import active

    with pytest.raises(ValueError, match="between 1 and the budget"):
        active.run(out=tmp_path, datasets=["yacht"], splits=1, batches=[50], budget=20)
    with pytest.raises(ValueError, match="include 'random'"):
        active.run(out=tmp_path, datasets=["yacht"], splits=1, batches=[10], rules=["greedy"])

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
    for method in ("greedy", "reduction", "lcmd"):
        assert len(select(model, rng.normal(size=(50, 2)), 5, method=method, random_state=0)) == 5


def _lcmd_by_hand(F, k, candidates, centers):
    """LCMD written out loop by loop (the oracle for largest_cluster): clusters of the nearest
    center, the cluster of largest summed squared distance over its candidates, its farthest."""
    centers, candidates, picked = list(centers), set(candidates), []
    for _ in range(k):
        if not centers:
            i = max(sorted(candidates), key=lambda r: F[r] @ F[r])
        else:
            near = {r: min(centers, key=lambda c: ((F[r] - F[c]) ** 2).sum()) for r in sorted(candidates)}
            dist = {r: ((F[r] - F[near[r]]) ** 2).sum() for r in near}
            size = {}
            for r, c in near.items():
                size[c] = size.get(c, 0.0) + dist[r]
            big = max(size, key=size.get)
            i = max((r for r in sorted(candidates) if near[r] == big), key=dist.get)
        picked.append(i)
        centers.append(i)
        candidates.discard(i)
    return picked


@pytest.mark.parametrize("seed", range(6))
def test_largest_cluster_matches_the_rule_written_out(seed):
    from probprop.learners.acquisition import largest_cluster

    rng = np.random.default_rng(seed)
    n = 60
    # clumps of different spread, so that the cluster sizes differ
    F = rng.normal(size=(n, 3)) * rng.choice([0.1, 1.0, 3.0], size=(n, 1)) + rng.choice([-5.0, 0.0, 5.0], size=(n, 1))
    centers = rng.choice(n, size=[0, 1, 5][seed % 3], replace=False)
    candidates = np.setdiff1d(np.arange(n), centers)
    got = largest_cluster(F, 8, candidates, centers)
    assert got.tolist() == _lcmd_by_hand(F, 8, candidates.tolist(), centers.tolist())


def test_largest_cluster_takes_the_far_end_of_the_widest_cluster():
    from probprop.learners.acquisition import largest_cluster

    # centers at 0 and 10; rows near 0 spread to 3, rows near 10 to 1: the first pick is 3.0
    F = np.array([[0.0], [10.0], [1.0], [2.0], [3.0], [9.0], [10.5], [11.0]])
    assert largest_cluster(F, 1, [2, 3, 4, 5, 6, 7], [0, 1]).tolist() == [4]
    with pytest.raises(ValueError, match="cannot pick 7 rows from 6 candidates"):
        largest_cluster(F, 7, [2, 3, 4, 5, 6, 7], [0, 1])


def test_gradient_features_of_a_linear_model_give_its_exact_epistemic_variance():
    """Without hidden layers the mean is linear in the weights, so |phi(x)|^2 is the exact
    epistemic variance and phi(x) . phi(x') the exact covariance (sum_j v_j x_j x'_j / (d + 1))."""
    import jax.numpy as jnp

    from probprop.learners import acquisition

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    model = PBPRegressor(hidden=(), epochs=5, random_state=0).fit(X, X @ [1.0, -2.0, 0.5])
    Xs = model._standardise(rng.normal(size=(25, 3)))
    phi = np.asarray(acquisition.gradient_features(model._learner(), model.state_, jnp.asarray(Xs), chunk=8))
    assert phi.shape == (25, 4)
    v = np.asarray(model.state_.variances[0])[0]
    Z = np.hstack([Xs, np.ones((25, 1))])
    np.testing.assert_allclose(phi @ phi.T, (Z * v) @ Z.T / 4, rtol=1e-10)
    np.testing.assert_allclose((phi**2).sum(1), model._learner().predict(model.state_, jnp.asarray(Xs)).epistemic_var,
                               rtol=1e-10)


def test_gradient_features_match_finite_differences_and_the_sketch_keeps_inner_products(fitted):
    import jax.numpy as jnp

    from probprop.learners import acquisition

    model, pool = fitted
    learner, state = model._learner(), model.state_
    Xs = jnp.asarray(model._standardise(pool[:5]))
    phi = np.asarray(acquisition.gradient_features(learner, state, Xs))
    sizes = [m.size for m in state.means]
    assert phi.shape == (5, sum(sizes))  # 41 weights: no sketch
    layer, (r, c) = 0, (3, 1)  # one weight's column, by central differences of the predicted mean
    h = 1e-6
    means = [np.array(m) for m in state.means]

    def mean_at(delta):
        ms = [m.copy() for m in means]
        ms[layer][r, c] += delta
        return np.asarray(learner.predict(state.replace(means=tuple(jnp.asarray(m) for m in ms)), Xs).mean)

    fd = (mean_at(h) - mean_at(-h)) / (2 * h) * np.sqrt(np.asarray(state.variances[layer])[r, c])
    np.testing.assert_allclose(phi[:, r * means[layer].shape[1] + c], fd, rtol=1e-6, atol=1e-12)
    # sketched to 16 dimensions, averaged over 200 seeds: squared norms kept in expectation
    sk = np.mean([(np.asarray(acquisition.gradient_features(learner, state, Xs, dim=16, seed=s)) ** 2).sum(1)
                  for s in range(200)], axis=0)
    np.testing.assert_allclose(sk, (phi**2).sum(1), rtol=0.15)


def test_lcmd_keeps_away_from_the_labelled_rows_in_or_outside_the_pool(fitted):
    model, pool = fitted
    labelled = np.arange(0, 300, 7)
    inside = select(model, pool, 10, method="lcmd", random_state=2, exclude=labelled)
    rest = np.setdiff1d(np.arange(300), labelled)
    outside = select(model, pool[rest], 10, method="lcmd", random_state=2, X_labelled=pool[labelled])
    np.testing.assert_array_equal(inside, rest[outside])
    assert set(inside.tolist()) != set(select(model, pool, 10, method="lcmd", random_state=2).tolist())
    # no labelled rows outside the pool is the same as none given
    np.testing.assert_array_equal(select(model, pool, 4, method="lcmd", random_state=2, X_labelled=np.empty((0, 2))),
                                  select(model, pool, 4, method="lcmd", random_state=2))
    with pytest.raises(ValueError, match="features"):
        select(model, pool, 4, method="lcmd", X_labelled=np.zeros((3, 5)))


def test_lcmd_refuses_what_has_no_single_weight_posterior(fitted):
    from probprop import PBPEnsembleRegressor
    from probprop.learners.acquisition import largest_cluster

    _, pool = fitted
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    ensemble = PBPEnsembleRegressor(n_members=2, hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="needs one network's posterior over weights"):
        select(ensemble, pool, 5, method="lcmd")
    with pytest.raises(ValueError, match="both a candidate and a center"):
        largest_cluster(np.eye(4), 1, [0, 1, 2], [2, 3])


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
    with pytest.raises(ValueError, match="needs one network.s posterior over weights"):
        select(MAPRegressor(hidden=(4,), epochs=2).fit(X, X[:, 0]), pool, 5, method="lcmd")
    with pytest.raises(ValueError, match="for probprop regressors"):
        select(PBPClassifier(hidden=(3,), epochs=1).fit(pool[:20], pool[:20, 0] > 0), pool, 5)


def test_bench_active_budget_below_the_batch_is_refused(tmp_path):
    from probprop.bench import active

    with pytest.raises(ValueError, match="between 1 and the budget"):
        active.run(out=tmp_path, datasets=["yacht"], splits=1, batches=[50], budget=20)
    with pytest.raises(ValueError, match="include 'random'"):
        active.run(out=tmp_path, datasets=["yacht"], splits=1, batches=[10], rules=["greedy"])

"""Stochastic EP for PBP (``PBPSpec(inference="sep")``) against exact results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probprop  # noqa: F401  (float64 in the test process)
from probprop.learners import pbp


def _one_hot_problem(n_in=4, per_group=30, noise=0.5, seed=0):
    """A Bayesian linear model whose exact posterior factorises over the weights: one-hot
    inputs, no bias, a fixed noise variance. Returns X, y, the spec and the exact posterior."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_in), per_group)
    X = np.eye(n_in)[groups]
    w_true = rng.normal(size=n_in)
    y = X @ w_true / np.sqrt(n_in) + np.sqrt(noise) * rng.normal(size=len(groups))
    spec = pbp.PBPSpec(n_in=n_in, hidden=(), bias=False, learn_noise=False, noise_variance=noise)
    state = pbp.init(jax.random.PRNGKey(0), spec)
    v0 = float(np.asarray(state.variances[0])[0, 0])
    m0 = np.asarray(state.means[0])[0]
    # a = w x / sqrt(n_in): each point of group j adds precision 1 / (n_in noise) to w_j
    precision = 1.0 / v0 + per_group / (n_in * noise)
    sums = np.array([y[groups == j].sum() for j in range(n_in)])
    mean = (m0 / v0 + sums / (np.sqrt(n_in) * noise)) / precision
    return X, y, spec, state, mean, 1.0 / precision


def _passes(state, X, y, passes, seed=1):
    rng = np.random.default_rng(seed)
    sweep = jax.jit(pbp.adf_sweep)
    for _ in range(passes):
        order = rng.permutation(len(y))
        state = sweep(state, jnp.asarray(X[order]), jnp.asarray(y[order]))
    return state


def test_sep_approaches_the_exact_posterior_where_adf_keeps_shrinking():
    X, y, spec, state, mean, var = _one_hot_problem()
    sep0 = pbp.init(jax.random.PRNGKey(0), spec.__class__(**{**spec.__dict__, "inference": "sep"}))
    sep0 = sep0.replace(means=state.means)
    adf_one = _passes(state, X, y, 1)
    # one pass of ADF over a linear-Gaussian model with independent weights is exact
    np.testing.assert_allclose(np.asarray(adf_one.variances[0])[0], var, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(adf_one.means[0])[0], mean, rtol=1e-8)
    adf, sep = _passes(state, X, y, 20), _passes(sep0, X, y, 20)
    v_adf, v_sep = np.asarray(adf.variances[0])[0], np.asarray(sep.variances[0])[0]
    # ADF has counted every point 20 times: its variances are about a twentieth of the truth
    np.testing.assert_allclose(v_adf, var / 20, rtol=0.1)
    # SEP's tied site stands for the average point, each point replaces its share: it stays at
    # the exact posterior up to the order's fluctuation (a moving average with rate 1/N)
    np.testing.assert_allclose(v_sep, var, rtol=0.1)
    np.testing.assert_allclose(np.asarray(sep.means[0])[0], mean, atol=0.25 * np.sqrt(var).max())
    # q = prior x f^N in natural parameters
    n = len(y)
    prior_precision = np.asarray(sep.sites.precision[0])[0]
    np.testing.assert_allclose(1 / v_sep, prior_precision + n * np.asarray(sep.tied.precision[0])[0], rtol=1e-9)


def test_the_first_sep_update_is_the_adf_update_and_adf_states_carry_no_sites():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    adf = pbp.init(jax.random.PRNGKey(2), pbp.PBPSpec(n_in=3, hidden=(6,)))
    assert adf.tied is None
    sep = pbp.init(jax.random.PRNGKey(2), pbp.PBPSpec(n_in=3, hidden=(6,), inference="sep"))
    a = pbp.adf_update(adf, jnp.asarray(X[0]), jnp.asarray(y[0]))
    s = pbp.sep_update(sep, jnp.asarray(X[0]), jnp.asarray(y[0]), 5)
    for u, v in zip(a.means + a.variances, s.means + s.variances):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12)
    # the tied site moved a fifth of the way to the point's own site
    site = 1 / np.asarray(s.variances[0]) - 1 / np.asarray(sep.variances[0])
    np.testing.assert_allclose(np.asarray(s.tied.precision[0]), site / 5, rtol=1e-8, atol=1e-14)


def test_padded_rows_are_skipped_and_n_counts_the_real_rows():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    state = pbp.init(jax.random.PRNGKey(3), pbp.PBPSpec(n_in=3, hidden=(4,), inference="sep"))
    plain = pbp.adf_sweep(state, X, y)
    Xp, yp = np.vstack([X, np.zeros((4, 3))]), np.concatenate([y, np.zeros(4)])
    padded = pbp.adf_sweep(state, Xp, yp, np.arange(16) < 12)
    for u, v in zip(jax.tree.leaves(plain), jax.tree.leaves(padded)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12)


def test_unknown_inference_is_refused():
    with pytest.raises(ValueError, match="unknown inference"):
        pbp.init(jax.random.PRNGKey(0), pbp.PBPSpec(n_in=2, inference="ep"))


def test_the_estimator_fits_saves_and_loads_a_sep_model(tmp_path):
    from sklearn.base import clone

    from probprop import PBPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=150)
    sep = PBPRegressor(hidden=(8,), epochs=30, inference="sep", random_state=0).fit(X, y)
    adf = PBPRegressor(hidden=(8,), epochs=30, random_state=0).fit(X, y)
    assert sep.state_.spec.inference == "sep" and sep.state_.tied is not None
    # the same data seen 30 times: ADF's weight variances have shrunk further than SEP's
    v_sep = np.concatenate([np.ravel(v) for v in sep.state_.variances])
    v_adf = np.concatenate([np.ravel(v) for v in adf.state_.variances])
    assert np.median(v_sep) > 2 * np.median(v_adf)
    path = tmp_path / "sep.probprop"
    sep.save(path)
    loaded = PBPRegressor.load(path)
    assert loaded.inference == "sep"
    np.testing.assert_array_equal(loaded.predict(X[:5]), sep.predict(X[:5]))
    for a, b in zip(loaded.state_.tied.precision, sep.state_.tied.precision):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert clone(sep).inference == "sep"
    sep.partial_fit(X[:20], y[:20])  # N = the rows of the call
    with pytest.raises(ValueError, match="inference must be one of"):
        PBPRegressor(inference="EP").fit(X, y)


def test_sep_on_yacht_needs_the_prior_limit_and_stays_near_adf_with_it():
    """Without SEP_PRIOR_LIMIT the EP prior step and SEP's wide cavities feed each other on
    yacht (277 rows) until the weights run away; with it the fit stays within 1.6x ADF's RMSE."""
    from probprop import PBPRegressor
    from probprop.learners._order import permutation
    from probprop.tests.conftest import uci_split

    X_train, y_train, X_test, y_test = uci_split("yacht", 0)
    rmse = lambda m: float(np.sqrt(np.mean((m.predict(X_test) - y_test) ** 2)))  # noqa: E731
    sep = PBPRegressor(hidden=(50,), epochs=40, inference="sep", random_state=0).fit(X_train, y_train)
    adf = PBPRegressor(hidden=(50,), epochs=40, random_state=0).fit(X_train, y_train)
    assert rmse(sep) < 1.6 * rmse(adf)
    assert max(float(np.max(np.abs(np.asarray(m)))) for m in sep.state_.means) < 20
    # the same epochs without the limit
    Xs, ys = (X_train - sep.x_mean_) / sep.x_scale_, (y_train - sep.y_mean_) / sep.y_scale_
    state = pbp.init(jax.random.PRNGKey(0), pbp.PBPSpec(n_in=Xs.shape[1], hidden=(50,), inference="sep"))
    sweep, refine = jax.jit(pbp.adf_sweep), jax.jit(pbp.refine_prior)
    for _ in range(40):
        key, sub = jax.random.split(state.key)
        order = np.asarray(permutation(sub, len(ys)))
        state = refine(sweep(state, Xs[order], ys[order]).replace(key=key))
    assert max(float(np.max(np.abs(np.asarray(m)))) for m in state.means) > 100

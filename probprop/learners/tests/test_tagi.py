"""TAGI against exact special cases, Monte Carlo, an explicit smoother, and data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probprop  # noqa: F401  (enables float64)
from probprop.learners import tagi
from probprop.learners._order import shuffled_order
from probprop.metrics.scoring import log_likelihood, rmse
from probprop.tests.conftest import uci_split

# jitted once here: eager JAX would compile every small operation separately
jit_sweep = jax.jit(tagi.sweep)
jit_batch_update = jax.jit(tagi.batch_update)


@jax.jit
def _layer_moments(state, X):
    layers = tagi.forward_moments(state, X)
    return layers, tagi.covariances(state, layers)


def layer_moments(state, X):
    """Forward moments and dense covariances as NumPy arrays."""
    return jax.tree_util.tree_map(np.asarray, _layer_moments(state, jnp.asarray(X)))


def random_state(hidden, n_in=3, seed=0, var_scale=0.3, **spec):
    """A state with random means and random (not constant) variances, so every term counts."""
    spec = tagi.TAGISpec(n_in=n_in, hidden=hidden, **spec)
    rng = np.random.default_rng(seed)
    shapes = spec.weight_shapes
    return tagi.TAGIState(
        means=tuple(jnp.asarray(rng.normal(size=s) / np.sqrt(s[1])) for s in shapes),
        variances=tuple(jnp.asarray(var_scale * rng.uniform(0.2, 1.0, size=s)) for s in shapes),
        rejections=tuple(jnp.asarray(np.zeros(s, np.int32)) for s in shapes),
        key=jax.random.PRNGKey(seed),
        spec=spec,
    )


def toy_data(n, seed, noise=0.1):
    """The cubic toy of the TAGI papers, scaled: y = x^3 / 100 + noise, x ~ U(-4, 4)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4, 4, size=(n, 1))
    f = x[:, 0] ** 3 / 100
    return x, f, f + noise * rng.normal(size=n)


# ---------------------------------------------------------------------------------------------
# Exact cases


def exact_linear_posterior(m0, v0, a, y, noise_var):
    """Exact Gaussian posterior of w for y = a.w + noise, prior N(m0, diag v0) (matrix form)."""
    precision = np.diag(1.0 / v0) + np.outer(a, a) / noise_var
    cov = np.linalg.inv(precision)
    mean = cov @ (m0 / v0 + a * y / noise_var)
    return mean, np.diag(cov)


def test_one_update_without_hidden_layer_is_the_exact_linear_regression_posterior():
    state = random_state((), n_in=4, batch_size=1, sigma_v=0.3)
    x = np.array([0.3, -1.2, 0.8, 2.0])
    y = 0.7
    new = tagi.update(state, x[None], np.array([y]))
    a = np.append(x, 1.0)  # the bias is an input fixed to 1
    m0, v0 = np.asarray(state.means[0][0]), np.asarray(state.variances[0][0])
    mean, var = exact_linear_posterior(m0, v0, a, y, 0.3**2)
    np.testing.assert_allclose(new.means[0][0], mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.variances[0][0], var, rtol=1e-10, atol=1e-12)
    # and the innovation form written out: mu + Cov(theta, y) (y - mu_y) / S, var - Cov^2 / S
    cov = v0 * a
    s = np.sum(v0 * a * a) + 0.3**2
    np.testing.assert_allclose(new.means[0][0], m0 + cov * (y - m0 @ a) / s, rtol=1e-12)
    np.testing.assert_allclose(new.variances[0][0], v0 - cov**2 / s, rtol=1e-12)
    assert int(new.rejected) == 0


def mc_check(samples, exact, name, z=5.0):
    """Assert the Monte Carlo mean of ``samples`` (axis 0) is within ``z`` standard errors."""
    samples = np.asarray(samples)
    est = samples.mean(0)
    se = samples.std(0) / np.sqrt(samples.shape[0])
    err = np.abs(est - np.asarray(exact)) / se
    assert np.all(err < z), f"{name}: max |error| = {err.max():.2f} standard errors"


def test_forward_moments_and_covariances_of_one_hidden_layer_match_monte_carlo():
    """For a deterministic input and one hidden layer every forward quantity is exact: Z1 is
    Gaussian, the hidden units are independent (disjoint weight rows), E[A], Var[A] are the
    rectified-Gaussian moments, Cov(A, Z) = J Var Z by Stein's lemma, and the output moments
    follow from independence of W2 and A."""
    state = random_state((6,), n_in=3, seed=1)
    x = np.array([0.5, -1.0, 1.5])
    layers, cov = layer_moments(state, x[None])
    (M1, M2), (V1, V2) = [np.asarray(m) for m in state.means], [np.asarray(v) for v in state.variances]

    n = 200_000
    rng = np.random.default_rng(2)
    W1 = M1 + np.sqrt(V1) * rng.standard_normal((n, *M1.shape))
    W2 = M2 + np.sqrt(V2) * rng.standard_normal((n, *M2.shape))
    z1 = W1 @ np.append(x, 1.0)  # (n, 6)
    a1 = np.maximum(z1, 0.0)
    z2 = np.einsum("nk,nk->n", W2[:, 0, :-1], a1) + W2[:, 0, -1]

    first, second = layers
    dev = lambda s: s - s.mean(0)  # noqa: E731
    mc_check(z1, first.z_mean[0], "E[Z1]")
    mc_check(dev(z1) ** 2, first.z_var[0], "Var[Z1]")
    mc_check(a1, second.in_mean[0, :-1], "E[A1]")
    mc_check(dev(a1) ** 2, second.in_var[0, :-1], "Var[A1]")
    mc_check(z2, second.z_mean[0, 0], "E[Z2]")
    mc_check(dev(z2) ** 2, second.z_var[0, 0], "Var[Z2]")
    # covariances used by the backward pass
    mc_check(dev(z1)[:, :, None] * dev(W1), cov[0]["z_theta"][0], "Cov(Z1, theta1)")
    mc_check(dev(a1) * dev(z1), cov[0]["a_z"][0], "Cov(A1, Z1)")
    mc_check(dev(z2)[:, None] * dev(a1), cov[1]["z_below"][0, 0], "Cov(Z2, A1)")
    mc_check(dev(z2)[:, None] * dev(W2[:, 0]), cov[1]["z_theta"][0, 0], "Cov(Z2, theta2)")


def explicit_smoother(state, X, y, noise_var):
    """TAGI's backward pass in the covariance form of TAGI-MAT (gains Cov / Var, posterior
    minus prior), one point at a time from the same prior, increments summed over the batch."""
    layers, covs = layer_moments(state, X)
    L = len(layers)
    d_means = [np.zeros(m.shape) for m in state.means]
    d_vars = [np.zeros(v.shape) for v in state.variances]
    for n in range(X.shape[0]):
        z_mean = float(layers[-1].z_mean[n, 0])
        z_var = float(layers[-1].z_var[n, 0])
        s = z_var + noise_var
        post_mean = np.array([z_mean + z_var * (y[n] - z_mean) / s])
        post_var = np.array([z_var - z_var**2 / s])
        for layer in range(L - 1, -1, -1):
            prior_mean = np.asarray(layers[layer].z_mean[n])
            prior_var = np.asarray(layers[layer].z_var[n])
            gain = np.asarray(covs[layer]["z_theta"][n]) / prior_var[:, None]  # Cov(theta, Z) / Var Z
            d_means[layer] += gain * (post_mean - prior_mean)[:, None]
            d_vars[layer] += gain**2 * (post_var - prior_var)[:, None]
            if layer > 0:
                below = layers[layer - 1]
                a_mean = np.asarray(layers[layer].in_mean[n, :-1])
                a_var = np.asarray(layers[layer].in_var[n, :-1])
                c = np.asarray(covs[layer]["z_below"][n])  # Cov(Z_j, A_k)
                k = c / prior_var[:, None]
                a_post_mean = a_mean + k.T @ (post_mean - prior_mean)
                a_post_var = a_var + (k**2).T @ (post_var - prior_var)
                g = np.asarray(covs[layer - 1]["a_z"][n]) / a_var  # Cov(Z, A) / Var A
                post_mean = np.asarray(below.z_mean[n]) + g * (a_post_mean - a_mean)
                post_var = np.asarray(below.z_var[n]) + g**2 * (a_post_var - a_var)
    return d_means, d_vars


def test_backward_pass_equals_the_explicit_layerwise_smoother(batch=3):
    state = random_state((5, 4), n_in=3, seed=3, batch_size=batch, sigma_v=0.4)
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(batch, 3)), rng.normal(size=batch)
    new = jit_batch_update(state, X, y)
    d_means, d_vars = explicit_smoother(state, X, y, 0.4**2)
    for layer in range(3):
        d_mean = new.means[layer] - state.means[layer]
        d_var = new.variances[layer] - state.variances[layer]
        np.testing.assert_allclose(d_mean, d_means[layer], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(d_var, d_vars[layer], rtol=1e-9, atol=1e-14)
    assert int(new.rejected) == 0


# ---------------------------------------------------------------------------------------------
# Mechanics: padding, masking, guard, reproducibility


def test_padding_of_the_last_batch_leaves_the_result_unchanged():
    state = random_state((7,), n_in=2, seed=5, batch_size=10)
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(23, 2)), rng.normal(size=23)
    padded = jit_sweep(state, X, y)  # batches of 10, 10 and 3 + 7 masked rows
    reference = state
    for start in range(0, 23, 10):  # unpadded: the last batch really has 3 rows
        reference = jit_batch_update(reference, X[start : start + 10], y[start : start + 10])
    for a, b in zip(padded.means + padded.variances, reference.means + reference.variances):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    for a, b in zip(padded.rejections, reference.rejections):  # (this state has a few)
        np.testing.assert_array_equal(a, b)


def test_masked_rows_are_ignored_even_if_nan():
    state = random_state((7,), n_in=2, seed=5, batch_size=10)
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(23, 2)), rng.normal(size=23)
    X_pad = np.concatenate([X, np.full((9, 2), np.nan)])
    y_pad = np.concatenate([y, np.full(9, np.nan)])
    mask = np.arange(32) < 23
    new = tagi.update(state, X_pad, y_pad, mask)
    # the same epoch by hand: the order update draws, real rows first, then the sweep
    _, sub = jax.random.split(state.key)
    order = np.asarray(shuffled_order(sub, jnp.asarray(mask)))[:23]
    assert sorted(order) == list(range(23))
    expected = jit_sweep(state, X[order], y[order])
    for a, b in zip(new.means + new.variances, expected.means + expected.variances):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_invalid_updates_are_refused_and_counted():
    # one input fixed to 1, weight variance 1, tiny noise: ten identical points in one batch
    # subtract 10 / S ~ 10 from the weight variance, which would go negative
    state = tagi.init(jax.random.PRNGKey(0), tagi.TAGISpec(n_in=1, hidden=(), sigma_v=0.01, batch_size=10))
    state = state.replace(means=(jnp.zeros((1, 2)),), variances=(jnp.array([[1.0, 0.01]]),))
    X, y = np.ones((10, 1)), np.ones(10)
    new = jit_batch_update(state, X, y)
    np.testing.assert_array_equal(new.rejections[0], [[1, 0]])
    assert int(new.rejected) == 1
    assert float(new.means[0][0, 0]) == 0.0 and float(new.variances[0][0, 0]) == 1.0  # kept
    s = 1.0 + 0.01 + 0.01**2
    np.testing.assert_allclose(new.variances[0][0, 1], 0.01 - 10 * 0.01**2 / s, rtol=1e-12)  # bias updated
    np.testing.assert_allclose(new.means[0][0, 1], 10 * 0.01 / s, rtol=1e-12)
    # a non-finite observation is refused for every parameter, and counted again
    newer = jit_batch_update(new, X[:1].repeat(10, 0), np.full(10, np.inf))
    np.testing.assert_array_equal(newer.rejections[0], [[2, 1]])
    for a, b in zip(newer.means + newer.variances, new.means + new.variances):
        np.testing.assert_array_equal(a, b)


def test_same_key_reproduces_and_another_key_differs():
    spec = tagi.TAGISpec(n_in=2, hidden=(7,), batch_size=10)
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(32, 2)), rng.normal(size=32)
    mask = np.arange(32) < 23  # (the shapes of the masking test: no new compilation)

    def run(seed):
        state = tagi.init(jax.random.PRNGKey(seed), spec)
        for _ in range(2):
            state = tagi.update(state, X, y, mask)
        return state

    a, b, c = run(0), run(0), run(1)
    for u, v in zip(a.means + a.variances, b.means + b.variances):
        np.testing.assert_array_equal(u, v)
    assert not np.allclose(a.means[0], c.means[0])


def test_spec_is_hashable_and_validated():
    spec = tagi.TAGISpec(n_in=3, hidden=[4, 2])
    assert spec.hidden == (4, 2) and hash(spec) == hash(tagi.TAGISpec(n_in=3, hidden=(4, 2)))
    assert spec.weight_shapes == ((4, 4), (2, 5), (1, 3))
    assert tagi.n_parameters(spec) == 16 + 10 + 3
    with pytest.raises(ValueError, match="activation"):
        tagi.TAGISpec(n_in=3, activation="softmax")
    with pytest.raises(ValueError, match="sigma_v"):
        tagi.TAGISpec(n_in=3, sigma_v=0.0)
    state = tagi.init(jax.random.PRNGKey(0), spec)
    np.testing.assert_allclose(state.variances[0][:, :-1], 0.25 / 3)  # init_gain / fan_in
    np.testing.assert_allclose(state.variances[0][:, -1], 0.01)
    np.testing.assert_array_equal(state.means[0][:, -1], 0.0)
    assert float(tagi.noise_variance(state)) == pytest.approx(0.09)


# ---------------------------------------------------------------------------------------------
# Learning


def test_learns_the_cubic_toy():
    X, _, y = toy_data(200, seed=0)
    X_test, f_test, _ = toy_data(500, seed=1)
    xm, xs, ym, ys = X.mean(0), X.std(0), y.mean(), y.std()
    state = tagi.init(jax.random.PRNGKey(0), tagi.TAGISpec(n_in=1))
    for _ in range(40):
        state = tagi.update(state, (X - xm) / xs, (y - ym) / ys)
    # the last two points lie far outside the data, at +-8
    mean, var = map(np.asarray, tagi.predict(state, (np.vstack([X_test, [[-8.0], [8.0]]]) - xm) / xs))
    mean, var, far = mean[:-2], var[:-2], var[-2:]
    # noise std 0.1, function range +-0.64: the fit is within a third of the noise
    assert rmse(f_test, mean * ys + ym) < 0.05
    assert np.all(var > 0) and int(state.rejected) == 0
    # epistemic uncertainty grows away from the data
    assert np.all(far > 10 * np.median(var))


def test_boston_split_0():
    X_train, y_train, X_test, y_test = uci_split("boston", 0)
    xm, xs = X_train.mean(0), X_train.std(0)
    xs = np.where(xs > 0, xs, 1.0)
    ym, ys = y_train.mean(), y_train.std()
    spec = tagi.TAGISpec(n_in=X_train.shape[1], hidden=(50,), sigma_v=0.3, batch_size=10)
    state = tagi.init(jax.random.PRNGKey(0), spec)
    for _ in range(40):
        state = tagi.update(state, (X_train - xm) / xs, (y_train - ym) / ys)
    mean, var = tagi.predict(state, (X_test - xm) / xs)
    mu = np.asarray(mean) * ys + ym
    sd = np.sqrt(np.asarray(var) + float(tagi.noise_variance(state))) * ys
    assert rmse(y_test, mu) < 4.0
    assert log_likelihood(y_test, mu, sd) > -3.0
    assert int(state.rejected) == 0


def test_select_sigma_v_picks_the_noise_level_on_a_validation_split():
    X, _, y = toy_data(200, seed=0, noise=0.1)  # noise / std(y) ~ 0.36 in standardised units
    grid = (0.05, 0.3, 2.0)
    # the spec's other fields are used; its sigma_v and n_in are not
    spec = dataclasses.replace(tagi.TAGISpec(n_in=99), hidden=(10,))
    sel = tagi.select_sigma_v(X, y, grid=grid, epochs=10, key=jax.random.PRNGKey(1), spec=spec)
    assert sel.chosen == {"sigma_v": 0.3} and sel.grid == {"sigma_v": grid} and sel.spec.sigma_v == 0.3
    assert sel.scores.shape == (3,) and np.all(np.isfinite(sel.scores))
    again = tagi.select_sigma_v(X, y, grid=grid, epochs=10, key=jax.random.PRNGKey(1), spec=spec)
    np.testing.assert_array_equal(sel.scores, again.scores)
    with pytest.raises(ValueError, match="val_fraction"):
        tagi.select_sigma_v(X, y, grid=grid, epochs=1, val_fraction=0.0)


# ---------------------------------------------------------------------------------------------
# Classification


def test_binary_classification_update_without_hidden_layer_is_the_exact_posterior_marginals():
    """One point, a linear probit model z = w x + b with Gaussian (w, b) and p(y | z) = Phi(+-z):
    the exact posterior mean and variance of each parameter (a 2-D Gauss-Hermite integral on a
    fine grid) are what one TAGI step with the probit likelihood gives."""
    spec = tagi.TAGISpec(n_in=1, hidden=(), batch_size=1, n_classes=2)
    state = tagi.init(jax.random.PRNGKey(0), spec)
    state = state.replace(means=(jnp.asarray([[0.4, -0.3]]),), variances=(jnp.asarray([[0.8, 0.5]]),))
    x = 1.7
    for y in (0.0, 1.0):
        new = tagi.update(state, np.array([[x]]), np.array([y]))
        nodes, weights = np.polynomial.hermite_e.hermegauss(120)
        m, s = np.array([0.4, -0.3]), np.sqrt([0.8, 0.5])
        w, b = np.meshgrid(m[0] + s[0] * nodes, m[1] + s[1] * nodes, indexing="ij")
        from scipy import stats

        like = stats.norm.cdf((2 * y - 1) * (w * x + b)) * np.outer(weights, weights)
        mean = np.array([np.sum(like * w), np.sum(like * b)]) / like.sum()
        var = np.array([np.sum(like * w * w), np.sum(like * b * b)]) / like.sum() - mean**2
        np.testing.assert_allclose(np.asarray(new.means[0][0]), mean, rtol=1e-9)
        np.testing.assert_allclose(np.asarray(new.variances[0][0]), var, rtol=1e-9)


def test_classification_spec_and_prediction_shapes():
    with pytest.raises(ValueError, match="n_classes"):
        tagi.TAGISpec(n_in=2, n_classes=1)
    with pytest.raises(ValueError, match="heteroscedastic"):
        tagi.TAGISpec(n_in=2, n_classes=3, heteroscedastic=True)
    spec = tagi.TAGISpec(n_in=2, hidden=(4,), n_classes=3)
    assert spec.layer_sizes == (2, 4, 3) and spec.output_likelihood.n_classes == 3
    assert tagi.TAGISpec(n_in=2).output_likelihood is None
    state = tagi.init(jax.random.PRNGKey(0), spec)
    moments = tagi.predict_moments(state, np.zeros((5, 2)))
    assert moments.mean.shape == (5, 3) and moments.epistemic_var.shape == (5, 3)
    with pytest.raises(ValueError, match="regression"):
        tagi.select_sigma_v(np.zeros((20, 2)), np.zeros(20), spec=spec)


# ---------------------------------------------------------------------------------------------
# Combining a mini-batch in precision form (variance_update="precision")


def _one_weight_state(variance_update, batch_size, v0=2.0, m0=0.4):
    """y = w x + noise with the bias pinned (variance 1e-30, mean 0): one parameter that counts."""
    state = random_state((), n_in=1, batch_size=batch_size, sigma_v=0.5, variance_update=variance_update)
    return state.replace(means=(jnp.array([[m0, 0.0]]),), variances=(jnp.array([[v0, 1e-30]]),))


def test_precision_form_is_the_exact_batch_posterior_of_one_weight():
    """For one weight, the batch's rows are independent observations: the precision form gives the
    exact conjugate posterior, the summed form does not (it overshoots: here below zero, refused)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=8) * 2.0, rng.normal(size=8)
    precision = 1 / 2.0 + np.sum(x * x) / 0.25
    exact_var = 1 / precision
    exact_mean = exact_var * (0.4 / 2.0 + np.sum(x * y) / 0.25)
    new = jit_batch_update(_one_weight_state("precision", 8), x[:, None], y)
    assert float(new.means[0][0, 0]) == pytest.approx(exact_mean, rel=1e-10)
    assert float(new.variances[0][0, 0]) == pytest.approx(exact_var, rel=1e-10)
    assert int(new.rejected) == 0
    summed = jit_batch_update(_one_weight_state("sum", 8), x[:, None], y)
    assert float(summed.variances[0][0, 0]) == 2.0 and int(summed.rejected) >= 1  # refused, unchanged


@pytest.mark.parametrize("hidden", [(), (5,)])
def test_precision_form_equals_the_summed_form_for_one_row(hidden):
    """With one real row (the rest padding) both forms are the same Gaussian conditioning."""
    base = random_state(hidden, n_in=3, batch_size=4, seed=2)
    X = np.random.default_rng(3).normal(size=(4, 3))
    y = np.array([0.3, 9.0, 9.0, 9.0])
    mask = np.array([True, False, False, False])
    a = jit_batch_update(base, X, y, mask)
    b = jit_batch_update(dataclasses.replace(base, spec=dataclasses.replace(base.spec, variance_update="precision")),
                         X, y, mask)
    for m1, m2, v1, v2 in zip(a.means, b.means, a.variances, b.variances):
        np.testing.assert_allclose(m2, m1, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(v2, v1, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="variance_update"):
        tagi.TAGISpec(n_in=1, variance_update="exact")


def test_precision_form_refuses_a_row_that_alone_would_empty_a_variance():
    """1 + v d_n <= 0 (a row whose decrement alone exceeds the variance, possible below the output
    where the deltas are approximate): that weight's update is non-finite, so batch_update's guard
    refuses and counts it; the other weights are updated."""
    M = jnp.array([[0.5, 0.1]])
    V = jnp.array([[1.0, 1.0]])
    in_mean = jnp.array([[2.0, 1.0]])  # d = delta_var * a^2: -2 * 4 = -8 for the weight, -2 for the bias
    d_mean, d_var = jnp.array([[0.3]]), jnp.array([[-2.0]])
    dm, dv = tagi._precision_increments(M, V, in_mean, d_mean, d_var)
    assert not np.isfinite(np.asarray(dm[0, 0])) and not np.isfinite(np.asarray(dv[0, 0]))
    assert not np.isfinite(np.asarray(dv[0, 1]))  # 1 - 2 = -1 <= 0 too
    d_var = jnp.array([[-0.1]])  # 1 - 0.4 > 0 and 1 - 0.1 > 0: the exact one-row conditioning
    dm, dv = tagi._precision_increments(M, V, in_mean, d_mean, d_var)
    np.testing.assert_allclose(dv, V * V * d_var * in_mean**2, rtol=1e-12)
    np.testing.assert_allclose(dm, V * d_mean * in_mean, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Convolutions (TAGISpec(conv=...)): the layer piece's products are checked against autodiff in
# probprop/layers/tests/test_conv.py; here the whole conditioning through them


@pytest.mark.parametrize("n_classes", [0, 3])
def test_a_kernel_the_size_of_the_image_conditions_as_the_dense_layer(n_classes):
    """An exact special case of the whole path (forward, tagi_pullback, activation Jacobian,
    update, init): a convolution whose kernel covers the image is a dense layer of its maps, so
    two epochs give the dense network's posterior to rounding, for regression and classification."""
    from probprop.layers import Conv2D

    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 9))
    y = (X[:, 0] - X[:, 4] > 0).astype(float) + (X[:, 2] > 0.5) if n_classes else X[:, 0] - X[:, 4]
    common = {"n_in": 9, "batch_size": 4, "n_classes": n_classes}
    dense = tagi.init(jax.random.PRNGKey(1), tagi.TAGISpec(hidden=(4, 3), **common))
    conv = tagi.init(jax.random.PRNGKey(1), tagi.TAGISpec(hidden=(3,), conv=(Conv2D((1, 3, 3), 4, kernel=3),), **common))
    assert conv.spec.layer_sizes == dense.spec.layer_sizes and conv.spec.weight_shapes == dense.spec.weight_shapes
    for _ in range(2):
        dense, conv = tagi.update(dense, X, y), tagi.update(conv, X, y)
    for a, b in zip(dense.means + dense.variances, conv.means + conv.variances):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)
    assert not np.allclose(np.asarray(conv.means[0]), np.asarray(tagi.init(jax.random.PRNGKey(1), conv.spec).means[0]))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_second_convolution_covering_its_maps_conditions_as_a_dense_layer(dtype):
    """The hidden-state path through a pooled convolution: a pooled convolution (several positions,
    a remainder row dropped by the pooling) followed by a convolution whose kernel covers its maps
    (a dense layer over them, channel-major) against the same pooled convolution followed by a dense
    layer. Both the pooled kernel's summed update and the second layer's input Jacobian go through
    ``backward``; the posteriors agree to rounding, and a float32 network stays float32."""
    from probprop.layers import Conv2D

    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 2 * 7 * 7))
    y = rng.integers(0, 3, size=40)
    first = Conv2D((2, 7, 7), 3, kernel=2, pool=2)  # 6x6 maps, pooled to 3x3
    common = {"n_in": 98, "batch_size": 5, "n_classes": 3, "dtype": dtype}
    dense = tagi.init(jax.random.PRNGKey(2), tagi.TAGISpec(hidden=(4,), conv=(first,), **common))
    conv = tagi.init(jax.random.PRNGKey(2), tagi.TAGISpec(hidden=(), conv=(first, Conv2D((3, 3, 3), 4, kernel=3)), **common))
    assert conv.spec.weight_shapes == dense.spec.weight_shapes
    for _ in range(2):
        dense, conv = tagi.update(dense, X, y), tagi.update(conv, X, y)
    tol = {"rtol": 1e-9, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 1e-6}
    for a, b in zip(dense.means + dense.variances, conv.means + conv.variances):
        assert a.dtype == np.dtype(dtype) and b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
    start = tagi.init(jax.random.PRNGKey(2), conv.spec)
    assert not np.allclose(np.asarray(conv.means[0]), np.asarray(start.means[0]))  # the first layer learned


def test_a_pooled_cnn_learns_and_its_spec_is_checked():
    """Two classes of 6x6 images (a bright left half or a bright right half, noisy): a pooled
    convolution learns them (a constant predictor: 50 %); max pooling, the precision form, uncertain
    inputs and a stack that does not fit are refused with clear errors."""
    from probprop.layers import Conv2D

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    X = rng.normal(scale=0.7, size=(400, 6, 6))
    X[y == 0, :, :3] += 1.0
    X[y == 1, :, 3:] += 1.0
    X = X.reshape(400, 36)
    spec = tagi.TAGISpec(n_in=36, hidden=(8,), conv=(Conv2D((1, 6, 6), 3, kernel=3, pool=2),), n_classes=2)
    assert spec.layer_sizes == (36, 12, 8, 1) and spec.weight_shapes == ((3, 10), (8, 13), (1, 9))
    state = tagi.init(jax.random.PRNGKey(0), spec)
    for _ in range(3):
        state = tagi.update(state, X[:300], y[:300])
    mean, var = tagi.predict(state, X[300:])
    accuracy = np.mean((np.asarray(mean) > 0) == (y[300:] == 1))
    assert accuracy > 0.9 and np.all(np.asarray(var) > 0) and int(state.rejected) == 0
    for pool in (1, 2):
        with pytest.raises(ValueError, match="pool by average"):
            tagi.TAGISpec(n_in=36, conv=(Conv2D((1, 6, 6), 3, kernel=3, pool=pool, pooling="max"),))
    with pytest.raises(ValueError, match="variance_update='precision'"):
        tagi.TAGISpec(n_in=36, conv=(Conv2D((1, 6, 6), 3, kernel=3),), variance_update="precision")
    with pytest.raises(ValueError, match="takes"):
        tagi.TAGISpec(n_in=35, conv=(Conv2D((1, 6, 6), 3, kernel=3),))
    with pytest.raises(ValueError, match="X_var"):
        tagi.predict_moments(state, X[:2], np.full((2, 36), 0.1))

"""MC dropout: grid selection and learning, the T-pass predictive, masking, reproducibility."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import probprop  # noqa: F401  (enables float64)
from probprop.data import make_linear_gaussian
from probprop.learners import mcdropout as mc

BASE = mc.MCDropoutSpec(n_in=3, hidden=(20,), learning_rate=1e-2, batch_size=32)


def linear_data(seed=0):
    """320 training rows (selection: 256 + 64 validation) and 64 test rows, so that selection,
    final fit and test scoring share their compiled shapes."""
    X, y, _ = make_linear_gaussian(384, 3, noise_std=0.5, random_state=seed)
    return X[:320], y[:320], X[320:], y[320:]


def train(spec, X, y, epochs, seed=1):
    state = mc.init(jax.random.PRNGKey(seed), spec)
    for _ in range(epochs):
        state = mc.update(state, X, y)
    return state


@pytest.fixture(scope="module")
def selected():
    X, y, _, _ = linear_data()
    grid_p, grid_tau = (0.01, 0.1), (1.0, 4.0, 16.0)
    return mc.select_hyperparameters(X, y, grid_p, grid_tau, epochs=40, key=jax.random.PRNGKey(0), spec=BASE)


@pytest.fixture(scope="module")
def trained(selected):
    X, y, _, _ = linear_data()
    return train(selected.spec, X, y, epochs=40)


def test_grid_selection_picks_the_noise_precision_by_validation_ll(selected):
    assert selected.scores.shape == (2, 3) and np.all(np.isfinite(selected.scores))
    i, j = np.unravel_index(np.argmax(selected.scores), selected.scores.shape)
    assert selected.chosen == {"dropout": (0.01, 0.1)[i], "tau": (1.0, 4.0, 16.0)[j]}
    assert selected.grid == {"dropout": (0.01, 0.1), "tau": (1.0, 4.0, 16.0)}
    assert selected.chosen["tau"] == 4.0  # true noise precision 1 / 0.5^2
    assert selected.spec == mc.MCDropoutSpec(**{**BASE.__dict__, "dropout": selected.chosen["dropout"], "tau": 4.0})


def test_grid_scores_equal_training_each_point_alone(selected):
    """The vmapped grid search scores each (p, tau) as if it were trained and scored alone."""
    X, y, _, _ = linear_data()
    key = jax.random.PRNGKey(0)
    split_key, init_key, pred_key = jax.random.split(key, 3)
    val = np.asarray(jax.random.permutation(split_key, len(y)))[: round(0.2 * len(y))]
    mask = np.ones(len(y), bool)
    mask[val] = False
    base = mc.init(init_key, BASE)
    p, tau = 0.1, 16.0
    params, _, _, _ = mc._train(BASE.structure, base.params, base.opt_state, base.key, jnp.asarray(X), jnp.asarray(y),
                                p, tau, jnp.asarray(mask), 40)
    alone = base.replace(params=params, spec=mc.MCDropoutSpec(**{**BASE.__dict__, "dropout": p, "tau": tau}))
    ll = float(jnp.mean(mc.log_likelihood(alone, X[val], y[val], key=pred_key)))
    np.testing.assert_allclose(selected.scores[1, 2], ll, rtol=1e-8)


def test_mc_dropout_learns_linear_problem(trained):
    _, _, Xt, yt = linear_data()
    mean, var = (np.asarray(a) for a in mc.predict(trained, Xt))
    noise = np.asarray(mc.noise_variance(trained, Xt))
    np.testing.assert_allclose(noise, 1.0 / trained.spec.tau)
    assert np.all(var > 0)
    assert np.sqrt(np.mean((mean - yt) ** 2)) < 0.65  # noise sd 0.5
    total = var + noise
    assert np.mean(-0.5 * np.log(2 * np.pi * total) - (yt - mean) ** 2 / (2 * total)) > -1.0
    assert float(jnp.mean(mc.log_likelihood(trained, Xt, yt))) > -1.0


def test_predict_is_the_mean_and_variance_of_the_passes(trained):
    _, _, Xt, yt = linear_data()
    key = jax.random.PRNGKey(5)
    passes = np.asarray(mc.sample_outputs(trained, Xt, key))
    assert passes.shape == (trained.spec.n_samples, Xt.shape[0])
    mean, var = mc.predict(trained, Xt, key)
    np.testing.assert_allclose(mean, passes.mean(0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(var, passes.var(0), rtol=1e-9, atol=1e-13)
    tau, T = trained.spec.tau, passes.shape[0]
    want = logsumexp(-0.5 * tau * (yt - passes) ** 2, axis=0) - np.log(T) - 0.5 * np.log(2 * np.pi / tau)
    np.testing.assert_allclose(mc.log_likelihood(trained, Xt, yt, key), want, rtol=1e-10)
    # without a key the prediction is a fixed function of the state
    np.testing.assert_array_equal(mc.predict(trained, Xt)[0], mc.predict(trained, Xt)[0])


def test_predictive_moments_are_consistent_in_T(trained):
    """T = 100 estimates agree with 20000 passes within their Monte Carlo error (the variance
    estimate's error from the fourth central moment: with small p the passes are heavy-tailed)."""
    _, _, Xt, _ = linear_data()
    big = np.asarray(mc.sample_outputs(trained, Xt[:20], jax.random.PRNGKey(1), n_samples=20_000))
    m_big, v_big = big.mean(0), big.var(0)
    m4 = np.mean((big - m_big) ** 4, axis=0)
    m, v = (np.asarray(a) for a in mc.predict(trained, Xt[:20], jax.random.PRNGKey(2)))
    assert np.all(np.abs(m - m_big) < 4.5 * np.sqrt(v_big / 100))
    assert np.all(np.abs(v - v_big) < 4.5 * np.sqrt((m4 - v_big**2) / 100))


def test_linear_model_passes_match_the_exact_dropout_moments():
    """Without a hidden layer f = sum_k x_k W_k m_k / (1 - p) + b, m_k ~ Bernoulli(1 - p):
    E f = x W + b and Var f = sum_k x_k^2 W_k^2 p / (1 - p), exactly."""
    spec = mc.MCDropoutSpec(n_in=3, hidden=(), dropout=0.2)
    state = mc.init(jax.random.PRNGKey(0), spec)
    X = np.array([[1.0, -2.0, 0.5], [0.3, 0.0, -1.5]])
    ((W, b),) = state.params["layers"]
    W, b = np.asarray(W)[:, 0], float(np.asarray(b)[0])
    mean, var = (np.asarray(a) for a in mc.predict(state, X, jax.random.PRNGKey(3), n_samples=20_000))
    exact_var = (X**2 * W**2).sum(1) * 0.2 / 0.8
    assert np.all(np.abs(mean - (X @ W + b)) < 4.5 * np.sqrt(exact_var / 20_000))
    np.testing.assert_allclose(var, exact_var, rtol=0.05)


def test_weight_decay_of_the_reference_code():
    assert mc.regulariser(100, 0.1, 4.0, 1e-2) == pytest.approx(1e-4 * 0.9 / 800)


def test_same_key_reproduces_and_padding_with_masked_rows_changes_nothing():
    X, y, _, _ = linear_data()
    spec = BASE
    a, b = train(spec, X, y, epochs=1), train(spec, X, y, epochs=1)
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(la, lb)
    rng = np.random.default_rng(1)
    Xp = np.concatenate([X, 30 * rng.standard_normal((20, 3))])  # 340 rows: 11 batches, as 320
    yp = np.concatenate([y, 30 * rng.standard_normal(20)])
    padded = mc.update(mc.init(jax.random.PRNGKey(1), spec), Xp, yp, np.arange(340) < 320)
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(padded)):
        np.testing.assert_allclose(la, lb, rtol=1e-12, atol=1e-14)
    c = train(spec, X, y, epochs=1, seed=2)
    assert not np.allclose(a.params["layers"][0][0], c.params["layers"][0][0])


@pytest.mark.parametrize(
    "bad",
    [
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"tau": 0.0},
        {"length_scale": -1.0},
        {"n_samples": 0},
        {"n_samples": 10_001},
        {"n_classes": 1},
        {"batch_size": 0},
        {"hidden": (5, 0)},
    ],
)
def test_bad_spec_values_raise(bad):
    with pytest.raises(ValueError):
        mc.MCDropoutSpec(**{"n_in": 3, **bad})


@pytest.mark.parametrize(
    "bad",
    [{"grid_p": ()}, {"grid_p": (0.5, 1.0)}, {"grid_tau": (1.0, -2.0)}, {"val_fraction": 1.0}, {"epochs": 0}],
)
def test_bad_selection_arguments_raise(bad):
    X, y, _, _ = linear_data()
    with pytest.raises(ValueError):
        mc.select_hyperparameters(X, y, **bad)


# ---------------------------------------------------------------------------------------------
# Classification


def test_classifier_passes_are_softmax_networks_and_training_is_l2_logistic_regression():
    """With no hidden layer and no dropout, the classifier's objective is multinomial logistic
    regression with scikit-learn's C = 1 / length_scale^2 (mean CE + l^2 / (2N) ||W||^2); with
    dropout, the class samples are the softmax of the sampled passes and their average sums to 1."""
    from sklearn.datasets import make_blobs
    from sklearn.linear_model import LogisticRegression

    X, y = make_blobs(200, centers=3, cluster_std=2.5, random_state=4)
    X = (X - X.mean(0)) / X.std(0)
    spec = mc.MCDropoutSpec(n_in=2, hidden=(), dropout=0.0, tau=1.0, length_scale=0.5, learning_rate=0.05,
                            batch_size=200, n_samples=4, n_classes=3)
    state = mc.init(jax.random.PRNGKey(0), spec)
    for _ in range(1500):
        state = mc.update(state, X, y.astype(float))
    reference = LogisticRegression(C=1 / 0.5**2, tol=1e-10, max_iter=10_000).fit(X, y)
    probs = np.asarray(mc.class_samples(state, X))
    assert probs.shape == (4, 200, 3)
    np.testing.assert_allclose(probs[0], reference.predict_proba(X), atol=2e-3)
    dropped = state.replace(spec=dataclasses.replace(spec, dropout=0.3))
    samples = np.asarray(mc.class_samples(dropped, X))
    outputs = np.asarray(mc.sample_outputs(dropped, X))
    np.testing.assert_allclose(samples, np.asarray(jax.nn.softmax(outputs, axis=-1)), rtol=1e-12)
    assert samples.std(0).max() > 1e-3  # the passes differ
    with pytest.raises(ValueError, match="classifier"):
        mc.class_samples(mc.init(jax.random.PRNGKey(0), BASE), X[:, :1].repeat(3, 1))


def test_classifier_selection_scores_held_out_log_probability():
    from sklearn.datasets import make_moons

    X, y = make_moons(300, noise=0.3, random_state=0)
    spec = mc.MCDropoutSpec(n_in=2, hidden=(32,), tau=1.0, learning_rate=1e-2, batch_size=32, n_classes=2)
    choice = mc.select_hyperparameters(X, y.astype(float), (0.01, 0.5), (1.0,), epochs=30,
                                       key=jax.random.PRNGKey(0), spec=spec, n_samples=20)
    assert choice.scores.shape == (2, 1) and np.all(choice.scores < 0)
    with pytest.raises(ValueError, match="tau"):
        mc.select_hyperparameters(X, y.astype(float), (0.01,), (1.0, 2.0), epochs=1, spec=spec)

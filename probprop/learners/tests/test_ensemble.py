"""Deep ensembles: learning, mixture moments, member independence, masking, reproducibility."""

import jax
import numpy as np
import pytest

import probprop  # noqa: F401  (enables float64)
from probprop.learners import ensemble, mapnet


def hetero_1d(n=400, seed=0):
    """y = sin(x) + (0.1 + 0.3 |x|) eps, x ~ U(-3, 3): noise sd 0.1 at 0, 0.85 at |x| = 2.5."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    y = np.sin(x) + (0.1 + 0.3 * np.abs(x)) * rng.standard_normal(n)
    return x[:, None], y


SPEC = ensemble.EnsembleSpec(n_in=1, hidden=(50,), n_members=5)


def train(spec, X, y, epochs, seed=0):
    state = ensemble.init(jax.random.PRNGKey(seed), spec)
    for _ in range(epochs):
        state = ensemble.update(state, X, y)
    return state


@pytest.fixture(scope="module")
def trained():
    X, y = hetero_1d()
    return train(SPEC, X, y, epochs=60)


def test_ensemble_learns_mean_and_input_dependent_noise(trained):
    grid = np.array([[-2.5], [-0.1], [0.0], [0.1], [2.5]])
    sd = np.sqrt(np.asarray(ensemble.noise_variance(trained, grid)))
    assert np.all(sd[[0, 4]] > 2 * sd[1:4].mean()), sd
    Xt, yt = hetero_1d(n=2000, seed=1)
    mean, total = (np.asarray(a) for a in ensemble.predictive_moments(trained, Xt))
    assert np.sqrt(np.mean((mean - np.sin(Xt[:, 0])) ** 2)) < 0.2
    ll = np.mean(-0.5 * np.log(2 * np.pi * total) - (yt - mean) ** 2 / (2 * total))
    # on these test points the true model scores -0.66, the true mean with the best constant
    # variance -0.92: the ensemble must be much closer to the former
    assert ll > -0.8, ll
    assert np.all(np.isfinite(np.asarray(trained.loss)))


def test_mixture_moments_equal_brute_force_over_members(trained):
    X = np.linspace(-4, 4, 9)[:, None]
    mus, variances = [], []
    for m in range(SPEC.n_members):
        member = trained.member(m)
        mus.append(np.asarray(mapnet.predict(member, X)[0]))
        variances.append(np.asarray(mapnet.noise_variance(member, X)))
    mus, variances = np.array(mus), np.array(variances)
    mean = mus.mean(0)
    total = (variances + mus**2).mean(0) - mean**2  # moment-matched Gaussian mixture
    got_mean, epistemic = ensemble.predict(trained, X)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(epistemic, mus.var(0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ensemble.noise_variance(trained, X), variances.mean(0), rtol=1e-12)
    _, got_total = ensemble.predictive_moments(trained, X)
    np.testing.assert_allclose(got_total, total, rtol=1e-10)
    assert np.all(np.asarray(epistemic) > 0)  # independent members disagree


def test_members_are_independent_map_networks():
    """The vmapped epoch is, member by member, the MAP-network epoch with that member's own
    initialisation and shuffling key; members start (and shuffle) differently."""
    X, y = hetero_1d()
    state = ensemble.init(jax.random.PRNGKey(3), SPEC)
    w0 = np.asarray(state.params["layers"][0][0])
    assert all(not np.allclose(w0[0], w0[m]) for m in range(1, SPEC.n_members))
    assert len({tuple(np.asarray(k)) for k in state.keys}) == SPEC.n_members
    after = ensemble.update(state, X, y)
    for m in (0, SPEC.n_members - 1):
        alone = mapnet.update(state.member(m), X, y)
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(after.member(m).params)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_same_key_reproduces_and_padding_with_masked_rows_changes_nothing():
    X, y = hetero_1d()
    a, b = train(SPEC, X, y, epochs=1), train(SPEC, X, y, epochs=1)
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(la, lb)
    rng = np.random.default_rng(1)
    Xp = np.concatenate([X, 30 * rng.standard_normal((16, 1))])  # 416 rows: 13 batches, as 400
    yp = np.concatenate([y, 30 * rng.standard_normal(16)])
    padded = ensemble.update(ensemble.init(jax.random.PRNGKey(0), SPEC), Xp, yp, np.arange(416) < 400)
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(padded)):
        np.testing.assert_allclose(la, lb, rtol=1e-12, atol=1e-14)


def test_defaults_follow_the_paper():
    spec = ensemble.EnsembleSpec(n_in=3)
    assert spec.n_members == 5 and spec.adversarial_eps == 0.0  # adversarial training off
    member = spec.member_spec
    assert member.heteroscedastic and member.variance_link == "softplus" and member.min_variance == 1e-6


@pytest.mark.parametrize(
    "bad",
    [{"n_members": 0}, {"n_members": 2.0}, {"hidden": (0,)}, {"learning_rate": 0.0}, {"prior_var": -2.0}, {"batch_size": -1}],
)
def test_bad_spec_values_raise(bad):
    with pytest.raises(ValueError):
        ensemble.EnsembleSpec(**{"n_in": 2, **bad})


def test_learning_rate_selection_scores_each_step_size_on_held_out_rows():
    """A step size too small to move in 3 epochs loses to a usable one; the selection is
    reproducible; the scores are the validation LL of the moment-matched mixture."""
    X, y = hetero_1d(n=300)
    spec = ensemble.EnsembleSpec(n_in=1, hidden=(16,), n_members=2)
    key = jax.random.PRNGKey(3)
    choice = ensemble.select_learning_rate(X, y, spec, epochs=3, grid=(1e-7, 3e-2), key=key)
    assert choice.chosen == {"learning_rate": 3e-2} and choice.spec.learning_rate == 3e-2
    assert choice.grid == {"learning_rate": (1e-7, 3e-2)}
    assert choice.scores.shape == (2,) and choice.scores[1] > choice.scores[0]
    again = ensemble.select_learning_rate(X, y, spec, epochs=3, grid=(1e-7, 3e-2), key=key)
    np.testing.assert_array_equal(choice.scores, again.scores)
    # the score is the held-out Gaussian LL: recompute it for the winner by hand
    n_val = round(0.2 * len(y))
    split_key, init_key = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(split_key, len(y)))
    val, fit = perm[:n_val], perm[n_val:]
    state = train(choice.spec, X[fit], y[fit], epochs=0)
    state = ensemble.init(init_key, choice.spec)
    for _ in range(3):
        state = ensemble.update(state, X[fit], y[fit])
    mean, total = (np.asarray(a) for a in ensemble.predictive_moments(state, X[val]))
    ll = np.mean(-0.5 * (np.log(2 * np.pi * total) + (y[val] - mean) ** 2 / total))
    np.testing.assert_allclose(choice.scores[1], ll, rtol=1e-10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(grid=()), "grid"),
        (dict(grid=(0.01, -1.0)), "grid"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(epochs=0), "epochs"),
    ],
)
def test_learning_rate_selection_rejects_bad_arguments(kwargs, message):
    X, y = hetero_1d(n=50)
    with pytest.raises(ValueError, match=message):
        ensemble.select_learning_rate(X, y, ensemble.EnsembleSpec(n_in=1, hidden=(4,), n_members=1), **kwargs)

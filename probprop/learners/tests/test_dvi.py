"""dDVI: moment-based ELBO terms against Monte Carlo and closed forms; learning; masking."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats

import probprop  # noqa: F401  (enables float64)
from probprop.data import make_linear_gaussian
from probprop.learners import dvi

S = 20_000  # Monte Carlo weight samples


def hetero_1d(n=400, seed=0):
    """y = sin(x) + (0.1 + 0.3 |x|) eps, x ~ U(-3, 3): noise sd 0.1 at 0, 0.85 at |x| = 2.5."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    y = np.sin(x) + (0.1 + 0.3 * np.abs(x)) * rng.standard_normal(n)
    return x[:, None], y


def linear_data(seed=0):
    X, y, _ = make_linear_gaussian(320, 3, noise_std=0.5, random_state=seed)
    return X[:256], y[:256], X[256:], y[256:]


def random_params(spec, seed=0, sigma=0.3):
    """A posterior far from the initial one: N(0, 1/fan_in) + N(0, 0.3^2) means (biases
    N(0, 0.3^2)), posterior sds log-normally spread around ``sigma`` (built with NumPy)."""
    rng = np.random.default_rng(seed)
    rho = math.log(math.expm1(sigma))
    sizes = spec.layer_sizes
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        shape = (fan_in, fan_out)
        layers.append(
            {
                "w_mu": rng.standard_normal(shape) / np.sqrt(fan_in) + 0.3 * rng.standard_normal(shape),
                "w_rho": rho + 0.5 * rng.standard_normal(shape),
                "b_mu": 0.3 * rng.standard_normal(fan_out),
                "b_rho": rho + 0.5 * rng.standard_normal(fan_out),
            }
        )
    params = {"layers": tuple(jax.tree.map(jnp.asarray, layers))}
    if not spec.heteroscedastic:
        params["log_noise"] = jnp.log(0.3)
    return params


def mc_outputs(params, X, seed=42):
    """Network outputs for S weight draws from q, shape (S, n, n_out) (NumPy, all at once)."""
    rng = np.random.default_rng(seed)
    h = np.broadcast_to(X, (S,) + X.shape)
    last = len(params["layers"]) - 1
    for i, layer in enumerate(params["layers"]):
        w_mean, w_var, b_mean, b_var = (np.asarray(a) for a in dvi.layer_moments(layer))
        W = w_mean + np.sqrt(w_var) * rng.standard_normal((S,) + w_mean.shape)
        b = b_mean + np.sqrt(b_var) * rng.standard_normal((S,) + b_mean.shape)
        h = np.einsum("snd,sdo->sno", h, W) + b[:, None, :]
        if i < last:
            h = np.maximum(h, 0.0)
    return h


def mc_log_lik(params, spec, X, y):
    out = mc_outputs(params, X)
    f = out[..., 0]
    log_s2 = out[..., 1] if spec.heteroscedastic else float(params["log_noise"])
    ll = -0.5 * (np.log(2 * np.pi) + log_s2 + (y - f) ** 2 * np.exp(-log_s2))
    return ll.mean(0), ll.std(0) / np.sqrt(S), f


# jitted once per spec: evaluated op by op, the moment maps would compile every primitive
expected_log_likelihood = jax.jit(dvi.expected_log_likelihood, static_argnums=1)
output_moments = jax.jit(dvi.output_moments, static_argnums=1)
kl_divergence = jax.jit(dvi.kl_divergence, static_argnums=1)
prior_variances = jax.jit(dvi.prior_variances, static_argnums=1)

X6 = np.random.default_rng(0).normal(size=(6, 3))
Y6 = np.random.default_rng(1).normal(size=6)


@pytest.mark.parametrize(
    "hidden, heteroscedastic",
    [((10,), False), ((), True)],
    ids=["1-hidden-homoscedastic", "linear-heteroscedastic"],
)
def test_expected_log_likelihood_matches_monte_carlo_where_the_moments_are_exact(hidden, heteroscedastic):
    """One hidden layer, deterministic inputs: pre-activations are Gaussian and independent, so
    (E f, Var f) and E[log N(y | f, s^2)] = -0.5 log(2 pi s^2) - ((y - E f)^2 + Var f) / (2 s^2)
    are exact. Without a hidden layer f and l are independent Gaussians, so the lognormal
    E[e^-l] makes the heteroscedastic formula exact too."""
    spec = dvi.DVISpec(n_in=3, hidden=hidden, heteroscedastic=heteroscedastic)
    params = random_params(spec)
    mc_mean, mc_se, f = mc_log_lik(params, spec, X6, Y6)
    moment = np.asarray(expected_log_likelihood(params, spec, X6, Y6))
    assert np.all(np.abs(moment - mc_mean) < 4.5 * mc_se), (moment - mc_mean) / mc_se
    mean, var = output_moments(params, spec, X6)
    f_se = f.std(0) / np.sqrt(S)
    assert np.all(np.abs(np.asarray(mean[:, 0]) - f.mean(0)) < 4.5 * f_se)
    np.testing.assert_allclose(var[:, 0], f.var(0), rtol=0.05)


def test_heteroscedastic_approximation_is_close_with_a_hidden_layer():
    """With a hidden layer f and l are correlated and l is not Gaussian: the paper's formula is
    then an approximation, good for posterior sds of 0.1 (within 3 % of Monte Carlo here; it
    degrades to about 15 % at sd 0.3)."""
    spec = dvi.DVISpec(n_in=3, hidden=(10,), heteroscedastic=True)
    params = random_params(spec, sigma=0.1)
    mc_mean, _, _ = mc_log_lik(params, spec, X6, Y6)
    moment = np.asarray(expected_log_likelihood(params, spec, X6, Y6))
    np.testing.assert_allclose(moment, mc_mean, rtol=0.03)


def _flat(params):
    mus, sds = [], []
    for layer in params["layers"]:
        w_mean, w_var, b_mean, b_var = (np.asarray(a) for a in dvi.layer_moments(layer))
        mus.append(np.concatenate([w_mean.ravel(), b_mean.ravel()]))
        sds.append(np.sqrt(np.concatenate([w_var.ravel(), b_var.ravel()])))
    return mus, sds


@pytest.mark.parametrize("empirical_bayes", [False, True])
def test_kl_matches_closed_form_and_monte_carlo(empirical_bayes):
    spec = dvi.DVISpec(n_in=3, hidden=(10,), heteroscedastic=False, prior_var=0.7, empirical_bayes=empirical_bayes)
    params = random_params(spec)
    prior_vars = [float(s) for s in prior_variances(params, spec)]
    mus, sds = _flat(params)
    if not empirical_bayes:
        assert prior_vars == [0.7, 0.7]
    closed = sum(np.sum(np.log(np.sqrt(s) / sd) + (sd**2 + mu**2) / (2 * s) - 0.5) for mu, sd, s in zip(mus, sds, prior_vars))
    kl = float(kl_divergence(params, spec))
    np.testing.assert_allclose(kl, closed, rtol=1e-12)
    rng = np.random.default_rng(0)
    log_ratio = 0.0
    for mu, sd, s in zip(mus, sds, prior_vars):
        w = mu + sd * rng.standard_normal((10_000, mu.size))
        log_ratio = log_ratio + np.sum(stats.norm.logpdf(w, mu, sd) - stats.norm.logpdf(w, 0, np.sqrt(s)), axis=1)
    assert abs(log_ratio.mean() - kl) < 4 * log_ratio.std() / np.sqrt(log_ratio.size)


def test_empirical_bayes_prior_variance_maximises_the_hyperprior_objective():
    """s* = (beta + sum(sigma^2 + mu^2) / 2) / (alpha + 1 + n / 2) maximises, per layer,
    E_q[log N(w | 0, s)] + log InvGamma(s | alpha, beta)."""
    spec = dvi.DVISpec(n_in=3, hidden=(10,), eb_alpha=1.5, eb_beta=4.0)
    params = random_params(spec)
    mus, sds = _flat(params)
    for mu, sd, s_star in zip(mus, sds, prior_variances(params, spec)):
        second = np.sum(sd**2 + mu**2)

        def negative(log_s, second=second, n=mu.size):
            s = np.exp(log_s)
            expected_log_prior = -0.5 * n * np.log(2 * np.pi * s) - second / (2 * s)
            return -(expected_log_prior + stats.invgamma.logpdf(s, 1.5, scale=4.0))

        best = optimize.minimize_scalar(negative, bounds=(-10, 10), method="bounded", options={"xatol": 1e-10})
        np.testing.assert_allclose(float(s_star), np.exp(best.x), rtol=1e-6)


def train(spec, X, y, epochs, seed=0):
    state = dvi.init(jax.random.PRNGKey(seed), spec)
    for _ in range(epochs):
        state = dvi.update(state, X, y)
    return state


def test_homoscedastic_dvi_learns_linear_problem():
    X, y, Xt, yt = linear_data()
    state = train(dvi.DVISpec(n_in=3, hidden=(20,), heteroscedastic=False), X, y, epochs=40)
    mean, var = (np.asarray(a) for a in dvi.predict(state, Xt))
    noise = np.asarray(dvi.noise_variance(state, Xt))
    assert np.all(var > 0) and np.allclose(noise, noise[0])
    assert np.sqrt(np.mean((mean - yt) ** 2)) < 0.65  # noise sd 0.5
    assert 0.12 < noise[0] < 0.45  # true 0.25
    total = var + noise
    assert np.mean(-0.5 * np.log(2 * np.pi * total) - (yt - mean) ** 2 / (2 * total)) > -1.0
    # the ELBO objective went down
    assert float(state.loss) < float(dvi.update(dvi.init(jax.random.PRNGKey(0), state.spec), X, y).loss)


def test_heteroscedastic_dvi_recovers_input_dependent_noise_and_epistemic_growth():
    X, y = hetero_1d()
    state = train(dvi.DVISpec(n_in=1, hidden=(50,), learning_rate=1e-2), X, y, epochs=60)
    grid = np.array([[-2.5], [-0.1], [0.0], [0.1], [2.5], [8.0]])
    sd = np.sqrt(np.asarray(dvi.noise_variance(state, grid)))
    assert np.all(sd[[0, 4]] > 2 * sd[1:4].mean()), sd
    mean, var = (np.asarray(a) for a in dvi.predict(state, grid))
    np.testing.assert_allclose(mean[:5], np.sin(grid[:5, 0]), atol=0.35)
    assert var[5] > 5 * var[2]  # epistemic variance grows away from the data


def test_same_key_reproduces_and_padding_with_masked_rows_changes_nothing():
    X, y, _, _ = linear_data()
    spec = dvi.DVISpec(n_in=3, hidden=(20,), heteroscedastic=False)
    a, b = train(spec, X, y, epochs=2), train(spec, X, y, epochs=2)
    c = train(spec, X, y, epochs=2, seed=1)
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(la, lb)
    assert not np.allclose(a.params["layers"][0]["w_mu"], c.params["layers"][0]["w_mu"])
    # 30 extra rows with mask False: same batches, same N in the KL term
    rng = np.random.default_rng(1)
    Xp = np.concatenate([X, 50 * rng.standard_normal((30, 3))])
    yp = np.concatenate([y, 50 * rng.standard_normal(30)])
    state = dvi.init(jax.random.PRNGKey(0), spec)
    ref = dvi.update(state, X, y)
    padded = dvi.update(state, Xp, yp, np.arange(286) < 256)
    for la, lb in zip(jax.tree.leaves(ref), jax.tree.leaves(padded)):
        np.testing.assert_allclose(la, lb, rtol=1e-12, atol=1e-14)


def test_kl_warmup_schedule():
    spec = dvi.DVISpec(n_in=1, kl_warmup_epochs=4)
    weights = [float(dvi.kl_weight(spec, jnp.asarray(e))) for e in range(6)]
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert float(dvi.kl_weight(dvi.DVISpec(n_in=1), jnp.asarray(0))) == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"n_in": 0},
        {"hidden": (3, -1)},
        {"prior_var": 0.0},
        {"eb_alpha": -1.0},
        {"eb_beta": float("nan")},
        {"learning_rate": -1e-3},
        {"batch_size": 0},
        {"init_std": 0.0},
        {"kl_warmup_epochs": -1},
        {"dtype": "int32"},
    ],
)
def test_bad_spec_values_raise(bad):
    with pytest.raises(ValueError):
        dvi.DVISpec(**{"n_in": 3, **bad})

"""MAP network and the shared mini-batch loop (_sgd): learning, masking, reproducibility."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import probprop  # noqa: F401  (enables float64)
from probprop.data import make_linear_gaussian
from probprop.learners import _sgd, mapnet


def hetero_1d(n=400, seed=0):
    """y = sin(x) + (0.1 + 0.3 |x|) eps, x ~ U(-3, 3): noise sd 0.1 at 0, 0.85 at |x| = 2.5."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    y = np.sin(x) + (0.1 + 0.3 * np.abs(x)) * rng.standard_normal(n)
    return x[:, None], y


def linear_data(seed=0):
    X, y, _ = make_linear_gaussian(320, 3, noise_std=0.5, random_state=seed)
    return X[:256], y[:256], X[256:], y[256:]


def train(spec, X, y, epochs, seed=0):
    state = mapnet.init(jax.random.PRNGKey(seed), spec)
    for _ in range(epochs):
        state = mapnet.update(state, X, y)
    return state


def gaussian_ll(y, mean, var):
    return np.mean(-0.5 * np.log(2 * np.pi * var) - (y - mean) ** 2 / (2 * var))


def test_homoscedastic_map_learns_linear_problem_and_noise():
    X, y, Xt, yt = linear_data()
    state = train(mapnet.MAPSpec(n_in=3, hidden=(20,)), X, y, epochs=40)
    mean, var = mapnet.predict(state, Xt)
    noise = np.asarray(mapnet.noise_variance(state, Xt))
    assert np.all(np.asarray(var) == 0.0)  # a point estimate has no epistemic variance
    assert np.allclose(noise, noise[0])
    rmse = np.sqrt(np.mean((np.asarray(mean) - yt) ** 2))
    assert rmse < 0.65  # noise sd 0.5
    assert 0.12 < noise[0] < 0.45  # true noise variance 0.25
    assert gaussian_ll(yt, np.asarray(mean), noise) > -1.0  # optimum -0.5 log(2 pi e 0.25) = -0.73
    assert np.isfinite(float(state.loss)) and int(state.epoch) == 40


def test_heteroscedastic_head_recovers_input_dependent_noise():
    X, y = hetero_1d()
    spec = mapnet.MAPSpec(n_in=1, hidden=(50,), heteroscedastic=True)
    state = train(spec, X, y, epochs=60)
    grid = np.array([[-2.5], [-0.1], [0.0], [0.1], [2.5]])
    sd = np.sqrt(np.asarray(mapnet.noise_variance(state, grid)))
    centre, edges = sd[1:4].mean(), sd[[0, 4]]
    assert np.all(edges > 2 * centre), sd
    mean, _ = mapnet.predict(state, grid)
    np.testing.assert_allclose(mean, np.sin(grid[:, 0]), atol=0.35)


def test_same_key_reproduces_and_other_key_differs():
    X, y, _, _ = linear_data()
    spec = mapnet.MAPSpec(n_in=3, hidden=(20,))
    a, b, c = (train(spec, X, y, epochs=2, seed=s) for s in (0, 0, 1))
    for la, lb in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(la, lb)
    assert not np.allclose(a.params["layers"][0][0], c.params["layers"][0][0])


def test_padding_the_data_with_masked_rows_changes_nothing():
    """Extra rows with mask False (any finite values) give exactly the unpadded epoch."""
    X, y, _, _ = linear_data()
    spec = mapnet.MAPSpec(n_in=3, hidden=(20,))
    state = mapnet.init(jax.random.PRNGKey(3), spec)
    ref = mapnet.update(state, X, y)
    rng = np.random.default_rng(1)
    Xp = np.concatenate([X, 100 * rng.standard_normal((30, 3))])  # 286 rows: 9 batches, as 256
    yp = np.concatenate([y, 100 * rng.standard_normal(30)])
    mask = np.arange(286) < 256
    padded = mapnet.update(state, Xp, yp, mask)
    for la, lb in zip(jax.tree.leaves(ref), jax.tree.leaves(padded)):
        np.testing.assert_allclose(la, lb, rtol=1e-12, atol=1e-14)


def _loop_epoch(params, opt_state, key, X, y, loss_fn, optimizer, batch_size, mask=None):
    """Reference epoch: a Python loop over the same batches, each cut to its real rows."""
    key, order, keep, batch_keys = jax.jit(_sgd.batch_plan, static_argnums=(1, 2))(key, X.shape[0], batch_size, mask)
    order, keep = np.asarray(order), np.asarray(keep)

    @jax.jit
    def step(params, opt_state, xb, yb, k):
        def objective(p):
            per_row, penalty = loss_fn(p, xb, yb, k)
            return jnp.mean(per_row) + penalty

        updates, opt_state = optimizer.update(jax.grad(objective)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for b in range(len(batch_keys)):
        rows = order[b * batch_size : (b + 1) * batch_size][keep[b * batch_size : (b + 1) * batch_size]]
        if rows.size == 0:
            continue
        params, opt_state = step(params, opt_state, X[rows], y[rows], batch_keys[b])
    return params, opt_state, key


def test_sgd_epoch_equals_a_loop_over_unpadded_batches():
    """One lax.scan over padded, masked batches == a plain loop over the real rows, including
    the per-batch keys (the loss adds key-dependent noise) and skipping all-padding batches."""
    rng = np.random.default_rng(0)
    n, d, batch = 50, 2, 16  # 4 batches, the last holding 2 real rows ...
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    # ... and 30 masked rows: a 5th batch with no real row must not take an Adam step
    X = np.concatenate([X, rng.standard_normal((30, d))])
    y = np.concatenate([y, rng.standard_normal(30)])
    mask = jnp.arange(80) < 50
    params = {"w": jnp.asarray([0.3, -0.2]), "b": jnp.asarray(0.1)}
    optimizer = optax.adam(0.05)

    def loss_fn(p, xb, yb, k):
        jitter = 0.01 * jax.random.normal(k, yb.shape)
        return (yb - xb @ p["w"] - p["b"] + jitter) ** 2, 0.01 * jnp.sum(p["w"] ** 2)

    key = jax.random.PRNGKey(7)
    got = _sgd.compiled_epoch(params, optimizer.init(params), key, X, y, loss_fn, optimizer, batch, mask)
    want = _loop_epoch(params, optimizer.init(params), key, jnp.asarray(X), jnp.asarray(y), loss_fn, optimizer, batch, mask)
    for a, b in zip(jax.tree.leaves(got[:3]), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert np.isfinite(float(got[3]))


def test_adversarial_loss_adds_the_fast_gradient_sign_term():
    spec = mapnet.MAPSpec(n_in=2, hidden=(5,), heteroscedastic=True, adversarial_eps=0.1)
    plain = mapnet.MAPSpec(n_in=2, hidden=(5,), heteroscedastic=True)
    params = mapnet.init_params(jax.random.PRNGKey(0), spec)
    X, y = jnp.asarray([[0.5, -1.0], [2.0, 0.3]]), jnp.asarray([0.2, -0.4])

    @jax.jit
    def both(params, X, y):
        nll = lambda X: mapnet.row_losses(params, plain, X, y)
        sign = jnp.sign(jax.grad(lambda X: jnp.sum(nll(X)))(X))
        return mapnet.row_losses(params, spec, X, y), nll(X) + nll(X + 0.1 * sign)

    got, want = both(params, X, y)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("link, inverse", [("softplus", jax.nn.softplus), ("exp", jnp.exp)])
def test_variance_links(link, inverse):
    spec = mapnet.MAPSpec(n_in=1, hidden=(4,), heteroscedastic=True, variance_link=link, min_variance=1e-3)
    params = mapnet.init_params(jax.random.PRNGKey(0), spec)
    X = jnp.linspace(-2, 2, 5)[:, None]
    raw = mapnet.mlp(params["layers"], X)[:, 1]
    _, var = jax.jit(mapnet.forward, static_argnums=1)(params, spec, X)
    np.testing.assert_allclose(var, inverse(raw) + 1e-3, rtol=1e-12)
    # the variance unit starts at init_noise_variance (exactly at x = 0: zero biases, ReLU(0) = 0)
    np.testing.assert_allclose(var[2], 0.1, rtol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [
        {"n_in": 0},
        {"hidden": (0,)},
        {"hidden": [50]},
        {"variance_link": "relu"},
        {"prior_var": -1.0},
        {"learning_rate": 0.0},
        {"batch_size": 0},
        {"adversarial_eps": -0.1},
        {"min_variance": -1.0},
        {"dtype": "float16"},
    ],
)
def test_bad_spec_values_raise(bad):
    with pytest.raises(ValueError):
        mapnet.MAPSpec(**{"n_in": 3, **bad})


def test_a_convolution_the_size_of_the_image_trains_as_a_dense_layer():
    """An exact special case of the convolutional MAP network: a kernel covering the whole image
    (no pooling) is a dense layer, so from the same weights an epoch of Adam (shuffles, weight
    decay, softmax loss) ends at the same weights, the kernel being the dense matrix reshaped."""
    from probprop.layers import Conv2D

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(70, 2 * 4 * 4)), rng.integers(0, 3, 70).astype(float)
    conv = (Conv2D((2, 4, 4), 5, kernel=4),)
    conv_spec = mapnet.MAPSpec(n_in=32, hidden=(6,), conv=conv, n_classes=3, batch_size=16, learning_rate=1e-2)
    dense_spec = mapnet.MAPSpec(n_in=32, hidden=(5, 6), n_classes=3, batch_size=16, learning_rate=1e-2)
    assert conv_spec.layer_sizes == dense_spec.layer_sizes == (32, 5, 6, 3)
    a = mapnet.init(jax.random.PRNGKey(1), conv_spec)
    (K, b), = a.params["conv"]
    params = {**a.params, "layers": ((K.reshape(5, -1).T, b), *a.params["layers"])}
    del params["conv"]
    d = mapnet.init(jax.random.PRNGKey(1), dense_spec)
    d = d.replace(params=params, opt_state=mapnet.optimizer(dense_spec).init(params))
    np.testing.assert_allclose(mapnet.predict(a, X)[0], mapnet.predict(d, X)[0], rtol=1e-12, atol=1e-12)
    for _ in range(2):
        a, d = mapnet.update(a, X, y), mapnet.update(d, X, y)
    (K, b), = a.params["conv"]
    np.testing.assert_allclose(K.reshape(5, -1).T, d.params["layers"][0][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, d.params["layers"][0][1], rtol=1e-10, atol=1e-12)
    for (Wa, ba), (Wd, bd) in zip(a.params["layers"], d.params["layers"][1:]):
        np.testing.assert_allclose(Wa, Wd, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.loss, d.loss, rtol=1e-12)
    assert not np.allclose(K, mapnet.init(jax.random.PRNGKey(1), conv_spec).params["conv"][0][0])  # it learned


def test_a_convolution_stack_that_does_not_chain_is_refused():
    from probprop.layers import Conv2D

    first = Conv2D((1, 8, 8), 4, kernel=3, pool=2)
    with pytest.raises(ValueError, match="convolution 1 takes 64 inputs, but it is given 65"):
        mapnet.MAPSpec(n_in=65, conv=(first,))
    with pytest.raises(ValueError, match="convolution 2 takes"):
        mapnet.MAPSpec(n_in=64, conv=(first, Conv2D((2, 3, 3), 4, kernel=2)))
    with pytest.raises(ValueError, match="tuple of Conv2D"):
        mapnet.MAPSpec(n_in=64, conv=((4, 3, 2),))


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("members", [False, True])
def test_the_stepwise_epoch_of_a_convolutional_network_is_the_one_loop_epoch(padded, members):
    """Networks with convolutions take one compiled call per batch (XLA:CPU runs convolutions
    slowly inside a loop); the oracle is the one-loop epoch (sgd_epoch's scan), itself checked
    against a loop over unpadded batches above. Padded data: masked rows appended."""
    from probprop.layers.conv import conv_stack
    from probprop.learners import ensemble

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(50, 36)), rng.integers(0, 3, 50).astype(float)
    mask = None
    if padded:
        X, y = np.concatenate([X, rng.normal(size=(14, 36))]), np.concatenate([y, np.zeros(14)])
        mask = np.arange(64) < 50
    conv = conv_stack((1, 6, 6), ((3, 3, 2),), "avg")
    if members:
        spec = ensemble.EnsembleSpec(n_in=36, hidden=(7,), n_members=3, n_classes=3, batch_size=8, conv=conv)
        module, keys = ensemble, "keys"
    else:
        spec = mapnet.MAPSpec(n_in=36, hidden=(7,), n_classes=3, batch_size=8, conv=conv)
        module, keys = mapnet, "key"
    stepwise = one_loop = module.init(jax.random.PRNGKey(0), spec)
    for _ in range(2):
        stepwise = module.update(stepwise, X, y, mask)
        one_loop = module._update(one_loop, jnp.asarray(X), jnp.asarray(y), None if mask is None else jnp.asarray(mask))
    for a, b in zip(jax.tree.leaves((stepwise.params, stepwise.opt_state)), jax.tree.leaves((one_loop.params, one_loop.opt_state))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(getattr(stepwise, keys), getattr(one_loop, keys))
    np.testing.assert_allclose(stepwise.loss, one_loop.loss, rtol=1e-12)
    assert int(stepwise.epoch) == 2


def test_members_with_convolutions_are_mapped_one_by_one_as_vmap_would():
    """``map_members`` unrolls the members of a convolutional network (XLA:CPU's grouped
    convolutions are slow) and vmaps dense ones: the ensemble's forward pass equals vmap's."""
    from probprop.layers.conv import conv_stack
    from probprop.learners import ensemble

    conv = conv_stack((1, 6, 6), ((3, 3, 2),), "avg")
    spec = ensemble.EnsembleSpec(n_in=36, hidden=(7,), n_members=3, n_classes=3, conv=conv)
    state = ensemble.init(jax.random.PRNGKey(1), spec)
    X = jnp.asarray(np.random.default_rng(0).normal(size=(20, 36)))
    member = spec.member_spec
    vmapped = jax.vmap(lambda p: mapnet.forward(p, member, X))(state.params)
    for a, b in zip(ensemble.member_predictions(state, X), vmapped):
        assert a.shape == b.shape == (3, 20, 3)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # the members differ, so a mix-up of members would show
    assert float(jnp.max(jnp.abs(vmapped[0][0] - vmapped[0][1]))) > 1e-3

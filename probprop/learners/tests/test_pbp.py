"""The compiled PBP engine against exact special cases, autodiff, and the NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probprop  # noqa: F401  (enables float64)
from probprop.learners import pbp, pbp_numpy
from probprop.learners.base import tracing
from probprop.moments import adf


def make_state(hidden, n_in=4, seed=0, **spec):
    return pbp.init(jax.random.PRNGKey(seed), pbp.PBPSpec(n_in=n_in, hidden=hidden, **spec))


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n)
    return X, (y - y.mean()) / y.std()


def log_z(state, x, y):
    """log Z of PBP eq. 12 as a function of the weight moments (for autodiff)."""
    mean, var = pbp.forward(state, x)
    return adf.gaussian_log_z(y, mean, var + pbp.noise_variance(state))


@pytest.mark.parametrize("hidden", [(), (7,), (5, 4)])
def test_hand_written_gradients_match_autodiff_and_finite_differences(hidden):
    state = make_state(hidden)
    x, y = jnp.asarray([0.3, -1.2, 0.8, 2.0]), jnp.asarray(0.7)
    _, _, grads_m, grads_v = pbp.output_moments_and_grads(state, x, y)
    f = lambda means, variances: log_z(state.replace(means=means, variances=variances), x, y)  # noqa: E731
    auto_m, auto_v = jax.grad(f, argnums=(0, 1))(state.means, state.variances)
    for hm, am, hv, av in zip(grads_m, auto_m, grads_v, auto_v):
        np.testing.assert_allclose(hm, am, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(hv, av, rtol=1e-10, atol=1e-13)
    # finite differences on a few entries of every layer
    h = 1e-6
    for layer in range(len(state.means)):
        for idx in [(0, 0), (state.means[layer].shape[0] - 1, state.means[layer].shape[1] - 1)]:
            for which, auto in (("means", auto_m), ("variances", auto_v)):
                arrays = list(getattr(state, which))
                plus, minus = list(arrays), list(arrays)
                plus[layer] = arrays[layer].at[idx].add(h)
                minus[layer] = arrays[layer].at[idx].add(-h)
                fp = log_z(state.replace(**{which: tuple(plus)}), x, y)
                fm = log_z(state.replace(**{which: tuple(minus)}), x, y)
                fd = (fp - fm) / (2 * h)
                np.testing.assert_allclose(auto[layer][idx], fd, rtol=1e-5, atol=1e-9)


def _log_z_cut(state, x, y, cut: bool):
    """Heteroscedastic log Z with the noise output l computed from stop_gradient'ed hidden
    activations when ``cut`` (l's row of weights still differentiable): the gradient that
    ``HeteroscedasticGaussian(feedback=False)`` asks the backward pass for."""
    spec = state.spec
    activation = pbp.ACTIVATIONS[spec.activation]
    mean, var = x, None
    last = len(state.means) - 1
    for layer, (piece, M, V) in enumerate(zip(spec.layer_pieces, state.means, state.variances)):
        if layer == last:
            stop = jax.lax.stop_gradient if cut else (lambda a: a)
            _, (m_f, v_f) = piece.forward(M, V, mean, var, spec.bias)
            _, (m_l, v_l) = piece.forward(M, V, stop(mean), stop(var), spec.bias)
            return spec.likelihood.log_z(y, jnp.stack([m_f[0], m_l[1]]), jnp.stack([v_f[0], v_l[1]]))
        _, (mean, var) = piece.forward(M, V, mean, var, spec.bias)
        mean, var, _ = activation(mean, var)


@pytest.mark.parametrize("hidden", [(7,), (5, 4)])
def test_a_cut_noise_output_takes_the_gradient_with_its_feedback_stopped(hidden):
    """``HeteroscedasticGaussian(feedback=False)``: every weight's hand-written gradient equals
    autodiff of log Z with the noise output's inputs stop_gradient'ed; the output layer's equal
    the exact (feedback) gradient, the hidden layers' differ from it."""
    from probprop.likelihoods import HeteroscedasticGaussian

    x, y = jnp.asarray([0.3, -1.2, 0.8, 2.0]), jnp.asarray(1.7)
    grads = {}
    for feedback in (True, False):
        state = make_state(hidden, likelihood=HeteroscedasticGaussian(feedback=feedback))
        _, _, grads_m, grads_v = pbp.output_moments_and_grads(state, x, y)
        f = lambda means, variances: _log_z_cut(state.replace(means=means, variances=variances), x, y, not feedback)  # noqa: B023
        auto_m, auto_v = jax.grad(f, argnums=(0, 1))(state.means, state.variances)
        for hm, am, hv, av in zip(grads_m, auto_m, grads_v, auto_v, strict=True):
            np.testing.assert_allclose(hm, am, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(hv, av, rtol=1e-9, atol=1e-12)
        grads[feedback] = (grads_m, grads_v)
    for which in (0, 1):
        np.testing.assert_allclose(grads[False][which][-1], grads[True][which][-1], rtol=1e-12)
        for layer in range(len(hidden)):
            assert not np.allclose(grads[False][which][layer], grads[True][which][layer], rtol=1e-3)


def test_without_hidden_layers_a_cut_changes_nothing():
    from probprop.likelihoods import HeteroscedasticGaussian

    x, y = jnp.asarray([0.3, -1.2, 0.8, 2.0]), jnp.asarray(1.7)
    states = [make_state((), likelihood=HeteroscedasticGaussian(feedback=f)) for f in (True, False)]
    a, b = (pbp.adf_update(s, x, y) for s in states)
    np.testing.assert_array_equal(a.means[0], b.means[0])
    np.testing.assert_array_equal(a.variances[0], b.variances[0])
    with pytest.raises(ValueError, match="feedback must be True or False"):
        HeteroscedasticGaussian(feedback="no")


def exact_linear_posterior(m0, v0, A, y, noise_var):
    """Exact Gaussian posterior of w for y = A w + noise, prior N(m0, diag v0)."""
    precision = np.diag(1.0 / v0) + A.T @ A / noise_var
    cov = np.linalg.inv(precision)
    mean = cov @ (m0 / v0 + A.T @ y / noise_var)
    return mean, np.diag(cov)


def test_one_adf_update_without_hidden_layer_is_exact_bayesian_linear_regression():
    state = make_state((), n_in=3, learn_noise=False, noise_variance=0.3)
    x, y = np.array([0.5, -1.5, 2.0]), 1.3
    new = pbp.adf_update(state, jnp.asarray(x), jnp.asarray(y))
    a = np.append(x, 1.0) / np.sqrt(4)  # bias input and the 1/sqrt(fan_in + 1) scaling
    m0, v0 = np.asarray(state.means[0][0]), np.asarray(state.variances[0][0])
    mean, var = exact_linear_posterior(m0, v0, a[None, :], np.array([y]), 0.3)
    np.testing.assert_allclose(new.means[0][0], mean, rtol=1e-12)
    np.testing.assert_allclose(new.variances[0][0], var, rtol=1e-12)
    assert int(new.rejected) == 0


def test_adf_pass_over_one_hot_inputs_equals_the_exact_posterior():
    """Each point touches one weight, so the exact posterior stays factorised and ADF is exact."""
    d, n, noise_var = 5, 200, 0.2
    rng = np.random.default_rng(0)
    state = make_state((), n_in=d, learn_noise=False, noise_variance=noise_var, bias=False)
    k = rng.integers(0, d, n)
    X = np.eye(d)[k]
    y = rng.normal(size=n) + k
    new = pbp.adf_sweep(state, X, y)
    A = X / np.sqrt(d)
    m0, v0 = np.asarray(state.means[0][0]), np.asarray(state.variances[0][0])
    mean, var = exact_linear_posterior(m0, v0, A, y, noise_var)
    np.testing.assert_allclose(new.means[0][0], mean, rtol=1e-10)
    np.testing.assert_allclose(new.variances[0][0], var, rtol=1e-10)


@pytest.mark.parametrize("hidden", [(), (10,), (6, 5)])
@pytest.mark.parametrize("learn_noise", [True, False])
def test_compiled_epoch_matches_the_numpy_reference(hidden, learn_noise):
    X, y = data(60, 4)
    kw = {} if learn_noise else {"noise_variance": 0.5}
    state = make_state(hidden, learn_noise=learn_noise, **kw)
    params = pbp_numpy.from_state(state)
    order = np.random.default_rng(1).permutation(len(y))
    for _ in range(2):
        state = pbp.refine_prior(pbp.adf_sweep(state, X[order], y[order]))
        pbp_numpy.epoch(params, X, y, order)
    for layer in range(len(hidden) + 1):
        np.testing.assert_allclose(state.means[layer], params["m"][layer], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state.variances[layer], params["v"][layer], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state.sites.precision[layer], params["site_v"][layer], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(state.sites.shape[layer], params["site_a"][layer], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(state.noise, params["noise"], rtol=1e-10)
    np.testing.assert_allclose(state.prior, params["prior"], rtol=1e-10)
    assert int(state.rejected) == params["rejected"]


def test_noise_gamma_update_moves_towards_the_observed_noise():
    X, y = data(400, 4)
    state = make_state((10,))
    for _ in range(5):
        state = pbp.update(state, X, 0.5 * y)
    # residual noise of 0.5 * (standardised signal with ~10% noise) is small
    assert float(pbp.noise_variance(state)) < 0.1
    assert float(state.noise.shape) > 6.0


def test_invalid_updates_are_rejected_and_counted():
    """Far-off targets with wide, large-mean weights push some variances below zero: those
    weights keep their old moments, the others update, and each refusal is counted."""
    rng = np.random.default_rng(0)
    state = make_state((3,), n_in=2)
    state = state.replace(
        means=tuple(jnp.asarray(rng.normal(scale=3, size=m.shape)) for m in state.means),
        variances=tuple(jnp.asarray(rng.uniform(0.01, 5, size=m.shape)) for m in state.means),
    )
    x = jnp.asarray(rng.normal(scale=3, size=2))
    new = pbp.adf_update(state, x, jnp.asarray(-30.0))
    _, _, gm, gv = pbp.output_moments_and_grads(state, x, jnp.asarray(-30.0))
    n_bad = 0
    for M, V, dM, dV, M1, V1 in zip(state.means, state.variances, gm, gv, new.means, new.variances):
        m_new, v_new = adf.gaussian_update(M, V, dM, dV)
        bad = ~np.asarray(adf.valid_gaussian(m_new, v_new))
        n_bad += bad.sum()
        np.testing.assert_array_equal(np.asarray(V1)[bad], np.asarray(V)[bad])
        np.testing.assert_array_equal(np.asarray(M1)[bad], np.asarray(M)[bad])
        np.testing.assert_allclose(np.asarray(V1)[~bad], np.asarray(v_new)[~bad])
        assert np.all(np.asarray(V1) > 0)
    assert n_bad > 0 and int(new.rejected) == n_bad
    # a NaN target: every update is refused, the state is unchanged
    nan = pbp.adf_update(state, jnp.asarray([0.1, 0.2]), jnp.asarray(np.nan))
    n_weights = pbp.n_weights(state.spec)
    assert int(nan.rejected) == n_weights + 1  # all weights plus the noise Gamma
    for a, b in zip(nan.means + nan.variances, state.means + state.variances):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(nan.noise, state.noise)


def test_refine_prior_keeps_natural_parameters_consistent():
    """After EP, posterior = cavity + site in natural parameters for every updated weight, and
    the prior Gamma moves towards the empirical weight scale."""
    X, y = data(200, 4)
    state = make_state((8,))
    state = pbp.adf_sweep(state, X, y)
    before = state
    after = pbp.refine_prior(state)
    for layer in range(2):
        prec_before = 1 / np.asarray(before.variances[layer]) - np.asarray(before.sites.precision[layer])
        prec_after = 1 / np.asarray(after.variances[layer]) - np.asarray(after.sites.precision[layer])
        np.testing.assert_allclose(prec_after, prec_before, rtol=1e-8)  # same cavity
    assert float(after.prior.shape) > float(before.prior.shape)


def test_padded_rows_do_not_change_the_posterior():
    X, y = data(20, 4)
    state = make_state((6,))
    Xp = np.vstack([X, np.full((5, 4), 1e3)])
    yp = np.append(y, np.full(5, -1e3))
    mask = np.arange(25) < 20
    a = pbp.adf_sweep(state, X, y)
    b = pbp.adf_sweep(state, Xp, yp, mask)
    for u, v in zip(a.means + a.variances, b.means + b.variances):
        np.testing.assert_allclose(u, v, rtol=1e-13)
    np.testing.assert_allclose(a.noise, b.noise, rtol=1e-13)
    assert int(a.rejected) == int(b.rejected)


def test_update_is_reproducible_and_float32_tracks_float64():
    X, y = data(100, 4)
    s64 = make_state((8,))
    s32 = make_state((8,), dtype="float32")
    assert s32.means[0].dtype == jnp.float32 and s32.sites.precision[0].dtype == jnp.float64
    a = b = s64
    for _ in range(3):
        a, b, s32 = pbp.update(a, X, y), pbp.update(b, X, y), pbp.update(s32, X, y)
    for u, v in zip(a.means, b.means):
        np.testing.assert_array_equal(u, v)
    m64, v64 = pbp.predict(a, X)
    m32, v32 = pbp.predict(s32, X)
    np.testing.assert_allclose(m32, m64, atol=1e-3)
    assert m32.dtype == jnp.float32


@pytest.mark.parametrize("hidden, spec", [((12,), {}), ((7, 5), {}), ((6,), {"inference": "sep"}),
                                          ((6,), {"learn_prior": False})])
def test_epoch_programs(hidden, spec, monkeypatch):
    """The epoch's two programs: the EP prior step (with SEP's limit for SEP, none for ADF, not
    run without a learned prior) compiled light is the step compiled with XLA's default emitters
    to rounding, and the pair is the epoch compiled as one program to rounding (XLA fuses across
    the programs' boundary there), with and without padding."""
    X, y = data(45, 4)
    mask = np.arange(48) < 45
    Xp, yp = np.vstack([X, np.zeros((3, 4))]), np.append(y, np.zeros(3))
    limit = pbp.SEP_PRIOR_LIMIT if spec.get("inference") == "sep" else None
    default_prior_step = jax.jit(pbp.refine_prior, static_argnums=1)
    one_program = jax.jit(pbp._update, static_argnames="unroll")  # the prior step traced into the epoch
    calls = []  # (limit, traced): each call of the prior step, eager or inside the one-program trace
    light_prior_step = pbp._refine_prior
    monkeypatch.setattr(pbp, "_refine_prior",
                        lambda state, lim: calls.append((lim, tracing())) or light_prior_step(state, lim))

    def close(got, want, rtol):  # the sites are differences of O(1) natural parameters: absolute
        got, want = np.asarray(got), np.asarray(want)  # to rtol of that scale near 0
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(want), initial=0.0)))

    for args in ((X, y), (Xp, yp, mask)):
        a = b = make_state(hidden, **spec)
        for _ in range(3):
            swept = pbp._sweep_epoch(a, *args)
            next_key = pbp._threefry.split(a.key)[0]
            a = pbp.update(a, *args)
            np.testing.assert_array_equal(np.asarray(a.key), np.asarray(next_key))
            if spec.get("learn_prior", True):
                for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(default_prior_step(swept, limit)), strict=True):
                    close(u, v, 1e-12)
            b = one_program(b, *args)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            close(u, v, 1e-8)  # rounding differences grow a little over the epochs
    eager = [lim for lim, traced in calls if not traced]
    assert eager == ([limit] * 6 if spec.get("learn_prior", True) else []), calls  # six epochs
    assert all(lim == limit for lim, _ in calls), calls  # and the one-program traces


def test_the_light_prior_step_is_the_default_one_bit_for_bit(default_xla):
    """At XLA's default optimisation level the prior step compiled light gives the default
    program's numbers bit for bit (ADF and SEP's limit)."""
    if default_xla.rerun():
        return
    X, y = data(45, 4)
    for spec in ({}, {"inference": "sep"}):
        state = make_state((7, 5), **spec)
        limit = pbp.SEP_PRIOR_LIMIT if spec else None
        for _ in range(2):
            swept = pbp._sweep_epoch(state, X, y)
            state = pbp._refine_prior(swept, limit)
            want = jax.jit(pbp.refine_prior, static_argnums=1)(swept, limit)
            for u, v in zip(jax.tree.leaves(state), jax.tree.leaves(want), strict=True):
                np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="unknown activation"):
        make_state((3,), activation="swish-ish")


@pytest.mark.parametrize("hidden, dtype", [((50,), "float64"), ((7, 5), "float64"), ((), "float64"), ((9,), "float32")])
def test_init_draws_the_paper_prior_bit_for_bit(hidden, dtype):
    """Means N(0, 1/(fan_in + 1)) from one key per layer, as jax.random.normal draws them (the
    init takes them as prefixes of power-of-two-sized draws; the values are the same)."""
    spec = pbp.PBPSpec(n_in=13, hidden=hidden, dtype=dtype)
    key = jax.random.PRNGKey(11)
    state = pbp.init(key, spec)
    key_after, *layer_keys = jax.random.split(key, len(spec.weight_shapes) + 1)

    @jax.jit
    def reference(keys):
        return [(jax.random.normal(k, s, jnp.float64) / jnp.sqrt(s[1])).astype(dtype)
                for k, s in zip(keys, spec.weight_shapes)]

    # bit for bit on XLA:CPU; a GPU may round the scaling differently by one ulp (seen on an H200)
    rtol = 0.0 if jax.default_backend() == "cpu" else 4 * float(jnp.finfo(dtype).eps)
    for got, want in zip(state.means, reference(layer_keys)):
        assert got.dtype == jnp.dtype(dtype)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=rtol, atol=0)
    np.testing.assert_array_equal(np.asarray(state.key), np.asarray(key_after))
    for v, p, r in zip(state.variances, state.sites.precision, state.rejections):
        np.testing.assert_array_equal(v, np.asarray(1.2, dtype))
        np.testing.assert_allclose(p, 1 / 1.2, rtol=1e-15)
        assert r.dtype == jnp.int32 and not np.any(r)


def test_batched_update_equals_single_updates():
    """jax.vmap over independent networks (probprop.fit_together) is the same epoch."""
    X, y = data(60, 4)
    states = [make_state((6,), seed=k) for k in range(3)]
    datasets = [(X + k, y - k) for k in range(3)]
    batched = jax.vmap(lambda s, a, b: pbp.update(s, a, b, unroll=pbp.BATCHED_SWEEP_UNROLL))(
        jax.tree.map(lambda *leaves: jnp.stack(leaves), *states),
        jnp.stack([d[0] for d in datasets]), jnp.stack([d[1] for d in datasets]))
    for k, (state, (Xk, yk)) in enumerate(zip(states, datasets)):
        single = pbp.update(state, Xk, yk)
        for u, v in zip(single.means + single.variances, batched.means + batched.variances):
            np.testing.assert_allclose(v[k], u, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(batched.key[k], single.key)


def test_factored_first_layer_update_is_the_moment_match():
    rng = np.random.default_rng(4)
    M, V = rng.normal(size=(6, 5)), rng.uniform(0.1, 2.0, size=(6, 5))
    a, b, x = rng.normal(size=6), rng.normal(size=6), rng.normal(size=5)
    m_new, v_new = adf.gaussian_update_outer(M, V, a, b, x)
    m_ref, v_ref = adf.gaussian_update(M, V, np.outer(a, x), np.outer(b, x * x))
    np.testing.assert_allclose(m_new, m_ref, rtol=1e-13)
    np.testing.assert_allclose(v_new, v_ref, rtol=1e-12)


def test_heteroscedastic_adf_update_without_hidden_layer_is_the_tilted_moment_match():
    """No hidden layer: f = w.x / sqrt(3) and l = u.x / sqrt(3) are exact Gaussians with independent weights, so one ADF
    update with the heteroscedastic likelihood must give every weight the mean and variance of the
    tilted distribution prior(w, u) N(y | w.x, exp(u.x)); the oracle is importance sampling from
    the prior (4 million draws)."""
    from probprop.likelihoods import HeteroscedasticGaussian

    spec = pbp.PBPSpec(n_in=2, hidden=(), likelihood=HeteroscedasticGaussian(), learn_prior=False)
    state = pbp.init(jax.random.PRNGKey(0), spec)
    means = (jnp.array([[0.4, -0.3, 0.1], [-1.0, 0.2, -0.5]]),)  # rows: f's weights, l's weights (+ bias)
    variances = (jnp.array([[0.3, 0.2, 0.1], [0.2, 0.3, 0.15]]),)
    state = state.replace(means=means, variances=variances)
    x, y = jnp.array([0.8, -1.1]), jnp.asarray(1.3)
    new = pbp.adf_update(state, x, y)
    rng = np.random.default_rng(0)
    n = 4_000_000
    w = np.asarray(means[0])[None] + np.sqrt(np.asarray(variances[0]))[None] * rng.standard_normal((n, 2, 3))
    a = np.append(np.asarray(x), 1.0) / np.sqrt(3.0)  # PBP's layers scale by 1 / sqrt(fan_in + 1)
    f, l = w[:, 0] @ a, w[:, 1] @ a
    weight = np.exp(-0.5 * (l + (float(y) - f) ** 2 * np.exp(-l)))
    weight /= weight.sum()
    mc_mean = np.einsum("n,nij->ij", weight, w)
    mc_var = np.einsum("n,nij->ij", weight, (w - mc_mean) ** 2)
    ess = 1.0 / np.sum(weight**2)
    assert ess > 1e5
    se_mean = np.sqrt(mc_var / ess)
    assert np.all(np.abs(np.asarray(new.means[0]) - mc_mean) < 5 * se_mean + 1e-6)
    np.testing.assert_allclose(new.variances[0], mc_var, rtol=0.02)
    assert int(new.rejected) == 0

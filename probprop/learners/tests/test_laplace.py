"""The last-layer Laplace approximation (probprop.learners.laplace) against its oracles: the
curvature against autodiff's Hessian, the posterior of a network with no hidden layer against
Bayesian linear regression in closed form, the evidence's choice against a brute-force log
determinant, the predictive moments and the draws against Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probprop import LaplaceClassifier, LaplaceRegressor, MAPClassifier
from probprop.io import ModelFileError, load_model
from probprop.learners import laplace, mapnet


def _trained(spec, X, y, epochs=30, seed=0):
    state = laplace.init(jax.random.PRNGKey(seed), spec)
    for _ in range(epochs):
        state = laplace.update(state, X, y)
    return state


def _classes(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.argmax(X @ rng.normal(size=(3, 3)) + 0.5 * rng.normal(size=(n, 3)), axis=1).astype(float)
    return X, y


@pytest.mark.parametrize("classes", [0, 3])
def test_the_curvature_is_autodiffs_hessian_of_the_last_layer_and_ignores_masked_rows(classes):
    X, y = _classes()
    if not classes:
        y = X @ np.array([1.0, -0.5, 0.3])
    spec = laplace.LaplaceSpec(n_in=3, hidden=(5,), n_classes=classes, learning_rate=1e-2)
    state = _trained(spec, X, y, epochs=5)
    params = state.network.params

    def nll(theta):  # the training loss's data term (mapnet's own) as a function of the last layer
        W = theta.reshape(spec.n_features, spec.n_out)
        swapped = {**params, "layers": (*params["layers"][:-1], (W[:-1], W[-1]))}
        return jnp.sum(mapnet.row_losses(swapped, spec.network, jnp.asarray(X), jnp.asarray(y)))

    with jax.enable_x64(True):
        oracle = jax.hessian(nll)(laplace.last_layer(params).reshape(-1))
        G = laplace.curvature(params, spec.network, jnp.asarray(X), block=16)  # several blocks, a padded last one
        np.testing.assert_allclose(G, oracle, rtol=1e-10, atol=1e-10 * np.abs(oracle).max())
        padded = np.vstack([X, np.full((7, 3), 5.0)])
        mask = np.arange(len(padded)) < len(X)
        np.testing.assert_allclose(laplace.curvature(params, spec.network, jnp.asarray(padded), jnp.asarray(mask), block=16),
                                   oracle, rtol=1e-10, atol=1e-10 * np.abs(oracle).max())


def test_without_hidden_layers_the_posterior_is_bayesian_linear_regression():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = X @ np.array([0.8, -0.4]) + 0.2 + 0.3 * rng.normal(size=60)
    spec = laplace.LaplaceSpec(n_in=2, hidden=(), learning_rate=3e-2, prior_precision=2.5)
    state = laplace.finish(_trained(spec, X, y, epochs=40), X, y)
    noise = float(np.exp(state.network.params["log_noise"]))
    Phi = np.hstack([X, np.ones((60, 1))])
    Sigma = np.linalg.inv(Phi.T @ Phi / noise + 2.5 * np.eye(3))  # the exact posterior's covariance
    np.testing.assert_allclose(laplace.covariance(state), Sigma, rtol=1e-9)
    Xt = rng.normal(size=(5, 2)) * 3
    Phit = np.hstack([Xt, np.ones((5, 1))])
    moments = laplace.predict(state, Xt)
    np.testing.assert_allclose(moments.epistemic_var, np.einsum("ni,ij,nj->n", Phit, Sigma, Phit), rtol=1e-9)
    np.testing.assert_allclose(moments.noise_var, noise)
    mean_oracle = Phit @ np.asarray(laplace.last_layer(state.network.params))[:, 0]
    np.testing.assert_allclose(moments.mean, mean_oracle, rtol=1e-12)


def test_the_evidence_picks_the_grid_point_a_brute_force_log_determinant_picks():
    X, y = _classes(80, seed=2)
    spec = laplace.LaplaceSpec(n_in=3, hidden=(4,), n_classes=3, learning_rate=1e-2)
    state = laplace.finish(_trained(spec, X, y, epochs=20), X, y)
    with jax.enable_x64(True):
        G = np.asarray(laplace.curvature(state.network.params, spec.network, jnp.asarray(X)))
    theta_sq = float(np.sum(np.asarray(laplace.last_layer(state.network.params)) ** 2))
    grid = laplace.PRIOR_PRECISION_GRID[::20]
    d = G.shape[0]
    brute = [-0.5 * lam * theta_sq + 0.5 * d * np.log(lam) - 0.5 * np.linalg.slogdet(G + lam * np.eye(d))[1]
             for lam in grid]
    g = np.linalg.eigvalsh(G)
    np.testing.assert_allclose(laplace.log_evidence(g, theta_sq, grid), brute, rtol=1e-9, atol=1e-8)
    assert laplace.choose_prior_precision(g, theta_sq, grid) == grid[int(np.argmax(brute))]
    assert float(state.prior_precision) == laplace.choose_prior_precision(g, theta_sq)
    # the chosen precision is an interior maximum here (the ends would mean the grid is too short)
    assert laplace.PRIOR_PRECISION_GRID[0] < float(state.prior_precision) < laplace.PRIOR_PRECISION_GRID[-1]


def test_the_logit_moments_and_the_draws_match_monte_carlo():
    X, y = _classes(100, seed=3)
    spec = laplace.LaplaceSpec(n_in=3, hidden=(4,), n_classes=3, learning_rate=1e-2, prior_precision=0.5,
                               n_samples=10_000)
    state = laplace.finish(_trained(spec, X, y, epochs=10), X, y)
    Xt = np.random.default_rng(4).normal(size=(6, 3)) * 2
    thetas = np.asarray(laplace.last_layer_draws(state))  # the state's own draws, (S, F, K)
    phi = np.asarray(laplace.features(state.network.params, spec.network, Xt))
    draws = thetas.reshape(len(thetas), -1)
    Sigma = np.asarray(laplace.covariance(state))
    # the draws' covariance is the posterior's (Monte Carlo error ~ 1 / sqrt(S) of the scale)
    np.testing.assert_allclose(np.cov(draws.T), Sigma, atol=0.06 * np.abs(Sigma).max())
    logits = np.einsum("ni,sik->snk", phi, thetas)
    moments = laplace.predict(state, Xt)
    np.testing.assert_allclose(moments.mean, logits.mean(0), atol=0.04 * np.sqrt(np.max(moments.epistemic_var)))
    np.testing.assert_allclose(moments.epistemic_var, logits.var(0), rtol=0.08)
    probs = laplace.class_samples(state, Xt)
    assert probs.shape == (10_000, 6, 3)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(np.asarray(probs), softmax / softmax.sum(-1, keepdims=True), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(laplace.class_samples(state, Xt), probs)  # the same state, the same draws
    np.testing.assert_allclose(laplace.last_layer_draws(state, 10_000), thetas, rtol=1e-12, atol=1e-14)


def test_the_logit_covariance_is_j_sigma_jt_and_the_draws_covariance():
    """logit_moments' covariance against the dense posterior (J Sigma J^T, J = I_K (x) phi~^T) and
    against the logits of 20,000 draws; class_moments reads it through moments.softmax."""
    from probprop.moments import softmax

    X, y = _classes(100, seed=8)
    spec = laplace.LaplaceSpec(n_in=3, hidden=(4,), n_classes=3, learning_rate=1e-2, prior_precision=0.5,
                               n_samples=100)
    state = laplace.finish(_trained(spec, X, y, epochs=10), X, y)
    Xt = np.random.default_rng(9).normal(size=(5, 3)) * 2
    mean, cov = (np.asarray(a) for a in laplace.logit_moments(state, Xt))
    phi = np.asarray(laplace.features(state.network.params, spec.network, Xt))
    Sigma = np.asarray(laplace.covariance(state))  # theta indexed (i, k) -> i K + k
    J = np.einsum("ni,kl->nkil", phi, np.eye(3)).reshape(len(Xt), 3, -1)  # d f_k / d theta_(i, l)
    np.testing.assert_allclose(cov, J @ Sigma @ J.transpose(0, 2, 1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2), laplace.predict(state, Xt).epistemic_var,
                               rtol=1e-9)
    thetas = np.asarray(laplace.last_layer_draws(state, 20_000))
    logits = np.einsum("ni,sik->snk", phi, thetas)
    for n in range(len(Xt)):
        np.testing.assert_allclose(np.cov(logits[:, n].T), cov[n], atol=0.05 * np.abs(cov[n]).max())
    np.testing.assert_allclose(mean, logits.mean(0), atol=0.05 * np.sqrt(np.max(cov)))
    for link in ("probit", "bridge", "bridge_norm"):
        got = laplace.class_moments(state, Xt, link)
        want = jax.jit(softmax.link_summaries, static_argnums=0)(link, jnp.asarray(mean), jnp.asarray(cov))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="link must be one of"):
        laplace.class_moments(state, Xt, "mc")


@pytest.mark.parametrize("through_blocks", [False, True])
def test_the_closed_forms_block_the_rows_and_form_sigmas_blocks_once(monkeypatch, through_blocks):
    """covariance_blocks holds Sigma's F x F blocks for the pairs k <= l; the logit covariance
    through them or through each row's Jacobian is the dense J Sigma J^T; class_moments over rows
    in padded blocks (two and a half here) equals the summaries of the whole logit Gaussian, and
    an empty X gives empty arrays."""
    from probprop.moments import softmax

    X, y = _classes(90, seed=12)
    spec = laplace.LaplaceSpec(n_in=3, hidden=(5,), n_classes=4, learning_rate=1e-2, n_samples=10)
    state = laplace.finish(_trained(spec, X, y, epochs=5), X, y)
    f, k = state.spec_shape
    Sigma = np.asarray(laplace.covariance(state)).reshape(f, k, f, k)
    blocks = np.asarray(laplace.covariance_blocks(state))
    upper, lower = np.triu_indices(k)
    assert blocks.shape == (f, len(upper), f)
    for p, (a, b) in enumerate(zip(upper, lower, strict=True)):
        np.testing.assert_allclose(blocks[:, p, :], Sigma[:, a, :, b], rtol=1e-12, atol=1e-15)
    Xt = np.random.default_rng(13).normal(size=(5, 3))
    assert not laplace._uses_blocks(spec, len(Xt)) and laplace._uses_blocks(spec, 12)
    monkeypatch.setattr(laplace, "_uses_blocks", lambda spec, n: through_blocks)
    mean, cov = laplace.logit_moments(state, Xt)
    phi = np.asarray(laplace.features(state.network.params, spec.network, Xt))
    J = np.einsum("ni,kl->nkil", phi, np.eye(k)).reshape(len(Xt), k, -1)
    np.testing.assert_allclose(cov, J @ Sigma.reshape(f * k, f * k) @ J.transpose(0, 2, 1), rtol=1e-9, atol=1e-12)
    monkeypatch.setattr(laplace, "CLOSED_FORM_BLOCK_ROWS", 2)
    assert laplace.closed_form_rows(spec) == laplace.closed_form_rows(spec, blocks=False) == 2
    for link in ("probit", "bridge"):
        got = laplace.class_moments(state, Xt, link)
        want = jax.jit(softmax.link_summaries, static_argnums=0)(link, mean, cov)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-15)
    empty = laplace.class_moments(state, Xt[:0], "bridge")
    assert [e.shape for e in empty] == [(0, k), (0, k), (0,)]


def test_the_classifiers_read_the_posterior_through_the_link_they_are_given(tmp_path):
    """link_approx is read when predicting: "mc" the draws, the others the learner's class_moments;
    a Laplace ensemble mixes its members' closed forms; files keep it; a bad value is refused."""
    from probprop import LaplaceEnsembleClassifier
    from probprop.learners import laplace_ensemble

    X, y = _classes(150, seed=10)
    model = LaplaceClassifier(hidden=(8,), epochs=20, learning_rate=1e-2, n_samples=50, random_state=0).fit(X, y)
    draws = model.predict_proba(X)
    Xs = (X - model.x_mean_) / model.x_scale_
    for link in ("probit", "bridge", "bridge_norm"):
        model.set_params(link_approx=link)
        dist = model.predict_dist(X)
        probs, var, expected = (np.asarray(a) for a in laplace.class_moments(model.state_, Xs, link))
        np.testing.assert_allclose(dist.probabilities, probs / probs.sum(1, keepdims=True), rtol=1e-9)
        np.testing.assert_allclose(dist.variance, var, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(dist.expected_entropy, expected, rtol=1e-9, atol=1e-15)
        assert dist.epistemic and np.median(dist.mutual_information) > 0
        assert np.mean(np.argmax(dist.probabilities, 1) == np.argmax(draws, 1)) > 0.9
    model.set_params(link_approx="mc")
    np.testing.assert_array_equal(model.predict_proba(X), draws)
    model.set_params(link_approx="bridge").save(tmp_path / "la.npz")
    back = load_model(tmp_path / "la.npz")
    assert back.link_approx == "bridge"
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    model.set_params(link_approx="laplace")
    with pytest.raises(ValueError, match=r"link_approx must be one of \['mc', 'probit', 'bridge', 'bridge_norm'\]"):
        model.predict_proba(X)
    with pytest.raises(ValueError, match="link_approx must be one of"):
        LaplaceClassifier(hidden=(4,), epochs=1, link_approx=None).fit(X, y)
    # the mixture of the members' closed forms
    ens = LaplaceEnsembleClassifier(hidden=(8,), epochs=10, n_members=3, learning_rate=1e-2, n_samples=10,
                                    link_approx="probit", random_state=0).fit(X, y)
    dist = ens.predict_dist(X[:30])
    parts = [laplace.class_moments(ens.state_.member(m), Xs[:30], "probit") for m in range(3)]
    probs = np.mean([np.asarray(p[0]) for p in parts], axis=0)
    second = np.mean([np.asarray(p[1]) + np.asarray(p[0]) ** 2 for p in parts], axis=0)
    np.testing.assert_allclose(dist.probabilities, probs / probs.sum(1, keepdims=True), rtol=1e-9)
    np.testing.assert_allclose(dist.variance, second - probs**2, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(dist.expected_entropy, np.mean([np.asarray(p[2]) for p in parts], axis=0), rtol=1e-9)
    np.testing.assert_allclose(laplace_ensemble.class_moments(ens.state_, Xs[:30], "probit")[0], probs, rtol=1e-12)
    for link in ("bridge", "bridge_norm"):  # the bridge's Dirichlets mix the same way
        got = ens.set_params(link_approx=link).predict_proba(X[:30])
        mean = np.mean([np.asarray(laplace.class_moments(ens.state_.member(m), Xs[:30], link)[0]) for m in range(3)], 0)
        np.testing.assert_allclose(got, mean / mean.sum(1, keepdims=True), rtol=1e-9)


def test_the_closed_forms_predict_block_by_block(monkeypatch):
    """Blocks of one row each give the same closed-form predictions as one block (the learner
    blocks the rows: laplace.CLOSED_FORM_BLOCK_ROWS)."""
    X, y = _classes(60, seed=11)
    model = LaplaceClassifier(hidden=(6,), epochs=10, learning_rate=1e-2, link_approx="bridge", random_state=0).fit(X, y)
    whole = model.predict_dist(X)
    monkeypatch.setattr(laplace, "CLOSED_FORM_BLOCK_ROWS", 1)
    assert laplace.closed_form_rows(model.spec_) == 1
    parts = model.predict_dist(X)
    for name in ("probabilities", "variance", "expected_entropy"):
        np.testing.assert_allclose(getattr(parts, name), getattr(whole, name), rtol=1e-12, atol=1e-15)


def test_far_from_the_data_the_laplace_network_is_less_confident_than_its_map_network():
    # Kristiadi, Hein & Hennig (2020), theorem 2.4: a ReLU network's MAP confidence tends to one
    # along a ray away from the data; the last-layer Laplace approximation's stays below it
    X, y = _classes(200, seed=5)
    common = {"hidden": (16,), "epochs": 60, "learning_rate": 1e-2, "random_state": 0}
    la = LaplaceClassifier(n_samples=500, **common).fit(X, y)
    point = MAPClassifier(**common).fit(X, y)
    for a, b in zip(jax.tree.leaves(la.state_.network.params), jax.tree.leaves(point.state_.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the same MAP network, trained the same way
    far = np.random.default_rng(6).normal(size=(20, 3)) * 1000
    p_map, p_la = point.predict_proba(far).max(1), la.predict_proba(far).max(1)
    assert np.all(p_map > 0.999)
    assert np.median(p_la) < 0.95 and np.all(p_la <= p_map + 1e-12)
    scores = la.predict_dist(far).scores()
    near = la.predict_dist(X[:20]).scores()
    assert np.median(scores["mutual_information"]) > 3 * np.median(near["mutual_information"])


def test_estimators_choose_a_precision_and_keep_it_in_their_files(tmp_path):
    X, y = _classes(150, seed=7)
    model = LaplaceClassifier(hidden=(8,), epochs=20, learning_rate=1e-2, n_samples=50, random_state=0).fit(X, y)
    assert model.prior_precision_ > 0
    # fit ran finish: the posterior is the one the training rows give the trained network
    Xs = (X - model.x_mean_) / model.x_scale_
    again = laplace.finish(model.state_, Xs, None)
    np.testing.assert_allclose(model.state_.posterior_variances, again.posterior_variances, rtol=1e-9)
    assert np.ptp(np.asarray(model.state_.posterior_variances)) > 0.1 / model.prior_precision_
    np.testing.assert_allclose(model.predict_proba(X).sum(1), 1.0)
    model.save(tmp_path / "la.npz")
    back = load_model(tmp_path / "la.npz")
    assert type(back) is LaplaceClassifier and back.prior_precision_ == model.prior_precision_
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    fixed = LaplaceClassifier(hidden=(8,), epochs=20, learning_rate=1e-2, n_samples=50, prior_precision=3.0,
                              random_state=0).fit(X, y)
    assert fixed.prior_precision_ == 3.0
    reg = LaplaceRegressor(hidden=(8,), epochs=10, random_state=0).fit(X, X[:, 0] - X[:, 1])
    reg.save(tmp_path / "lr.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "lr.npz").predict(X), reg.predict(X))


def test_a_file_whose_posterior_breaks_its_rules_is_refused(tmp_path):
    X, y = _classes(60, seed=8)
    model = LaplaceClassifier(hidden=(4,), epochs=3, n_samples=5, random_state=0).fit(X, y)
    path = tmp_path / "la.npz"
    state = model.state_
    c = np.asarray(state.posterior_variances)
    lam = float(state.prior_precision)
    for changes, message in (({"posterior_variances": -c}, "non-positive variances"),
                             ({"prior_precision": np.asarray(0.0)}, "prior precision must be positive"),
                             ({"posterior_variances": c * 0 + 2.0 / lam}, "variances must lie in"),
                             ({"prior_precision": np.asarray(lam * 4)}, "variances must lie in"),
                             ({"deviations": np.asarray(state.deviations) * 1.01}, "draws are not those")):
        model.state_ = state.replace(**changes)
        model.save(path)
        model.state_ = state
        with pytest.raises((ModelFileError, ValueError), match=message):
            load_model(path)
    fixed = LaplaceClassifier(hidden=(4,), epochs=3, n_samples=5, prior_precision=2.0, random_state=0).fit(X, y)
    fixed.state_ = fixed.state_.replace(prior_precision=np.asarray(1.0), posterior_variances=np.minimum(
        np.asarray(fixed.state_.posterior_variances), 1.0))
    fixed.save(path)
    with pytest.raises((ModelFileError, ValueError), match="not the spec's"):
        load_model(path)


def test_bad_specs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="homoscedastic head"):
        laplace.LaplaceSpec(n_in=3, hidden=(4,), heteroscedastic=True)
    for bad in (0, 10_001, True):
        with pytest.raises(ValueError, match="n_samples must be an int from 1 to 10000"):
            laplace.LaplaceSpec(n_in=3, hidden=(4,), n_classes=2, n_samples=bad)
    with pytest.raises(ValueError, match="prior_precision"):
        laplace.LaplaceSpec(n_in=3, hidden=(4,), prior_precision=-1.0)
    with pytest.raises(ValueError, match="more than the 6144"):
        laplace.LaplaceSpec(n_in=3, hidden=(1000,), n_classes=10)
    with pytest.raises(ValueError, match="prior_precision must be a positive float"):
        LaplaceClassifier(prior_precision="evidence").fit(*_classes(20))
    with pytest.raises(TypeError, match="LaplaceSpec"):
        laplace.init(jax.random.PRNGKey(0), mapnet.MAPSpec(n_in=3))

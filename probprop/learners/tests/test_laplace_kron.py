"""The Kronecker-factored last-layer posterior (``hessian_structure="kron"``) against its oracles:
for regression (Lambda_n the same for every row) it is the full posterior exactly; for a
classifier its factors against their sums written out, its covariance against the dense inverse
of kron(A, B) + lambda I, the logit moments against J Sigma J^T, its draws against that
covariance, and a layer wider than the full posterior takes."""

import jax
import numpy as np
import pytest

from probprop.learners import laplace
from probprop.learners.tests.test_laplace import _trained


def _data(classes, n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if not classes:
        return X, np.sin(X @ np.array([1.0, -0.5, 0.3])) + 0.1 * rng.normal(size=n)
    return X, np.argmax(X @ rng.normal(size=(3, classes)) + 0.5 * rng.normal(size=(n, classes)), axis=1).astype(float)


@pytest.mark.parametrize("prior_precision", [None, 0.7])
def test_for_regression_kron_is_the_full_posterior(prior_precision):
    """A Gaussian likelihood's Lambda_n = 1 / sigma^2 for every row: kron(A, B) = G exactly, so the
    evidence picks the same lambda and the predictive moments agree."""
    X, y = _data(0, seed=1)
    states = {}
    for structure in ("full", "kron"):
        spec = laplace.LaplaceSpec(n_in=3, hidden=(6,), learning_rate=1e-2, prior_precision=prior_precision,
                                   hessian_structure=structure)
        states[structure] = laplace.finish(_trained(spec, X, y, epochs=20), X, y)
    full, kron = states["full"], states["kron"]
    assert isinstance(kron.eigenvectors, tuple) and kron.eigenvectors[0].shape == (7, 7)
    np.testing.assert_allclose(float(kron.prior_precision), float(full.prior_precision), rtol=1e-12)
    np.testing.assert_allclose(laplace.covariance(kron), laplace.covariance(full), rtol=1e-8, atol=1e-12)
    Xt = np.random.default_rng(2).normal(size=(20, 3))
    for a, b in zip(laplace.predict(kron, Xt), laplace.predict(full, Xt), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    laplace.check_state(kron)


def test_the_classifiers_kron_posterior_against_its_definition():
    X, y = _data(4, seed=3)
    spec = laplace.LaplaceSpec(n_in=3, hidden=(5,), n_classes=4, learning_rate=1e-2, n_samples=2000,
                               hessian_structure="kron")
    state = laplace.finish(_trained(spec, X, y, epochs=20), X, y)
    params = state.network.params
    phi = np.asarray(laplace.features(params, spec.network, X))
    logits = phi @ np.asarray(laplace.last_layer(params))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    A = phi.T @ phi
    B = np.mean([np.diag(q) - np.outer(q, q) for q in p], axis=0)
    got_a, got_b = laplace.kron_factors(params, spec.network, X, block=32)  # several blocks, a padded last one
    np.testing.assert_allclose(got_a, A, rtol=1e-10)
    np.testing.assert_allclose(got_b, B, rtol=1e-10, atol=1e-14)
    # masked rows add nothing to A and count in B's mean not at all
    padded = np.vstack([X, np.full((9, 3), 4.0)])
    mask = np.arange(len(padded)) < len(X)
    for g, w in zip(laplace.kron_factors(params, spec.network, padded, mask, block=32), (A, B), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-14)
    lam = float(state.prior_precision)
    Sigma = np.linalg.inv(np.kron(A, B) + lam * np.eye(spec.n_parameters))
    np.testing.assert_allclose(laplace.covariance(state), Sigma, rtol=1e-7, atol=1e-10 * np.abs(Sigma).max())
    # the evidence's choice: the grid's best for the eigenvalues a_i b_k
    eig = np.clip(np.outer(np.linalg.eigvalsh(A), np.linalg.eigvalsh(B)).ravel(), 0, None)
    assert lam == laplace.choose_prior_precision(eig, float(np.sum(np.asarray(laplace.last_layer(params)) ** 2)))
    # logit moments, with and without blocks of rows, against J Sigma J^T; the variances of predict
    Xt = np.random.default_rng(4).normal(size=(7, 3)) * 1.5
    phit = np.asarray(laplace.features(params, spec.network, Xt))
    J = np.einsum("ni,kl->nkil", phit, np.eye(4)).reshape(len(Xt), 4, -1)
    dense = J @ Sigma @ J.transpose(0, 2, 1)
    mean, cov = laplace.logit_moments(state, Xt)
    np.testing.assert_allclose(cov, dense, rtol=1e-7, atol=1e-12)
    with pytest.MonkeyPatch.context() as patch:  # in blocks of two rows (three and a padded fourth)
        patch.setattr(laplace, "CLOSED_FORM_BLOCK_ROWS", 2)
        np.testing.assert_allclose(laplace.logit_moments(state, Xt)[1], dense, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(mean, phit @ np.asarray(laplace.last_layer(params)), rtol=1e-12)
    np.testing.assert_allclose(laplace.predict(state, Xt).epistemic_var, np.diagonal(dense, axis1=1, axis2=2),
                               rtol=1e-7)
    # the draws: their covariance is Sigma's (2,000 draws: a loose check), and check_state accepts them
    dev = np.asarray(state.deviations)
    np.testing.assert_allclose(np.cov(dev.T), Sigma, atol=0.15 * np.abs(Sigma).max())
    # exactly the draws of the dense eigenvectors kron(U_A, U_B) from the same key
    dense_q = jax.numpy.kron(*state.eigenvectors)
    np.testing.assert_allclose(dev, laplace.draw_deviations(state.network.key, dense_q, state.posterior_variances,
                                                            spec.n_samples), rtol=1e-10, atol=1e-13)
    laplace.check_state(state)
    broken = state.replace(deviations=state.deviations * 1.01)
    with pytest.raises(ValueError, match="draws"):
        laplace.check_state(broken)
    # variances that no pair of factors gives (one entry's curvature halved) are refused before the draws
    c = np.asarray(state.posterior_variances).copy()
    j = int(np.argmin(c))
    c[j] = 1.0 / (0.5 * (1.0 / c[j] - lam) + lam)
    with pytest.raises(ValueError, match="not 1 / \\(a_i b_k \\+ prior precision\\)"):
        laplace.check_state(state.replace(posterior_variances=jax.numpy.asarray(c)))
    laplace.check_state(laplace.init(jax.random.PRNGKey(3), spec))  # the prior passes


def test_kron_takes_a_layer_wider_than_the_full_posterior():
    with pytest.raises(ValueError, match="hessian_structure='kron' takes this layer"):
        laplace.LaplaceSpec(n_in=3, hidden=(700,), n_classes=10)
    spec = laplace.LaplaceSpec(n_in=3, hidden=(700,), n_classes=10, hessian_structure="kron", n_samples=10)
    assert spec.n_parameters == 7010 > laplace.MAX_PARAMETERS
    X, y = _data(10, n=60, seed=5)
    state = laplace.finish(_trained(spec, X, y, epochs=2), X, y)
    assert state.eigenvectors[0].shape == (701, 701) and state.deviations.shape == (10, 7010)
    probs, _, _ = laplace.class_moments(state, X[:9], "bridge")
    assert np.all(np.isfinite(probs)) and np.allclose(np.sum(probs, axis=1), 1.0)
    with pytest.raises(ValueError, match="each may have at most"):
        laplace.LaplaceSpec(n_in=3, hidden=(laplace.MAX_KRON_FACTOR,), n_classes=3, hessian_structure="kron")
    with pytest.raises(ValueError, match="hessian_structure must be one of"):
        laplace.LaplaceSpec(n_in=3, hidden=(5,), n_classes=3, hessian_structure="diag")


def test_the_estimators_take_kron_keep_it_in_their_files_and_refuse_unknown_structures(tmp_path):
    from probprop import LaplaceClassifier, LaplaceEnsembleClassifier, LaplaceRegressor
    from probprop.io import ModelFileError, load_model

    X, y = _data(0, n=120, seed=6)
    full = LaplaceRegressor(hidden=(6,), epochs=10, random_state=0).fit(X, y)
    kron = LaplaceRegressor(hidden=(6,), epochs=10, hessian_structure="kron", random_state=0).fit(X, y)
    a, b = full.predict_dist(X), kron.predict_dist(X)  # regression: the same posterior
    assert isinstance(kron.state_.eigenvectors, tuple) and not isinstance(full.state_.eigenvectors, tuple)
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12)
    np.testing.assert_allclose(b.epistemic_var, a.epistemic_var, rtol=1e-7)
    kron.save(tmp_path / "kron-regressor.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "kron-regressor.npz").predict_dist(X).epistemic_var,
                                  b.epistemic_var)
    X, y = _data(3, n=120, seed=7)
    for model in (LaplaceClassifier(hidden=(6,), epochs=10, learning_rate=1e-2, hessian_structure="kron",
                                    n_samples=30, random_state=0),
                  LaplaceEnsembleClassifier(hidden=(6,), epochs=10, learning_rate=1e-2, n_members=2,
                                            hessian_structure="kron", n_samples=30, random_state=0)):
        model.fit(X, y)
        path = tmp_path / f"{type(model).__name__}.npz"
        model.save(path)
        back = load_model(path)
        assert back.hessian_structure == "kron" and back.state_.spec.hessian_structure == "kron"
        for link in ("mc", "bridge"):
            back.set_params(link_approx=link)
            model.set_params(link_approx=link)
            np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
        # a file whose factor's draws do not match its posterior is refused
        state = model.state_
        model.state_ = state.replace(deviations=state.deviations * 1.01)
        model.save(path)
        model.state_ = state
        with pytest.raises((ModelFileError, ValueError), match="draws are not those"):
            load_model(path)
    with pytest.raises(ValueError, match=r"hessian_structure must be one of \['full', 'kron'\], got 'diag'"):
        LaplaceClassifier(hessian_structure="diag").fit(X, y)


def test_files_written_before_kron_read_as_full_and_params_must_agree_with_the_spec(tmp_path):
    """A file whose spec and parameters lack hessian_structure (written before it existed) loads as
    "full"; a file whose parameters and spec disagree on it is refused."""
    import json

    from probprop import LaplaceClassifier
    from probprop.io import ModelFileError, load_model

    X, y = _data(3, n=90, seed=8)
    model = LaplaceClassifier(hidden=(5,), epochs=5, learning_rate=1e-2, n_samples=10, random_state=0).fit(X, y)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["__meta__"]))
    assert meta["spec"]["fields"]["hessian_structure"] == "full" and meta["params"]["hessian_structure"] == "full"
    old = json.loads(json.dumps(meta))
    del old["spec"]["fields"]["hessian_structure"], old["params"]["hessian_structure"]
    np.savez(tmp_path / "old.npz", **{**arrays, "__meta__": np.array(json.dumps(old))})
    back = load_model(tmp_path / "old.npz")
    assert back.hessian_structure == "full" and back.state_.spec.hessian_structure == "full"
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    mixed = json.loads(json.dumps(meta))
    mixed["params"]["hessian_structure"] = "kron"
    np.savez(tmp_path / "mixed.npz", **{**arrays, "__meta__": np.array(json.dumps(mixed))})
    with pytest.raises(ModelFileError, match="hessian_structure 'kron' against 'full'"):
        load_model(tmp_path / "mixed.npz")


def test_kron_specs_refuse_what_they_cannot_hold_and_a_diverged_network_has_no_posterior():
    with pytest.raises(ValueError, match="more numbers than 10000 draws"):
        laplace.LaplaceSpec(n_in=3, hidden=(4000,), n_classes=20, hessian_structure="kron", n_samples=1000)
    with pytest.raises(ValueError, match="Kronecker factors of 3001 x 3001 and 10 x 10"):
        from probprop.learners import laplace_ensemble

        laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(3000,), n_members=6, n_classes=10,
                                             hessian_structure="kron", n_samples=10)
    # no hint towards kron where kron would refuse too (a regression layer wider than a factor)
    with pytest.raises(ValueError) as err:
        laplace.LaplaceSpec(n_in=3, hidden=(6200,))
    assert "kron" not in str(err.value)
    X, y = _data(3, n=60, seed=9)
    spec = laplace.LaplaceSpec(n_in=3, hidden=(4,), n_classes=3, hessian_structure="kron", n_samples=5)
    state = _trained(spec, X, y, epochs=1)
    W, b = state.network.params["layers"][-1]
    broken = state.replace(network=state.network.replace(
        params={**state.network.params, "layers": (*state.network.params["layers"][:-1], (W * np.nan, b))}))
    done = laplace.finish(broken, X, y)
    assert np.all(np.isnan(done.posterior_variances)) and np.all(np.isnan(done.deviations))

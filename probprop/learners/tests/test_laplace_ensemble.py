"""The mixture of last-layer Laplace approximations (probprop.learners.laplace_ensemble): each
member is the deep ensemble's network with the posterior probprop.learners.laplace fits to it
alone, the mixture's logit moments against Monte Carlo over its draws, the confidence far from
the data below the MAP ensemble's, and model files whose member posteriors break the rules."""

import jax
import numpy as np
import pytest

from probprop import DeepEnsembleClassifier, LaplaceEnsembleClassifier
from probprop.io import ModelFileError, load_model
from probprop.learners import ensemble, laplace, laplace_ensemble
from probprop.learners.tests.test_laplace import _classes


def _trained(spec, X, y, epochs=20, seed=0):
    state = laplace_ensemble.init(jax.random.PRNGKey(seed), spec)
    for _ in range(epochs):
        state = laplace_ensemble.update(state, X, y)
    return laplace_ensemble.finish(state, X, y)


@pytest.mark.parametrize("structure", ["full", "kron"])
def test_each_member_is_the_ensembles_network_with_its_own_laplace_posterior(structure):
    X, y = _classes(150, seed=2)
    spec = laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(6,), n_members=3, n_classes=3, learning_rate=1e-2,
                                                n_samples=40, hessian_structure=structure)
    state = _trained(spec, X, y)
    # the networks are the deep ensemble's, trained the same way from the same key
    plain = ensemble.init(jax.random.PRNGKey(0), spec)
    for _ in range(20):
        plain = ensemble.update(plain, X, y)
    for a, b in zip(jax.tree.leaves(state.network.params), jax.tree.leaves(plain.params), strict=True):
        np.testing.assert_array_equal(a, b)
    samples = np.asarray(laplace_ensemble.class_samples(state, X))
    assert samples.shape == (3 * 40, 150, 3)
    for m in range(3):  # member m's posterior: laplace.finish on member m's network alone (its own key's draws)
        alone = laplace.init(jax.random.PRNGKey(9), spec.laplace_spec).replace(network=plain.member(m))
        alone = laplace.finish(alone, X, y)
        mine = state.member(m)
        assert mine.spec.hessian_structure == structure
        for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # the mixture's draws by hand: member m's features under its own MAP last layer plus its own draws
    by_hand = []
    for m in range(3):
        params = plain.member(m).params
        h = np.maximum(X @ np.asarray(params["layers"][0][0]) + np.asarray(params["layers"][0][1]), 0.0)
        W, b = (np.asarray(a) for a in params["layers"][1])
        theta = np.vstack([W, b[None]])[None] + np.asarray(state.deviations[m]).reshape(40, 7, 3)
        logits = np.einsum("ni,sik->snk", np.hstack([h, np.ones((150, 1))]), theta)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        by_hand.append(e / e.sum(-1, keepdims=True))
    np.testing.assert_allclose(samples, np.concatenate(by_hand), rtol=1e-9, atol=1e-12)
    assert len({float(state.prior_precision[m]) for m in range(3)}) > 1  # each member's own evidence
    assert not np.allclose(by_hand[0].mean(0), by_hand[1].mean(0))


def test_the_mixtures_logit_moments_against_monte_carlo_over_its_draws():
    X, y = _classes(100, seed=3)
    spec = laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(5,), n_members=3, n_classes=3, learning_rate=1e-2,
                                                n_samples=4000, prior_precision=0.5)
    state = _trained(spec, X, y, epochs=10)
    moments = laplace_ensemble.predict(state, X[:20])
    logits = []
    for m in range(3):
        member = state.member(m)
        phi = np.asarray(laplace.features(member.network.params, spec.member_spec, X[:20]))
        logits.append(np.einsum("ni,sik->snk", phi, np.asarray(laplace.last_layer_draws(member))))
    logits = np.concatenate(logits)  # (M S, n, K): the mixture's draws
    sd = np.sqrt(np.asarray(moments.epistemic_var))
    assert np.all(np.abs(logits.mean(0) - np.asarray(moments.mean)) < 5 * sd / np.sqrt(len(logits)) + 1e-12)
    np.testing.assert_allclose(logits.var(0), np.asarray(moments.epistemic_var), rtol=0.08)
    # the members disagree, so the mixture's variance exceeds their average Laplace variance
    within = np.mean([np.asarray(laplace.predict(state.member(m), X[:20]).epistemic_var) for m in range(3)], 0)
    assert np.all(np.asarray(moments.epistemic_var) > within)
    np.testing.assert_array_equal(moments.noise_var, 0.0)


def test_far_from_the_data_the_mixture_is_less_confident_than_the_map_ensemble():
    X, y = _classes(200, seed=5)
    common = {"hidden": (16,), "epochs": 60, "learning_rate": 1e-2, "n_members": 3, "prior_var": 1.0, "random_state": 0}
    mola = LaplaceEnsembleClassifier(n_samples=300, **common).fit(X, y)
    point = DeepEnsembleClassifier(**common).fit(X, y)
    for a, b in zip(jax.tree.leaves(mola.state_.network.params), jax.tree.leaves(point.state_.params), strict=True):
        np.testing.assert_array_equal(a, b)  # the same networks, trained the same way
    far = np.random.default_rng(6).normal(size=(20, 3)) * 1000
    p_map, p_la = point.predict_proba(far).max(1), mola.predict_proba(far).max(1)
    assert np.median(p_la) < np.median(p_map) - 0.02 and np.all(p_la <= p_map + 1e-9)
    far_mi = mola.predict_dist(far).scores()["mutual_information"]
    near_mi = mola.predict_dist(X[:20]).scores()["mutual_information"]
    assert np.median(far_mi) > 3 * np.median(near_mi)


def test_the_estimator_keeps_its_posteriors_in_its_file_and_refuses_broken_ones(tmp_path):
    X, y = _classes(120, seed=7)
    model = LaplaceEnsembleClassifier(hidden=(6,), epochs=10, learning_rate=1e-2, n_members=2, n_samples=20,
                                      random_state=0).fit(X, y)
    assert model.prior_precision_.shape == (2,) and np.all(model.prior_precision_ > 0)
    np.testing.assert_allclose(model.predict_proba(X).sum(1), 1.0)
    path = tmp_path / "mola.npz"
    model.save(path)
    back = load_model(path)
    assert type(back) is LaplaceEnsembleClassifier
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    from click.testing import CliRunner

    from probprop.cli import main

    text = CliRunner().invoke(main, ["info", str(path)]).output  # the command line describes the posteriors
    low, high = model.prior_precision_.min(), model.prior_precision_.max()
    assert (f"posterior      last-layer Laplace, one per member (2) over 21 parameters each, prior precisions "
            f"{low:.4g} to {high:.4g} (chosen by the Laplace evidence), 20 draws of each per prediction") in text
    state = model.state_
    c = np.asarray(state.posterior_variances).copy()
    c[1] *= 10  # above 1 / lambda somewhere: not a posterior of this prior
    lam = np.asarray(state.prior_precision).copy()
    lam[1] = 0.0
    deviations = np.asarray(state.deviations).copy()
    deviations[0] *= 1.01
    for changes, message in (({"posterior_variances": c}, "member 1: the last-layer posterior's variances must lie"),
                             ({"prior_precision": lam}, "member 1: the last-layer posterior's prior precision must be"),
                             ({"deviations": deviations}, "member 0: the last layer's draws are not those")):
        model.state_ = state.replace(**changes)
        model.save(path)
        model.state_ = state
        with pytest.raises((ModelFileError, ValueError), match=message):
            load_model(path)


def test_bad_specs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="a Laplace ensemble classifies"):
        laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(4,))
    with pytest.raises(ValueError, match="n_samples must be an int from 1 to 10000"):
        laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(4,), n_classes=2, n_samples=0)
    with pytest.raises(ValueError, match="prior_precision"):
        laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(4,), n_classes=2, prior_precision=-1.0)
    with pytest.raises(ValueError, match="take fewer members"):  # 10 x 2,010^2 > 6,144^2 numbers
        laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(200,), n_classes=10, n_members=10)
    with pytest.raises(TypeError, match="LaplaceEnsembleSpec"):
        laplace_ensemble.init(jax.random.PRNGKey(0), ensemble.EnsembleSpec(n_in=3, n_classes=2))
    with pytest.raises(ValueError, match="n_members"):
        LaplaceEnsembleClassifier(n_members=0).fit(*_classes(20))
    with pytest.raises(ValueError, match="fewer members or fewer draws"):  # 200 x 10,000 x 44 numbers
        laplace_ensemble.LaplaceEnsembleSpec(n_in=3, hidden=(10,), n_classes=4, n_members=200, n_samples=10_000)
    with pytest.raises(ValueError, match="n_members must be an int from 1 to 256"):
        ensemble.EnsembleSpec(n_in=3, n_members=257)


def test_a_fixed_prior_precision_is_every_members_and_one_draw_each_still_has_epistemic_scores(tmp_path):
    X, y = _classes(100, seed=4)
    model = LaplaceEnsembleClassifier(hidden=(5,), epochs=10, learning_rate=1e-2, n_members=3, n_samples=1,
                                      prior_precision=2.0, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.prior_precision_, [2.0, 2.0, 2.0])
    model.prior_precision_[0] = 5.0  # a copy: the state keeps its own
    assert float(model.state_.prior_precision[0]) == 2.0
    scores = model.predict_dist(X).scores()  # three networks of one draw each disagree
    assert np.median(scores["mutual_information"]) > 0 and "epistemic_variance" in scores
    state = model.state_
    lam = np.asarray(state.prior_precision).copy()
    lam[0] = 1.0
    model.state_ = state.replace(prior_precision=lam,
                                 posterior_variances=np.minimum(np.asarray(state.posterior_variances), 1.0))
    model.save(tmp_path / "fixed.npz")
    with pytest.raises((ModelFileError, ValueError), match="member 0: the posterior's prior precision 1.0 is not the spec's"):
        load_model(tmp_path / "fixed.npz")


def test_a_file_declaring_too_many_members_is_refused_before_its_state_is_built(tmp_path):
    import json
    import time

    X, y = _classes(60, seed=9)
    model = LaplaceEnsembleClassifier(hidden=(1,), epochs=2, n_members=2, n_samples=1, random_state=0).fit(X, y)
    path = tmp_path / "many.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = dict(archive)
    meta = json.loads(str(arrays["__meta__"]))
    meta["params"]["n_members"] = 100_000
    meta["spec"]["fields"]["n_members"] = 100_000
    np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    start = time.perf_counter()
    with pytest.raises((ModelFileError, ValueError), match="n_members must be an int from 1 to 256"):
        load_model(path)
    assert time.perf_counter() - start < 10

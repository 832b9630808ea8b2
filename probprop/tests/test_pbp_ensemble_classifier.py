"""PBPEnsembleClassifier against its members: each member is exactly the PBPClassifier its seed
makes (trained alone), the ensemble's probabilities are the members' average and its scores the
closed-form mixture of theirs; files, partial_fit and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from probprop import PBPClassifier, PBPEnsembleClassifier
from probprop.io import ModelFileError
from probprop.metrics.classification import entropy
from probprop.tests.conftest import model_arrays

PARAMS = {"hidden": (16,), "epochs": 2, "input_scaling": "global"}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400], X[1500:1600], y[1500:1600]


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, _, _ = digits
    return PBPEnsembleClassifier(n_members=3, random_state=7, **PARAMS).fit(X, y)


def _member_seeds(random_state, n):
    rng = np.random.RandomState(random_state)
    return [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(n)]


def test_each_member_is_the_classifier_its_seed_makes(digits, fitted):
    X, y, Xt, _ = digits
    for member, seed in zip(fitted.members_, _member_seeds(7, 3), strict=True):
        alone = PBPClassifier(random_state=seed, **PARAMS).fit(X, y)
        np.testing.assert_allclose(member.predict_proba(Xt), alone.predict_proba(Xt), rtol=0, atol=1e-12)
        assert member.n_rejected_ == alone.n_rejected_
    probs = [m.predict_proba(Xt) for m in fitted.members_]
    assert not np.allclose(probs[0], probs[1], atol=1e-3)  # different initialisations, different networks


def test_members_fitted_apart_and_combined_are_the_ensemble_fit(digits, fitted, tmp_path):
    """``from_members``: the members fitted one by one (each with its ``member_seeds`` seed, as
    separate jobs would) and combined predict as the ensemble's own fit, through a file too."""
    X, y, Xt, _ = digits
    assert fitted.member_seeds() == _member_seeds(7, 3)
    apart = [fitted.member_estimator(k).fit(X, y) for k in range(3)]
    assert [m.random_state for m in apart] == fitted.member_seeds()
    for bad in (3, -1, 1.0, True):
        with pytest.raises(ValueError, match=r"member must be an integer in \[0, 3\)"):
            fitted.member_estimator(bad)
    combined = PBPEnsembleClassifier.from_members(apart)
    assert combined.get_params() == {**fitted.get_params(), "random_state": None}
    np.testing.assert_allclose(combined.predict_proba(Xt), fitted.predict_proba(Xt), rtol=0, atol=1e-12)
    a, b = combined.predict_dist(Xt), fitted.predict_dist(Xt)
    np.testing.assert_allclose(a.mutual_information, b.mutual_information, rtol=0, atol=1e-12)
    assert (combined.n_rejected_, combined.rejected_per_epoch_) == (fitted.n_rejected_, fitted.rejected_per_epoch_)
    combined.save(tmp_path / "combined.npz")
    back = PBPEnsembleClassifier.load(tmp_path / "combined.npz")
    np.testing.assert_allclose(back.predict_proba(Xt), fitted.predict_proba(Xt), rtol=0, atol=1e-12)
    # two of them: an ensemble of those two
    pair = PBPEnsembleClassifier.from_members(apart[:2])
    assert pair.n_members == 2
    np.testing.assert_allclose(pair.predict_proba(Xt), np.mean([m.predict_proba(Xt) for m in apart[:2]], axis=0),
                               rtol=0, atol=1e-12)


def test_members_that_do_not_belong_together_are_refused(digits, fitted):
    X, y, _, _ = digits
    member = fitted.members_[0]
    with pytest.raises(ValueError, match="non-empty list"):
        PBPEnsembleClassifier.from_members([])
    with pytest.raises(TypeError, match=r"members\[1\] is a PBPEnsembleClassifier; .* combines PBPClassifier"):
        PBPEnsembleClassifier.from_members([member, fitted])
    with pytest.raises(Exception, match="not fitted"):
        PBPEnsembleClassifier.from_members([member, PBPClassifier(**PARAMS)])
    wider = PBPClassifier(**{**PARAMS, "hidden": (8,)}, random_state=1).fit(X, y)
    with pytest.raises(ValueError, match=r"members\[1\] has hidden=\(8,\) where the ensemble's members have \(16,\)"):
        PBPEnsembleClassifier.from_members([member, wider])
    drifting = PBPClassifier(**PARAMS, forgetting=0.99, random_state=1).fit(X, y)
    with pytest.raises(ValueError, match="a PBPEnsembleClassifier has no forgetting parameter"):
        PBPEnsembleClassifier.from_members([drifting, member])
    other_rows = PBPClassifier(**PARAMS, random_state=1).fit(X[:200], y[:200])
    with pytest.raises(ValueError, match=r"members\[1\]'s x_mean_ differs"):
        PBPEnsembleClassifier.from_members([member, other_rows])


def test_probabilities_and_scores_are_the_members_mixture(digits, fitted):
    _, _, Xt, yt = digits
    dists = [m.predict_dist(Xt) for m in fitted.members_]
    proba = fitted.predict_proba(Xt)
    np.testing.assert_allclose(proba, np.mean([d.probabilities for d in dists], axis=0), atol=1e-12)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)
    dist = fitted.predict_dist(Xt)
    np.testing.assert_allclose(dist.probabilities, proba, atol=1e-12)
    spread = np.var([d.probabilities for d in dists], axis=0)
    np.testing.assert_allclose(dist.variance, np.mean([d.variance for d in dists], axis=0) + spread, rtol=1e-9, atol=1e-15)
    expected = np.mean([d.expected_entropy for d in dists], axis=0)
    np.testing.assert_allclose(dist.mutual_information, entropy(proba) - expected, rtol=1e-8, atol=1e-12)
    assert dist.epistemic
    np.testing.assert_array_equal(fitted.predict(Xt), fitted.classes_[proba.argmax(1)])
    assert fitted.score(Xt, yt) > 0.8  # a constant predictor scores about 0.1 on ten digits


def test_labels_of_any_type_and_two_classes():
    X, y = load_digits(n_class=2, return_X_y=True)
    labels = np.where(y == 1, "one", "zero")
    model = PBPEnsembleClassifier(n_members=2, hidden=(), epochs=3, random_state=0).fit(X, labels)
    assert list(model.classes_) == ["one", "zero"]
    assert model.score(X, labels) > 0.95
    members = [m.predict_dist(X) for m in model.members_]
    dist = model.predict_dist(X)
    np.testing.assert_allclose(dist.probabilities, np.mean([d.probabilities for d in members], axis=0), atol=1e-12)
    spread = np.var([d.probabilities for d in members], axis=0)
    np.testing.assert_allclose(dist.variance, np.mean([d.variance for d in members], axis=0) + spread, rtol=1e-9,
                               atol=1e-15)
    log_p = np.log(dist.probabilities)
    np.testing.assert_allclose(model.decision_function(X), log_p[:, 1] - log_p[:, 0], rtol=1e-9)


def test_the_regression_mixture_is_not_read_as_probabilities(digits, fitted):
    """The learner's moment-matched Gaussian mixture is no classifier's output: the paths that
    would read it refuse this model."""
    from probprop.prequential import prequential

    X, y, _, _ = digits
    with pytest.raises(TypeError, match="members' average"):
        fitted._output_moments(X[:5])
    with pytest.raises(TypeError, match="learns row by row"):
        prequential(PBPEnsembleClassifier(n_members=2, **PARAMS), X[:80], y[:80], warmup=20)


def test_partial_fit_continues_every_member(digits, fitted):
    X, y, Xt, _ = digits
    first = PBPEnsembleClassifier(n_members=2, random_state=3, **PARAMS)
    first.partial_fit(X[:200], y[:200], classes=np.arange(10))
    first.partial_fit(X[200:], y[200:])
    for member, seed in zip(first.members_, _member_seeds(3, 2), strict=True):
        alone = PBPClassifier(random_state=seed, **PARAMS)
        alone.partial_fit(X[:200], y[:200], classes=np.arange(10)).partial_fit(X[200:], y[200:])
        np.testing.assert_allclose(member.predict_proba(Xt), alone.predict_proba(Xt), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="not among the classes"):
        first.partial_fit(X[:5], np.full(5, 11))


def test_save_load_predicts_the_same(digits, fitted, tmp_path):
    _, _, Xt, _ = digits
    path = tmp_path / "ensemble.npz"
    fitted.save(path)
    back = PBPEnsembleClassifier.load(path)
    np.testing.assert_array_equal(back.predict_proba(Xt), fitted.predict_proba(Xt))
    a, b = back.predict_dist(Xt), fitted.predict_dist(Xt)
    np.testing.assert_array_equal(a.mutual_information, b.mutual_information)
    assert back.get_params() == fitted.get_params()


@pytest.mark.parametrize("field, value, match", [
    ("learn_prior", True, "member learn_prior True against False"),
    ("inference", "sep", "missing array 'state/.tied"),  # SEP's sites: refused with the state
    ("prior_shape", 2.0, "member prior_shape 2.0 against 6.0"),
    ("activation", "tanh", "activation"),
    ("likelihood", {"class": "Softmax", "fields": {"n_classes": 10}}, "member likelihood Softmax"),
    ("init_mean_std", 0.5, "member init_mean_std 0.5 against 1.0"),
])
def test_a_member_network_these_parameters_do_not_make_is_refused(fitted, tmp_path, field, value, match):
    path = tmp_path / "ensemble.npz"
    fitted.save(path)
    arrays = model_arrays(path)
    meta = json.loads(str(arrays["__meta__"]))
    meta["spec"]["fields"]["member"]["fields"][field] = value
    np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    with pytest.raises(ModelFileError, match=match):
        PBPEnsembleClassifier.load(path)


@pytest.mark.parametrize("n_members", [0, -1, 1.5, True, "3"])
def test_bad_member_counts_are_named(digits, n_members):
    X, y, _, _ = digits
    with pytest.raises(ValueError, match="n_members"):
        PBPEnsembleClassifier(n_members=n_members, **PARAMS).fit(X[:50], y[:50])


def test_wrong_width_names_the_ensemble(digits, fitted):
    _, _, Xt, _ = digits
    with pytest.raises(ValueError, match="PBPEnsembleClassifier"):
        fitted.predict_proba(Xt[:, :10])


def test_a_member_that_is_not_a_pbp_network_is_refused():
    from probprop.learners import pbp_ensemble
    from probprop.learners.tagi import TAGISpec

    with pytest.raises(TypeError, match="member must be a PBPSpec"):
        pbp_ensemble.PBPEnsembleSpec(member=TAGISpec(n_in=3), n_members=2)


def test_the_bench_method_builds_members_of_the_max_pooling_cnn():
    from probprop.bench.images import CNN_CONV, CNN_HIDDEN, _probprop_model

    model = _probprop_model("pbp-cnn-max-ensemble", 6, 4, members=3)
    assert isinstance(model, PBPEnsembleClassifier)
    assert (model.n_members, model.epochs, model.pooling, model.random_state) == (3, 6, "max", 4)
    assert (model.conv, model.hidden, model.input_scaling) == (CNN_CONV, CNN_HIDDEN, "global")


@pytest.mark.parametrize("field, value, match", [
    ("learn_prior", True, "learn_prior True against False"),
    ("init_mean_std", 0.5, "init_mean_std 0.5 against 1.0"),
    ("likelihood", {"class": "Softmax", "fields": {"n_classes": 10}}, "likelihood Softmax"),
])
def test_a_pbp_classifier_file_whose_network_its_parameters_do_not_make_is_refused(digits, tmp_path, field, value,
                                                                                      match):
    X, y, _, _ = digits
    path = tmp_path / "pbp.npz"
    PBPClassifier(random_state=0, **PARAMS).fit(X[:100], y[:100]).save(path)
    arrays = model_arrays(path)
    meta = json.loads(str(arrays["__meta__"]))
    meta["spec"]["fields"][field] = value
    np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    with pytest.raises(ModelFileError, match=match):
        PBPClassifier.load(path)


def test_the_member_class_is_the_class_of_the_members_the_ensemble_builds():
    from probprop import PBPEnsembleClassifier, PBPEnsembleRegressor

    for ensemble in (PBPEnsembleClassifier(n_members=2, random_state=0), PBPEnsembleRegressor(n_members=2)):
        assert type(ensemble.member_estimator(1)) is type(ensemble)._member_class

"""PBPClassifier: the classifier contract, learning problems a linear model cannot solve, the
binary ADF update against its closed form, labels, errors and model files."""

from __future__ import annotations

import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_moons
from sklearn.linear_model import LogisticRegression

from probprop import PBPClassifier
from probprop.distributions import ClassPrediction
from probprop.learners import pbp
from probprop.learners.base import float64
from probprop.likelihoods.classification import Probit


def _xor(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.where(X[:, 0] * X[:, 1] > 0, "same", "different")


def test_xor_is_learned_where_a_linear_model_fails():
    X, y = _xor(600)
    Xt, yt = _xor(400, seed=1)
    model = PBPClassifier(hidden=(16,), epochs=30, random_state=0).fit(X, y)
    linear = LogisticRegression().fit(X, y).score(Xt, yt)
    assert linear < 0.65
    assert model.score(Xt, yt) > 0.9
    assert list(model.classes_) == ["different", "same"]
    proba = model.predict_proba(Xt)
    assert proba.shape == (400, 2) and np.allclose(proba.sum(1), 1)
    # decision_function is the log-odds of classes_[1]
    np.testing.assert_allclose(1 / (1 + np.exp(-model.decision_function(Xt))), proba[:, 1], rtol=1e-9)


def test_linearly_separable_multiclass_with_integer_labels():
    X, y = make_blobs(500, centers=[[-4, 0], [4, 0], [0, 4]], cluster_std=0.7, random_state=0)
    y = y * 10 + 3  # labels 3, 13, 23
    model = PBPClassifier(hidden=(), epochs=5, random_state=0).fit(X[:300], y[:300])
    assert model.score(X[300:], y[300:]) > 0.98
    assert list(model.classes_) == [3, 13, 23]
    proba = model.predict_proba(X[300:])
    assert np.allclose(proba.sum(1), 1, atol=1e-12)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X[300:])), proba, rtol=1e-9)
    dist = model.predict_dist(X[300:])
    np.testing.assert_allclose(dist.probabilities, proba, atol=1e-9)
    assert np.all(dist.predicted == model.predict(X[300:]))


def test_the_network_output_is_more_uncertain_far_from_the_data():
    """The weight posterior's variance of the output grows away from the data. (The class
    probabilities need not: a ReLU network's output mean grows linearly away from the data and
    the probit saturates, Hein et al. 2019; the benchmark measures what that does to OOD scores.)"""
    X, y = make_moons(400, noise=0.1, random_state=0)
    model = PBPClassifier(hidden=(20,), epochs=20, random_state=0).fit(X, y)
    far = np.array([[8.0, -8.0]]) + np.random.default_rng(0).normal(0, 1, (100, 2))
    assert np.median(model._output_moments(far)[1]) > 10 * np.median(model._output_moments(X[:100])[1])


@float64
def test_binary_adf_step_is_the_closed_form_update():
    """A Bayesian linear probit (no hidden layer, no bias): one ADF step equals the closed-form
    moment match of N(w | m, v) Phi(s w.x / sqrt(n)) with the diagonal Gaussian posterior."""
    spec = pbp.PBPSpec(n_in=3, hidden=(), bias=False, likelihood=Probit())
    import jax

    state = pbp.init(jax.random.PRNGKey(0), spec)
    x, y = jnp.asarray([0.5, -1.0, 2.0]), jnp.asarray(1.0)
    new = pbp.adf_update(state, x, y)
    m, v = np.asarray(state.means[0])[0], np.asarray(state.variances[0])[0]
    xs = np.asarray(x) / np.sqrt(3.0)
    mu, s2 = m @ xs, v @ (xs * xs)
    z = mu / np.sqrt(1 + s2)
    r = np.exp(stats.norm.logpdf(z) - stats.norm.logcdf(z))
    m_new = m + v * xs * r / np.sqrt(1 + s2)
    v_new = v - (v * xs) ** 2 * r * (z + r) / (1 + s2)
    np.testing.assert_allclose(np.asarray(new.means[0])[0], m_new, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(new.variances[0])[0], v_new, rtol=1e-12)


def test_bad_labels_give_clear_errors():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="NaN"):
        PBPClassifier(epochs=1).fit(X, np.r_[np.zeros(10), np.ones(9), np.nan])
    with pytest.raises(ValueError, match="at least 2 classes"):
        PBPClassifier(epochs=1).fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="Unknown label type"):
        PBPClassifier(epochs=1).fit(X, np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="missing labels"):
        PBPClassifier(epochs=1).fit(X, np.array(["a", "b"] * 9 + ["a", None], dtype=object))
    model = PBPClassifier(hidden=(4,), random_state=0).partial_fit(X, np.r_[np.zeros(10), np.ones(10)])
    with pytest.raises(ValueError, match=r"label\(s\) \[2\] that are not among the classes"):
        model.partial_fit(X[:3], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="differ from the classes"):
        model.partial_fit(X[:3], np.array([0, 1, 1]), classes=[0, 1, 2])
    with pytest.raises(ValueError, match="input_scaling"):
        PBPClassifier(input_scaling="pixels").fit(X, np.r_[np.zeros(10), np.ones(10)])


def test_partial_fit_takes_the_classes_up_front_and_continues():
    X, y = make_blobs(300, centers=3, cluster_std=0.8, random_state=1)
    model = PBPClassifier(hidden=(8,), random_state=0)
    model.partial_fit(X[:50][y[:50] != 2], y[:50][y[:50] != 2], classes=[0, 1, 2])  # no class 2 yet
    assert list(model.classes_) == [0, 1, 2]
    before = model.score(X[200:], y[200:])
    for start in range(50, 200, 50):
        model.partial_fit(X[start : start + 50], y[start : start + 50])
    assert model.score(X[200:], y[200:]) > max(before, 0.9)


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "eel"]), np.array([False, True])])
def test_save_load_clone_and_pickle_keep_the_predictions(tmp_path, labels):
    X, y = make_blobs(120, centers=len(labels), random_state=2)
    y = labels[y]
    model = PBPClassifier(hidden=(6,), epochs=3, random_state=0).fit(X, y)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = PBPClassifier.load(path)
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert list(loaded.predict(X)) == list(model.predict(X))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    refit = clone(model).fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(X), model.predict_proba(X))


def test_a_model_file_with_mismatched_classes_is_refused(tmp_path):
    from probprop.io import ModelFileError

    X, y = make_blobs(60, centers=3, random_state=3)
    model = PBPClassifier(hidden=(4,), epochs=1, random_state=0).fit(X, y)
    model.classes_ = np.array([0, 1])  # two labels for a three-class network
    model.save(tmp_path / "bad.npz")
    with pytest.raises(ModelFileError, match="2 class labels for a network with 3 classes"):
        PBPClassifier.load(tmp_path / "bad.npz")


def test_map_classifier_without_hidden_layers_is_l2_logistic_regression():
    """The MAP objective mean CE + ||W||^2 / (2 N prior_var) is scikit-learn's multinomial logistic
    regression with C = prior_var (on the same standardised inputs): full-batch Adam to convergence
    lands on its probabilities."""
    from sklearn.preprocessing import StandardScaler

    from probprop import MAPClassifier

    X, y = make_blobs(200, centers=3, cluster_std=2.0, random_state=4)
    model = MAPClassifier(hidden=(), epochs=1500, batch_size=200, learning_rate=0.05, prior_var=0.5,
                          random_state=0).fit(X, y)
    Xs = StandardScaler().fit_transform(X)
    reference = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(Xs, y)
    np.testing.assert_allclose(model.predict_proba(X), reference.predict_proba(Xs), atol=2e-3)
    dist = model.predict_dist(X)
    assert np.all(dist.mutual_information < 1e-12) and np.all(dist.variance == 0)
    # a point estimate ranks inputs by max probability and entropy only (no constant epistemic scores)
    assert not dist.epistemic and list(dist.scores()) == ["max_probability", "entropy"]


def test_map_classifier_learns_xor_and_round_trips(tmp_path):
    from probprop import MAPClassifier

    X, y = _xor(600)
    Xt, yt = _xor(300, seed=1)
    model = MAPClassifier(hidden=(16,), epochs=60, learning_rate=1e-2, random_state=0).fit(X, y)
    assert model.score(Xt, yt) > 0.9
    model.save(tmp_path / "map.npz")
    np.testing.assert_array_equal(MAPClassifier.load(tmp_path / "map.npz").predict_proba(Xt), model.predict_proba(Xt))
    assert not hasattr(model, "partial_fit")


def test_deep_ensemble_classifier_averages_its_members_softmax():
    """The prediction is the members' average class probability, the scores their disagreement:
    checked against each member's own network (``mapnet.forward``) and scikit-learn's log loss."""
    import jax
    from sklearn.datasets import load_digits
    from sklearn.metrics import log_loss

    from probprop import DeepEnsembleClassifier
    from probprop.learners import mapnet

    X, y = load_digits(return_X_y=True)
    model = DeepEnsembleClassifier(hidden=(30,), epochs=15, n_members=3, random_state=0).fit(X[:1000], y[:1000])
    Xt, yt = X[1000:1300], y[1000:1300]
    assert model.score(Xt, yt) > 0.9
    Xs = model._standardise(Xt)
    members = np.stack([np.asarray(jax.nn.softmax(mapnet.forward(model.state_.member(m).params, model.state_.spec.member_spec,
                                                                 Xs)[0], axis=-1)) for m in range(3)])
    np.testing.assert_allclose(model.predict_proba(Xt), members.mean(0), rtol=1e-9, atol=1e-12)
    dist = model.predict_dist(Xt)
    np.testing.assert_allclose(dist.variance, members.var(0), rtol=1e-9, atol=1e-15)
    average_entropy = -np.sum(members * np.log(members), axis=2).mean(0)
    np.testing.assert_allclose(dist.mutual_information, dist.entropy - average_entropy, rtol=1e-7, atol=1e-12)
    assert np.all(dist.mutual_information > -1e-12) and dist.mutual_information.max() > 1e-3
    assert dist.epistemic and list(dist.scores()) == ["max_probability", "entropy", "mutual_information",
                                                      "epistemic_variance"]
    # the same prediction built from the members' probabilities (as the bench does for scikit-learn's)
    from_members = ClassPrediction.from_members(members, model.classes_)
    for name, score in dist.scores().items():
        np.testing.assert_allclose(from_members.scores()[name], score, rtol=1e-7, atol=1e-12, err_msg=name)
    # averaging probabilities never costs log loss against the members' own average (Jensen)
    assert log_loss(yt, model.predict_proba(Xt), labels=range(10)) < np.mean(
        [log_loss(yt, p, labels=range(10)) for p in members])


def test_deep_ensemble_classifier_selects_its_step_size_and_round_trips(tmp_path):
    from probprop import DeepEnsembleClassifier

    X, y = make_blobs(300, centers=3, cluster_std=1.5, random_state=5)
    labels = np.array(["a", "b", "c"])[y]
    model = DeepEnsembleClassifier(hidden=(8,), epochs=5, n_members=2, learning_rate=(1e-4, 3e-2),
                                   random_state=0).fit(X, labels)
    assert model.learning_rate_ == 3e-2 and model.validation_scores_.shape == (2,)
    assert model.validation_scores_[1] > model.validation_scores_[0]
    model.save(tmp_path / "ens.npz")
    loaded = DeepEnsembleClassifier.load(tmp_path / "ens.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert list(loaded.predict(X[:5])) == list(model.predict(X[:5]))
    with pytest.raises(ValueError, match="n_members"):
        DeepEnsembleClassifier(n_members=0).fit(X, labels)


def test_tagi_classifier_learns_xor_continues_online_and_round_trips(tmp_path):
    """TAGI with the probit output: XOR (which a linear model cannot), its output moments are
    the TAGI forward pass and its probabilities the probit's, partial_fit continues the
    posterior, and the model file gives the same predictions."""
    from probprop import TAGIClassifier
    from probprop.learners import tagi

    X, y = _xor(600)
    Xt, yt = _xor(400, seed=1)
    model = TAGIClassifier(hidden=(16,), epochs=30, random_state=0).fit(X, y)
    assert model.score(Xt, yt) > 0.9
    mean, var = tagi.forward(model.state_, model._standardise(Xt))
    p1 = stats.norm.cdf(np.asarray(mean) / np.sqrt(1 + np.asarray(var)))
    np.testing.assert_allclose(model.predict_proba(Xt)[:, 1], p1, rtol=1e-9, atol=1e-12)
    model.save(tmp_path / "tagi.npz")
    loaded = TAGIClassifier.load(tmp_path / "tagi.npz")
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    before = [np.array(a) for a in model.state_.means]
    model.partial_fit(X[:50], y[:50])
    assert not np.allclose(model.state_.means[0], before[0])
    online = TAGIClassifier(hidden=(8,), random_state=0).partial_fit(X[:20], y[:20], classes=["different", "same"])
    assert list(online.classes_) == ["different", "same"]


def test_tagi_classifier_on_digits_is_calibrated_like_pbp():
    """Ten classes (multinomial probit output): test accuracy and log loss on scikit-learn's
    digits near PBP's with the same network and passes."""
    from sklearn.datasets import load_digits
    from sklearn.metrics import log_loss

    from probprop import TAGIClassifier

    X, y = load_digits(return_X_y=True)
    kw = {"hidden": (50,), "epochs": 5, "input_scaling": "global", "random_state": 0}
    tagi_model = TAGIClassifier(**kw).fit(X[:1200], y[:1200])
    pbp_model = PBPClassifier(**kw).fit(X[:1200], y[:1200])
    Xt, yt = X[1200:], y[1200:]
    assert tagi_model.score(Xt, yt) > 0.9
    assert log_loss(yt, tagi_model.predict_proba(Xt)) < 1.3 * log_loss(yt, pbp_model.predict_proba(Xt))
    dist = tagi_model.predict_dist(Xt)
    assert dist.probabilities.shape == (len(Xt), 10) and np.all(dist.mutual_information >= -1e-9)


def test_mc_dropout_classifier_averages_its_passes_and_selects_the_rate(tmp_path):
    """predict_proba is the average of the T passes' softmax (the learner's class samples),
    mutual information the passes' disagreement; the rate is chosen on held-out log probability;
    the model file predicts the same."""
    from sklearn.datasets import load_digits

    from probprop import MCDropoutClassifier
    from probprop.learners import mcdropout

    X, y = load_digits(return_X_y=True)
    model = MCDropoutClassifier(hidden=(30,), epochs=15, dropout=(0.05, 0.5), n_samples=20,
                                random_state=0).fit(X[:1000], y[:1000])
    Xt, yt = X[1000:1300], y[1000:1300]
    assert model.score(Xt, yt) > 0.9
    assert model.dropout_ in (0.05, 0.5) and model.validation_scores_.shape == (2,)
    assert model.dropout_ == (0.05, 0.5)[int(np.argmax(model.validation_scores_))]
    samples = np.asarray(mcdropout.class_samples(model.state_, model._standardise(Xt)))
    assert samples.shape == (20, len(Xt), 10)
    np.testing.assert_allclose(model.predict_proba(Xt), samples.mean(0), rtol=1e-9, atol=1e-12)
    dist = model.predict_dist(Xt)
    average_entropy = -np.sum(samples * np.log(samples), axis=2).mean(0)
    np.testing.assert_allclose(dist.mutual_information, dist.entropy - average_entropy, rtol=1e-7, atol=1e-12)
    model.save(tmp_path / "mcd.npz")
    np.testing.assert_array_equal(MCDropoutClassifier.load(tmp_path / "mcd.npz").predict_proba(Xt),
                                  model.predict_proba(Xt))
    # the summaries are computed block by block: blocks of 3 rows give the same numbers
    from probprop.estimators import classifier

    small = pytest.MonkeyPatch.context()
    with small as patch:
        patch.setattr(classifier, "SAMPLES_BLOCK_NUMBERS", 20 * 10 * 3)
        np.testing.assert_allclose(model.predict_proba(Xt), samples.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model.predict_dist(Xt).variance, dist.variance, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="dropout"):
        MCDropoutClassifier(dropout=1.5).fit(X[:50], y[:50])

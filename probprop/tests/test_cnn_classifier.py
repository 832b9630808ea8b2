"""PBPClassifier with convolution layers: it learns images (scikit-learn's 8x8 digits), continues
with partial_fit, round-trips through a model file, and refuses shapes that do not fit; the MAP
and deep-ensemble classifiers with point-estimate convolutions likewise, and TAGIClassifier with
Gaussian kernels conditioned on by TAGI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from probprop import DeepEnsembleClassifier, LaplaceEnsembleClassifier, MAPClassifier, PBPClassifier, TAGIClassifier
from probprop.io import ModelFileError
from probprop.layers import Conv2D, Dense


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:1200], y[:1200], X[1200:], y[1200:]


@pytest.fixture(scope="module")
def cnn(digits):
    X, y, _, _ = digits
    return PBPClassifier(hidden=(30,), conv=((6, 3, 2),), epochs=2, input_scaling="global", random_state=0).fit(X, y)


def test_a_cnn_learns_the_digits(cnn, digits):
    """Chance is 10 %; a majority-class predictor scores 11 %. Measured: 91-93 % after two passes."""
    _, _, Xt, yt = digits
    assert cnn.score(Xt, yt) > 0.85
    spec = cnn.state_.spec
    assert spec.layers == (Conv2D((1, 8, 8), 6, kernel=3, pool=2), Dense(), Dense())
    assert spec.hidden == (6 * 3 * 3, 30)
    proba = cnn.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    dist = cnn.predict_dist(Xt)
    assert np.all(dist.mutual_information >= 0) and np.all(np.isfinite(dist.entropy))


def test_partial_fit_continues_a_cnn(digits):
    X, y, Xt, yt = digits
    model = PBPClassifier(hidden=(30,), conv=((6, 3, 2),), input_scaling="global", random_state=0)
    model.partial_fit(X[:600], y[:600], classes=np.arange(10))
    first = model.score(Xt, yt)
    model.partial_fit(X[600:], y[600:])
    assert model.score(Xt, yt) >= first - 0.02


def test_a_cnn_round_trips_through_a_model_file(cnn, digits, tmp_path):
    _, _, Xt, _ = digits
    path = tmp_path / "cnn.npz"
    cnn.save(path)
    loaded = PBPClassifier.load(path)
    assert loaded.state_.spec == cnn.state_.spec
    np.testing.assert_array_equal(loaded.predict_proba(Xt), cnn.predict_proba(Xt))


def test_a_model_file_with_a_convolution_that_does_not_fit_is_refused(cnn, tmp_path):
    path = tmp_path / "cnn.npz"
    cnn.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["__meta__"]))
    layer = meta["spec"]["fields"]["layers"][0]["fields"]
    for changes, match in (({"kernel": 99}, "does not fit"), ({"in_shape": [1, 10**6, 10**6]}, "up to 4096 pixels"),
                           ({"channels": 7}, "network gives it|expected"), ({"pooling": "median"}, "unknown pooling")):
        bad = json.loads(json.dumps(meta))
        bad["spec"]["fields"]["layers"][0]["fields"] = {**layer, **changes}
        np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(bad))})
        with pytest.raises(ModelFileError, match=match):
            PBPClassifier.load(path)


def test_a_tagi_cnn_learns_the_digits_continues_and_round_trips(digits, tmp_path):
    """Measured: 85-89 % held-out accuracy after three passes over three seeds (a majority-class
    predictor: 11 %); partial_fit continues from the posterior; the model file round-trips."""
    X, y, Xt, yt = digits
    model = TAGIClassifier(hidden=(30,), conv=((6, 3, 2),), epochs=3, batch_size=8, input_scaling="global",
                           random_state=0).fit(X, y)
    assert model.score(Xt, yt) > 0.8 and model.n_rejected_ == 0
    assert model.spec_.conv == (Conv2D((1, 8, 8), 6, kernel=3, pool=2),)
    assert model.spec_.layer_sizes == (64, 54, 30, 10)
    proba = model.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    assert np.all(model.predict_dist(Xt).mutual_information >= 0)
    path = tmp_path / "tagi-cnn.npz"
    model.save(path)
    loaded = TAGIClassifier.load(path)
    assert loaded.spec_ == model.spec_
    np.testing.assert_array_equal(loaded.predict_proba(Xt), proba)
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["__meta__"]))
    for changes, match in (({"kernel": 99}, "does not fit"), ({"pooling": "max"}, "pool by average")):
        bad = json.loads(json.dumps(meta))
        piece = bad["spec"]["fields"]["conv"][0]["fields"]
        bad["spec"]["fields"]["conv"][0]["fields"] = {**piece, **changes}
        np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(bad))})
        with pytest.raises(ModelFileError, match=match):
            TAGIClassifier.load(path)
    before = model.state_.means[0].copy()
    model.partial_fit(X[:200], y[:200])
    assert not np.array_equal(np.asarray(model.state_.means[0]), np.asarray(before))
    with pytest.raises(ValueError, match="pool by average"):
        TAGIClassifier(epochs=1, conv=((6, 3, 2),), pooling="max").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="variance_update='precision'"):
        TAGIClassifier(epochs=1, conv=((6, 3, 2),), variance_update="precision").fit(X[:50], y[:50])


@pytest.fixture(scope="module", params=["map", "ensemble", "laplace-ensemble"])
def softmax_cnn(request, digits):
    X, y, _, _ = digits
    common = {"hidden": (30,), "conv": ((6, 3, 2),), "epochs": 15, "batch_size": 32, "input_scaling": "global",
              "random_state": 0}
    if request.param == "map":
        return MAPClassifier(learning_rate=3e-3, **common).fit(X, y)
    if request.param == "laplace-ensemble":  # last-layer posteriors over convolutional members
        return LaplaceEnsembleClassifier(n_members=2, learning_rate=3e-3, n_samples=30, **common).fit(X, y)
    return DeepEnsembleClassifier(n_members=3, learning_rate=3e-3, **common).fit(X, y)


def test_softmax_cnns_learn_the_digits_and_round_trip(softmax_cnn, digits, tmp_path):
    """Measured: 89-92 % held-out accuracy over three seeds for the MAP network and the ensemble (a
    majority-class predictor: 11 %); the Laplace ensemble's are its deep ensemble's networks."""
    _, _, Xt, yt = digits
    assert softmax_cnn.score(Xt, yt) > 0.85
    spec = getattr(softmax_cnn.spec_, "member_spec", softmax_cnn.spec_)
    assert spec.conv == (Conv2D((1, 8, 8), 6, kernel=3, pool=2),)
    assert spec.layer_sizes == (64, 54, 30, 10)
    path = tmp_path / "cnn.npz"
    softmax_cnn.save(path)
    loaded = type(softmax_cnn).load(path)
    assert loaded.spec_ == softmax_cnn.spec_
    np.testing.assert_array_equal(loaded.predict_proba(Xt), softmax_cnn.predict_proba(Xt))
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["__meta__"]))
    meta["params"]["conv"] = [[6, 3, 1]]  # the parameters no longer build the file's network
    np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    with pytest.raises(ModelFileError, match="conv"):
        type(softmax_cnn).load(path)


@pytest.mark.parametrize("cls", [MAPClassifier, DeepEnsembleClassifier, LaplaceEnsembleClassifier])
def test_softmax_cnn_shapes_that_do_not_fit_are_clear_errors(cls):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 60)), np.arange(20) % 2
    with pytest.raises(ValueError, match="60 features are not a square image"):
        cls(epochs=1, conv=((4, 3, 1),)).fit(X, y)
    with pytest.raises(ValueError, match="pooling must be one of"):
        cls(epochs=1, conv=((4, 3, 1),), pooling="median").fit(X[:, :49], y)


@pytest.mark.parametrize(
    ("params", "n_features", "match"),
    [
        ({"conv": ((4, 3, 1),)}, 60, "60 features are not a square image"),
        ({"conv": ((4, 3, 1),), "image_shape": (3, 4, 4)}, 64, "holds 48 values, but X has 64 features"),
        ({"conv": ((4, 9, 1),)}, 64, "convolution layer 1 .* does not fit"),
        ({"conv": ((4, 3, 2), (4, 3, 2))}, 64, "convolution layer 2"),
        ({"conv": (4, 3, 1)}, 64, "triples of positive ints"),
        ({"conv": ((4, 3, 0),)}, 64, "triples of positive ints"),
        ({"conv": ((4, 3, 1),), "pooling": "median"}, 64, "pooling must be one of"),
        ({"conv": ((4, 3, 1),), "image_shape": (8, -8)}, 64, "image_shape must be"),
    ],
)
def test_shapes_that_do_not_fit_are_clear_errors(params, n_features, match):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, n_features)), np.arange(20) % 2
    with pytest.raises(ValueError, match=match):
        PBPClassifier(epochs=1, **params).fit(X, y)


@pytest.mark.parametrize("cls", [PBPClassifier, TAGIClassifier, MAPClassifier, DeepEnsembleClassifier])
def test_a_malformed_image_shape_is_refused_without_convolutions_too(cls):
    """image_shape is unused without ``conv``, but a malformed one is still a clear error (it was
    accepted silently; a later ``set_params(conv=...)`` would have failed far from the cause)."""
    X, y = np.random.default_rng(0).normal(size=(20, 16)), np.arange(20) % 2
    with pytest.raises(ValueError, match="image_shape must be"):
        cls(epochs=1, image_shape="banana").fit(X, y)
    cls(epochs=1, image_shape=(5, 5)).fit(X, y)  # well-formed: fine, whatever its size (unused)


def test_an_estimator_without_convolutions_refuses_a_network_with_them():
    from probprop import MAPRegressor
    from probprop.learners import mapnet

    spec = mapnet.MAPSpec(n_in=64, hidden=(5,), conv=(Conv2D((1, 8, 8), 4, kernel=3),))
    disagreements = MAPRegressor(hidden=(5,))._spec_disagreements(spec, {"hidden": (5,)})
    assert disagreements == ["convolutions in the file's network, which a MAPRegressor does not build"]
    assert MAPRegressor(hidden=(5,))._spec_disagreements(mapnet.MAPSpec(n_in=64, hidden=(5,)), {"hidden": (5,)}) == []


def test_plain_predictions_in_cache_sized_blocks_equal_one_block(cnn, digits, monkeypatch):
    """Rows per block from the widest layer (``PREDICT_BLOCK_NUMBERS``): the blocked predictions
    are those of one block over all rows, for a CNN (its maps counted) and a dense regressor."""
    from probprop import PBPRegressor
    from probprop.estimators import base

    _, _, Xt, _ = digits
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    reg = PBPRegressor(hidden=(40,), epochs=2, random_state=0).fit(X, X[:, 0] + 0.1 * rng.normal(size=300))
    # the widest layers: the CNN's maps (6 x 3 x 3 = 54 < its 64 pixels), the regressor's 40 units
    assert cnn._plain_block(64) == 2048 and reg._plain_block(3) == 2048
    blocks, padded = [], base.padded
    monkeypatch.setattr(base, "padded", lambda Xs, *a, **k: blocks.append(len(Xs)) or padded(Xs, *a, **k))
    want = cnn.predict_proba(Xt), cnn.predict_dist(Xt).mutual_information, reg.predict(X)
    assert blocks == [len(Xt)] * 2 + [300]  # one block each (fewer rows than a block)
    monkeypatch.setattr(base, "PREDICT_BLOCK_NUMBERS", 64 * 16)  # 16 rows a block: many padded blocks
    assert cnn._plain_block(64) == 16 and reg._plain_block(3) == 16
    blocks.clear()
    got = cnn.predict_proba(Xt), cnn.predict_dist(Xt).mutual_information, reg.predict(X)
    assert max(blocks) == 16 and sum(blocks) == 2 * len(Xt) + 300  # the predictions really ran in blocks of 16
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    monkeypatch.setattr(base, "PREDICT_BLOCK_NUMBERS", 1)  # never below 8 rows
    assert cnn._plain_block(64) == 8


def test_prediction_blocks_count_an_ensembles_members_and_a_last_layer_posterior():
    """Members run side by side (their numbers add up); a last-layer Laplace posterior of D
    parameters takes blocks of at least D rows (its D^3 set-up per call)."""
    from probprop import LaplaceRegressor, PBPEnsembleRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=200)
    ensemble = PBPEnsembleRegressor(hidden=(64,), n_members=4, epochs=1, random_state=0).fit(X, y)
    single = PBPEnsembleRegressor(hidden=(64,), n_members=1, epochs=1, random_state=0).fit(X, y)
    assert single._plain_block(3) == 2048 and ensemble._plain_block(3) == 512
    laplace = LaplaceRegressor(hidden=(2000,), epochs=1, random_state=0).fit(X, y)  # D = 2001
    assert laplace._plain_block(3) == 2048  # 2^17 / 2000 would give 64 rows

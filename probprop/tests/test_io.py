"""Model files: save/load round trips, the on-disk format, and clear errors for bad files."""

from __future__ import annotations

import copy
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probprop import DVIRegressor, PBPRegressor
from probprop.io import FORMAT, VERSION, ModelFileError, load_model, save_model
from probprop.tests.conftest import FAST, small_problem
from probprop.tests.conftest import model_arrays as _arrays


@pytest.fixture(scope="module")
def fitted():
    X, y = small_problem()
    return PBPRegressor(**FAST).fit(X, y), X, y


@pytest.fixture
def model_file(fitted, tmp_path):
    path = tmp_path / "model.npz"
    fitted[0].save(path)
    return path


def _rewrite(path, arrays, **meta_changes):
    """Write ``arrays`` to ``path`` with the metadata record changed (None deletes a key)."""
    meta = json.loads(str(arrays["__meta__"]))
    for key, value in meta_changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    return path


def _assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    da, db = a.predict_dist(X), b.predict_dist(X)
    for field in ("mean", "epistemic_var", "noise_var", "std"):
        np.testing.assert_array_equal(getattr(da, field), getattr(db, field), err_msg=field)


def test_round_trip_is_exact(fitted, model_file):
    model, X, y = fitted
    loaded = PBPRegressor.load(model_file)
    assert type(loaded) is PBPRegressor
    _assert_same_predictions(model, loaded, X)
    assert loaded.get_params() == model.get_params()
    assert loaded.noise_variance_ == model.noise_variance_
    assert loaded.n_features_in_ == 3 and not hasattr(loaded, "feature_names_in_")
    assert (loaded.n_rejected_, loaded.rejected_per_epoch_) == (model.n_rejected_, model.rejected_per_epoch_)
    assert loaded.score(X, y) == model.score(X, y)


def test_loaded_model_continues_exactly(fitted, model_file):
    """The random key and the whole posterior travel with the file: partial_fit after load
    matches partial_fit on the in-memory original, and both moved away from the fitted model."""
    model, X, y = fitted
    original = copy.deepcopy(model)  # the fitted model as it is in memory (the fixture is shared)
    loaded = PBPRegressor.load(model_file)
    original.partial_fit(X[:8], y[:8] + 3.0, epochs=2)
    loaded.partial_fit(X[:8], y[:8] + 3.0, epochs=2)
    _assert_same_predictions(original, loaded, X)
    assert not np.array_equal(original.predict(X), model.predict(X))


def test_file_is_a_plain_npz(model_file):
    assert zipfile.is_zipfile(model_file)
    arrays = _arrays(model_file)  # allow_pickle=False: no object arrays anywhere
    assert all(a.dtype != object for a in arrays.values())
    meta = json.loads(str(arrays["__meta__"]))
    assert (meta["format"], meta["version"], meta["estimator"]) == (FORMAT, VERSION, "PBPRegressor")
    assert meta["learner"] == "pbp" and meta["spec"]["class"] == "PBPSpec"
    expected = {"state/.means[0]", "state/.variances[1]", "state/.noise.shape", "state/.prior.rate", "x_mean",
                "x_scale", "state/.key"}
    assert expected <= set(arrays)
    assert model_file.name == "model.npz"


def test_exact_path_is_used(fitted, tmp_path):
    model, X, _ = fitted
    path = tmp_path / "no_suffix"
    save_model(model, path)
    assert path.is_file() and not (tmp_path / "no_suffix.npz").exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    _assert_same_predictions(model, load_model(path), X)


def test_round_trip_keeps_feature_names_and_fixed_noise_and_float32(tmp_path):
    X, y = small_problem()
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    model = PBPRegressor(hidden=(8, 4), noise=0.5, dtype="float32", random_state=np.int64(3), epochs=2)
    model.fit(df, y)
    model.save(tmp_path / "m.npz")
    loaded = PBPRegressor.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.feature_names_in_, ["a", "b", "c"])
    assert loaded.get_params() == model.get_params()
    assert loaded.state_.means[0].dtype == np.float32
    assert loaded.spec_ == model.spec_
    assert np.all(np.isfinite(loaded.predict(df)))
    assert loaded.noise_variance_ == pytest.approx(0.5, rel=1e-12)
    _assert_same_predictions(model, loaded, df)


def test_random_state_object_is_not_saved(tmp_path):
    X, y = small_problem()
    model = PBPRegressor(epochs=1, random_state=np.random.RandomState(0)).fit(X, y)
    model.save(tmp_path / "m.npz")
    assert PBPRegressor.load(tmp_path / "m.npz").random_state is None


def test_save_unfitted_raises(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PBPRegressor().save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# ---------------------------------------------------------------------------------------------
# Bad files


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at .*nowhere.npz"):
        PBPRegressor.load(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError, match="no model file"):
        PBPRegressor.load(tmp_path)  # a directory


@pytest.mark.parametrize("keep", [0.5, 0.99, 100])
def test_truncated_file(model_file, keep):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: keep if isinstance(keep, int) else int(keep * len(data))])
    with pytest.raises(ModelFileError, match="not a probprop model file.*not a zip/.npz archive"):
        PBPRegressor.load(model_file)


@pytest.mark.parametrize("content", ["random", "empty", "npy"])
def test_foreign_file(tmp_path, content):
    path = tmp_path / "model.npz"
    if content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "empty":
        path.write_bytes(b"")
    else:
        with open(path, "wb") as handle:
            np.save(handle, np.arange(5.0))
    with pytest.raises(ModelFileError, match="not a probprop model file"):
        PBPRegressor.load(path)


def test_corrupted_member(model_file):
    """A zip whose central directory survives but whose data does not (CRC mismatch)."""
    data = bytearray(model_file.read_bytes())
    info = zipfile.ZipFile(model_file).getinfo("state/.means[0].npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle : middle + 8] = bytes(8)
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt array 'state/.means\\[0\\]'"):
        PBPRegressor.load(model_file)


def test_npz_without_metadata(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(ModelFileError, match="no metadata record"):
        PBPRegressor.load(path)


@pytest.mark.parametrize(
    "meta, match",
    [
        (np.array("{not json"), "corrupt metadata"),
        (np.array(json.dumps([1, 2])), "metadata is not a JSON object"),
        (np.array(7), "metadata record is not a JSON string"),
    ],
)
def test_unreadable_metadata(tmp_path, meta, match):
    path = tmp_path / "model.npz"
    np.savez(path, __meta__=meta)
    with pytest.raises(ModelFileError, match=match):
        PBPRegressor.load(path)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"format": "sklearn-pickle"}, "not a probprop model file \\(format 'sklearn-pickle'\\)"),
        ({"format": None}, "not a probprop model file \\(format None\\)"),
        ({"version": 3}, "format version 3; this probprop reads versions \\[1, 2\\]"),
        ({"version": None}, "format version None"),
        ({"estimator": "PBPClassifier"}, "holds a PBPClassifier, not a PBPRegressor"),
        ({"spec": None}, "unknown learner spec None"),
        ({"spec": {"class": "os.system", "fields": {}}}, "unknown learner spec 'os.system'"),
        ({"y_scale": None}, "target standardisation must be finite with a positive scale"),
        ({"y_scale": -1.0}, "target standardisation must be finite with a positive scale"),
        ({"fitted": {"predict": 1}}, "PBPRegressor has no saved attribute 'predict'"),
        ({"params": {"hidden": [50], "learning_rate": 0.1}}, "has no parameter\\(s\\) learning_rate"),
    ],
)
def test_wrong_metadata(model_file, changes, match):
    _rewrite(model_file, _arrays(model_file), **changes)
    with pytest.raises(ModelFileError, match=match):
        PBPRegressor.load(model_file)


def test_metadata_inconsistent_with_arrays(model_file):
    arrays = _arrays(model_file)
    meta = json.loads(str(arrays["__meta__"]))

    def spec(**changes):
        return {"class": "PBPSpec", "fields": {**meta["spec"]["fields"], **changes}}

    _rewrite(model_file, arrays, spec=spec(activation="tanh"))
    with pytest.raises(ModelFileError, match="parameters and the network spec disagree \\(activation 'relu'"):
        PBPRegressor.load(model_file)

    _rewrite(model_file, arrays, spec=spec(hidden=[99]))
    with pytest.raises(ModelFileError, match="means\\[0\\] is float64\\[50, 4\\], expected float64\\[99, 4\\]"):
        PBPRegressor.load(model_file)

    _rewrite(model_file, arrays, spec=spec(n_in=4))
    with pytest.raises(ModelFileError, match="means\\[0\\] is float64\\[50, 4\\], expected float64\\[50, 5\\]"):
        PBPRegressor.load(model_file)

    _rewrite(model_file, arrays, params=dict(meta["params"], hidden=[8]))
    with pytest.raises(ModelFileError, match="disagree \\(hidden \\(8,\\) against \\(50,\\)"):
        PBPRegressor.load(model_file)

    _rewrite(model_file, arrays, params=dict(meta["params"], activation="cubic"))
    with pytest.raises(ModelFileError, match="invalid estimator parameters.*activation"):
        PBPRegressor.load(model_file)


@pytest.mark.parametrize("missing", ["state/.means[1]", "state/.noise.shape", "x_scale", "state/.key"])
def test_missing_array(model_file, missing):
    arrays = _arrays(model_file)
    del arrays[missing]
    np.savez(model_file, **arrays)
    with pytest.raises(ModelFileError, match=f"missing array '{missing.replace('[', '.').replace(']', '.')}'"):
        PBPRegressor.load(model_file)


def test_wrong_array_shapes_and_values(model_file):
    arrays = _arrays(model_file)
    np.savez(model_file, **{**arrays, "state/.variances[0]": arrays["state/.variances[0]"][:, :2]})
    with pytest.raises(ModelFileError, match="variances\\[0\\] is float64\\[50, 2\\], expected float64\\[50, 4\\]"):
        PBPRegressor.load(model_file)
    np.savez(model_file, **{**arrays, "x_mean": arrays["x_mean"][:2]})
    with pytest.raises(ModelFileError, match="x_mean is float64\\[2\\], expected float64\\[3\\]"):
        PBPRegressor.load(model_file)
    bad = arrays["state/.variances[0]"].copy()
    bad[0, 0] = -1.0
    np.savez(model_file, **{**arrays, "state/.variances[0]": bad})
    with pytest.raises(ModelFileError, match="non-positive variances"):
        PBPRegressor.load(model_file)
    bad[0, 0] = np.nan
    np.savez(model_file, **{**arrays, "state/.variances[0]": bad})
    with pytest.raises(ModelFileError, match="non-finite values"):
        PBPRegressor.load(model_file)
    np.savez(model_file, **{**arrays, "x_scale": np.full(3, np.nan)})
    with pytest.raises(ModelFileError, match="input standardisation holds non-finite"):
        PBPRegressor.load(model_file)
    np.savez(model_file, **{**arrays, "state/.means[0]": arrays["state/.means[0]"].astype(np.complex128)})
    with pytest.raises(ModelFileError, match="is complex128\\[50, 4\\], expected float64"):
        PBPRegressor.load(model_file)


def test_object_array_and_extra_entries_are_refused(model_file):
    arrays = _arrays(model_file)
    np.savez(model_file, **{**arrays, "x_mean": np.array([{"a": 1}, 2, 3], dtype=object)})
    with pytest.raises(ModelFileError, match="'x_mean' holds Python objects; refused"):
        PBPRegressor.load(model_file)
    np.savez(model_file, **arrays, payload=np.ones(3))
    with pytest.raises(ModelFileError, match="unexpected entries \\['payload'\\]"):
        PBPRegressor.load(model_file)
    np.savez(model_file, **arrays, **{"fitted/x_scale_": np.ones(3)})
    with pytest.raises(ModelFileError, match="no saved attribute 'x_scale_'"):
        PBPRegressor.load(model_file)


def test_a_declared_huge_network_is_refused_before_anything_is_built(tmp_path):
    """A small file that declares hidden sizes of 30000 x 30000: the state's shapes come from
    jax.eval_shape, so the loader compares them with the stored arrays without building it."""
    X, y = small_problem()
    path = tmp_path / "dvi.npz"
    DVIRegressor(hidden=(8, 8), epochs=1, random_state=0).fit(X, y).save(path)
    arrays = _arrays(path)
    meta = json.loads(str(arrays["__meta__"]))
    meta["spec"]["fields"]["hidden"] = [30000, 30000]
    meta["params"]["hidden"] = [30000, 30000]
    np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="expected float64\\[3, 30000\\]|declares"):
        DVIRegressor.load(path)
    assert time.perf_counter() - start < 10


def test_deeply_nested_metadata_is_a_clear_error(model_file):
    arrays = _arrays(model_file)
    deep = "[" * 100_000 + "]" * 100_000
    np.savez(model_file, **{**arrays, "__meta__": np.array(deep)})
    with pytest.raises(ModelFileError, match="corrupt metadata"):
        PBPRegressor.load(model_file)


# ---------------------------------------------------------------------------------------------
# Files written by probprop 0.1.0 (format version 1), committed under probprop/tests/data


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["pbp", "pbp-ensemble", "tagi"])
def test_version_1_files_load_and_predict_as_they_did(name, tmp_path):
    """0.1.0 wrote these files and recorded its predictions for the 5 rows of X (same file)."""
    recorded = json.loads((DATA / "model-0.1.0-predictions.json").read_text())
    X = np.asarray(recorded["X"])
    model = load_model(DATA / f"model-0.1.0-{name}.probprop")
    dist = model.predict_dist(X)
    np.testing.assert_allclose(dist.mean, recorded[name]["mean"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dist.var, recorded[name]["var"], rtol=1e-12, atol=1e-12)
    # saved again, it is a version-2 file with the same predictions
    model.save(tmp_path / "again.probprop")
    again = load_model(tmp_path / "again.probprop")
    assert json.loads(str(_arrays(tmp_path / "again.probprop")["__meta__"]))["version"] == VERSION
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_version_1_mc_dropout_file_loads_its_weights_and_choices():
    """MC dropout's predictions changed on purpose after 0.1.0 (one dropout mask per pass for
    every row), so the check is on what the file holds."""
    model = load_model(DATA / "model-0.1.0-mcdropout.probprop")
    with np.load(DATA / "model-0.1.0-mcdropout.probprop", allow_pickle=False) as archive:
        W0 = archive["state0/.params['layers'][0][0]"]
    np.testing.assert_array_equal(model.state_.params["layers"][0][0], W0)
    assert (model.dropout_, model.tau_) == (0.05, pytest.approx(4.0))
    assert np.all(np.isfinite(model.predict(np.zeros((2, 3)))))


def test_a_model_with_a_likelihood_outside_the_fixed_lists_is_not_saved(fitted, tmp_path):
    """Model files name their classes from fixed lists; a user's own likelihood is refused with a
    clear error instead of being written as something the loader cannot rebuild."""
    import dataclasses

    from probprop.likelihoods import Likelihood

    @dataclasses.dataclass(frozen=True)
    class Mine(Likelihood):
        pass

    model = copy.deepcopy(fitted[0])
    model.spec_ = dataclasses.replace(model.spec_, likelihood=Mine())
    with pytest.raises(TypeError, match="cannot save a model holding a Mine"):
        model.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())  # nothing left behind, not even a temporary file


def test_every_estimator_is_registered_for_files():
    import probprop
    from probprop.io import _ESTIMATORS

    # the calibration wrappers hold a model, they are not one: they pickle (see docs/guide/files.md)
    names = {n for n in probprop.__all__ if n.endswith(("Regressor", "Classifier")) and probprop._EXPORTS.get(n) == "probprop.estimators"}
    assert names == set(_ESTIMATORS)
    assert {"ConformalRegressor", "QuantileRecalibratedRegressor"} <= set(probprop.__all__) - set(_ESTIMATORS)


def test_a_classifier_network_in_a_regressor_file_is_refused(tmp_path):
    """A file whose metadata names a regressor but whose (consistent) network is a classifier's
    is refused before it could predict class utilities as regression means."""
    from sklearn.datasets import make_blobs

    from probprop import TAGIClassifier, TAGIRegressor

    X, y = make_blobs(60, centers=3, random_state=0)
    path = tmp_path / "classes.npz"
    TAGIClassifier(hidden=(4,), epochs=1, random_state=0).fit(X, y).save(path)
    arrays = _arrays(path)
    meta = json.loads(str(arrays["__meta__"]))
    _rewrite(path, arrays, estimator="TAGIRegressor", fitted={},
             params={"hidden": meta["params"]["hidden"], "sigma_v": 0.3})
    with pytest.raises(ModelFileError, match="a classifier network in a regressor's file"):
        TAGIRegressor.load(path)

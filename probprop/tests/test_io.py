"""Model files: save/load round trips, the on-disk format, and clear errors for bad files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from probprop import PBPRegressor
from probprop.io import FORMAT, VERSION, ModelFileError, load_model, save_model
from probprop.tests.conftest import FAST, small_problem


@pytest.fixture(scope="module")
def fitted():
    X, y = small_problem()
    return PBPRegressor(**FAST).fit(X, y), X, y


@pytest.fixture
def model_file(fitted, tmp_path):
    path = tmp_path / "model.npz"
    fitted[0].save(path)
    return path


def _arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


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
    """The random key travels with the file, so partial_fit after load matches partial_fit on
    the original."""
    model, X, y = fitted
    original = PBPRegressor.load(model_file)  # a copy, to leave the shared fixture alone
    loaded = PBPRegressor.load(model_file)
    original.partial_fit(X[:8], y[:8], epochs=2)
    loaded.partial_fit(X[:8], y[:8], epochs=2)
    _assert_same_predictions(original, loaded, X)


def test_file_is_a_plain_npz(model_file):
    assert zipfile.is_zipfile(model_file)
    arrays = _arrays(model_file)  # allow_pickle=False: no object arrays anywhere
    assert all(a.dtype != object for a in arrays.values())
    meta = json.loads(str(arrays["__meta__"]))
    assert (meta["format"], meta["version"], meta["estimator"]) == (FORMAT, VERSION, "PBPRegressor")
    assert {"means_0", "variances_1", "noise", "prior", "x_mean", "x_scale", "key"} <= set(arrays)
    assert model_file.name == "model.npz"


def test_exact_path_is_used(fitted, tmp_path):
    model, X, _ = fitted
    path = tmp_path / "no_suffix"
    save_model(model, path)
    assert path.is_file() and not (tmp_path / "no_suffix.npz").exists()
    assert not list(tmp_path.glob("*.tmp"))
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
    info = zipfile.ZipFile(model_file).getinfo("means_0.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle : middle + 8] = bytes(8)
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="not a readable probprop model file"):
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
        (np.array(7), "metadata is not a JSON object"),
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
        ({"version": 2}, "format version 2; this probprop reads version 1"),
        ({"version": None}, "format version None"),
        ({"estimator": "PBPClassifier"}, "holds a PBPClassifier, not a PBPRegressor"),
        ({"spec": None}, "incomplete or inconsistent model file.*spec"),
        ({"y_scale": None}, "incomplete or inconsistent model file.*y_scale"),
    ],
)
def test_wrong_metadata(model_file, changes, match):
    _rewrite(model_file, _arrays(model_file), **changes)
    with pytest.raises(ModelFileError, match=match):
        PBPRegressor.load(model_file)


def test_metadata_inconsistent_with_arrays(model_file):
    arrays = _arrays(model_file)
    meta = json.loads(str(arrays["__meta__"]))

    spec = dict(meta["spec"], activation="tanh")
    _rewrite(model_file, arrays, spec=spec)
    with pytest.raises(ModelFileError, match="parameters and the network spec disagree"):
        PBPRegressor.load(model_file)

    spec = dict(meta["spec"], n_in=4)
    _rewrite(model_file, arrays, spec=spec)
    with pytest.raises(ModelFileError, match="means_0 has shape \\(50, 4\\), expected \\(50, 5\\)"):
        PBPRegressor.load(model_file)

    params = dict(meta["params"], learning_rate=0.1)
    _rewrite(model_file, arrays, params=params)
    with pytest.raises(ModelFileError, match="learning_rate"):
        PBPRegressor.load(model_file)


@pytest.mark.parametrize("missing", ["means_1", "noise", "x_scale", "key"])
def test_missing_array(model_file, missing):
    arrays = _arrays(model_file)
    del arrays[missing]
    np.savez(model_file, **arrays)
    with pytest.raises(ModelFileError, match=f"incomplete or inconsistent model file.*{missing}"):
        PBPRegressor.load(model_file)


def test_wrong_array_shapes(model_file):
    arrays = _arrays(model_file)
    np.savez(model_file, **{**arrays, "variances_0": arrays["variances_0"][:, :2]})
    with pytest.raises(ModelFileError, match="variances_0 has shape"):
        PBPRegressor.load(model_file)
    np.savez(model_file, **{**arrays, "x_mean": arrays["x_mean"][:2]})
    with pytest.raises(ModelFileError, match="standardisation arrays do not match 3 features"):
        PBPRegressor.load(model_file)


def test_object_array_is_refused(model_file):
    arrays = _arrays(model_file)
    np.savez(model_file, **arrays, payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="not a readable probprop model file.*allow_pickle"):
        PBPRegressor.load(model_file)

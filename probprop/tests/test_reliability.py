"""Regression tests for issue 16: model files as untrusted input, extreme scales, interrupts and
concurrent saves (the defects are numbered as in the issue). Every hostile file is built here."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import probprop
from probprop import (
    DeepEnsembleClassifier,
    DeepEnsembleRegressor,
    DivergedError,
    DriftWarning,
    DVIRegressor,
    GaussianPrediction,
    MAPRegressor,
    MCDropoutClassifier,
    MCDropoutRegressor,
    PBPEnsembleRegressor,
    PBPRegressor,
    TAGIRegressor,
)
from probprop.cli import main
from probprop.io import MAX_COMPRESSION_RATIO, ModelFileError, load_model, save_model
from probprop.tests.conftest import FAST, small_problem
from probprop.tests.conftest import model_arrays as _arrays

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted():
    X, y = small_problem()
    return PBPRegressor(hidden=(8,), **FAST).fit(X, y), X, y


@pytest.fixture
def model_file(fitted, tmp_path):
    path = tmp_path / "model.npz"
    fitted[0].save(path)
    return path


def _npy(array=None, header=None) -> bytes:
    buffer = io.BytesIO()
    if header is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _zip(path, entries: dict, compression=zipfile.ZIP_STORED):
    """A zip of ``name -> bytes`` (names without the .npy suffix)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name + ".npy", data)
    return path


def _meta(arrays) -> dict:
    return json.loads(str(arrays["__meta__"]))


def _with_meta(arrays, meta) -> dict:
    return {**arrays, "__meta__": np.array(json.dumps(meta))}


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


# ---------------------------------------------------------------------------------------------
# 1-3: model files as untrusted input


def test_1_2_a_named_zip_bomb_is_refused_before_it_is_read(model_file, tmp_path):
    """A file of a few hundred kB that declares a 3000 x 3000 network whose deflated arrays are
    zeros (about 70 MB each once expanded): refused from the entry sizes, before any is read."""
    arrays = _arrays(model_file)
    meta = _meta(arrays)
    meta["spec"]["fields"]["hidden"] = meta["params"]["hidden"] = [3000, 3000]
    from probprop.io import _spec_from_json
    from probprop.learners.memory import state_template as _template

    template = jax.tree_util.tree_flatten_with_path(_template(_spec_from_json(meta["spec"], "t")))[0]
    entries = {"__meta__": _npy(np.array(json.dumps(meta))), "x_mean": _npy(arrays["x_mean"]),
               "x_scale": _npy(arrays["x_scale"])}
    for key_path, leaf in template:
        fill = np.ones if "variances" in jax.tree_util.keystr(key_path) else np.zeros
        entries[f"state/{jax.tree_util.keystr(key_path)}"] = _npy(fill(leaf.shape, leaf.dtype))
    bomb = _zip(tmp_path / "bomb.npz", entries, zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 2_000_000
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="zip bomb|declares .* bytes of state but the file holds"):
        load_model(bomb)
    assert time.perf_counter() - start < 5

    # one named entry alone that expands too much (the rest of the file is large enough)
    entries = {name: _npy(a) for name, a in arrays.items()}
    big = np.zeros((1 << 18,))  # 2 MiB of zeros, compressed about 1000 times
    entries["fitted/n_rejected_"] = _npy(big)
    with pytest.raises(ModelFileError, match=f"'fitted/n_rejected_' expands \\d+ times \\(at most {MAX_COMPRESSION_RATIO}"):
        load_model(_zip(tmp_path / "entry.npz", entries, zipfile.ZIP_DEFLATED))


def test_2_an_unused_compressed_entry_is_refused_quickly(model_file, tmp_path):
    entries = {name: _npy(a) for name, a in _arrays(model_file).items()}
    path = tmp_path / "junk.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name + ".npy", data)
        with archive.open("junk.npy", "w", force_zip64=True) as handle:
            handle.write(_npy(header={"descr": "<f8", "fortran_order": False, "shape": (1 << 25,)}))
            for _ in range(256):
                handle.write(bytes(1 << 20))  # 256 MiB of zeros: about 250 kB on disk
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="unexpected entries \\['junk'\\]"):
        load_model(path)
    assert time.perf_counter() - start < 2


def test_2_a_header_claiming_2_to_the_40_elements_is_refused_by_its_header(model_file, tmp_path):
    entries = {name: _npy(a) for name, a in _arrays(model_file).items()}
    entries["x_mean"] = _npy(header={"descr": "<f8", "fortran_order": False, "shape": (1 << 40,)})
    with pytest.raises(ModelFileError, match="x_mean is float64\\[1099511627776\\], expected float64\\[3\\]"):
        load_model(_zip(tmp_path / "m.npz", entries))
    entries["x_mean"] = _npy(header={"descr": "<f8", "fortran_order": False, "shape": (1 << 20, 1 << 20)})
    entries["fitted/rejected_per_epoch_"] = entries.pop("x_mean")
    with pytest.raises(ModelFileError, match="more than this loader accepts|larger than"):
        load_model(_zip(tmp_path / "m2.npz", entries))


def test_2_a_deflated_honest_file_still_loads(fitted, model_file, tmp_path):
    model, X, _ = fitted
    entries = {name: _npy(a) for name, a in _arrays(model_file).items()}
    loaded = load_model(_zip(tmp_path / "deflated.npz", entries, zipfile.ZIP_DEFLATED))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize(
    "change, match",
    [
        ("fitted_predict", "no saved attribute 'predict'"),
        ("fitted_json_n_features", "no saved attribute 'n_features_in_'"),
        ("y_scale_nan", "target standardisation must be finite"),
        ("string_weights", "means\\[0\\] is <U\\d+\\[8, 4\\], expected float64"),
        ("key_shape", "key is uint32\\[3\\], expected uint32\\[2\\]"),
        ("nan_noise", "noise.shape holds non-finite"),
        ("hidden_99", "means\\[0\\] is float64\\[8, 4\\], expected float64\\[99, 4\\]"),
        ("estimator_map", "a PBPSpec in a MAPRegressor's file \\(expected MAPSpec\\)"),
    ],
)
def test_3_tampered_entries_are_refused(model_file, change, match):
    _tamper(model_file, change)
    with pytest.raises(ModelFileError, match=match):
        load_model(model_file)


def _set(record: dict, path: str, value):
    """``record[a][b]... = value`` for ``path`` "a.b..."."""
    *parents, last = path.split(".")
    for key in parents:
        record = record[key]
    record[last] = value


#: Tamperings of a saved PBPRegressor's file: change -> (arrays, meta) -> None, in place.
_TAMPERINGS = {
    "fitted_predict": lambda arrays, meta: arrays.update({"fitted/predict": np.ones(3)}),
    "fitted_json_n_features": lambda arrays, meta: _set(meta, "fitted.n_features_in_", 7),
    "y_scale_nan": lambda arrays, meta: _set(meta, "y_scale", float("nan")),
    "string_weights": lambda arrays, meta: arrays.update({"state/.means[0]": arrays["state/.means[0]"].astype(str)}),
    "key_shape": lambda arrays, meta: arrays.update({"state/.key": np.zeros(3, np.uint32)}),
    "nan_noise": lambda arrays, meta: arrays.update({"state/.noise.shape": np.array(np.nan)}),
    "hidden_99": lambda arrays, meta: (_set(meta, "spec.fields.hidden", [99]), _set(meta, "params.hidden", [99])),
    # another learner's network: it loaded, and failed later
    "estimator_map": lambda arrays, meta: _set(meta, "estimator", "MAPRegressor"),
    # the prior variance is rate / (shape - 1)
    "prior_shape_1": lambda arrays, meta: _set(meta, "spec.fields.prior_shape", 1.0),
    "y_mean_huge": lambda arrays, meta: _set(meta, "y_mean", 10**400),
    "rejected_not_a_list": lambda arrays, meta: _set(meta, "fitted.rejected_per_epoch_", 5),
    "n_rejected_negative": lambda arrays, meta: _set(meta, "fitted.n_rejected_", -1),
}


def _tamper(model_file, change: str) -> None:
    """Rewrite ``model_file`` with one of :data:`_TAMPERINGS` applied."""
    arrays = _arrays(model_file)
    meta = _meta(arrays)
    _TAMPERINGS[change](arrays, meta)
    np.savez(model_file, **_with_meta(arrays, meta))


def _no_traceback(result, code: int = 1, match: str = ""):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert match in result.output, result.output


def test_a_dimension_beyond_every_integer_type_is_refused_cleanly(model_file, tmp_path):
    """A header may declare any Python integer: sizes are computed exactly (they overflowed a
    float before), so the file is refused by its shape, and `probprop info` reports no traceback."""
    entries = {name: _npy(a) for name, a in _arrays(model_file).items()}
    entries["x_scale"] = _npy(header={"descr": "<f8", "fortran_order": False, "shape": (10**400,)})
    path = _zip(tmp_path / "huge.npz", entries)
    with pytest.raises(ModelFileError, match="x_scale is float64\\[1000"):
        load_model(path)
    _no_traceback(CliRunner().invoke(main, ["info", str(path)]), match="standardisation")


def test_declared_compressed_sizes_must_fit_in_the_file(model_file, tmp_path):
    """The compression-ratio guard reads each entry's declared compressed size from the central
    directory; an entry declaring more than the file holds is refused before anything is read."""
    raw = bytearray(_zip(tmp_path / "honest.npz", {n: _npy(a) for n, a in _arrays(model_file).items()}).read_bytes())
    at = raw.rfind(b"PK\x01\x02")  # the last central-directory record: its compressed size at +20
    raw[at + 20:at + 24] = (len(raw) * 10).to_bytes(4, "little")
    (tmp_path / "lying.npz").write_bytes(raw)
    with pytest.raises(ModelFileError, match="declare more compressed bytes than the file holds"):
        load_model(tmp_path / "lying.npz")


def test_a_fitted_entry_of_huge_elements_is_refused_by_its_header(model_file, tmp_path):
    """Fitted arrays are capped in elements; their type (floats of at most 8 bytes) is checked from
    the header too, before a void element of 100 MB is allocated."""
    entries = {name: _npy(a) for name, a in _arrays(model_file).items()}
    entries["fitted/rejected_per_epoch_"] = _npy(header={"descr": "|V100000000", "fortran_order": False, "shape": (1,)})
    with pytest.raises(ModelFileError, match="rejected_per_epoch_ is \\|?V100000000, expected floats"):
        load_model(_zip(tmp_path / "void.npz", entries))


@pytest.mark.parametrize(
    "change, match",
    [
        ("prior_shape_1", "ZeroDivisionError"),
        ("y_mean_huge", "OverflowError"),
        ("rejected_not_a_list", "rejected_per_epoch_ must be a list of non-negative integers"),
        ("n_rejected_negative", "n_rejected_ must be a non-negative integer"),
    ],
)
def test_numbers_a_file_makes_impossible_are_refused(model_file, change, match):
    _tamper(model_file, change)
    with pytest.raises(ModelFileError, match=match):
        load_model(model_file)
    _no_traceback(CliRunner().invoke(main, ["predict", str(model_file), str(model_file)]), match="cannot read the model")


def test_fitted_scalars_in_range_load_and_others_are_refused():
    from probprop.estimators.base import _fitted_value

    # honest values, tau_ at an extreme target scale (tau / y_scale**2) included
    for attr, value in [("tau_", 0.0), ("tau_", float("inf")), ("dropout_", 0.0), ("sigma_v_", np.float64(0.1)),
                        ("learning_rate_", 1e-3), ("n_rejected_", np.int64(3)), ("rejected_per_epoch_", (0, 2))]:
        _fitted_value(attr, value)
    for attr, value in [("tau_", float("nan")), ("dropout_", 1.0), ("sigma_v_", 0.0), ("sigma_v_", float("inf")),
                        ("learning_rate_", 10**400), ("sigma_v_", True), ("n_rejected_", 1.5),
                        ("rejected_per_epoch_", [1, -1])]:
        with pytest.raises(ValueError, match=attr):
            _fitted_value(attr, value)


@pytest.mark.parametrize("estimator, attr", [
    (lambda: TAGIRegressor(hidden=(4,), epochs=2, sigma_v=0.3), "sigma_v_"),
    (lambda: MCDropoutRegressor(hidden=(4,), epochs=2, dropout=0.1, tau=1.0), "dropout_"),
    (lambda: DeepEnsembleRegressor(hidden=(4,), epochs=2, n_members=2, learning_rate=1e-3), "learning_rate_"),
    (lambda: MCDropoutClassifier(hidden=(4,), epochs=2, dropout=0.1), "dropout_"),
    (lambda: DeepEnsembleClassifier(hidden=(4,), epochs=2, n_members=2, learning_rate=1e-3), "learning_rate_"),
])
def test_a_chosen_scalar_must_be_its_spec_value(estimator, attr, tmp_path):
    """The chosen scalars a file keeps beside its spec are copies of spec fields: a file that
    claims another (in range) value is refused, the honest one loads (regressors and classifiers)."""
    X, y = small_problem()
    if "Classifier" in type(estimator()).__name__:
        y = y > np.median(y)
    path = tmp_path / "model.npz"
    estimator().fit(X, y).save(path)
    arrays = _arrays(path)
    meta = _meta(arrays)
    honest = meta["fitted"][attr]
    assert getattr(load_model(path), attr) == honest
    meta["fitted"][attr] = honest * 0.5  # still a valid value on its own
    np.savez(path, **_with_meta(arrays, meta))
    with pytest.raises(ModelFileError, match=f"{attr} .* against the spec's"):
        load_model(path)


@pytest.mark.parametrize("estimator", [
    lambda: PBPRegressor(hidden=(4,), **FAST),
    lambda: TAGIRegressor(hidden=(4,), epochs=2, sigma_v=0.3),
    lambda: PBPEnsembleRegressor(hidden=(4,), epochs=2, n_members=2),
])
def test_n_rejected_must_be_the_state_counters_total(estimator, tmp_path):
    """``n_rejected_`` is the total of the state's rejection counters: a file claiming another
    count (in range) is refused; the honest one loads."""
    X, y = small_problem()
    path = tmp_path / "model.npz"
    estimator().fit(X, y).save(path)
    arrays = _arrays(path)
    meta = _meta(arrays)
    honest = meta["fitted"]["n_rejected_"]
    assert load_model(path).n_rejected_ == honest
    meta["fitted"]["n_rejected_"] = honest + 5
    np.savez(path, **_with_meta(arrays, meta))
    with pytest.raises(ModelFileError, match=f"n_rejected_ {honest + 5} against the {honest} rejected updates"):
        load_model(path)


def test_info_refuses_non_finite_class_labels_and_huge_numbers(tmp_path):
    from probprop import PBPClassifier

    X, y = small_problem()
    path = tmp_path / "clf.npz"
    PBPClassifier(hidden=(4,), **FAST).fit(X, y > np.median(y)).save(path)
    arrays = _arrays(path)
    meta = _meta(arrays)
    assert CliRunner().invoke(main, ["info", "--json", str(path)]).exit_code == 0
    meta["fitted"]["classes_"] = [float("nan"), 0.0]
    np.savez(path, **_with_meta(arrays, meta))
    _no_traceback(CliRunner().invoke(main, ["info", "--json", str(path)]), match="finite numbers")
    with pytest.raises(ModelFileError, match="finite numbers"):  # and loading refuses them as info does
        load_model(path)
    meta["fitted"]["classes_"] = [0, 2**64]  # no NumPy integer holds it: refused by load and info alike
    np.savez(path, **_with_meta(arrays, meta))
    with pytest.raises(ModelFileError, match="of one kind \\(here object\\)"):
        load_model(path)
    _no_traceback(CliRunner().invoke(main, ["info", str(path)]), match="of one kind")
    meta["fitted"]["classes_"] = [0, 2**63]  # beyond int64, within float64: they load
    np.savez(path, **_with_meta(arrays, meta))
    assert load_model(path).classes_[1] == 2**63
    assert CliRunner().invoke(main, ["info", str(path)]).exit_code == 0
    meta["fitted"]["classes_"], meta["y_scale"] = [False, True], 10**400
    np.savez(path, **_with_meta(arrays, meta))
    _no_traceback(CliRunner().invoke(main, ["info", str(path)]), match="target standardisation")


def test_options_that_look_like_numbers_but_are_not(tmp_path):
    from probprop.bench.plan import parse_splits

    data = tmp_path / "d.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [1.0, 2.0, 3.0, 5.0]}).to_csv(data, index=False)
    _no_traceback(CliRunner().invoke(main, ["fit", str(data), "-t", "y", "--hidden", "\u00b2"]), code=2,
                  match="expected positive integers")
    _no_traceback(CliRunner().invoke(main, ["fit", str(data), "-t", "y", "--hidden", "9" * 5000]), code=2,
                  match="expected positive integers")
    for text in ("\u00b2", "\u0663", "\u0660-\u0663"):  # a superscript two, Arabic-Indic three
        with pytest.raises(ValueError, match="bad split spec"):
            parse_splits(text)
    with pytest.raises(ValueError, match="must be in 0..9999"):  # refused before ten billion indices are listed
        parse_splits("0-10000000000")
    assert parse_splits("0-2,7") == [0, 1, 2, 7]


def test_python_integers_beyond_float64_are_clear_errors():
    """NumPy's conversion of 10**400 raises OverflowError, which is not a ValueError."""
    from probprop import PBPClassifier

    X = [[1.0, 2.0], [3.0, 4.0], [5.0, 7.0], [10**400, 1.0]]
    for model, y in ((PBPRegressor(**FAST), [1.0, 2.0, 3.0, 4.0]), (PBPClassifier(**FAST), [0, 1, 0, 1])):
        with pytest.raises(ValueError, match="too large for float64"):
            model.fit(X, y)
    model = PBPRegressor(**FAST).fit(np.array(X[:3]), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="too large for float64"):
        model.predict(X)
    with pytest.raises(ValueError, match="X_var contains a number too large for float64"):
        model.predict_dist(X[:3], X_var=[[10**400, 1], [1, 1], [1, 1]])


def test_bench_report_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "meta.json").write_text("[]")
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    _no_traceback(CliRunner().invoke(main, ["bench", "report", str(tmp_path)]), match="not a JSON object")
    (tmp_path / "meta.json").write_text("{}")
    _no_traceback(CliRunner().invoke(main, ["bench", "report", str(tmp_path)]), match="cannot render a report")
    # a committed run with one record garbled (a TypeError deep in the report: a traceback before)
    meta = json.loads((REPO / "docs/benchmarks/pbp-deep/meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "wall_seconds": None}))
    (tmp_path / "results.csv").write_bytes((REPO / "docs/benchmarks/pbp-deep/results.csv").read_bytes())
    _no_traceback(CliRunner().invoke(main, ["bench", "report", str(tmp_path)]), match="cannot render a report")
    (tmp_path / "meta.json").write_text("{")
    _no_traceback(CliRunner().invoke(main, ["bench", "report", str(tmp_path)]), match="meta.json is not JSON")


# ---------------------------------------------------------------------------------------------
# 4: concurrent saves


def test_4_concurrent_saves_from_two_threads_never_leave_a_bad_file(fitted, tmp_path):
    model, X, _ = fitted
    path = tmp_path / "shared.probprop"
    model.save(path)
    errors = []

    def writer():
        try:
            for _ in range(20):
                save_model(model, path)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    loads = 0
    while any(thread.is_alive() for thread in threads):
        np.testing.assert_array_equal(load_model(path).predict(X[:4]), model.predict(X[:4]))  # never missing or corrupt
        loads += 1
    for thread in threads:
        thread.join()
    assert not errors, errors
    np.testing.assert_array_equal(load_model(path).predict(X), model.predict(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.probprop"]  # no temporary file left


WRITER = """
import sys
from probprop.io import load_model, save_model
model = load_model(sys.argv[1])
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    save_model(model, sys.argv[2])
"""


def test_4_concurrent_saves_from_two_processes_never_leave_a_bad_file(fitted, model_file, tmp_path):
    model, X, _ = fitted
    target = tmp_path / "shared.probprop"
    model.save(target)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(model_file), str(target), "40"], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    while any(p.poll() is None for p in procs):
        np.testing.assert_array_equal(load_model(target).predict(X[:4]), model.predict(X[:4]))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "ready" in out
    np.testing.assert_array_equal(load_model(target).predict(X), model.predict(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "shared.probprop"]


def test_4_saving_onto_a_directory_is_a_clear_error_and_leaves_nothing(fitted, tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory; give a file name"):
        fitted[0].save(tmp_path / "adir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"] and not list((tmp_path / "adir").iterdir())


# ---------------------------------------------------------------------------------------------
# 5: a network that would not fit in memory


def test_5_a_network_too_large_for_memory_is_refused_before_it_is_built(small_data):
    X, y = small_data
    for cls in (PBPRegressor, DVIRegressor, TAGIRegressor):
        start = time.perf_counter()
        with pytest.raises(ValueError, match="hidden sizes \\(100000, 100000\\).*needs about [\\d,.]+ GiB of memory"):
            cls(hidden=(100000, 100000), epochs=1).fit(X, y)
        assert time.perf_counter() - start < 20


def test_5_a_convolutional_network_too_large_for_memory_names_its_feature_maps():
    """A 600 x 600 image, 64 unpooled feature maps, then 1,000 hidden units: ~2e10 weights."""
    from probprop import DeepEnsembleClassifier, MAPClassifier, PBPClassifier

    X = np.random.default_rng(0).normal(size=(4, 600 * 600))
    y = np.array([0, 1, 0, 1])
    for cls in (PBPClassifier, MAPClassifier, DeepEnsembleClassifier):
        start = time.perf_counter()
        with pytest.raises(ValueError, match="convolutions of \\[64\\] feature maps \\(pool sizes \\[1\\]\\) and hidden "
                                             "sizes \\(1000,\\).*GiB of memory.*fewer feature maps"):
            cls(hidden=(1000,), conv=((64, 3, 1),), image_shape=(1, 600, 600), epochs=1).fit(X, y)
        assert time.perf_counter() - start < 20


def test_5_cli_refuses_a_network_too_large_for_memory(tmp_path):
    X, y = small_problem()
    data = tmp_path / "d.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": y}).to_csv(data, index=False)
    result = CliRunner().invoke(main, ["fit", str(data), "-t", "y", "--hidden", "100000,100000", "-q"])
    assert result.exit_code != 0 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot fit" in lines[0] and "100000, 100000" in lines[0] and "GiB" in lines[0]


# ---------------------------------------------------------------------------------------------
# 6: the target's scale is its std


@pytest.mark.parametrize("cls", [TAGIRegressor, MAPRegressor, PBPRegressor])
def test_6_a_target_far_from_zero_is_standardised_by_its_std(cls):
    """y = 1e12 + 50 * signal (exact in float64: the signal is a multiple of 6.25) scores as 50 * signal."""
    X, y = small_problem()
    near, far = 50 * y, 1e12 + 50 * y
    params = {"hidden": (8,), "epochs": 3, "random_state": 0}
    a, b = cls(**params).fit(X, near), cls(**params).fit(X, far)
    assert b.y_scale_ == pytest.approx(np.std(near), rel=1e-9)
    assert b.score(X, far) == pytest.approx(a.score(X, near), rel=1e-6)


def test_6_a_constant_target_is_still_constant_despite_rounding():
    X, _ = small_problem()
    model = PBPRegressor(hidden=(8,), **FAST).fit(X, np.full(len(X), 0.1))  # computed std: about 1.4e-17
    assert model.y_scale_ == 1.0
    mean, std = model.predict(X, return_std=True)
    assert np.allclose(mean, 0.1, atol=0.05) and np.all(std > 1e-3)


# ---------------------------------------------------------------------------------------------
# 7: what cannot be represented


def test_7_inputs_and_targets_that_overflow_are_refused(fitted):
    X, y = small_problem()
    with pytest.raises(ValueError, match="X column\\(s\\) \\[0\\] are too large to standardise"):
        PBPRegressor(epochs=1).fit(X * [1e160, 1, 1], y)
    with pytest.raises(ValueError, match="y is too large to standardise"):
        PBPRegressor(epochs=1).fit(X, y * 1e200)
    model = fitted[0]
    with pytest.raises(ValueError, match="X row\\(s\\) \\[0, 1\\] are too far from the training data"):
        model.predict(np.full((2, 3), 1e200))
    huge = copy.deepcopy(model)  # a model whose moments overflow: never a NaN or inf prediction
    huge.state_ = dataclasses.replace(huge.state_, variances=tuple(v * 1e300 for v in huge.state_.variances))
    with pytest.raises(ValueError, match="predictions for X row\\(s\\) \\[0, 1\\] overflow"):
        huge.predict(np.array([[1.0, 2.0, 3.0], [1e90, -1e90, 1e90]]))


def test_7_a_model_holding_non_finite_values_is_not_saved(fitted, tmp_path):
    model = copy.deepcopy(fitted[0])
    means = list(model.state_.means)
    means[0] = np.full_like(means[0], np.nan)
    model.state_ = dataclasses.replace(model.state_, means=tuple(means))
    with pytest.raises(ValueError, match="cannot save this PBPRegressor: its state.means\\[0\\] .*non-finite"):
        model.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def test_7_cli_fit_on_overflowing_targets_is_one_line_and_saves_nothing(tmp_path):
    X, y = small_problem()
    data = tmp_path / "d.csv"
    pd.DataFrame({"a": X[:, 0], "y": y * 1e200}).to_csv(data, index=False)
    result = CliRunner().invoke(main, ["fit", str(data), "-t", "y", "--epochs", "1", "-q", "-o", str(tmp_path / "m")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0 and "too large to standardise" in result.output
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------------
# 8: Ctrl-C


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery is POSIX")
def test_8_ctrl_c_during_a_cli_fit_exits_130_with_one_line(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.csv"
    pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "y": rng.normal(size=300)}).to_csv(data)
    out = tmp_path / "m.probprop"
    proc = subprocess.Popen([sys.executable, "-m", "probprop.cli", "fit", str(data), "-t", "y", "--epochs", "1000000",
                             "--hidden", "20", "-o", str(out)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        seen = b""
        deadline = time.monotonic() + 120
        while b"epochs" not in seen and time.monotonic() < deadline:  # the progress bar: training has started
            chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
            if not chunk:
                break
            seen += chunk
        assert b"epochs" in seen, seen
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = (seen + stderr).decode(errors="replace")
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.rstrip().endswith("interrupted")
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


_INTERRUPT_WHILE_LOADING = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a parent (pytest-xdist) may ignore SIGINT

class Interrupt:  # a meta-path finder: Ctrl-C arrives while probprop.cli is being imported
    def find_spec(self, name, path=None, target=None):
        if name == "probprop.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["probprop", "--help"]
from {module} import main
main()
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery is POSIX")
def test_8_ctrl_c_while_the_command_line_loads_exits_130_with_one_line():
    """The console script (probprop._entry, also ``python -m probprop``) catches Ctrl-C from its
    first line; importing the command line module directly shows the traceback it prevents."""
    run = lambda module: subprocess.run([sys.executable, "-c", _INTERRUPT_WHILE_LOADING.format(module=module)],  # noqa: E731
                                        capture_output=True, env=_env(), timeout=120)
    proc = run("probprop._entry")
    assert proc.returncode == 130, proc.stderr.decode(errors="replace")[-2000:]
    assert proc.stderr.decode().strip() == "interrupted" and proc.stdout == b""
    bare = run("probprop.cli")
    assert bare.returncode != 130 and b"KeyboardInterrupt" in bare.stderr


def test_the_console_script_and_python_m_probprop_run_the_command_line():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "probprop"]
    assert script.value == "probprop._entry:main"
    proc = subprocess.run([sys.executable, "-m", "probprop", "--version"], capture_output=True, env=_env(), timeout=120)
    assert proc.returncode == 0 and b"probprop" in proc.stdout


# ---------------------------------------------------------------------------------------------
# 9: diverging gradient training


@pytest.mark.parametrize("cls", [MAPRegressor, DVIRegressor])
def test_9_a_diverging_fit_stops_with_an_error_naming_the_learning_rate(cls, small_data):
    X, y = small_data
    model = cls(hidden=(8,), epochs=3, learning_rate=1e6, random_state=0)
    with pytest.raises(DivergedError, match="diverged .*learning_rate=1000000.0; use a smaller learning_rate"):
        model.fit(X, y)
    assert isinstance(DivergedError("x"), (FloatingPointError, ValueError))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        model.predict(X)


@pytest.mark.parametrize("cls, params", [(DeepEnsembleRegressor, {"n_members": 2}),
                                         (MCDropoutRegressor, {"dropout": 0.1, "tau": 1.0, "n_samples": 4})])
def test_9_every_gradient_estimator_checks_its_trained_state(cls, params, small_data, monkeypatch):
    """The check sits in the estimators: a learner whose update returns NaN weights is caught."""
    X, y = small_data
    learner = cls._learner()

    def poisoned(state, *args):
        state = learner.update(state, *args)
        return jax.tree_util.tree_map(lambda a: a * np.nan if np.asarray(a).dtype.kind == "f" else a, state)

    monkeypatch.setattr(cls, "_learner", classmethod(lambda c: learner._replace(update=poisoned)))
    with pytest.raises(DivergedError, match=f"{cls.__name__}: training diverged"):
        cls(hidden=(4,), epochs=1, random_state=0, **params).fit(X, y)


# ---------------------------------------------------------------------------------------------
# 10: NaN levels and bad weights


def test_10_nan_level_and_quantiles_and_bad_sample_weights(fitted, model_file):
    result = CliRunner().invoke(main, ["predict", str(model_file), str(model_file), "--level", "nan"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "strictly between 0 and 1" in result.output
    with pytest.raises(ValueError, match="quantile levels must lie in \\[0, 1\\].*nan"):
        GaussianPrediction(np.zeros(2), 1.0, 1.0).ppf([0.1, np.nan])
    model, X, y = fitted
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        model.score(X, y, sample_weight=-1)
    with pytest.raises(ValueError, match="sample_weight must not be all zero"):
        model.score(X, y, sample_weight=np.zeros(len(y)))
    assert model.score(X, y, sample_weight=np.ones(len(y))) == pytest.approx(model.score(X, y))


# ---------------------------------------------------------------------------------------------
# 11: models without feature names on the command line


def test_11_a_model_without_feature_names_needs_by_position(fitted, model_file, tmp_path):
    _, X, y = fitted
    data = tmp_path / "d.csv"
    pd.DataFrame({"c": X[:, 2], "a": X[:, 0], "b": X[:, 1], "y": y}).to_csv(data, index=False)
    runner = CliRunner()
    for command in (["predict", str(model_file), str(data)], ["evaluate", str(model_file), str(data), "-t", "y"]):
        if command[0] == "predict":
            pd.read_csv(data).drop(columns="y").to_csv(data.with_name("p.csv"), index=False)
            command[2] = str(data.with_name("p.csv"))
        result = runner.invoke(main, command)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "without feature names" in result.output and "--by-position" in result.output
        result = runner.invoke(main, [*command, "--by-position"])
        assert result.exit_code == 0, result.output
        assert "note: the model has no feature names; matching" in result.output
        assert "3 feature column(s) 'c', 'a', 'b' to the model's features by position" in result.output
    assert "--by-position" in runner.invoke(main, ["predict", "--help"]).output


# ---------------------------------------------------------------------------------------------
# 12: drift in partial_fit


def test_12_partial_fit_warns_about_a_batch_far_from_the_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    model = PBPRegressor(hidden=(8,), epochs=3, random_state=0).fit(X, rng.normal(0, 2, 200))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DriftWarning)
        model.partial_fit(X[:20], rng.normal(0, 2, 20))  # the same distribution: no warning
    with pytest.warns(DriftWarning, match="20 rows lies on average .* predictive standard deviations"):
        model.partial_fit(X[:20], np.full(20, 1e6))
    assert issubclass(DriftWarning, UserWarning) and probprop.DriftWarning is DriftWarning
    assert "DriftWarning" in PBPRegressor.partial_fit.__doc__


# ---------------------------------------------------------------------------------------------
# 13: spreadsheet formula injection


def test_13_text_cells_of_output_csv_are_protected(tmp_path):
    X, y = small_problem(n=6)
    train = tmp_path / "t.csv"
    pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "y": y * 10 - 100}).to_csv(train, index=False)
    model = tmp_path / "m.probprop"
    runner = CliRunner()
    assert runner.invoke(main, ["fit", str(train), "-t", "y", "--epochs", "1", "--hidden", "4", "-q",
                                "-o", str(model)]).exit_code == 0
    new = tmp_path / "n.csv"
    ids = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "ok", "\tx"]
    pd.DataFrame({"=id": ids, "x0": X[:, 0], "x1": X[:, 1]}).to_csv(new, index=False)
    out = tmp_path / "p.csv"
    result = runner.invoke(main, ["predict", str(model), str(new), "--index-col", "=id", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("'=id,mean,")
    cells = [line.split(",")[0] for line in lines[1:]]
    assert cells == ['"\'=HYPERLINK(""http://x"")"', "'+1+1", "'-2+3", "'@SUM(A1)", "ok", "'\tx"]
    means = [float(line.rsplit(",", 5)[1]) for line in lines[1:]]  # numbers unquoted, negative ones too
    assert all(m < 0 for m in means)

"""Property-based tests (hypothesis, issue 16): random shapes, scales, dtypes and NaN/inf placements
at the estimators, and random byte-level corruptions of a valid model file at the loader.

The property: either a clear error (ValueError, TypeError, NotFittedError, ModelFileError, with a
message) or finite output of the right shape; never another exception type, never a hang, and never
memory beyond a bound: the peak of the host memory Python and NumPy allocate during an example
(``tracemalloc``: NumPy's arrays, the zip reader's buffers, the JSON parser's objects; not XLA's
own buffers, whose sizes follow from shapes the loader and the estimators check before building
anything) stays under :data:`MEMORY_BOUND`. The
examples are derandomized (the same every run) and their number fixed, so the suite takes about
the same time everywhere (well under a minute on one core).
"""

from __future__ import annotations

import contextlib
import io
import tracemalloc
import warnings
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from probprop import MAPRegressor, PBPRegressor, TAGIRegressor
from probprop.io import ModelFileError, load_model
from probprop.tests.conftest import small_problem

#: The errors a user may get for bad input: probprop's and scikit-learn's (ModelFileError,
#: DivergedError and NotFittedError are ValueErrors).
CLEAR = (ValueError, TypeError, NotFittedError)

COMMON = {"derandomize": True, "database": None, "suppress_health_check": list(HealthCheck),
          "print_blob": False}

#: A few row counts and widths only: each new training shape compiles the PBP epoch once.
ROWS = (2, 7, 16)
WIDTHS = (1, 3)


#: The most host memory one example may allocate at its peak (a valid model file here is a few kB,
#: the data sets a few hundred numbers; the zip bombs and huge declared shapes of issue 16 needed GBs).
MEMORY_BOUND = 64 << 20


@contextlib.contextmanager
def bounded_memory(bound: int = MEMORY_BOUND):
    """Fail if the traced peak allocation inside the block exceeds ``bound`` bytes."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
    assert peak <= bound, f"allocated {peak / 2**20:.1f} MiB at the peak (bound {bound / 2**20:.0f} MiB)"


def _clear(err: BaseException) -> None:
    assert isinstance(err, CLEAR), f"{type(err).__name__}: {err}"
    assert str(err).strip(), f"{type(err).__name__} without a message"


@st.composite
def data_sets(draw):
    n, d = draw(st.sampled_from(ROWS)), draw(st.sampled_from(WIDTHS))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.normal(size=(n, d)) * 10.0 ** draw(st.integers(-300, 300))
    X += draw(st.sampled_from([0.0, 1.0, -1e12, 1e300]))
    y = rng.normal(size=n) * 10.0 ** draw(st.integers(-300, 300)) + draw(st.sampled_from([0.0, 1e12, -1e300]))
    for target in (X, y):
        for _ in range(draw(st.integers(0, 2))):  # NaN / inf placements
            value = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308]))
            target.reshape(-1)[draw(st.integers(0, target.size - 1))] = value
    if draw(st.booleans()):  # a constant column
        X[:, 0] = draw(st.sampled_from([0.0, 5.0, 1e200]))
    with np.errstate(all="ignore"):
        X = X.astype(draw(st.sampled_from([np.float64, np.float32, np.int64, np.float16])))
    return X, y


def _fit_and_predict(model, X, y, test_scale):
    with bounded_memory():
        _fit_and_predict_unbounded(model, X, y, test_scale)


def _fit_and_predict_unbounded(model, X, y, test_scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(X, y)
        except Exception as err:  # noqa: BLE001 - the property is about the type
            _clear(err)
            return
        X_test = np.asarray(X, np.float64)[:3] * test_scale
        try:
            mean, std = model.predict(X_test, return_std=True)
        except Exception as err:  # noqa: BLE001
            _clear(err)
            return
    assert mean.shape == std.shape == (len(X_test),)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)


#: A slow example (a compilation included) is a failure past this: no hangs.
SLOW = timedelta(seconds=60)


@settings(max_examples=40, deadline=SLOW, **COMMON)
@given(data=data_sets(), test_scale=st.sampled_from([1.0, 1e3, 1e60, np.nan]))
def test_pbp_gives_a_clear_error_or_finite_predictions(data, test_scale):
    _fit_and_predict(PBPRegressor(hidden=(4,), epochs=1, random_state=0), *data, test_scale)


@settings(max_examples=12, deadline=SLOW, **COMMON)
@given(data=data_sets(), test_scale=st.sampled_from([1.0, 1e60]),
       make=st.sampled_from([lambda: MAPRegressor(hidden=(4,), epochs=1, batch_size=8, random_state=0),
                             lambda: TAGIRegressor(hidden=(4,), epochs=1, sigma_v=0.3, random_state=0)]))
def test_map_and_tagi_give_a_clear_error_or_finite_predictions(data, test_scale, make):
    _fit_and_predict(make(), *data, test_scale)


@settings(max_examples=25, deadline=SLOW, **COMMON)
@given(rows=st.sampled_from(ROWS), shape=st.sampled_from([(3,), (3, 1), (2, 2), ()]),
       weights=st.sampled_from([None, "negative", "zero", "nan", "ones"]))
def test_score_and_predict_with_odd_shapes_and_weights(rows, shape, weights, fitted_small):
    model, X, y = fitted_small
    Xt = X[:rows]
    yt = y[:rows]
    w = {"negative": -np.ones(rows), "zero": np.zeros(rows), "nan": np.full(rows, np.nan),
         "ones": np.ones(rows), None: None}[weights]
    try:
        value = model.score(Xt, yt, sample_weight=w)
        assert np.isfinite(value)
    except Exception as err:  # noqa: BLE001
        _clear(err)
    try:
        model.predict(np.zeros(shape))
    except Exception as err:  # noqa: BLE001
        _clear(err)


@pytest.fixture(scope="module")
def fitted_small():
    X, y = small_problem()
    return PBPRegressor(hidden=(4,), epochs=2, random_state=0).fit(X, y), X, y


@pytest.fixture(scope="module")
def model_bytes(fitted_small, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    fitted_small[0].save(path)
    return path.read_bytes()


@st.composite
def corruptions(draw, size: int):
    """A list of edits: (kind, position, bytes)."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, size - 1))
        edits.append((kind, position, draw(st.binary(min_size=1, max_size=16))))
    return edits


def _apply(data: bytes, edits) -> bytes:
    data = bytearray(data)
    for kind, position, chunk in edits:
        position = min(position, max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[position] ^= chunk[0] or 1
        elif kind == "overwrite":
            data[position : position + len(chunk)] = chunk
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = chunk
        elif kind == "delete":
            del data[position : position + len(chunk)]
    return bytes(data)


def _regions(data: bytes):
    """Byte offsets worth hitting: zip headers, .npy headers, the metadata, the central directory."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        offsets = [info.header_offset for info in archive.infolist()]
    return sorted({*offsets, *(o + 30 for o in offsets), *(o + 90 for o in offsets), len(data) - 22, len(data) - 60})


def _entries(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


@settings(max_examples=150, deadline=timedelta(seconds=5), **COMMON)
@given(data=st.data())
def test_corrupted_model_files_give_a_model_file_error_or_a_working_model(data, model_bytes, fitted_small, tmp_path):
    """Two kinds of damage: raw bytes of the file (the zip's checksums usually catch it), and the
    bytes of one entry rewritten into a zip with valid checksums (the loader's own checks must)."""
    _, X, _ = fitted_small
    if data.draw(st.booleans(), label="inside an entry, valid checksums"):
        entries = _entries(model_bytes)
        name = data.draw(st.sampled_from(sorted(entries)), label="entry")
        raw = entries[name]
        entries[name] = _apply(raw, data.draw(corruptions(len(raw))))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for entry, content in entries.items():
                archive.writestr(entry, content)
        damaged = buffer.getvalue()
    else:
        edits = data.draw(corruptions(len(model_bytes)))
        if data.draw(st.booleans()):  # aim at the zip structure half of the time
            kind, _, chunk = edits[0]
            edits[0] = (kind, data.draw(st.sampled_from(_regions(model_bytes))) + data.draw(st.integers(0, 40)), chunk)
        damaged = _apply(model_bytes, edits)
    path = tmp_path / "damaged.npz"
    path.write_bytes(damaged)
    with bounded_memory():
        _load_and_predict(path, X)


def _load_and_predict(path, X):
    try:
        model = load_model(path)
    except ModelFileError as err:
        assert str(err).strip()
        event("refused: " + str(err).split(": ", 1)[-1][:30])  # --hypothesis-show-statistics
        return
    except Exception as err:
        raise AssertionError(f"load_model raised {type(err).__name__}: {err}") from err
    try:
        mean, std = model.predict(X[:5], return_std=True)
    except Exception as err:  # noqa: BLE001
        _clear(err)
        return
    event("loaded and predicted")
    assert mean.shape == std.shape == (5,)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))


def test_the_memory_bound_can_fail():
    with pytest.raises(AssertionError, match="MiB at the peak"):
        with bounded_memory(1 << 20):
            np.ones(1 << 20)  # 8 MiB

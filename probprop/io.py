"""On-disk model format: one ``.npz`` archive of arrays plus JSON metadata, no pickle.

Layout (format ``probprop-npz``, version 2), the same for every estimator:

- ``__meta__``: a JSON string: the format name and version, the probprop version, the estimator
  class and its constructor parameters, the learner name and its spec (dataclasses written as
  ``{"class": name, "fields": {...}}``, nested ones likewise), the target's standardisation
  (``y_mean``, ``y_scale``), the feature names, and ``fitted``: the estimator's declared fitted
  values that are not arrays (its ``_saved`` names);
- ``x_mean``, ``x_scale``: the input standardisation;
- ``state/<pytree path>``: every leaf of the learner state;
- ``fitted/<name>``: the declared fitted values that are arrays.

This module sits below the estimators: it converts learner states to and from arrays, keyed by
the learner spec, and knows the estimator classes only through :func:`register_estimator`, which
each estimator class calls on itself. Spec, likelihood and layer classes come from fixed lists
(:data:`probprop.learners.REGISTRY`, :data:`probprop.likelihoods.LIKELIHOODS`,
:data:`probprop.layers.LAYERS`), never from the file.

Loading never unpickles (``allow_pickle=False``) and checks before it allocates: the state's
structure and every leaf's shape and dtype come from the spec through ``jax.eval_shape`` of the
learner's ``init`` (nothing is built), each array's shape and dtype are read from its ``.npy``
header and compared with them before its data are read, entries the format does not name are
refused, and every value is checked (finite, positive scales, parameters consistent with the
spec). Files of version 1 (probprop 0.1.0) are read by the same checks after conversion.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import numbers
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from probprop.learners.memory import check_memory, state_bytes, state_template

FORMAT = "probprop-npz"
VERSION = 2
#: Versions this probprop reads.
READABLE = (1, 2)
#: The metadata record may be at most this long (bytes).
MAX_META_BYTES = 1 << 20
#: No array of a model file may hold more elements than this (2**27: 1 GiB of float64).
MAX_ARRAY_ELEMENTS = 1 << 27
#: A compressed entry may expand at most this many times (probprop writes its files uncompressed;
#: a deflated array of real weights shrinks by a factor of about 1.1, a zip bomb by about 1000).
MAX_COMPRESSION_RATIO = 50
#: Entries smaller than this (bytes, uncompressed) are exempt from the compression-ratio limit.
COMPRESSION_EXEMPT_BYTES = 1 << 20

_ESTIMATORS: dict[str, type] = {}

#: The package whose modules register probprop's own estimators when imported. ``import probprop``
#: no longer imports it (the package root is lazy), so :func:`load_model` without a class imports
#: it by name before looking a file's estimator up: the file format knows where the estimators
#: live, not their code.
BUILTIN_ESTIMATORS = "probprop.estimators"


class ModelFileError(ValueError):
    """The file is not a readable probprop model (missing, truncated, corrupt, foreign or
    inconsistent)."""


def register_estimator(cls):
    """Class decorator: ``cls`` may be saved and named by a model file (by its class name)."""
    _ESTIMATORS[cls.__name__] = cls
    return cls


# --------------------------------------------------------------------------------------
# Specs <-> JSON


def _known_classes() -> dict[str, type]:
    """Every dataclass a spec or an estimator parameter may hold, by name: learner specs,
    likelihoods, layers, the drift model's :class:`~probprop.learners.drift.Forgetting`."""
    from probprop.layers import LAYERS
    from probprop.learners import REGISTRY
    from probprop.learners.drift import Forgetting
    from probprop.likelihoods import LIKELIHOODS

    classes = {learner.spec_class.__name__: learner.spec_class for learner in REGISTRY.values()}
    classes.update({cls.__name__: cls for cls in (*LIKELIHOODS.values(), *LAYERS.values(), Forgetting)})
    return classes


def _spec_classes() -> tuple[type, ...]:
    from probprop.learners import REGISTRY

    return tuple(learner.spec_class for learner in REGISTRY.values())


def _to_json(value):
    """JSON for specs and fitted values: a known dataclass (spec, likelihood, layer) as
    ``{"class": name, "fields": {...}}``, a dict as its items (its keys may be floats), sequences
    as lists, NumPy scalars as Python ones."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in _known_classes():
            raise TypeError(f"cannot save a model holding a {name} (not a probprop spec, likelihood or layer)")
        return {"class": name, "fields": {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {"__items__": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def _spec_from_json(record, path):
    if isinstance(record, list):
        return tuple(_spec_from_json(v, path) for v in record)
    if isinstance(record, dict):
        known = _known_classes()
        name = record.get("class")
        if name not in known or not isinstance(record.get("fields"), dict):
            raise ModelFileError(f"{path}: unknown learner spec {name!r}")
        cls = known[name]
        allowed = {f.name for f in dataclasses.fields(cls)}
        fields = record["fields"]
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ModelFileError(f"{path}: {name} has no field(s) {', '.join(map(str, unknown))}")
        try:
            return cls(**{k: _spec_from_json(v, path) for k, v in fields.items()})
        except (TypeError, ValueError, ArithmeticError) as err:  # ArithmeticError: e.g. 1e999 units
            raise ModelFileError(f"{path}: invalid {name} ({err})") from err
    if record is None or isinstance(record, (bool, int, float, str)):
        return record
    raise ModelFileError(f"{path}: unexpected value in the spec")


# --------------------------------------------------------------------------------------
# Writing


def _non_finite(estimator) -> list[str]:
    """The parts of a fitted estimator (state leaves, standardisation) that hold non-finite numbers."""
    import jax

    bad = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(estimator.state_)[0]:
        key = jax.tree_util.keystr(key_path)
        a = np.asarray(leaf)
        if a.dtype.kind in "fc" and not key.endswith(".loss") and not np.all(np.isfinite(a)):
            bad.append(f"state{key}")
    for name in ("x_mean_", "x_scale_", "y_mean_", "y_scale_"):
        if not np.all(np.isfinite(np.asarray(getattr(estimator, name), np.float64))):
            bad.append(name)
    return bad


def save_model(estimator, path) -> None:
    """Write a fitted probprop estimator to ``path`` (atomically: a unique temporary file in the
    same folder, then a rename; nothing is left behind on error). A model whose state or
    standardisation holds non-finite values (a diverged fit) is refused with a ValueError."""
    import jax

    from probprop._version import __version__
    from probprop.learners import for_spec

    if not hasattr(estimator, "state_"):  # scikit-learn's NotFittedError (imported only then)
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(estimator, "state_")
    spec = estimator.spec_
    name = type(estimator).__name__
    if _ESTIMATORS.get(name) is not type(estimator):
        raise TypeError(f"cannot save a {name}: not a registered probprop estimator")
    bad = _non_finite(estimator)
    if bad:
        raise ValueError(f"cannot save this {name}: its {', '.join(bad[:4])} hold(s) non-finite values "
                         "(the fit diverged or the data overflowed); refit it before saving")
    state = estimator.state_
    params = estimator.get_params()
    if not isinstance(params.get("random_state"), (numbers.Integral, type(None))):
        params["random_state"] = None  # a RandomState object is not data
    arrays = {"x_mean": np.asarray(estimator.x_mean_, np.float64), "x_scale": np.asarray(estimator.x_scale_, np.float64)}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        arrays[f"state/{jax.tree_util.keystr(key_path)}"] = np.asarray(leaf)
    fitted = {}
    for attr in estimator._saved:
        if not hasattr(estimator, attr):
            continue
        value = getattr(estimator, attr)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            arrays[f"fitted/{attr}"] = value
        elif isinstance(value, np.ndarray):  # labels (strings, integers, booleans): JSON, never objects
            fitted[attr] = _to_json(value.tolist())
        else:
            fitted[attr] = _to_json(value)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "probprop_version": __version__,
        "estimator": name,
        "params": {k: _to_json(v) for k, v in params.items()},
        "learner": for_spec(spec).name,
        "spec": _to_json(spec),
        "y_mean": float(estimator.y_mean_),
        "y_scale": float(estimator.y_scale_),
        "feature_names_in": list(map(str, getattr(estimator, "feature_names_in_", []))) or None,
        "fitted": fitted,
    }
    _write(path, meta, arrays)


def _write(path, meta: dict, arrays: dict) -> None:
    arrays = {"__meta__": np.array(json.dumps(meta)), **arrays}
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; give a file name")
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(handle, **arrays)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _untagged(value):
    if isinstance(value, dict):
        items = value.get("__items__")
        if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
            raise ValueError("malformed dict record")
        return {_untagged(k): _untagged(v) for k, v in items}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Reading


class _Archive:
    """The entries of an ``.npz`` archive, read one at a time after their header is checked."""

    def __init__(self, path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise ModelFileError(f"{path} is not a readable probprop model file ({err})") from err
        self.entries = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ModelFileError(f"{path}: unexpected entry {info.filename!r} (not an array)")
            self.entries[info.filename[:-4]] = info
        # The compression-ratio checks trust each entry's declared compressed size: together they
        # must fit in the file, which bounds what all entries can expand to (ratio x file size).
        if sum(info.compress_size for info in infos) > Path(path).stat().st_size:
            self.zip.close()
            raise ModelFileError(f"{path}: its entries declare more compressed bytes than the file holds")
        self.read = set()

    def close(self):
        self.zip.close()

    def names(self):
        return set(self.entries)

    def header(self, name):
        """(shape, dtype) of entry ``name`` from its .npy header, without reading its data."""
        info = self.entries.get(name)
        if info is None:
            raise ModelFileError(f"{self.path}: missing array {name!r}")
        try:
            with self.zip.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f".npy format version {version}")
                shape, fortran, dtype = read_header(handle, max_header_size=10000)
        except Exception as err:  # noqa: BLE001 - any malformed header is the file's fault
            raise ModelFileError(f"{self.path}: corrupt array {name!r} ({err})") from err
        if dtype.hasobject:
            raise ModelFileError(f"{self.path}: array {name!r} holds Python objects; refused")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ModelFileError(f"{self.path}: array {name!r} declares the shape {shape!r}")
        if info.file_size > math.prod(shape) * dtype.itemsize + 4096:  # exact integers: no overflow
            raise ModelFileError(f"{self.path}: entry {name!r} is larger than its header says")
        if info.file_size > COMPRESSION_EXEMPT_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise ModelFileError(
                f"{self.path}: entry {name!r} expands {info.file_size / max(info.compress_size, 1):.0f} times "
                f"(at most {MAX_COMPRESSION_RATIO} is accepted: a zip bomb?)"
            )
        return tuple(shape), dtype

    def array(self, name, shape=None, dtype=None, max_elements: int = MAX_ARRAY_ELEMENTS, floats: bool = False):
        """Entry ``name``, after checking its header against ``shape``/``dtype`` (when given), its
        size against ``max_elements`` (elements, and 8 bytes each) and (``floats``) its type: real
        floats."""
        got_shape, got_dtype = self.header(name)
        if (shape is not None and got_shape != tuple(shape)) or (dtype is not None and got_dtype != np.dtype(dtype)):
            want = f"{np.dtype(dtype) if dtype is not None else got_dtype}{list(shape) if shape is not None else ''}"
            raise ModelFileError(f"{self.path}: {name} is {got_dtype}{list(got_shape)}, expected {want}")
        if floats and got_dtype.kind != "f":
            raise ModelFileError(f"{self.path}: {name} is {got_dtype}, expected floats")
        elements = math.prod(got_shape)
        if elements > max_elements or elements * got_dtype.itemsize > 8 * max_elements:
            raise ModelFileError(f"{self.path}: {name} declares {got_dtype}{list(got_shape)}, more than this loader accepts")
        try:
            with self.zip.open(self.entries[name]) as handle:
                value = np.lib.format.read_array(handle, allow_pickle=False)
        except Exception as err:  # noqa: BLE001
            raise ModelFileError(f"{self.path}: corrupt array {name!r} ({err})") from err
        self.read.add(name)
        return value


def _open(path) -> tuple[Path, _Archive]:
    """The path and its archive, after the checks that need no reading: a file, and a zip."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    if not zipfile.is_zipfile(path):  # truncated, random bytes, a bare .npy array, ...
        raise ModelFileError(f"{path} is not a probprop model file (not a zip/.npz archive; truncated or foreign)")
    return path, _Archive(path)


@contextlib.contextmanager
def _reading(path):
    """``(path, archive)`` of a model file (:func:`_open`), closed on exit; any error below that
    is not already a :class:`ModelFileError` becomes one naming the file."""
    path, archive = _open(path)
    try:
        yield path, archive
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RecursionError, ArithmeticError) as err:
        raise ModelFileError(f"{path}: incomplete or inconsistent model file ({err!r})") from err
    finally:
        archive.close()


def load_model(path, cls=None):
    """Read a model file; ``cls`` (an estimator class) insists on that class, ``None`` returns
    whichever probprop estimator the file holds."""
    import jax

    with _reading(path) as (path, archive), jax.enable_x64(True):
        return _load(archive, path, cls)


def read_metadata(path):
    """What a model file says about itself, without reading its arrays' data or building the
    model (``probprop info``): ``(cls, meta, headers)``, the registered estimator class the file
    names, its metadata record (a JSON object) and the ``(shape, dtype)`` of every other array,
    from its ``.npy`` header.

    The checks are those :func:`load_model` makes before it reads any data: a zip archive of
    ``.npy`` entries only, a metadata record that is a JSON string of at most
    :data:`MAX_META_BYTES` naming this format, a readable version and a registered estimator,
    and every array header well-formed (no Python objects, sizes consistent, no zip bomb).
    The record's values are not checked against each other or the arrays (only
    :func:`load_model` does that): a caller using them must check their types. Raises
    FileNotFoundError or :class:`ModelFileError`."""
    with _reading(path) as (path, archive):
        meta = _metadata(archive, path)
        cls = _named_class(meta, path)
        headers = {entry: archive.header(entry) for entry in sorted(archive.names() - {"__meta__"})}
        return cls, meta, headers


def _metadata(archive: _Archive, path) -> dict:
    """The file's metadata record, checked to be this format at a readable version (the first
    checks of every read, before any array's data)."""
    if "__meta__" not in archive.names():
        raise ModelFileError(f"{path} is not a probprop model file (no metadata record)")
    shape, dtype = archive.header("__meta__")
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_META_BYTES:
        raise ModelFileError(f"{path}: the metadata record is not a JSON string of at most {MAX_META_BYTES} bytes")
    try:
        meta = json.loads(str(archive.array("__meta__")))
    except (json.JSONDecodeError, RecursionError) as err:
        raise ModelFileError(f"{path}: corrupt metadata ({type(err).__name__})") from err
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path} is not a probprop model file (metadata is not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a probprop model file (format {meta.get('format')!r})")
    if meta.get("version") not in READABLE:
        raise ModelFileError(
            f"{path} has format version {meta.get('version')!r}; this probprop reads versions {list(READABLE)}"
        )
    return meta


def _named_class(meta: dict, path) -> type:
    """The registered estimator class the file names (the built-in ones imported by name first)."""
    name = meta.get("estimator")
    if not isinstance(name, str):
        raise ModelFileError(f"{path} holds an unknown estimator {name!r}")
    if name not in _ESTIMATORS:
        importlib.import_module(BUILTIN_ESTIMATORS)
    if name not in _ESTIMATORS:
        raise ModelFileError(f"{path} holds an unknown estimator {name!r}")
    return _ESTIMATORS[name]


def _load(archive: _Archive, path, cls):
    meta = _metadata(archive, path)
    name = meta.get("estimator")
    if cls is None:
        cls = _named_class(meta, path)
    if name != cls.__name__:
        raise ModelFileError(f"{path} holds a {name}, not a {cls.__name__}")
    if _ESTIMATORS.get(cls.__name__) is not cls:
        raise ModelFileError(f"{cls.__name__} is not a registered probprop estimator")
    if meta["version"] == 1:
        spec, state, fitted = _read_v1(archive, meta, cls, path)
        _check_spec_class(spec, cls, path)
    else:
        spec = _spec_from_json(meta.get("spec"), path)
        _check_spec_class(spec, cls, path)  # before any array of the state is read
        state = _read_state(archive, spec, "state/", path)
        fitted = _read_fitted(archive, meta.get("fitted") or {}, cls, path)
    unexpected = archive.names() - archive.read - {"x_mean", "x_scale"}
    if unexpected:
        raise ModelFileError(f"{path}: unexpected entries {sorted(unexpected)[:5]}")
    return _estimator(cls, meta, spec, state, fitted, archive, path)


def _check_spec_class(spec, cls, path) -> None:
    """The spec must be the estimator's own learner's (a PBP network in a MAPClassifier's file is
    refused, as is anything that is not a learner spec)."""
    expected = cls._learner().spec_class
    if type(spec) is not expected:
        if not any(type(spec) is known for known in _spec_classes()):
            raise ModelFileError(f"{path}: unknown learner spec {type(spec).__name__ if spec is not None else None}")
        raise ModelFileError(f"{path}: a {type(spec).__name__} in a {cls.__name__}'s file (expected {expected.__name__})")


def _read_state(archive: _Archive, spec, prefix: str, path):
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(state_template(spec))
    total = state_bytes(spec)
    stored = sum(info.compress_size for info in archive.entries.values())  # bytes really in the file
    if total > MAX_COMPRESSION_RATIO * stored + COMPRESSION_EXEMPT_BYTES:
        raise ModelFileError(f"{path}: the spec declares {total} bytes of state but the file holds {stored}")
    try:
        check_memory(spec, factor=1)
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from err
    filled = []
    for key_path, leaf in leaves:
        key = jax.tree_util.keystr(key_path)
        a = archive.array(f"{prefix}{key}", leaf.shape, leaf.dtype)
        _check_leaf(key, a, path)
        filled.append(a)
    return jax.tree_util.tree_unflatten(treedef, filled)


def _check_leaf(key: str, a: np.ndarray, path) -> None:
    if a.dtype.kind == "f" and not key.endswith(".loss") and not np.all(np.isfinite(a)):
        raise ModelFileError(f"{path}: {key} holds non-finite values")
    if "variances" in key and np.any(a <= 0):
        raise ModelFileError(f"{path}: {key} holds non-positive variances")


def _read_fitted(archive: _Archive, fitted: dict, cls, path) -> dict:
    if not isinstance(fitted, dict):
        raise ModelFileError(f"{path}: malformed fitted record")
    out = {attr: _untagged(value) for attr, value in fitted.items()}
    for entry in sorted(archive.names()):
        if entry.startswith("fitted/"):
            attr = entry.split("/", 1)[1]
            if attr not in cls._saved:  # refused before it is read
                raise ModelFileError(f"{path}: {cls.__name__} has no saved attribute {attr!r}")
            out[attr] = archive.array(entry, max_elements=1 << 16, floats=True)
    return out


def _estimator(cls, meta: dict, spec, state, fitted: dict, archive: _Archive, path):
    """The estimator, built by its class's ``_restore`` hook from checked parts."""
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ModelFileError(f"{path}: malformed estimator parameters")
    params = {k: tuple(_untagged(v)) if isinstance(v, list)
              else _spec_from_json(v, path) if isinstance(v, dict) and "class" in v else _untagged(v)
              for k, v in params.items()}
    n_in = int(spec.n_in)
    x_mean = archive.array("x_mean", (n_in,), np.float64)
    x_scale = archive.array("x_scale", (n_in,), np.float64)
    y_mean, y_scale = meta.get("y_mean"), meta.get("y_scale")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (y_mean, y_scale)):
        raise ModelFileError(f"{path}: the target standardisation must be finite with a positive scale")
    names = meta.get("feature_names_in")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"{path}: feature names must be a list of strings")
    try:
        return cls._restore(params, spec, state, (x_mean, x_scale, float(y_mean), float(y_scale)), names, fitted)
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from err


# --------------------------------------------------------------------------------------
# Version 1 (probprop 0.1.0)


def _read_v1(archive: _Archive, meta: dict, cls, path):
    """Spec, state and fitted values of a version-1 file, in the version-2 form."""
    from probprop.learners import pbp, pbp_ensemble
    from probprop.likelihoods import Gamma

    fitted_json = dict(meta.get("fitted") or {})
    if meta.get("estimator") == "PBPRegressor":  # the PBP-specific layout of 0.1.0
        spec = _spec_from_json({"class": "PBPSpec", "fields": meta.get("spec")}, path)
        shapes = spec.weight_shapes

        def layers(prefix, dtype):
            return tuple(archive.array(f"{prefix}_{i}", s, dtype) for i, s in enumerate(shapes))

        dtype = np.dtype(spec.dtype)
        state = pbp.PBPState(
            means=layers("means", dtype),
            variances=layers("variances", dtype),
            noise=Gamma(*archive.array("noise", (2,), np.float64)),
            prior=Gamma(*archive.array("prior", (2,), np.float64)),
            sites=pbp.PriorSites(*(layers(f"site_{n}", np.float64) for n in ("natmean", "precision", "shape", "rate"))),
            rejections=layers("rejections", np.int32),
            noise_rejections=archive.array("noise_rejections", (), np.int64),
            key=archive.array("key", (2,), np.uint32),
            spec=spec,
        )
        for i, a in enumerate(state.means + state.variances):
            _check_leaf(f".{'variances' if i >= len(shapes) else 'means'}[{i % len(shapes)}]", a, path)
        fitted = {"n_rejected_": int(meta["n_rejected"]), "rejected_per_epoch_": list(meta["rejected_per_epoch"])}
        return spec, state, fitted
    specs = meta.get("specs")
    if not isinstance(specs, list) or not specs:
        raise ModelFileError(f"{path}: no learner state in the file")
    members_rejected = fitted_json.pop("members_rejected_per_epoch", None)
    states = []
    for i, record in enumerate(specs):
        spec = _spec_from_json(record, path)
        states.append(_read_state(archive, spec, f"state{i}/", path))
    if members_rejected is not None:  # PBPEnsembleRegressor: members stacked into one state
        spec = pbp_ensemble.PBPEnsembleSpec(member=states[0].spec, n_members=len(states))
        fitted = {k: _untagged(v) for k, v in fitted_json.items() if k in cls._saved}
        fitted["rejected_per_epoch_"] = [int(sum(c)) for c in zip(*members_rejected)]
        return spec, pbp_ensemble.stack(states), fitted
    if len(states) != 1:
        raise ModelFileError(f"{path}: {len(states)} learner states for a {meta['estimator']}")
    fitted = {}
    for attr, value in fitted_json.items():
        if attr in cls._saved:
            fitted[attr] = _untagged(value)
    for entry in archive.names():
        if entry.startswith("fitted/"):
            attr = entry.split("/", 1)[1]
            a = archive.array(entry, max_elements=1 << 16, floats=attr in cls._saved)
            if attr in cls._saved:  # others were read and ignored by probprop 0.1.0 too
                fitted[attr] = a
    return states[0].spec, states[0], fitted

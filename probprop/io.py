"""On-disk model format: one ``.npz`` archive of arrays plus JSON metadata, no pickle.

Layout (format ``probprop-npz``, version 1):

- ``__meta__``: a JSON string with the format name and version, the probprop version, the
  estimator class and constructor parameters, the learner spec, and the standardisation;
- ``means_<l>``, ``variances_<l>``, ``site_natmean_<l>``, ``site_precision_<l>``,
  ``site_shape_<l>``, ``site_rate_<l>``, ``rejections_<l>`` per layer; ``noise``, ``prior``
  (shape, rate); ``noise_rejections``, ``key``; ``x_mean``, ``x_scale``.

The other estimators (TAGI, DVI, MAP, deep ensemble, MC dropout, PBP ensemble) store the
leaves of their learner state(s) under ``state<i>/<pytree path>``, their spec(s) in the
metadata, and array-valued fitted attributes under ``fitted/<name>``. Loading rebuilds an empty
state of the same spec with the learner's ``init`` and fills its leaves in, checking every
shape and dtype; spec classes come from a fixed list, never from the file.

Loading uses ``numpy.load(allow_pickle=False)``: a file can carry data, never code.
"""

from __future__ import annotations

import json
import numbers
import os
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "probprop-npz"
VERSION = 1


class ModelFileError(ValueError):
    """The file is not a readable probprop model (missing, truncated, corrupt or foreign)."""


def save_model(estimator, path) -> None:
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "state_")
    if type(estimator).__name__ != "PBPRegressor":
        return _write(path, *_generic_record(estimator))
    return _write(path, *_pbp_record(estimator))


def _write(path, meta: dict, arrays: dict) -> None:
    arrays = {"__meta__": np.array(json.dumps(meta)), **arrays}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:  # np.savez would append ".npz" to a bare name
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def _header(estimator) -> dict:
    from probprop import __version__

    params = estimator.get_params()
    if not isinstance(params.get("random_state"), (numbers.Integral, type(None))):
        params["random_state"] = None  # a RandomState object is not data
    return {
        "format": FORMAT,
        "version": VERSION,
        "probprop_version": __version__,
        "estimator": type(estimator).__name__,
        "params": _jsonable(params),
        "y_mean": estimator.y_mean_,
        "y_scale": estimator.y_scale_,
        "feature_names_in": list(map(str, getattr(estimator, "feature_names_in_", []))) or None,
    }


def _pbp_record(estimator) -> tuple[dict, dict]:
    state = estimator.state_
    spec = state.spec
    meta = {
        **_header(estimator),
        "spec": _jsonable(spec.__dict__),
        "n_rejected": estimator.n_rejected_,
        "rejected_per_epoch": list(map(int, estimator.rejected_per_epoch_)),
    }
    arrays = {
        "noise": np.array([state.noise.shape, state.noise.rate], np.float64),
        "prior": np.array([state.prior.shape, state.prior.rate], np.float64),
        "noise_rejections": np.asarray(state.noise_rejections),
        "key": np.asarray(state.key),
        "x_mean": estimator.x_mean_,
        "x_scale": estimator.x_scale_,
    }
    for layer in range(len(state.means)):
        arrays[f"means_{layer}"] = np.asarray(state.means[layer])
        arrays[f"variances_{layer}"] = np.asarray(state.variances[layer])
        arrays[f"rejections_{layer}"] = np.asarray(state.rejections[layer])
        for name in ("natmean", "precision", "shape", "rate"):
            arrays[f"site_{name}_{layer}"] = np.asarray(getattr(state.sites, name)[layer])
    return meta, arrays


def load_model(path, cls=None):
    """Read a model file; ``cls`` (an estimator class) insists on that class, ``None`` returns
    whichever probprop estimator the file holds."""
    import jax.numpy as jnp

    from probprop.learners.pbp import Gamma, PBPSpec, PBPState, PriorSites

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    if not zipfile.is_zipfile(path):  # truncated, random bytes, a bare .npy array, ...
        raise ModelFileError(f"{path} is not a probprop model file (not a zip/.npz archive; truncated or foreign)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        raise ModelFileError(f"{path} is not a readable probprop model file ({err})") from err
    if "__meta__" not in arrays:
        raise ModelFileError(f"{path} is not a probprop model file (no metadata record)")
    try:
        meta = json.loads(str(arrays["__meta__"]))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: corrupt metadata ({err})") from err
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path} is not a probprop model file (metadata is not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a probprop model file (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ModelFileError(
            f"{path} has format version {meta.get('version')!r}; this probprop reads version {VERSION}"
        )
    if cls is None:  # any probprop estimator, named by the file (from a fixed list)
        import probprop.estimators as estimators

        names = ("PBPRegressor", "PBPEnsembleRegressor", "TAGIRegressor", "DVIRegressor", "MAPRegressor",
                 "DeepEnsembleRegressor", "MCDropoutRegressor")
        if meta.get("estimator") not in names:
            raise ModelFileError(f"{path} holds an unknown estimator {meta.get('estimator')!r}")
        cls = getattr(estimators, meta["estimator"])
    if meta.get("estimator") != cls.__name__:
        raise ModelFileError(f"{path} holds a {meta.get('estimator')}, not a {cls.__name__}")
    if cls.__name__ != "PBPRegressor":
        try:
            return _generic_estimator(cls, meta, arrays, path)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ModelFileError(f"{path}: incomplete or inconsistent model file ({err!r})") from err
    try:
        spec_fields = dict(meta["spec"])
        spec_fields["hidden"] = tuple(spec_fields["hidden"])
        spec = PBPSpec(**spec_fields)
        n_layers = len(spec.weight_shapes)
        dtype = jnp.dtype(spec.dtype)

        def layer_arrays(prefix, as_dtype):
            out = []
            for layer, shape in enumerate(spec.weight_shapes):
                a = arrays[f"{prefix}_{layer}"]
                if a.shape != shape:
                    raise ModelFileError(f"{path}: {prefix}_{layer} has shape {a.shape}, expected {shape}")
                out.append(jnp.asarray(a, as_dtype))
            return tuple(out)

        state = PBPState(
            means=layer_arrays("means", dtype),
            variances=layer_arrays("variances", dtype),
            noise=Gamma(*map(jnp.asarray, arrays["noise"].astype(np.float64))),
            prior=Gamma(*map(jnp.asarray, arrays["prior"].astype(np.float64))),
            sites=PriorSites(
                *(layer_arrays(f"site_{name}", jnp.float64) for name in ("natmean", "precision", "shape", "rate"))
            ),
            rejections=layer_arrays("rejections", jnp.int32),
            noise_rejections=jnp.asarray(arrays["noise_rejections"]),
            key=jnp.asarray(arrays["key"]),
            spec=spec,
        )
        params = dict(meta["params"])
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        estimator = cls(**params)
        # unknown activation / dtype / hidden in the metadata must fail here, not at predict time
        hidden = estimator._validated_params()["hidden"]
        if (hidden, estimator.activation, estimator.dtype) != (spec.hidden, spec.activation, spec.dtype):
            raise ModelFileError(f"{path}: the estimator parameters and the network spec disagree")
        x_mean, x_scale = arrays["x_mean"], arrays["x_scale"]
        if x_mean.shape != (spec.n_in,) or x_scale.shape != (spec.n_in,):
            raise ModelFileError(f"{path}: standardisation arrays do not match {spec.n_in} features")
        estimator.x_mean_, estimator.x_scale_ = x_mean, x_scale
        estimator.y_mean_, estimator.y_scale_ = float(meta["y_mean"]), float(meta["y_scale"])
        estimator.n_features_in_ = spec.n_in
        if meta.get("feature_names_in"):
            estimator.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        estimator.n_rejected_ = int(meta["n_rejected"])
        estimator.rejected_per_epoch_ = list(meta["rejected_per_epoch"])
        estimator.state_ = state
        del n_layers
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: incomplete or inconsistent model file ({err!r})") from err
    return estimator


# --------------------------------------------------------------------------------------
# The generic layout (every estimator but PBPRegressor)

#: Fitted attributes rebuilt by the loader rather than stored.
_REBUILT = {"state_", "spec_", "members_", "x_mean_", "x_scale_", "y_mean_", "y_scale_", "n_features_in_",
            "feature_names_in_"}


def _learners() -> dict:
    """Spec class name -> (spec class, the learner's ``init``): the only classes a file may name."""
    from probprop.learners import dvi, ensemble, mapnet, mcdropout, pbp, tagi

    modules = {"PBPSpec": pbp, "TAGISpec": tagi, "DVISpec": dvi, "MAPSpec": mapnet, "EnsembleSpec": ensemble,
               "MCDropoutSpec": mcdropout}
    return {name: (getattr(module, name), module.init) for name, module in modules.items()}


def _states(estimator) -> tuple:
    state = estimator.state_
    return (state,) if hasattr(state, "spec") else tuple(state)


def _generic_record(estimator) -> tuple[dict, dict]:
    import jax

    states = _states(estimator)
    known = _learners()
    arrays = {"x_mean": np.asarray(estimator.x_mean_), "x_scale": np.asarray(estimator.x_scale_)}
    specs = []
    for i, state in enumerate(states):
        name = type(state.spec).__name__
        if name not in known:
            raise TypeError(f"cannot save a state with spec {name}")
        specs.append({"class": name, "fields": _jsonable(state.spec.__dict__)})
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
            arrays[f"state{i}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    fitted = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name in _REBUILT:
            continue
        if isinstance(value, np.ndarray):
            arrays[f"fitted/{name}"] = value
        else:
            fitted[name] = _tagged(value)
    members = getattr(estimator, "members_", None)
    if members is not None:
        fitted["members_rejected_per_epoch"] = [list(map(int, m.rejected_per_epoch_)) for m in members]
    return {**_header(estimator), "specs": specs, "fitted": fitted}, arrays


def _tagged(value):
    """JSON for plain fitted values; a dict is stored as its items (its keys may be floats)."""
    if isinstance(value, dict):
        return {"__items__": [[_tagged(k), _tagged(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_tagged(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a fitted value of type {type(value).__name__}")


def _untagged(value):
    if isinstance(value, dict):
        return {_untagged(k): _untagged(v) for k, v in value["__items__"]}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


def _spec_from(record: dict, path):
    known = _learners()
    name = record.get("class")
    if name not in known:
        raise ModelFileError(f"{path}: unknown learner spec {name!r}")
    spec_cls, init = known[name]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(record["fields"]).items()}
    return spec_cls(**fields), init


def _generic_estimator(cls, meta: dict, arrays: dict, path):
    import jax
    import jax.numpy as jnp

    specs = meta["specs"]
    if not isinstance(specs, list) or not specs:
        raise ModelFileError(f"{path}: no learner state in the file")
    states = []
    for i, record in enumerate(specs):
        spec, init = _spec_from(record, path)
        template = init(jax.random.PRNGKey(0), spec)  # an empty state of the same structure
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
        filled = []
        for key_path, leaf in leaves:
            key = f"state{i}/{jax.tree_util.keystr(key_path)}"
            if key not in arrays:
                raise ModelFileError(f"{path}: missing array {key!r}")
            a = arrays[key]
            if a.shape != leaf.shape or a.dtype != leaf.dtype:
                raise ModelFileError(f"{path}: {key} is {a.dtype}{list(a.shape)}, expected {leaf.dtype}{list(leaf.shape)}")
            filled.append(jnp.asarray(a))
        states.append(jax.tree_util.tree_unflatten(treedef, filled))
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(meta["params"]).items()}
    estimator = cls(**params)
    n_in = states[0].spec.n_in
    x_mean, x_scale = arrays["x_mean"], arrays["x_scale"]
    if x_mean.shape != (n_in,) or x_scale.shape != (n_in,):
        raise ModelFileError(f"{path}: standardisation arrays do not match {n_in} features")
    estimator.x_mean_, estimator.x_scale_ = x_mean, x_scale
    estimator.y_mean_, estimator.y_scale_ = float(meta["y_mean"]), float(meta["y_scale"])
    estimator.n_features_in_ = n_in
    if meta.get("feature_names_in"):
        estimator.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
    fitted = dict(meta.get("fitted") or {})
    members_rejected = fitted.pop("members_rejected_per_epoch", None)
    for name, value in fitted.items():
        if not (name.endswith("_") and name.isidentifier()):
            raise ModelFileError(f"{path}: bad fitted attribute name {name!r}")
        setattr(estimator, name, _untagged(value))
    for name in arrays:
        if name.startswith("fitted/"):
            setattr(estimator, name.split("/", 1)[1], arrays[name])
    if hasattr(cls, "_learner_module"):
        estimator.spec_ = states[0].spec
    if members_rejected is not None:  # PBPEnsembleRegressor: members are PBPRegressors
        from probprop.estimators import PBPRegressor

        estimator.members_ = []
        for state, rejected in zip(states, members_rejected, strict=True):
            member = PBPRegressor(hidden=estimator.hidden, epochs=estimator.epochs, activation=estimator.activation,
                                  dtype=estimator.dtype, constant_tol=estimator.constant_tol)
            member.x_mean_, member.x_scale_ = estimator.x_mean_, estimator.x_scale_
            member.y_mean_, member.y_scale_ = estimator.y_mean_, estimator.y_scale_
            member.n_features_in_, member.state_ = n_in, state
            member.rejected_per_epoch_, member.n_rejected_ = list(rejected), int(state.rejected)
            estimator.members_.append(member)
    if members_rejected is None and len(states) != 1:
        raise ModelFileError(f"{path}: {len(states)} learner states for a {cls.__name__}")
    estimator.state_ = tuple(states) if members_rejected is not None else states[0]
    return estimator


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj

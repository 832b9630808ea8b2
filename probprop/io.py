"""On-disk model format: one ``.npz`` archive of arrays plus JSON metadata, no pickle.

Layout (format ``probprop-npz``, version 1):

- ``__meta__``: a JSON string with the format name and version, the probprop version, the
  estimator class and constructor parameters, the learner spec, and the standardisation;
- ``means_<l>``, ``variances_<l>``, ``site_natmean_<l>``, ``site_precision_<l>``,
  ``site_shape_<l>``, ``site_rate_<l>``, ``rejections_<l>`` per layer; ``noise``, ``prior``
  (shape, rate); ``noise_rejections``, ``key``; ``x_mean``, ``x_scale``.

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
    from probprop import __version__
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "state_")
    state = estimator.state_
    spec = state.spec
    params = estimator.get_params()
    if not isinstance(params.get("random_state"), (numbers.Integral, type(None))):
        params["random_state"] = None  # a RandomState object is not data
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "probprop_version": __version__,
        "estimator": type(estimator).__name__,
        "params": _jsonable(params),
        "spec": _jsonable(spec.__dict__),
        "y_mean": estimator.y_mean_,
        "y_scale": estimator.y_scale_,
        "n_rejected": estimator.n_rejected_,
        "rejected_per_epoch": list(map(int, estimator.rejected_per_epoch_)),
        "feature_names_in": list(map(str, getattr(estimator, "feature_names_in_", []))) or None,
    }
    arrays = {
        "__meta__": np.array(json.dumps(meta)),
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
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:  # np.savez would append ".npz" to a bare name
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def load_model(path, cls=None):
    import jax.numpy as jnp

    from probprop.estimators import PBPRegressor
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
    cls = cls or PBPRegressor
    if meta.get("estimator") != cls.__name__:
        raise ModelFileError(f"{path} holds a {meta.get('estimator')}, not a {cls.__name__}")
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


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj

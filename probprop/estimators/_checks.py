"""Validation of the estimators' hyperparameters: one check per kind of value."""

from __future__ import annotations

import math
import numbers

import numpy as np

from probprop.moments import ACTIVATIONS

DTYPES = ("float64", "float32")


def clearer(err: ValueError) -> ValueError:
    """Name the problem for the commonest input mistakes; keep scikit-learn's text otherwise."""
    text = str(err)
    if "could not convert" in text or "Unable to convert" in text or "argument must be" in text:
        return ValueError(f"Input contains non-numeric values: {text}")
    return err


def candidates(name: str, value, default: tuple[float, ...], upper: float = np.inf) -> tuple[float, ...]:
    """A hyperparameter given as ``"select"`` (``default``, a grid to search), one number, or a
    sequence of numbers (a grid), each in (0, upper); one value means no search."""
    if isinstance(value, str):
        if value != "select":
            raise ValueError(f"{name} must be 'select', a number or a sequence of numbers, got {value!r}")
        return default
    values = (value,) if isinstance(value, numbers.Real) else value
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be 'select', a number or a sequence of numbers, got {value!r}") from None
    ok = [isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v < upper for v in values]
    if not values or not all(ok):
        bound = f"in (0, {upper:g})" if np.isfinite(upper) else "positive"
        raise ValueError(f"{name} values must be {bound}, got {value!r}")
    return tuple(float(v) for v in values)


def positive_int(name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def finite_number(value) -> float | None:
    """``value`` as a float when it is a real number (not a bool) that float64 holds finitely,
    else None: the one test of the numbers users and model files give (a Python int may be of any
    size: 10**400 is None, not an OverflowError)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        x = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return x if math.isfinite(x) else None


def positive_float(name: str, value) -> float:
    x = finite_number(value)
    if x is None or x <= 0:
        raise ValueError(f"{name} must be a positive float, got {repr(value)[:40]}")
    return x


def class_labels(labels) -> np.ndarray:
    """A classifier's labels as a model file holds them (``classes_``), checked: at least two,
    distinct, each a string, a boolean or a finite number, and together an array NumPy holds
    without objects (integers beyond 64 bits are not). Raises ValueError naming the problem."""
    if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) < 2:
        raise ValueError("a classifier must name its classes (at least 2)")
    if not all(isinstance(v, (str, bool, np.str_, np.bool_)) or finite_number(v) is not None for v in labels):
        raise ValueError("class labels must be strings, booleans or finite numbers")
    array = np.asarray(labels)
    if array.dtype.kind not in "biufU":
        raise ValueError(f"class labels must be strings, booleans or finite numbers of one kind (here {array.dtype})")
    if len(np.unique(array)) != len(array):
        raise ValueError("the class labels are repeated")
    return array


def boolean(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def activation_and_dtype(activation, dtype) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")


def hidden_sizes(hidden) -> tuple[int, ...]:
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        hidden = tuple(hidden)
    except TypeError:
        raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}") from None
    if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise ValueError(f"hidden must be a tuple of positive ints (e.g. (50,) or ()), got {hidden!r}")
    return tuple(int(h) for h in hidden)


def inference(value) -> str:
    """PBP's ``inference``: one of :data:`probprop.learners.pbp.INFERENCE`."""
    from probprop.learners.pbp import INFERENCE

    if not isinstance(value, str) or value not in INFERENCE:
        raise ValueError(f"inference must be one of {list(INFERENCE)}, got {value!r}")
    return value


def constant_tol(value) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1):
        raise ValueError(f"constant_tol must be a float in [0, 1), got {value!r}")
    return float(value)


def conv_layers(conv) -> tuple[tuple[int, int, int], ...]:
    """``conv``: a sequence of ``(channels, kernel, pool)`` triples of positive ints (pool 1: none)."""
    message = f"conv must be a sequence of (channels, kernel, pool) triples of positive ints, e.g. ((16, 5, 2),), got {conv!r}"
    try:
        layers = tuple(tuple(layer) for layer in conv)
    except TypeError:
        raise ValueError(message) from None
    for layer in layers:
        if len(layer) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in layer):
            raise ValueError(message)
    return tuple(tuple(int(v) for v in layer) for layer in layers)


def image_shape(shape, n_features: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images the flat rows hold: ``shape`` as (C, H, W) or (H, W), or None for
    one square channel; its size must be ``n_features``."""
    if shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(f"{n_features} features are not a square image; give image_shape=(channels, height, width)")
        return (1, side, side)
    shape = image_shape_form(shape)
    if math.prod(shape) != n_features:
        raise ValueError(f"image_shape {shape} holds {math.prod(shape)} values, but X has {n_features} features")
    return shape


def image_shape_form(shape) -> tuple[int, int, int] | None:
    """``shape`` as ``(C, H, W)`` (from (C, H, W) or (H, W) of positive ints), None as None: the
    checks that need no data (an estimator without convolutions checks this much of it)."""
    if shape is None:
        return None
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"image_shape must be (channels, height, width) or (height, width), got {shape!r}") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in shape):
        raise ValueError(f"image_shape must be (channels, height, width) or (height, width) of positive ints, got {shape!r}")
    return tuple(int(v) for v in shape)

"""Shared input checks for the predictive-distribution metrics and plots.

Every public metric takes ``(y_true, mean, std)``: 1-D arrays of the same length holding
the targets and the means and standard deviations of Gaussian predictive distributions.
The helpers here turn them into float64 arrays or raise a ``ValueError`` that names the
offending argument and what is wrong with it.
"""

import numbers

import numpy as np


def as_1d_finite(x, name):
    """Return ``x`` as a non-empty, finite, 1-D float64 array.

    Parameters
    ----------
    x : array_like
        Values to check.
    name : str
        Argument name used in error messages.

    Raises
    ------
    ValueError
        If ``x`` is not 1-D, is empty, or holds NaN or infinite values.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D array of numbers ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one value is needed")
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s)")
    return arr


def check_same_length(**arrays):
    """Validate named 1-D arrays with :func:`as_1d_finite` and require equal lengths.

    Parameters
    ----------
    **arrays : array_like
        Arrays keyed by the argument name used in error messages, in order.

    Returns
    -------
    list of ndarray
        The validated arrays in the order given.
    """
    checked = {name: as_1d_finite(x, name) for name, x in arrays.items()}
    lengths = {name: arr.shape[0] for name, arr in checked.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"mismatched lengths: {detail}")
    return list(checked.values())


def check_positive(x, name):
    """Raise ``ValueError`` unless every entry of the array ``x`` is strictly positive."""
    n_bad = int(np.count_nonzero(x <= 0))
    if n_bad:
        raise ValueError(f"{name} must be strictly positive; {n_bad} value(s) are <= 0")
    return x


def check_gaussian_inputs(y_true, mean, std=None):
    """Validate targets and Gaussian predictive moments; return them as float64 arrays.

    Parameters
    ----------
    y_true, mean : array_like, shape (n,)
        Observed targets and predictive means.
    std : array_like, shape (n,), optional
        Predictive standard deviations; must be strictly positive. ``None`` is passed
        through for point metrics that ignore it.

    Returns
    -------
    y_true, mean, std : ndarray
        ``std`` is ``None`` when it was not given.

    Raises
    ------
    ValueError
        On non-1-D, empty, NaN/inf inputs, mismatched lengths, or ``std <= 0``.
    """
    if std is None:
        y_true, mean = check_same_length(y_true=y_true, mean=mean)
        return y_true, mean, None
    y_true, mean, std = check_same_length(y_true=y_true, mean=mean, std=std)
    return y_true, mean, check_positive(std, "std")


def check_level(level, name="level"):
    """Return ``level`` as a float, requiring ``0 < level < 1`` (a central-interval mass)."""
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise ValueError(f"{name} must be a number in (0, 1), got {level!r}")
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {level}")
    return level


def check_positive_int(value, name):
    """Return ``value`` as an int, requiring it to be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)

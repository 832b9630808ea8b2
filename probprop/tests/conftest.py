"""Shared fixtures for the estimator, model-file and distribution tests.

Compiling the PBP epoch costs about a second per new data shape, so the tests reuse a few
shapes: ``small_data`` (48 x 3) for everything whose point is not accuracy, the UCI splits
for the accuracy checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from probprop.data import load_uci

#: A short fit for tests whose point is not accuracy.
FAST = {"epochs": 3, "random_state": 0}


def small_problem(n: int = 48, d: int = 3, seed: int = 0):
    """A small noisy linear problem whose values are exact in float32 and in int.

    X holds small integers and y multiples of 1/8, so a list, an int array, a float32
    array and a float64 array of it are the same numbers.
    """
    rng = np.random.default_rng(seed)
    X = rng.integers(-4, 5, size=(n, d)).astype(np.float64)
    y = np.round(8 * (X @ np.array([1.0, -2.0, 0.5])[:d] + 1.0 + 0.5 * rng.standard_normal(n))) / 8
    return X, y


@pytest.fixture
def small_data():
    """``(X, y)``: 48 rows, 3 features (see :func:`small_problem`)."""
    return small_problem()


def uci_split(name: str, k: int):
    """``(X_train, y_train, X_test, y_test)`` of split ``k``; skips the test if the data are absent."""
    try:
        dataset = load_uci(name)
    except FileNotFoundError as err:
        pytest.skip(f"UCI data for {name!r} not available: {err}")
    return dataset.split(k)


def model_arrays(path) -> dict:
    """Every entry of a model file (an .npz archive), read without unpickling."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}

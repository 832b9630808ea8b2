"""Data streams for online learning, drifting and not, each from its generator or loader and a seed.

    stream = make_stream("friedman-abrupt", seed=0)     # Stream(name, X, y, task, drift, ...)
    for name in STREAMS: ...

Synthetic (every generator is seeded and returns the rows in stream order):

* ``moons-rotating``: scikit-learn's two moons (noise 0.15), each point rotated about the
  centre of the moons by an angle that grows linearly from 0 to 180 degrees over the stream
  (gradual drift; binary).
* ``moons-static``: the same moons, never rotated (no drift; binary).
* ``mnist-rotating``: MNIST training images in a random order, each rotated by an angle that
  grows linearly from 0 to 180 degrees over the stream (gradual drift; 10 classes). Needs the
  MNIST files (:mod:`probprop.data.images`).
* ``friedman-abrupt``: Friedman #1 (x ~ U[0, 1]^10, y = 10 sin(pi x_a x_b) + 20 (x_c - 0.5)^2
  + 10 x_d + 5 x_e + N(0, 1)) whose relevant features (a..e) switch abruptly to another five
  at a third and at two thirds of the stream (as river's ``FriedmanDrift`` "global recurring
  abrupt" does; the third segment returns to the first features).
* ``friedman-gradual``: the same three regimes, each change a linear blend of the two
  formulas over a tenth of the stream.
* ``friedman-static``: Friedman #1 with no change (no drift; regression).

Real, from the river package (``pip install probprop[streams]``; the files ship inside it, no
network): ``trump-approval`` (1,001 rows, regression: Trump's approval rating) and
``phishing`` (1,250 rows, binary: phishing web pages), in river's order. Whether and how they
drift is not known (``drift=None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STREAMS", "Stream", "make_stream"]


@dataclass(frozen=True)
class Stream:
    """Rows in stream order. ``task``: "regression" or "classification"; ``drift``: True
    (synthetic drift), False (none) or None (a real stream: unknown); ``classes``: the labels
    a classifier must know from the start."""

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str
    drift: bool | None
    description: str
    classes: tuple = ()


def _angles(n: int, total_degrees: float) -> np.ndarray:
    return np.linspace(0.0, total_degrees, n, endpoint=False)


def _moons(n: int, seed: int, rotate: bool) -> Stream:
    from sklearn.datasets import make_moons

    rng = np.random.default_rng(seed)
    X, y = make_moons(n_samples=n, noise=0.15, random_state=int(rng.integers(2**31)))
    order = rng.permutation(n)
    X, y = X[order] - np.array([0.5, 0.25]), y[order]
    if rotate:
        theta = np.deg2rad(_angles(n, 180.0))
        c, s = np.cos(theta), np.sin(theta)
        X = np.stack([c * X[:, 0] - s * X[:, 1], s * X[:, 0] + c * X[:, 1]], axis=1)
    name = "moons-rotating" if rotate else "moons-static"
    what = "rotating 0 to 180 degrees over the stream" if rotate else "not rotating"
    return Stream(name, X, y.astype(np.int64), "classification", rotate, f"two moons, noise 0.15, {what}", (0, 1))


def _mnist(n: int, seed: int, data_dir=None) -> Stream:
    from scipy.ndimage import rotate

    from probprop.data.images import load_images

    images, labels, _, _ = load_images("mnist", data_dir=data_dir)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=n, replace=False)
    angles = _angles(n, 180.0)
    X = np.empty((n, 28 * 28))
    for i, (j, angle) in enumerate(zip(pick, angles)):
        X[i] = rotate(images[j].astype(np.float64) / 255.0, angle, reshape=False, order=1).ravel()
    return Stream("mnist-rotating", np.clip(X, 0.0, 1.0), labels[pick].astype(np.int64), "classification", True,
                  "MNIST training images rotating 0 to 180 degrees over the stream", tuple(range(10)))


#: The relevant features (a, b, c, d, e) of Friedman #1 in each regime of the drifting streams.
FRIEDMAN_REGIMES = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (0, 1, 2, 3, 4))


def _friedman(X: np.ndarray, features) -> np.ndarray:
    a, b, c, d, e = (X[:, k] for k in features)
    return 10 * np.sin(np.pi * a * b) + 20 * (c - 0.5) ** 2 + 10 * d + 5 * e


def _friedman_stream(n: int, seed: int, kind: str) -> Stream:
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 10))
    noise = rng.normal(size=n)
    if kind == "static":
        return Stream("friedman-static", X, _friedman(X, FRIEDMAN_REGIMES[0]) + noise, "regression", False,
                      "Friedman #1, no change")
    t = np.arange(n)
    segment = n // 3
    formulas = [_friedman(X, f) for f in FRIEDMAN_REGIMES]
    if kind == "abrupt":
        regime = np.minimum(t // segment, 2)
        y = np.choose(regime, formulas)
        what = f"relevant features switch abruptly at rows {segment} and {2 * segment}"
    else:
        width = max(1, n // 10)
        w1 = np.clip((t - (segment - width / 2)) / width, 0.0, 1.0)  # regime 0 -> 1
        w2 = np.clip((t - (2 * segment - width / 2)) / width, 0.0, 1.0)  # regime 1 -> 2
        y = (1 - w1) * formulas[0] + w1 * ((1 - w2) * formulas[1] + w2 * formulas[2])
        what = f"relevant features blend into others over {width} rows around rows {segment} and {2 * segment}"
    return Stream(f"friedman-{kind}", X, y + noise, "regression", True, f"Friedman #1, {what}")


def _river(name: str) -> Stream:
    try:
        from river import datasets
    except ImportError:
        raise ImportError(f"the {name} stream ships with river: pip install 'probprop[streams]'") from None
    source = {"trump-approval": datasets.TrumpApproval, "phishing": datasets.Phishing}[name]()
    rows, targets = [], []
    keys = None
    for x, y in source:
        keys = keys or list(x)
        rows.append([float(x[k]) for k in keys])
        targets.append(y)
    X = np.asarray(rows, np.float64)
    if name == "phishing":
        y = np.asarray(targets, dtype=bool).astype(np.int64)
        return Stream(name, X, y, "classification", None, "river's Phishing (1,250 web pages, 9 features)", (0, 1))
    return Stream(name, X, np.asarray(targets, np.float64), "regression", None,
                  "river's TrumpApproval (1,001 days, 6 features)")


#: Stream name -> (task, default number of rows, or None for a fixed real stream).
STREAMS = {
    "moons-rotating": ("classification", 4000),
    "moons-static": ("classification", 4000),
    "mnist-rotating": ("classification", 5000),
    "friedman-abrupt": ("regression", 6000),
    "friedman-gradual": ("regression", 6000),
    "friedman-static": ("regression", 6000),
    "trump-approval": ("regression", None),
    "phishing": ("classification", None),
}


def make_stream(name: str, seed: int = 0, n: int | None = None, data_dir=None) -> Stream:
    """The stream ``name`` (a key of :data:`STREAMS`) with ``n`` rows (default: its own size),
    generated from ``seed`` (the real streams come in their one order; ``seed`` and ``n`` do not
    apply to them)."""
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; choose from {sorted(STREAMS)}")
    default = STREAMS[name][1]
    if default is None:
        return _river(name)
    n = default if n is None else int(n)
    if n < 100:
        raise ValueError(f"a stream needs at least 100 rows, got {n}")
    if name.startswith("moons"):
        return _moons(n, seed, rotate=name == "moons-rotating")
    if name == "mnist-rotating":
        return _mnist(n, seed, data_dir)
    return _friedman_stream(n, seed, name.split("-", 1)[1])

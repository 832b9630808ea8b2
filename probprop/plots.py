"""Headless diagnostic plots for Gaussian predictive distributions N(mean, std**2).

Figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot,
so nothing depends on (or changes) the global backend and nothing is ever shown; PNGs are
rendered by the Agg canvas. Every function returns the figure and, given ``path``, also
writes it there as a PNG, creating missing parent folders.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

from probprop.metrics._validation import (
    check_gaussian_inputs,
    check_level,
    check_positive,
    check_positive_int,
    check_same_length,
)
from probprop.metrics.calibration import calibration_curve, miscalibration_area, pit
from probprop.metrics.scoring import inside_interval

__all__ = ["plot_fit_1d", "plot_calibration", "plot_pit_histogram", "plot_intervals_ordered", "plot_reliability", "plot_stream",
           "plot_score_histograms"]

_DPI = 120
_BAND_COLOR = "tab:blue"


def _new_figure(figsize):
    return Figure(figsize=figsize, layout="constrained")


def _finish(fig, path):
    """Save ``fig`` as a PNG at ``path`` (if given, creating parent folders); return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=_DPI)
    return fig


def plot_fit_1d(
    x_train, y_train, x_grid, mean, std, *, x_test=None, y_test=None, title=None, path=None
):
    """Predictive mean with shaded +-1 sigma and +-2 sigma bands over a 1-D input grid.

    Parameters
    ----------
    x_train, y_train : array_like, shape (n_train,)
        Training inputs and targets, drawn as points.
    x_grid, mean, std : array_like, shape (n_grid,)
        Inputs at which the predictive distribution N(mean, std**2) was evaluated
        (sorted here, so any order works).
    x_test, y_test : array_like, shape (n_test,), optional
        Held-out points, drawn with a different marker; give both or neither.
    title : str, optional
    path : str or path-like, optional
        Where to write the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x_train, y_train = check_same_length(x_train=x_train, y_train=y_train)
    x_grid, mean, std = check_same_length(x_grid=x_grid, mean=mean, std=std)
    check_positive(std, "std")
    if (x_test is None) != (y_test is None):
        raise ValueError("give both x_test and y_test, or neither")
    order = np.argsort(x_grid, kind="stable")
    x_grid, mean, std = x_grid[order], mean[order], std[order]

    fig = _new_figure((7.0, 4.5))
    ax = fig.add_subplot()
    ax.fill_between(
        x_grid, mean - 2 * std, mean + 2 * std, color=_BAND_COLOR, alpha=0.15, lw=0,
        label=r"$\pm 2\sigma$",
    )  # fmt: skip
    ax.fill_between(
        x_grid, mean - std, mean + std, color=_BAND_COLOR, alpha=0.3, lw=0,
        label=r"$\pm 1\sigma$",
    )  # fmt: skip
    ax.plot(x_grid, mean, color=_BAND_COLOR, lw=2, label="predictive mean")
    ax.scatter(x_train, y_train, s=12, color="black", alpha=0.7, zorder=3, label="train")
    if x_test is not None:
        x_test, y_test = check_same_length(x_test=x_test, y_test=y_test)
        ax.scatter(
            x_test, y_test, s=18, marker="x", color="tab:red", zorder=3, label="test"
        )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="best", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return _finish(fig, path)


def plot_calibration(y_true, mean, std, *, path=None, title=None):
    """Calibration curve of central predictive intervals against the ideal diagonal.

    Plots :func:`probprop.metrics.calibration.calibration_curve` (uncertainty-toolbox
    "interval" convention, 99 levels) with its exact end points (0, 0) and (1, 1), shades
    the gap to the diagonal and prints
    :func:`~probprop.metrics.calibration.miscalibration_area`. A curve below the diagonal
    means overconfident (too narrow) intervals, above it underconfident ones.

    Returns
    -------
    matplotlib.figure.Figure
    """
    y_true, mean, std = check_gaussian_inputs(y_true, mean, std)
    expected, observed = calibration_curve(y_true, mean, std)
    expected = np.concatenate(([0.0], expected, [1.0]))
    observed = np.concatenate(([0.0], observed, [1.0]))
    area = miscalibration_area(y_true, mean, std)

    fig = _new_figure((5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="gray", label="ideal")
    ax.fill_between(expected, expected, observed, color=_BAND_COLOR, alpha=0.25, lw=0)
    ax.plot(expected, observed, color=_BAND_COLOR, lw=2, label="predictor")
    ax.text(
        0.95, 0.05, f"Miscalibration area = {area:.3f}", transform=ax.transAxes,
        ha="right", va="bottom", bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
    )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("Expected proportion in central interval")
    ax.set_ylabel("Observed proportion in central interval")
    ax.legend(loc="upper left")
    ax.set_title(title if title is not None else "Calibration (central intervals)")
    return _finish(fig, path)


def plot_pit_histogram(y_true, mean, std, *, bins=20, path=None, title=None):
    """Density histogram of PIT values ``Phi((y - mu) / sigma)`` with the Uniform(0, 1) line.

    Calibrated forecasts give a flat histogram; a U shape means overconfidence, a hump
    underconfidence, and a slope bias (Gneiting, Balabdaoui & Raftery, 2007).

    Returns
    -------
    matplotlib.figure.Figure
    """
    bins = check_positive_int(bins, "bins")
    values = pit(y_true, mean, std)

    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, range=(0.0, 1.0), density=True, color=_BAND_COLOR,
            alpha=0.7, edgecolor="white", label=f"PIT (n={values.size})")  # fmt: skip
    ax.axhline(1.0, ls="--", color="black", label="uniform (calibrated)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("PIT value")
    ax.set_ylabel("Density")
    ax.legend(loc="upper center", fontsize="small")
    ax.set_title(title if title is not None else "PIT histogram")
    return _finish(fig, path)


def plot_intervals_ordered(
    y_true, mean, std, *, level=0.95, max_points=200, path=None, title=None
):
    """Central predictive intervals and true values, with points sorted by predicted mean.

    Each point gets a vertical bar ``mu -/+ Phi^{-1}((1 + level) / 2) sigma`` and its
    predicted mean; true values are dots, red where they fall outside the interval. With
    more than ``max_points`` points an evenly spaced subset of the sorted order is shown;
    the coverage in the legend is computed on all points.

    Returns
    -------
    matplotlib.figure.Figure
    """
    y_true, mean, std = check_gaussian_inputs(y_true, mean, std)
    level = check_level(level)
    max_points = check_positive_int(max_points, "max_points")
    lo, hi = norm.interval(level, loc=mean, scale=std)
    inside = inside_interval(y_true, mean, std, level)  # the coverage rule of probprop.metrics

    order = np.argsort(mean, kind="stable")
    if order.size > max_points:
        order = order[np.unique(np.linspace(0, order.size - 1, max_points).round().astype(int))]
    idx = np.arange(order.size)
    shown_inside = inside[order]

    fig = _new_figure((8.0, 4.5))
    ax = fig.add_subplot()
    ax.vlines(idx, lo[order], hi[order], color=_BAND_COLOR, alpha=0.5, lw=1.5,
              label=f"{level:.0%} interval")  # fmt: skip
    ax.plot(idx, mean[order], color=_BAND_COLOR, lw=1.5, label="predicted mean")
    ax.scatter(idx[shown_inside], y_true[order][shown_inside], s=10, color="black",
               zorder=3, label="true (inside)")  # fmt: skip
    ax.scatter(idx[~shown_inside], y_true[order][~shown_inside], s=14, color="tab:red",
               zorder=3, label="true (outside)")  # fmt: skip
    shown = "" if order.size == y_true.size else f", {order.size} of {y_true.size} shown"
    ax.set_xlabel(f"Points sorted by predicted mean{shown}")
    ax.set_ylabel("y")
    ax.legend(loc="upper left", fontsize="small",
              title=f"coverage {inside.mean():.1%} (target {level:.0%})")  # fmt: skip
    ax.set_title(
        title if title is not None else f"{level:.0%} central intervals, ordered by mean"
    )
    return _finish(fig, path)


def plot_reliability(y, proba, *, bins: int = 15, path=None, title=None):
    """Reliability diagram of class probabilities: accuracy against the top-class confidence in
    equal-width bins (bar widths: the bins; the diagonal is a calibrated classifier), with the
    ECE and the share of points per bin. ``y``: class indices; ``proba``: (n, K)."""
    from probprop.metrics.classification import expected_calibration_error, reliability

    conf, acc, count = reliability(y, proba, bins)
    ece = expected_calibration_error(y, proba, bins)
    fig = _new_figure((5.0, 5.5))
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], ls="--", color="gray", label="calibrated")
    ax.bar(conf, acc, width=1.0 / bins, color=_BAND_COLOR, alpha=0.7, edgecolor="white", label="accuracy in bin")
    ax.text(0.05, 0.9, f"ECE ({bins} bins) = {ece:.4f}", transform=ax.transAxes,
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy")
    ax.legend(loc="lower right")
    ax.set_title(title if title is not None else "Reliability diagram")
    hist.bar(conf, count / count.sum(), width=1.0 / bins, color="gray")
    hist.set_yscale("log")
    hist.set_xlim(0, 1)
    hist.set_xlabel("Confidence (top-class probability)")
    hist.set_ylabel("Share")
    return _finish(fig, path)


def plot_score_histograms(scores: dict, *, xlabel="Confidence (top-class probability)", bins: int = 30, path=None,
                          title=None):
    """Overlaid density histograms of a score on several sets of points, e.g. the confidence on
    in-distribution test images against out-of-distribution ones: ``scores`` maps a label to
    its 1-D array."""
    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    values = [np.asarray(v, np.float64) for v in scores.values()]
    lo = min(v.min() for v in values)
    hi = max(v.max() for v in values)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    for label, v in zip(scores, values):
        ax.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.4, label=f"{label} (n={len(v)})")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Density")
    ax.legend()
    ax.set_title(title if title is not None else "Scores in and out of distribution")
    return _finish(fig, path)


def plot_stream(curves: dict, *, metric: str = "log_loss", window: int = 200, gammas=None, path=None, title=None):
    """Scores over a stream (prequential evaluation, :mod:`probprop.prequential`): ``curves`` maps
    a method's label to its per-row score (1-D, in stream order: the log loss, the squared error,
    1/0 for a correct class, ...). Top: the cumulative mean (what the stream's summary reports);
    middle: the mean over a moving ``window`` of rows (where the drift hurts, and how fast each
    method recovers); bottom, when ``gammas`` (label -> per-row forgetting factor) is given:
    1 - gamma on a log scale."""
    rows = 3 if gammas else 2
    fig = _new_figure((7.0, 2.6 * rows))
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    for label, values in curves.items():
        v = np.asarray(values, np.float64)
        t = np.arange(1, len(v) + 1)
        axes[0].plot(t, np.cumsum(v) / t, label=label, lw=1.2)
        w = max(1, min(int(window), len(v)))
        moving = np.convolve(v, np.ones(w) / w, mode="valid")
        axes[1].plot(np.arange(w, len(v) + 1), moving, lw=1.0)
    axes[0].set_ylabel(f"cumulative mean\n{metric}")
    axes[1].set_ylabel(f"{metric}, moving\nmean of {window}")
    axes[0].legend(fontsize=7, ncol=2)
    if gammas:
        for label, g in gammas.items():
            axes[2].semilogy(np.arange(1, len(g) + 1), np.maximum(1.0 - np.asarray(g, np.float64), 1e-12), label=label)
        axes[2].set_ylabel("1 - gamma")
        axes[2].legend(fontsize=7)
    axes[-1].set_xlabel("rows of the stream after the warm-up")
    axes[0].set_title(title if title is not None else "Prequential scores over the stream")
    return _finish(fig, path)

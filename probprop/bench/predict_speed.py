"""Prediction speed, way against way in one process: cache-sized blocks against blocks of 8,192
rows, and the uncertainty scores' cubature on one grid against a grid per point.

    probprop bench predict-speed [--rows 8192] [--out docs/benchmarks/predict-speed]

The estimators predict in padded blocks of rows (:meth:`probprop.estimators.base.MomentEstimator._plain_block`):
about :data:`probprop.estimators.base.PREDICT_BLOCK_NUMBERS` numbers per layer of the widest layer
("cache-sized"), where they once took :data:`~probprop.estimators.base.PREDICT_BLOCK` = 8,192 rows
whatever the network. For each model below (fitted briefly: the weights do not change the time),
``--rows`` rows are predicted both ways in one pinned worker process of its own, each way called
once to compile and then timed as the best of three calls; the largest difference between the two
ways' predictions is reported (the blocks must not change a number beyond rounding).

Models: the image benchmark's CNN by PBP and by TAGI, PBP's 784-100-100-10 and TAGI's
784-400-400-10 on MNIST images (``predict_proba``), PBP and DVI 13-50-1 regressors on generated
rows (``predict``).

The ``-scores`` models time ``predict_dist`` (probabilities and uncertainty scores) of PBP's
784-100-100-10 and CNN instead, two ways: "one-grid" as shipped (the multinomial probit's 2K
cubature points read off one shared grid,
:func:`probprop.likelihoods.classification._cubature_probabilities`) and "per-point" (each point on
a grid of its own, as before; ``CUBATURE_STEP = 0`` sends every block there).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

MODELS = ("pbp-cnn", "tagi-cnn", "pbp-784-100-100-10", "tagi-784-400-400-10", "pbp-13-50-1", "dvi-13-50-1",
          "pbp-784-100-100-10-scores", "pbp-cnn-scores")
WAYS = ("cache-sized", "8192-row")
SCORE_WAYS = ("one-grid", "per-point")
REPEATS = 3


def ways(model: str) -> tuple[str, str]:
    """The two ways a model predicts, the shipped one first."""
    return SCORE_WAYS if model.endswith("-scores") else WAYS


def _fitted(model: str, data_dir=None):
    """The fitted model and the rows it predicts (images for the classifiers)."""
    from probprop.bench.images import _probprop_model
    from probprop.estimators import DVIRegressor, PBPRegressor

    scores = model.endswith("-scores")
    model = model.removesuffix("-scores")
    if model.endswith("13-50-1"):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(455, 13))
        y = X[:, 0] + np.sin(X[:, 1]) + 0.1 * rng.normal(size=455)
        est = (PBPRegressor if model.startswith("pbp") else DVIRegressor)(hidden=(50,), epochs=2, random_state=0)
        return est.fit(X, y), rng.normal(size=(10_000, 13)), "predict"
    from probprop.data.images import load_images

    X, y, Xt, _ = load_images("mnist", data_dir, flat=True, scale=True)
    # the image benchmark's networks, one pass
    est = _probprop_model(model, 1, 0) if model.endswith("-cnn") else _probprop_model(
        model.split("-")[0], 1, 0, hidden=tuple(int(h) for h in model.split("-")[2:-1]))
    est.fit(X[:300], y[:300])
    return est, Xt, "predict_dist" if scores else "predict_proba"


def measure(model: str, rows: int, data_dir=None, core: int | None = None) -> list[dict]:
    """Both ways for one model, in this (worker) process."""
    import os

    from probprop.bench.machine import pin, thread_environment

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {list(MODELS)}")
    if core is not None:  # a pinned worker of its own (a caller's environment is left alone)
        pin(core)
        os.environ.update(thread_environment())
    import jax

    from probprop.estimators import base
    from probprop.likelihoods import classification

    est, source, method = _fitted(model, data_dir)
    X = np.resize(source, (rows, source.shape[1]))  # repeats the test images past their count
    shipped, shipped_step, out, results = base.PREDICT_BLOCK_NUMBERS, classification.CUBATURE_STEP, [], {}

    def predict(Z):
        got = getattr(est, method)(Z)
        if method == "predict_dist":  # the probabilities and every score
            got = np.column_stack([got.probabilities, got.variance, got.mutual_information])
        return np.asarray(got, np.float64)

    try:
        for way in ways(model):
            base.PREDICT_BLOCK_NUMBERS = base.PREDICT_BLOCK * (1 << 40) if way == "8192-row" else shipped
            classification.CUBATURE_STEP = 0.0 if way == "per-point" else shipped_step
            jax.clear_caches()  # the constants are read when a program is traced
            block = est._plain_block(X.shape[1])
            results[way] = predict(X)  # compiles this way's shapes
            best = np.inf
            for _ in range(REPEATS):
                start = time.perf_counter()
                predict(X)
                best = min(best, time.perf_counter() - start)
            out.append({"model": model, "way": way, "block_rows": block, "rows": rows, "seconds": best})
    finally:
        base.PREDICT_BLOCK_NUMBERS, classification.CUBATURE_STEP = shipped, shipped_step
        jax.clear_caches()
    for row in out:
        row["max_diff"] = float(np.max(np.abs(results[row["way"]] - results[ways(model)[0]])))
    return out


def run(out="docs/benchmarks/predict-speed", rows: int = 8192, models=MODELS, data_dir=None,
        command: str | None = None, log=print) -> Path:
    """Every model its two ways, one fresh pinned worker per model, one at a time; writes results.csv
    and report.md."""
    import pandas as pd

    from probprop.bench.machine import machine_info, pinned_results
    from probprop.data.images import find_images_dir

    if int(rows) < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(MODELS)}")
    if any(not m.endswith("13-50-1") for m in models):
        find_images_dir("mnist", data_dir)  # a missing data folder fails here, before any worker starts
    wall = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for model in models:
        ((_, result),) = pinned_results(measure, [(model, int(rows), data_dir)], workers=1)
        for row in result:
            log(f"{model} {row['way']}: {1e3 * row['seconds'] / row['rows']:.4f} ms/row")
        table += result
    frame = pd.DataFrame(table)
    wall = time.perf_counter() - wall
    frame.to_csv(out / "results.csv", index=False)
    text = report(frame, command or f"probprop bench predict-speed --rows {rows} --out {out}", wall, started,
                  machine_info())
    (out / "report.md").write_text(text)
    return out


def report(frame, command: str, wall: float, started: str = "?", machine: dict | None = None) -> str:
    """The report of a run from its results table."""
    from probprop.bench.machine import report_header
    from probprop.estimators.base import PREDICT_BLOCK, PREDICT_BLOCK_NUMBERS

    lines = report_header("Prediction speed: cache-sized blocks against 8,192 rows; the scores' grid", command, wall,
                          started, machine)
    lines += ["", ("Each model predicts the same rows (MNIST test images, repeated past 10,000; generated rows for "
                   "the regressors) in padded blocks of rows: \"cache-sized\" as shipped (about "
                   f"{PREDICT_BLOCK_NUMBERS:,} numbers per layer of the widest layer), \"8192-row\" blocks of "
                   f"{PREDICT_BLOCK:,} rows (before). One process per model pinned to one core, both ways in it, "
                   f"each compiled first and timed as the best of {REPEATS} calls. Speed-up = the 8192-row time / the "
                   "cache-sized one. Difference: the largest absolute difference of the predictions from the "
                   "cache-sized ones. Classifiers: `predict_proba`; regressors: `predict`. The `-scores` models "
                   "time `predict_dist` (the probabilities and every uncertainty score; difference over all of "
                   "them): \"one-grid\" as shipped (the multinomial probit's 2K cubature points read off one "
                   "grid), \"per-point\" each point on a grid of its own (before); speed-up = per-point / one-grid, "
                   "difference from one-grid's; the rows-per-block column gives the network's blocks, after which "
                   "the scores run in blocks of 32 rows."),
              "",
              "| model | way | rows per block | rows | ms per 1,000 rows | speed-up | difference |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for model, group in frame.groupby("model", sort=False):
        first = ways(model)[0]
        base = float(group.loc[group["way"] == first, "seconds"].iloc[0])
        for r in group.itertuples():
            ratio = "-" if r.way == first else f"{r.seconds / base:.2f}x"
            lines.append(f"| {model} | {r.way} | {r.block_rows:,} | {r.rows:,} | {1e6 * r.seconds / r.rows:.2f} | "
                         f"{ratio} | {r.max_diff:.1e} |")
    lines.append("")
    return "\n".join(lines) + "\n"

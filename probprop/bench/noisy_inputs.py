"""Noisy inputs benchmark: predictions that know their inputs are noisy (``X_var``) against plain ones.

    probprop bench noisy-inputs [--datasets boston,concrete,energy,kin8nm] [--splits 5]
                                [--methods pbp,tagi] [--scales 0.1,0.3,0.5,1.0] [--out DIR]

For each dataset, split and method the model is fitted on the clean training split (the UCI
protocol of ``probprop bench uci``: ``n_hidden`` ReLU units, ``n_epochs`` epochs). Gaussian noise
of known scale (a multiple of each feature's training std) is then added to the test inputs, and
the test targets are predicted three ways from the noisy inputs:

- ``plain``: ``predict_dist(X_noisy)``, the model unaware of the noise;
- ``moments``: ``predict_dist(X_noisy, X_var=noise variance)`` (moment matching, the default);
- ``linear``: the same with the activations linearised (``propagation="linear"``).

Reported per prediction: test log-likelihood, RMSE, coverage of the central 90 % interval, and
the time of one prediction of the test set (the best of three calls after a compiling one).
The noise draws depend on (dataset, split, scale) only, so every method and prediction sees the
same noisy inputs. One process, one core's worth of work (a few minutes).

Accuracy against Monte Carlo (:func:`accuracy_rows`): on the networks of split 0, the predictive
mean and variance of f that the two propagations give for the first :data:`MC_ROWS` noisy test
inputs, against Monte Carlo over the input noise and the weight posterior
(:func:`monte_carlo_moments`, :data:`MC_DRAWS` joint draws; the tests use the same oracle).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from probprop.data import load_uci
from probprop.learners import dvi, mapnet
from probprop.learners.base import float64

DATASETS = ("boston", "concrete", "energy", "kin8nm")
METHODS = ("pbp", "tagi")
SCALES = (0.1, 0.3, 0.5, 1.0)
PREDICTIONS = ("plain", "moments", "linear")
LEVEL = 0.9
MC_ROWS = 32  #: test rows per network compared with Monte Carlo
MC_DRAWS = 40_000  #: joint draws of inputs and weights per comparison


# ------------------------------------------------------------------------------------ the oracle


def sampled_layers(kind: str, state, key):
    """One draw of every weight from a moment learner's posterior (``kind``: "pbp", "tagi" or
    "dvi"), as ((W, b), ...) for :func:`probprop.learners.mapnet.mlp`."""
    if kind == "dvi":
        return dvi.sample_network(key, state.params)
    layers = []
    for k, M, V in zip(jax.random.split(key, len(state.means)), state.means, state.variances):
        W = M + jnp.sqrt(V) * jax.random.normal(k, M.shape, M.dtype)
        scale = 1.0 / jnp.sqrt(M.shape[1]) if kind == "pbp" else 1.0  # PBP's 1/sqrt(fan_in + 1)
        layers.append((W[:, :-1].T * scale, W[:, -1] * scale))
    return tuple(layers)


@partial(jax.jit, static_argnums=(0, 5))
def monte_carlo_draws(kind: str, state, X, X_var, key, n: int):
    """f(x) (the mean output) for n joint draws of x ~ N(X, X_var) and the weights: (n, rows)."""

    def one(k):
        k_x, k_w = jax.random.split(k)
        x = X + jnp.sqrt(X_var) * jax.random.normal(k_x, X.shape, X.dtype)
        return mapnet.mlp(sampled_layers(kind, state, k_w), x)[..., 0]

    return jax.lax.map(one, jax.random.split(key, n), batch_size=2000)


def draw_moments(f) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and variance over the draws ``f`` (n, rows), and their standard errors (the variance's
    from the sample's fourth central moment)."""
    f = np.asarray(f, np.float64)
    mean, var = f.mean(0), f.var(0)
    c4 = np.mean((f - mean) ** 4, axis=0)
    return mean, var, np.sqrt(var / len(f)), np.sqrt(np.maximum(c4 - var**2, 0.0) / len(f))


@float64
def monte_carlo_moments(kind: str, state, X, X_var, n: int = MC_DRAWS, seed: int = 1):
    """:func:`draw_moments` of :func:`monte_carlo_draws` (float64, standardised units)."""
    X = jnp.asarray(X, jnp.float64)
    X_var = jnp.broadcast_to(jnp.asarray(X_var, jnp.float64), X.shape)
    return draw_moments(monte_carlo_draws(kind, state, X, X_var, jax.random.PRNGKey(seed), int(n)))


def accuracy_rows(datasets=DATASETS, methods=METHODS, scales=SCALES, data_dir=None, log=print) -> list[dict]:
    """Per (dataset, method, scale, propagation) on split 0: the largest and median relative error of
    the propagated variance of f against Monte Carlo, the largest error of its mean in units of the
    Monte Carlo sd, and the Monte Carlo standard error of the variance relative to it."""
    from probprop.learners import get

    rows = []
    for name in datasets:
        data = load_uci(name, data_dir)
        X_train, y_train, X_test, _ = data.split(0)
        std = X_train.std(axis=0)
        for method in methods:
            model = _model(method, data, seed=0).fit(X_train, y_train)
            learner = get(method)
            for scale in scales:
                rng = np.random.default_rng([0, round(1000 * scale), sum(map(ord, name))])
                X_noisy = X_test[:MC_ROWS] + scale * std * rng.standard_normal(X_test[:MC_ROWS].shape)
                Xs = (X_noisy - model.x_mean_) / model.x_scale_
                Vs = np.broadcast_to((scale * std) ** 2 / model.x_scale_**2, Xs.shape)
                mean, var, _, se_var = monte_carlo_moments(method, model.state_, Xs, Vs)
                for propagation in ("moments", "linear"):
                    got = learner.predict(model.state_, Xs, Vs, propagation=propagation)
                    rel = np.abs(np.asarray(got.epistemic_var) / var - 1)
                    rows.append({"dataset": data.name, "method": method, "noise_scale": scale,
                                 "propagation": propagation, "max_rel_var_error": float(rel.max()),
                                 "median_rel_var_error": float(np.median(rel)),
                                 "max_mean_error_sd": float(np.max(np.abs(np.asarray(got.mean) - mean) / np.sqrt(var))),
                                 "mc_rel_se_var": float(np.median(se_var / var))})
            log(f"{data.name} {method}: Monte Carlo comparison done")
    return rows


def _model(method: str, info, seed: int):
    from probprop.estimators import PBPRegressor, TAGIRegressor

    params = {"hidden": (int(info.n_hidden),), "epochs": int(info.n_epochs), "random_state": seed}
    if method == "pbp":
        return PBPRegressor(**params)
    if method == "tagi":
        return TAGIRegressor(**params)
    raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")


def _best_time(fn, repeats: int = 3) -> float:
    fn()  # compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run_rows(datasets=DATASETS, splits: int = 5, methods=METHODS, scales=SCALES, data_dir=None, log=print) -> list[dict]:
    """One row per (dataset, method, split, scale, prediction): the metrics of the module docstring."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from {', '.join(METHODS)}")
    if not all(np.isfinite(s) and s >= 0 for s in scales):
        raise ValueError(f"noise scales must be finite and >= 0, got {list(scales)}")
    rows = []
    for name in datasets:
        data = load_uci(name, data_dir)
        for k in range(min(int(splits), data.n_splits)):
            X_train, y_train, X_test, y_test = data.split(k)
            std = X_train.std(axis=0)
            for method in methods:
                start = time.perf_counter()
                model = _model(method, data, seed=k).fit(X_train, y_train)
                fit_seconds = time.perf_counter() - start
                for scale in scales:
                    rng = np.random.default_rng([k, round(1000 * scale), sum(map(ord, name))])
                    X_noisy = X_test + scale * std * rng.standard_normal(X_test.shape)
                    X_var = (scale * std) ** 2
                    calls = {
                        "plain": lambda m=model, x=X_noisy: m.predict_dist(x),
                        "moments": lambda m=model, x=X_noisy, v=X_var: m.predict_dist(x, X_var=v),
                        "linear": lambda m=model, x=X_noisy, v=X_var: m.predict_dist(x, X_var=v, propagation="linear"),
                    }
                    for prediction, call in calls.items():
                        dist = call()
                        low, high = dist.interval(LEVEL)
                        rows.append({
                            "dataset": data.name, "method": method, "split": k, "noise_scale": scale,
                            "prediction": prediction, "n_test": len(y_test),
                            "log_likelihood": float(np.mean(dist.logpdf(y_test))),
                            "rmse": float(np.sqrt(np.mean((dist.mean - y_test) ** 2))),
                            "coverage90": float(np.mean((y_test >= low) & (y_test <= high))),
                            "predict_seconds": _best_time(call), "fit_seconds": fit_seconds,
                        })
                log(f"{data.name} split {k} {method}: fitted in {fit_seconds:.1f} s")
    return rows


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def report(frame, command: str, wall_seconds: float, accuracy=None) -> str:
    """The markdown report of a results frame (and of the Monte Carlo comparison, if given)."""
    from probprop.bench.machine import cpu_name

    n_splits = frame["split"].nunique()
    lines = [
        "# Noisy test inputs: predictions that know the input noise",
        "",
        f"Command: `{command}` ({wall_seconds:.0f} s wall time; CPU: {cpu_name()}).",
        "",
        "Each model is fitted on the clean training split (the UCI protocol: one hidden layer of the dataset's",
        "`n_hidden` ReLU units, `n_epochs` epochs; TAGI chooses sigma_v on a validation part of the training",
        "data). Gaussian noise of scale s x each feature's training std is added to the test inputs, and y is",
        "predicted from the noisy inputs: `plain` ignores the noise, `moments` passes `X_var` = (s std)^2 and",
        "propagates it by moment matching (the default), `linear` by local linearisation of the activations",
        "(Petersen et al., ICLR 2024). The noise-aware predictions treat the clean input as N(x_noisy, X_var),",
        f"the usual flat-prior reading of a noisy measurement. Means ± standard errors over {n_splits} splits.",
        "",
        "## Test log-likelihood (higher is better) and 90 % interval coverage",
        "",
        "| dataset | method | noise s | LL plain | LL moments | LL linear | cov. plain | cov. moments | cov. linear |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = ["dataset", "method", "noise_scale"]
    for (dataset, method, scale), group in frame.groupby(keys, sort=True):
        by = {p: g for p, g in group.groupby("prediction")}
        ll = {p: _mean_se(by[p]["log_likelihood"]) for p in PREDICTIONS if p in by}
        cov = {p: _mean_se(by[p]["coverage90"]) for p in PREDICTIONS if p in by}
        best = max(ll, key=lambda p: ll[p][0])
        cells = [f"**{ll[p][0]:.3f}** ± {ll[p][1]:.3f}" if p == best else f"{ll[p][0]:.3f} ± {ll[p][1]:.3f}"
                 for p in PREDICTIONS]
        cells += [f"{cov[p][0]:.3f}" for p in PREDICTIONS]
        lines.append(f"| {dataset} | {method} | {scale:g} | " + " | ".join(cells) + " |")
    for a, b in (("moments", "plain"), ("linear", "moments")):
        lines += ["", f"Paired difference {a} - {b} of the test LL, split by split (mean ± SE):", "",
                  "| dataset | method | " + " | ".join(f"s = {s:g}" for s in sorted(frame["noise_scale"].unique())) + " |",
                  "|---|---|" + "---:|" * frame["noise_scale"].nunique()]
        for (dataset, method), group in frame.groupby(["dataset", "method"], sort=True):
            cells = []
            for scale, g in group.groupby("noise_scale", sort=True):
                pivot = g.pivot(index="split", columns="prediction", values="log_likelihood")
                mean, se = _mean_se(pivot[a] - pivot[b])
                cells.append(f"{mean:+.3f} ± {se:.3f}")
            lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "## Time of one prediction of the test set", "",
              "Median over splits and noise scales of the best of three calls (after a compiling call), in",
              "milliseconds per 1000 rows:", "",
              "| dataset | method | test rows | plain | moments | linear |", "|---|---|---:|---:|---:|---:|"]
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=True):
        per = {p: 1e6 * np.median(g["predict_seconds"] / g["n_test"]) for p, g in group.groupby("prediction")}
        rows = int(group["n_test"].iloc[0])
        lines.append(f"| {dataset} | {method} | {rows} | " + " | ".join(f"{per[p]:.2f}" for p in PREDICTIONS) + " |")
    lines += ["", "![test log-likelihood against the input noise](ll-vs-noise.png)", ""]
    if accuracy is not None and len(accuracy):
        lines += ["## Accuracy against Monte Carlo", "",
                  f"The networks of split 0; the first {MC_ROWS} noisy test inputs; Monte Carlo over the input noise and the",
                  f"weight posterior with {MC_DRAWS:,} joint draws (its standard error of the variance is in the last",
                  "column, relative). Errors of the variance of f relative to Monte Carlo (largest, median over the rows),",
                  "and the largest error of the mean in Monte Carlo standard deviations of f:", "",
                  "| dataset | method | noise s | var. error, moments (max / median) | var. error, linear (max / median) "
                  "| mean error, moments | mean error, linear | MC rel. SE |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for (dataset, method, scale), g in accuracy.groupby(["dataset", "method", "noise_scale"], sort=True):
            by = g.set_index("propagation")
            cells = [f"{by.loc[p, 'max_rel_var_error']:.3f} / {by.loc[p, 'median_rel_var_error']:.3f}"
                     for p in ("moments", "linear")]
            cells += [f"{by.loc[p, 'max_mean_error_sd']:.3f}" for p in ("moments", "linear")]
            cells.append(f"{by['mc_rel_se_var'].iloc[0]:.4f}")
            lines.append(f"| {dataset} | {method} | {scale:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(frame, path) -> None:
    """Test LL against the noise scale, one panel per dataset, a line per method and prediction."""
    from matplotlib.figure import Figure

    datasets = sorted(frame["dataset"].unique())
    fig = Figure(figsize=(3.2 * len(datasets), 3.0), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    styles = {"plain": ":", "moments": "-", "linear": "--"}
    colours = {"pbp": "C0", "tagi": "C1"}
    for ax, dataset in zip(axes, datasets):
        sub = frame[frame["dataset"] == dataset]
        for (method, prediction), g in sub.groupby(["method", "prediction"], sort=True):
            curve = g.groupby("noise_scale")["log_likelihood"].mean()
            ax.plot(curve.index, curve.values, styles.get(prediction, "-"), color=colours.get(method),
                    marker="o", markersize=3, label=f"{method} {prediction}")
        ax.set_title(dataset)
        ax.set_xlabel("input noise (x training std)")
    axes[0].set_ylabel("test log-likelihood")
    axes[-1].legend(fontsize=7)
    fig.savefig(path, dpi=120)


def run(out=None, datasets=DATASETS, splits: int = 5, methods=METHODS, scales=SCALES, data_dir=None,
        command: str | None = None, log=print) -> Path:
    """Run the benchmark and write results.csv, report.md and ll-vs-noise.png to ``out``."""
    import pandas as pd

    from probprop.learners.base import float64_process

    float64_process()
    out = Path("docs/benchmarks/noisy-inputs" if out is None else out)
    start = time.perf_counter()
    rows = run_rows(datasets, splits, methods, scales, data_dir, log)
    accuracy = pd.DataFrame(accuracy_rows(datasets, methods, scales, data_dir, log))
    wall = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    accuracy.to_csv(out / "monte-carlo.csv", index=False)
    plot(frame, out / "ll-vs-noise.png")
    command = command or "probprop bench noisy-inputs"
    (out / "report.md").write_text(report(frame, command, wall, accuracy))
    return out

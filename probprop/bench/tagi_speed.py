"""TAGI engine to engine: probprop's TAGI against pytagi on the same network, batch and epochs.

    probprop bench tagi-speed [--datasets boston,kin8nm,power] [--epochs 40] [--out DIR]

The UCI benchmark's pytagi comparison (``probprop bench uci --methods tagi,pytagi``) times whole
fits, each with its sigma_v search (probprop trains the 5 candidates as one vectorised program,
pytagi one after another), so its times are not an engine's. Here nothing is searched: on split 0
of each dataset, a 1-hidden-layer network of the protocol's width (50 ReLU units; pytagi's
``MixtureReLU``, the same moment map), mini-batches of 10 rows, sigma_v 0.3 in standardised units,
``--epochs`` epochs, trained by

* probprop's TAGI (:mod:`probprop.learners.tagi`, the summed batch update as pytagi's, and pytagi's
  He start as far as one bias variance allows: weight variance 1 / fan_in, bias variance 1 / n_in)
  in float64 (the default) and in float32 (pytagi's precision), each fitted twice in the same process: the first fit includes compiling its programs (with the
  persistent cache as found), the second is the steady state;
* pytagi, in its Python loop over mini-batches (how its own examples train; one thread).

Every fit runs in its own spawned worker process pinned to one core, one after another, so the
numbers are per core and no two fits share a core. Reported: training rows per second per core
(rows x epochs / fit seconds), the steady-state ratio probprop / pytagi, and the test LL and RMSE
of each fit (with the fixed sigma_v: a check that the engines train the same model, not a
comparison of protocols).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATASETS = ("boston", "kin8nm", "power")
SIGMA_V = 0.3
BATCH = 10
HIDDEN = 50


def _scores(mean, var, y, y_mean, y_std) -> dict:
    """Test LL and RMSE in y's units of standardised predictions (mean, epistemic var) with sigma_v."""
    from probprop.metrics.scoring import log_likelihood, rmse

    mu, std = y_mean + y_std * mean, y_std * np.sqrt(var + SIGMA_V**2)
    return {"test_ll": float(log_likelihood(y, mu, std)), "rmse": float(rmse(y, mu))}


def engine_fit(engine: str, dataset: str, epochs: int, data_dir=None, core: int | None = None) -> dict:
    """One engine's fits on split 0 of ``dataset``, in this (worker) process pinned to ``core``."""
    import os

    from probprop.bench.machine import pin, thread_environment

    if core is not None:
        pin(core)
    os.environ.update(thread_environment())  # before JAX starts in this worker
    from probprop.bench.methods import _pytagi_predict, _pytagi_train, _standardiser
    from probprop.data.uci import load_uci

    X, y, Xt, yt = load_uci(dataset, data_dir=data_dir).split(0)
    scale, y_mean, y_std = _standardiser(X, y)
    Xs, ys, Xts = scale(X), (y - y_mean) / y_std, scale(Xt)
    row = {"engine": engine, "dataset": dataset, "rows": len(y), "epochs": int(epochs)}
    if engine == "pytagi":
        start = time.perf_counter()
        net = _pytagi_train(Xs, ys, HIDDEN, int(epochs), SIGMA_V, seed=0, batch=BATCH)
        seconds = time.perf_counter() - start
        row.update(first_seconds=seconds, steady_seconds=seconds, **_scores(*_pytagi_predict(net, Xts), yt, y_mean, y_std))
        return row
    import jax

    from probprop.learners import tagi
    from probprop.learners.base import float64_process

    float64_process()
    dtype = "float32" if engine.endswith("float32") else "float64"
    # pytagi's He start as far as one bias variance allows (the bench's ``tagi-he``), its summed batch
    spec = tagi.TAGISpec(n_in=Xs.shape[1], hidden=(HIDDEN,), sigma_v=SIGMA_V, batch_size=BATCH, dtype=dtype,
                         init_gain=1.0, init_bias_variance=1.0 / Xs.shape[1])
    times = []
    for _ in range(2):
        state = tagi.init(jax.random.PRNGKey(0), spec)
        start = time.perf_counter()
        for _ in range(int(epochs)):
            state = tagi.update(state, Xs, ys)
        jax.block_until_ready(state.means)
        times.append(time.perf_counter() - start)
    mean, var = tagi.predict(state, Xts)
    row.update(first_seconds=times[0], steady_seconds=times[1],
               **_scores(np.asarray(mean, np.float64), np.asarray(var, np.float64), yt, y_mean, y_std))
    return row


ENGINES = ("probprop-float64", "probprop-float32", "pytagi")


def run(out="docs/benchmarks/tagi-speed", datasets=DATASETS, epochs: int = 40, data_dir=None,
        command: str | None = None, log=print) -> Path:
    """Every engine on every dataset, one pinned worker at a time; writes results.csv and report.md."""
    import pandas as pd

    from probprop.bench.machine import machine_info, pinned_results
    from probprop.bench.methods import check_available

    check_available("pytagi")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    wall = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    calls = [(engine, dataset, int(epochs), data_dir) for dataset in datasets for engine in ENGINES]
    rows = []
    for args, result in pinned_results(engine_fit, calls, workers=1):
        log(f"{args[1]} {args[0]}: steady {result['steady_seconds']:.2f} s, test LL {result['test_ll']:.3f}")
        rows.append(result)
    wall = time.perf_counter() - wall
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    text = report(frame, command or f"probprop bench tagi-speed --datasets {','.join(datasets)} --epochs {epochs} "
                  f"--out {out}", wall, started, machine_info())
    (out / "report.md").write_text(text)
    return out


def report(frame, command: str, wall: float, started: str = "?", machine: dict | None = None) -> str:
    """The report of a run from its results table."""
    from probprop.bench.machine import report_header

    lines = report_header("TAGI engine to engine: probprop against pytagi", command, wall, started, machine)
    lines += ["", (f"Split 0 of each dataset; n_in-{HIDDEN}-1 ReLU network (pytagi's MixtureReLU), mini-batches of "
                   f"{BATCH} rows, sigma_v {SIGMA_V} fixed (no search), the same epochs for every engine; probprop "
                   "with pytagi's He start (weight variance 1 / fan_in; bias variance 1 / n_in) and summed batch "
                   "update; each fit in "
                   "its own process pinned to one core, one at a time. Rows/s = training rows x epochs / seconds. "
                   "probprop's first fit includes compiling its programs; its steady fit is a second fit in the "
                   "same process. pytagi has no compilation step (one fit). Test LL and RMSE in the target's "
                   "units, with the fixed sigma_v."), "",
              ("| dataset | rows x epochs | engine | first fit (s) | steady fit (s) | rows/s per core (steady) | "
               "vs pytagi | test LL | RMSE |"),
              "|---|---|---|---|---|---|---|---|---|"]
    for dataset, group in frame.groupby("dataset", sort=False):
        base = group[group["engine"] == "pytagi"]
        base_rate = float(base["rows"].iloc[0] * base["epochs"].iloc[0] / base["steady_seconds"].iloc[0]) if len(
            base) else np.nan
        for _, r in group.iterrows():
            rate = r["rows"] * r["epochs"] / r["steady_seconds"]
            ratio = "-" if r["engine"] == "pytagi" else f"{rate / base_rate:.2f}x"
            lines.append(f"| {dataset} | {int(r['rows']):,} x {int(r['epochs'])} | {r['engine']} | "
                         f"{r['first_seconds']:.2f} | {r['steady_seconds']:.2f} | {rate:,.0f} | {ratio} | "
                         f"{r['test_ll']:.3f} | {r['rmse']:.3f} |")
    lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probprop.bench.tagi_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="docs/benchmarks/tagi-speed")
    args = parser.parse_args(argv)
    run(args.out, datasets=args.datasets.split(","), epochs=args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

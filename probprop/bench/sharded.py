"""Sharded stochastic EP (:mod:`probprop.learners.pbp_sharded`) against serial SEP, in process and
on Ray (:mod:`probprop.distributed`):

    probprop bench sharded [--rows 10000000] [--shards 2,4,8] [--out DIR]
    python -m probprop.bench.sharded ...

Three measurements, in one report:

1. **The schedule** on a small network (4-10-1, 2,000 rows of y = sin(x_0) + x_1 / 2 + noise, test
   LL on 2,000 fresh rows, 20 epochs, 3 seeds), in process: serial SEP; K shards with one damped
   round per epoch (δ = 1/sqrt(K), the first design); the default schedule (64 K rounds per
   epoch damped by K^(-1/4), the first epoch by 1/sqrt(K) and starting with small rounds).
2. **Scale**: Friedman-1 with five irrelevant inputs (x ~ U(0, 1)^10, y = 10 sin(π x_0 x_1) +
   20 (x_2 - 1/2)^2 + 10 x_3 + 5 x_4 + N(0, 1)), ``--rows`` training rows generated on the fly
   (nothing stored) and 100,000 test rows, a 10-50-1 PBP-SEP network, ``--epochs`` epochs:
   serial SEP in one pinned single-threaded process against K shards on a local Ray cluster
   (one actor per shard, as many CPUs as this process may use). Test LL and RMSE in y's units
   (the noise alone allows at best -1.419), wall time of the epochs and of the set-up (cluster,
   actors, data into the object store), rows per second.
3. **Ray's cost per round**: K actors whose rounds carry one row each, so that a round's time is
   the broadcast, the K calls and the merge; the report projects an epoch's time on a cluster
   from it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SMALL_ROWS = 2000
SMALL_EPOCHS = 20
SMALL_SEEDS = (0, 1, 2)
TEST_ROWS = 100_000
#: The test LL a perfect mean achieves under the N(0, 1) noise: -log(2 pi e) / 2.
NOISE_LL = -0.5 * np.log(2 * np.pi * np.e)


def _default_label() -> str:
    """Section 1's name for the default schedule (:func:`probprop.learners.pbp_sharded.schedule`)."""
    from fractions import Fraction

    from probprop.learners.pbp_sharded import DAMPING_EXPONENT, FIRST_EPOCH_DAMPING_EXPONENT, SYNCS_PER_SHARD

    def power(a):
        return f"K^(-{Fraction(a).limit_denominator(16)})"

    return (f"default ({SYNCS_PER_SHARD} K rounds, damped {power(DAMPING_EXPONENT)}, the first epoch "
            f"{power(FIRST_EPOCH_DAMPING_EXPONENT)} with a warm-up)")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def small_problem(seed: int = 0, n: int = SMALL_ROWS):
    """The small network's problem: standardised train (X, y) and test (X, y), 4 inputs."""
    rng = np.random.default_rng(seed)

    def rows(m):
        X = rng.normal(size=(m, 4))
        return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=m)

    X, y = rows(n)
    Xt, yt = rows(n)
    mean, std = y.mean(), y.std()
    return X, (y - mean) / std, Xt, (yt - mean) / std


def friedman(n: int, seed: int, d: int = 10):
    """Friedman-1 rows (module docstring): X (n, d) uniform, y with unit Gaussian noise."""
    from probprop.data.streams import FRIEDMAN_REGIMES, _friedman

    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = _friedman(X, FRIEDMAN_REGIMES[0])  # the formula of the Friedman streams, in one place
    y += rng.standard_normal(n)
    return X, y


def scale_problem(rows: int, seed: int = 0):
    """Training rows (seed), test rows (seed + 1), both standardised with the training statistics:
    ``(X, y, X_test, y_test, y_mean, y_std)`` (y_test in y's units)."""
    X, y = friedman(rows, seed)
    Xt, yt = friedman(TEST_ROWS, seed + 1)
    mean, std = X.mean(axis=0), X.std(axis=0)
    X -= mean
    X /= std
    Xt = (Xt - mean) / std
    y_mean, y_std = float(y.mean()), float(y.std())
    y -= y_mean
    y /= y_std
    return X, y, Xt, yt, y_mean, y_std


def _scores(state, Xt, yt, y_mean: float, y_std: float) -> dict:
    from probprop.learners import pbp
    from probprop.metrics import log_likelihood, rmse

    m, v, noise = pbp.predict_moments(state, Xt)
    mean = np.asarray(m).ravel() * y_std + y_mean
    sd = np.sqrt(np.asarray(v).ravel() + np.asarray(noise).ravel()) * y_std
    return {"test_ll": log_likelihood(yt, mean, sd), "rmse": rmse(yt, mean)}


def _start(n_in: int, hidden: int, seed: int):
    import jax

    from probprop.learners import pbp

    return pbp.init(jax.random.PRNGKey(seed), pbp.PBPSpec(n_in=n_in, hidden=(hidden,), inference="sep"))


# --------------------------------------------------------------------------------------
# 1. The schedule on a small network
# --------------------------------------------------------------------------------------


def schedule_rows(shards=(2, 4, 8), log=print) -> list[dict]:
    """Section 1 of the module docstring: one row per (configuration, K, seed)."""
    from probprop.learners import pbp, pbp_sharded

    rows = []
    for seed in SMALL_SEEDS:
        X, y, Xt, yt = small_problem(seed)
        start = _start(4, 10, seed)
        serial = start
        for _ in range(SMALL_EPOCHS):
            serial = pbp.update(serial, X, y)
        rows.append({"config": "serial SEP", "shards": 1, "seed": seed, **_scores(serial, Xt, yt, 0.0, 1.0)})
        for k in shards:
            one, _ = pbp_sharded.fit(start, X, y, k, SMALL_EPOCHS, syncs=1, damping=1 / np.sqrt(k))
            rows.append({"config": "1 round per epoch, damped 1/sqrt(K)", "shards": k, "seed": seed,
                         **_scores(one, Xt, yt, 0.0, 1.0)})
            default, _ = pbp_sharded.fit(start, X, y, k, SMALL_EPOCHS)
            rows.append({"config": _default_label(), "shards": k, "seed": seed,
                         **_scores(default, Xt, yt, 0.0, 1.0)})
        log(f"schedule: seed {seed} done")
    return rows


# --------------------------------------------------------------------------------------
# 2. Scale: serial SEP in a pinned worker, shards on Ray
# --------------------------------------------------------------------------------------


def serial_fit(rows: int, epochs: int, hidden: int, seed: int = 0, core: int | None = None) -> dict:
    """Serial SEP on the scale problem, in this (worker) process pinned to ``core``."""
    import os

    from probprop.bench.machine import pin, thread_environment

    if core is not None:
        pin(core)
    os.environ.update(thread_environment())  # before JAX starts in this worker
    import jax

    from probprop.learners import pbp
    from probprop.learners.base import float64_process

    float64_process()
    X, y, Xt, yt, y_mean, y_std = scale_problem(rows, seed)
    state = _start(X.shape[1], hidden, seed)
    start = time.perf_counter()
    for _ in range(epochs):
        state = pbp.update(state, X, y)
    jax.block_until_ready(state.means)
    seconds = time.perf_counter() - start
    return {"config": "serial SEP", "backend": "one pinned process", "shards": 1, "rows": rows, "epochs": epochs,
            "fit_seconds": seconds, "setup_seconds": 0.0, "rows_per_second": rows * epochs / seconds,
            **_scores(state, Xt, yt, y_mean, y_std)}


def ray_fit(X, y, Xt, yt, y_mean, y_std, shards: int, epochs: int, hidden: int, seed: int = 0) -> dict:
    """K shards on Ray (one actor each) over the scale problem; the set-up timed apart."""
    from probprop.distributed import RayShards
    from probprop.learners import pbp_sharded

    state = _start(X.shape[1], hidden, seed)
    begin = time.perf_counter()
    parts = pbp_sharded.split_rows(X, y, shards)
    with RayShards(parts, pbp_sharded.init_sites(state, shards)) as runner:
        setup = time.perf_counter() - begin
        start = time.perf_counter()
        for e in range(epochs):
            state = runner.epoch(state, warmup=e == 0)
        seconds = time.perf_counter() - start
        rounds = runner.rounds
    return {"config": "sharded SEP", "backend": "ray", "shards": shards, "rows": len(y), "epochs": epochs,
            "fit_seconds": seconds, "setup_seconds": setup, "rows_per_second": len(y) * epochs / seconds,
            "rounds": rounds, **_scores(state, Xt, yt, y_mean, y_std)}


# --------------------------------------------------------------------------------------
# 3. Ray's cost per round
# --------------------------------------------------------------------------------------


def round_cost(shards: int, rounds: int = 64, hidden: int = 50) -> dict:
    """Seconds per round when every shard's round holds one row: the broadcast of the posterior,
    the K actor calls and the merge."""
    from probprop.distributed import RayShards
    from probprop.learners import pbp_sharded

    X, y = friedman(shards * rounds, 7)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    state = _start(X.shape[1], hidden, 0)
    parts = pbp_sharded.split_rows(X, y, shards)
    with RayShards(parts, pbp_sharded.init_sites(state, shards)) as runner:
        state = runner.epoch(state, syncs=rounds)  # compiles in every actor
        start = time.perf_counter()
        runner.epoch(state, syncs=rounds)
        seconds = time.perf_counter() - start
    return {"shards": shards, "rounds": rounds, "seconds_per_round": seconds / rounds}


# --------------------------------------------------------------------------------------
# The run and its report
# --------------------------------------------------------------------------------------


def run(out="docs/benchmarks/sharded", rows: int = 10_000_000, shards=(2, 4, 8), epochs: int = 1, hidden: int = 50,
        small: bool = True, command: str | None = None, log=print) -> Path:
    """All three measurements (module docstring); writes ``results.csv`` and ``report.md``."""
    import pandas as pd

    from probprop.bench.machine import machine_info, pinned_results
    from probprop.distributed import ray_session, require_ray
    from probprop.learners.base import float64_process

    require_ray()
    shards = tuple(int(k) for k in shards)
    if not shards or min(shards) < 2:
        raise ValueError(f"shards must list shard counts of at least 2, got {shards}")
    if int(rows) < 1000 * max(shards):
        raise ValueError(f"rows must be at least 1,000 per shard ({1000 * max(shards)}), got {rows}")
    float64_process()
    wall = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    small_rows = schedule_rows(shards, log) if small else []
    log(f"scale: serial SEP over {rows:,} rows in a pinned worker ...")
    ((_, serial),) = list(pinned_results(serial_fit, [(int(rows), int(epochs), int(hidden))], workers=1))
    log(f"scale: serial test LL {serial['test_ll']:.4f}, {serial['fit_seconds']:.0f} s")
    X, y, Xt, yt, y_mean, y_std = scale_problem(int(rows))
    scale_rows = [serial]
    with ray_session():
        for k in shards:
            result = ray_fit(X, y, Xt, yt, y_mean, y_std, k, int(epochs), int(hidden))
            log(f"scale: {k} shards on Ray: test LL {result['test_ll']:.4f}, {result['fit_seconds']:.0f} s")
            scale_rows.append(result)
        del X, y
        costs = [round_cost(k, hidden=int(hidden)) for k in (1, *shards)]
    wall = time.perf_counter() - wall

    frame = pd.DataFrame([{"section": "schedule", **r} for r in small_rows] + [{"section": "scale", **r} for r in scale_rows]
                         + [{"section": "round-cost", **r} for r in costs])
    frame.to_csv(out / "results.csv", index=False)
    text = report(frame, command or f"probprop bench sharded --rows {rows} --out {out}", wall, started,
                  machine_info())
    (out / "report.md").write_text(text)
    return out


def report(frame, command: str, wall: float, started: str = "?", machine: dict | None = None) -> str:
    """The report of a run from its results table."""
    from probprop.bench.machine import report_header

    lines = report_header("Sharded stochastic EP: in process and on Ray", command, wall, started, machine)
    lines.append("")
    small = frame[frame["section"] == "schedule"]
    if len(small):
        lines += ["## 1. The schedule (4-10-1 network, 2,000 rows, 20 epochs, test LL, mean ± SE of 3 seeds)", "",
                  "| configuration | K | test LL | paired difference from serial SEP |", "|---|---|---|---|"]
        serial = small[small["config"] == "serial SEP"].set_index("seed")["test_ll"]
        for (config, k), group in small.groupby(["config", "shards"], sort=False):
            values = group.set_index("seed")["test_ll"]
            diff = values - serial.loc[values.index]
            mean, se = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
            cell = "-" if config == "serial SEP" else f"{diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f}"
            lines.append(f"| {config} | {int(k)} | {mean:.3f} ± {se:.3f} | {cell} |")
        lines.append("")
    scale = frame[frame["section"] == "scale"]
    if len(scale):
        rows = int(scale["rows"].iloc[0])
        epochs = int(scale["epochs"].iloc[0])
        base = scale[scale["shards"] == 1].iloc[0]
        lines += [(f"## 2. Scale: Friedman-1, {rows:,} training rows, {TEST_ROWS:,} test rows, 10-50-1, "
                  f"{epochs} epoch(s)"), "",
                  f"Test LL in y's units (the N(0, 1) noise alone allows at best {NOISE_LL:.3f}).", "",
                  "| fit | K | test LL | difference from serial | RMSE | epochs (s) | set-up (s) | rows/s | speed-up |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for _, r in scale.iterrows():
            label = "serial SEP, one pinned process" if r["shards"] == 1 else "sharded SEP, one Ray actor per shard"
            diff = "-" if r["shards"] == 1 else f"{r['test_ll'] - base['test_ll']:+.4f}"
            lines.append(f"| {label} | {int(r['shards'])} | {r['test_ll']:.4f} | {diff} | {r['rmse']:.4f} | "
                         f"{r['fit_seconds']:.1f} | {r['setup_seconds']:.1f} | {r['rows_per_second']:,.0f} | "
                         f"{base['fit_seconds'] / r['fit_seconds']:.2f}x |")
        lines.append("")
    cost = frame[frame["section"] == "round-cost"]
    if len(cost):
        lines += ["## 3. Ray's cost per round (one row per shard per round, 10-50-1)", "",
                  "| K | rounds | ms per round |", "|---|---|---|"]
        for _, r in cost.iterrows():
            lines.append(f"| {int(r['shards'])} | {int(r['rounds'])} | {1000 * r['seconds_per_round']:.1f} |")
        lines.append("")
        if len(scale):
            serial = scale[scale["shards"] == 1].iloc[0]
            per_row = serial["fit_seconds"] / (serial["rows"] * serial["epochs"])
            per_round = float(cost["seconds_per_round"].max())
            from probprop.learners.pbp_sharded import SYNCS_PER_SHARD as syncs
            lines += ["### Projection to a cluster", "",
                      (f"An epoch over N rows with K shards on K cores costs about N t / K + {syncs} K c: t = "
                      f"{1e6 * per_row:.1f} µs per SEP update (serial row above), c = {1000 * per_round:.1f} ms per "
                      "round (the largest measured above; between machines add the network's round trip and the "
                      f"posterior's transfer, 2 x 8 bytes per weight each way). With the default {syncs} K rounds per "
                      f"epoch the rounds grow with K, so the best K is about sqrt(N t / ({syncs} c)):"), "",
                      "| N | K = 8 | K = 32 | K = 128 | best K |", "|---|---|---|---|---|"]
            for n in (10**7, 10**8, 10**9):
                cells = [f"{n * per_row / k + syncs * k * per_round:,.0f} s" for k in (8, 32, 128)]
                best = int(np.sqrt(n * per_row / (syncs * per_round)))
                lines.append(f"| {n:.0e} | " + " | ".join(cells) + f" | {best} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probprop.bench.sharded", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", default="2,4,8")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--no-small", action="store_true", help="Skip the small network's schedule table.")
    parser.add_argument("--out", default="docs/benchmarks/sharded")
    args = parser.parse_args(argv)
    run(args.out, rows=args.rows, shards=[int(k) for k in args.shards.split(",")], epochs=args.epochs,
        small=not args.no_small)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

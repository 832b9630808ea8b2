"""The engine on an accelerator against the CPU of the same machine, in one command.

    python -m probprop.bench.accelerator [--out DIR]      # or: probprop bench accelerator

Needs a JAX build that sees a GPU (e.g. ``jax[cuda13]``); on a machine without one it says so
and exits with status 2. For each of the CPU and the first accelerator, in the same process:

- one PBP epoch (13-50-1, 455 points: Boston's shape) as a single stream: the ADF updates are
  sequential, so this measures per-update latency;
- 20 such networks trained side by side (``vmap`` over 20 splits): throughput;
- the predictive moments of 2^20 rows (one deterministic pass);
- the MC-dropout grid search program (12 (p, tau) points, 20 epochs of wine's 1439 x 11, batch 128);
- agreement: one float64 PBP epoch on both devices from the same state and data;
- minibatch (parallel) SEP: one epoch of sharded stochastic EP (:mod:`probprop.learners.pbp_sharded`,
  K shards' updates side by side in one vmapped program) over 2^16 Friedman-1 rows, 10-50-1, for
  K = 1 (serial SEP), 16 and 256, on both devices: rows per second, test LL, agreement;
- the sharded fit at scale, on the accelerator only: one epoch over 10^7 Friedman-1 rows (the
  problem of ``probprop bench sharded``) with K = 64, 256 and 1024 shards (and three epochs with
  K = 1024), against serial SEP on
  this machine's CPU (rows per second from the section above) and serial SEP's test LL over the
  same rows from ``docs/benchmarks/sharded/results.csv`` where the checkout has it.

The CPU here is whatever the machine offers to one unpinned process (XLA may use several cores),
so the ratio is the practical one for that machine, not a per-core comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

N_SPLITS = 20
PREDICT_ROWS = 1 << 20
SHARD_ROWS = 1 << 16
SHARD_COUNTS = (1, 16, 256)
SCALE_ROWS = 10_000_000
SCALE_SHARDS = (64, 256, 1024)
#: the shard count of the section at scale that is also run for more epochs, and how many
SCALE_MORE_EPOCHS = (1024, 3)
SERIAL_RESULTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "sharded" / "results.csv"


def _best(fn, repeats: int = 3) -> float:
    import jax

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def measure(device) -> dict:
    """All timings on one JAX device; returns seconds and the weights after one PBP epoch."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from probprop.learners import mcdropout, pbp
    from probprop.learners.base import float64_process

    float64_process()  # a measurement process of probprop's own

    rng = np.random.default_rng(0)  # the same data on every device
    with jax.default_device(device):
        spec = pbp.PBPSpec(n_in=13, hidden=(50,))
        state = pbp.init(jax.random.PRNGKey(0), spec)
        X = jnp.asarray(rng.normal(size=(455, 13)))
        y = jnp.asarray(rng.normal(size=455))
        after = jax.block_until_ready(pbp.update(state, X, y))
        t_single = _best(lambda: pbp.update(state, X, y))

        states = jax.vmap(lambda k: pbp.init(k, spec))(jax.random.split(jax.random.PRNGKey(1), N_SPLITS))
        Xs = jnp.asarray(rng.normal(size=(N_SPLITS, 455, 13)))
        ys = jnp.asarray(rng.normal(size=(N_SPLITS, 455)))
        many = jax.jit(jax.vmap(pbp.update))
        jax.block_until_ready(many(states, Xs, ys))
        t_many = _best(lambda: many(states, Xs, ys))

        Xp = jnp.asarray(rng.normal(size=(PREDICT_ROWS, 13)))
        jax.block_until_ready(pbp.predict(state, Xp))
        t_predict = _best(lambda: pbp.predict(state, Xp))

        n = 1439
        Xm, ym = jnp.asarray(rng.normal(size=(n, 11))), jnp.asarray(rng.normal(size=n))
        mspec = mcdropout.MCDropoutSpec(n_in=11)
        base = mcdropout.init(jax.random.PRNGKey(0), mspec)
        ps = jnp.repeat(jnp.asarray(mcdropout.GRID_P), 3)
        taus = jnp.tile(jnp.asarray([2.5, 3.0, 3.5]), len(mcdropout.GRID_P))
        mask = jnp.ones(n, bool)

        def grid(epochs):
            return mcdropout._train_grid(mspec.structure, base.params, base.opt_state, base.key, Xm, ym, ps, taus,
                                         mask, epochs)

        jax.block_until_ready(grid(1))
        t_grid = _best(lambda: grid(20), 2)
    return {
        "device": str(device.device_kind),
        "platform": device.platform,
        "pbp_single_us_per_update": 1e6 * t_single / 455,
        "pbp_20_splits_us_per_split_update": 1e6 * t_many / (N_SPLITS * 455),
        "predict_seconds": t_predict,
        "mcdropout_grid_seconds": t_grid,
        "weights": [np.asarray(a) for a in (*after.means, *after.variances)],
    }


def sharded_epochs(device, problem, shard_counts, repeat: bool = True, epochs: int = 1) -> list[dict]:
    """``epochs`` epochs of sharded SEP (a fit's: the first with its warm-up rounds, K > 1) from the same
    start for each shard count, on ``device``: the first call's seconds (it compiles), the
    epochs' seconds (a second call, unless ``repeat`` is false), rows per second, test scores and
    the weights. ``problem``: :func:`probprop.bench.sharded.scale_problem`'s tuple."""
    import jax
    import numpy as np

    from probprop.bench.sharded import _scores, _start
    from probprop.learners import pbp_sharded

    X, y, Xt, yt, y_mean, y_std = problem
    results = []
    with jax.default_device(device):
        for k in shard_counts:
            state = _start(X.shape[1], 50, 0)
            shards = pbp_sharded.split_rows(X, y, k)
            sites = pbp_sharded.init_sites(state, k)
            times = []
            for _ in range(2 if repeat else 1):
                start = time.perf_counter()
                out, _ = pbp_sharded.run_epochs(state, sites, shards, epochs)
                jax.block_until_ready(out)
                times.append(time.perf_counter() - start)
            results.append({"shards": int(k), "rows": len(y), "epochs": int(epochs), "first_call_seconds": times[0],
                            "fit_seconds": times[-1], "rows_per_second": epochs * len(y) / times[-1],
                            **_scores(out, Xt, yt, y_mean, y_std),
                            "weights": [np.asarray(a) for a in (*out.means, *out.variances)]})
            print(f"  {device.platform}: K = {k}, {len(y):,} rows, {epochs} epoch(s): {times[-1]:.2f} s "
                  f"(first call {times[0]:.2f} s), test LL {results[-1]['test_ll']:.4f}", flush=True)
    return results


def relative_difference(a: list, b: list) -> float:
    """The largest difference between two lists of weight arrays, relative to each array's largest entry."""
    import numpy as np

    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(x))) for x, y in zip(a, b))


def serial_reference(rows: int, path: Path = SERIAL_RESULTS) -> float | None:
    """Serial SEP's test LL after one epoch over ``rows`` rows of the scale problem, from the
    committed sharded report (``probprop bench sharded``), or None where it has no such row."""
    import csv

    try:
        with open(path, newline="") as handle:
            records = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    for row in records:
        if row.get("section") != "scale" or row.get("config") != "serial SEP":
            continue
        try:
            if int(float(row["rows"])) == rows and float(row["epochs"]) == 1:
                return float(row["test_ll"])
        except (KeyError, TypeError, ValueError):  # a malformed row: not the one asked for
            continue
    return None


def sharded_report(cpu: list, acc: list, scale: list, platform: str, serial_ll: float | None) -> list[str]:
    """The two sharded sections of the report (module docstring), as lines."""
    from probprop.learners.pbp_sharded import DAMPING_EXPONENT, FIRST_EPOCH_DAMPING_EXPONENT, SYNCS_PER_SHARD

    name = platform.upper()
    lines = [
        "",
        "## Minibatch (parallel) SEP: K shards' updates side by side",
        "",
        (f"One epoch (a fit's first: up to {SYNCS_PER_SHARD} K rounds, no more than the rows per shard, after the "
         f"warm-up's small ones, damping K^(-{FIRST_EPOCH_DAMPING_EXPONENT:g})) of sharded SEP over {cpu[0]['rows']:,} Friedman-1 rows, 10-50-1, from the same start on both "
         f"devices; K = 1 is serial SEP (one round of every row, no warm-up: the updates of `pbp.update`). "
         f"Seconds of a second call (the first compiles). Test LL over 100,000 test rows in y's units "
         f"(the noise alone allows at best -1.419)."),
        "",
        f"| K | CPU rows/s | {name} rows/s | {name} / CPU | test LL, CPU | test LL, {name} |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c, a in zip(cpu, acc):
        lines.append(f"| {c['shards']} | {c['rows_per_second']:,.0f} | {a['rows_per_second']:,.0f} | "
                     f"{a['rows_per_second'] / c['rows_per_second']:.2f} | {c['test_ll']:.4f} | {a['test_ll']:.4f} |")
    agree = {c["shards"]: relative_difference(c["weights"], a["weights"]) for c, a in zip(cpu, acc)}
    lines += ["", "Largest difference of the weights after the epoch between the devices, relative to the largest "
              "weight moment: " + ", ".join(f"K = {k}: {d:.1e}" for k, d in agree.items()) + "."]
    if not scale:
        return lines
    serial = next((c for c in cpu if c["shards"] == 1), None)
    rows = scale[0]["rows"]
    text = [(f"Epochs as above (the first with its warm-up rounds; the later ones damped K^(-{DAMPING_EXPONENT:g})) over {rows:,} Friedman-1 rows (`probprop bench "
             f"sharded`'s problem and start), {name} only; fit: seconds of a second call.")]
    if serial:
        text.append(f"Speed-up: rows per second (rows x epochs / fit) against serial SEP on this machine's CPU in "
                    f"this run (K = 1 above: {serial['rows_per_second']:,.0f} rows/s).")
    text.append("First call: the fit's first call, compiling what the rows above it have not compiled "
                "(the epochs after a fit's first are another program).")
    if serial_ll is not None:
        text.append(f"Serial SEP's test LL after one epoch over the same rows: {serial_ll:.4f} "
                    f"(docs/benchmarks/sharded, 2-core machine).")
    lines += ["", f"## The sharded fit at scale on the {name}", "", " ".join(text)]
    header = "| K | epochs | first call (s) | fit (s) | rows/s | speed-up | test LL | RMSE |"
    lines += ["", header + (" difference from serial SEP |" if serial_ll is not None else ""),
              "|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if serial_ll is not None else "")]
    for r in scale:
        speed = f"{r['rows_per_second'] / serial['rows_per_second']:.1f}x" if serial else "-"
        line = (f"| {r['shards']} | {r.get('epochs', 1)} | {r['first_call_seconds']:.1f} | {r['fit_seconds']:.2f} | "
                f"{r['rows_per_second']:,.0f} | {speed} | {r['test_ll']:.4f} | {r['rmse']:.4f} |")
        if serial_ll is not None:
            line += f" {r['test_ll'] - serial_ll:+.4f} |"
        lines.append(line)
    return lines


def report(cpu: dict, acc: dict, difference: float, command: str, sharded: list | None = None) -> str:
    rows = [
        ("PBP, one stream: µs per ADF update (13-50-1)", "pbp_single_us_per_update", "{:.2f}"),
        (f"PBP, {N_SPLITS} networks side by side: µs per update per network", "pbp_20_splits_us_per_split_update",
         "{:.2f}"),
        (f"predictive moments of {PREDICT_ROWS:,} rows (s)", "predict_seconds", "{:.4f}"),
        ("MC-dropout grid search, 12 points x 20 epochs of 1439 rows (s)", "mcdropout_grid_seconds", "{:.3f}"),
    ]
    lines = [
        "# probprop on an accelerator",
        "",
        f"Command: `{command}`. CPU: the same machine's processor as JAX sees it (one process, not pinned); "
        f"accelerator: {acc['device']}.",
        "",
        f"| measurement | CPU | {acc['platform'].upper()} | CPU / {acc['platform'].upper()} |",
        "|---|---:|---:|---:|",
    ]
    for label, key, fmt in rows:
        lines.append(f"| {label} | {fmt.format(cpu[key])} | {fmt.format(acc[key])} | {cpu[key] / acc[key]:.2f} |")
    lines += [
        "",
        f"One float64 PBP epoch from the same state and data: largest difference between the devices, relative "
        f"to the largest weight moment: **{difference:.1e}** (sums in another order).",
        "",
        "Reading: a single PBP stream is latency-bound (one small kernel after another per data point), so it "
        "belongs on the CPU; many networks at once (splits, ensembles, grid points) and large predictions "
        "are where the accelerator pays.",
    ]
    if sharded:
        lines += sharded
    lines.append("")
    return "\n".join(lines)


def scale_rows_problem(rows: int) -> str | None:
    """What is wrong with ``rows`` for the section at scale (the CLI and ``main`` ask), or None."""
    if rows < 0 or 0 < rows < max(SCALE_SHARDS):
        return f"must be 0 or at least {max(SCALE_SHARDS)} (one row per shard)"
    return None


def run(out=None, command: str | None = None, scale_rows: int = SCALE_ROWS, accelerator=None) -> int:
    """Every measurement of the module docstring; ``scale_rows`` 0 leaves out the section at scale.
    ``accelerator``: the device to set against the CPU (default: the first one JAX lists that is
    not a CPU; a CPU device here makes a dry run of the whole report)."""
    import jax

    accelerators = [accelerator] if accelerator is not None else [d for d in jax.devices() if d.platform != "cpu"]
    if not accelerators:
        print("no accelerator visible to JAX here (jax.devices() lists only CPUs); nothing to compare")
        return 2
    from probprop.bench.sharded import scale_problem

    cpu, acc = jax.devices("cpu")[0], accelerators[0]
    cpu_result = measure(cpu)
    acc_result = measure(acc)
    difference = relative_difference(cpu_result["weights"], acc_result["weights"])
    problem = scale_problem(SHARD_ROWS)
    sharded_cpu = sharded_epochs(cpu, problem, SHARD_COUNTS)
    sharded_acc = sharded_epochs(acc, problem, SHARD_COUNTS)
    scale = []
    if scale_rows:
        big = scale_problem(scale_rows)
        scale = sharded_epochs(acc, big, SCALE_SHARDS) + sharded_epochs(acc, big, SCALE_MORE_EPOCHS[:1],
                                                                          epochs=SCALE_MORE_EPOCHS[1])
    serial_ll = serial_reference(scale_rows) if scale_rows else None
    sections = sharded_report(sharded_cpu, sharded_acc, scale, acc.platform, serial_ll)
    text = report(cpu_result, acc_result, difference, command or "python -m probprop.bench.accelerator", sections)
    print(text)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "accelerator.md").write_text(text)
        strip = lambda r: {k: v for k, v in r.items() if k != "weights"}  # noqa: E731
        payload = {"cpu": strip(cpu_result), "accelerator": strip(acc_result), "max_relative_difference": difference,
                   "sharded": {"cpu": [strip(r) for r in sharded_cpu], "accelerator": [strip(r) for r in sharded_acc]},
                   "scale": [strip(r) for r in scale], "serial_sep_test_ll": serial_ll, "jax": jax.__version__}
        (out / "accelerator.json").write_text(json.dumps(payload, indent=2))
        print(f"wrote {out / 'accelerator.md'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probprop.bench.accelerator", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for accelerator.md and accelerator.json")
    parser.add_argument("--scale-rows", type=int, default=SCALE_ROWS,
                        help=f"rows of the sharded fit at scale (default {SCALE_ROWS:,}; 0 leaves it out)")
    args = parser.parse_args(argv)
    problem = scale_rows_problem(args.scale_rows)
    if problem:
        parser.error(f"--scale-rows {problem}")
    from probprop.learners.base import float64_process

    float64_process()
    return run(out=args.out, scale_rows=args.scale_rows)


if __name__ == "__main__":
    raise SystemExit(main())

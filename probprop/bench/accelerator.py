"""The engine on an accelerator against the CPU of the same machine, in one command.

    python -m probprop.bench.accelerator [--out DIR]      # or: probprop bench accelerator

Needs a JAX build that sees a GPU (e.g. ``jax[cuda13]``); on a machine without one it says so
and exits with status 2. For each of the CPU and the first accelerator, in the same process:

- one PBP epoch (13-50-1, 455 points: Boston's shape) as a single stream: the ADF updates are
  sequential, so this measures per-update latency;
- 20 such networks trained side by side (``vmap`` over 20 splits): throughput;
- the predictive moments of 2^20 rows (one deterministic pass);
- the MC-dropout grid search program (12 (p, tau) points, 20 epochs of wine's 1439 x 11, batch 128);
- agreement: one float64 PBP epoch on both devices from the same state and data.

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


def report(cpu: dict, acc: dict, difference: float, command: str) -> str:
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
        "",
    ]
    return "\n".join(lines)


def run(out=None, command: str | None = None) -> int:
    import jax
    import numpy as np

    accelerators = [d for d in jax.devices() if d.platform != "cpu"]
    if not accelerators:
        print("no accelerator visible to JAX here (jax.devices() lists only CPUs); nothing to compare")
        return 2
    cpu_result = measure(jax.devices("cpu")[0])
    acc_result = measure(accelerators[0])
    difference = max(
        float(np.max(np.abs(a - b)) / np.max(np.abs(a))) for a, b in zip(cpu_result["weights"], acc_result["weights"])
    )
    text = report(cpu_result, acc_result, difference, command or "python -m probprop.bench.accelerator")
    print(text)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "accelerator.md").write_text(text)
        strip = lambda r: {k: v for k, v in r.items() if k != "weights"}  # noqa: E731
        payload = {"cpu": strip(cpu_result), "accelerator": strip(acc_result), "max_relative_difference": difference,
                   "jax": jax.__version__}
        (out / "accelerator.json").write_text(json.dumps(payload, indent=2))
        print(f"wrote {out / 'accelerator.md'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probprop.bench.accelerator", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for accelerator.md and accelerator.json")
    args = parser.parse_args(argv)
    from probprop.learners.base import float64_process

    float64_process()
    return run(out=args.out)


if __name__ == "__main__":
    raise SystemExit(main())

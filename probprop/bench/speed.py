"""Update-throughput benchmark: the compiled PBP engine against the NumPy reference.

    python -m probprop.bench.speed [--out DIR] [--core 0] [--quick]

Each measurement runs in a fresh worker process pinned to one core (``sched_setaffinity``
before JAX is imported, XLA's intra-op threading off; both from :mod:`probprop.bench.machine`),
so the engine and the NumPy baseline see the same single core in the same command. Reported
per network (13-50-1, the Boston shape, and 9-100-1, the protein shape):

- compile time of one epoch (paid once per data shape),
- ADF updates per second of the per-point sweep (one ``lax.scan``), and of whole epochs
  (sweep + shuffling + the EP prior refinement), float64 and float32,
- the same updates in the plain NumPy reference (``probprop.learners.pbp_numpy``),
  and the speed-up of the engine over it,
- whole epochs of five networks trained together (``probprop.fit_together``: ``jax.vmap``
  of the update), against the same epochs one network at a time.

A second worker fits a 41,157-point 9-100-1 model (protein's training size) through
``PBPRegressor`` and reports its peak resident memory.

The cold start, as a user's script meets it: a fresh Python process (pinned, no other setting;
its modules' bytecode compiled beforehand, as an installed package's is) that imports probprop,
fits ``PBPRegressor(hidden=(50,), epochs=40)`` on 455 rows of 13 inputs
(Boston's shape) and predicts 51 rows; each stage timed, with an empty persistent compilation
cache and then with the cache that run left (``$PROBPROP_JAX_CACHE`` set to a fresh folder),
and a second fit of the same shape in the same process (the steady state). Three such pairs of
processes, each with a new empty cache; each stage's median and the range of the totals. Beside
it, ``import jax`` alone in a fresh process (the share of probprop's import that is JAX's) and,
within it, ml_dtypes (imported after NumPy), with both versions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from probprop.bench.machine import cpu_name, pin, thread_environment, usable_cores

NETWORKS = ((13, 50, 455), (9, 100, 41157))  # (inputs, hidden units, points per epoch)
TOGETHER = 5  # networks trained together in the batched measurement (probprop.fit_together)


def worker_env(cache: str) -> dict:
    """The environment of a measuring worker: one thread per library, no JAX or XLA settings
    of this process, and probprop's compilation cache at ``cache`` (``"off"``: none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    return {**env, **thread_environment(), "PROBPROP_JAX_CACHE": cache}


def run_in_pinned_worker(function: str, core: int, **kwargs) -> dict:
    """Run ``probprop.bench.speed.<function>(**kwargs)`` in a fresh process pinned to ``core``."""
    code = (
        "import json, sys\n"
        "from probprop.bench import speed\n"
        "from probprop.learners.base import float64_process\n"
        "float64_process()\n"
        f"print(json.dumps(speed.{function}(**json.loads(sys.argv[1]))))\n"
    )
    # no persistent cache: the compile times measured are compilations
    return _run_pinned([sys.executable, "-c", code, json.dumps(kwargs)], worker_env("off"), core, "benchmark")


def _run_pinned(argv: list[str], env: dict, core: int, what: str) -> dict:
    """Run ``argv`` in a fresh process pinned to ``core``; the JSON object on its last output line."""
    out = subprocess.run(argv, env=env, preexec_fn=lambda: pin(core), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best_time(fn, repeats: int, min_seconds: float = 0.0) -> float:
    """Best of at least ``repeats`` calls, repeated until ``min_seconds`` have passed, so that a
    short call (a 455-point epoch takes ~1.5 ms) is sampled over a noisy machine's quiet moments."""
    best, spent, calls = float("inf"), 0.0, 0
    while calls < repeats or spent < min_seconds:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
    return best


def kernels_per_update(compiled_text: str, unroll: int) -> float | None:
    """Kernels (fusions, copies, dots, reductions) XLA:CPU launches per ADF update in the loop
    body of a compiled :func:`probprop.learners.pbp.adf_sweep` (from its HLO text; ``None``
    if the text does not have the expected shape). The per-update cost on these CPUs is
    mostly one fixed overhead per kernel, so this is the engine's main diagnostic."""
    import re

    computations = re.findall(r"\n(%[\w.\-]+) \([^\n]*\n(.*?)\n}\n", "\n" + compiled_text, flags=re.S)
    kernel = re.compile(r"= [^=]*? (fusion|dot|custom-call|reduce|reduce-window|copy|select|concatenate)\(")
    counts = [len(kernel.findall(body)) for name, body in computations if "region_0" in name]
    return max(counts) / unroll if counts else None


def measure_network(n_in: int, hidden: int, n_points: int, numpy_points: int, repeats: int,
                    min_seconds: float = 2.0) -> dict:
    """Throughput of one network shape (runs inside a pinned worker)."""
    import jax
    import numpy as np

    from probprop.learners import pbp, pbp_numpy
    from probprop.learners.base import float64_process

    float64_process()  # runs in a worker process of probprop's own

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_points, n_in))
    y = np.tanh(X @ rng.normal(size=n_in) / np.sqrt(n_in)) + 0.1 * rng.normal(size=n_points)
    y = (y - y.mean()) / y.std()
    result = {"network": f"{n_in}-{hidden}-1", "points_per_epoch": n_points}
    sweep = jax.jit(pbp.adf_sweep)
    for dtype in ("float64", "float32"):
        state = pbp.init(jax.random.PRNGKey(0), pbp.PBPSpec(n_in=n_in, hidden=(hidden,), dtype=dtype))
        Xd = np.asarray(X, dtype)
        start = time.perf_counter()
        jax.block_until_ready(pbp.update(state, Xd, y).means)
        compile_s = time.perf_counter() - start
        jax.block_until_ready(sweep(state, Xd, y).means)
        t_sweep = _best_time(lambda: jax.block_until_ready(sweep(state, Xd, y).means), repeats, min_seconds)
        t_epoch = _best_time(lambda: jax.block_until_ready(pbp.update(state, Xd, y).means), repeats, min_seconds)
        kernels = kernels_per_update(sweep.lower(state, Xd, y).compile().as_text(), pbp.SWEEP_UNROLL)
        result[dtype] = {
            "kernels_per_update": kernels,
            "compile_s": compile_s,
            "sweep_updates_per_s": n_points / t_sweep,
            "us_per_update": 1e6 * t_sweep / n_points,
            "epoch_updates_per_s": n_points / t_epoch,
            "epoch_s": t_epoch,
        }
    # several networks at once, each on its own data (probprop.fit_together): whole epochs
    from probprop.learners.pbp_ensemble import _update_together

    spec = pbp.PBPSpec(n_in=n_in, hidden=(hidden,))
    states = jax.tree.map(lambda *leaves: np.stack(leaves),
                          *(pbp.init(jax.random.PRNGKey(k), spec) for k in range(TOGETHER)))
    Xb, yb = np.stack([np.roll(X, k, axis=0) for k in range(TOGETHER)]), np.stack([np.roll(y, k) for k in range(TOGETHER)])
    start = time.perf_counter()
    jax.block_until_ready(_update_together(states, Xb, yb).means)
    compile_s = time.perf_counter() - start
    t_batch = _best_time(lambda: jax.block_until_ready(_update_together(states, Xb, yb).means), repeats, min_seconds)
    result["together"] = {
        "networks": TOGETHER,
        "compile_s": compile_s,
        "epoch_updates_per_s": TOGETHER * n_points / t_batch,
        "us_per_update": 1e6 * t_batch / (TOGETHER * n_points),
        "speedup_vs_one": result["float64"]["epoch_s"] * TOGETHER / t_batch,
    }
    state = pbp.init(jax.random.PRNGKey(0), spec)
    k = min(numpy_points, n_points)
    t_numpy = _best_time(lambda: pbp_numpy.adf_sweep(pbp_numpy.from_state(state), X[:k], y[:k]), 2, min_seconds)
    result["numpy"] = {"sweep_updates_per_s": k / t_numpy, "us_per_update": 1e6 * t_numpy / k}
    result["speedup_vs_numpy"] = result["float64"]["sweep_updates_per_s"] / result["numpy"]["sweep_updates_per_s"]
    result["affinity"] = usable_cores()
    return result


def measure_fit_memory(n_points: int, n_in: int, hidden: int, epochs: int) -> dict:
    """Peak resident memory of a PBPRegressor fit (runs inside a pinned worker)."""
    import resource

    import numpy as np

    from probprop.estimators import PBPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_points, n_in))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n_points)
    start = time.perf_counter()
    PBPRegressor(hidden=(hidden,), epochs=epochs, random_state=0).fit(X, y)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"points": n_points, "network": f"{n_in}-{hidden}-1", "epochs": epochs,
            "fit_s": seconds, "peak_rss_mb": peak_kb / 1024}


COLD_START_SCRIPT = """
import json, time
start = time.perf_counter()
from probprop import PBPRegressor
import numpy as np
imported = time.perf_counter()
from jax import monitoring
compiled, traced, lowered = [], [], []  # (program, seconds): each compilation (or load from the
# cache), each trace to a jaxpr (eval_shape's too), each lowering to an MLIR module
stages = {"/jax/core/compile/backend_compile_duration": compiled,
          "/jax/core/compile/jaxpr_trace_duration": traced,
          "/jax/core/compile/jaxpr_to_mlir_module_duration": lowered}
def listen(event, secs, fun_name=None, **_):
    if event in stages:
        name = str(fun_name)
        stages[event].append((name if name.startswith("jit(") else f"jit({name})", secs))
monitoring.register_event_duration_secs_listener(listen)
rng = np.random.default_rng(0)
X = rng.normal(size=(506, 13))
y = X @ rng.normal(size=13) + np.sin(3 * X[:, 0]) + 0.3 * rng.normal(size=506)
X_train, y_train, X_test = X[:455], y[:455], X[455:]
t0 = time.perf_counter()
model = PBPRegressor(hidden=(50,), epochs=40, random_state=0).fit(X_train, y_train)
fitted = time.perf_counter()
model.predict(X_test, return_std=True)
predicted = time.perf_counter()
first_call = {"compiled": list(compiled), "traced": list(traced), "lowered": list(lowered)}
again = []
for seed in range(5):
    t = time.perf_counter()
    PBPRegressor(hidden=(50,), epochs=40, random_state=seed + 1).fit(X_train[: 440 + seed], y_train[: 440 + seed])
    again.append(time.perf_counter() - t)
print(json.dumps({"import_s": imported - start, "fit_s": fitted - t0, "predict_s": predicted - fitted,
                  "total_s": (imported - start) + (predicted - t0), "steady_fit_s": min(again),
                  "steady_rows": "440-444", **first_call}))
"""


COLD_START_REPEATS = 3


def bytecode_env(env: dict, folder: str) -> dict:
    """``env`` with Python's compiled bytecode kept in ``folder`` (``PYTHONPYCACHEPREFIX``) and
    written there: an installed package's modules come compiled (pip compiles them), so a user's
    import reads bytecode; under ``PYTHONDONTWRITEBYTECODE`` (set on some machines, this one
    included) every import of a source checkout compiles its modules again (probprop's: about
    0.1-0.2 s here), which is not what a user's first call pays."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": folder}


def measure_cold_start(core: int, repeats: int = COLD_START_REPEATS) -> dict:
    """The cold start (see the module docstring), ``repeats`` times, each with a fresh empty
    cache: ``{"empty": {...}, "warm": {...}, "runs": [...]}``. ``empty`` and ``warm`` hold each
    stage's median over the repeats (``import_s, fit_s, predict_s, total_s, steady_fit_s``) and
    ``total_range``, the fastest and slowest ``total_s``; ``runs`` every measurement. Every
    module's bytecode is compiled first into a temporary folder (:func:`bytecode_env`), by one
    untimed process that runs the same script with a compilation cache of its own."""
    import tempfile

    runs = []
    with tempfile.TemporaryDirectory(prefix="probprop-pyc-") as pyc:
        with tempfile.TemporaryDirectory(prefix="probprop-cache-") as cache:  # as the measured runs: cache on
            _run_pinned([sys.executable, "-c", COLD_START_SCRIPT], bytecode_env(worker_env(cache), pyc), core,
                        "bytecode")
        for _ in range(repeats):
            pair = {}
            with tempfile.TemporaryDirectory(prefix="probprop-cache-") as cache:
                env = bytecode_env(worker_env(cache), pyc)
                for case in ("empty", "warm"):
                    pair[case] = _run_pinned([sys.executable, "-c", COLD_START_SCRIPT], env, core, "cold-start")
                pair["cache_files"] = sum(1 for _ in Path(cache).rglob("*") if _.is_file())
            runs.append(pair)
        jax_import = measure_jax_import(core, env=bytecode_env(worker_env("off"), pyc))
    return {**summarise_cold_runs(runs), "jax_import": jax_import, "bytecode": True}


def summarise_cold_runs(runs: list[dict]) -> dict:
    """Each stage's median over the runs and the fastest and slowest total, per cache case."""
    out = {"runs": runs, "repeats": len(runs), "cache_files": runs[-1]["cache_files"]}
    stages = ("import_s", "fit_s", "predict_s", "total_s", "steady_fit_s")
    for case in ("empty", "warm"):
        out[case] = {s: float(np.median([r[case][s] for r in runs])) for s in stages}
        totals = [r[case]["total_s"] for r in runs]
        out[case]["total_range"] = (min(totals), max(totals))
        for key, name in (("compiled", "programs"), ("traced", "traced"), ("lowered", "lowered")):
            if all(key in r[case] for r in runs):
                out[case][name] = _program_medians([r[case][key] for r in runs])
    return out


def _numbered(pairs) -> dict:
    """``(name, seconds)`` pairs as ``{(name, k): seconds}``, k counting a name's entries from 1
    (in order): the k-th compilation of a program in one process pairs with its k-th in another."""
    seen: dict[str, int] = {}
    out = {}
    for name, secs in pairs:
        seen[name] = seen.get(name, 0) + 1
        out[(name, seen[name])] = secs
    return out


def _program_medians(runs: list[list]) -> list[tuple[str, float]]:
    """Each program's median seconds over the runs that compiled it (the i-th compilation of a
    name in one run pairs with the i-th of that name in the others), in first-seen order."""
    per_run = [_numbered(run) for run in runs]
    keys = list(dict.fromkeys(key for run in per_run for key in run))
    return [(name, float(np.median([r[(name, k)] for r in per_run if (name, k) in r]))) for name, k in keys]


def _stage_table(cold: dict) -> list[str]:
    """Report lines: each program's tracing and lowering (in the warm-cache processes, where they
    are what a first call pays beyond loading), its compilation with an empty cache and its load
    from a warm one (medians over the processes); none for a run that did not record them."""
    warm, empty = cold["warm"], cold["empty"]
    if not all(key in warm for key in ("traced", "lowered", "programs")) or "programs" not in empty:
        return []

    columns = [_numbered(warm["traced"]), _numbered(warm["lowered"]), _numbered(empty["programs"]),
               _numbered(warm["programs"])]
    keys = list(dict.fromkeys(key for column in columns for key in column))

    def cell(column, key):
        return "" if key not in column else f"{column[key]:.3f}"

    lines = ["", ("Each program's stages (medians over the processes; tracing and lowering in the warm-cache "
                  "processes, where they are what a first call pays besides loading; `jit(init_from_seed)` is "
                  "the memory check's `eval_shape`, traced only; the first program lowered in a process also "
                  "pays JAX's one-time set-up):"), "",
             "| program | trace (s) | lower (s) | compile, empty cache (s) | load, warm cache (s) |",
             "|---|---:|---:|---:|---:|"]
    for key in keys:
        name = key[0] if key[1] == 1 else f"{key[0]} ({key[1]})"
        lines.append(f"| `{name}` | " + " | ".join(cell(column, key) for column in columns) + " |")
    lines.append("| all | " + " | ".join(f"{sum(column.values()):.3f}" for column in columns) + " |")
    return lines


JAX_IMPORT_SCRIPT = """
import json, time
start = time.perf_counter()
import numpy
numpy_done = time.perf_counter()
import ml_dtypes
dtypes = time.perf_counter()
import jax
done = time.perf_counter()
print(json.dumps({"numpy_s": numpy_done - start, "ml_dtypes_s": dtypes - numpy_done, "jax_s": done - start,
                  "jax_version": jax.__version__, "ml_dtypes_version": ml_dtypes.__version__}))
"""


def measure_jax_import(core: int, repeats: int = COLD_START_REPEATS, env: dict | None = None) -> dict:
    """``import jax`` in a fresh pinned process (NumPy, then ml_dtypes, then jax: ``jax_s`` is the
    whole, ``numpy_s`` and ``ml_dtypes_s`` the first two parts), the fastest of ``repeats`` by
    ``jax_s``, with both versions and ``repeats``; ``env``: the workers' (default
    :func:`worker_env` without a cache)."""
    env = worker_env("off") if env is None else env
    runs = [_run_pinned([sys.executable, "-c", JAX_IMPORT_SCRIPT], env, core, "jax-import")
            for _ in range(repeats)]
    return {**min(runs, key=lambda r: r["jax_s"]), "repeats": repeats}


def report(results: list[dict], memory: dict, command: str, cold: dict | None = None) -> str:
    lines = [
        "# probprop update throughput",
        "",
        f"Command: `{command}` (one pinned core per worker; CPU: {cpu_name()}).",
        "",
        "Times are the best of repeated calls over at least two seconds per entry (a shared machine's "
        "quiet moments); an epoch of the 13-50-1 network is Boston-sized (455 points), so per-call "
        "overhead is included. Compile time is the first `update` call (ADF sweep and EP prior step).",
        "",
        "| network | engine | µs / update | updates / s (ADF sweep) | updates / s (whole epoch, with EP prior) "
        "| compile (s) | kernels / update |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for dtype in ("float64", "float32"):
            d = r[dtype]
            lines.append(
                f"| {r['network']} | JAX scan, {dtype} | {d['us_per_update']:.2f} | {d['sweep_updates_per_s']:,.0f} "
                f"| {d['epoch_updates_per_s']:,.0f} | {d['compile_s']:.2f} "
                f"| {'' if d.get('kernels_per_update') is None else format(d['kernels_per_update'], '.2f')} |"
            )
        t = r.get("together")
        if t:
            lines.append(
                f"| {r['network']} | {t['networks']} networks together (`fit_together`), float64 "
                f"| {t['us_per_update']:.2f} per network | | {t['epoch_updates_per_s']:,.0f} | {t['compile_s']:.2f} | |"
            )
        lines.append(
            f"| {r['network']} | NumPy reference, float64 | {r['numpy']['us_per_update']:.1f} "
            f"| {r['numpy']['sweep_updates_per_s']:,.0f} | | | |"
        )
    lines += ["", "Speed-up of the float64 engine over the NumPy reference, same command:", ""]
    for r in results:
        lines.append(f"- {r['network']}: **{r['speedup_vs_numpy']:.1f}x**")
    if all("together" in r for r in results):
        lines += ["", f"Whole epochs of {TOGETHER} networks trained together (`probprop.fit_together`, one batched "
                  "program, each network on its own data) against the same epochs one network at a time:", ""]
        for r in results:
            lines.append(f"- {r['network']}: **{r['together']['speedup_vs_one']:.2f}x** the updates per second")
    if cold:
        lines += [
            "",
            "## The first call",
            "",
            ("A fresh Python process on one pinned core: `from probprop import PBPRegressor`, fit 13-50-1 on "
             "455 rows (40 epochs, Boston's shape), predict 51 rows. \"empty\": the persistent compilation "
             "cache starts empty; \"warm\": a second process finds what the first left there "
             f"({cold['cache_files']} files). Steady state: the fastest of five more fits in the same process "
             "(440-444 rows: the row counts share one compiled program). "
             + ("Python's bytecode is compiled beforehand, as an installed package's is (one untimed process "
                "runs the same script first; `bytecode_env`). " if cold.get("bytecode") else "")
             + (f"Each column is the median of {cold['repeats']} such pairs of processes (each pair with a new "
                "empty cache), taken column by column, so the stages need not add up to the total; the range "
                "is the fastest and slowest total."
                if cold.get("repeats", 1) > 1 else "")),
            "",
            ("| cache | import (s) | first fit (s) | first predict (s) | import + fit + predict (s) | range (s) "
             "| steady-state fit (s) |"),
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for case in ("empty", "warm"):
            c = cold[case]
            low, high = c.get("total_range", (c["total_s"], c["total_s"]))
            lines.append(f"| {case} | {c['import_s']:.2f} | {c['fit_s']:.2f} | {c['predict_s']:.2f} | "
                         f"**{c['total_s']:.2f}** | {low:.2f}-{high:.2f} | {c['steady_fit_s']:.3f} |")
        programs = cold["empty"].get("programs")
        if programs:
            listed = ", ".join(f"`{name}` {secs:.2f} s" for name, secs in sorted(programs, key=lambda p: -p[1]))
            lines += ["", (f"With an empty cache the first fit and prediction compile {len(programs)} programs "
                           f"({sum(s for _, s in programs):.2f} s of compiling and storing them, tracing and lowering "
                           f"not included; medians over the processes): {listed}.")]
        lines += _stage_table(cold)
        jax_import = cold.get("jax_import")
        if jax_import:
            ml_dtypes_part = (f", {jax_import['ml_dtypes_s']:.2f} s of it ml_dtypes {jax_import['ml_dtypes_version']} "
                              f"(after NumPy, {jax_import['numpy_s']:.2f} s)" if "numpy_s" in jax_import else "")
            lines += ["", (f"Of the import, `import jax` alone takes {jax_import['jax_s']:.2f} s in a fresh process "
                           f"(jax {jax_import['jax_version']}){ml_dtypes_part}; the fastest of "
                           f"{jax_import.get('repeats', 1)} processes.")]
        boston = next((r for r in results if r["network"] == "13-50-1"), None)
        if boston:
            numpy_epochs = 40 * 455 * boston["numpy"]["us_per_update"] * 1e-6
            lines += ["", (f"For scale, same command: the NumPy reference needs {numpy_epochs:.2f} s for those 40 "
                           "epochs' ADF sweeps; the original C code takes about 0.14 s (issue 14's measurement, "
                           "not run here).")]
    lines += [
        "",
        f"Peak resident memory of a {memory['points']:,}-point {memory['network']} fit "
        f"({memory['epochs']} epochs, {memory['fit_s']:.1f} s): **{memory['peak_rss_mb']:.0f} MB**.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probprop.bench.speed", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for speed.md and speed.json")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin the workers to")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller memory fit")
    args = parser.parse_args(argv)
    return run(out=args.out, core=args.core, quick=args.quick)


def run(out=None, core: int = 0, quick: bool = False, command: str | None = None) -> int:
    repeats = 3 if quick else 7
    results = []
    for n_in, hidden, n_points in NETWORKS:
        if quick:
            n_points = min(n_points, 4096)
        print(f"measuring {n_in}-{hidden}-1 on core {core} ...", flush=True)
        results.append(
            run_in_pinned_worker(
                "measure_network", core, n_in=n_in, hidden=hidden, n_points=n_points,
                numpy_points=300 if quick else 1000, repeats=repeats,
                min_seconds=0.2 if quick else 2.0,
            )
        )
    print("measuring peak memory of a protein-sized fit ...", flush=True)
    memory = run_in_pinned_worker(
        "measure_fit_memory", core, n_points=41157, n_in=9, hidden=100, epochs=2 if quick else 20
    )
    print("measuring the cold start (fresh processes, empty then warm compilation cache) ...", flush=True)
    cold = measure_cold_start(core)
    text = report(results, memory, command or "python -m probprop.bench.speed" + (" --quick" if quick else ""), cold)
    print(text)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed.md").write_text(text)
        (out / "speed.json").write_text(json.dumps({"networks": results, "memory": memory, "cold_start": cold}, indent=2))
        print(f"wrote {out / 'speed.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

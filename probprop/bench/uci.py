"""The UCI regression benchmark: methods x datasets x splits, in a pool of pinned workers.

    probprop bench uci [--datasets all] [--splits all] [--methods pbp,bayesridge] [--workers N]

Protocol (Hernández-Lobato & Adams 2015, as described in pbp-reference.md §2): the fixed
90/10 splits of the prepared files, one hidden layer of ``n_hidden.txt`` units (50; 100 for
protein), ``n_epochs.txt`` epochs (40; 20 for protein), ``random_state`` = split index, inputs
and target standardised with training statistics (inside the estimator).

Each task (one method on one split) runs in a worker process of a ``spawn`` pool. Workers are
pinned to one core each: the parent sets its own affinity to the worker's core just before
starting it, so the child starts on that core before it imports anything (in particular
before JAX, which ``import probprop`` pulls in while the child unpickles its target); the
worker initializer then asserts the pin. XLA's intra-op threading is turned off through
``XLA_FLAGS`` in the environment the workers inherit, and BLAS/OpenMP use one thread. Compiled
XLA programs are kept in a persistent cache (``$PROBPROP_JAX_CACHE``, default
``~/.cache/probprop/jax``; set it to ``off`` to disable), so reruns skip most compilation.
Tasks are queued longest first, so the pool stays busy to the end.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BenchResult",
    "Task",
    "parse_splits",
    "resolve_datasets",
    "plan_tasks",
    "run_task",
    "run_bench",
    "worker_environment",
]

#: Environment given to the workers (on top of the parent's).
XLA_WORKER_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
JAX_CACHE_ENV = "PROBPROP_JAX_CACHE"


@dataclass(frozen=True)
class Task:
    id: int
    method: str
    dataset: str
    splits: tuple[int, ...]  # fitted together (one batched program) when more than one
    n_hidden: int
    n_epochs: int
    n_features: int
    n_train: int
    data_dir: str | None
    estimate_s: float


@dataclass
class BenchResult:
    rows: list[dict]
    failures: list[dict]
    skipped: list[str]
    wall_seconds: float
    out: Path | None = None
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Parsing the selection
# --------------------------------------------------------------------------------------


def parse_splits(spec) -> list[int] | None:
    """``"all"`` -> None; ``"0-4"``, ``"0,1,2"``, ``"0-2,7"`` -> sorted split indices."""
    if spec is None:
        return None
    if isinstance(spec, (list, tuple, range)):
        values = [int(s) for s in spec]
    else:
        text = str(spec).strip().lower()
        if text in ("", "all"):
            return None
        values = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            if match:
                lo, hi = int(match.group(1)), int(match.group(2))
                if lo > hi:
                    raise ValueError(f"bad split range {part!r}: start is after end")
                values.extend(range(lo, hi + 1))
            elif part.isdigit():
                values.append(int(part))
            else:
                raise ValueError(f"bad split spec {spec!r}: use 'all', a range like '0-4', or a list like '0,1,2'")
    if any(v < 0 for v in values):
        raise ValueError(f"split indices must be >= 0, got {spec!r}")
    if not values:
        raise ValueError(f"no split selected by {spec!r}")
    return sorted(set(values))


def resolve_datasets(spec) -> list[str]:
    """``"all"`` or a comma list of names/aliases -> folder names, in the papers' order."""
    from probprop.data import DATASETS, canonical_name

    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if not names or [n.lower() for n in names] == ["all"]:
        return list(DATASETS)
    canonical = [canonical_name(n) for n in names]  # ValueError listing the valid names
    chosen = set(canonical)
    return [d for d in DATASETS if d in chosen]


#: Splits of one dataset that a batchable method (``methods.BATCHED``) fits together by default.
BATCH_SPLITS = 5


def check_batch_splits(batch_splits) -> None:
    if isinstance(batch_splits, bool) or not isinstance(batch_splits, int) or batch_splits < 1:
        raise ValueError(f"batch_splits must be a positive integer, got {batch_splits!r}")


def plan_tasks(datasets, splits, methods, data_dir=None, epochs=None, download=False,
               batch_splits: int = BATCH_SPLITS):
    """Load the datasets (downloading if asked) and list the tasks, longest first.

    A method in ``methods.BATCHED`` gets one task per ``batch_splits`` consecutive splits of a
    dataset, fitted together as one batched program; other methods one task per split.

    Returns ``(tasks, skipped)`` where ``skipped`` holds one-line notes (unavailable methods,
    split indices a dataset does not have).
    """
    from probprop.bench.methods import (
        BATCHED,
        DatasetInfo,
        MethodUnavailable,
        check_available,
        estimated_seconds,
        resolve_methods,
    )
    from probprop.data import load_uci

    methods = resolve_methods(methods)
    datasets = resolve_datasets(datasets)
    wanted = parse_splits(splits)
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    check_batch_splits(batch_splits)

    skipped, runnable = [], []
    for name in methods:
        try:
            check_available(name)
            runnable.append(name)
        except MethodUnavailable as err:
            skipped.append(str(err))
    if not runnable:
        raise RuntimeError("no selected method can run here: " + "; ".join(skipped))

    tasks, n = [], 0
    data_dir = None if data_dir is None else str(data_dir)
    for dataset in datasets:
        ds = load_uci(dataset, data_dir=data_dir, download=download)
        available = range(ds.n_splits)
        chosen = list(available) if wanted is None else [k for k in wanted if k < ds.n_splits]
        if wanted is not None and len(chosen) < len(wanted):
            skipped.append(f"{dataset}: has {ds.n_splits} splits; skipped split(s) "
                           + ",".join(str(k) for k in wanted if k >= ds.n_splits))
        n_epochs = int(epochs) if epochs is not None else ds.n_epochs
        info = DatasetInfo(dataset, ds.n_hidden, n_epochs, ds.n_features, len(ds.train_indices[0]))
        for method in runnable:
            cost = estimated_seconds(method, info)
            size = batch_splits if method in BATCHED else 1
            for group in (tuple(chosen[i : i + size]) for i in range(0, len(chosen), size)):
                tasks.append(Task(n, method, dataset, group, ds.n_hidden, n_epochs, ds.n_features,
                                  len(ds.train_indices[group[0]]), data_dir, cost * len(group)))
                n += 1
    if not tasks:
        raise ValueError("the selection holds no task (check --splits against the datasets' split counts)")
    return order_tasks(tasks), skipped


def order_tasks(tasks: list) -> list:
    """Longest first, except that the first fit of each (method, dataset) comes before all the
    others: two workers then compile different programs at the start, and each later fit finds
    its program in the persistent XLA cache instead of compiling it a second time."""
    tasks = sorted(tasks, key=lambda t: (-t.estimate_s, t.id))  # within one cost: dataset, split order
    seen, first, rest = set(), [], []
    for task in tasks:
        group = (task.method, task.dataset)
        (rest if group in seen else first).append(task)
        seen.add(group)
    return first + rest


# --------------------------------------------------------------------------------------
# One task (runs inside a worker)
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _dataset(name: str, data_dir: str | None):
    """The dataset, parsed once per worker (a worker runs many splits of it in a row)."""
    from probprop.data import load_uci

    return load_uci(name, data_dir=data_dir)


def run_task(task: Task) -> list[dict]:
    """Fit and evaluate one method on the task's split(s); return one results row per split."""
    import numpy as np

    from probprop.bench.methods import BATCHED, METHODS, DatasetInfo
    from probprop.metrics import all_metrics

    ds = _dataset(task.dataset, task.data_dir)
    parts = [ds.split(k) for k in task.splits]
    info = DatasetInfo(task.dataset, task.n_hidden, task.n_epochs, task.n_features, len(parts[0][1]),
                       ds.tau_values, ds.dropout_rates)
    start = time.perf_counter()
    if len(parts) > 1:
        sets = [(X_train, y_train, X_test) for X_train, y_train, X_test, _ in parts]
        outputs = BATCHED[task.method](sets, info, list(task.splits))
    else:
        X_train, y_train, X_test, _ = parts[0]
        outputs = [METHODS[task.method](X_train, y_train, X_test, info, task.splits[0])]
    total = (time.perf_counter() - start) / len(parts)
    core = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    rows = []
    for split, (_, y_train, _, y_test), (mean, std, fit_seconds) in zip(task.splits, parts, outputs):
        mean, std = np.asarray(mean, np.float64).ravel(), np.asarray(std, np.float64).ravel()
        row = {
            "method": task.method,
            "dataset": task.dataset,
            "split": split,
            "n_train": len(y_train),
            "n_test": len(y_test),
            "n_hidden": task.n_hidden if task.method == "pbp" else None,
            "epochs": task.n_epochs if task.method == "pbp" else None,
            "seed": split,
        }
        row.update(all_metrics(y_test, mean, std))
        row["fit_seconds"] = float(fit_seconds)
        row["predict_seconds"] = float(total - fit_seconds)
        row["fitted_together"] = len(parts)
        row["core"] = core
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# The worker pool
# --------------------------------------------------------------------------------------


def worker_environment(base=None) -> dict:
    """The environment variables the workers need on top of ``base`` (default: os.environ)."""
    base = os.environ if base is None else base
    env = {
        "XLA_FLAGS": (base.get("XLA_FLAGS", "") + " " + XLA_WORKER_FLAGS).strip(),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if "JAX_COMPILATION_CACHE_DIR" not in base:
        cache = base.get(JAX_CACHE_ENV)
        if cache is None:
            xdg = base.get("XDG_CACHE_HOME")
            root = Path(xdg) if xdg else Path.home() / ".cache"
            cache = str(root / "probprop" / "jax")
        if cache.strip().lower() not in ("", "off", "0", "none", "false"):
            env["JAX_COMPILATION_CACHE_DIR"] = cache
            env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return env


def xla_cache_state(base=None) -> dict:
    """The workers' persistent XLA cache before a run: ``{"dir", "entries"}`` (``dir`` None when
    the cache is off), so that a report can say whether its fit times include compilation."""
    cache = worker_environment(base).get("JAX_COMPILATION_CACHE_DIR") or (base or os.environ).get(
        "JAX_COMPILATION_CACHE_DIR")
    if not cache:
        return {"dir": None, "entries": 0}
    path = Path(cache)
    entries = sum(1 for p in path.iterdir() if p.is_file()) if path.is_dir() else 0
    return {"dir": str(path), "entries": entries}


def _init_worker(core: int) -> None:
    """Pool initializer: pin to ``core`` (already inherited at spawn) and import the engine."""
    os.sched_setaffinity(0, {core})
    if XLA_WORKER_FLAGS not in os.environ.get("XLA_FLAGS", ""):
        raise RuntimeError("worker started without the single-thread XLA_FLAGS")
    import probprop  # noqa: F401  (JAX, float64)


def _worker_main(worker: int, core: int, tasks, results) -> None:
    parent = os.getppid()
    try:
        _init_worker(core)
    except BaseException:
        results.put(("init-failed", worker, None, traceback.format_exc(limit=5)))
        return
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the parent was killed: nobody will send more work
                return
            continue
        if task is None:
            break
        results.put(("start", worker, task.id, None))
        try:
            results.put(("done", worker, task.id, run_task(task)))
        except Exception as err:
            from probprop.bench.methods import MethodUnavailable

            detail = str(err) if isinstance(err, MethodUnavailable) else traceback.format_exc(limit=6)
            results.put(("failed", worker, task.id, detail))
    results.put(("exit", worker, None, None))


def _cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def next_task(pending: list, seen: set, started: set = frozenset(), finished: set = frozenset()):
    """The task a free worker runs next, by (method, dataset) group:

    1. a group nobody has started (``order_tasks``: its first fit, longest first), so that every
       program is compiled early, once, by one of the workers;
    2. a group this worker has run before (its program is traced and loaded here already);
    3. a group with a finished fit (its program is in the persistent XLA cache);
    4. anything left (a group another worker is still compiling: compiled twice).
    """
    group = lambda task: (task.method, task.dataset)  # noqa: E731
    for wanted in (lambda g: g not in started, lambda g: g in seen, lambda g: g in finished, lambda g: True):
        for task in pending:
            if wanted(group(task)):
                return task
    return None


def _start_workers(ctx, workers: int):
    """Spawn ``workers`` pinned worker processes, each with its own task queue."""
    result_q = ctx.Queue()
    queues = [ctx.Queue() for _ in range(workers)]
    cores = _cores()
    env = worker_environment()
    saved_env = {k: os.environ.get(k) for k in env}
    saved_mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    procs = []
    try:
        os.environ.update(env)
        for worker in range(workers):
            core = cores[worker % len(cores)]
            if saved_mask is not None:
                os.sched_setaffinity(0, {core})  # inherited by the child from its first instruction
            proc = ctx.Process(target=_worker_main, args=(worker, core, queues[worker], result_q),
                               name=f"probprop-bench-{worker}", daemon=True)
            proc.start()
            procs.append(proc)
    finally:
        if saved_mask is not None:
            os.sched_setaffinity(0, saved_mask)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return procs, queues, result_q


def _run_pool(plan, workers: int, progress: bool):
    """Start the workers, then call ``plan()`` for the task list (the workers import JAX while
    the datasets load), and hand out the tasks one at a time (:func:`next_task`).

    Returns ``(tasks, rows, failures)``."""
    import multiprocessing as mp

    from tqdm.auto import tqdm

    ctx = mp.get_context("spawn")
    procs, queues, result_q = _start_workers(ctx, workers)

    def stop_all():
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    try:
        tasks = plan()
    except BaseException:
        stop_all()
        raise
    by_id = {t.id: t for t in tasks}
    rows, failures = [], []
    pending = list(tasks)
    unfinished = set(by_id)
    running: dict[int, int] = {}
    seen: dict[int, set] = {w: set() for w in range(workers)}
    started, finished = set(), set()
    gone: set[int] = set()
    idle: set[int] = set()  # workers waiting for a task (told to stop only when all are done)

    def dispatch(worker: int) -> None:
        task = next_task(pending, seen[worker], started, finished)
        if task is None:
            idle.add(worker)
            return
        idle.discard(worker)
        pending.remove(task)
        seen[worker].add((task.method, task.dataset))
        started.add((task.method, task.dataset))
        running[worker] = task.id
        queues[worker].put(task)

    def finish(task_id: int, row_list=None, detail=None) -> None:
        unfinished.discard(task_id)
        task = by_id[task_id]
        finished.add((task.method, task.dataset))
        if row_list is not None:
            rows.extend(row_list)
            bar.set_postfix_str(f"{task.method}/{task.dataset}/{_splits_text(task)}", refresh=False)
        else:
            failures.extend(_failure(task, detail))
            bar.write(f"FAILED {task.method} {task.dataset} split {_splits_text(task)}: "
                      f"{str(detail).strip().splitlines()[-1] if str(detail).strip() else detail}")
        bar.update(len(task.splits))

    bar = tqdm(total=sum(len(t.splits) for t in tasks), desc="UCI bench", unit="fit", disable=not progress,
               dynamic_ncols=True)
    try:
        for worker in range(workers):
            dispatch(worker)
        while unfinished and len(gone) < len(procs):
            try:
                kind, worker, task_id, payload = result_q.get(timeout=0.5)
            except queue.Empty:
                for worker, proc in enumerate(procs):
                    if worker not in gone and not proc.is_alive():
                        gone.add(worker)
                        if worker in running:
                            finish(running.pop(worker), detail=f"worker died (exit code {proc.exitcode})")
                continue
            if kind in ("done", "failed"):
                running.pop(worker, None)
                if task_id in unfinished:
                    finish(task_id, payload if kind == "done" else None, None if kind == "done" else payload)
                dispatch(worker)
            elif kind == "init-failed":
                gone.add(worker)
                idle.discard(worker)
                failures.append({"method": "-", "dataset": "-", "split": -1, "error": f"worker {worker} failed to start:\n{payload}"})
                if worker in running:  # its task goes to another worker
                    pending.insert(0, by_id[running.pop(worker)])
                    for other in sorted(idle):
                        dispatch(other)
                        break
            elif kind == "exit":
                gone.add(worker)
    except BaseException:
        stop_all()
        raise
    finally:
        bar.close()
    for task_id in sorted(unfinished):
        failures.extend(_failure(by_id[task_id], "not run: no worker left"))
    for worker in range(workers):
        if worker not in gone:
            queues[worker].put(None)
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
    for q in (*queues, result_q):
        q.close()
        q.cancel_join_thread()
    return tasks, rows, failures


def _failure(task: Task, detail: str) -> list[dict]:
    """One failure row per split of the task."""
    return [{"method": task.method, "dataset": task.dataset, "split": k, "error": str(detail).strip()}
            for k in task.splits]


def _splits_text(task: Task) -> str:
    return ",".join(map(str, task.splits))


# --------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------


def run_bench(
    out="bench-out",
    datasets="all",
    splits="all",
    methods="pbp,bayesridge",
    workers: int | None = None,
    data_dir=None,
    epochs: int | None = None,
    download: bool = False,
    command: str | None = None,
    progress: bool = True,
    log=print,
    batch_splits: int = BATCH_SPLITS,
) -> BenchResult:
    """Run the benchmark and write ``results.csv``, ``report.md`` and the plots into ``out``.

    ``batch_splits``: how many splits of a dataset a batchable method (PBP) fits together as
    one batched program (1: each split on its own).

    Raises ValueError for an unknown dataset/method or a bad split spec (listing the valid
    values), FileNotFoundError if the data are not found.
    """
    import pandas as pd

    from probprop.bench import report

    start = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if workers is None:
        workers = len(_cores())
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    xla_cache = xla_cache_state()
    # the cheap checks before any process starts; loading the data overlaps the workers' start-up
    from probprop.bench.methods import resolve_methods

    resolve_methods(methods)
    resolve_datasets(datasets)
    parse_splits(splits)
    check_batch_splits(batch_splits)
    skipped: list[str] = []

    def plan():
        tasks, notes = plan_tasks(datasets, splits, methods, data_dir=data_dir, epochs=epochs,
                                  download=download, batch_splits=batch_splits)
        skipped.extend(notes)
        for note in notes:
            log(f"note: {note}")
        log(f"running {sum(len(t.splits) for t in tasks)} fits ({len({t.method for t in tasks})} method(s) x "
            f"{len({t.dataset for t in tasks})} dataset(s)) as {len(tasks)} task(s) on "
            f"{min(workers, len(tasks))} worker(s)")
        return tasks

    tasks, rows, failures = _run_pool(plan, workers, progress)
    wall = time.perf_counter() - start
    workers = min(workers, len(tasks))
    n_fits = sum(len(t.splits) for t in tasks)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["method", "dataset", "split"]
    frame = pd.DataFrame(rows)
    if len(frame):
        order = {name: i for i, name in enumerate(resolve_datasets("all"))}
        order.update({name: i for i, name in enumerate(dict.fromkeys(t.method for t in sorted(tasks, key=lambda t: t.id)))})
        frame = frame.sort_values(by=columns, key=lambda c: c.map(order) if c.name in ("dataset", "method") else c)
        frame = frame.reset_index(drop=True)
    else:
        frame = pd.DataFrame(columns=columns)
    frame.to_csv(out / "results.csv", index=False)
    if failures:
        pd.DataFrame(failures).to_csv(out / "failures.csv", index=False)
    elif (out / "failures.csv").exists():
        (out / "failures.csv").unlink()

    meta = {
        "wall_seconds": wall,
        "started": started,
        "command": command or default_command(),
        "workers": workers,
        "machine": report.machine_info(),
        "skipped": skipped,
        "failures": failures,
        "epochs_override": epochs,
        "n_tasks": len(tasks),
        "n_fits": n_fits,
        "batch_splits": batch_splits,
        "xla_cache": xla_cache,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    report.write_report(frame, out, meta)
    return BenchResult(rows=frame.to_dict("records"), failures=failures, skipped=skipped,
                       wall_seconds=wall, out=out, meta=meta)


def rerender(out) -> Path:
    """Write ``report.md`` and the plots again from a run's ``results.csv`` and ``meta.json``
    (after a change to the report code; the measurements themselves are not touched)."""
    import pandas as pd

    from probprop.bench import report

    out = Path(out)
    for name in ("results.csv", "meta.json"):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} not found: rerender needs a finished 'probprop bench uci' run")
    meta = json.loads((out / "meta.json").read_text())
    return report.write_report(pd.read_csv(out / "results.csv"), out, meta)


def default_command() -> str:
    """The command line of this process, as a user would type it."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("probprop", "probprop.exe"):
        argv[0] = "probprop"
    return shlex.join(argv)

"""The UCI benchmark's worker pool: pinned ``spawn`` processes that run tasks one at a time.

- :func:`run_task` is what a worker does with one :class:`~probprop.bench.plan.Task`: fit and
  evaluate the method on the task's split(s), one results row per split;
- :func:`run_pool` starts the workers, hands out the tasks (:func:`probprop.bench.plan.next_task`),
  collects rows and failures, hands the task of a worker that failed to start to another, and
  stops the workers at the end.

Workers are pinned to one core each: the parent sets its own affinity to the worker's core just
before starting it, so the child starts on that core before it imports anything (in particular
before JAX, which ``import probprop`` pulls in while the child unpickles its target); the worker
initializer then asserts the pin. Their environment (single-threaded XLA and BLAS, the
persistent XLA cache) is :func:`probprop.bench.machine.worker_environment`.
"""

from __future__ import annotations

import functools
import os
import queue
import time
import traceback

from probprop.bench.machine import XLA_WORKER_FLAGS, pin, usable_cores, worker_environment
from probprop.bench.plan import Task, next_task

__all__ = ["run_pool", "run_ray", "run_task"]


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
    held_out = []  # with post-hoc calibration: each split's calibration rows, predicted with the test rows
    if task.calibrate:
        from probprop.bench.calibrate import split_calibration

        for i, (k, (X_train, y_train, X_test, y_test)) in enumerate(zip(task.splits, parts)):
            fit_rows, cal_rows = split_calibration(len(y_train), k)
            held_out.append(y_train[cal_rows])
            parts[i] = (X_train[fit_rows], y_train[fit_rows], np.vstack([X_train[cal_rows], X_test]), y_test)
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
    core = ",".join(map(str, usable_cores()))
    rows = []
    for index, (split, (_, y_train, _, y_test), output) in enumerate(zip(task.splits, parts, outputs)):
        mean, std, fit_seconds, *extra = output  # an adapter may add columns it fills itself (methods docstring)
        extra = dict(extra[0]) if extra else {}
        mean, std = np.asarray(mean, np.float64).ravel(), np.asarray(std, np.float64).ravel()
        if task.calibrate:
            split_rows = _calibrated(task, split, len(y_train), held_out[index], y_test, mean, std, fit_seconds, total,
                                     core)
        else:
            row = {
                "method": task.method,
                "dataset": task.dataset,
                "split": split,
                "n_train": len(y_train),
                "n_test": len(y_test),
                # the width and epochs of the PBP family's protocol (pbp2 / pbp3: per hidden layer)
                "n_hidden": task.n_hidden if task.method.startswith("pbp") else None,
                "epochs": task.n_epochs if task.method.startswith("pbp") else None,
                "seed": split,
            }
            row.update(all_metrics(y_test, mean, std))
            row["fit_seconds"] = float(fit_seconds)
            row["predict_seconds"] = float(total - fit_seconds)
            row["fitted_together"] = len(parts)
            row["core"] = core
            split_rows = [row]
        rows += [{**row, **extra} for row in split_rows]
    return rows


def _calibrated(task: Task, split: int, n_fit: int, y_cal, y_test, mean, std, fit_seconds, total, core) -> list[dict]:
    """The rows of one split with post-hoc calibration (:mod:`probprop.bench.calibrate`): the
    model's predictions on the calibration rows come first, then the test rows."""
    from probprop.bench.calibrate import calibration_rows

    n_cal = len(y_cal)
    rows = calibration_rows(task.calibrate, mean[:n_cal], std[:n_cal], y_cal, mean[n_cal:], std[n_cal:], y_test)
    for row in rows:
        row.update({"method": task.method, "dataset": task.dataset, "split": split, "n_train": n_fit,
                    "n_calibration": n_cal, "n_test": len(y_test), "seed": split, "fit_seconds": float(fit_seconds),
                    "predict_seconds": float(total - fit_seconds), "fitted_together": len(task.splits), "core": core})
    return rows


# --------------------------------------------------------------------------------------
# The worker pool
# --------------------------------------------------------------------------------------


def _init_worker(core: int) -> None:
    """Pool initializer: pin to ``core`` (already inherited at spawn) and import the engine."""
    pin(core)
    if XLA_WORKER_FLAGS not in os.environ.get("XLA_FLAGS", ""):
        raise RuntimeError("worker started without the single-thread XLA_FLAGS")
    from probprop.learners.base import float64_process

    float64_process()  # a benchmark worker is probprop's own process


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


def _start_workers(ctx, workers: int):
    """Spawn ``workers`` pinned worker processes, each with its own task queue."""
    result_q = ctx.Queue()
    queues = [ctx.Queue() for _ in range(workers)]
    cores = usable_cores()
    env = worker_environment()
    saved_env = {k: os.environ.get(k) for k in env}
    saved_mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    procs = []
    try:
        os.environ.update(env)
        for worker in range(workers):
            core = cores[worker % len(cores)]
            if saved_mask is not None:
                pin(core)  # inherited by the child from its first instruction
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


def run_pool(plan, workers: int, progress: bool):
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
                failures.append({"method": "-", "dataset": "-", "split": -1,
                                 "error": f"worker {worker} failed to start:\n{payload}"})
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


def _ray_task(task: Task) -> list[dict]:
    """What a Ray worker runs for one task (:func:`run_task`; the worker's environment is
    :func:`probprop._workers.worker_environment`, set by :mod:`probprop.distributed`)."""
    return run_task(task)


def run_ray(plan, workers: int | None, progress: bool, address: str | None = None):
    """The same work as :func:`run_pool` as Ray tasks (:func:`probprop.distributed.map_tasks`):
    on the cluster at ``address``, or on a local one with ``workers`` CPUs. A task whose worker
    process dies is run again by Ray; each task's rows are taken once. Workers are not pinned
    (Ray places them). Returns ``(tasks, rows, failures)``."""
    from tqdm.auto import tqdm

    from probprop.distributed import map_tasks, require_ray

    require_ray()  # before the plan loads any data
    tasks = plan()
    rows, failures = [], []
    bar = tqdm(total=sum(len(t.splits) for t in tasks), desc="UCI bench (ray)", unit="fit", disable=not progress,
               dynamic_ncols=True)
    try:
        for outcome in map_tasks(_ray_task, [((task,), {}) for task in tasks], address=address, num_cpus=workers):
            task = tasks[outcome.index]
            if outcome.ok:
                rows.extend(outcome.value)
                bar.set_postfix_str(f"{task.method}/{task.dataset}/{_splits_text(task)}", refresh=False)
            else:
                failures.extend(_failure(task, outcome.error))
                bar.write(f"FAILED {task.method} {task.dataset} split {_splits_text(task)}: "
                          f"{outcome.error.strip().splitlines()[-1] if outcome.error.strip() else outcome.error}")
            bar.update(len(task.splits))
    finally:
        bar.close()
    return tasks, rows, failures


def _failure(task: Task, detail: str) -> list[dict]:
    """One failure row per split of the task."""
    return [{"method": task.method, "dataset": task.dataset, "split": k, "error": str(detail).strip()}
            for k in task.splits]


def _splits_text(task: Task) -> str:
    return ",".join(map(str, task.splits))

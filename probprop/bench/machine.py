"""The machine the benchmarks run on, and the set-up of their worker processes.

- :func:`machine_info` and :func:`cpu_name`: the probe a report prints (CPU model, cores,
  platform, package versions);
- :func:`usable_cores` and :func:`pin`: the cores this process may use, and pinning the calling
  process to one of them (``sched_setaffinity``);
- :func:`pinned_results` and :func:`pinned_graph`: jobs on a pool of worker processes, one pinned
  core each (the second for jobs that wait on others, e.g. an ensemble's scoring on its members);
- :func:`thread_environment` and :func:`worker_environment` (from :mod:`probprop._workers`, which
  the Ray backend shares): a single-threaded worker's environment variables, with the persistent
  XLA compilation cache; :func:`xla_cache_state` says what that cache holds.

Nothing here imports JAX: a worker is pinned and given its environment before it does.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from probprop._cache import CACHE_ENV
from probprop._workers import XLA_WORKER_FLAGS, thread_environment, worker_environment

__all__ = [
    "JAX_CACHE_ENV",
    "XLA_WORKER_FLAGS",
    "cpu_name",
    "machine_info",
    "pin",
    "pinned_graph",
    "pinned_results",
    "thread_environment",
    "usable_cores",
    "worker_environment",
    "xla_cache_state",
]

#: The variable naming the workers' persistent XLA cache folder (``off`` disables it).
JAX_CACHE_ENV = CACHE_ENV


# --------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU's model name (the first ``model name`` line of ``/proc/cpuinfo``); where that file
    cannot be read, ``platform.processor()``; ``"unknown"`` where neither names one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return platform.processor() or "unknown"
    return "unknown"


def machine_info() -> dict:
    """CPU, logical and usable cores, platform, Python and the versions of the benchmarked packages."""
    versions = {}
    for package in ("probprop", "jax", "numpy", "scikit-learn", "ngboost"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(usable_cores()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


# --------------------------------------------------------------------------------------
# Cores
# --------------------------------------------------------------------------------------



def report_header(title: str, command: str, wall: float, started: str = "?", machine: dict | None = None) -> list[str]:
    """The first lines of a benchmark report: its title, command, wall time, start and machine."""
    lines = [f"# {title}", "", f"- Command: `{command}`", f"- Total wall time: **{wall:.0f} s**", f"- Started: {started}"]
    if machine:
        lines.append(f"- Machine: {machine['cpu']}, {machine['logical_cores']} logical cores "
                     f"({machine['usable_cores']} usable); Python {machine['python']}; "
                     + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items()))
    return lines


def usable_cores() -> list[int]:
    """The cores this process may run on, sorted (all of ``os.cpu_count()`` where the platform
    has no affinity masks)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def jobs_at_a_time(workers: int) -> str:
    """How a report says its jobs ran: "two jobs at a time" for two pinned workers."""
    return {1: "one job at a time", 2: "two jobs at a time"}.get(workers, f"{workers} jobs at a time")


def pin(core: int) -> None:
    """Pin the calling process to ``core`` (its children inherit the mask from their first instruction)."""
    os.sched_setaffinity(0, {core})


#: The core a :func:`pinned_results` worker process was given when it started (None elsewhere).
_WORKER_CORE: int | None = None


def _die_with_parent(parent: int) -> None:
    """Ask Linux to end this process when the one that started it ends (``PR_SET_PDEATHSIG``), so
    that a benchmark killed in the middle does not leave its workers fitting on; end now if
    ``parent`` already went. Nothing elsewhere."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _take_core(cores, parent=None) -> None:
    """A :func:`pinned_results` worker's initializer: end with ``parent`` (the pool's process,
    :func:`_die_with_parent`), take one core of the queue for the process's life and pin to it
    (None, unpinned, should the pool ever start more processes than cores; the wait covers the
    queue's feeder thread, which writes a moment after put)."""
    import queue

    if parent is not None and sys.platform.startswith("linux"):
        _die_with_parent(parent)
    global _WORKER_CORE
    try:
        _WORKER_CORE = cores.get(timeout=10.0)
    except queue.Empty:
        _WORKER_CORE = None
    if _WORKER_CORE is not None:
        pin(_WORKER_CORE)


def _on_worker_core(fn, args):
    return fn(*args, core=_WORKER_CORE)


def pinned_results(fn, calls, workers: int):
    """Run ``fn(*args, core=c)`` for every ``args`` of ``calls`` on ``workers`` spawned processes,
    each pinned to its own usable core for its life (``c``: that core; ``fn`` may pin itself to
    it again); a job goes to whichever process is free, so jobs of unequal length never share a
    core. Yields ``(args, result)`` in the order of ``calls``."""
    calls = list(calls)
    finished, following = {}, 0
    for i, result in pinned_graph(fn, [(i, args, ()) for i, args in enumerate(calls)], workers):
        finished[i] = result
        while following in finished:
            yield calls[following], finished.pop(following)
            following += 1


def pinned_graph(fn, calls, workers: int, done=None, on_start=None):
    """:func:`pinned_results` for jobs that wait on others: ``calls`` is a list of ``(key, args,
    needs)``; a job starts once every job whose key is in ``needs`` has finished (or is in
    ``done``, a dict of results from before), and ``args`` may be a function of the results so
    far (``args(results)``, called in this process when the job starts) instead of a tuple. At
    most ``workers`` jobs run at once; a free worker takes the first job of ``calls`` that may
    start, so a job listed right after the ones it waits on runs as soon as they are done.
    Yields ``(key, result)`` as each job finishes; a job that raises stops the run (the running
    jobs finish, the waiting ones never start). ``on_start(key)``, if given, is called as each
    job is handed to a worker (to show progress)."""
    import itertools
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    results = dict(done or {})
    waiting = list(calls)
    keys = [key for key, _, _ in waiting]
    if len(set(keys)) != len(keys) or set(keys) & set(results):
        raise ValueError("every job needs a key of its own, not one of another job or of done")
    for key, _, needs in waiting:
        unknown = set(needs) - set(keys) - set(results)
        if unknown:
            raise ValueError(f"job {key!r} waits on jobs that are not there: {sorted(map(repr, unknown))}")
    cores = usable_cores()[: max(1, workers)]
    context = multiprocessing.get_context("spawn")
    free = context.Queue()
    for core in cores:
        free.put(core)
    with ProcessPoolExecutor(max_workers=len(cores), mp_context=context, initializer=_take_core,
                             initargs=(free, os.getpid())) as pool:
        running, started = {}, itertools.count()  # running: future -> (the how-manieth started, key)

        def fill():  # hand the first jobs that may start to the free workers
            while len(running) < len(cores):
                ready = next((i for i, (_, _, needs) in enumerate(waiting) if all(n in results for n in needs)),
                             None)
                if ready is None:
                    return
                key, args, _ = waiting.pop(ready)
                args = args(results) if callable(args) else args
                running[pool.submit(_on_worker_core, fn, args)] = (next(started), key)
                if on_start is not None:
                    on_start(key)

        fill()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            just_done = []
            for future in sorted(finished, key=lambda f: running[f][0]):
                _, key = running.pop(future)
                results[key] = future.result()
                just_done.append(key)
            fill()  # the next jobs start before the results are handed out
            for key in just_done:
                yield key, results[key]
        if waiting:
            raise ValueError(f"jobs wait on each other in a cycle: {[key for key, _, _ in waiting]}")


# --------------------------------------------------------------------------------------
# The workers' environment
# --------------------------------------------------------------------------------------


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

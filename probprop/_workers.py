"""The environment of a worker process: one thread, probprop's compilation cache.

Shared by the benchmark's pinned workers (:mod:`probprop.bench.machine`) and the Ray backend's
workers and actors (:mod:`probprop.distributed`). Nothing here imports JAX: a worker gets these
variables before it starts JAX.
"""

from __future__ import annotations

import os

from probprop._cache import CACHE_ENV, default_cache_dir

__all__ = ["XLA_WORKER_FLAGS", "thread_environment", "worker_environment"]

#: XLA flags of a single-threaded worker (appended to any ``XLA_FLAGS`` already set).
XLA_WORKER_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def thread_environment(base=None) -> dict:
    """The variables that keep a worker on one thread, on top of ``base`` (default: os.environ):
    ``XLA_FLAGS`` with :data:`XLA_WORKER_FLAGS` appended, and one OpenMP/OpenBLAS/MKL thread."""
    base = os.environ if base is None else base
    return {
        "XLA_FLAGS": (base.get("XLA_FLAGS", "") + " " + XLA_WORKER_FLAGS).strip(),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def worker_environment(base=None) -> dict:
    """The environment variables the UCI workers need on top of ``base`` (default: os.environ):
    :func:`thread_environment`, and the persistent XLA cache (``$PROBPROP_JAX_CACHE``, default
    ``~/.cache/probprop/jax``, ``off`` for none) unless ``JAX_COMPILATION_CACHE_DIR`` is set."""
    base = os.environ if base is None else base
    env = thread_environment(base)
    if "JAX_COMPILATION_CACHE_DIR" not in base:
        cache = default_cache_dir(base)
        if cache is not None:
            env["JAX_COMPILATION_CACHE_DIR"] = cache
            env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        else:  # the workers' probprop must not turn its default cache on either
            env[CACHE_ENV] = "off"
    return env



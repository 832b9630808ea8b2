"""Work beyond one process, on Ray (optional: ``pip install "probprop[ray]"``).

Two things a user outgrows one core with, and what probprop does for each:

- **Many fits** (splits x methods x hyperparameters x seeds): :func:`map_tasks` runs independent
  calls as Ray tasks on a cluster (``address``) or on a local one it starts; a task whose worker
  process dies is run again by Ray (``retries``), and each call's result is taken once, from the
  attempt that finished. ``probprop bench uci --backend ray`` and
  ``probprop.fit_together(..., backend="ray")`` go through it.
- **One fit on more rows than a core gets through**: :class:`RayShards` runs sharded stochastic EP
  (:mod:`probprop.learners.pbp_sharded`) with one Ray actor per shard holding its rows and its
  tied site. Each round the driver puts the global posterior in Ray's object store once, every
  actor makes SEP updates over its chunk of rows from it and returns its posterior, and the driver
  merges them (:func:`~probprop.learners.pbp_sharded.combine`) and, after an epoch's last round,
  runs the EP prior step. The driver keeps every shard's site as of the last finished round: an
  actor that dies is started again from it and the round is run again, so the fit goes on as if
  nothing happened (the tests kill one). The numbers are those of
  :func:`probprop.learners.pbp_sharded.epoch` with ``sequential=True`` to rounding (one shard:
  serial SEP to rounding).

Without an ``address`` a local cluster is started for the call, bound to 127.0.0.1 with as many
CPUs as this process may use (or ``num_cpus``), and shut down after it; inside a running
``ray.init`` the caller's cluster is used and left running. The workers of a cluster probprop
starts or joins get :func:`probprop._workers.worker_environment` (one thread each, probprop's
compilation cache); a cluster the caller joined first keeps the caller's settings.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from probprop._workers import worker_environment

__all__ = ["BACKENDS", "RayShards", "fit_sharded", "map_tasks", "ray_session", "require_ray"]

#: Where many fits or one sharded fit run: this process (or the benchmark's own local pool) or Ray.
BACKENDS = ("local", "ray")

RAY_MISSING = "Ray is not installed: pip install 'probprop[ray]' (or pip install ray) to use backend='ray'"


def check_backend(backend) -> str:
    """``backend`` checked: one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend


def require_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(RAY_MISSING) from err
    return ray


def _runtime_env() -> dict:
    return {"env_vars": worker_environment()}


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray, connected: to the one this process already joined, to the cluster at ``address``
    (default ``$RAY_ADDRESS``), or to a local one started here (127.0.0.1, ``num_cpus`` CPUs, default the usable cores) and shut
    down on exit. Yields the ``ray`` module."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = {"include_dashboard": False, "log_to_driver": False, "runtime_env": _runtime_env()}
    if address:
        ray.init(address=address, **options)
    else:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ray.init(num_cpus=int(num_cpus or cpus), _node_ip_address="127.0.0.1", **options)
    try:
        yield ray
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------------------
# Many independent calls
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One call's result: ``index`` in the calls given, ``value`` (when ``ok``) or ``error`` (the
    exception's text)."""

    index: int
    ok: bool
    value: object = None
    error: str = ""


def _call(fn, args, kwargs):
    from probprop.learners.base import float64_process

    float64_process()  # a Ray worker running probprop's work is probprop's own process
    return fn(*args, **kwargs)


def map_tasks(fn: Callable, calls: Iterable, address: str | None = None, num_cpus: int | None = None,
              retries: int = 3) -> Iterator[Outcome]:
    """``fn(*args, **kwargs)`` for every ``(args, kwargs)`` of ``calls`` as Ray tasks (one CPU
    each); yields an :class:`Outcome` per call as it finishes. A call whose worker process dies
    is retried up to ``retries`` times by Ray; an exception raised by ``fn`` is not retried (it
    would be raised again) and comes back as the outcome's ``error``. ``fn`` must be importable
    by the workers (a module-level function of an installed package)."""
    calls = [(tuple(args), dict(kwargs)) for args, kwargs in calls]
    with ray_session(address, num_cpus) as ray:
        remote = ray.remote(num_cpus=1, max_retries=int(retries), retry_exceptions=False)(_call)
        fn_ref = ray.put(fn)
        pending = {remote.remote(fn_ref, args, kwargs): i for i, (args, kwargs) in enumerate(calls)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    yield Outcome(index, True, ray.get(ref))
                except ray.exceptions.RayTaskError as err:
                    cause = err.as_instanceof_cause()
                    yield Outcome(index, False, error=_error_text(cause))
                except ray.exceptions.RayError as err:  # the worker died more often than retries
                    yield Outcome(index, False, error=f"{type(err).__name__}: {err}")


def _error_text(err: BaseException) -> str:
    """The message of the exception a task raised (Ray's traceback text stripped off)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    return str(err)


# --------------------------------------------------------------------------------------
# One fit over shards, one actor per shard
# --------------------------------------------------------------------------------------


class _ShardActor:
    """A shard's rows (padded, with their mask) and its tied site; runs its chunk of a round."""

    def __init__(self, X, y, mask, site):
        from probprop.learners.base import float64_process

        float64_process()
        import jax

        # on the device once: every round reads its rows from these (NumPy arrays would be handed over again each round)
        self.X, self.y, self.mask = jax.device_put(X), jax.device_put(y), mask
        self.size = int(np.sum(mask))
        self.n_points = float(self.size)
        self.site = site
        self._epoch = None  # (key, (syncs, warmup), shuffled order, round bounds) of the epoch in progress

    def ping(self) -> int:
        return os.getpid()

    def run(self, state, key, index: int, syncs: int, warmup: bool, damping: float):
        import jax

        from probprop.learners import pbp_sharded

        key = np.asarray(key)
        if self._epoch is None or self._epoch[1] != (syncs, warmup) or not np.array_equal(self._epoch[0], key):
            order = _programs()[0](key, self.mask)
            self._epoch = (key, (syncs, warmup), order, pbp_sharded.round_bounds(len(self.mask), syncs, warmup))
        _, _, order, (starts, lengths) = self._epoch
        count = int(pbp_sharded.round_counts(self.size, int(starts[index]), int(lengths[index])))
        out, self.site = _programs()[1](state, self.site, self.X, self.y, order, int(starts[index]), count,
                                        self.n_points, damping)
        return jax.device_get(out)


@functools.lru_cache(maxsize=1)
def _programs():
    """The pieces of a round, once per process: (a shard's shuffled order, an actor's step, combine:
    compiled here; finish_epoch: it runs serial PBP's prior-step program, compiled light)."""
    import jax

    from probprop.learners import pbp_sharded
    from probprop.learners._order import shuffled_order

    def shard_step(state, site, X, y, order, start, count, n_points, damping):
        """An actor's round: its pass over ``count`` rows of its shuffled ``order`` from ``start``,
        and its damped site."""
        out = pbp_sharded.local_pass(state, site, X, y, order, start, count, n_points)
        return out, pbp_sharded.damp_sites(site, out.tied, damping)

    return (jax.jit(shuffled_order), jax.jit(shard_step), jax.jit(pbp_sharded.combine),
            pbp_sharded.finish_epoch)  # finish_epoch: serial PBP's prior-step program


class RayShards:
    """Sharded SEP on Ray, one actor per shard (module docstring). Use as a context manager or
    call :meth:`close`; :meth:`epoch` runs one epoch. ``restarts`` counts actors started again."""

    def __init__(self, shards, sites, address: str | None = None, num_cpus: int | None = None):
        self._session = ray_session(address, num_cpus)
        self.ray = self._session.__enter__()
        self.actors = []
        try:
            self._setup(shards, sites)
        except BaseException:
            self.close()
            raise

    def _setup(self, shards, sites) -> None:
        # one CPU per actor, or an equal share when there are more shards than CPUs (all must run)
        cpus = float(self.ray.cluster_resources().get("CPU", 1.0))
        share = min(1.0, cpus / shards.n_shards)
        self._actor_class = self.ray.remote(num_cpus=share, max_restarts=0)(_ShardActor)
        self.shards = shards
        self.sites = sites
        self.sizes = np.asarray(shards.sizes, np.float64)
        self._rows = [tuple(self.ray.put(np.ascontiguousarray(a[k])) for a in (shards.X, shards.y, shards.mask))
                      for k in range(shards.n_shards)]
        self.actors = [self._start(k) for k in range(shards.n_shards)]
        self.restarts = 0
        self.rounds = 0
        #: called with the round's index before each round (monitoring; the tests kill an actor there)
        self.before_round: Callable | None = None
        self.ray.get([a.ping.remote() for a in self.actors])

    def _start(self, k: int):
        import jax

        site = jax.tree.map(lambda a: np.asarray(a[k]), self.sites)
        return self._actor_class.remote(*self._rows[k], site)

    def epoch(self, state, syncs: int | None = None, damping: float | None = None, warmup: bool = False):
        """One epoch: ``syncs`` rounds (default as :func:`~probprop.learners.pbp_sharded.schedule`;
        ``warmup``: a fit's first epoch: small rounds first with more than one shard,
        :func:`~probprop.learners.pbp_sharded.round_bounds`, and the first epoch's default
        damping), then the EP prior step. Returns the new state (the sites are kept in ``self.sites``)."""
        import jax

        from probprop.learners import pbp_sharded
        from probprop.learners.base import float64

        syncs, damping = pbp_sharded.schedule(self.shards.n_shards, self.shards.X.shape[1], syncs, damping,
                                              first=warmup)
        warmup = pbp_sharded.warms_up(self.shards.n_shards, warmup)

        @float64
        def run(state):
            _, _, combine, finish = _programs()
            key, keys = pbp_sharded.epoch_keys(state, self.shards.n_shards)
            keys = np.asarray(keys)
            sites = self.sites
            n_rounds = len(pbp_sharded.round_bounds(self.shards.X.shape[1], syncs, warmup)[0])
            for index in range(n_rounds):
                if self.before_round is not None:
                    self.before_round(index)
                broadcast = self.ray.put(jax.device_get(state))
                passes = self._round(broadcast, keys, index, syncs, warmup, damping)
                self.rounds += 1
                stacked = jax.tree.map(lambda *a: np.stack(a), *passes)
                state, sites = combine(state, sites, stacked, self.sizes, damping)
                self.sites = sites = jax.device_get(sites)
            return jax.device_get(finish(state, key))

        return run(state)

    def _round(self, broadcast, keys, index, syncs, warmup, damping) -> list:
        """Every shard's pass of round ``index``; an actor that died is started again from the last
        round's sites and runs the round again."""
        calls = {k: a.run.remote(broadcast, keys[k], index, syncs, warmup, damping) for k, a in enumerate(self.actors)}
        results: dict = {}
        for attempt in range(4):
            for k, ref in list(calls.items()):
                try:
                    results[k] = self.ray.get(ref)
                except self.ray.exceptions.RayActorError:
                    if attempt == 3:
                        raise
                    with contextlib.suppress(Exception):  # unreachable but alive: free its CPU share
                        self.ray.kill(self.actors[k], no_restart=True)
                    self.actors[k] = self._start(k)
                    self.restarts += 1
                    calls[k] = self.actors[k].run.remote(broadcast, keys[k], index, syncs, warmup, damping)
                    continue
                del calls[k]
            if not calls:
                break
        return [results[k] for k in range(len(self.actors))]

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors = []
        self._rows = []  # the shards' rows leave the object store (a cluster the caller runs keeps going)
        self._session.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fit_sharded(state, X, y, n_shards: int, epochs: int, syncs: int | None = None, damping: float | None = None,
                backend: str = "local", address: str | None = None, num_cpus: int | None = None,
                callback: Callable | None = None):
    """``epochs`` epochs of sharded SEP (:mod:`probprop.learners.pbp_sharded`) from ``state`` over
    (X, y) (standardised units) in ``n_shards`` contiguous shards, in this process
    (``backend="local"``: one vmapped program per epoch) or one Ray actor per shard
    (``backend="ray"``); with more than one shard the first epoch starts with small rounds
    (``warmup``) and is damped by 1/sqrt(K) unless ``damping`` is given. ``callback(epoch,
    state)`` after every epoch. Returns ``(state, sites)``."""
    from probprop.learners import pbp_sharded

    check_backend(backend)
    shards = pbp_sharded.split_rows(X, y, n_shards)
    sites = pbp_sharded.init_sites(state, n_shards)
    pbp_sharded.schedule(n_shards, shards.X.shape[1], syncs, damping)  # errors before any process starts
    if backend == "local":
        return pbp_sharded.run_epochs(state, sites, shards, epochs, syncs, damping, callback=callback)
    with RayShards(shards, sites, address, num_cpus) as runner:
        for e in range(int(epochs)):
            state = runner.epoch(state, syncs, damping, warmup=e == 0)
            if callback is not None:
                callback(e, state)
        return state, runner.sites

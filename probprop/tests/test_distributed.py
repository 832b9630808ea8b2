"""The Ray backend (:mod:`probprop.distributed`) on a real local Ray cluster (127.0.0.1, 2 CPUs):
many fits as Ray tasks equal the local backend's, a worker that dies is retried and counted once,
sharded SEP with one actor per shard equals the in-process emulation, and a killed actor is
restored from the last round's sites. Skipped where Ray is not installed."""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from probprop import distributed
from probprop.learners import pbp_sharded
from probprop.learners.tests.test_pbp_sharded import _network_problem

# ray.init starts its processes with fork + exec from this JAX process: harmless (exec follows)
pytestmark = pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")


def _close(a, b, rtol=1e-9):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-12)


# ------------------------------------------------------------------ without a cluster


def test_a_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'probprop\[ray\]'"):
        distributed.require_ray()
    X, y, start = _network_problem(n=20)
    with pytest.raises(ImportError, match="Ray is not installed"):
        distributed.fit_sharded(start, X, y, n_shards=2, epochs=1, backend="ray")
    from probprop import PBPRegressor

    model = PBPRegressor(inference="sep", shards=2, backend="ray", epochs=1)
    with pytest.raises(ImportError, match="Ray is not installed"):
        model.fit(X, y)
    assert not hasattr(model, "state_")  # nothing half-fitted to predict from


def test_backend_and_address_are_checked():
    X, y, start = _network_problem(n=20)
    with pytest.raises(ValueError, match="backend must be one of 'local', 'ray'"):
        distributed.fit_sharded(start, X, y, n_shards=2, epochs=1, backend="dask")
    from probprop import PBPRegressor, fit_together

    with pytest.raises(ValueError, match="backend must be one of"):
        fit_together([PBPRegressor()], [X], [y], backend="spark")
    with pytest.raises(ValueError, match="needs backend='ray'"):
        fit_together([PBPRegressor()], [X], [y], address="127.0.0.1:6379")
    # the local checks run before any cluster starts
    with pytest.raises(ValueError, match="data sets of one shape"):
        fit_together([PBPRegressor(), PBPRegressor()], [X, X[:, :2]], [y, y], backend="ray")
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        fit_together([PBPRegressor(epochs=0)], [X], [y], backend="ray")


def test_the_local_backend_is_the_in_process_epoch():
    X, y, start = _network_problem(n=60)
    a, sa = distributed.fit_sharded(start, X, y, n_shards=2, epochs=2, syncs=3)
    b, sb = pbp_sharded.fit(start, X, y, n_shards=2, epochs=2, syncs=3)
    _close((a.means, a.variances, sa), (b.means, b.variances, sb), rtol=0)


# ------------------------------------------------------------------ on a local cluster

@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (2 CPUs on 127.0.0.1); the library's calls join it.
    Skips the tests that need it where Ray is not installed (the ones above run anyway)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'probprop[ray]')")
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             runtime_env=distributed._runtime_env())
    yield ray
    ray.shutdown()


def _double(x):
    return 2 * x


def _fails(x):
    raise ValueError(f"no good: {x}")


def _dies_once(marker: str, value: int):
    """Kill the worker process on the first attempt (the marker file tells), succeed on the next."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return value


def test_tasks_return_once_each_errors_come_back_and_a_dead_worker_is_retried(cluster, tmp_path):
    outcomes = list(distributed.map_tasks(_double, [((i,), {}) for i in range(5)]))
    assert sorted(o.index for o in outcomes) == list(range(5))
    assert all(o.ok and o.value == 2 * o.index for o in outcomes)

    (failed,) = distributed.map_tasks(_fails, [((7,), {})])
    assert not failed.ok and "ValueError: no good: 7" in failed.error

    marker = tmp_path / "died"
    outcomes = list(distributed.map_tasks(_dies_once, [((str(marker), 41), {}), ((str(marker), 42), {})]))
    assert marker.exists()  # a worker did die
    assert sorted((o.index, o.ok, o.value) for o in outcomes) == [(0, True, 41), (1, True, 42)]


def test_sharded_sep_on_ray_equals_the_in_process_emulation_and_a_killed_actor_is_restored(cluster):
    """One set of three actors (each starts a process that imports JAX and compiles) checks both:
    the actors' epochs (the first with warm-up rounds, uneven shards of 34, 34 and 33 rows) equal
    the sequential in-process emulation, and an actor killed in the second epoch is restored from
    the last round's sites without changing a number. (One shard equals serial SEP bit for bit:
    probprop/learners/tests/test_pbp_sharded.py.)"""
    X, y, start = _network_problem(n=101)
    expected, expected_sites = pbp_sharded.fit(start, X, y, n_shards=3, epochs=2, syncs=5, sequential=True)

    killed = []

    def kill_in_the_second_epoch(index):
        if len(killed) == 0 and index == 2 and runner_epochs[0] == 1:
            cluster.kill(runner.actors[1], no_restart=True)
            killed.append(index)

    runner_epochs = [0]
    shards = pbp_sharded.split_rows(X, y, 3)
    with distributed.RayShards(shards, pbp_sharded.init_sites(start, 3)) as runner:
        runner.before_round = kill_in_the_second_epoch
        state = start
        for e in range(2):
            runner_epochs[0] = e
            state = runner.epoch(state, syncs=5, warmup=e == 0)
        assert killed == [2] and runner.restarts == 1
        _close((state.means, state.variances, state.noise, state.sites, state.tied, runner.sites),
               (expected.means, expected.variances, expected.noise, expected.sites, expected.tied, expected_sites))
    np.testing.assert_array_equal(np.asarray(state.key), np.asarray(expected.key))


@pytest.mark.slow
def test_bench_uci_on_ray_equals_the_local_backend(cluster, tmp_path):
    from probprop.bench.uci import run_bench
    from probprop.data import load_uci

    try:
        load_uci("yacht")
    except FileNotFoundError as err:
        pytest.skip(f"UCI data for 'yacht' not available: {err}")
    frames = {}
    for backend in ("local", "ray"):
        out = tmp_path / backend
        workers = 1 if backend == "local" else 2  # one local worker: one process to start and compile
        result = run_bench(out=out, datasets="yacht", splits="0,1", methods="pbp,bayesridge", workers=workers, epochs=3,
                           progress=False, log=lambda _: None, backend=backend)
        assert not result.failures, result.failures
        frames[backend] = pd.read_csv(out / "results.csv").set_index(["method", "dataset", "split"]).sort_index()
    local, remote = frames["local"], frames["ray"]
    assert len(local) == len(remote) == 4
    for column in ("rmse", "log_likelihood", "crps", "coverage_90"):
        np.testing.assert_allclose(remote[column], local[column], rtol=1e-9, err_msg=column)
    assert "Ray tasks" in (tmp_path / "ray" / "report.md").read_text()


def test_fit_together_on_ray_equals_the_local_fit(cluster):
    from probprop import PBPRegressor, fit_together

    rng = np.random.default_rng(0)
    Xs = [rng.normal(size=(40, 3)) for _ in range(3)]
    ys = [X @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.normal(size=40) for X in Xs]
    local = fit_together([PBPRegressor(hidden=8, epochs=3, random_state=s) for s in range(3)], Xs, ys)
    models = [PBPRegressor(hidden=8, epochs=3, random_state=s) for s in range(3)]
    remote = fit_together(models, Xs, ys, backend="ray")
    assert remote is not None and all(a is b for a, b in zip(remote, models))  # fitted in place
    for a, b, X in zip(local, remote, Xs):
        np.testing.assert_allclose(b.predict(X), a.predict(X), rtol=1e-9)
        np.testing.assert_allclose(b.predict_dist(X).std, a.predict_dist(X).std, rtol=1e-7)


# ------------------------------------------------------------------ the estimator's shards


def test_the_estimator_fits_by_sharded_sep_in_process_and_on_ray(cluster):
    from probprop import PBPRegressor

    X, y, _ = _network_problem(n=80)
    y = 3.0 * y + 10.0  # the estimator standardises: its state is in standardised units
    params = {"hidden": 8, "epochs": 2, "inference": "sep", "random_state": 0}
    # (one shard is serial SEP bit for bit: probprop/learners/tests/test_pbp_sharded.py)
    local = PBPRegressor(**params, shards=2).fit(X, y)
    model = PBPRegressor(**params, shards=2, backend="ray").fit(X, y)
    begun = PBPRegressor(**params, shards=2)  # the estimator's start: its standardisation and initial state
    Xs, ys = begun._begin(*begun._validate_X_y(X, y, reset=True, min_samples=2))
    expected, _ = pbp_sharded.fit(begun.state_, Xs, ys, n_shards=2, epochs=2)
    _close(local.state_.means, expected.means, rtol=1e-12)
    _close((model.state_.means, model.state_.variances, model.state_.tied),
           (local.state_.means, local.state_.variances, local.state_.tied))  # Ray: the same to rounding
    np.testing.assert_array_equal(np.asarray(model.state_.key), np.asarray(local.state_.key))
    np.testing.assert_allclose(model.predict(X), local.predict(X), rtol=1e-9)
    assert len(model.rejected_per_epoch_) == 2 and model.n_rejected_ == sum(model.rejected_per_epoch_)


def test_the_estimators_shard_parameters_are_checked():
    from probprop import PBPRegressor

    X, y, _ = _network_problem(n=20)
    with pytest.raises(ValueError, match="shards needs inference='sep'"):
        PBPRegressor(shards=2).fit(X, y)
    with pytest.raises(ValueError, match="shards must be a positive int"):
        PBPRegressor(inference="sep", shards=0).fit(X, y)
    with pytest.raises(ValueError, match="runs the shards of a sharded fit"):
        PBPRegressor(inference="sep", backend="ray").fit(X, y)
    with pytest.raises(ValueError, match="backend must be one of"):
        PBPRegressor(inference="sep", shards=2, backend="dask").fit(X, y)
    with pytest.raises(ValueError, match="more than the 20 rows"):
        PBPRegressor(inference="sep", shards=21).fit(X, y)

"""The benchmarks' process pool (:func:`probprop.bench.machine.pinned_results` and ``pinned_graph``)."""

import os
import sys
import time
from pathlib import Path

import pytest

from probprop.bench.machine import pin, pinned_results, usable_cores


def _where(marker, long, core=None):
    """A job that pins itself to the core it is given, as the benchmarks' jobs do. The long one
    waits (at most a minute) until a short one has run on the other worker, then runs on for a
    second, so the short ones after it run while it does, however slowly the workers start."""
    pin(core)
    start = time.time()
    if long:
        deadline = start + 60.0
        while not Path(marker).exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
    else:
        Path(marker).touch()
        time.sleep(0.05)
    return {"core": core, "mask": sorted(os.sched_getaffinity(0)), "start": start, "end": time.time()}


def test_pinned_results_come_back_in_call_order_and_jobs_never_share_a_core(tmp_path):
    """One long job and several short ones on two workers: the short ones all run on the other
    worker's core while the long one runs (job i on core i mod 2, as the pool once pinned them,
    put the third job on the long job's core while it ran)."""
    cores = usable_cores()
    if len(cores) < 2 or not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs two usable cores and affinity masks")
    marker = str(tmp_path / "a-short-job-ran")
    calls = [(marker, True)] + [(marker, False)] * 4
    results = list(pinned_results(_where, calls, workers=2))
    assert [args for args, _ in results] == calls
    runs = [result for _, result in results]
    assert all(run["mask"] == [run["core"]] for run in runs)
    assert {run["core"] for run in runs} == set(cores[:2])
    overlapping = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]
                   if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping  # the long job ran beside short ones
    assert all(a["core"] != b["core"] for a, b in overlapping)


def _echo(*args, core=None):
    if args == ("fail",):
        raise RuntimeError("this job failed")
    return args


def _sum_of(keys, results):
    """A job's arguments from the results it waited on."""
    return (sum(results[key][0] for key in keys),)


def test_a_job_waits_for_its_needs_then_goes_before_later_jobs_and_sees_their_results():
    """One worker, so that the order is the scheduler's alone: a job listed before the jobs it
    waits on starts once they are done, ahead of the jobs listed after it; its arguments come
    from their results (and from ``done``, results of before)."""
    from functools import partial

    from probprop.bench.machine import pinned_graph

    calls = [("sum", partial(_sum_of, ("a", "b", "old")), ("a", "b", "old")), ("a", (1,), ()), ("b", (2,), ()),
             ("other", (7,), ())]
    starts = []
    assert list(pinned_graph(_echo, calls, workers=1, done={"old": (10,)}, on_start=starts.append)) == [
        ("a", (1,)), ("b", (2,)), ("sum", (13,)), ("other", (7,))]
    assert starts == ["a", "b", "sum", "other"]


def test_pinned_graph_refuses_unknown_needs_shared_keys_and_cycles_and_stops_at_a_failed_job():
    from probprop.bench.machine import pinned_graph

    with pytest.raises(ValueError, match="not there.*'b'"):
        list(pinned_graph(_echo, [("a", (), ("b",))], workers=1))
    with pytest.raises(ValueError, match="key of its own"):
        list(pinned_graph(_echo, [("a", (), ()), ("a", (), ())], workers=1))
    with pytest.raises(ValueError, match="key of its own"):
        list(pinned_graph(_echo, [("a", (), ())], workers=1, done={"a": 1}))
    with pytest.raises(ValueError, match=r"cycle: \['b', 'c'\]"):
        list(pinned_graph(_echo, [("a", (1,), ()), ("b", (), ("c",)), ("c", (), ("b",))], workers=1))
    seen = []
    with pytest.raises(RuntimeError, match="this job failed"):
        for key, _ in pinned_graph(_echo, [("a", (1,), ()), ("bad", ("fail",), ()), ("after", (), ("bad",))], workers=1):
            seen.append(key)
    assert seen == ["a"]


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _sleep_long(pid_file, core=None):
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_ends_with_the_process_that_ran_the_pool(tmp_path):
    """A benchmark killed in the middle (SIGKILL: no clean-up of its own) takes its workers with it
    instead of leaving them fitting on a core."""
    import signal
    import subprocess

    pid_file = tmp_path / "worker.pid"
    code = ("from probprop.bench.machine import pinned_results\n"
            "from probprop.bench.tests.test_machine import _sleep_long\n"
            f"list(pinned_results(_sleep_long, [({str(pid_file)!r},)], workers=1))\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 20
        while time.time() < deadline:
            if not _running(worker):
                return
            time.sleep(0.05)
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived the killed process that ran the pool")
    finally:
        parent.kill()

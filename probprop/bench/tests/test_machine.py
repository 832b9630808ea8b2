"""The benchmarks' process pool (:func:`probprop.bench.machine.pinned_results`)."""

import pytest

from probprop.bench.machine import pinned_results, usable_cores


def test_pinned_results_come_back_in_call_order_with_the_cores_taken_in_turn():
    cores = usable_cores()
    if len(cores) < 2:
        pytest.skip("needs two usable cores")
    calls = [([(key, i)],) for i, key in enumerate("abcde")]
    # dict([(key, value)], core=c) -> {key: value, "core": c}: a picklable job that imports nothing
    results = list(pinned_results(dict, calls, workers=2))
    assert [args for args, _ in results] == calls
    assert [result for _, result in results] == [{key: i, "core": cores[i % 2]} for i, key in enumerate("abcde")]

"""Test-session setup for every test under probprop/.

The tests build float64 JAX arrays by hand, so the session enables 64-bit types for the whole
process. probprop itself never does that on import: it enables them only for the duration of its
own calls (``probprop/tests/test_x64_scope.py`` checks this in a fresh process).
"""

import gc

import jax
import pytest

from probprop.learners.base import float64_process

float64_process()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module. XLA:CPU maps each program's machine
    code into memory: two test modules (77 tests) left a process with 14,195 memory maps (1,399
    with this fixture), and a test worker runs about 760 tests, so it went past Linux's default
    limit of 65,530 maps (vm.max_map_count), where the next compilation crashed the worker (CI
    failed this way twice, in probprop/tests/test_uncertain_inputs.py)."""
    yield
    jax.clear_caches()
    gc.collect()

"""Test-session setup for every test under probprop/.

``make test`` compiles with XLA's backend optimisation level 0 (``XLA_FLAGS``): the suite spends
most of its time compiling small programs, which that makes about 40 % faster, and the programs
give the same numbers to about 1e-13. A test whose claim holds at the default level only (two
differently built programs equal bit for bit; found by running the suite at both levels) takes
the :func:`default_xla` fixture.

The tests build float64 JAX arrays by hand, so the session enables 64-bit types for the whole
process. probprop itself never does that on import: it enables them only for the duration of its
own calls (``probprop/tests/test_x64_scope.py`` checks this in a fresh process).
"""

import gc
import os
import re
import subprocess
import sys

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


#: What `make test` adds to XLA_FLAGS (see the module docstring).
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


class _DefaultXLA:
    def __init__(self, request):
        self._request = request

    def rerun(self) -> bool:
        """False under XLA's default flags (the test goes on in this process). Under
        :data:`FAST_COMPILE_FLAG`: run this test again in a fresh process without it, fail with its
        output if it fails there, and return True (the caller returns: the claim was checked)."""
        flags = os.environ.get("XLA_FLAGS", "")
        if FAST_COMPILE_FLAG not in flags.split():
            return False
        env = dict(os.environ, XLA_FLAGS=" ".join(f for f in flags.split() if f != FAST_COMPILE_FLAG))
        node = self._request.node.nodeid
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", node],
                              cwd=self._request.config.rootpath, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not re.search(r"\b1 passed\b", done.stdout):  # a skip there is no pass
            pytest.fail(f"{node} fails under XLA's default flags:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
        return True


@pytest.fixture
def default_xla(request):
    """``default_xla.rerun()``: see :class:`_DefaultXLA`."""
    return _DefaultXLA(request)

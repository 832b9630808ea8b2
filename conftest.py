"""Test-session setup for every test under probprop/.

The tests build float64 JAX arrays by hand, so the session enables 64-bit types for the whole
process. probprop itself never does that on import: it enables them only for the duration of its
own calls (``probprop/tests/test_x64_scope.py`` checks this in a fresh process).
"""

from probprop.learners.base import float64_process

float64_process()

"""Importing probprop changes nothing in the rest of the process: 64-bit types are enabled only
for the duration of probprop's own calls, and its results do not depend on the global setting."""

import json
import os
import subprocess
import sys

CODE = """
import json, jax, jax.numpy as jnp, numpy as np
import probprop
from probprop.learners import pbp
from probprop.tests.conftest import small_problem
X, y = small_problem()
before = jnp.ones(1).dtype.name
model = probprop.PBPRegressor(hidden=(5,), epochs=2, random_state=0).fit(X, y)
tagi = probprop.TAGIRegressor(hidden=(5,), epochs=2, sigma_v=0.3, random_state=0).fit(X, y)
state = pbp.init(jax.random.PRNGKey(0), pbp.PBPSpec(n_in=3, hidden=(4,)))
state = pbp.update(state, X, y)
print(json.dumps({"x64": bool(jax.config.jax_enable_x64), "before": before, "after": jnp.ones(1).dtype.name,
                  "dtype": str(model.state_.means[0].dtype), "core_dtype": str(state.means[0].dtype),
                  "pbp": model.predict(X).tolist(), "tagi": tagi.predict(X).tolist(),
                  "core": np.asarray(pbp.predict(state, X)[0]).tolist()}))
"""


def run(x64: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    if x64:
        env["JAX_ENABLE_X64"] = "1"
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_fit_leave_jax_in_32_bit_mode_and_results_do_not_depend_on_it():
    scoped, global_ = run(False), run(True)
    assert scoped["x64"] is False and scoped["before"] == scoped["after"] == "float32"
    assert scoped["dtype"] == scoped["core_dtype"] == "float64"  # probprop itself still computes in float64
    for key in ("pbp", "tagi", "core"):
        assert scoped[key] == global_[key], key  # bit for bit the same as in a 64-bit process

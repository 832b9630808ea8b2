"""The persistent compilation cache probprop turns on at its first computation (probprop._cache).

Each case runs in a fresh interpreter, where the cache has not been decided yet."""

import json
import os
import subprocess
import sys
from pathlib import Path

from probprop import _cache

REPO = Path(__file__).resolve().parents[2]

FIT = """
import json, sys
import numpy as np
import jax
from probprop import PBPRegressor
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3)); y = X[:, 0] + 0.1 * rng.normal(size=60)
mean = PBPRegressor(hidden=(5,), epochs=2, random_state=0).fit(X, y).predict(X[:4])
print(json.dumps({"cache": jax.config.jax_compilation_cache_dir, "mean": mean.tolist()}))
"""


def _env(**changes):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env.update(changes)
    return env


def _start(env):
    return subprocess.Popen([sys.executable, "-c", FIT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def _files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def test_default_cache_dir_follows_the_environment(tmp_path):
    assert _cache.default_cache_dir({"PROBPROP_JAX_CACHE": str(tmp_path)}) == str(tmp_path)
    assert _cache.default_cache_dir({"XDG_CACHE_HOME": "/x"}) == str(Path("/x/probprop/jax"))
    assert _cache.default_cache_dir({}) == str(Path.home() / ".cache" / "probprop" / "jax")
    for off in ("off", "OFF", "0", "none", "false", ""):
        assert _cache.default_cache_dir({"PROBPROP_JAX_CACHE": off}) is None


def test_the_first_fit_turns_the_cache_on_and_concurrent_processes_share_it(tmp_path):
    folder = tmp_path / "cache"
    procs = [_start(_env(PROBPROP_JAX_CACHE=str(folder))) for _ in range(2)]  # both start empty
    first, second = (_finish(p) for p in procs)
    assert first["cache"] == second["cache"] == str(folder)
    assert first["mean"] == second["mean"]
    stored = _files(folder)
    assert stored > 0
    third = _finish(_start(_env(PROBPROP_JAX_CACHE=str(folder))))  # warm: the same programs, loaded
    assert third["mean"] == first["mean"] and _files(folder) == stored


def test_off_and_a_cache_chosen_by_the_process_are_respected(tmp_path):
    off = _finish(_start(_env(PROBPROP_JAX_CACHE="off")))
    assert off["cache"] is None
    own = tmp_path / "own"
    chosen = _finish(_start(_env(PROBPROP_JAX_CACHE=str(tmp_path / "ignored"), JAX_COMPILATION_CACHE_DIR=str(own))))
    assert chosen["cache"] == str(own) and not (tmp_path / "ignored").exists()


COUNT = """
import json
import numpy as np
from jax import monitoring
compiled = []
monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: compiled.append(secs) if name == "/jax/core/compile/backend_compile_duration" else None)
from probprop import PBPRegressor
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3)); y = X[:, 0] + 0.1 * rng.normal(size=60)
model = PBPRegressor(hidden=(5,), epochs=2, random_state=0).fit(X, y)
fit = len(compiled)
model.predict(X[:4], return_std=True)
print(json.dumps({"fit": fit, "predict": len(compiled) - fit}))
"""


def test_a_first_fit_and_prediction_compile_four_programs():
    """With no cache, a first PBP fit compiles the light-options probe, the normal sampler and the
    epoch, and its prediction one program (docs/engine.md, "The first call"): each eager JAX
    operation on the way (a jnp.asarray, jax.random's seed or split) would add a compilation of
    its own (there were 14 before)."""
    proc = subprocess.run([sys.executable, "-c", COUNT], env=_env(PROBPROP_JAX_CACHE="off"), capture_output=True, check=False,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts == {"fit": 3, "predict": 1}

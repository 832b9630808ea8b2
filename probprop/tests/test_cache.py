"""The persistent compilation cache probprop turns on at its first computation (probprop._cache).

Each case runs in a fresh interpreter, where the cache has not been decided yet."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
import probprop
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3)); y = X[:, 0] + 0.1 * rng.normal(size=60)
model = probprop.{estimator}(hidden=(5,), epochs=2, random_state=0).fit(X, y)
fit = len(compiled)
model.predict(X[:4], return_std=True)
print(json.dumps({"fit": fit, "predict": len(compiled) - fit}))
"""


@pytest.mark.parametrize(("estimator", "expected"), [
    ("PBPRegressor", {"fit": 4, "predict": 1}),  # the light-options probe, the normal sampler, the epoch (sweep, prior step)
    ("TAGIRegressor", {"fit": 5, "predict": 1}),  # the probe, the sampler, the search's epoch and score, the epoch
])
def test_a_first_fit_and_prediction_compile_few_programs(estimator, expected):
    """With no cache, the programs a first fit and prediction compile (docs/engine.md, "The first
    call"): each eager JAX operation on the way (a jnp.asarray, jax.random's seed, split or
    permutation) would add a compilation of its own (PBP compiled 14 before, TAGI 20)."""
    proc = subprocess.run([sys.executable, "-c", COUNT.replace("{estimator}", estimator)],
                          env=_env(PROBPROP_JAX_CACHE="off"), capture_output=True, check=False, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected

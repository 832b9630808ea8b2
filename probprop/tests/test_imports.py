"""``import probprop`` is light, its names load on first use, and a model file loads without
the estimators having been imported first (each check in a fresh interpreter)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import probprop

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_import_probprop_and_the_command_line_module_leave_the_heavy_libraries_unloaded():
    heavy = ["jax", "sklearn", "scipy", "pandas", "matplotlib"]
    for module in ("probprop", "probprop.cli"):
        loaded = _python(f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))")
        assert loaded == "", f"import {module} loaded {loaded}"


def test_public_names_resolve_on_first_use():
    for name in probprop.__all__:
        assert getattr(probprop, name) is not None
    assert set(probprop.__all__) <= set(dir(probprop))
    assert probprop.PBPRegressor.__module__ == "probprop.estimators.pbp"
    try:
        probprop.NoSuchThing  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:  # pragma: no cover
        raise AssertionError("an unknown name resolved")


def test_a_model_file_loads_before_any_estimator_is_imported(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    model = probprop.PBPRegressor(hidden=(3,), epochs=2, random_state=0).fit(X, X[:, 0])
    path = tmp_path / "m.probprop"
    model.save(path)
    out = _python(f"from probprop.io import load_model; m = load_model({str(path)!r}); "
                  f"import numpy as np; print(type(m).__name__, repr(float(m.predict(np.ones((1, 2)))[0])))")
    assert out == f"PBPRegressor {float(model.predict(np.ones((1, 2)))[0])!r}"


def test_the_lazy_names_are_the_public_names():
    assert set(probprop._EXPORTS) | {"__version__"} == set(probprop.__all__)


def test_a_first_fit_and_prediction_load_none_of_the_heavy_libraries_but_jax():
    # scikit-learn (about a second), scipy.stats, pandas and optax load only where they do work
    # (probprop.estimators._api): a script's first fit and prediction of the moment learners on
    # NumPy arrays, integer or string labels, wait for none of them; saving a model neither
    heavy = ["sklearn", "scipy", "pandas", "matplotlib", "optax"]
    fits = {
        "PBPRegressor(hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0]).predict(X, return_std=True)": "PBPRegressor",
        "PBPRegressor(hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0]).predict_dist(X).std": "PBPRegressor",
        "TAGIRegressor(hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0]).predict(X)": "TAGIRegressor",
        "PBPClassifier(hidden=(4,), epochs=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int)).predict_proba(X)": "PBPClassifier",
        "PBPClassifier(hidden=(), epochs=2, random_state=0).fit(X, np.where(X[:, 0] > 0, 'a', 'b')).predict(X)": "PBPClassifier",
        "PBPRegressor(hidden=(4,), epochs=2, random_state=0).fit(X, X[:, 0]).save(path)": "PBPRegressor",
    }
    names = sorted(set(fits.values()))
    script = ["import sys, os, tempfile", "import numpy as np", f"from probprop import {', '.join(names)}",
              "folder = tempfile.TemporaryDirectory()", "path = os.path.join(folder.name, 'm.probprop')", "X = np.random.default_rng(0).normal(size=(30, 3))"]
    for call in fits:  # one interpreter: what a call loads stays loaded, so each line reports what is loaded so far
        script += [call, f"print('loaded:' + ','.join(m for m in {heavy!r} if m in sys.modules))"]
    loaded = [line for line in _python("\n".join(script)).splitlines() if line.startswith("loaded:")]
    assert len(loaded) == len(fits)
    for call, modules in zip(fits, loaded):
        assert modules == "loaded:", f"{call} (or a call before it) {modules}"

"""The speed report's first-call section, from made-up measurements (the measurements themselves
are timings and run only in ``probprop bench speed``)."""

import os
import subprocess
import sys

from probprop.bench import speed

MEMORY = {"points": 10, "network": "9-100-1", "epochs": 1, "fit_s": 1.0, "peak_rss_mb": 5.0}


def _runs(totals_empty, totals_warm):
    return [{"empty": {"import_s": 0.5, "fit_s": t - 1.0, "predict_s": 0.5, "total_s": t, "steady_fit_s": 0.07 + i * i},
             "warm": {"import_s": 0.5, "fit_s": w - 0.6, "predict_s": 0.1, "total_s": w, "steady_fit_s": 0.06},
             "cache_files": 15} for i, (t, w) in enumerate(zip(totals_empty, totals_warm))]


def test_first_call_section_shows_medians_ranges_and_the_jax_import():
    cold = speed.summarise_cold_runs(_runs([3.0, 5.0, 4.0], [1.0, 2.0, 1.2]))
    # steady fits 0.07, 1.07, 4.07: their median is not their mean
    assert cold["empty"]["total_s"] == 4.0 and cold["empty"]["fit_s"] == 3.0 and cold["empty"]["steady_fit_s"] == 1.07
    assert cold["warm"]["total_range"] == (1.0, 2.0)
    cold["jax_import"] = {"jax_s": 0.4, "numpy_s": 0.07, "ml_dtypes_s": 0.05, "jax_version": "9.9",
                          "ml_dtypes_version": "0.6.0", "repeats": 3}
    text = speed.report([], MEMORY, "cmd", cold)
    assert "| empty | 0.50 | 3.00 | 0.50 | **4.00** | 3.00-5.00 | 1.070 |" in text
    assert "| warm | 0.50 | 0.60 | 0.10 | **1.20** | 1.00-2.00 | 0.060 |" in text
    assert "median of 3" in text
    assert "`import jax` alone takes 0.40 s" in text and "0.05 s of it ml_dtypes 0.6.0 (after NumPy, 0.07 s)" in text
    assert "fastest of 3 processes" in text
    assert "bytecode" not in text
    assert "Python's bytecode is compiled beforehand" in speed.report([], MEMORY, "cmd", {**cold, "bytecode": True})


def test_the_workers_bytecode_is_written_to_its_own_folder(tmp_path):
    """Under PYTHONDONTWRITEBYTECODE every import compiles the source again; the cold start's
    workers keep their bytecode in a folder of their own instead (none beside the source)."""
    source, pyc = tmp_path / "src", tmp_path / "pyc"
    source.mkdir()
    (source / "tiny_module.py").write_text("X = 1\n")
    env = speed.bytecode_env({**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(source)}, str(pyc))
    assert "PYTHONDONTWRITEBYTECODE" not in env
    subprocess.run([sys.executable, "-c", "import tiny_module"], env=env, check=True, timeout=60)
    assert list(pyc.rglob("tiny_module*.pyc")) and not list(source.rglob("*.pyc"))


def test_first_call_section_lists_the_compiled_programs():
    runs = _runs([3.0, 5.0, 4.0], [1.0, 2.0, 1.2])
    for i, run in enumerate(runs):
        run["empty"]["compiled"] = [["jit(_normal_draw)", 0.1 + i], ["jit(_update)", 2.0 + i], ["jit(stage)", 0.01],
                                    ["jit(stage)", 0.03 * (i + 1)]]
        run["warm"]["compiled"] = [["jit(_update)", 0.05]]
    runs[1]["warm"]["compiled"].append(["jit(_only_here)", 0.2])  # a program one process alone compiled
    cold = speed.summarise_cold_runs(runs)
    assert cold["warm"]["programs"] == [("jit(_update)", 0.05), ("jit(_only_here)", 0.2)]
    assert cold["empty"]["programs"] == [("jit(_normal_draw)", 1.1), ("jit(_update)", 3.0), ("jit(stage)", 0.01),
                                         ("jit(stage)", 0.06)]  # a name's second compilation pairs with its second
    text = speed.report([], MEMORY, "cmd", cold)
    assert ("compile 4 programs (4.17 s of compiling and storing them, tracing and lowering not included; medians over the "
            "processes): `jit(_update)` 3.00 s, `jit(_normal_draw)` 1.10 s, `jit(stage)` 0.06 s, `jit(stage)` 0.01 s."
            ) in text


def test_first_call_section_tables_each_programs_stages():
    runs = _runs([3.0, 5.0, 4.0], [1.0, 2.0, 1.2])
    for i, run in enumerate(runs):
        run["empty"].update(compiled=[["jit(_sweep)", 1.0 + i], ["jit(_prior)", 0.5]], traced=[], lowered=[])
        run["warm"].update(compiled=[["jit(_sweep)", 0.06], ["jit(_prior)", 0.02 * (i + 1)]],
                           traced=[["jit(init_from_seed)", 0.03], ["jit(_sweep)", 0.1 + 0.01 * i], ["jit(_prior)", 0.02]],
                           lowered=[["jit(_sweep)", 0.05], ["jit(_prior)", 0.01]])
    text = speed.report([], MEMORY, "cmd", speed.summarise_cold_runs(runs))
    assert "| `jit(init_from_seed)` | 0.030 |  |  |  |" in text  # traced only
    assert "| `jit(_sweep)` | 0.110 | 0.050 | 2.000 | 0.060 |" in text  # medians over the three processes
    assert "| `jit(_prior)` | 0.020 | 0.010 | 0.500 | 0.040 |" in text
    assert "| all | 0.160 | 0.060 | 2.500 | 0.100 |" in text
    older = _runs([3.0], [1.0])  # a run without the traces: no table
    older[0]["empty"]["compiled"] = older[0]["warm"]["compiled"] = [["jit(_sweep)", 1.0]]
    assert "| program |" not in speed.report([], MEMORY, "cmd", speed.summarise_cold_runs(older))


def test_a_report_from_an_older_json_renders():
    """A speed.json from before the repeats (one pair, no range, no jax import) still renders."""
    pair = _runs([4.0], [1.5])[0]
    text = speed.report([], MEMORY, "cmd", {"empty": pair["empty"], "warm": pair["warm"], "cache_files": 15})
    assert "| empty | 0.50 | 3.00 | 0.50 | **4.00** | 4.00-4.00 | 0.070 |" in text
    assert "median" not in text and "import jax" not in text

"""`python -m probprop.bench.pick`: the README's which-method table from benchmark runs."""

import math
from pathlib import Path

import pandas as pd
import pytest

from probprop.bench import pick


def _run(folder, rows):
    folder.mkdir()
    frame = pd.DataFrame(rows, columns=["method", "dataset", "split", "n_train", "n_test", "log_likelihood", "rmse"])
    frame.to_csv(folder / "results.csv", index=False)
    return folder


def test_the_pick_is_the_best_probprop_mean_and_the_peer_the_best_external(tmp_path, capsys):
    first = _run(tmp_path / "a", [
        ("pbp", "yacht", 0, 277, 31, -1.0, 1.0), ("pbp", "yacht", 1, 277, 31, -1.2, 1.2),
        ("tagi", "yacht", 0, 277, 31, -0.5, 0.9), ("tagi", "yacht", 1, 277, 31, -0.9, 1.1),
        ("ngboost", "yacht", 0, 277, 31, -0.8, 0.5), ("ngboost", "yacht", 1, 277, 31, -0.6, 0.7),
        ("bayesridge", "yacht", 0, 277, 31, -3.0, 9.0), ("bayesridge", "yacht", 1, 277, 31, -3.2, 9.0)])
    # a later run's copy of a method already read is ignored; its new method counts
    second = _run(tmp_path / "b", [
        ("tagi", "yacht", 0, 277, 31, 5.0, 0.1), ("tagi", "yacht", 1, 277, 31, 5.0, 0.1),
        ("dvi", "yacht", 0, 277, 31, -0.65, 1.0), ("dvi", "yacht", 1, 277, 31, -0.65, 1.0)])
    assert pick.main([str(first), str(second)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "Yacht (308)" and "`dvi`, b" in cells[1] and cells[2] == "-0.6500 ± 0.0000"
    # tagi's mean is -0.7 (run a), below dvi's -0.65; NGBoost's -0.7 beats BayesianRidge
    assert cells[4] == "NGBoost (ours)" and cells[5] == "-0.70 ± 0.10"
    # paired over splits 0, 1: differences +0.15, -0.05, mean 0.05, SE 0.1
    assert cells[6] == "higher: within (+0.5)"


def test_a_diverged_split_keeps_a_method_out_and_other_splits_are_unpaired(tmp_path, capsys):
    run = _run(tmp_path / "a", [
        ("pbp", "yacht", 0, 277, 31, -1.0, 1.0), ("pbp", "yacht", 1, 277, 31, -1.0, 1.2),
        ("tagi", "yacht", 0, 277, 31, 0.0, 0.9), ("tagi", "yacht", 1, 277, 31, float("-inf"), 1.1),
        ("ngboost", "yacht", 0, 277, 31, -3.0, 0.5), ("ngboost", "yacht", 2, 277, 31, -3.2, 0.7)])
    assert pick.main([str(run)]) == 0
    cells = [c.strip() for c in capsys.readouterr().out.strip().splitlines()[2].strip("|").split("|")]
    assert "`pbp`" in cells[1]  # tagi's mean over its finite split would be 0.0
    z = 2.1 / math.hypot(0.0, 0.1)
    assert cells[6] == f"higher: better ({z:+.1f}, unpaired)"


def test_the_readme_table_is_what_pick_prints():
    """The README's which-method table is the output of ``python -m probprop.bench.pick`` on the
    committed runs (regenerate it with that command when a run changes)."""
    root = Path(__file__).resolve().parents[3]
    readme, runs = root / "README.md", [root / "docs" / "benchmarks" / name for name in pick.DEFAULT_RUNS]
    if not readme.is_file() or not all((r / "results.csv").is_file() for r in runs):
        pytest.skip("not a source checkout with the committed benchmark runs")
    expected = pick.table(pick.merged(runs))
    text = readme.read_text(encoding="utf-8").splitlines()
    start = text.index(expected[0])
    assert text[start:start + len(expected)] == expected


def test_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert pick.main([str(tmp_path)]) == 2
    assert "no results.csv" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        pick.merged([tmp_path])

"""`python -m probprop.bench.pick`: the README's which-method table from benchmark runs."""

import math

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
    assert cells[0] == "Yacht (308)" and "`dvi`, b" in cells[1] and cells[2] == "-0.650 ± 0.000"
    # tagi's mean is -0.7 (run a), below dvi's -0.65; NGBoost's -0.7 beats BayesianRidge
    assert cells[4] == "NGBoost (ours)" and cells[5] == "-0.700 ± 0.100"
    assert cells[6] == f"higher ({0.05 / math.hypot(0.0, 0.1):+.1f})"


def test_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert pick.main([str(tmp_path)]) == 2
    assert "no results.csv" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        pick.merged([tmp_path])

"""`probprop bench sharded`: its data, its report from a results table, and its argument checks
(the Ray runs themselves are checked in probprop/tests/test_distributed.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from probprop.bench import sharded


def test_friedman_rows_and_the_standardisation_of_the_scale_problem():
    X, y = sharded.friedman(50_000, 0)
    f = 10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3] + 5 * X[:, 4]
    noise = y - f
    assert X.shape == (50_000, 10) and 0 <= X.min() and X.max() <= 1
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.02  # N(0, 1) noise
    Xs, ys, Xt, yt, y_mean, y_std = sharded.scale_problem(5_000)
    np.testing.assert_allclose(Xs.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Xs.std(axis=0), 1, rtol=1e-12)
    assert abs(ys.mean()) < 1e-12 and abs(ys.std() - 1) < 1e-12
    assert Xt.shape == (sharded.TEST_ROWS, 10) and abs(yt.mean() - y_mean) < 0.1 * y_std


def test_the_report_from_a_results_table():
    rows = [{"section": "schedule", "config": c, "shards": k, "seed": s, "test_ll": v + 0.01 * s, "rmse": 0.5}
            for s in range(3) for c, k, v in (("serial SEP", 1, 0.6), ("default", 2, 0.55))]
    rows += [{"section": "scale", "config": "serial SEP", "shards": 1, "rows": 10_000, "epochs": 1, "test_ll": -1.5,
              "rmse": 1.1, "fit_seconds": 4.0, "setup_seconds": 0.0, "rows_per_second": 2500.0},
             {"section": "scale", "config": "sharded SEP", "shards": 2, "rows": 10_000, "epochs": 1, "test_ll": -1.52,
              "rmse": 1.12, "fit_seconds": 2.0, "setup_seconds": 3.0, "rows_per_second": 5000.0},
             {"section": "round-cost", "shards": 2, "rounds": 64, "seconds_per_round": 0.01}]
    text = sharded.report(pd.DataFrame(rows), "probprop bench sharded --rows 10000", 12.0)
    assert "`probprop bench sharded --rows 10000`" in text
    assert "| default | 2 | 0.560 ± 0.006 | -0.050 ± 0.000 |" in text
    assert "| sharded SEP, one Ray actor per shard | 2 | -1.5200 | -0.0200 |" in text and "| 2.00x |" in text
    assert "| 2 | 64 | 10.0 |" in text and "Projection to a cluster" in text


def test_the_command_line_checks_its_arguments():
    from probprop.cli import main

    result = CliRunner().invoke(main, ["bench", "sharded", "--shards", "2,x"])
    assert result.exit_code != 0 and "--shards must be comma-separated integers" in result.output
    pytest.importorskip("ray", reason="Ray is not installed")
    result = CliRunner().invoke(main, ["bench", "sharded", "--shards", "1", "--rows", "5000"])
    assert result.exit_code != 0 and "shard counts of at least 2" in result.output
    assert "Traceback" not in result.output

"""`probprop bench tagi-speed`: its report from a results table, one engine fit on real data (the
probprop engines always; pytagi where it is installed), and its CLI errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from probprop.bench import tagi_speed
from probprop.tests.conftest import uci_split


def test_the_report_from_a_results_table():
    rows = [{"engine": e, "dataset": "boston", "rows": 455, "epochs": 40, "first_seconds": f, "steady_seconds": s,
             "test_ll": -2.5, "rmse": 3.0}
            for e, f, s in (("probprop-float64", 3.0, 0.5), ("probprop-float32", 2.5, 0.4), ("pytagi", 2.0, 2.0))]
    text = tagi_speed.report(pd.DataFrame(rows), "probprop bench tagi-speed --epochs 40", 10.0)
    assert "`probprop bench tagi-speed --epochs 40`" in text
    # 455 x 40 / 0.5 s = 36,400 rows/s; pytagi 9,100: 4.00x
    assert "| boston | 455 x 40 | probprop-float64 | 3.00 | 0.50 | 36,400 | 4.00x | -2.500 | 3.000 |" in text
    assert "| boston | 455 x 40 | pytagi | 2.00 | 2.00 | 9,100 | - |" in text


def test_a_probprop_engine_fit_trains_the_protocol_network(monkeypatch):
    """Two epochs on Boston split 0: finite, timed, and a test RMSE well below a constant's (the
    worker's thread settings go into this process's environment: restored after the test)."""
    import os

    for name in ("XLA_FLAGS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    _, y, _, yt = uci_split("boston", 0)
    row = tagi_speed.engine_fit("probprop-float32", "boston", 2)
    assert row["rows"] == len(y) and row["epochs"] == 2 and row["steady_seconds"] > 0
    assert np.isfinite(row["test_ll"]) and row["rmse"] < 0.75 * np.std(yt)


@pytest.mark.skipif(importlib.util.find_spec("pytagi") is None, reason="pytagi is not installed (make pytagi)")
def test_pytagi_engine_fit_trains_the_same_network():
    *_, yt = uci_split("boston", 0)
    row = tagi_speed.engine_fit("pytagi", "boston", 2)
    assert np.isfinite(row["test_ll"]) and row["rmse"] < 0.75 * np.std(yt)


def test_cli_errors_are_one_line(tmp_path):
    from probprop.cli import main

    result = CliRunner().invoke(main, ["bench", "tagi-speed", "--epochs", "0", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "Traceback" not in result.output and "--epochs" in result.output

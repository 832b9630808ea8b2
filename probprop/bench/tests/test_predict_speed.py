"""The prediction-block benchmark on a few rows (the full run is `probprop bench predict-speed`)."""

import pandas as pd
import pytest

from probprop.bench import predict_speed
from probprop.estimators import base


def test_both_ways_predict_the_same_and_the_report_compares_them():
    shipped = base.PREDICT_BLOCK_NUMBERS
    rows = predict_speed.measure("pbp-13-50-1", 5000)
    assert base.PREDICT_BLOCK_NUMBERS == shipped  # restored
    ways = {r["way"]: r for r in rows}
    assert ways["cache-sized"]["block_rows"] == 2048 and ways["8192-row"]["block_rows"] == 8192
    assert all(r["max_diff"] < 1e-12 for r in rows) and all(r["seconds"] > 0 for r in rows)
    frame = pd.DataFrame(rows)
    frame["seconds"] = [1.0, 2.5]
    text = predict_speed.report(frame, "probprop bench predict-speed", 1.0)
    assert "| pbp-13-50-1 | 8192-row | 8,192 | 5,000 |" in text and "| 2.50x |" in text


def test_unknown_models_and_rows_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        predict_speed.measure("gp", 10)
    with pytest.raises(ValueError, match="unknown models"):
        predict_speed.run(models=("pbp-cnn", "gp"))
    with pytest.raises(ValueError, match="at least 1"):
        predict_speed.run(rows=0)

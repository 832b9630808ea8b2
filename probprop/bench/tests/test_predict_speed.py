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


def test_the_scores_ways_read_the_cubature_alike_and_restore_the_step():
    from probprop.data.images import find_images_dir
    from probprop.likelihoods import classification

    try:
        find_images_dir("mnist")
    except FileNotFoundError:
        pytest.skip("no shared/data image sets here")
    calls = []
    shipped = classification._cubature_probabilities

    def spy(mean, var):  # which branch each way's program takes: the step it was traced with
        calls.append(classification.CUBATURE_STEP)
        return shipped(mean, var)

    classification._cubature_probabilities, step = spy, classification.CUBATURE_STEP
    try:
        rows = predict_speed.measure("pbp-784-100-100-10-scores", 100)
    finally:
        classification._cubature_probabilities = shipped
    assert classification.CUBATURE_STEP == step  # restored
    assert set(calls) == {step, 0.0}  # each way traced its own program
    ways = {r["way"]: r for r in rows}
    assert set(ways) == {"one-grid", "per-point"}
    assert ways["per-point"]["max_diff"] < 1e-9  # the same probabilities and scores, to the quadrature's error
    frame = pd.DataFrame(rows)
    frame["seconds"] = [1.0, 3.0]
    text = predict_speed.report(frame, "probprop bench predict-speed", 1.0)
    assert "| pbp-784-100-100-10-scores | per-point |" in text and "| 3.00x |" in text

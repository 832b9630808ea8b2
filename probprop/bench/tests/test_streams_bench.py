"""`probprop bench streams` end to end on short streams."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from probprop.bench import streams


def test_bench_streams_runs_and_reports(tmp_path):
    pytest.importorskip("river")
    out = streams.run(out=tmp_path, streams=["friedman-abrupt", "friedman-static", "moons-rotating"],
                      methods=["pbp-forget", "pbp", "river-linear"], seeds=1, n_rows=300, workers=1,
                      command="probprop bench streams (test)", log=lambda text: None)
    frame = pd.read_csv(out / "results.csv")
    assert len(frame) == 9 and set(frame["method"]) == {"pbp-forget", "pbp", "river-linear"}
    assert np.all(np.isfinite(frame["log_loss"]))
    report = (out / "report.md").read_text()
    assert "probprop bench streams (test)" in report and "## Targets (issue 12)" in report
    assert "friedman-static (no drift): pbp-forget" in report and "moons-rotating (drifting)" in report
    assert (out / "stream-friedman-abrupt.png").stat().st_size > 1000


def test_the_point_predictors_density_follows_their_errors():
    p = streams._PointPredictive(np.array([0.0, 2.0]))  # variance 1
    log_loss, covered = p.score(0.5, 0.0)
    assert log_loss == pytest.approx(0.5 * np.log(2 * np.pi) + 0.125) and covered
    assert p.var == pytest.approx(0.99 + 0.01 * 0.25)


def test_cli_names_a_bad_stream_or_method():
    from probprop.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["bench", "streams", "--streams", "nope", "--out", "unused"])
    assert result.exit_code != 0 and "unknown stream 'nope'" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["bench", "streams", "--methods", "pbp,magic", "--out", "unused"])
    assert result.exit_code != 0 and "unknown method 'magic'" in result.output

"""The GPU record's sharded sections (probprop/bench/accelerator.py), checked on the CPU: CI has no GPU."""

import math

import jax
import numpy as np
import pytest
from click.testing import CliRunner

from probprop.bench import accelerator
from probprop.bench.sharded import _scores, _start, scale_problem
from probprop.learners import pbp, pbp_sharded


@pytest.fixture(scope="module")
def problem():
    X, y, Xt, yt, y_mean, y_std = scale_problem(300)
    return X, y, Xt[:500], yt[:500], y_mean, y_std  # 500 of the 100,000 test rows: predictions stay cheap


def test_one_shard_is_serial_sep(problem):
    """K = 1 of the minibatch section is serial SEP (pbp.update on a SEP state) epoch for epoch, warm-up rounds or not."""
    X, y, Xt, yt, y_mean, y_std = problem
    cpu = jax.devices("cpu")[0]  # every program here on the CPU, where "bit for bit" is the claim (a GPU rounds otherwise)
    (one, three) = accelerator.sharded_epochs(cpu, problem, (1, 3), repeat=False, epochs=2)
    with jax.default_device(cpu):
        serial = pbp.update(pbp.update(_start(X.shape[1], 50, 0), X, y), X, y)
        expected = _scores(serial, Xt, yt, y_mean, y_std)
    assert one["test_ll"] == pytest.approx(expected["test_ll"], abs=1e-10)
    weights = [np.asarray(a) for a in (*serial.means, *serial.variances)]
    assert accelerator.relative_difference(weights, one["weights"]) < 1e-12
    assert three["shards"] == 3 and three["rows"] == 300
    assert three["rows_per_second"] == pytest.approx(2 * 300 / three["fit_seconds"])
    assert accelerator.relative_difference(weights, three["weights"]) > 1e-6  # three shards merge: not serial
    with jax.default_device(cpu):
        fitted, _ = pbp_sharded.fit(_start(X.shape[1], 50, 0), X, y, 3, epochs=2)  # warm-up in the first epoch only
    fitted = [np.asarray(a) for a in (*fitted.means, *fitted.variances)]
    assert accelerator.relative_difference(fitted, three["weights"]) == 0.0


def test_relative_difference():
    a = [np.array([1.0, -4.0]), np.array([[2.0]])]
    b = [np.array([1.0, -3.0]), np.array([[2.5]])]
    assert accelerator.relative_difference(a, b) == pytest.approx(0.25)  # max(1/4, 0.5/2)


def _row(k, rows, rate, ll):
    return {"shards": k, "rows": rows, "rows_per_second": rate, "fit_seconds": rows / rate,
            "first_call_seconds": 9.0, "test_ll": ll, "rmse": 1.0, "weights": [np.ones(2) * k]}


def test_sharded_report_ratios():
    cpu = [_row(1, 1000, 100.0, -1.5), _row(16, 1000, 200.0, -1.6)]
    gpu = [_row(1, 1000, 50.0, -1.5), _row(16, 1000, 800.0, -1.6)]
    scale = [_row(64, 10_000, 5000.0, -1.47)]
    lines = accelerator.sharded_report(cpu, gpu, scale, "gpu", -1.45)
    text = "\n".join(lines)
    assert "| 1 | 100 | 50 | 0.50 |" in text
    assert "| 16 | 200 | 800 | 4.00 |" in text
    assert "| 64 | 1 | 9.0 | 2.00 | 5,000 | 50.0x | -1.4700 | 1.0000 | -0.0200 |" in text
    assert "K = 1: 0.0e+00, K = 16: 0.0e+00" in text
    without = "\n".join(accelerator.sharded_report(cpu, gpu, [], "gpu", None))
    assert "at scale" not in without


def test_serial_reference_from_the_committed_report(tmp_path):
    committed = accelerator.serial_reference(10_000_000)
    assert committed is not None and math.isclose(committed, -1.4541, abs_tol=5e-5)  # the sharded report's table
    assert accelerator.serial_reference(4096) is None
    assert accelerator.serial_reference(10_000_000, tmp_path / "missing.csv") is None
    (tmp_path / "bad.csv").write_text("section,config,rows,epochs,test_ll\nscale,serial SEP,ten,1,x\n"
                                      "scale,serial SEP,10000000,1,-1.5\n")
    assert accelerator.serial_reference(10_000_000, tmp_path / "bad.csv") == -1.5  # the malformed row skipped
    assert accelerator.serial_reference(10_000_000, tmp_path / "missing.csv") is None


@pytest.mark.parametrize("value", ["5", "-1", "many"])
def test_cli_refuses_scale_rows(value):
    from probprop.cli import main

    result = CliRunner().invoke(main, ["bench", "accelerator", "--scale-rows", value])
    assert result.exit_code == 2, result.output
    assert "--scale-rows" in result.output and "Traceback" not in result.output


def test_cli_default_is_the_module_default():
    from probprop.cli import bench_accelerator

    default = next(p.default for p in bench_accelerator.params if p.name == "scale_rows")
    assert default == accelerator.SCALE_ROWS


def test_module_refuses_scale_rows(capsys):
    with pytest.raises(SystemExit) as stop:
        accelerator.main(["--scale-rows", "100"])
    assert stop.value.code == 2 and "--scale-rows" in capsys.readouterr().err

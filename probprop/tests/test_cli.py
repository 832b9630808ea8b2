"""The ``probprop`` command line: a fit/predict/evaluate round trip and clean errors for bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from probprop.cli import _parse_hidden, main
from probprop.data import make_linear_gaussian
from probprop.metrics import log_likelihood, rmse

FEATURES = ["x0", "x1", "x2"]
NOISE_STD = 0.3  # of the training data's linear-Gaussian targets


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def csvs(tmp_path):
    """A labelled training CSV, an unlabelled one with a custom index column, and bad variants."""
    X, y, _ = make_linear_gaussian(64, 3, noise_std=NOISE_STD, random_state=0)
    train = pd.DataFrame(X, columns=FEATURES)
    train["target"] = y
    paths = {"train": tmp_path / "train.csv", "new": tmp_path / "new.csv"}
    train.to_csv(paths["train"], index=False)
    new = train[FEATURES].iloc[:10].copy()
    new.insert(0, "id", [f"row{i}" for i in range(10)])
    new.to_csv(paths["new"], index=False)

    nonnumeric = train.astype({"x1": object})
    nonnumeric.loc[5, "x1"] = "seven"
    paths["nonnumeric"] = tmp_path / "nonnumeric.csv"
    nonnumeric.to_csv(paths["nonnumeric"], index=False)

    with_nan = train.copy()
    with_nan.loc[3, "x2"] = np.nan
    paths["nan"] = tmp_path / "nan.csv"
    with_nan.to_csv(paths["nan"], index=False)

    paths["binary"] = tmp_path / "binary.csv"
    paths["binary"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00garbage\xff")
    paths["empty"] = tmp_path / "empty.csv"
    paths["empty"].write_text("")
    paths["ragged"] = tmp_path / "ragged.csv"
    paths["ragged"].write_text('x0,x1,target\n1,2,3\n4,"5,6\n')
    paths["bad_model"] = tmp_path / "bad.probprop"
    paths["bad_model"].write_bytes(b"this is not a model file")
    return paths


def _fails(result, *needles):
    """Non-zero exit, a message naming the problem, and no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert not (result.exception and not isinstance(result.exception, SystemExit)), repr(result.exception)
    text = result.output.lower()
    for needle in needles:
        assert needle.lower() in text, (needle, result.output)


def test_fit_predict_evaluate_round_trip(runner, csvs, tmp_path):
    model = tmp_path / "model.probprop"
    result = runner.invoke(main, ["fit", str(csvs["train"]), "--target", "target", "--epochs", "5",
                                  "--hidden", "20", "--seed", "1", "-o", str(model)])
    assert result.exit_code == 0, result.output
    assert model.is_file()
    assert "saved" in result.output

    out = tmp_path / "pred.csv"
    result = runner.invoke(main, ["predict", str(model), str(csvs["new"]), "--index-col", "id",
                                  "-o", str(out), "--level", "0.8"])
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out, index_col=0)
    assert list(pred.columns) == ["mean", "std", "epistemic_std", "lower", "upper"]
    assert list(pred.index) == [f"row{i}" for i in range(10)]
    assert pred.index.name == "id"
    assert np.all(pred["std"] >= pred["epistemic_std"]) and np.all(pred["epistemic_std"] > 0)
    assert np.all((pred["lower"] < pred["mean"]) & (pred["mean"] < pred["upper"]))
    # an 80 % central interval is mean -/+ 1.2816 std
    np.testing.assert_allclose(pred["upper"] - pred["mean"], 1.2815516 * pred["std"], rtol=1e-5)

    result = runner.invoke(main, ["evaluate", str(model), str(csvs["train"]), "--target", "target"])
    assert result.exit_code == 0, result.output
    for name in ("rmse", "log_likelihood", "crps", "coverage_90", "miscalibration_area"):
        assert name in result.output
    scores = {line.split()[0]: float(line.split()[1]) for line in result.output.splitlines()
              if line.split() and line.split()[0] in ("rmse", "log_likelihood")}

    # the printed scores are those of the model's predictions, recomputed here from `predict`
    train = pd.read_csv(csvs["train"])
    y = train["target"].to_numpy()
    full = tmp_path / "pred_train.csv"
    assert runner.invoke(main, ["predict", str(model), str(csvs["train"]), "-o", str(full)]).exit_code == 0
    pred = pd.read_csv(full, index_col=0)
    assert scores["rmse"] == pytest.approx(rmse(y, pred["mean"]), rel=1e-5)
    assert scores["log_likelihood"] == pytest.approx(log_likelihood(y, pred["mean"], pred["std"]), rel=1e-5)

    # accuracy against oracles a constant predictor cannot meet: the known noise level (0.3) and the
    # constant predictor itself (training mean and std: rmse ~0.74, log-likelihood ~-1.12 here)
    constant_mean, constant_std = np.full_like(y, y.mean()), np.full_like(y, y.std())
    assert scores["rmse"] < 1.5 * NOISE_STD  # a 5-epoch fit gets ~0.32
    assert scores["rmse"] < 0.6 * rmse(y, constant_mean)
    assert scores["log_likelihood"] > log_likelihood(y, constant_mean, constant_std) + 0.5  # ~-0.34


def test_predict_to_stdout_and_feature_order(runner, csvs, tmp_path):
    model = tmp_path / "lin.probprop"
    result = runner.invoke(main, ["fit", str(csvs["train"]), "-t", "target", "--hidden", "", "--epochs", "5",
                                  "--noise", "0.09", "-q", "-o", str(model)])
    assert result.exit_code == 0, result.output
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(csvs["train"])[["x2", "target", "x0", "x1"]].to_csv(shuffled, index=False)
    straight = runner.invoke(main, ["predict", str(model), str(csvs["train"])])
    reordered = runner.invoke(main, ["predict", str(model), str(shuffled)])
    assert straight.exit_code == 0 and reordered.exit_code == 0, reordered.output

    def table(output):
        lines = [line for line in output.splitlines() if not line.startswith("note:")]
        assert lines[0] == "index,mean,std,epistemic_std,lower,upper"
        return np.array([[float(v) for v in line.split(",")] for line in lines[1:]])

    straight, reordered = table(straight.output), table(reordered.output)
    assert straight.shape == (64, 6)
    np.testing.assert_allclose(straight, reordered, rtol=1e-12)  # columns matched by name


def test_hidden_parsing(runner, csvs):
    assert _parse_hidden(None, None, ()) == (50,)
    assert _parse_hidden(None, None, ("50,50",)) == (50, 50)
    assert _parse_hidden(None, None, ("20", "10")) == (20, 10)
    assert _parse_hidden(None, None, ("",)) == ()
    _fails(runner.invoke(main, ["fit", str(csvs["train"]), "-t", "target", "--hidden", "0"]), "--hidden")
    _fails(runner.invoke(main, ["fit", str(csvs["train"]), "-t", "target", "--hidden", "fifty"]), "--hidden")
    _fails(runner.invoke(main, ["fit", str(csvs["train"]), "-t", "target", "--noise", "-1"]), "--noise")


@pytest.mark.parametrize(
    "case, needles",
    [
        ("missing", ["does not exist"]),
        ("binary", ["binary.csv", "not a readable csv"]),
        ("empty", ["empty.csv", "empty"]),
        ("ragged", ["ragged.csv", "not a readable csv"]),
        ("nonnumeric", ["'x1'", "non-numeric", "seven"]),
        ("nan", ["'x2'", "missing (nan)"]),
    ],
)
def test_fit_bad_csv(runner, csvs, tmp_path, case, needles):
    path = tmp_path / "no-such-file.csv" if case == "missing" else csvs[case]
    _fails(runner.invoke(main, ["fit", str(path), "--target", "target", "-o", str(tmp_path / "m.probprop")]), *needles)
    assert not (tmp_path / "m.probprop").exists()


def test_fit_missing_target_column(runner, csvs):
    _fails(runner.invoke(main, ["fit", str(csvs["train"]), "--target", "price"]), "'price'", "target column", "'x0'")


def test_corrupt_model_file(runner, csvs):
    for command in (["predict", str(csvs["bad_model"]), str(csvs["new"])],
                    ["evaluate", str(csvs["bad_model"]), str(csvs["train"]), "--target", "target"]):
        _fails(runner.invoke(main, command), "bad.probprop", "model")


def test_missing_model_file(runner, csvs, tmp_path):
    _fails(runner.invoke(main, ["predict", str(tmp_path / "none.probprop"), str(csvs["new"])]), "does not exist")


def test_predict_and_evaluate_input_errors(runner, csvs, tmp_path):
    model = tmp_path / "m.probprop"
    assert runner.invoke(main, ["fit", str(csvs["train"]), "-t", "target", "--epochs", "1", "--hidden", "20",
                                "-q", "-o", str(model)]).exit_code == 0
    missing_feature = tmp_path / "two.csv"
    pd.read_csv(csvs["train"])[["x0", "x1"]].to_csv(missing_feature, index=False)
    _fails(runner.invoke(main, ["predict", str(model), str(missing_feature)]), "'x2'", "missing")
    _fails(runner.invoke(main, ["predict", str(model), str(csvs["nonnumeric"])]), "'x1'", "non-numeric")
    _fails(runner.invoke(main, ["predict", str(model), str(csvs["nan"])]), "'x2'", "nan")
    _fails(runner.invoke(main, ["predict", str(model), str(csvs["binary"])]), "not a readable csv")
    _fails(runner.invoke(main, ["evaluate", str(model), str(csvs["new"]), "--target", "target"]), "'target'")


def test_bench_uci_rejects_unknown_names(runner, tmp_path):
    result = runner.invoke(main, ["bench", "uci", "--methods", "pbp,gp", "--out", str(tmp_path)])
    _fails(result, "'gp'", "pbp", "bayesridge", "ngboost")
    result = runner.invoke(main, ["bench", "uci", "--datasets", "bostn", "--out", str(tmp_path)])
    _fails(result, "'bostn'", "bostonHousing", "yacht")
    result = runner.invoke(main, ["bench", "uci", "--splits", "0-x", "--out", str(tmp_path)])
    _fails(result, "split")


def test_help_lists_commands(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "fit", "predict", "evaluate", "info", "bench"):
        assert command in result.output
    result = runner.invoke(main, ["bench", "--help"])
    assert "uci" in result.output and "speed" in result.output

"""``probprop demo``: run_demo writes its table, report and plots (a 3-epoch run)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import train_test_split

from probprop.data import load_diabetes
from probprop.demo import format_table, run_demo
from probprop.metrics import log_likelihood, rmse

FILES = ("results.csv", "report.md", "toy_fit.png", "calibration.png", "pit.png", "intervals.png")


def test_run_demo_writes_everything(tmp_path):
    out = tmp_path / "demo"
    messages = []
    rows = run_demo(out, epochs=3, log=messages.append)
    for name in FILES:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in FILES[2:]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert [(r["problem"], r["method"]) for r in rows] == [
        ("diabetes", "PBP"), ("diabetes", "BayesianRidge"), ("toy-1d", "PBP"), ("toy-1d", "BayesianRidge")]
    for row in rows:
        for key in ("rmse", "log_likelihood", "crps", "coverage_90", "fit_seconds"):
            assert np.isfinite(row[key]), (row["problem"], row["method"], key)
        assert 0 <= row["coverage_90"] <= 1
    diabetes = {r["method"]: r for r in rows if r["problem"] == "diabetes"}
    assert diabetes["PBP"]["n_train"] == 397 and diabetes["PBP"]["n_test"] == 45

    # oracles on the demo's split: the constant predictor (training mean and std) and scikit-learn's BayesianRidge
    X_train, X_test, y_train, y_test = train_test_split(*load_diabetes(), test_size=0.1, random_state=0)
    constant = np.full_like(y_test, y_train.mean()), np.full_like(y_test, y_train.std())
    ridge = BayesianRidge().fit(X_train, y_train).predict(X_test, return_std=True)
    oracle = {name: {"rmse": rmse(y_test, mean), "log_likelihood": log_likelihood(y_test, mean, std)}
              for name, (mean, std) in (("constant", constant), ("BayesianRidge", ridge))}
    assert diabetes["BayesianRidge"]["rmse"] == pytest.approx(oracle["BayesianRidge"]["rmse"], rel=1e-3)
    assert diabetes["BayesianRidge"]["log_likelihood"] == pytest.approx(oracle["BayesianRidge"]["log_likelihood"], rel=1e-3)
    # PBP after 3 epochs: rmse ~55.9 and log-likelihood ~-5.46, where the constant predictor gets ~70.9 and
    # ~-5.69 and BayesianRidge ~56.2 and ~-5.45
    assert diabetes["PBP"]["rmse"] < 0.9 * oracle["constant"]["rmse"]
    assert diabetes["PBP"]["log_likelihood"] > oracle["constant"]["log_likelihood"] + 0.1
    assert diabetes["PBP"]["rmse"] < 1.1 * oracle["BayesianRidge"]["rmse"]
    assert diabetes["PBP"]["log_likelihood"] > oracle["BayesianRidge"]["log_likelihood"] - 0.1

    with open(out / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4 and {"rmse", "log_likelihood", "crps", "coverage_90", "fit_seconds"} <= set(table[0])
    report = (out / "report.md").read_text()
    for name in FILES[2:]:
        assert f"]({name})" in report
    assert "BayesianRidge" in report and "| diabetes |" in report
    assert any("diabetes" in m for m in messages)


def test_run_demo_rejects_bad_epochs(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        run_demo(tmp_path, epochs=0)


def test_format_table_aligns():
    rows = [{"problem": "p", "method": "m", "n_train": 3, "n_test": 2, "rmse": 1.23456,
             "log_likelihood": -1.0, "crps": 0.5, "coverage_90": 0.9, "fit_seconds": 0.01}]
    text = format_table(rows)
    assert "1.235" in text and text.splitlines()[0].startswith("problem")
    assert format_table(rows, markdown=True).startswith("| problem |")

"""``probprop fit`` with a label column fits a PBP classifier; predict, evaluate and info follow."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import make_blobs

from probprop.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-classes")
    X, y = make_blobs(150, centers=3, cluster_std=0.8, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b"]).assign(kind=np.array(["=cat", "dog", "eel"])[y])
    frame.to_csv(folder / "train.csv", index=False)
    frame.drop(columns="kind").iloc[:4].to_csv(folder / "new.csv", index=False)
    result = CliRunner().invoke(main, ["fit", str(folder / "train.csv"), "--target", "kind", "--hidden", "6",
                                       "--epochs", "10", "-q"])
    assert result.exit_code == 0, result.output
    return folder, frame, result.output


def test_a_text_target_fits_a_classifier(files):
    folder, _, output = files
    assert "fitted a PBP classifier 2-6-3" in output and "3 classes" in output
    accuracy = float(output.split("training accuracy ")[1].split(",")[0])
    assert accuracy > 0.9


def test_predict_writes_class_probabilities_and_scores(files):
    folder, frame, _ = files
    result = CliRunner().invoke(main, ["predict", str(folder / "train.probprop"), str(folder / "new.csv")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(StringIO(result.output))
    assert list(table.columns) == ["index", "class", "p_=cat", "p_dog", "p_eel", "max_probability", "entropy",
                                   "mutual_information"]
    probs = table[["p_=cat", "p_dog", "p_eel"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-9)
    # the classes are those of the Python API, and a label that a spreadsheet would run as a
    # formula is written quoted
    from probprop import PBPClassifier

    model = PBPClassifier.load(folder / "train.probprop")
    predicted = model.predict(frame[["a", "b"]].iloc[:4])
    assert list(table["class"]) == [("'" + c if c.startswith("=") else c) for c in predicted]
    np.testing.assert_allclose(probs, model.predict_proba(frame[["a", "b"]].iloc[:4]), rtol=1e-9)


def test_evaluate_and_info_describe_a_classifier(files):
    folder, _, _ = files
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(folder / "train.probprop"), str(folder / "train.csv"),
                                  "--target", "kind"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "ece" in result.output
    info = json.loads(runner.invoke(main, ["info", str(folder / "train.probprop"), "--json"]).output)
    assert info["classes"] == ["=cat", "dog", "eel"] and info["network"]["outputs"] == 3


@pytest.mark.parametrize(("model", "options", "name", "epochs"), [
    ("tagi", ["--batch-size", "5"], "TAGIClassifier", "20"),
    ("mcdropout", ["--dropout", "0.05", "--batch-size", "16", "--learning-rate", "0.003"], "MCDropoutClassifier",
     "150"),
    ("laplace", ["--prior-precision", "3", "--batch-size", "16", "--samples", "50"], "LaplaceClassifier", "150"),
    ("laplace-ensemble", ["--prior-precision", "3", "--members", "2", "--samples", "20", "--learning-rate", "0.003",
                          "--link-approx", "bridge_norm", "--hessian-structure", "kron"], "LaplaceEnsembleClassifier",
     "150"),
    ("ensemble", ["--members", "2", "--learning-rate", "0.003,0.03"], "DeepEnsembleClassifier", "60"),
    ("pbp-ensemble", ["--members", "2", "--activation", "tanh"], "PBPEnsembleClassifier", "20"),
])
def test_other_models_fit_their_classifier(files, tmp_path, model, options, name, epochs):
    """--model picks the family member's classifier, its options reach it, and predict reads
    the file it wrote."""
    import probprop

    folder, frame, _ = files
    runner = CliRunner()
    out = tmp_path / f"{model}.probprop"
    result = runner.invoke(main, ["fit", str(folder / "train.csv"), "--target", "kind", "--model", model,
                                  "--hidden", "6", "--epochs", epochs, "-o", str(out), "-q", *options])
    assert result.exit_code == 0, result.output
    assert "3 classes" in result.output and float(result.output.split("training accuracy ")[1].split(",")[0]) > 0.9
    fitted = result.output
    loaded = getattr(probprop, name).load(out)
    result = runner.invoke(main, ["predict", str(out), str(folder / "new.csv")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(StringIO(result.output))
    np.testing.assert_allclose(table[["p_=cat", "p_dog", "p_eel"]].to_numpy(),
                               loaded.predict_proba(frame[["a", "b"]].iloc[:4]), rtol=1e-9)
    info = json.loads(runner.invoke(main, ["info", str(out), "--json"]).output)
    # every option given reached the estimator
    given = dict(zip(options[::2], options[1::2]))
    flags = {"--members": "n_members", "--samples": "n_samples"}
    for flag, value in given.items():
        param = loaded.get_params()[flags.get(flag, flag[2:].replace("-", "_"))]
        if flag in ("--link-approx", "--hessian-structure", "--activation"):
            assert param == value
            continue
        numbers = tuple(float(v) for v in value.split(","))
        assert param == (numbers if len(numbers) > 1 else numbers[0]), flag
    # a rate chosen on a validation split is printed, as for a regressor
    if model == "ensemble":
        assert f"chosen on a validation split of the training data: learning_rate {loaded.learning_rate_:.4g}" in fitted
        assert loaded.learning_rate_ in (0.003, 0.03)
    else:
        assert "chosen on a validation split" not in fitted
    assert info["estimator"] == name and info["model"] == model
    text = runner.invoke(main, ["info", str(out)]).output
    assert f"estimator      {name} (fit --model {model})" in text
    if model == "laplace":  # the posterior's prior precision, as given; 50 draws over (6 + 1) x 3 parameters
        assert info["posterior"] == {"kind": "last-layer Laplace", "prior_precision": 3.0, "how": "as given",
                                     "parameters": 21, "draws": 50, "link_approx": "mc"}
        assert ("posterior      last-layer Laplace over 21 parameters, prior precision 3 (as given), 50 draws of it "
                "per prediction") in text
    elif model == "laplace-ensemble":  # each member's posterior over (6 + 1) x 3 parameters, 20 draws each
        assert info["posterior"] == {"kind": "last-layer Laplace (Kronecker-factored), one per member (2)",
                                     "prior_precision": [3.0, 3.0],
                                     "how": "as given", "parameters": 21, "draws": 20, "link_approx": "bridge_norm"}
        assert "fitted a Laplace-ensemble classifier 2 x 2-6-3 on 150 rows" in fitted
        assert ("posterior      last-layer Laplace (Kronecker-factored), one per member (2) over 21 parameters each, "
                "prior precision 3 for "
                "every member (as given), read in closed form by link_approx=bridge_norm (no draws)") in text
    else:
        assert info["posterior"] is None
    if model == "pbp-ensemble":
        assert "fitted a PBP-ensemble classifier 2 x 2-6-3 on 150 rows" in fitted


def test_classification_errors_are_one_line(files, tmp_path):
    folder, frame, _ = files
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(folder / "train.csv"), "--target", "kind", "--model", "dvi"])
    assert result.exit_code != 0 and "--model dvi has no classifier" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["fit", str(folder / "train.csv"), "--target", "kind", "--noise", "0.1"])
    assert "--noise does not apply to classification" in result.output
    result = runner.invoke(main, ["fit", str(folder / "train.csv"), "--target", "kind", "--model", "tagi",
                                  "--sigma-v", "0.3"])
    assert "--sigma-v does not apply to classification (this is --model tagi)" in result.output
    # the flag as typed, every one named, exit status 2 as for other option conflicts
    result = runner.invoke(main, ["fit", str(folder / "train.csv"), "--target", "kind", "--homoscedastic",
                                  "--cut-noise-feedback"])
    assert result.exit_code == 2 and ("--homoscedastic does not apply to classification; --cut-noise-feedback does "
                                      "not apply to classification (this is --model pbp)") in result.output
    result = runner.invoke(main, ["fit", str(folder / "train.csv"), "--target", "kind", "--model", "laplace-ensemble",
                                  "--learning-rate", "select"])
    assert result.exit_code == 2 and "--learning-rate takes one number with --model laplace-ensemble" in result.output
    frame.assign(kind=frame["kind"].where(frame.index != 7)).to_csv(tmp_path / "gap.csv", index=False)
    result = runner.invoke(main, ["fit", str(tmp_path / "gap.csv"), "--target", "kind"])
    assert "1 missing label(s), first in data row 8" in result.output
    frame.assign(kind="dog").to_csv(tmp_path / "one.csv", index=False)
    result = runner.invoke(main, ["fit", str(tmp_path / "one.csv"), "--target", "kind", "-q"])
    assert "at least 2 classes" in result.output and "Traceback" not in result.output
    frame.assign(kind=frame["kind"].replace("eel", "fox")).to_csv(tmp_path / "fox.csv", index=False)
    result = runner.invoke(main, ["evaluate", str(folder / "train.probprop"), str(tmp_path / "fox.csv"),
                                  "--target", "kind"])
    assert "label(s) ['fox'] are not among the model's classes" in result.output

"""``probprop fit --model``: every model fits, saves and predicts from the command line, with its
own options (and only its own); ``probprop info`` describes model files and refuses bad ones in
one line; ``predict``/``evaluate`` say when they match columns by position."""

from __future__ import annotations

import inspect
import json
import zipfile
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from probprop import estimators
from probprop._version import __version__
from probprop.cli import ACTIVATION_NAMES, CLASSIFIERS, MODEL_NAMES, MODEL_OPTIONS, MODELS, PBP_INFERENCE, main
from probprop.data import make_linear_gaussian
from probprop.io import VERSION, load_model

FEATURES = ["x0", "x1", "x2"]
#: Options every fit below shares: a tiny network, two epochs.
COMMON = ["--hidden", "4", "--epochs", "2", "--seed", "3", "-q"]
COMMON_PARAMS = {"hidden": (4,), "epochs": 2, "random_state": 3, "verbose": False}

#: Per model: the model options given to `fit`, the estimator parameters they must set, and what
#: `info` must print as the network.
CASES = {
    "pbp": (["--activation", "tanh"], {"activation": "tanh"},
            "3-4-1: 3 inputs, 1 hidden layer (4 units), 1 output; tanh units"),
    "pbp-ensemble": (["--members", "2"], {"n_members": 2},
                     "2 members, each 3-4-1: 3 inputs, 1 hidden layer (4 units), 1 output; relu units"),
    "tagi": (["--sigma-v", "0.2", "--batch-size", "8"], {"sigma_v": 0.2, "batch_size": 8},
             "3-4-1: 3 inputs, 1 hidden layer (4 units), 1 output; relu units"),
    "dvi": (["--homoscedastic", "--learning-rate", "0.01", "--no-empirical-bayes"],
            {"heteroscedastic": False, "learning_rate": 0.01, "empirical_bayes": False},
            "3-4-1: 3 inputs, 1 hidden layer (4 units), 1 output"),
    "map": (["--heteroscedastic", "--batch-size", "16"], {"heteroscedastic": True, "batch_size": 16},
            "3-4-2: 3 inputs, 1 hidden layer (4 units), 2 outputs (mean and noise variance)"),
    "laplace": (["--prior-precision", "2.5", "--learning-rate", "0.02"], {"prior_precision": 2.5, "learning_rate": 0.02},
                "3-4-1: 3 inputs, 1 hidden layer (4 units), 1 output"),
    "mcdropout": (["--dropout", "0.1", "--tau", "20", "--samples", "10"], {"dropout": 0.1, "tau": 20.0, "n_samples": 10},
                  "3-4-1: 3 inputs, 1 hidden layer (4 units), 1 output"),
    "ensemble": (["--members", "2", "--learning-rate", "0.005"], {"n_members": 2, "learning_rate": 0.005},
                 "2 members, each 3-4-2: 3 inputs, 1 hidden layer (4 units), 2 outputs (mean and noise variance)"),
}
HETEROSCEDASTIC = {"map", "ensemble"}


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-models")
    X, y, _ = make_linear_gaussian(48, 3, noise_std=0.3, random_state=1)
    train = pd.DataFrame(X, columns=FEATURES)
    train["target"] = y
    paths = {"folder": folder, "train": folder / "train.csv", "new": folder / "new.csv"}
    train.to_csv(paths["train"], index=False)
    train[FEATURES].iloc[:6].to_csv(paths["new"], index=False)
    return paths


@pytest.fixture(scope="module")
def fitted(data):
    """Model name -> (path of its file, fit's output): each model fitted once by the command line."""
    runner = CliRunner()
    out = {}
    for name, (options, _, _) in CASES.items():
        path = data["folder"] / f"{name}.probprop"
        result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", name, *COMMON, *options,
                                      "-o", str(path)])
        assert result.exit_code == 0, (name, result.output, result.exception)
        out[name] = (path, result.output)
    return out


def _one_line_error(result, *needles, exit_code=None):
    """A non-zero exit with exactly one line of output, "Error: ...", naming ``needles``; no traceback."""
    assert result.exit_code != 0, result.output
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------
# fit --model


@pytest.mark.parametrize("name", list(CASES))
def test_every_model_fits_saves_and_holds_its_options(fitted, name):
    path, output = fitted[name]
    class_name, label = MODELS[name]
    assert output.startswith(f"fitted {label} ") and f"saved {path}" in output
    model = load_model(path)
    assert type(model).__name__ == class_name
    _, params, _ = CASES[name]
    # exactly the estimator the options describe: the given parameters, the class defaults otherwise
    expected = getattr(estimators, class_name)(**COMMON_PARAMS, **params).get_params()
    assert model.get_params() == expected
    assert list(model.feature_names_in_) == FEATURES


@pytest.mark.parametrize("name", list(CASES))
def test_predict_and_evaluate_work_on_every_model(runner, fitted, data, name):
    path, _ = fitted[name]
    out = data["folder"] / f"pred-{name}.csv"
    result = runner.invoke(main, ["predict", str(path), str(data["new"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out, index_col=0)
    assert list(pred.columns) == ["mean", "std", "epistemic_std", "lower", "upper"] and len(pred) == 6
    assert np.all(np.isfinite(pred.to_numpy()))
    assert np.all((pred["lower"] < pred["mean"]) & (pred["mean"] < pred["upper"]))
    # the file's predictions are the loaded model's
    dist = load_model(path).predict_dist(pd.read_csv(data["new"]))
    np.testing.assert_allclose(pred["mean"], dist.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pred["std"], dist.std, rtol=1e-9, atol=1e-12)
    result = runner.invoke(main, ["evaluate", str(path), str(data["train"]), "--target", "target"])
    assert result.exit_code == 0, result.output
    assert "rmse" in result.output and "log_likelihood" in result.output


def test_the_default_model_is_pbp_as_before(runner, data):
    """No --model: a PBPRegressor exactly as `fit` built it before models were selectable."""
    path = data["folder"] / "default.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", *COMMON, "-o", str(path)])
    assert result.exit_code == 0, result.output
    model = load_model(path)
    reference = estimators.PBPRegressor(hidden=(4,), epochs=2, noise="learn", random_state=3, verbose=False)
    assert model.get_params() == reference.get_params()
    train = pd.read_csv(data["train"])
    reference.fit(train[FEATURES], train["target"])
    np.testing.assert_array_equal(model.predict(train[FEATURES]), reference.predict(train[FEATURES]))
    assert result.output.startswith("fitted PBP 3-4-1 on 48 rows x 3 features of ")
    assert f"noise std {np.sqrt(reference.noise_variance_):.4g}\n" in result.output


def test_fixed_pbp_noise_and_grids(runner, data):
    path = data["folder"] / "fixed.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", *COMMON, "--noise", "0.09",
                                          "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert load_model(path).noise == 0.09
    info = json.loads(runner.invoke(main, ["info", "--json", str(path)]).output)
    assert info["noise"]["kind"] == "fixed" and info["noise"]["variance"] == 0.09


def test_hyperparameters_chosen_on_a_validation_split_are_reported(runner, data):
    """'select' and comma lists reach the estimator as 'select' and tuples; fit and info name the choice."""
    tagi = data["folder"] / "tagi-select.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "tagi", *COMMON,
                                  "--sigma-v", "select", "-o", str(tagi)])
    assert result.exit_code == 0, result.output
    model = load_model(tagi)
    assert model.sigma_v == "select" and model.sigma_v_ in (0.1, 0.2, 0.3, 0.5, 0.7)
    assert f"chosen on a validation split of the training data: sigma_v {model.sigma_v_:.4g}\n" in result.output
    info = json.loads(runner.invoke(main, ["info", "--json", str(tagi)]).output)
    assert info["chosen"] == {"sigma_v": model.sigma_v_} and info["noise"]["kind"] == "chosen"
    assert info["noise"]["variance"] == pytest.approx((model.sigma_v_ * model.y_scale_) ** 2, rel=1e-12)

    mc = data["folder"] / "mc-grid.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "mcdropout", *COMMON,
                                  "--dropout", "0.05,0.1", "--tau", "10", "--samples", "5", "-o", str(mc)])
    assert result.exit_code == 0, result.output
    model = load_model(mc)
    assert model.dropout == (0.05, 0.1) and model.tau == 10.0 and model.dropout_ in (0.05, 0.1)
    info = json.loads(runner.invoke(main, ["info", "--json", str(mc)]).output)
    assert info["chosen"] == {"dropout": model.dropout_}  # tau was given, not chosen
    assert info["noise"]["kind"] == "fixed" and info["noise"]["variance"] == pytest.approx(0.1, rel=1e-12)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "tagi", "--noise", "0.1"], "--noise applies to --model pbp only (this is --model tagi)"),
        (["--members", "3"], "--members applies to --model pbp-ensemble or ensemble or laplace-ensemble only (this is --model pbp)"),
        (["--model", "mcdropout", "--homoscedastic"], "--homoscedastic applies to --model pbp or tagi or dvi or map only"),
        (["--model", "tagi", "--no-empirical-bayes"], "--no-empirical-bayes applies to --model dvi only"),
        (["--model", "ensemble", "--dropout", "0.1"], "--dropout applies to --model mcdropout only"),
        (["--model", "map", "--sigma-v", "0.2"], "--sigma-v applies to --model tagi only"),
        (["--model", "pbp-ensemble", "--noise", "learn"], "--noise applies to --model pbp only"),
        (["--model", "dvi", "--learning-rate", "0.01,0.02"],
         "--learning-rate takes one number with --model dvi (a comma list or 'select' only with --model ensemble)"),
        (["--model", "map", "--learning-rate", "select"], "--learning-rate takes one number with --model map"),
    ],
)
def test_an_option_of_another_model_is_a_one_line_error(runner, data, args, message):
    out = data["folder"] / "never.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", *args, "-o", str(out)])
    _one_line_error(result, message, exit_code=2)
    assert not out.exists()


def test_two_inapplicable_options_are_named_together(runner, data):
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "tagi",
                                  "--noise", "0.1", "--learning-rate", "0.1"])
    _one_line_error(result, "--noise applies to --model pbp only; --learning-rate applies to --model dvi or map or "
                            "laplace or mcdropout or ensemble or laplace-ensemble only (this is --model tagi)",
                    exit_code=2)


@pytest.mark.parametrize(("args", "message", "exit_code"), [
    (["--model", "laplace-ensemble"], ("--model laplace-ensemble classifies only (the target column 'target' holds "
                                       "numbers; --task classification reads them as class labels)"), 1),
    (["--model", "laplace-ensemble", "--task", "regression"],
     "--model laplace-ensemble classifies only (--task regression asks for a regressor)", 1),
    (["--model", "laplace", "--samples", "10"], "--samples does not apply to regression (this is --model laplace)", 2),
    (["--model", "laplace", "--link-approx", "probit"],
     "--link-approx does not apply to regression (this is --model laplace)", 2),
    (["--model", "mcdropout", "--batch-size", "8", "--learning-rate", "0.1"],
     ("--batch-size does not apply to regression; --learning-rate does not apply to regression (this is --model "
      "mcdropout)"), 2),
    # not "takes one number": no number would do
    (["--model", "mcdropout", "--learning-rate", "select"], "--learning-rate does not apply to regression", 2),
    (["--model", "mcdropout", "--noise", "0.1", "--samples", "10", "--batch-size", "8"],
     "--noise applies to --model pbp only; --batch-size does not apply to regression (this is --model mcdropout)", 2),
])
def test_a_classification_only_model_or_option_with_a_numeric_target_is_a_one_line_error(runner, data, args, message,
                                                                                         exit_code):
    out = data["folder"] / "never.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", *args, "-o", str(out)])
    _one_line_error(result, message, exit_code=exit_code)
    assert not out.exists()


def test_the_help_marks_options_of_one_task():
    """An option that the regressor (classifier) of a model with both lacks says 'classification
    only' ('regression only') in its help; a Laplace prior precision is a number, never 'select'."""
    def having(table, name, param):
        return param in inspect.signature(getattr(estimators, table[name][0])).parameters

    both = set(MODELS) & set(CLASSIFIERS)
    for option in MODEL_OPTIONS:
        regression_only = any(not having(CLASSIFIERS, name, option.param) for name in both & set(option.models))
        classification_only = any(not having(MODELS, name, option.param) for name in both & set(option.models))
        assert ("regression only" in option.help) == regression_only, option.decls
        assert ("classification only" in option.help) == classification_only, option.decls
    result = CliRunner().invoke(main, ["fit", "x.csv", "-t", "y", "--model", "laplace", "--prior-precision", "select"])
    assert result.exit_code == 2 and "'select': expected a precision" in result.output


def test_unknown_model_and_bad_values(runner, data):
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "gp"])
    assert result.exit_code == 2 and "'gp' is not one of" in result.output and "mcdropout" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for args, needle in ((["--model", "mcdropout", "--dropout", "1.5"], "(0, 1)"),
                         (["--model", "tagi", "--sigma-v", "0.1,0.2"], "expected 'select'"),
                         (["--model", "ensemble", "--learning-rate", "fast"], "expected 'select'"),
                         (["--model", "ensemble", "--members", "0"], "--members")):
        result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", *args])
        assert result.exit_code == 2 and needle in result.output, result.output
        assert "Traceback" not in result.output


def test_the_option_table_matches_the_estimators():
    """Each model option applies to exactly the models whose regressor or classifier has its
    parameter, and the hard-coded choices are the library's (the command line module may not
    import them)."""
    from probprop.learners import pbp
    from probprop.moments import ACTIVATIONS

    assert MODEL_NAMES == (*MODELS, "laplace-ensemble") and set(CLASSIFIERS) <= set(MODEL_NAMES)
    either = {name: {**({} if name not in MODELS else inspect.signature(getattr(estimators, MODELS[name][0])).parameters),
                     **({} if name not in CLASSIFIERS
                        else inspect.signature(getattr(estimators, CLASSIFIERS[name][0])).parameters)}
              for name in MODEL_NAMES}
    for option in MODEL_OPTIONS:
        having = {name for name, params in either.items() if option.param in params}
        assert set(option.models) == having, option.decls
        assert set(option.one_value) <= set(option.models)
    signatures = {name: inspect.signature(getattr(estimators, cls)).parameters for name, (cls, _) in MODELS.items()}
    for name, params in signatures.items():
        assert {"hidden", "epochs", "random_state", "verbose"} <= set(params), name
    assert sorted(ACTIVATION_NAMES) == sorted(ACTIVATIONS)
    assert tuple(PBP_INFERENCE) == tuple(pbp.INFERENCE)
    from probprop.cli import LINK_NAMES
    from probprop.moments.softmax import LINKS

    assert tuple(LINK_NAMES) == tuple(LINKS)
    from probprop.cli import HESSIAN_NAMES
    from probprop.learners.laplace import HESSIAN_STRUCTURES

    assert tuple(HESSIAN_NAMES) == tuple(HESSIAN_STRUCTURES)
    # the defaults `fit --help` states
    epochs = {name: params["epochs"].default for name, params in signatures.items()}
    assert epochs == {"pbp": 40, "pbp-ensemble": 40, "tagi": 40, "dvi": 100, "map": 40, "laplace": 40, "mcdropout": 400,
                      "ensemble": 40}
    assert {name: params["hidden"].default for name, params in signatures.items()} == dict.fromkeys(MODELS, (50,))


# ---------------------------------------------------------------------------------------------
# info


@pytest.mark.parametrize("name", list(CASES))
def test_info_describes_every_model(runner, fitted, name):
    path, _ = fitted[name]
    result = runner.invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    lines = {line[:14].strip(): line[15:] for line in result.output.splitlines()}  # "label         value"
    class_name, _ = MODELS[name]
    assert lines["estimator"] == f"{class_name} (fit --model {name})"
    assert lines["network"] == CASES[name][2]
    assert lines["features"] == "3: 'x0', 'x1', 'x2'"
    assert lines["training rows"] == "not recorded (model files do not store it)"
    assert lines["written by"] == f"probprop {__version__}; file format probprop-npz version {VERSION}"
    assert lines["file"].startswith(f"{path} (") and f"{path.stat().st_size:,} bytes" in lines["file"]
    assert lines["standardised"].startswith("inputs (a mean and a scale per feature) and target (mean ")
    if name in HETEROSCEDASTIC:
        assert lines["noise"].startswith("heteroscedastic: ")
    else:
        assert "variance" in lines["noise"]
    if name == "laplace":  # given as 2.5 (CASES); 4 hidden units + 1 bias, one output
        assert lines["posterior"] == "last-layer Laplace over 5 parameters, prior precision 2.5 (as given)"
    else:
        assert "posterior" not in lines


@pytest.mark.parametrize("name", list(CASES))
def test_info_json(runner, fitted, data, name):
    path, _ = fitted[name]
    result = runner.invoke(main, ["info", "--json", str(path)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    model = load_model(path)
    class_name, _ = MODELS[name]
    members = CASES[name][1].get("n_members")
    assert info["estimator"] == class_name and info["model"] == name
    assert info["probprop_version"] == __version__ and info["format_version"] == VERSION
    assert info["format"] == "probprop-npz" and info["size_bytes"] == path.stat().st_size
    assert info["network"]["inputs"] == 3 and info["network"]["hidden"] == [4] and info["network"]["members"] == members
    assert info["network"]["outputs"] == (2 if name in HETEROSCEDASTIC else 1)
    assert info["feature_names"] == FEATURES
    assert info["training_rows"] is None
    assert info["standardisation"]["y_mean"] == model.y_mean_ and info["standardisation"]["y_scale"] == model.y_scale_
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in model.get_params().items()}
    assert info["parameters"] == params
    if name == "laplace":
        assert info["posterior"]["prior_precision"] == model.prior_precision_ == 2.5
        assert info["posterior"]["parameters"] == 5 and info["posterior"]["draws"] is None
    else:
        assert info["posterior"] is None
    # the noise info reports is the one the model predicts with
    noise_var = model.predict_dist(pd.read_csv(data["new"])).noise_var
    if name in HETEROSCEDASTIC:
        assert info["noise"]["kind"] == "heteroscedastic" and info["noise"]["variance"] is None
    else:
        assert info["noise"]["variance"] == pytest.approx(float(noise_var[0]), rel=1e-9)
        np.testing.assert_allclose(noise_var, noise_var[0], rtol=1e-12)


def test_info_on_a_version_1_file_and_one_without_feature_names(runner, data):
    path = Path(__file__).parent / "data" / "model-0.1.0-tagi.probprop"
    result = runner.invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "TAGIRegressor (fit --model tagi)" in result.output
    assert "probprop 0.1.0; file format probprop-npz version 1" in result.output
    assert "3, unnamed (fitted from an array: predict and evaluate need --by-position)" in result.output
    info = json.loads(runner.invoke(main, ["info", "--json", str(path)]).output)
    assert info["feature_names"] is None and info["network"]["hidden"] == [4]


def _rewrite(source, target, change_meta=None, change_arrays=None):
    """A copy of model file ``source`` with its metadata and/or arrays changed."""
    with np.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    if change_meta:
        change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    with open(target, "wb") as handle:  # np.savez would add .npz to the name
        np.savez(handle, __meta__=np.array(json.dumps(meta)), **arrays)
    return target


@pytest.mark.parametrize(
    "case, needle",
    [
        ("text", "not a probprop model file"),
        ("truncated", "not a probprop model file"),
        ("no-meta", "no metadata record"),
        ("foreign-format", "not a probprop model file (format 'something-else')"),
        ("future-version", "format version 99"),
        ("unknown-estimator", "unknown estimator 'GPRegressor'"),
        ("bad-hidden", "malformed metadata (hidden is"),
        ("bad-names", "feature names"),
        ("bad-params", "parameters are not a JSON object"),
        ("objects", "Python objects"),
        ("wrong-state", "expected"),
        ("empty", "not a probprop model file"),
    ],
)
def test_info_refuses_a_bad_file_in_one_line(runner, fitted, data, case, needle):
    good, _ = fitted["pbp"]
    path = data["folder"] / f"bad-{case}.probprop"
    if case == "text":
        path.write_text("this is not a model\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "no-meta":
        with open(path, "wb") as handle:
            np.savez(handle, x=np.zeros(3))
    elif case == "objects":
        with zipfile.ZipFile(path, "w") as archive, archive.open("__meta__.npy", "w") as handle:
            np.lib.format.write_array(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "wrong-state":  # metadata fine, an array of the wrong shape: the loaded noise refuses it
        def shrink(arrays):
            key = next(k for k in arrays if k.startswith("state/") and arrays[k].ndim == 2)
            arrays[key] = arrays[key][:1]
        _rewrite(good, path, change_arrays=shrink)
    else:
        changes = {
            "foreign-format": lambda m: m.update(format="something-else"),
            "future-version": lambda m: m.update(version=99),
            "unknown-estimator": lambda m: m.update(estimator="GPRegressor"),
            "bad-hidden": lambda m: m["params"].update(hidden="four"),
            "bad-names": lambda m: m.update(feature_names_in=["x0", 1, None]),
            "bad-params": lambda m: m.update(params=[1, 2]),
        }
        _rewrite(good, path, change_meta=changes[case])
    for args in (["info", str(path)], ["info", "--json", str(path)]):
        line = _one_line_error(runner.invoke(main, args), needle)
        assert line.startswith("Error: cannot read the model: ") and str(path) in line


def test_info_shows_a_laplace_prior_precision_chosen_by_the_evidence_and_refuses_a_broken_posterior(runner, data):
    train = pd.read_csv(data["train"])
    model = estimators.LaplaceRegressor(hidden=(4,), epochs=3, random_state=0)
    model.fit(train[FEATURES], train["target"])
    path = data["folder"] / "laplace-evidence.probprop"
    model.save(path)
    info = json.loads(runner.invoke(main, ["info", "--json", str(path)]).output)
    assert info["posterior"]["how"] == "chosen by the Laplace evidence"
    assert info["posterior"]["prior_precision"] == model.prior_precision_
    lines = runner.invoke(main, ["info", str(path)]).output
    assert f"prior precision {model.prior_precision_:.4g} (chosen by the Laplace evidence)" in lines
    broken = _rewrite(path, data["folder"] / "laplace-broken.probprop",
                      change_arrays=lambda arrays: arrays.update({"state/.prior_precision": np.array(-1.0)}))
    for args in (["info", str(broken)], ["info", "--json", str(broken)]):
        line = _one_line_error(runner.invoke(main, args), "prior precision must be positive")
        assert line.startswith("Error: cannot read the model: ") and str(broken) in line


def test_info_on_a_missing_file(runner, data):
    result = runner.invoke(main, ["info", str(data["folder"] / "none.probprop")])
    assert result.exit_code == 2 and "does not exist" in result.output


# ---------------------------------------------------------------------------------------------
# predict/evaluate: matching by position is said


def test_by_position_is_stated_on_stderr(runner, data):
    train = pd.read_csv(data["train"])
    model = estimators.PBPRegressor(hidden=(4,), epochs=2, random_state=0)
    model.fit(train[FEATURES].to_numpy(), train["target"].to_numpy())  # an array: no feature names
    path = data["folder"] / "unnamed.probprop"
    model.save(path)
    renamed = data["folder"] / "renamed.csv"
    train.rename(columns={"x0": "a", "x1": "b", "x2": "c"})[["a", "b", "c"]].to_csv(renamed, index=False)

    result = runner.invoke(main, ["predict", str(path), str(renamed), "--by-position"])
    assert result.exit_code == 0, result.output
    note = (f"note: the model has no feature names; matching {renamed}'s 3 feature column(s) 'a', 'b', 'c' to the "
            "model's features by position")
    assert result.stderr.strip() == note
    assert note not in result.stdout and result.stdout.startswith("index,mean,std,epistemic_std,lower,upper\n")
    values = pd.read_csv(data["train"])[FEATURES].to_numpy()
    np.testing.assert_allclose(pd.read_csv(StringIO(result.stdout))["mean"], model.predict(values),
                               rtol=1e-12)

    with_target = data["folder"] / "renamed-target.csv"
    train.rename(columns={"x0": "a", "x1": "b", "x2": "c"}).to_csv(with_target, index=False)
    result = runner.invoke(main, ["evaluate", str(path), str(with_target), "-t", "target", "--by-position"])
    assert result.exit_code == 0, result.output
    assert "matching" in result.stderr and "3 feature column(s) 'a', 'b', 'c'" in result.stderr

    # without --by-position such a model is refused; by name, nothing is said
    _one_line_error(runner.invoke(main, ["predict", str(path), str(renamed)]), "--by-position")


def test_by_name_is_silent_and_by_position_with_names_says_so(runner, fitted, data):
    path, _ = fitted["pbp"]
    result = runner.invoke(main, ["predict", str(path), str(data["new"])])
    assert result.exit_code == 0 and result.stderr == ""
    result = runner.invoke(main, ["predict", str(path), str(data["new"]), "--by-position"])
    assert result.exit_code == 0
    assert result.stderr.strip() == ("note: the model has feature names, so columns are matched by name "
                                     "(--by-position is not needed)")


def test_heteroscedastic_pbp_from_the_command_line(runner, data):
    """--heteroscedastic now applies to PBP: a 2-output network whose noise info calls per input,
    predictions with a noise per row; with a fixed --noise it is a one-line error."""
    path = data["folder"] / "pbp-het.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "pbp", *COMMON,
                                  "--heteroscedastic", "-o", str(path)])
    assert result.exit_code == 0, result.output
    model = load_model(path)
    assert model.get_params()["heteroscedastic"] is True
    info = json.loads(runner.invoke(main, ["info", "--json", str(path)]).output)
    assert info["network"]["outputs"] == 2 and info["noise"]["kind"] == "heteroscedastic"
    noise = model.predict_dist(pd.read_csv(data["train"])[FEATURES]).noise_var
    assert np.ptp(noise) > 0  # one variance per row
    out = data["folder"] / "pred-pbp-het.csv"
    assert runner.invoke(main, ["predict", str(path), str(data["new"]), "-o", str(out)]).exit_code == 0
    assert np.all(np.isfinite(pd.read_csv(out, index_col=0).to_numpy()))
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "pbp", *COMMON,
                                  "--heteroscedastic", "--noise", "0.5", "-o", str(data["folder"] / "bad.probprop")])
    _one_line_error(result, "noise='learn'")
    cut = data["folder"] / "pbp-het-cut.probprop"
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "pbp", *COMMON,
                                  "--heteroscedastic", "--cut-noise-feedback", "-o", str(cut)])
    assert result.exit_code == 0, result.output
    assert load_model(cut).state_.spec.likelihood.feedback is False
    result = runner.invoke(main, ["fit", str(data["train"]), "-t", "target", "--model", "pbp", *COMMON,
                                  "--cut-noise-feedback", "-o", str(data["folder"] / "bad.probprop")])
    _one_line_error(result, "needs heteroscedastic=True")

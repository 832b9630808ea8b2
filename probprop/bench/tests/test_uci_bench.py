"""The UCI benchmark runner: an end-to-end slice, and the pieces it is built from."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from probprop.bench import methods, published, report, stats
from probprop.bench.machine import worker_environment
from probprop.bench.plan import parse_splits, plan_tasks, resolve_datasets
from probprop.bench.uci import run_bench
from probprop.data import load_uci


def _need_data(*names):
    for name in names:
        try:
            load_uci(name)
        except FileNotFoundError as err:
            pytest.skip(f"UCI data for {name!r} not available: {err}")


def test_bench_slice_end_to_end(tmp_path):
    _need_data("yacht", "concrete")
    out = tmp_path / "bench"
    result = run_bench(out=out, datasets="yacht,concrete", splits="0,1", methods="pbp,bayesridge", workers=2,
                       command="probprop bench uci (test slice)", progress=False, log=lambda _: None)
    assert not result.failures, result.failures

    frame = pd.read_csv(out / "results.csv")
    assert len(frame) == 8
    assert set(zip(frame["method"], frame["dataset"], frame["split"])) == {
        (m, d, k) for m in ("pbp", "bayesridge") for d in ("yacht", "concrete") for k in (0, 1)}
    for column in ("rmse", "log_likelihood", "crps", "coverage_90", "width_90", "miscalibration_area",
                   "rms_calibration_error", "fit_seconds", "predict_seconds"):
        assert column in frame.columns and frame[column].notna().all(), column
    pbp = frame[frame["method"] == "pbp"].set_index(["dataset", "split"])
    assert (pbp["epochs"] == 40).all() and (pbp["n_hidden"] == 50).all()  # from the data files
    assert (pbp.loc["yacht", "rmse"] < 2.5).all()
    assert (pbp.loc["yacht", "log_likelihood"] > -2.5).all()
    assert (pbp.loc["concrete", "rmse"] < 7.5).all()
    # two workers, each on its own core
    assert frame["core"].astype(str).str.fullmatch(r"\d+").all()
    # PBP's two splits of a dataset were fitted together, the baseline's one by one
    assert (pbp["fitted_together"] == 2).all()
    assert (frame.loc[frame["method"] == "bayesridge", "fitted_together"] == 1).all()

    text = (out / "report.md").read_text()
    assert "1.02 ± 0.05" in text and "-1.63 ± 0.02" in text  # the paper's PBP on yacht
    assert "probprop PBP vs paper" in text
    assert "probprop bench uci (test slice)" in text
    assert "Total wall time" in text and "SE" in text and "SD" in text
    assert "8 fits on 2 worker" in text and "Fitted together: `pbp`" in text
    assert "![Test log-likelihood per dataset](ll_comparison.png)" in text
    assert (out / "ll_comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_parse_splits():
    assert parse_splits("all") is None
    assert parse_splits("0-4") == [0, 1, 2, 3, 4]
    assert parse_splits("0,1,2") == [0, 1, 2]
    assert parse_splits("3,0-1,3") == [0, 1, 3]
    for bad in ("x", "4-2", "-1", "0-", ","):
        with pytest.raises(ValueError):
            parse_splits(bad)


def test_names_are_checked_with_the_valid_ones_listed():
    assert resolve_datasets("all")[0] == "bostonHousing" and len(resolve_datasets("all")) == 9
    assert resolve_datasets("yacht,boston") == ["bostonHousing", "yacht"]  # papers' order
    with pytest.raises(ValueError, match="yacht"):
        resolve_datasets("yaht")
    with pytest.raises(ValueError, match="bayesridge"):
        methods.resolve_methods("pbp,svm")
    assert methods.resolve_methods("all") == list(methods.METHODS)


def _pytagi_imports() -> bool:
    try:
        methods.import_pytagi()
    except Exception:
        return False
    return True


def test_pytagi_is_a_clean_skip_when_not_importable():
    if _pytagi_imports():
        pytest.skip("pytagi imports here")
    with pytest.raises(methods.MethodUnavailable, match="pytagi"):
        methods.check_available("pytagi")


def test_pytagi_adapter_returns_a_predictive_distribution():
    if not _pytagi_imports():
        pytest.skip("pytagi does not import here (needs libopenmpi3 and nvidia-nccl-cu12; `make pytagi`)")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = 5.0 + 2.0 * X[:, 0] + 0.3 * rng.normal(size=120)
    info = methods.DatasetInfo("toy", n_hidden=8, n_epochs=5, n_features=3, n_train=100)
    mean, std, seconds = methods.pytagi(X[:100], y[:100], X[100:], info, seed=0)
    assert mean.shape == std.shape == (20,) and np.all(std > 0) and seconds > 0
    assert np.sqrt(np.mean((mean - y[100:]) ** 2)) < np.std(y)  # learned something, in y's units


def test_pytagi_val_searches_sigma_v_once_and_fits_the_best_epochs(monkeypatch):
    """pytagi-val's orchestration with pytagi's training and prediction replaced by fakes (so it
    runs without pytagi): a standardised predictive mean of 0 and a variance of 100 after 1 epoch,
    1 after 2 or 3 (a tie: the fewer win)."""
    from scipy.stats import norm

    X, y, X_test = _noisy_line(3, intercept=2.0)
    monkeypatch.setattr(methods, "TAGI_EPOCH_GRID", (1, 2, 3))
    monkeypatch.setattr(methods, "check_available", lambda name: None)
    trained = []

    def train(Xs, ys, hidden, epochs, sigma_v, seed, batch=10):
        assert abs(ys.mean()) < 1e-12 and abs(ys.std() - 1.0) < 0.02  # standardised on its own rows
        trained.append((epochs, sigma_v, len(ys)))
        return epochs  # the "network"

    def predict(net, Xs, batch=10):
        return np.zeros(len(Xs)), np.full(len(Xs), 100.0 if net == 1 else 1.0)

    monkeypatch.setattr(methods, "_pytagi_train", train)
    monkeypatch.setattr(methods, "_pytagi_predict", predict)
    info = methods.DatasetInfo("toy", n_hidden=4, n_epochs=40, n_features=2, n_train=80)
    mean, std, seconds, extra = methods.pytagi_val(X, y, X_test, info, seed=0)
    assert extra == {"epochs": 2}
    search, rest = trained[:5], trained[5:]
    assert [t[1] for t in search] == list(methods.PYTAGI_SIGMA_V) and {(t[0], t[2]) for t in search} == {(1, 58)}
    # the search's best sigma_v for a variance of 100: the smallest (total variance nearest the data's)
    assert rest == [(1, 0.1, 64), (2, 0.1, 64), (3, 0.1, 64), (2, 0.1, 80)]
    np.testing.assert_allclose(mean, np.full(10, y.mean()))  # in y's units: the training split's
    np.testing.assert_allclose(std, np.full(10, y.std() * np.sqrt(1.0 + 0.1**2)))  # mean and population std
    model = methods._PytagiModel(X, y, 4, 2, 0.1, 0)
    np.testing.assert_allclose(model.score(X[:7], y[:7]), norm.logpdf(y[:7], mean[0], std[0]).mean())
    assert seconds >= 0
    monkeypatch.setattr(methods, "_pytagi_predict", lambda net, Xs, batch=10: (np.zeros(len(Xs)), np.full(len(Xs), np.inf)))
    with pytest.raises(ValueError, match="not finite"):  # a diverged fit is refused, as probprop's are
        model.predict(X_test)


def test_plan_orders_longest_first_and_notes_missing_splits():
    _need_data("yacht", "protein")
    tasks, skipped = plan_tasks("yacht,protein", "3-6", "pbp,bayesridge,pytagi")
    assert tasks[0].dataset == "protein-tertiary-structure" and tasks[0].method in ("pbp", "pytagi")
    # the first fit of each (method, dataset) leads, longest first; then the rest, longest first
    groups = {(t.method, t.dataset) for t in tasks}
    first, rest = tasks[: len(groups)], tasks[len(groups):]
    assert {(t.method, t.dataset) for t in first} == groups
    for block in (first, rest):
        estimates = [t.estimate_s for t in block]
        assert estimates == sorted(estimates, reverse=True)
    assert {t.splits for t in tasks if t.dataset.startswith("protein") and t.method != "pbp"} == {(3,), (4,)}
    # PBP fits a dataset's splits together, at most batch_splits of them per task
    assert [t.splits for t in tasks if t.dataset.startswith("protein") and t.method == "pbp"] == [(3, 4)]
    assert [t.splits for t in tasks if t.dataset == "yacht" and t.method == "pbp"] == [(3, 4, 5, 6)]
    assert any("protein" in note and "5,6" in note for note in skipped)
    assert tasks[0].n_hidden == 100 and tasks[0].n_epochs == 20
    tasks, _ = plan_tasks("yacht", "0", "pbp", epochs=3)
    assert tasks[0].n_epochs == 3
    tasks, _ = plan_tasks("yacht", "0-6", "pbp", batch_splits=3)
    assert sorted(t.splits for t in tasks) == [(0, 1, 2), (3, 4, 5), (6,)]
    assert [t.splits for t in plan_tasks("yacht", "0-1", "pbp", batch_splits=1)[0]] == [(0,), (1,)]
    with pytest.raises(ValueError, match="batch_splits"):
        plan_tasks("yacht", "0", "pbp", batch_splits=0)


def test_xla_cache_state_counts_files_or_says_off(tmp_path):
    from probprop.bench.machine import xla_cache_state

    assert xla_cache_state({"PROBPROP_JAX_CACHE": "off"}) == {"dir": None, "entries": 0}
    assert xla_cache_state({"PROBPROP_JAX_CACHE": str(tmp_path / "none")})["entries"] == 0
    (tmp_path / "a").write_text("x")
    assert xla_cache_state({"PROBPROP_JAX_CACHE": str(tmp_path)}) == {"dir": str(tmp_path), "entries": 1}


def test_worker_environment_turns_threading_off(monkeypatch):
    env = worker_environment({"XLA_FLAGS": "--foo", "PROBPROP_JAX_CACHE": "off"})
    assert env["XLA_FLAGS"].startswith("--foo ") and "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"] and env["OMP_NUM_THREADS"] == "1"
    assert "JAX_COMPILATION_CACHE_DIR" not in env
    assert worker_environment({"PROBPROP_JAX_CACHE": "/tmp/x"})["JAX_COMPILATION_CACHE_DIR"] == "/tmp/x"


def test_published_numbers_and_se_conversion():
    pbp = published.with_se("pbp", "rmse", "yacht")
    assert pbp["value"] == 1.02 and pbp["se"] == 0.05 and pbp["kind"] == "se"
    de = published.with_se("deep_ensembles", "rmse", "bostonHousing")  # printed 3.28 ± 1.00 (SD), 20 splits
    assert de["kind"] == "sd->se" and math.isclose(de["se"], 1.00 / math.sqrt(20))
    de = published.with_se("deep_ensembles", "log_likelihood", "protein-tertiary-structure")
    assert math.isclose(de["se"], 0.02 / math.sqrt(5))
    assert published.with_se("ngboost", "rmse", "yacht")["kind"] == "sd"  # split count unconfirmed
    assert published.with_se("hodvi", "rmse", "yacht") is None
    for entry in published.PUBLISHED.values():
        assert entry["spread"] in ("se", "sd") and entry["source"]
        for metric in ("rmse", "log_likelihood"):
            assert set(entry[metric]) <= set(resolve_datasets("all")) | {"year"}


def test_compare_to_paper():
    # paper: yacht RMSE 1.02 ± 0.05, LL -1.63 ± 0.02
    assert stats.compare_to_paper(1.05, 0.05, "rmse", "yacht")["verdict"] == "within"
    assert stats.compare_to_paper(0.70, 0.03, "rmse", "yacht")["verdict"] == "better"
    assert stats.compare_to_paper(1.50, 0.05, "rmse", "yacht")["verdict"] == "worse"
    assert stats.compare_to_paper(-1.20, 0.02, "log_likelihood", "yacht")["verdict"] == "better"
    assert stats.compare_to_paper(-2.00, 0.02, "log_likelihood", "yacht")["verdict"] == "worse"
    # a printed "0.10 ± 0.00" still allows half a unit of the last decimal
    assert stats.compare_to_paper(0.104, 0.0, "rmse", "kin8nm")["verdict"] == "within"
    assert stats.compare_to_paper(0.5, 0.1, "crps", "yacht") is None


def test_summarise_mean_and_standard_error():
    frame = pd.DataFrame({"dataset": ["yacht"] * 4, "method": ["pbp"] * 4, "rmse": [1.0, 2.0, 3.0, 4.0]})
    mean, se, n = stats.summarise(frame, "rmse")[("yacht", "pbp")]
    assert mean == 2.5 and n == 4 and math.isclose(se, np.std([1, 2, 3, 4], ddof=1) / 2)
    assert report.fmt(2.5, se).startswith("2.50 ± 0.6")


def test_next_task_keeps_a_worker_on_the_programs_it_has_loaded():
    from probprop.bench.plan import Task, next_task

    def task(i, method, dataset):
        return Task(i, method, dataset, (i,), 50, 40, 8, 100, None, 1.0)

    pending = [task(0, "pbp", "naval"), task(1, "pbp", "kin8nm"), task(2, "pbp", "naval"), task(3, "map", "kin8nm")]
    every = {("pbp", "naval"), ("pbp", "kin8nm"), ("map", "kin8nm")}
    assert next_task(pending, set()).id == 0  # nothing started: the head of the ordered list
    # new groups first (each program compiled early, once), then the worker's own groups
    assert next_task(pending, {("pbp", "naval")}, started={("pbp", "naval")}).id == 1
    assert next_task(pending, {("pbp", "kin8nm")}, started=every).id == 1
    assert next_task(pending[1:], {("pbp", "naval")}, started=every).id == 2
    assert next_task([], {("pbp", "naval")}) is None
    # then a group whose program is cached, and last one another worker is still compiling
    assert next_task(pending[:3], set(), every, finished={("pbp", "kin8nm")}).id == 1
    assert next_task(pending[:1], set(), every).id == 0


def test_calibrated_slice_end_to_end(tmp_path):
    """``--calibrate all``: a fifth of each training split calibrates, every calibration gives a
    row, the peers' intervals equal probprop's, and the calibration report is written."""
    _need_data("yacht")
    out = tmp_path / "calibrated"
    result = run_bench(out=out, datasets="yacht", splits="0,1", methods="bayesridge", workers=1, calibrate="all",
                       command="probprop bench uci --calibrate all (test slice)", progress=False, log=lambda _: None)
    assert not result.failures, result.failures
    frame = pd.read_csv(out / "results.csv")
    kinds = ["none", "quantile", "conformal-absolute", "conformal-normalized", "conformal-cqr"]
    peers = [k for k, module in (("mapie-absolute", "mapie"), ("crepes-absolute", "crepes"),
                                 ("crepes-normalized", "crepes")) if __import__("importlib").util.find_spec(module)]
    assert list(frame.loc[frame["split"] == 0, "calibration"]) == kinds + peers
    ds = load_uci("yacht")
    n_train = len(ds.split(0)[1])
    assert (frame["n_calibration"] == math.ceil(0.2 * n_train)).all()
    assert (frame["n_train"] == n_train - math.ceil(0.2 * n_train)).all()
    assert frame.loc[frame["calibration"].isin(["none", "quantile"]), "log_likelihood"].notna().all()
    assert frame.loc[frame["calibration"].str.startswith("conformal"), "log_likelihood"].isna().all()
    if peers:
        assert (frame["max_bound_diff"].dropna() < 1e-9).all()
    text = (out / "report.md").read_text()
    assert "post-hoc calibration" in text and "## Targets" in text and "coverage90.png" in text
    assert (out / "coverage90.png").read_bytes()[:4] == b"\x89PNG"


def test_calibrate_values_are_checked():
    from probprop.bench.calibrate import parse_calibrate, split_calibration

    assert parse_calibrate("all") == ("conformal", "quantile")
    assert parse_calibrate("quantile, conformal") == ("conformal", "quantile")
    assert parse_calibrate(None) == ()
    with pytest.raises(ValueError, match="unknown --calibrate value"):
        parse_calibrate("isotonic")
    fit, cal = split_calibration(100, seed=3)
    assert len(cal) == 20 and len(fit) == 80 and not set(fit) & set(cal)
    np.testing.assert_array_equal(split_calibration(100, seed=3)[1], cal)


def _noisy_line(seed: int, intercept: float):
    """80 training rows of a noisy line in two inputs and 10 test inputs (the adapters' toy split)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 2))
    y = intercept + X[:, 0] + 0.2 * rng.normal(size=80)
    return X, y, rng.normal(size=(10, 2))


def test_validation_stopped_pbp_fits_the_epochs_that_score_best_on_the_held_out_fifth(monkeypatch):
    from probprop.estimators import PBPRegressor

    X, y, X_test = _noisy_line(0, intercept=3.0)
    monkeypatch.setattr(methods, "PBP_EPOCH_GRID", (1, 2, 3))
    scored, fitted = [], []
    preferred = {1: -5.0, 2: -1.0, 3: -3.0}  # validation score by epochs done: the second checkpoint wins
    done = {"epochs": 0}
    real_fit, real_partial = PBPRegressor.fit, PBPRegressor.partial_fit

    def fit(self, X, y):
        fitted.append((self.epochs, len(X)))
        done["epochs"] = self.epochs
        return real_fit(self, X, y)

    def partial_fit(self, X, y, epochs=1):
        done["epochs"] += epochs
        return real_partial(self, X, y, epochs=epochs)

    def score(self, X, y, sample_weight=None):
        scored.append(len(X))
        return preferred[done["epochs"]]

    monkeypatch.setattr(PBPRegressor, "fit", fit)
    monkeypatch.setattr(PBPRegressor, "partial_fit", partial_fit)
    monkeypatch.setattr(PBPRegressor, "score", score)
    info = methods.DatasetInfo("toy", n_hidden=4, n_epochs=40, n_features=2, n_train=80)
    mean, std, seconds, extra = methods.pbp2_sep_het_val(X, y, X_test, info, seed=0)
    assert extra == {"epochs": 2}  # the results row records the epochs chosen
    assert scored == [16, 16, 16]  # each checkpoint scored on the held-out fifth only
    assert fitted == [(1, 64), (2, 80)]  # the run on four fifths, then the chosen 2 epochs on every row
    assert mean.shape == std.shape == (10,) and np.all(np.isfinite(mean)) and np.all(std > 0) and seconds > 0


def test_validation_stopped_ensemble_fits_the_epochs_that_score_best_on_the_held_out_fifth(monkeypatch):
    from probprop.estimators import DeepEnsembleRegressor

    X, y, X_test = _noisy_line(0, intercept=3.0)
    monkeypatch.setattr(methods, "ENSEMBLE_EPOCH_GRID", (1, 2, 3))
    fitted, scored = [], []
    preferred = {1: -5.0, 2: -1.0, 3: -1.0}  # a tie between 2 and 3 epochs: the fewer win
    real_fit = DeepEnsembleRegressor.fit

    def fit(self, X, y):
        fitted.append((self.epochs, self.hidden, len(X)))
        return real_fit(self, X, y)

    def score(self, X, y, sample_weight=None):
        scored.append(len(X))
        return preferred[self.epochs] if self.epochs != 1 else float("nan")  # NaN scores -inf

    monkeypatch.setattr(DeepEnsembleRegressor, "fit", fit)
    monkeypatch.setattr(DeepEnsembleRegressor, "score", score)
    info = methods.DatasetInfo("toy", n_hidden=4, n_epochs=40, n_features=2, n_train=80)
    mean, std, seconds, extra = methods.ensemble2_val(X, y, X_test, info, seed=0)
    assert extra == {"epochs": 2}
    assert scored == [16, 16, 16]  # every fit on four fifths scored on the other fifth only
    assert fitted == [(1, (4, 4), 64), (2, (4, 4), 64), (3, (4, 4), 64), (2, (4, 4), 80)]
    assert mean.shape == std.shape == (10,) and np.all(np.isfinite(mean)) and np.all(std > 0) and seconds > 0


def test_validation_stopped_tagi_searches_sigma_v_once_and_fits_the_best_epochs(monkeypatch):
    from probprop.estimators import TAGIRegressor

    X, y, X_test = _noisy_line(2, intercept=1.0)
    monkeypatch.setattr(methods, "TAGI_EPOCH_GRID", (1, 2, 3))
    fitted, scored, searched = [], [], []
    preferred = {1: -3.0, 2: -1.0, 3: -1.0}  # a tie between 2 and 3 epochs: the fewer win
    real_fit = TAGIRegressor.fit

    def fit(self, X, y):
        model = real_fit(self, X, y)
        fitted.append((self.epochs, self.sigma_v, len(X), self.variance_update, self.init_gain))
        searched.append(model.sigma_v_)
        return model

    def score(self, X, y, sample_weight=None):
        scored.append(len(X))
        return preferred[self.epochs]

    monkeypatch.setattr(TAGIRegressor, "fit", fit)
    monkeypatch.setattr(TAGIRegressor, "score", score)
    info = methods.DatasetInfo("toy", n_hidden=4, n_epochs=40, n_features=2, n_train=80)
    mean, std, seconds, extra = methods.tagi_he_prec_val(X, y, X_test, info, seed=0)
    assert extra == {"epochs": 2}
    assert scored == [16, 16, 16]  # every fit on four fifths scored on the other fifth only
    (first, *rest) = fitted
    assert first[:3] == (1, "select", 64)  # the first fit searches sigma_v ...
    chosen = searched[0]
    assert chosen in methods.PYTAGI_SIGMA_V  # ... from TAGIRegressor's grid (the pytagi adapter's)
    assert [r[:3] for r in rest] == [(2, chosen, 64), (3, chosen, 64), (2, chosen, 80)]  # ... kept from then on
    assert all(r[3:] == ("precision", 1.0) for r in fitted)
    assert mean.shape == std.shape == (10,) and np.all(np.isfinite(mean)) and np.all(std > 0) and seconds > 0


def test_validation_stopped_ensemble_scores_a_diverged_run_minus_inf_and_falls_back(monkeypatch):
    from probprop.estimators import DeepEnsembleRegressor
    from probprop.estimators.base import DivergedError

    rng = np.random.default_rng(1)
    X, y, X_test = rng.normal(size=(40, 2)), rng.normal(size=40), rng.normal(size=(5, 2))
    monkeypatch.setattr(methods, "ENSEMBLE_EPOCH_GRID", (1, 2, 3))
    real_fit, fitted = DeepEnsembleRegressor.fit, []

    def fit(self, X, y):
        fitted.append((self.epochs, len(X)))
        if self.epochs == 3 or (self.epochs == 2 and len(X) == 40):  # 3 diverges; 2 on every row too
            raise DivergedError("weights went non-finite")
        return real_fit(self, X, y)

    monkeypatch.setattr(DeepEnsembleRegressor, "fit", fit)
    monkeypatch.setattr(DeepEnsembleRegressor, "score", lambda self, X, y, sample_weight=None: -float(3 - self.epochs))
    info = methods.DatasetInfo("toy", n_hidden=4, n_epochs=40, n_features=2, n_train=40)
    *_, extra = methods.ensemble2_val(X, y, X_test, info, seed=0)
    assert extra == {"epochs": 1}  # 2 scored best (3 diverged: -inf) but diverged on every row
    assert fitted == [(1, 32), (2, 32), (3, 32), (2, 40), (1, 40)]

    def fit_all_rows_diverge(self, X, y):
        if len(X) == 40:
            raise DivergedError("weights went non-finite on every row")
        return real_fit(self, X, y)

    monkeypatch.setattr(DeepEnsembleRegressor, "fit", fit_all_rows_diverge)
    with pytest.raises(FloatingPointError, match="every epoch count.*on every row"):
        methods.ensemble2_val(X, y, X_test, info, seed=0)
    monkeypatch.setattr(DeepEnsembleRegressor, "fit", lambda self, X, y: (_ for _ in ()).throw(DivergedError("x")))
    with pytest.raises(FloatingPointError, match="no epoch count"):  # not a silent choice of the first count
        methods.ensemble2_val(X, y, X_test, info, seed=0)


def test_validation_stopped_pbp_falls_back_when_the_chosen_fit_diverges_and_says_when_all_do(monkeypatch):
    from probprop.estimators import PBPRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = X[:, 0] + 0.2 * rng.normal(size=60)
    monkeypatch.setattr(methods, "PBP_EPOCH_GRID", (1, 2, 3))
    monkeypatch.setattr(PBPRegressor, "score", lambda self, X, y, sample_weight=None: -1.0)  # a tie: fewer epochs first
    real_predict, real_fit = PBPRegressor.predict, PBPRegressor.fit
    diverged, fitted = {1, 2, 3}, []

    def predict(self, X, return_std=False, **kwargs):
        if self.epochs in diverged and len(X) == 60:  # the divergence check on the training rows
            raise ValueError("the predictions overflow float64")
        return real_predict(self, X, return_std=return_std, **kwargs)

    def fit(self, X, y):
        fitted.append(self.epochs)
        return real_fit(self, X, y)

    monkeypatch.setattr(PBPRegressor, "predict", predict)
    monkeypatch.setattr(PBPRegressor, "fit", fit)
    info = methods.DatasetInfo("toy", n_hidden=4, n_epochs=40, n_features=2, n_train=60)
    with pytest.raises(FloatingPointError, match=r"every epoch count tried \(\[1, 2, 3\]\) diverged"):
        methods.pbp2_sep_het_val(X, y, X[:5], info, seed=0)
    diverged.discard(2)  # now only the 2-epoch fit survives
    fitted.clear()
    mean, std, _, extra = methods.pbp2_sep_het_val(X, y, X[:5], info, seed=0)
    assert extra == {"epochs": 2}
    assert fitted == [1, 1, 2]  # the run, the tied best (1 epoch, diverged), then the next best
    assert mean.shape == (5,) and np.all(np.isfinite(std))


def test_an_adapters_own_columns_reach_the_results_row_and_the_report(monkeypatch, tmp_path):
    """An adapter's fourth output (pbp2-sep-het-val's chosen epochs) overrides the protocol's
    column in the results row; the report counts the epochs chosen per dataset."""
    import pandas as pd

    from probprop.bench import pool, report
    from probprop.bench.plan import Task

    def fake(X_train, y_train, X_test, info, seed):
        return np.zeros(len(X_test)), np.ones(len(X_test)), 0.5, {"epochs": 100 + seed}

    monkeypatch.setitem(methods.METHODS, "pbp2-sep-het-val", fake)
    (row,) = pool.run_task(Task(0, "pbp2-sep-het-val", "yacht", (1,), 50, 40, 6, 277, None, 1.0))
    assert row["epochs"] == 101 and row["fit_seconds"] == 0.5
    frame = pd.DataFrame([{"method": "pbp2-sep-het-val", "dataset": d, "epochs": e}
                          for d, e in [("yacht", 400), ("yacht", 200), ("yacht", 400), ("energy", 40)]])
    lines = report._chosen_epochs_section(frame)
    assert any("yacht: 1 x 200, 2 x 400" in line for line in lines)
    assert any("energy: 1 x 40" in line for line in lines)
    assert report._chosen_epochs_section(frame.assign(method="pbp")) == []  # pbp's epochs are the protocol's
    lines = report._chosen_epochs_section(frame.assign(method="pbp2-sep-het-cut-val"))
    assert any("(`pbp2-sep-het-cut-val`), yacht: 1 x 200, 2 x 400" in line for line in lines)


def test_the_peer_section_pairs_each_probprop_method_with_each_peer_split_by_split():
    """probprop − pytagi per split on three datasets whose splits differ in level (the peer's test LL
    -1, -2, -3): energy LL +0.2, +0.4, +0.6 (paired: better; combined SEs of the two means, which
    carry the splits' spread: +0.54, within), RMSE lower by 0.1, 0.2, 0.3 (better by both: the peer's
    RMSE is level); yacht LL -0.3, -0.5, -0.4 (paired: worse; combined: -0.48, within), RMSE +0.1,
    +0.2, -0.15 (higher, within); wine LL +0.1, -0.05, +0.2 and RMSE -0.1, +0.05, -0.2 (ahead, within)."""
    rows = []
    for dataset, diffs in (("energy", [(0.2, -0.1), (0.4, -0.2), (0.6, -0.3)]),
                           ("yacht", [(-0.3, 0.1), (-0.5, 0.2), (-0.4, -0.15)]),
                           ("wine-quality-red", [(0.1, -0.1), (-0.05, 0.05), (0.2, -0.2)])):
        for split, (d_ll, d_rmse) in enumerate(diffs):
            level = -1.0 - split
            rows.append({"method": "pytagi", "dataset": dataset, "split": split, "log_likelihood": level, "rmse": 1.0})
            rows.append({"method": "tagi-he-prec-val", "dataset": dataset, "split": split,
                         "log_likelihood": level + d_ll, "rmse": 1.0 + d_rmse})
    frame = pd.DataFrame(rows)
    lines = report._peer_section(frame)
    assert "### probprop TAGI, He init, precision form, epochs chosen on validation against pytagi" in lines
    assert ("- By SEs of the paired difference: higher mean test LL on 2 of 3 datasets, by more than two on 1, "
            "lower by more than two on 1; RMSE lower on 2 of 3, by more than two on 1, higher by more than two "
            "on 0.") in lines
    assert ("- By combined SEs: higher mean test LL on 2 of 3 datasets, by more than two on 0, lower by more than "
            "two on 0; RMSE lower on 2 of 3, by more than two on 1, higher by more than two on 0.") in lines
    cells = [line.split(" | ")[3:] for line in lines if line.startswith(("| Energy", "| Wine", "| Yacht"))]
    assert [row[0:3] for row in cells] == [  # the papers' order; LL: paired verdict, combined SEs and verdict
        ["better", "+0.5 SE", "within"], ["within", "+0.1 SE", "within"], ["worse", "−0.5 SE", "within"]]
    # RMSE: paired verdict, combined SEs (the peer's RMSE is level: the paired SE) and verdict
    assert [row[4:7] for row in cells] == [["better", "+3.5 SE", "better |"], ["within", "+1.1 SE", "within |"],
                                           ["within", "−0.5 SE", "within |"]]
    assert report._peer_section(frame.query("method == 'pytagi'")) == []  # no probprop method: no section
    assert report._peer_section(frame.query("method != 'pytagi'")) == []  # no peer: no section


def test_the_cut_section_pairs_splits():
    """cut - feedback per split: LL differences +0.2, +0.4, +0.6 (mean 0.4, SE 0.115: better),
    RMSE differences 0.1, -0.1, 0 (within); a split run by one method only is left out."""
    rows = []
    for split, (ll_cut, ll_fb, r_cut, r_fb) in enumerate([(-1.0, -1.2, 1.1, 1.0), (-0.6, -1.0, 0.9, 1.0),
                                                          (-0.4, -1.0, 1.0, 1.0), (9.0, None, 0.0, None)]):
        rows.append({"method": "pbp-sep-het-cut", "dataset": "yacht", "split": split, "log_likelihood": ll_cut, "rmse": r_cut})
        if ll_fb is not None:
            rows.append({"method": "pbp-sep-het", "dataset": "yacht", "split": split, "log_likelihood": ll_fb, "rmse": r_fb})
    lines = report._cut_section(pd.DataFrame(rows))
    assert ("- By SEs of the paired difference: higher mean test LL on 1 of 1 datasets, by more than two on 1, "
            "lower by more than two on 0; RMSE lower on 0 of 1, by more than two on 0, higher by more than two "
            "on 0.") in lines
    assert ("- By combined SEs: higher mean test LL on 1 of 1 datasets, by more than two on 1, lower by more than "
            "two on 0; RMSE lower on 0 of 1, by more than two on 0, higher by more than two on 0.") in lines
    (row,) = [line for line in lines if line.startswith("| Yacht")]
    # combined: cut (-1.0, -0.6, -0.4) SE 0.176, feedback (-1.2, -1.0, -1.0) SE 0.067: 0.4 / 0.189 = +2.1
    assert row == ("| Yacht | 3 | +0.40 ± 0.12 | better | +2.1 SE | better "
                   "| +0.000 ± 0.058 | within | +0.0 SE | within |")
    one = report._cut_section(pd.DataFrame(rows).query("split == 0"))  # one split: no SE, no verdict
    assert [line for line in one if line.startswith("| Yacht")] == [
        "| Yacht | 1 | +0.2000 | n/a | n/a | n/a | +0.1000 | n/a | n/a | n/a |"]
    assert report._cut_section(pd.DataFrame(rows).query("method == 'pbp-sep-het'")) == []

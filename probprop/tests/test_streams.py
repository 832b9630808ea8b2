"""Issue 12, streams: forgetting in partial_fit, prequential evaluation, the river adapter, the
stream generators and `probprop bench streams`."""

import itertools
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from probprop import PBPClassifier, PBPRegressor, TAGIClassifier, TAGIRegressor
from probprop.data.streams import STREAMS, make_stream
from probprop.learners.drift import Forgetting
from probprop.prequential import prequential, summarise


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ [1.0, -1.0, 0.5] + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("make", [
    lambda f: PBPRegressor(hidden=(6,), forgetting=f, random_state=0),
    lambda f: TAGIRegressor(hidden=(6,), sigma_v=0.2, forgetting=f, random_state=0),
], ids=["pbp", "tagi"])
def test_forgetting_none_keeps_partial_fit_as_it_was(make):
    """forgetting=None: partial_fit is the learner's shuffled epoch on the padded batch, exactly."""
    from probprop.estimators.base import padded

    X, y = _data()
    a = make(None).partial_fit(X[:60], y[:60]).partial_fit(X[60:], y[60:])
    b = make(None).partial_fit(X[:60], y[:60])
    Xs, ys = b._standardise(X[60:], y[60:])
    Xp, yp, mask = padded(Xs, ys)
    state = b._learner().update(b.state_, Xp, yp, mask)
    for u, v in zip(a.state_.means, state.means):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_fixed_forgetting_changes_the_posterior_and_gamma_one_does_not():
    X, y = _data()
    none = PBPRegressor(hidden=(6,), forgetting=Forgetting(gamma=1.0, learn=False), random_state=0)
    none.partial_fit(X[:60], y[:60]).partial_fit(X[60:], y[60:])
    some = PBPRegressor(hidden=(6,), forgetting=0.9, random_state=0).partial_fit(X[:60], y[:60]).partial_fit(X[60:], y[60:])
    v_none = np.concatenate([np.ravel(v) for v in none.state_.variances])
    v_some = np.concatenate([np.ravel(v) for v in some.state_.variances])
    assert np.mean(v_some) > 2 * np.mean(v_none)  # forgetting keeps the variances near the prior's
    assert none.gamma_ == 1.0 and some.gamma_ == 0.9


@pytest.mark.parametrize("cls", [PBPRegressor, TAGIRegressor, PBPClassifier, TAGIClassifier])
def test_learned_forgetting_survives_saving_and_continues_identically(cls, tmp_path):
    X, y = _data(160)
    target = (y > 0).astype(int) if cls in (PBPClassifier, TAGIClassifier) else y
    extra = {"sigma_v": 0.2} if cls is TAGIRegressor else {}
    model = cls(hidden=(6,), forgetting="learn", random_state=0, **extra)
    model.partial_fit(X[:100], target[:100])
    assert 0.9 <= model.gamma_ < 1.0 and model.gamma_ != 0.999  # it moved from its start
    model.save(tmp_path / "m.npz")
    back = cls.load(tmp_path / "m.npz")
    assert back.gamma_ == model.gamma_ and back.forgetting == "learn"
    model.partial_fit(X[100:], target[100:])
    back.partial_fit(X[100:], target[100:])
    assert back.gamma_ == model.gamma_
    predict = "predict_proba" if hasattr(model, "classes_") else "predict"
    np.testing.assert_array_equal(getattr(back, predict)(X), getattr(model, predict)(X))


def test_a_forgetting_object_is_saved_as_such(tmp_path):
    X, y = _data()
    f = Forgetting(gamma=0.995, learning_rate=0.05)
    PBPRegressor(hidden=(4,), forgetting=f).partial_fit(X, y).save(tmp_path / "m.npz")
    assert PBPRegressor.load(tmp_path / "m.npz").forgetting == f


def test_bad_forgetting_gets_a_clear_error():
    X, y = _data()
    for value, message in [(1.5, "gamma must be in"), ("sometimes", "unknown forgetting"),
                           (Forgetting, "forgetting must be")]:
        with pytest.raises(ValueError, match=message):
            PBPRegressor(forgetting=value).partial_fit(X, y)
    with pytest.raises(ValueError, match="forgetting needs inference='adf'"):
        PBPRegressor(forgetting=0.9, inference="sep").partial_fit(X, y)
    with pytest.raises(ValueError, match="epochs=1"):
        PBPRegressor(forgetting=0.9).partial_fit(X, y, epochs=2)


def test_a_model_file_with_a_broken_drift_state_or_forgetting_is_refused(tmp_path):
    import json

    from probprop.io import ModelFileError

    X, y = _data()
    model = PBPRegressor(hidden=(4,), forgetting="learn").partial_fit(X, y)
    for drift_state, message in [([np.log1p(-0.99), 0.0, -1.0, 5.0], "second"), ([0.0, 0.0, 1.0, 5.0], "outside"),
                                 ([np.nan, 0.0, 0.0, 1.0], "outside")]:
        model.drift_ = np.array(drift_state)
        model.save(tmp_path / "m.npz")
        with pytest.raises(ModelFileError, match=message):
            PBPRegressor.load(tmp_path / "m.npz")
    # a forgetting the estimator would refuse, written into the file's parameters
    model.drift_ = np.array([np.log1p(-0.99), 0.0, 0.0, 5.0])
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        arrays = dict(archive)
    meta = json.loads(str(arrays["__meta__"]))
    for value, message in [("bogus", "unknown forgetting"), ({"class": "PBPSpec", "fields": {"n_in": 3}}, "forgetting must be"),
                           ({"class": "Forgetting", "fields": {"gamma": 10**400}}, "finite number")]:
        meta["params"]["forgetting"] = value
        np.savez(tmp_path / "bad.npz", **{**arrays, "__meta__": np.array(json.dumps(meta))})
        with pytest.raises(ModelFileError, match=message):
            PBPRegressor.load(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------------
# prequential


def test_prequential_is_predict_then_partial_fit_row_by_row():
    """The compiled scan against the obvious loop: predict_dist of a row from the posterior moved by
    the drift transition (the Kalman filter's predict step comes before the prediction), then
    partial_fit on it."""
    import copy

    from probprop.learners import drift

    X, y = _data(90)
    rows = prequential(PBPRegressor(hidden=(5,), forgetting="learn", random_state=0), X, y, warmup=30)
    loop = PBPRegressor(hidden=(5,), forgetting="learn", random_state=0).partial_fit(X[:30], y[:30])
    log_loss, gammas = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(30, 90):
            moved = copy.copy(loop)
            moved.state_ = drift.transition(loop.state_, drift.prior(loop._learner(), loop.spec_), loop.gamma_)
            d = moved.predict_dist(X[i:i + 1])
            log_loss.append(-norm.logpdf(y[i], d.mean[0], d.std[0]))
            gammas.append(loop.gamma_)
            loop.partial_fit(X[i:i + 1], y[i:i + 1])
    np.testing.assert_allclose(rows["log_loss"].to_numpy(), log_loss, rtol=1e-8)
    np.testing.assert_allclose(rows["gamma"].to_numpy(), gammas, rtol=1e-12)
    assert list(rows.index) == list(range(30, 90))
    s = summarise(rows)
    assert s["rows"] == 60 and s["log_loss"] == pytest.approx(np.mean(log_loss))
    assert s["rmse"] == pytest.approx(np.sqrt(np.mean((rows["mean"] - y[30:]) ** 2)))


def test_prequential_classification_scores_the_true_class():
    X, y = _data(100)
    labels = np.where(y > 0, "up", "down")
    model = TAGIClassifier(hidden=(5,), batch_size=1, forgetting="learn", random_state=0)
    rows = prequential(model, X, labels, warmup=20)
    assert set(rows["predicted"]) <= {"up", "down"}
    np.testing.assert_allclose(rows["log_loss"], -np.log(rows["p_true"]))
    assert summarise(rows)["accuracy"] == pytest.approx(np.mean(rows["predicted"] == labels[20:]))
    assert summarise(rows)["accuracy"] > 0.8  # a linear boundary: learned online


def test_prequential_refuses_bad_input():
    X, y = _data(50)
    from probprop import MAPRegressor

    with pytest.raises(TypeError, match="online probprop estimator"):
        prequential(MAPRegressor(), X, y)
    with pytest.raises(ValueError, match="warmup"):
        prequential(PBPRegressor(), X, y, warmup=50)
    with pytest.raises(ValueError, match="one row per target"):
        prequential(PBPRegressor(), X, y[:-1])
    for name, value in [("warmup", 10.5), ("chunk", 0), ("chunk", 2.0)]:
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            prequential(PBPRegressor(hidden=(3,)), X, y, **{name: value})
    from probprop import PBPEnsembleRegressor

    with pytest.raises(TypeError, match="online probprop estimator"):
        prequential(PBPEnsembleRegressor(), X, y)
    X[30, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prequential(PBPRegressor(hidden=(3,)), X, y, warmup=10)


# ---------------------------------------------------------------------------------------------
# streams


def test_streams_are_deterministic_by_seed_and_drift_where_they_say():
    a, b, c = (make_stream("friedman-abrupt", seed=s, n=900) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    # the relevant features switch: x4 drives y in the first third, x9 in the second
    first, second = slice(0, 300), slice(300, 600)
    assert np.corrcoef(a.X[first, 3], a.y[first])[0, 1] > 0.4 > abs(np.corrcoef(a.X[first, 8], a.y[first])[0, 1])
    assert np.corrcoef(a.X[second, 8], a.y[second])[0, 1] > 0.4 > abs(np.corrcoef(a.X[second, 3], a.y[second])[0, 1])
    moons = make_stream("moons-rotating", n=400)
    static = make_stream("moons-static", n=400)
    assert moons.drift and not static.drift and set(moons.y) == {0, 1}
    # the last rows are rotated by about 180 degrees: the class means swap sides
    assert np.sign(moons.X[-100:][moons.y[-100:] == 0, 1].mean()) != np.sign(moons.X[:100][moons.y[:100] == 0, 1].mean())
    with pytest.raises(ValueError, match="unknown stream"):
        make_stream("nope")
    with pytest.raises(ValueError, match="at least 100 rows"):
        make_stream("moons-static", n=10)
    assert set(STREAMS) >= {"trump-approval", "phishing", "mnist-rotating", "friedman-gradual", "friedman-static"}


def test_rotated_mnist_stream(monkeypatch):
    from probprop.data.images import find_images_dir

    try:
        find_images_dir("mnist")
    except FileNotFoundError:
        pytest.skip("no MNIST files here")
    s = make_stream("mnist-rotating", n=200)
    assert s.X.shape == (200, 784) and s.X.min() >= 0 and s.X.max() <= 1 and s.classes == tuple(range(10))


def test_river_streams_load():
    pytest.importorskip("river")
    trump, phishing = make_stream("trump-approval"), make_stream("phishing")
    assert trump.X.shape == (1001, 6) and trump.task == "regression" and trump.drift is None
    assert phishing.X.shape == (1250, 9) and set(phishing.y) == {0, 1}


# ---------------------------------------------------------------------------------------------
# river adapter


def test_river_adapter_inside_progressive_val_score_matches_our_own_loop():
    river = pytest.importorskip("river")
    from river import datasets, evaluate, metrics

    from probprop.river_adapter import RiverRegressor

    rows = list(itertools.islice(datasets.TrumpApproval(), 80))
    model = RiverRegressor(PBPRegressor(hidden=(4,), forgetting="learn", random_state=0), warmup=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mae = evaluate.progressive_val_score(rows, model, metrics.MAE()).get()
        # the oracle: the estimator's own API, test-then-train
        est = PBPRegressor(hidden=(4,), forgetting="learn", random_state=0)
        X = np.array([list(x.values()) for x, _ in rows])
        y = np.array([t for _, t in rows])
        errors = [abs(y[i] - np.mean(y[:i])) if i else abs(y[0]) for i in range(20)]
        est.partial_fit(X[:20], y[:20])
        for i in range(20, 80):
            errors.append(abs(y[i] - est.predict(X[i:i + 1])[0]))
            est.partial_fit(X[i:i + 1], y[i:i + 1])
    assert mae == pytest.approx(np.mean(errors), rel=1e-9)
    assert isinstance(model, river.base.Regressor)


def test_river_classifier_adapter():
    pytest.importorskip("river")
    from river import datasets, evaluate, metrics

    from probprop.river_adapter import RiverClassifier

    rows = list(itertools.islice(datasets.Phishing(), 150))
    model = RiverClassifier(PBPClassifier(hidden=(4,), forgetting="learn", random_state=0), classes=[False, True])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc = evaluate.progressive_val_score(rows, model, metrics.Accuracy()).get()
    assert acc > 0.75  # majority class: 0.55 on these rows
    proba = model.predict_proba_one(rows[0][0])
    assert set(proba) == {False, True} and sum(proba.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not among the classes"):
        model.learn_one(rows[0][0], "maybe")
    with pytest.raises(ValueError, match="features differ"):
        model.predict_one({"other": 1.0})
    with pytest.raises(TypeError, match="online probprop estimator"):
        RiverClassifier(object(), classes=[0, 1])


@pytest.mark.parametrize("cls", [PBPRegressor, PBPClassifier, TAGIClassifier])
def test_replay_in_partial_fit_is_chunking_free_and_survives_saving(cls, tmp_path):
    """partial_fit with replay: the same posterior whatever the chunks (the window is carried
    between calls); a saved model reloads with an empty window, so it then differs, but it
    learns on; replay with SEP or several epochs is refused."""
    X, y = _data(150)
    target = (y > 0).astype(int) if cls in (PBPClassifier, TAGIClassifier) else y
    batch = {"batch_size": 1} if cls is TAGIClassifier else {}  # TAGI's steps of 10 rows follow the chunks
    make = lambda: cls(hidden=(6,), forgetting="learn", replay=(2, 8), random_state=0, **batch)
    a = make().partial_fit(X[:40], target[:40]).partial_fit(X[40:], target[40:])
    b = make().partial_fit(X[:40], target[:40])
    for lo in range(40, 150, 23):
        b.partial_fit(X[lo:lo + 23], target[lo:lo + 23])
    for u, v in zip(a.state_.means, b.state_.means):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-14)
    assert int(a.replay_window_.filled) == 8
    no_replay = cls(hidden=(6,), forgetting="learn", random_state=0, **batch).partial_fit(X[:40], target[:40])
    no_replay.partial_fit(X[40:], target[40:])
    assert not np.allclose(np.asarray(a.state_.means[0]), np.asarray(no_replay.state_.means[0]))
    a.save(tmp_path / "m.npz")
    back = cls.load(tmp_path / "m.npz")
    assert back.replay == (2, 8) and not hasattr(back, "replay_window_")
    back.partial_fit(X[:5], target[:5])
    assert int(back.replay_window_.filled) == 5
    with pytest.raises(ValueError, match="epochs=1"):
        make().partial_fit(X, target, epochs=2)
    with pytest.raises(ValueError, match="replay must be"):
        cls(hidden=(6,), replay=-2).partial_fit(X, target)
    if cls is not TAGIClassifier:
        with pytest.raises(ValueError, match="replay needs inference='adf'"):
            cls(hidden=(6,), replay=2, inference="sep").partial_fit(X, target)


def test_replay_without_forgetting_is_an_ordered_pass_and_its_window_follows_the_setting(tmp_path):
    """replay alone makes partial_fit the ordered sweep with replays (not the shuffled epochs);
    learning without replay drops the window, so turning replay on again starts an empty one;
    a model file with a bad replay is refused on load."""
    from probprop.estimators.base import padded
    from probprop.learners import drift

    X, y = _data(80)
    a = PBPRegressor(hidden=(6,), replay=1, random_state=0).partial_fit(X[:30], y[:30])
    start, window = a.state_, a.replay_window_
    a.partial_fit(X[30:], y[30:])
    Xp, yp, mask = padded(*a._standardise(X[30:], y[30:]))
    learner = a._learner()
    want, *_ = drift.sweep(learner, start, None, drift.prior(learner, a.spec_), Xp, yp, mask, None, False,
                           drift.Replay(1), window)
    assert int(a.replay_window_.filled) == 64 and a.gamma_ == 1.0
    for u, v in zip(a.state_.means, want.means):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-14)
    a.set_params(replay=0).partial_fit(X[:10], y[:10])
    assert not hasattr(a, "replay_window_")
    a.set_params(replay=1).partial_fit(X[:10], y[:10])
    assert int(a.replay_window_.filled) == 10
    a.replay = "x"
    with pytest.raises(ValueError, match="replay must be"):
        a.save(tmp_path / "bad.npz")
        PBPRegressor.load(tmp_path / "bad.npz")

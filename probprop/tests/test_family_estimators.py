"""The estimators over the other learners: the shared scikit-learn surface works for each."""

import numpy as np
import pytest
from sklearn.base import clone

from probprop import (
    DeepEnsembleRegressor,
    DVIRegressor,
    LaplaceRegressor,
    MAPRegressor,
    MCDropoutRegressor,
    PBPEnsembleRegressor,
    PBPRegressor,
    TAGIRegressor,
)
from probprop.data import make_linear_gaussian

FAST = [
    PBPEnsembleRegressor(n_members=2, hidden=(8,), epochs=3, random_state=0),
    TAGIRegressor(hidden=(8,), epochs=3, sigma_v=0.3, random_state=0),
    DVIRegressor(hidden=(8,), epochs=3, random_state=0),
    DVIRegressor(hidden=(8,), epochs=3, heteroscedastic=False, random_state=0),
    MAPRegressor(hidden=(8,), epochs=3, random_state=0),
    DeepEnsembleRegressor(hidden=(8,), epochs=3, n_members=2, random_state=0),
    MCDropoutRegressor(hidden=(8,), epochs=3, dropout=0.05, tau=10.0, n_samples=20, random_state=0),
    TAGIRegressor(hidden=(8,), epochs=3, heteroscedastic=True, random_state=0),
    PBPRegressor(hidden=(8,), epochs=3, heteroscedastic=True, random_state=0),
    LaplaceRegressor(hidden=(8,), epochs=3, random_state=0),
]


@pytest.fixture(scope="module")
def data():
    X, y, _ = make_linear_gaussian(160, 3, noise_std=0.5, random_state=0)
    return X[:120], 10 * y[:120] + 3, X[120:], 10 * y[120:] + 3


@pytest.mark.parametrize("model", FAST, ids=lambda m: type(m).__name__ + ("-het" if getattr(m, "heteroscedastic", False) else ""))
def test_fit_predict_in_user_units(model, data):
    X, y, X_test, y_test = data
    model = clone(model).fit(X, y)
    mean, std = model.predict(X_test, return_std=True)
    dist = model.predict_dist(X_test)
    assert mean.shape == std.shape == (len(X_test),)
    np.testing.assert_allclose(dist.mean, mean)
    np.testing.assert_allclose(dist.var, dist.epistemic_var + dist.noise_var)
    np.testing.assert_allclose(dist.std, std)
    assert np.all(dist.epistemic_var >= 0) and np.all(dist.noise_var > 0)
    # the oracle for the units: the same model fitted on y already standardised by hand (a
    # standardisation then changes nothing) predicts, mapped back by hand, the same distribution
    y_mean, y_std = y.mean(), y.std()
    twin = clone(model)
    if isinstance(model, MCDropoutRegressor):  # tau is a precision in the units of 1 / y^2
        twin.set_params(tau=model.tau * y_std**2)
    twin.fit(X, (y - y_mean) / y_std)
    ref = twin.predict_dist(X_test)
    np.testing.assert_allclose(dist.mean, ref.mean * y_std + y_mean, rtol=1e-6, atol=1e-6 * y_std)
    np.testing.assert_allclose(dist.epistemic_var, ref.epistemic_var * y_std**2, rtol=1e-5, atol=1e-10 * y_std**2)
    np.testing.assert_allclose(dist.noise_var, ref.noise_var * y_std**2, rtol=1e-5)
    assert model.score(X_test, y_test) == pytest.approx(twin.score(X_test, (y_test - y_mean) / y_std) - np.log(y_std),
                                                        rel=1e-6)
    clone(model).get_params()


def test_same_seed_same_predictions(data):
    X, y, X_test, _ = data
    a = TAGIRegressor(hidden=(8,), epochs=2, sigma_v=0.3, random_state=1).fit(X, y).predict(X_test)
    b = TAGIRegressor(hidden=(8,), epochs=2, sigma_v=0.3, random_state=1).fit(X, y).predict(X_test)
    np.testing.assert_array_equal(a, b)


def test_pbp_ensemble_moments_are_the_mixture_of_its_members(data):
    X, y, X_test, _ = data
    model = PBPEnsembleRegressor(n_members=3, hidden=(8,), epochs=2, random_state=0).fit(X, y)
    dists = [m.predict_dist(X_test) for m in model.members_]
    means = np.stack([d.mean for d in dists])
    dist = model.predict_dist(X_test)
    np.testing.assert_allclose(dist.mean, means.mean(0))
    np.testing.assert_allclose(dist.epistemic_var, np.mean([d.epistemic_var for d in dists], 0) + means.var(0))
    assert isinstance(model.members_[0], PBPRegressor)


def test_pbp_ensemble_regressor_from_members_fitted_apart(data):
    """Members fitted one by one with the ensemble's ``member_seeds`` and combined by
    ``from_members`` predict as the ensemble's own fit (its target scaling taken from them)."""
    X, y, X_test, _ = data
    model = PBPEnsembleRegressor(n_members=2, hidden=(8,), epochs=2, random_state=3).fit(X, y)
    combined = PBPEnsembleRegressor.from_members([model.member_estimator(k).fit(X, y) for k in range(2)])
    a, b = combined.predict_dist(X_test), model.predict_dist(X_test)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.epistemic_var, b.epistemic_var, rtol=1e-10)
    np.testing.assert_allclose(a.noise_var, b.noise_var, rtol=1e-10)
    shifted = PBPRegressor(hidden=(8,), epochs=2, random_state=0).fit(X, y + 100.0)
    with pytest.raises(ValueError, match=r"members\[1\]'s y_mean_ differs"):
        PBPEnsembleRegressor.from_members([combined.members_[0], shifted])


@pytest.mark.parametrize(
    "model, message",
    [
        (TAGIRegressor(sigma_v=-1), "sigma_v"),
        (TAGIRegressor(hidden=(8, 0)), "hidden"),
        (TAGIRegressor(init_gain=0.0), "init_gain"),
        (TAGIRegressor(variance_update="exact"), "variance_update must be one of \\['sum', 'precision'\\], got 'exact'"),
        (DVIRegressor(epochs=0), "epochs"),
        (MCDropoutRegressor(dropout="often"), "dropout"),
        (DeepEnsembleRegressor(n_members=0), "n_members"),
        (DeepEnsembleRegressor(learning_rate="fast"), "learning_rate"),
        (DeepEnsembleRegressor(learning_rate=[1e-3, 0.0]), "learning_rate"),
        (PBPEnsembleRegressor(n_members=-2), "n_members"),
    ],
)
def test_invalid_hyperparameters_are_named(model, message, data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match=message):
        model.fit(X, y)


@pytest.mark.parametrize("model", [FAST[1], FAST[2]], ids=["TAGI", "DVI"])
def test_bad_input_and_unfitted(model, data):
    from sklearn.exceptions import NotFittedError

    X, y, _, _ = data
    with pytest.raises(NotFittedError):
        clone(model).predict(X)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(model).fit(bad, y)


def test_mc_dropout_grids_are_in_the_units_of_y():
    """tau is a precision of y: scaling y by 10 and the tau grid by 1/100 is the same search."""
    from probprop.data import make_linear_gaussian

    X, y, _ = make_linear_gaussian(160, 2, noise_std=0.5, random_state=0)
    kwargs = dict(hidden=(8,), epochs=5, dropout=[0.01, 0.1], n_samples=10, random_state=0)
    a = MCDropoutRegressor(tau=[1.0, 4.0], **kwargs).fit(X, y)
    b = MCDropoutRegressor(tau=(0.01, 0.04), **kwargs).fit(X, 10 * y)
    assert a.validation_scores_.shape == (2, 2)
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_, rtol=1e-9)
    assert a.dropout_ == b.dropout_ and a.dropout_ in (0.01, 0.1)
    assert a.tau_ in (1.0, 4.0) and b.tau_ == pytest.approx(a.tau_ / 100)
    np.testing.assert_allclose(10 * a.predict(X), b.predict(X), rtol=1e-9, atol=1e-9)
    fixed = MCDropoutRegressor(tau=2.0, **{**kwargs, "dropout": 0.05}).fit(X, y)
    assert (fixed.dropout_, fixed.tau_) == (0.05, pytest.approx(2.0)) and not hasattr(fixed, "validation_scores_")


@pytest.mark.parametrize("bad", [[], [0.1, -1.0], "often", [True], 1.5])
def test_mc_dropout_rejects_bad_dropout_grids(bad):
    from probprop.data import make_linear_gaussian

    X, y, _ = make_linear_gaussian(40, 2, random_state=0)
    with pytest.raises(ValueError, match="dropout"):
        MCDropoutRegressor(hidden=(4,), epochs=1, dropout=bad).fit(X, y)


@pytest.mark.parametrize("model", FAST, ids=lambda m: type(m).__name__ + ("-het" if getattr(m, "heteroscedastic", False) else ""))
def test_save_load_round_trip(model, data, tmp_path):
    """Every estimator saves to the npz + JSON format and loads to identical predictions."""
    X, y, X_test, _ = data
    model = clone(model).fit(X, y)
    path = tmp_path / "model.probprop"
    model.save(path)
    loaded = type(model).load(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    a, b = model.predict_dist(X_test), loaded.predict_dist(X_test)
    for field in ("mean", "epistemic_var", "noise_var"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    for name, value in vars(model).items():
        if name.endswith("_") and not name.startswith("_") and name not in ("state_", "members_"):
            got = getattr(loaded, name)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(got, value, err_msg=name)
            else:
                assert got == value, name
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert all(archive[name].dtype != object for name in archive.files)


def test_load_refuses_another_estimators_file(data, tmp_path):
    from probprop.io import ModelFileError

    X, y, _, _ = data
    path = tmp_path / "model.probprop"
    clone(FAST[2]).fit(X, y).save(path)  # a DVIRegressor
    with pytest.raises(ModelFileError, match="holds a DVIRegressor, not a MAPRegressor"):
        MAPRegressor.load(path)


def test_load_checks_state_shapes(data, tmp_path):
    import json

    from probprop.io import ModelFileError

    X, y, _, _ = data
    path = tmp_path / "model.probprop"
    clone(FAST[1]).fit(X, y).save(path)  # a TAGIRegressor
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["__meta__"]))

    def rewrite():
        with open(path, "wb") as handle:  # np.savez(name) would append .npz
            np.savez(handle, **{**arrays, "__meta__": np.array(json.dumps(meta))})

    meta["spec"]["fields"]["hidden"] = [9]
    rewrite()
    with pytest.raises(ModelFileError, match="means\\[0\\] is float64\\[8, 4\\], expected float64\\[9, 4\\]"):
        TAGIRegressor.load(path)
    meta["spec"]["class"] = "os.system"
    rewrite()
    with pytest.raises(ModelFileError, match="unknown learner spec"):
        TAGIRegressor.load(path)


def test_an_ensemble_file_whose_member_network_its_parameters_would_not_make_is_refused(data, tmp_path):
    """PBPEnsembleRegressor has no heteroscedastic or inference parameter: a file whose member
    spec says otherwise is refused, not half read."""
    import json

    from probprop.io import ModelFileError

    X, y, _, _ = data
    path = tmp_path / "ensemble.probprop"
    clone(FAST[0]).fit(X, y).save(path)  # a PBPEnsembleRegressor
    assert type(PBPEnsembleRegressor.load(path)) is PBPEnsembleRegressor
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    for field, value, match in (("likelihood", {"class": "HeteroscedasticGaussian", "fields": {"feedback": False}},
                                 r"expected float64\[2, 2, 9\]"),  # two outputs: the stored arrays do not fit
                                ("learn_prior", False, "member learn_prior False against True"),
                                ("prior_shape", 3.0, "member prior_shape 3.0 against 6.0")):
        meta = json.loads(str(arrays["__meta__"]))
        meta["spec"]["fields"]["member"]["fields"][field] = value
        with open(path, "wb") as handle:
            np.savez(handle, **{**arrays, "__meta__": np.array(json.dumps(meta))})
        with pytest.raises(ModelFileError, match=match):
            PBPEnsembleRegressor.load(path)


def test_a_pbp_file_whose_parameters_say_another_inference_is_refused(data, tmp_path):
    """The spec of a SEP network with parameters that say ADF: the replay and forgetting guards read
    the parameter, so the file is refused, not half read."""
    import json

    from probprop import PBPRegressor
    from probprop.io import ModelFileError

    X, y, _, _ = data
    path = tmp_path / "sep.probprop"
    PBPRegressor(hidden=(4,), epochs=1, inference="sep", random_state=0).fit(X, y).save(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["params"]["inference"] = "adf"
    with open(path, "wb") as handle:
        np.savez(handle, **{**arrays, "__meta__": np.array(json.dumps(meta))})
    with pytest.raises(ModelFileError, match="inference 'sep' against 'adf'"):
        PBPRegressor.load(path)


def test_load_model_returns_the_estimator_the_file_holds(data, tmp_path):
    from probprop.io import load_model

    X, y, X_test, _ = data
    path = tmp_path / "model.probprop"
    model = clone(FAST[0]).fit(X, y)  # a PBPEnsembleRegressor
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is PBPEnsembleRegressor and len(loaded.members_) == len(model.members_)
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    np.testing.assert_array_equal(loaded.members_[1].predict(X_test), model.members_[1].predict(X_test))


def test_deep_ensemble_selects_its_step_size_on_training_data_only(data, tmp_path):
    """learning_rate="select" (or a grid) searches on a split of the training rows; the chosen
    value, the scores, and a save/load round trip are exposed; a single value skips the search."""
    X, y, X_test, _ = data
    kwargs = dict(hidden=(8,), epochs=3, n_members=2, random_state=0)
    model = DeepEnsembleRegressor(learning_rate=[1e-7, 3e-2], **kwargs).fit(X, y)
    assert model.learning_rate_ == 3e-2 and model.validation_scores_.shape == (2,)
    fixed = DeepEnsembleRegressor(learning_rate=3e-2, **kwargs).fit(X, y)
    assert fixed.learning_rate_ == 3e-2 and not hasattr(fixed, "validation_scores_")
    model.save(tmp_path / "de.probprop")
    loaded = DeepEnsembleRegressor.load(tmp_path / "de.probprop")
    assert loaded.learning_rate_ == 3e-2 and loaded.get_params()["learning_rate"] == (1e-7, 3e-2)
    np.testing.assert_allclose(loaded.predict(X_test), model.predict(X_test), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:this batch of .* predictive standard deviations")  # the shift below is drift
@pytest.mark.parametrize("model", [FAST[0], FAST[1], FAST[7], FAST[8]], ids=["PBPEnsemble", "TAGI", "TAGI-het", "PBP-het"])
def test_online_estimators_continue_with_partial_fit(model, data):
    """partial_fit exists for the ADF learners (PBP, its ensembles, TAGI) and continues from the
    posterior: a stream of small batches learns the problem, the standardisation of the first batch
    stays, and a later batch from a shifted target moves the predictions towards it."""
    X, y, X_test, y_test = data
    stream = clone(model).set_params(sigma_v="select") if isinstance(model, TAGIRegressor) else clone(model)
    for start in range(0, 120, 20):
        stream.partial_fit(X[start:start + 20], y[start:start + 20], epochs=5)
    if isinstance(model, TAGIRegressor) and not model.heteroscedastic:
        assert stream.sigma_v_ == 0.3  # no search on a first batch of a stream
    first_scale = stream.y_scale_
    constant_rmse = np.sqrt(np.mean((y_test - y.mean()) ** 2))
    rmse = np.sqrt(np.mean((stream.predict(X_test) - y_test) ** 2))
    assert rmse < 0.85 * constant_rmse, (rmse, constant_rmse)  # the noise alone allows 0.61
    before = stream.predict(X_test)
    stream.partial_fit(X, y + 30.0, epochs=3)
    assert stream.y_scale_ == first_scale
    assert np.mean(stream.predict(X_test) - before) > 5.0


def test_gradient_estimators_have_no_partial_fit():
    for model in (FAST[2], FAST[4], FAST[5], FAST[6]):
        assert not hasattr(model, "partial_fit")

"""Heteroscedastic PBP (``PBPRegressor(heteroscedastic=True)``): a second output for the log noise
variance, learned by the same per-point ADF through a 1-D-quadrature log Z (its accuracy is checked in
probprop/likelihoods/tests/test_likelihoods.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from probprop import PBPRegressor, fit_together
from probprop.io import load_model, save_model
from probprop.learners import pbp


def _noise_sd(x):
    return 0.05 + 0.3 * np.abs(x)


def _draw(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, (n, 1))
    return X, np.sin(X[:, 0]) + _noise_sd(X[:, 0]) * rng.standard_normal(n)


@pytest.fixture(scope="module")
def fitted():
    X, y = _draw(400, 0)
    het = PBPRegressor(hidden=(20,), epochs=20, heteroscedastic=True, random_state=0).fit(X, y)
    homo = PBPRegressor(hidden=(20,), epochs=20, random_state=0).fit(X, y)
    return het, homo


def test_recovers_an_input_dependent_noise_and_beats_one_noise_level(fitted):
    """The oracle is the generating noise sd(x) = 0.05 + 0.3 |x|: the learned noise follows it
    (six times larger at |x| = 2.5 than at 0, as the truth's 16x is partly epistemic near 0), and the
    held-out log density beats the homoscedastic PBP fitted on the same rows."""
    het, homo = fitted
    grid = np.array([[-2.5], [-1.5], [0.0], [1.5], [2.5]])
    sd = np.sqrt(het.predict_dist(grid).noise_var)
    np.testing.assert_allclose(sd[[0, 1, 3, 4]], _noise_sd(grid[[0, 1, 3, 4], 0]), rtol=0.35)
    assert sd[0] > 3 * sd[2] and sd[4] > 3 * sd[2]
    assert np.ptp(homo.predict_dist(grid).noise_var) == 0.0  # one level, the baseline
    X_test, y_test = _draw(4000, 1)
    assert het.score(X_test, y_test) > homo.score(X_test, y_test) + 0.1
    # 90 % intervals cover about 90 % of new points, in the quiet and in the noisy region alike
    dist = het.predict_dist(X_test)
    inside = np.abs(y_test - dist.mean) <= 1.645 * dist.std
    for region in (np.abs(X_test[:, 0]) < 1, np.abs(X_test[:, 0]) > 2):
        assert 0.82 < inside[region].mean() < 0.98


def test_noise_is_per_row_and_in_user_units(fitted):
    het, _ = fitted
    X = np.array([[0.0], [2.0]])
    with pytest.raises(AttributeError, match="noise variance per input"):
        _ = het.noise_variance_
    with pytest.raises(ValueError, match="needs X"):
        pbp.noise_variance(het.state_)
    standardised = np.asarray(pbp.noise_variance(het.state_, (X - het.x_mean_) / het.x_scale_))
    np.testing.assert_allclose(het.predict_dist(X).noise_var, standardised * het.y_scale_**2, rtol=1e-12)


def test_save_load_and_continue(fitted, tmp_path):
    het, homo = fitted
    path = tmp_path / "het.probprop"
    save_model(het, path)
    loaded = load_model(path)
    X, y = _draw(50, 2)
    a, b = het.predict_dist(X), loaded.predict_dist(X)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.noise_var, b.noise_var)
    assert loaded.heteroscedastic is True and not np.allclose(b.noise_var, homo.predict_dist(X).noise_var)
    loaded.partial_fit(X, y)  # the loaded model goes on learning
    assert np.all(np.isfinite(loaded.predict_dist(X).noise_var))
    assert not np.array_equal(loaded.predict(X), het.predict(X))


def test_fit_together_and_sep_take_it():
    X, y = _draw(120, 3)
    params = {"hidden": (8,), "epochs": 3, "heteroscedastic": True}
    together = fit_together([PBPRegressor(random_state=k, **params) for k in range(2)], [X, X[::-1]], [y, y[::-1]])
    alone = PBPRegressor(random_state=1, **params).fit(X[::-1], y[::-1])
    a, b = together[1].predict_dist(X), alone.predict_dist(X)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.noise_var, b.noise_var, rtol=1e-7)
    sep = PBPRegressor(inference="sep", random_state=0, **params).fit(X, y)
    assert np.all(np.isfinite(sep.predict_dist(X).var))
    sharded = PBPRegressor(inference="sep", shards=2, random_state=0, **params).fit(X, y)  # no noise Gamma to merge
    assert np.all(np.isfinite(sharded.predict_dist(X).var)) and np.ptp(sharded.predict_dist(X).noise_var) > 0


def test_a_file_whose_parameters_contradict_its_network_is_refused(fitted, tmp_path):
    """heteroscedastic is said by the spec's likelihood (two outputs): a file claiming otherwise in
    its parameters is refused before use, in both directions."""
    import json

    from probprop.io import ModelFileError

    for model, claim in zip(fitted, (False, True)):
        path = tmp_path / f"m{claim}.npz"  # np.savez keeps a name ending in .npz
        save_model(model, path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(str(arrays["__meta__"]))
        meta["params"]["heteroscedastic"] = claim
        np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(meta))})
        with pytest.raises(ModelFileError, match="heteroscedastic"):
            load_model(path)


def test_a_cut_model_is_saved_as_cut_and_a_file_that_contradicts_it_is_refused(tmp_path):
    """``noise_feedback=False`` lives in the spec's likelihood (``HeteroscedasticGaussian(feedback=
    False)``): it survives save/load (the loaded model goes on learning cut, as the original
    does), and a file whose parameters, or whose likelihood field, says otherwise is refused."""
    import json

    from probprop.io import ModelFileError

    X, y = _draw(120, 5)
    cut = PBPRegressor(hidden=(8,), epochs=3, heteroscedastic=True, noise_feedback=False, random_state=0).fit(X, y)
    shared = PBPRegressor(hidden=(8,), epochs=3, heteroscedastic=True, random_state=0).fit(X, y)
    assert cut.state_.spec.likelihood.feedback is False and shared.state_.spec.likelihood.feedback is True
    assert not np.allclose(cut.predict(X), shared.predict(X))  # the cut changes the hidden layers' updates
    path = tmp_path / "cut.npz"
    save_model(cut, path)
    loaded = load_model(path)
    assert loaded.noise_feedback is False and loaded.state_.spec == cut.state_.spec
    loaded.partial_fit(X, y)
    cut.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.predict(X), cut.predict(X))
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["__meta__"]))
    for change, match in ((lambda m: m["params"].__setitem__("noise_feedback", True), "noise_feedback"),
                          (lambda m: _likelihood_fields(m).__setitem__("feedback", "no"), "feedback must be True or False")):
        edited = json.loads(json.dumps(meta))
        change(edited)
        np.savez(path, **{**arrays, "__meta__": np.array(json.dumps(edited))})
        with pytest.raises(ModelFileError, match=match):
            load_model(path)


def _likelihood_fields(meta) -> dict:
    """The saved spec's likelihood fields, wherever the meta holds the spec."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class") == "HeteroscedasticGaussian":
                found.append(node["fields"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(meta)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("params, match", [
    ({"heteroscedastic": "yes"}, "heteroscedastic must be True or False"),
    ({"heteroscedastic": True, "noise": 0.5}, "needs noise='learn'"),
    ({"heteroscedastic": True, "noise_feedback": 0}, "noise_feedback must be True or False"),
    ({"noise_feedback": False}, "needs heteroscedastic=True"),
])
def test_bad_parameters_are_named(params, match):
    X, y = _draw(20, 4)
    model = PBPRegressor(epochs=1, **params)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y)
    with pytest.raises(ValueError, match=match):
        clone(model).partial_fit(X, y)

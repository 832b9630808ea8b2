"""The estimators' own scikit-learn API (``probprop.estimators._api``) against scikit-learn's:
parameters, repr, tags, the fitted check, the random state, and validation (the plain-array
path must give exactly what ``sklearn.utils.validation.validate_data`` gives)."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.base
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state as sklearn_check_random_state
from sklearn.utils import get_tags
from sklearn.utils.validation import validate_data as sklearn_validate_data

from probprop.estimators import _api


def _init(self, alpha=1.0, hidden=(50,), inner=None, rate=float("nan"), name="x"):
    self.alpha, self.hidden, self.inner, self.rate, self.name = alpha, hidden, inner, rate, name


class Ours(_api.RegressorMixin, _api.Estimator):
    __init__ = _init


class Theirs(sklearn.base.RegressorMixin, sklearn.base.BaseEstimator):
    __init__ = _init


class OursClassifier(_api.ClassifierMixin, _api.Estimator):
    __init__ = _init


class TheirsClassifier(sklearn.base.ClassifierMixin, sklearn.base.BaseEstimator):
    __init__ = _init


PARAMS = [{}, {"alpha": 2.5}, {"hidden": (3, 4), "name": "y"}, {"rate": float("nan"), "alpha": 0.0},
          {"rate": 0.5, "inner": None}]


@pytest.mark.parametrize("params", PARAMS)
def test_parameters_and_short_reprs_are_scikit_learns(params):
    ours, theirs = Ours(**params), Theirs(**params)
    assert repr(ours).replace("Ours", "Theirs") == repr(theirs)
    assert list(ours.get_params()) == list(theirs.get_params())
    assert repr(ours.get_params()) == repr(theirs.get_params())
    clone = sklearn.base.clone(ours)
    assert type(clone) is Ours and clone is not ours and repr(clone) == repr(ours)


def test_nested_parameters_and_errors_are_scikit_learns():
    ours, theirs = Ours(inner=Ours(alpha=3.0)), Theirs(inner=Theirs(alpha=3.0))
    assert sorted(ours.get_params(deep=True)) == sorted(theirs.get_params(deep=True))
    ours.set_params(inner__alpha=7.0, name="z")
    theirs.set_params(inner__alpha=7.0, name="z")
    assert ours.inner.alpha == theirs.inner.alpha == 7.0 and ours.name == theirs.name == "z"
    for est in (ours, theirs):
        with pytest.raises(ValueError, match="Invalid parameter 'nope' for estimator") as err:
            est.set_params(nope=1)
        assert "Valid parameters are: ['alpha', 'hidden', 'inner', 'name', 'rate']" in str(err.value)
    assert ours.set_params() is ours


def test_repr_shows_every_parameter_where_scikit_learn_is_set_to():
    with sklearn.config_context(print_changed_only=False):
        assert repr(Ours(alpha=2.0)) == "Ours(alpha=2.0, hidden=(50,), inner=None, name='x', rate=nan)"
        assert repr(Ours(alpha=2.0)).replace("Ours", "Theirs") == repr(Theirs(alpha=2.0))


def test_tags_are_those_of_scikit_learns_mixins():
    assert get_tags(Ours()) == get_tags(Theirs())
    assert get_tags(OursClassifier()) == get_tags(TheirsClassifier())
    assert sklearn.base.is_regressor(Ours()) and sklearn.base.is_classifier(OursClassifier())
    assert (Ours()._estimator_type, OursClassifier()._estimator_type) == ("regressor", "classifier")


class OursRouted(_api.RegressorMixin, _api.Estimator):
    __init__ = _init

    def fit(self, X, y):
        return self

    def partial_fit(self, X, y, epochs=1):
        return self

    def predict(self, X, return_std=False):
        return np.zeros(len(X))

    def score(self, X, y, sample_weight=None):
        self.weights_seen_ = sample_weight
        return 0.0


class TheirsRouted(sklearn.base.RegressorMixin, sklearn.base.BaseEstimator):
    __init__ = _init
    fit, partial_fit, predict, score = OursRouted.fit, OursRouted.partial_fit, OursRouted.predict, OursRouted.score


def test_metadata_routing_is_scikit_learns():
    from sklearn.model_selection import cross_validate

    for name in ("set_fit_request", "set_partial_fit_request", "set_predict_request", "set_score_request"):
        assert hasattr(OursRouted(), name) == hasattr(TheirsRouted(), name), name
    assert str(OursRouted().get_metadata_routing()) == str(TheirsRouted().get_metadata_routing())
    X, y, w = np.ones((8, 2)), np.arange(8.0), np.linspace(1, 2, 8)
    with sklearn.config_context(enable_metadata_routing=True):
        for est in (OursRouted(), TheirsRouted()):
            routed = est.set_score_request(sample_weight=True)
            assert routed is est
            assert str(est.get_metadata_routing()) == "{'partial_fit': {'epochs': None}, 'predict': {'return_std': None}, 'score': {'sample_weight': True}}"
            cross_validate(est, X, y, cv=2, params={"sample_weight": w})
    with pytest.raises(AttributeError, match="no attribute 'set_transform_request'"):
        OursRouted().set_transform_request  # noqa: B018


def test_the_notebook_display_is_scikit_learns():
    bundle = Ours(alpha=2.0)._repr_mimebundle_()
    assert bundle["text/plain"] == "Ours(alpha=2.0)"
    assert "Ours" in bundle["text/html"] and "Ours" in Ours()._repr_html_()
    with sklearn.config_context(display="text"):
        assert Ours()._repr_mimebundle_() == {"text/plain": "Ours()"}
        assert not hasattr(Ours(), "_repr_html_") and not hasattr(Theirs(), "_repr_html_")


def test_fitted_check_and_random_state_are_scikit_learns():
    est = Ours()
    with pytest.raises(NotFittedError, match="This Ours instance is not fitted yet"):
        _api.check_is_fitted(est, "state_")
    est.state_ = 1
    _api.check_is_fitted(est, "state_")
    assert _api.check_random_state(None) is sklearn_check_random_state(None)
    rng = np.random.RandomState(3)
    assert _api.check_random_state(rng) is rng
    assert _api.check_random_state(7).randint(1000, size=5).tolist() == sklearn_check_random_state(7).randint(1000, size=5).tolist()
    assert _api.check_random_state(True).randint(1000) == sklearn_check_random_state(True).randint(1000)
    for bad in ("seed", 1.5):
        with pytest.raises(ValueError, match="cannot be used to seed"):
            _api.check_random_state(bad)
        with pytest.raises(ValueError, match="cannot be used to seed"):
            sklearn_check_random_state(bad)


def _outcome(fn):
    try:
        return "ok", fn()
    except Exception as err:  # noqa: BLE001 - the outcome compared is the exception itself
        return type(err).__name__, str(err)


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return a == b


@pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")
@settings(max_examples=200, deadline=None)
@given(rows=st.integers(0, 4), cols=st.integers(0, 3), dtype=st.sampled_from(["float64", "float32", "int64", "int32", "uint8"]),
       bad=st.sampled_from([None, np.nan, np.inf]), y_kind=st.sampled_from(["none", "float", "int", "short", "nan", "2d", "bool", "str"]),
       fitted=st.sampled_from([None, 1, 2, 3, "names", "names-refit"]), min_samples=st.integers(1, 2), seed=st.integers(0, 3))
def test_validation_gives_what_scikit_learns_gives(rows, cols, dtype, bad, y_kind, fitted, min_samples, seed):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(rows, cols)) * 10).astype(dtype)
    if bad is not None and X.size and X.dtype.kind == "f":
        X.flat[rng.integers(X.size)] = bad
    y = {"none": "no_validation", "float": rng.normal(size=rows), "int": rng.integers(0, 3, size=rows),
         "short": rng.normal(size=max(rows - 1, 0)), "nan": np.full(rows, np.nan), "2d": rng.normal(size=(rows, 1)),
         "bool": rng.normal(size=rows) > 0, "str": np.array(["a", "bc"] * rows)[:rows]}[y_kind]
    results = []
    for validate in (_api.validate_data, sklearn_validate_data):
        est = Ours()
        if fitted in ("names", "names-refit"):
            est.n_features_in_, est.feature_names_in_ = cols, np.array([f"f{i}" for i in range(cols)], dtype=object)
        elif fitted is not None:
            est.n_features_in_ = fitted
        reset = fitted in (None, "names-refit")
        extra = {} if y_kind == "none" else {"y_numeric": True, "multi_output": True}
        if validate is sklearn_validate_data:
            extra["dtype"] = [np.float64, np.float32]
        outcome = _outcome(lambda validate=validate, est=est, reset=reset, extra=extra: validate(
            est, X.copy(), y, reset=reset, ensure_min_samples=min_samples, **extra))
        results.append((outcome, getattr(est, "n_features_in_", None), hasattr(est, "feature_names_in_")))
    (ours, ours_n, ours_names), (theirs, their_n, their_names) = results
    assert ours[0] == theirs[0]
    assert _same(ours[1], theirs[1]), (ours, theirs)
    assert (ours_n, ours_names) == (their_n, their_names)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # scikit-learn's int cast
@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 5).map(float), st.floats(allow_nan=False, allow_infinity=False),
                          st.sampled_from([2.0**63, -(2.0**63), 1e20, -0.0, 1.0000001])), min_size=1, max_size=6))
def test_labels_the_classifier_checks_itself_are_labels_scikit_learn_accepts(values):
    from sklearn.utils.multiclass import check_classification_targets

    from probprop.estimators.classifier import _plain_labels

    y = np.asarray(values, np.float64)
    try:
        check_classification_targets(y)
        accepted = True
    except ValueError:
        accepted = False
    assert _plain_labels(y) == accepted

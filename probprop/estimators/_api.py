"""scikit-learn's estimator API without importing scikit-learn on the way to a first prediction.

Importing any part of scikit-learn costs about a second (``sklearn.base`` pulls in
``sklearn.utils``, whose helpers import SciPy's statistics and pandas), more than a warm fit and
prediction together (``probprop bench speed``'s "first call"). So the estimators are not
subclasses of ``sklearn.base.BaseEstimator``: this module gives them what scikit-learn asks of
an estimator (``get_params``/``set_params`` from the constructor's signature, ``__sklearn_tags__``,
a repr that shows the parameters that differ from their defaults, the regressor and classifier
mixins) and validates plain NumPy input itself. scikit-learn is imported only where it does work
that this module does not: its tags (when ``clone``, a pipeline or its estimator checks ask),
validation of anything other than a finite numeric 2-D array (DataFrames, lists, sparse
matrices, NaN, a wrong width: its messages name the problem), label checks, and the errors it
defines (``NotFittedError``). scikit-learn's estimator checks run against every estimator
(``probprop/tests/test_sklearn_checks.py``).
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys

import numpy as np

#: The dtypes the estimators compute in; plain input of another integer or float dtype is
#: converted to the first, as ``validate_data(..., dtype=FLOATS)`` does.
FLOATS = (np.float64, np.float32)


class Estimator:
    """``get_params``, ``set_params``, ``__sklearn_tags__`` and ``__repr__`` with scikit-learn's
    semantics, for a class whose constructor stores each argument under its own name."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        parameters = [p for p in inspect.signature(init).parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if any(p.kind == p.VAR_POSITIONAL for p in parameters):
            raise RuntimeError(f"{cls.__name__}'s constructor must name its parameters (no *args)")
        return sorted(p.name for p in parameters)

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters and their values (with ``deep``, those of nested
        estimators too, as ``name__parameter``)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set parameters (``name`` or, for a nested estimator, ``name__parameter``); returns self."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, delim, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self}. "
                                 f"Valid parameters are: {self._get_param_names()!r}.")
            if delim:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=None,
                    regressor_tags=None, classifier_tags=None)

    def __repr__(self) -> str:
        """``Name(param=value, ...)`` with the parameters that differ from their defaults (all of
        them where scikit-learn, once imported, is set to ``print_changed_only=False``); on one
        line, where scikit-learn's printer wraps long ones."""
        everything = "sklearn" in sys.modules and not sys.modules["sklearn"].get_config()["print_changed_only"]
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            same = repr(value) == repr(default) or (_is_nan(value) and _is_nan(default))
            if everything or not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # -------------------------------------------------------------- notebooks (scikit-learn's display)

    @property
    def _repr_html_(self):
        """scikit-learn's HTML diagram, defined (as scikit-learn's own estimators define it) only
        while its ``display`` option is ``"diagram"``."""
        from sklearn import get_config

        if get_config()["display"] != "diagram":
            raise AttributeError("_repr_html_ is only defined when the 'display' configuration option is set to "
                                 "'diagram'")
        return self._repr_html_inner

    def _repr_html_inner(self) -> str:
        from sklearn.utils import estimator_html_repr

        return estimator_html_repr(self)

    def _repr_mimebundle_(self, **kwargs):
        """Jupyter's display: the repr, and scikit-learn's diagram while its ``display`` is ``"diagram"``."""
        from sklearn import get_config

        output = {"text/plain": repr(self)}
        if get_config()["display"] == "diagram":
            output["text/html"] = self._repr_html_inner()
        return output

    # -------------------------------------------------------------- metadata routing (scikit-learn's)
    # scikit-learn's BaseEstimator has these from its _MetadataRequester, borrowed here on first
    # use: ``get_metadata_routing``, and ``set_{method}_request`` for each method whose signature
    # takes metadata (``score``'s sample_weight, ``partial_fit``'s epochs, ...), made when a
    # subclass is defined, as scikit-learn makes them (from the signatures only: scikit-learn's
    # ``__metadata_request__*`` class attributes, which no probprop class sets, are not read here;
    # ``get_metadata_routing`` reads them).

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for method in ROUTED_METHODS:
            keys = _metadata_params(getattr(cls, method, None))
            if keys:
                setattr(cls, f"set_{method}_request", _RequestSetter(method, keys))

    @classmethod
    def _get_default_requests(cls):
        return _requester()._get_default_requests.__func__(cls)

    @classmethod
    def _build_request_for_signature(cls, router, method):
        return _requester()._build_request_for_signature.__func__(cls, router, method)

    def _get_metadata_request(self):
        return _requester()._get_metadata_request(self)

    def get_metadata_routing(self):
        """scikit-learn's metadata request of this estimator (``sklearn.utils.metadata_routing``)."""
        return _requester().get_metadata_routing(self)


#: The methods whose metadata scikit-learn routes (its ``_metadata_requests.SIMPLE_METHODS``).
ROUTED_METHODS = ("fit", "partial_fit", "predict", "predict_proba", "predict_log_proba", "decision_function",
                  "score", "split", "transform", "inverse_transform")


def _metadata_params(method) -> list[str]:
    """The metadata a method takes, as scikit-learn reads it from the signature: every parameter
    but self, X, y, Y, Xt, yt, ``*args`` and ``**kwargs``."""
    if not inspect.isfunction(method):
        return []
    parameters = list(inspect.signature(method).parameters.values())[1:]
    return sorted(p.name for p in parameters
                  if p.name not in {"X", "y", "Y", "Xt", "yt"} and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


class _RequestSetter:
    """``set_{method}_request``: scikit-learn's own request method, built when first used."""

    def __init__(self, method: str, keys: list[str]):
        self.method, self.keys = method, keys

    def __get__(self, instance, owner=None):
        from sklearn.utils._metadata_requests import RequestMethod

        return RequestMethod(self.method, self.keys).__get__(instance, owner)


def _requester():
    from sklearn.utils._metadata_requests import _MetadataRequester

    return _MetadataRequester


def _is_nan(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(value)


def _typed(tags, estimator_type: str, type_tags):
    """``tags`` of a supervised estimator of ``estimator_type`` ("regressor" or "classifier")
    with its type's own tags, as scikit-learn's mixins set them."""
    tags.estimator_type = estimator_type
    setattr(tags, f"{estimator_type}_tags", type_tags)
    tags.target_tags.required = True
    return tags


class RegressorMixin:
    """Marks a regressor (scikit-learn's tags say so); the estimator gives its own ``score``."""

    _estimator_type = "regressor"  # what scikit-learn 1.6's mixins still set, for code that reads it

    def __sklearn_tags__(self):
        from sklearn.utils import RegressorTags

        return _typed(super().__sklearn_tags__(), "regressor", RegressorTags())


class ClassifierMixin:
    """Marks a classifier; ``score`` is the accuracy, scikit-learn's convention for classifiers."""

    _estimator_type = "classifier"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags

        return _typed(super().__sklearn_tags__(), "classifier", ClassifierTags())

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y``."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))


def check_is_fitted(estimator, attribute: str = "state_") -> None:
    """scikit-learn's ``NotFittedError`` (imported only then) unless ``attribute`` is set."""
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
                             "appropriate arguments before using this estimator.")


def check_random_state(seed) -> np.random.RandomState:
    """A ``RandomState`` from None (NumPy's global one), an int or a ``RandomState``."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def _plain(X, rows: int) -> bool:
    """A finite 2-D NumPy array of integers or floats with at least ``rows`` rows and one column."""
    if type(X) is not np.ndarray or X.ndim != 2 or X.shape[0] < rows or X.shape[1] < 1:
        return False
    if X.dtype.kind in "iu":
        return True
    return X.dtype in FLOATS and bool(np.isfinite(X).all())


def validate_data(estimator, X, y="no_validation", *, reset: bool, ensure_min_samples: int = 1,
                  y_numeric: bool = False, multi_output: bool = False):
    """``sklearn.utils.validation.validate_data(estimator, X, y, dtype=FLOATS, ...)`` with the same
    results and side effects (``n_features_in_``, ``feature_names_in_``). A plain finite array
    (and, with y, a 1-D y of as many rows of bools, integers, strings or finite floats) is checked
    here; anything else goes to scikit-learn, whose messages name the problem."""
    with_y = not (isinstance(y, str) and y == "no_validation")
    plain = _plain(X, ensure_min_samples)
    if plain and not reset:
        plain = not hasattr(estimator, "feature_names_in_") and X.shape[1] == getattr(estimator, "n_features_in_", -1)
    if plain and with_y:
        plain = (type(y) is np.ndarray and y.ndim == 1 and len(y) == len(X) and y.dtype.kind in "biufU"
                 and (y.dtype.kind != "f" or bool(np.isfinite(y).all())))
    if not plain:
        from sklearn.utils.validation import validate_data as sklearn_validate_data

        y_checks = {"y_numeric": y_numeric, "multi_output": multi_output} if with_y else {}
        try:
            return sklearn_validate_data(estimator, X, y, reset=reset, dtype=list(FLOATS),
                                         ensure_min_samples=ensure_min_samples, **y_checks)
        except OverflowError as err:  # a Python int beyond float64 (10**400): NumPy's conversion
            raise ValueError(f"Input contains a number too large for float64 ({err})") from err
    if reset:
        estimator.n_features_in_ = X.shape[1]
        estimator.__dict__.pop("feature_names_in_", None)
    if X.dtype not in FLOATS:
        X = X.astype(FLOATS[0])
    return (X, y) if with_y else X

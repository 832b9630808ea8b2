"""The estimators over the gradient-trained learners: DVI, MAP, deep ensembles, MC dropout."""

from __future__ import annotations

import jax
import numpy as np

from probprop.estimators import _checks
from probprop.estimators._api import check_is_fitted
from probprop.estimators.base import DivergedError, MomentRegressor
from probprop.io import register_estimator
from probprop.learners import dvi, ensemble, mapnet, mcdropout
from probprop.moments.input_noise import PROPAGATIONS


class _NetworkParams:
    """``hidden`` and ``epochs`` checks shared by the gradient estimators, and the check after
    training that the loss and the weights stayed finite."""

    def _validated_params(self) -> dict:
        return {"hidden": _checks.hidden_sizes(self.hidden), "epochs": _checks.positive_int("epochs", self.epochs)}

    def _run_epochs(self, Xs, ys, epochs, mask=None) -> None:
        super()._run_epochs(Xs, ys, epochs, mask)
        leaves = jax.tree_util.tree_leaves(self.state_)
        if all(np.all(np.isfinite(a)) for a in map(np.asarray, leaves) if a.dtype.kind == "f"):
            return
        rate = getattr(self.spec_, "learning_rate", None)
        del self.state_  # a diverged model is not a fitted one
        raise DivergedError(
            f"{type(self).__name__}: training diverged (the loss or the weights became non-finite) with "
            f"learning_rate={rate!r}; use a smaller learning_rate"
        )


@register_estimator
class DVIRegressor(_NetworkParams, MomentRegressor):
    """Deterministic variational inference (Wu et al., ICLR 2019): mean-field Gaussian weights,
    the ELBO's expected log-likelihood from propagated moments (no sampling), Adam.

    ``heteroscedastic=True`` adds an input-dependent noise head (the paper's default);
    ``empirical_bayes=True`` sets the prior variance per layer under an InvGamma(1, 10)
    hyper-prior. Epochs default to 100 (chosen on validation folds of training data).
    """

    _learner_name = "dvi"
    _propagations = PROPAGATIONS
    _progress_label = "DVI epochs"

    def __init__(self, hidden=(50,), epochs=100, heteroscedastic=True, empirical_bayes=True,
                 learning_rate=3e-3, batch_size=32, random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.heteroscedastic = heteroscedastic
        self.empirical_bayes = empirical_bayes
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, params):
        return dvi.DVISpec(n_in=n_in, hidden=params["hidden"], heteroscedastic=bool(self.heteroscedastic),
                           empirical_bayes=bool(self.empirical_bayes), learning_rate=float(self.learning_rate),
                           batch_size=_checks.positive_int("batch_size", self.batch_size))




@register_estimator
class MAPRegressor(_NetworkParams, MomentRegressor):
    """A point-estimate network trained by backpropagation (Adam) with a learned Gaussian
    noise (homoscedastic, or an input-dependent head): the non-Bayesian baseline. Its
    epistemic variance is zero by construction."""

    _learner_name = "map"
    _progress_label = "MAP epochs"

    def __init__(self, hidden=(50,), epochs=40, heteroscedastic=False, learning_rate=1e-2, batch_size=32,
                 random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.heteroscedastic = heteroscedastic
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, params):
        return mapnet.MAPSpec(n_in=n_in, hidden=params["hidden"], heteroscedastic=bool(self.heteroscedastic),
                              learning_rate=float(self.learning_rate),
                              batch_size=_checks.positive_int("batch_size", self.batch_size))




class LastLayerLaplace:
    """What the last-layer Laplace estimators share (regressor and classifier): the
    ``prior_precision`` and ``hessian_structure`` parameters' checks, the fitted ``prior_precision_``, and the check of a
    model file's posterior (:func:`probprop.learners.laplace.check_state`)."""

    def _validated_params(self) -> dict:
        from probprop.learners.laplace import HESSIAN_STRUCTURES

        precision = None if self.prior_precision is None else _checks.positive_float("prior_precision",
                                                                                       self.prior_precision)
        structure = getattr(self, "hessian_structure", "full")
        if not isinstance(structure, str) or structure not in HESSIAN_STRUCTURES:
            raise ValueError(f"hessian_structure must be one of {list(HESSIAN_STRUCTURES)}, got {structure!r}")
        return {**super()._validated_params(), "prior_precision": precision, "hessian_structure": structure}

    @property
    def prior_precision_(self):
        """The prior precision of the fitted last-layer posterior (given, or chosen by the evidence):
        a float, or an array of one per member for a Laplace ensemble."""
        check_is_fitted(self, "state_")
        value = np.array(self.state_.prior_precision, np.float64)  # a copy: never a view of the state
        return float(value) if value.ndim == 0 else value

    @classmethod
    def _restore(cls, params, spec, state, scaling, feature_names, fitted):
        from probprop.learners import laplace, laplace_ensemble

        if isinstance(state, laplace_ensemble.LaplaceEnsembleState):
            laplace_ensemble.check_state(state)
        else:
            laplace.check_state(state)
        return super()._restore(params, spec, state, scaling, feature_names, fitted)


@register_estimator
class LaplaceRegressor(LastLayerLaplace, MAPRegressor):
    """A MAP network (homoscedastic noise) with a last-layer Laplace approximation (Kristiadi, Hein
    & Hennig 2020): after training, a Gaussian posterior over the last layer's weights and bias
    from the exact Hessian of the Gaussian log-likelihood there (Bayesian linear regression on the
    network's last features), with a prior precision chosen by the Laplace evidence. The
    epistemic variance is the output's variance under it, in closed form; the noise is the MAP
    network's. See :mod:`probprop.learners.laplace`.

    Parameters
    ----------
    hidden, epochs, learning_rate, batch_size, random_state, verbose : as in :class:`MAPRegressor`.
    prior_precision : float or None, default=None
        Precision of the Gaussian prior on the last layer's parameters in the posterior; None:
        chosen by the evidence (``prior_precision_``).
    hessian_structure : {"full", "kron"}, default="full"
        The last layer's curvature: "full", the exact D x D matrix (D = (units of the last hidden
        layer + 1) x outputs, at most :data:`probprop.learners.laplace.MAX_PARAMETERS`), or "kron",
        its Kronecker factorisation (KFAC; laplace-torch's names), which never forms a D x D matrix.
        For regression both give the same posterior (the Gaussian likelihood's curvature is the
        same for every row; "kron" takes at most 4,096 units,
        :data:`probprop.learners.laplace.MAX_KRON_FACTOR` rows per factor).
    """

    _learner_name = "laplace"

    def __init__(self, hidden=(50,), epochs=40, learning_rate=1e-2, batch_size=32, prior_precision=None,
                 hessian_structure="full", random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.prior_precision = prior_precision
        self.hessian_structure = hessian_structure
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, params):
        from probprop.learners import laplace

        return laplace.LaplaceSpec(n_in=n_in, hidden=params["hidden"], learning_rate=float(self.learning_rate),
                                   batch_size=_checks.positive_int("batch_size", self.batch_size),
                                   prior_precision=params["prior_precision"],
                                   hessian_structure=params["hessian_structure"])


class EnsembleStepSize:
    """Adam's step size of a deep ensemble (regressor or classifier): ``learning_rate`` one value,
    or a grid searched by the learner's ``select`` on held-out training data (``learning_rate_``,
    ``validation_scores_``)."""

    def _grid(self) -> tuple[float, ...]:
        return _checks.candidates("learning_rate", self.learning_rate, ensemble.GRID_LEARNING_RATE)

    def _configure(self, Xs, ys, key, spec, search):
        grid = self._grid()
        if len(grid) > 1:
            key, sub = jax.random.split(key)
            choice = self._learner().select(Xs, ys, spec, epochs=int(self.epochs), grid=grid, key=sub)
            spec = choice.spec
            self.validation_scores_ = choice.scores
        self.learning_rate_ = float(spec.learning_rate)
        return spec, key


@register_estimator
class DeepEnsembleRegressor(EnsembleStepSize, _NetworkParams, MomentRegressor):
    """Deep ensembles (Lakshminarayanan et al. 2017): ``n_members`` heteroscedastic networks
    trained on the NLL from different initialisations, combined as a Gaussian mixture;
    epistemic = variance of the member means, noise = mean member variance. At most
    :data:`probprop.learners.ensemble.MAX_MEMBERS` (256) members.

    ``learning_rate`` is Adam's step size: a number, a sequence of them (a grid), or
    ``"select"`` (the grid 1e-3, 3e-3, 1e-2, 3e-2). A grid is searched on an 80/20 split of the
    training data by validation log-likelihood, each candidate trained for ``epochs`` epochs,
    never on test data; the chosen value is ``learning_rate_`` and the scores
    ``validation_scores_``. A search costs about ``len(grid) * 0.8 + 1`` fits.
    """

    _learner_name = "ensemble"
    _saved = ("learning_rate_", "validation_scores_")
    _progress_label = "ensemble epochs"

    def __init__(self, hidden=(50,), epochs=40, n_members=5, learning_rate=1e-2, batch_size=32,
                 random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.n_members = n_members
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def _make_spec(self, n_in, params):
        return ensemble.EnsembleSpec(n_in=n_in, hidden=params["hidden"],
                                     n_members=_checks.positive_int("n_members", self.n_members),
                                     learning_rate=self._grid()[0],
                                     batch_size=_checks.positive_int("batch_size", self.batch_size))


@register_estimator
class MCDropoutRegressor(_NetworkParams, MomentRegressor):
    """MC dropout (Gal & Ghahramani 2016): dropout before every layer, weight decay from the
    prior length-scale and the model precision tau, T stochastic passes at prediction.

    Parameters
    ----------
    dropout : "select", float in (0, 1), or a sequence of them, default="select"
        The dropout rate; a sequence is a grid to choose from, ``"select"`` the authors' grid
        (0.005, 0.01, 0.05, 0.1).
    tau : "select", positive float, or a sequence of them, default="select"
        The model precision (1 / noise variance) in the units of ``1 / y**2``, as in the
        authors' ``tau_values.txt``; a sequence is a grid, ``"select"`` a default grid of
        noise standard deviations from 1 to 1/16 of the training std of ``y``.

    Grids are searched on an 80/20 split of the training data by validation log-likelihood
    (the grid protocol of the authors' corrected code), never on test data; the chosen values
    are ``dropout_`` and ``tau_`` (in the units of ``1 / y**2``).
    """

    _learner_name = "mcdropout"
    _saved = ("dropout_", "tau_", "validation_scores_")
    _progress_label = "MC dropout epochs"

    def __init__(self, hidden=(50,), epochs=400, dropout="select", tau="select", n_samples=100,
                 random_state=None, verbose=False):
        self.hidden = hidden
        self.epochs = epochs
        self.dropout = dropout
        self.tau = tau
        self.n_samples = n_samples
        self.random_state = random_state
        self.verbose = verbose

    def _candidates(self, name: str, default: tuple[float, ...], upper: float = np.inf) -> tuple[float, ...]:
        """The values of ``dropout`` or ``tau`` to consider (one value: no search)."""
        return _checks.candidates(name, getattr(self, name), default, upper)

    def _grids(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Candidate dropout rates and taus, the taus as precisions of the standardised y."""
        scale2 = self.y_scale_**2  # tau in 1/y^2 -> precision of the standardised target
        grid_p = self._candidates("dropout", mcdropout.GRID_P, upper=1.0)
        user_tau = self._candidates("tau", tuple(t / scale2 for t in mcdropout.GRID_TAU))
        return grid_p, tuple(t * scale2 for t in user_tau)

    def _make_spec(self, n_in, params):
        n_samples = _checks.positive_int("n_samples", self.n_samples)
        grid_p, grid_tau = self._grids()
        return mcdropout.MCDropoutSpec(n_in=n_in, hidden=params["hidden"], n_samples=n_samples, dropout=grid_p[0],
                                       tau=grid_tau[0])

    def _configure(self, Xs, ys, key, spec, search):
        grid_p, grid_tau = self._grids()
        if len(grid_p) > 1 or len(grid_tau) > 1:
            key, sub = jax.random.split(key)
            choice = self._learner().select(Xs, ys, spec, epochs=int(self.epochs), key=sub,
                                            grid={"dropout": grid_p, "tau": grid_tau})
            spec = choice.spec
            self.validation_scores_ = choice.scores
        self.dropout_ = float(spec.dropout)
        self.tau_ = float(spec.tau) / self.y_scale_**2
        return spec, key

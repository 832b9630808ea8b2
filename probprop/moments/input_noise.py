"""Moments of a network's units when its inputs are uncertain (``X_var``).

An input row is x = m + diag(sqrt(v)) eps with eps ~ N(0, I_d), independent of the weights. The
noise of one input reaches every unit, so the units of a layer are correlated through it; the
moment maps of :mod:`probprop.moments` treat the units of a layer as independent, which for
input noise is wrong by large factors (the output variance of a trained network is
``sum_k (sum_j ...)^2 v_k``, a square of sums, where independent units would give a sum of
squares). So every unit u carries, besides its mean and variance, ``C_u = Cov(u, eps)`` (a
d-vector, the part of its variance shared with the other units):

* inputs: mean m, variance v, ``C = diag(sqrt(v))``;
* linear layer: :func:`probprop.moments.linear.linear_shared` (the independent-unit map of
  :func:`probprop.moments.linear.linear` with the shared part counted with its covariances,
  exact for independent Gaussian weights and inputs of that covariance);
* activation (:func:`activate`), ``propagation="moments"``: the marginal moments of the
  activation's moment map (:data:`probprop.moments.ACTIVATIONS`) for a ~ N(mean, var), and
  ``C_h = J C_a`` with ``J = dE[h]/dm``, by Stein's lemma the exact regression coefficient of h on
  a (and so on eps) for Gaussian a; the rest of h is treated as independent of the other units;
* ``propagation="linear"``: local linearisation (Petersen et al., "Uncertainty quantification via
  stable distribution propagation", ICLR 2024): ``h = f(mean)``, ``Var h = f'(mean)^2 var``,
  ``C_h = f'(mean) C_a``, with f and f' the moment map at zero variance (for sigmoid and tanh
  that is their probit approximation).

With v = 0 the covariances are zero and ``"moments"`` gives the values of the plain forward pass.
The cost grows with d (each unit carries a d-vector); on the UCI test sets a prediction took
1.3-1.7x the plain one, for either propagation (linearisation saves the erfc of the moment
map, which is not where the time goes).

Accuracy against Monte Carlo over the inputs and the weight posterior, on trained networks of one
hidden layer (``probprop/tests/test_uncertain_inputs.py``; input sd in standardised units, i.e.
in training stds): ``"moments"`` agrees within the Monte Carlo error at sd 0.1 (variance within
1.6 %), the variance is within 10 % up to sd 0.3 and 20 % up to sd 1 (measured: 7.5 % and 15 %),
and the mean within 0.02 predictive sd throughout. On the trained UCI networks of
``probprop bench noisy-inputs`` (50 units, 6-13 inputs; its report's Monte Carlo section) the
variance error is larger where the input noise is large: median over test rows 0.4-1.7 % at sd
0.1 and 1.5-10 % up to sd 1, largest 2-10 % at sd 0.1 and up to 38 % (kin8nm, sd 0.5), the mean
within 0.013 sd of f everywhere. With two hidden layers the plain pass is
already approximate (PBP's epistemic variance 15-33 % low on the test network), and the input
noise adds no error of its own. Treating the units as independent instead (the input variance
entering the first layer only) underestimated the variance by 30-67 %. ``"linear"`` is further
from Monte Carlo everywhere measured (variance 10-100 % off on the test networks, largest errors
27-350 % on the UCI ones, the mean 0.14-1.4 sd off; without
input noise too, since it also linearises the weight uncertainty), but its predictions of noisy
UCI test inputs have the higher test log-likelihood on energy (input noise up to 0.5 training
std) and Boston (0.5-1 std), and moment matching on concrete (0.3-0.5) and kin8nm (0.5-1)
(``docs/benchmarks/noisy-inputs``): it widens the predictive distribution where moment matching
is faithful to a model that is itself too confident. So it is offered, not the default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: How :func:`activate` propagates (mean, variance) through a hidden unit.
PROPAGATIONS = ("moments", "linear")


def check_propagation(propagation) -> str:
    """``propagation`` if it is one of :data:`PROPAGATIONS`, else a ValueError naming them."""
    if not (isinstance(propagation, str) and propagation in PROPAGATIONS):
        raise ValueError(f"propagation must be one of {list(PROPAGATIONS)}, got {propagation!r}")
    return propagation


def predict_with(plain, noisy, state, X, X_var=None, propagation: str = "moments"):
    """The one dispatch of the moment learners' ``predict``: ``plain(state, X)`` (the compiled
    plain pass, unchanged) for deterministic inputs propagated by moment matching, else
    ``noisy(state, X, X_var, propagation)`` with ``X_var`` broadcast to X (zeros if None)."""
    if X_var is None and propagation == "moments":
        # a host array goes to the compiled pass as it is (jnp.asarray would compile a copy program)
        return plain(state, X if isinstance(X, (np.ndarray, jax.Array)) else jnp.asarray(X))
    check_propagation(propagation)
    X = jnp.asarray(X)
    X_var = jnp.zeros_like(X) if X_var is None else jnp.broadcast_to(jnp.asarray(X_var, X.dtype), X.shape)
    return noisy(state, X, X_var, propagation)


def input_moments(X, X_var):
    """``(mean, var, cov)`` of the inputs: X, X_var (both (..., d)) and Cov(x, eps) =
    diag(sqrt(X_var)) of shape (..., d, d)."""
    X_var = jnp.broadcast_to(jnp.asarray(X_var, X.dtype), X.shape)
    eye = jnp.eye(X.shape[-1], dtype=X.dtype)
    return X, X_var, jnp.sqrt(X_var)[..., None] * eye


def append_bias(mean, var, cov):
    """Append the constant bias input (mean 1, variance 0, no covariance) along the unit axis."""
    one = jnp.ones(mean.shape[:-1] + (1,), mean.dtype)
    zero = jnp.zeros(cov.shape[:-2] + (1, cov.shape[-1]), cov.dtype)
    return (jnp.concatenate([mean, one], -1), jnp.concatenate([var, jnp.zeros_like(one)], -1),
            jnp.concatenate([cov, zero], -2))


def activate(activation, mean, var, cov, propagation: str = "moments"):
    """``(mean, var, cov)`` of h = f(a) for a ~ N(mean, var) with Cov(a, eps) = ``cov``
    (module docstring); ``activation`` is a moment map returning ``(mean, var, jacobian)``."""
    if propagation == "moments":
        out_mean, out_var, (jac, *_) = activation(mean, var)
    elif propagation == "linear":
        out_mean, _, (jac, *_) = activation(mean, jnp.zeros_like(var))
        out_var = jac * jac * var
    else:
        check_propagation(propagation)
    cov = jac[..., None] * cov
    # the shared part never exceeds the variance (true of exact moments; a guard against
    # rounding and the probit approximations), so the implied covariance stays positive
    shared = jnp.sum(cov * cov, axis=-1)
    shrink = jnp.sqrt(jnp.where(shared > out_var, out_var / jnp.where(shared > 0, shared, 1.0), 1.0))
    return out_mean, out_var, shrink[..., None] * cov

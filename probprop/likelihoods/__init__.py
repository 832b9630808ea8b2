"""Observation models as pieces a learner takes (see :mod:`probprop.likelihoods.base`).

A new likelihood is one new module with a :class:`Likelihood` subclass plus a line in
:data:`LIKELIHOODS` (the names a model file may use).
"""

from probprop.likelihoods.base import Gamma, Likelihood
from probprop.likelihoods.classification import MultinomialProbit, Probit, Softmax
from probprop.likelihoods.gaussian import GaussianGammaNoise, GaussianNoise, HeteroscedasticGaussian

#: Name -> likelihood class: the only likelihoods a model file may name.
LIKELIHOODS = {
    "gaussian": GaussianNoise,
    "gaussian_gamma": GaussianGammaNoise,
    "heteroscedastic_gaussian": HeteroscedasticGaussian,
    "probit": Probit,
    "multinomial_probit": MultinomialProbit,
    "softmax": Softmax,
}

__all__ = ["LIKELIHOODS", "Gamma", "GaussianGammaNoise", "GaussianNoise", "HeteroscedasticGaussian", "Likelihood",
           "MultinomialProbit", "Probit", "Softmax"]

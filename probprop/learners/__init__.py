"""Learning rules, each a small set of pure functions over an immutable state, behind one
protocol (:class:`probprop.learners.base.Learner`):

    from probprop.learners import get
    learner = get("pbp")
    state = learner.init(key, learner.spec_class(n_in=13, hidden=(50,)))
    state = learner.update(state, X, y)          # one epoch
    mean, epistemic_var, noise_var = learner.predict(state, X)

A new learning rule is one new module that defines ``learner = Learner(...)`` plus one line in
:data:`REGISTRY` below.
"""

from probprop.learners import dvi, ensemble, laplace, laplace_ensemble, mapnet, mcdropout, pbp, pbp_ensemble, tagi
from probprop.learners.base import Learner, Moments, Selection, float64

#: Learner name -> learner: every learning rule probprop has (one line each).
REGISTRY: dict[str, Learner] = {
    learner.name: learner
    for learner in (
        pbp.learner,
        pbp_ensemble.learner,
        tagi.learner,
        dvi.learner,
        mapnet.learner,
        laplace.learner,
        ensemble.learner,
        laplace_ensemble.learner,
        mcdropout.learner,
    )
}


def get(name: str) -> Learner:
    """The learner called ``name`` (a key of :data:`REGISTRY`)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown learner {name!r}; choose from {sorted(REGISTRY)}") from None


def for_spec(spec) -> Learner:
    """The learner whose spec class ``spec`` is an instance of."""
    for learner in REGISTRY.values():
        if type(spec) is learner.spec_class:
            return learner
    raise ValueError(f"no learner takes a {type(spec).__name__}")


__all__ = ["REGISTRY", "Learner", "Moments", "Selection", "dvi", "ensemble", "float64", "for_spec", "get", "laplace",
           "laplace_ensemble", "mapnet", "mcdropout", "pbp", "pbp_ensemble", "tagi"]

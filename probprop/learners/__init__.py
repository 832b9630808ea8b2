"""Learning rules, each a small set of pure functions over an immutable state.

    from probprop.learners import pbp
    state = pbp.init(key, pbp.PBPSpec(n_in=13, hidden=(50,)))
    state = pbp.update(state, X, y)        # one epoch
    mean, var = pbp.predict(state, X)
"""

from probprop.learners import dvi, ensemble, mapnet, mcdropout, pbp, tagi

__all__ = ["dvi", "ensemble", "mapnet", "mcdropout", "pbp", "tagi"]

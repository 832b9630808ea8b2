"""Network layers as pieces a learner takes: each is a forward moment map plus the pullback that
ADF needs (see :class:`probprop.layers.dense.Dense`, the first). A new layer (a convolution, a
pooling) is one new module with a class of the same methods plus a line in :data:`LAYERS`.
"""

from probprop.layers.dense import Dense

#: Name -> layer class.
LAYERS = {"dense": Dense}

__all__ = ["LAYERS", "Dense"]

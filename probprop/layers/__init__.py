"""Network layers as pieces a learner takes: each is a forward moment map (PBP's scaled
parameterisation, or ``scaled=False`` for TAGI's), the pullback that ADF needs, and the products
TAGI's layer-wise conditioning takes (``tagi_pullback``); see :class:`probprop.layers.dense.Dense`,
the first. A new layer is one new module with a class of the same methods plus a line in
:data:`LAYERS`.
"""

from probprop.layers.conv import Conv2D
from probprop.layers.dense import Dense

#: Name -> layer class.
LAYERS = {"dense": Dense, "conv2d": Conv2D}

__all__ = ["LAYERS", "Conv2D", "Dense"]

"""A compilation hint for XLA:CPU: compute a few small arrays once, in one kernel.

XLA fuses cheap element-wise producers into every consumer, and splits expensive ones (exp,
erfc, divisions) into kernels of their own. In the per-data-point PBP update both hurt: the
consumers are loops over every weight (the producer is re-evaluated per weight), and a
dozen tiny kernels per point cost more than their arithmetic. XLA neither simplifies away
nor fuses into its consumers a reduction, so passing arrays through a sum with zeros makes
them one materialised result; the values are unchanged (x + 0 == x exactly).
"""

import jax.numpy as jnp


def compute_once(*arrays):
    """Return ``arrays`` (same shapes, broadcast to a common one) computed once, in one kernel."""
    stacked = jnp.stack(jnp.broadcast_arrays(*arrays))
    return tuple(jnp.sum(jnp.stack([stacked, jnp.zeros_like(stacked)]), axis=0))

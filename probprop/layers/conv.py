"""A 2-D convolution with Gaussian weights, optionally pooled, as a layer piece (PBP's and TAGI's).

Inputs are images of ``in_shape = (C, H, W)``, flattened channel-major (as ``X.reshape(n, -1)``
flattens an (n, C, H, W) array; one channel: the usual row-major image). Each of the ``channels``
output maps has a ``kernel`` x ``kernel`` x C weight tensor and a bias, stored as one row of a
weight matrix of shape (channels, C kernel^2 + 1) (bias last, as in :class:`Dense`), so that
everything a learner does per weight (ADF update, guard, EP prior, model files) is unchanged.
Pre-activations use PBP's scaling: a = (sum of weight x input over the patch + bias) / sqrt(n),
n = C kernel^2 + 1. Convolutions are "valid" with stride 1.

Moments, for weights w ~ N(M, V) and input pixels z ~ (m, v), all independent:

    E[a]   = (M * m + M_b) / sqrt(n)                          (* : correlation over the patch)
    Var[a] = (M^2 * v + V * (m^2 + v) + V_b) / n

``pool`` > 1 pools the pre-activations over non-overlapping pool x pool windows (the activation
follows; for max pooling relu(max a) = max relu(a), so the order does not matter there):

- ``pooling="avg"``: exact under the same independence assumptions, although the units of a
  window share their weights: the pooled unit is a stride-``pool`` convolution of the input with
  the kernel spread over the window, K' = K * box / pool^2 (size kernel + pool - 1), so

      Var[a'] = (K'(M)^2 * v + K'(V) / pool^2 * v + V * avg(m)^2 + V_b) / n,   all at stride pool,

  avg(m) the pool x pool moving average of the input means (its variance terms are the first two).
- ``pooling="max"``: each window's maximum matched pairwise by Clark's formulas
  (:mod:`probprop.moments.maximum`), which treat the window's units as independent.

The pullback (what ADF needs: d/dM, d/dV of a scalar through the output moments, and the input
cotangents) is the vector-Jacobian product of these maps (``jax.vjp``): the moments are a few
correlations, whose transposes are those of a gather and a matrix product (few rows) or XLA's
own (:func:`_conv`). Inputs that are the data (``var`` None) skip
every variance-of-input term.

TAGI (:mod:`probprop.learners.tagi`) uses the piece unscaled (``scaled=False``: a = K * x + b) and
takes from it, instead of the pullback, the products of its layer-wise conditioning
(:meth:`Conv2D.tagi_pullback`): the Jacobians of E[a] in the weights and in the input means,
plain and squared entrywise, applied to the output innovations (average pooling only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.moments.maximum import max_pool_moments

#: Pooling kinds.
POOLINGS = ("avg", "max")

#: Largest image side, channel count and kernel a layer accepts (model files are untrusted).
MAX_SIDE = 4096
MAX_CHANNELS = 4096

_DIMS = ("NCHW", "OIHW", "NCHW")


#: Largest patch matrix (rows x C k^2 x output positions) that :func:`_conv` gathers; above it,
#: XLA's convolution.
GATHER_MAX = 1 << 18


@functools.lru_cache(maxsize=64)
def _patch_index(c: int, h: int, w: int, k: int, stride: int) -> np.ndarray:
    """Flat (channel-major) pixel index of every patch entry: (C k^2, output positions), the
    entries ordered as a kernel (C, k, k) is flattened."""
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    ci, a, b, p, q = np.ix_(np.arange(c), np.arange(k), np.arange(k), np.arange(oh), np.arange(ow))
    index = (ci * (h * w) + (stride * p + a) * w + stride * q + b).reshape(c * k * k, oh * ow).astype(np.int32)
    index.setflags(write=False)  # shared by every caller (cached)
    return index


def _conv(x, kernel, stride: int):
    """Valid cross-correlation of images x (N, C, H, W) with kernel (O, C, k, k) at ``stride``.

    Few rows (a per-image update, a small batch: patch matrices of up to :data:`GATHER_MAX`
    entries) take the gathered patches times the kernel (one gather and one matrix product, whose
    transposes are a scatter-add and matrix products): XLA:CPU runs a single image's convolution,
    and most of all its strided transposes, several times slower than that (docs/engine.md). Under
    ``vmap`` the threshold sees one member's rows. Both forms take one dtype for x and kernel."""
    if x.dtype != kernel.dtype:
        raise TypeError(f"a correlation of {x.dtype} images with a {kernel.dtype} kernel: cast one to the other")
    n, c, h, w = x.shape
    o, _, k, _ = kernel.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    # at least one row counted (no unbounded index for an empty batch) and pixel indices in int32
    if max(n, 1) * c * k * k * oh * ow > GATHER_MAX or c * h * w >= 2**31:
        return lax.conv_general_dilated(x, kernel, (stride, stride), "VALID", dimension_numbers=_DIMS,
                                        precision=lax.Precision.HIGHEST)
    patches = x.reshape(n, c * h * w)[:, _patch_index(c, h, w, k, stride)]
    out = jnp.einsum("ok,nkp->nop", kernel.reshape(o, c * k * k), patches, precision=lax.Precision.HIGHEST)
    return out.reshape(n, o, oh, ow)


def _spread(kernel, pool: int):
    """The kernel spread over a pool x pool window, K' = K * box / pool^2, of size k + pool - 1:
    a stride-``pool`` correlation with K' is the correlation with K followed by average pooling."""
    if pool == 1:
        return kernel
    total = 0.0
    for a in range(pool):
        for b in range(pool):
            total = total + jnp.pad(kernel, ((0, 0), (0, 0), (a, pool - 1 - a), (b, pool - 1 - b)))
    return total / (pool * pool)


def _moving_average(x, pool: int):
    """pool x pool moving average (stride 1, valid) over the last two axes of (N, C, H, W)."""
    if pool == 1:
        return x
    summed = lax.reduce_window(x, 0.0, lax.add, (1, 1, pool, pool), (1, 1, 1, 1), "VALID")
    return summed / (pool * pool)


@dataclass(frozen=True)
class Conv2D:
    """A convolution layer piece (see the module docstring); the layer API is :class:`Dense`'s."""

    in_shape: tuple[int, int, int]
    channels: int
    kernel: int = 5
    pool: int = 1
    pooling: str = "avg"

    def __post_init__(self):
        shape = tuple(self.in_shape) if isinstance(self.in_shape, (tuple, list)) else ()
        ints = [*shape, self.channels, self.kernel, self.pool]
        if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ints):
            raise ValueError(f"Conv2D needs in_shape = (channels, height, width) and channels, kernel, pool as "
                             f"positive integers; got in_shape={self.in_shape!r}, channels={self.channels!r}, "
                             f"kernel={self.kernel!r}, pool={self.pool!r}")
        if max(shape[1:]) > MAX_SIDE or max(shape[0], self.channels) > MAX_CHANNELS:
            raise ValueError(f"Conv2D: images up to {MAX_SIDE} pixels a side and {MAX_CHANNELS} channels; "
                             f"got in_shape={shape}, channels={self.channels}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {list(POOLINGS)}")
        if self.kernel > min(shape[1:]):
            raise ValueError(f"a {self.kernel}x{self.kernel} kernel does not fit a {shape[1]}x{shape[2]} image")
        conv = (shape[1] - self.kernel + 1, shape[2] - self.kernel + 1)
        if self.pool > min(conv):
            raise ValueError(f"pooling {self.pool}x{self.pool} does not fit the {conv[0]}x{conv[1]} feature maps")
        object.__setattr__(self, "in_shape", shape)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the (pooled) pre-activation maps."""
        _, h, w = self.in_shape
        k, p = self.kernel, self.pool
        return (self.channels, (h - k + 1) // p, (w - k + 1) // p)

    @property
    def n_in(self) -> int:
        c, h, w = self.in_shape
        return c * h * w

    @property
    def n_out(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    def weight_shape(self, n_in: int, n_out: int, bias: bool) -> tuple[int, int]:
        if n_in != self.n_in or n_out != self.n_out:
            raise ValueError(f"Conv2D{self.in_shape} -> {self.out_shape} maps {self.n_in} inputs to {self.n_out} "
                             f"outputs, but the network gives it {n_in} -> {n_out}")
        return (self.channels, self.in_shape[0] * self.kernel ** 2 + int(bias))

    # -------------------------------------------------------------------------------- moments

    def moments(self, M, V, mean, var, bias: bool, scaled: bool = True):
        """Pre-activation ``(mean, var)`` of shape (..., n_out) for flat inputs (..., n_in);
        ``var`` None: deterministic inputs. ``scaled=False``: without PBP's 1/sqrt(n) (a = K * x + b,
        TAGI's parameterisation)."""
        lead = mean.shape[:-1]
        c, h, w = self.in_shape
        images = lambda a: a.reshape((-1, c, h, w))
        m = images(mean)
        v = None if var is None else images(var)
        o, k, p = self.channels, self.kernel, self.pool
        n = M.shape[-1]
        KM, KV = M[:, : c * k * k].reshape(o, c, k, k), V[:, : c * k * k].reshape(o, c, k, k)
        stride = p if self.pooling == "avg" else 1
        spread_M = _spread(KM, stride)
        out_m = _conv(m, spread_M, stride)
        avg_m = _moving_average(m, stride)
        out_v = _conv(avg_m * avg_m, KV, stride)
        if v is not None:
            # one correlation for both input-variance terms: K'(M)^2 + K'(V) / pool^2
            out_v = out_v + _conv(v, spread_M * spread_M + _spread(KV, stride) / (stride * stride), stride)
        if bias:
            out_m = out_m + M[:, -1][:, None, None]
            out_v = out_v + V[:, -1][:, None, None]
        if scaled:
            out_m, out_v = out_m / jnp.sqrt(n), out_v / n
        if self.pooling == "max" and p > 1:
            out_m, out_v = max_pool_moments(out_m, out_v, p)
        return out_m.reshape(lead + (-1,)), out_v.reshape(lead + (-1,))

    def forward(self, M, V, mean, var, bias: bool, scaled: bool = True):
        return (mean, var), self.moments(M, V, mean, var, bias, scaled)

    def tagi_pullback(self, M, in_mean, d_mean, d_var, below: bool = True):
        """What TAGI's layer-wise conditioning (:func:`probprop.learners.tagi.backward`) needs of
        the layer, in the unscaled parameterisation (a = K * x + b, with a bias): with J_W and J_A
        the Jacobians of the pre-activation means E[a] in the weights (kernel, bias) and in the
        input means, summed over the rows,

            (J_W^T d_mean, (J_W o J_W)^T d_var, J_A^T d_mean, (J_A o J_A)^T d_var)

        (o: entrywise product; the last two None unless ``below``, i.e. unless a layer with
        activations lies below). E[a] is linear in both, so each is the transpose of one
        convolution: average pooling makes E[a] the stride-``pool`` correlation of the moving
        average of the input means with K (J_W's entries are those averages, squared for the
        second term) and of the input means with the spread kernel K' (J_A's entries, K'^2 for
        the fourth). Max pooling's moments (Clark) have no such Jacobian: TAGI's convolutions pool
        by average. ``in_mean`` (B, n_in), ``d_mean``/``d_var`` (B, n_out); returns arrays of the
        shape of ``M`` (channels, C kernel^2 + 1) and of ``in_mean``."""
        if self.pooling != "avg" and self.pool > 1:
            raise ValueError("TAGI's convolutions pool by average (max pooling's moments have no linear Jacobian)")
        c, h, w = self.in_shape
        o, k, p = self.channels, self.kernel, self.pool
        m = in_mean.reshape((-1, c, h, w))
        g_mean, g_var = (d.reshape((-1, *self.out_shape)).astype(M.dtype) for d in (d_mean, d_var))
        K = M[:, : c * k * k].reshape(o, c, k, k)
        avg = _moving_average(m, p)

        def weights(x, g):
            kernel = jax.linear_transpose(lambda K: _conv(x, K, p), K)(g)[0]
            return jnp.concatenate([kernel.reshape(o, -1), jnp.sum(g, axis=(0, 2, 3))[:, None]], axis=1)

        dM, dV = weights(avg, g_mean), weights(avg * avg, g_var)
        if not below:
            return dM, dV, None, None
        spread = _spread(K, p)

        def inputs(kernel, g):
            return jax.linear_transpose(lambda x: _conv(x, kernel, p), m)(g)[0].reshape(in_mean.shape)

        return dM, dV, inputs(spread, g_mean), inputs(spread * spread, g_var)

    # ------------------------------------------------------------------ point-estimate weights

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """(channels, C, kernel, kernel): a point-estimate kernel (:meth:`point`)."""
        return (self.channels, self.in_shape[0], self.kernel, self.kernel)

    def point(self, kernel, bias, x):
        """The (pooled) pre-activations of point-estimate weights in the usual parameterisation
        (a = K * x + b, no 1/sqrt(n) scaling: what a network trained by gradients uses): ``kernel``
        of :attr:`kernel_shape`, ``bias`` of shape (channels,), flat inputs (..., n_in) to
        (..., n_out). Average pooling is the strided correlation with the spread kernel, as in
        :meth:`moments`; max pooling takes each window's largest pre-activation."""
        lead = x.shape[:-1]
        images = x.reshape((-1, *self.in_shape))
        p = self.pool
        if self.pooling == "avg" or p == 1:
            out = _conv(images, _spread(kernel, p), p)
        else:
            out = lax.reduce_window(_conv(images, kernel, 1), -jnp.inf, lax.max, (1, 1, p, p), (1, 1, p, p), "VALID")
        return (out + bias[:, None, None]).reshape(lead + (-1,))

    def pullback(self, M, V, inputs, g_mean, g_var, bias: bool):
        """``(dM, dV, d_mean, d_var)``: the cotangents of ``g_mean . E[a] + g_var . Var[a]``
        (``d_mean``, ``d_var`` None for deterministic inputs)."""
        in_mean, in_var = inputs
        cotangent = (g_mean.astype(M.dtype), g_var.astype(M.dtype))
        if in_var is None:
            _, vjp = jax.vjp(lambda M, V: self.moments(M, V, in_mean, None, bias), M, V)
            return (*vjp(cotangent), None, None)
        _, vjp = jax.vjp(lambda M, V, m, v: self.moments(M, V, m, v, bias), M, V, in_mean, in_var)
        return vjp(cotangent)


def conv_stack(image_shape, conv, pooling: str = "avg") -> tuple[Conv2D, ...]:
    """Chain convolution pieces: ``conv`` lists ``(channels, kernel, pool)`` per layer (``pool`` 1:
    none), the first taking images of ``image_shape`` = (C, H, W), each next one the maps of the
    one before. Raises a ValueError naming the layer that does not fit."""
    pieces, shape = [], tuple(image_shape)
    for i, (channels, kernel, pool) in enumerate(conv):
        try:
            piece = Conv2D(shape, channels, kernel, pool, pooling)
        except ValueError as err:
            raise ValueError(f"convolution layer {i + 1} ({channels}, {kernel}, {pool}) on {shape} maps: {err}") from None
        pieces.append(piece)
        shape = piece.out_shape
    return tuple(pieces)


def check_conv_stack(conv, n_in: int) -> tuple:
    """``conv`` as a tuple of :class:`probprop.layers.Conv2D` pieces, each taking the maps of the one
    before and the first ``n_in`` inputs; a ValueError naming the first piece that does not."""
    conv = tuple(conv) if isinstance(conv, (tuple, list)) else conv
    if not isinstance(conv, tuple) or not all(isinstance(piece, Conv2D) for piece in conv):
        raise ValueError(f"conv must be a tuple of Conv2D layer pieces, got {conv!r}")
    for i, piece in enumerate(conv):
        expected = n_in if i == 0 else conv[i - 1].out_shape
        given = piece.n_in if i == 0 else piece.in_shape
        if given != expected:
            raise ValueError(f"convolution {i + 1} takes {given} inputs, but it is given {expected}")
    return conv

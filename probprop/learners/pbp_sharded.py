"""Stochastic EP for PBP over K shards of the data (issue 14, part 3: the algorithm).

The posterior is q = (prior sites) x f_1^N_1 x ... x f_K^N_K: shard k holds N_k rows and one tied
site f_k per weight (:class:`probprop.learners.pbp.TiedSites`). An epoch gives every shard a fresh
random order of its rows, cut into rounds (``syncs`` consecutive chunks; in a fit's first epoch
with more than one shard, smaller rounds first: below); round r of the epoch:

1. the driver broadcasts q; shard k starts from it with its own site f_k and makes SEP updates
   (:func:`probprop.learners.pbp.sep_update` with N = N_k: each point removes one copy of f_k,
   moment-matches, and moves f_k a 1/N_k step) over round r's rows, ending at q_k
   (:func:`local_pass`);
2. the driver merges (:func:`combine`): in natural parameters q_new = q + δ sum_k (q_k - q), the
   broadcast plus every shard's change damped by δ. Where the invariant q = prior x prod f^N
   holds, shard k's change is N_k (f_k' - f_k), and the damped sites f_k <- f_k + δ (f_k' - f_k)
   keep the invariant (where a cavity was improper and SEP fell back to ADF for a weight, the
   change is that ADF step). The noise Gamma, updated by ADF inside each pass as in PBP, and the
   rejection counters add every shard's change undamped. A weight whose merged precision is not
   positive keeps q (counted as a rejection);

and after the last round the EP prior step (:func:`probprop.learners.pbp.refine_prior` with SEP's
limit) runs on q, as after a serial epoch (:func:`finish_epoch`).

With K = 1 an epoch is exactly one serial SEP epoch whatever ``syncs`` (the same shuffle, the
same updates in the same order, nothing to merge): the tests check it bit for bit.

How often to synchronise, and how much to damp. The K shards' changes in a round are computed
from the same broadcast, so K changes that correct the same residual add up to K corrections.
Measured while choosing the defaults (``fit(..., syncs=..., damping=1)`` reproduces them): with
one round per epoch and no damping the fit diverges at K = 4 and 8 on the small network of
``probprop bench sharded`` (section 1, which shows the damped single round and the default);
with 16 K undamped rounds per epoch it diverged on naval at K = 8 in the first epoch, and on
protein at K = 8 unless the first rounds are small. The first default, ``16 K`` rounds damped by
δ = 1/sqrt(K), never diverged over all splits of protein, kin8nm and naval but stayed 0.01-0.015
nats below serial SEP on kin8nm and protein at K = 4 and 8 and 0.13-0.35 on naval (the damped
merges move the posterior less per epoch). More rounds allow less damping: on splits 0-5 of
kin8nm and naval and the five of protein (a paired comparison with serial SEP, ad hoc), ``64 K``
rounds damped by δ = K^(-1/4) were closer to serial SEP than the first default at every K on
protein, kin8nm and naval, and ``64 K`` undamped rounds were better on naval but worse on kin8nm.
But a fit's first epoch, which moves the posterior from the prior, needs the stronger damping:
one epoch over Friedman-1 rows (``probprop bench sharded``'s problem, K = 8, in process, ad hoc)
lost 0.012 / 0.014 / 0.010 nats to serial SEP over 4 x 10^5 / 2 x 10^6 / 10^7 rows damped by
K^(-1/4), and gained 0.006 / 0.007 or lost 0.002 damped by 1/sqrt(K). So the default is
``syncs = 64 K`` rounds per epoch (:data:`SYNCS_PER_SHARD`), damping δ = K^(-1/4)
(:data:`DAMPING_EXPONENT`) but δ = 1/sqrt(K) in a fit's first epoch
(:data:`FIRST_EPOCH_DAMPING_EXPONENT`), and in that first epoch rounds that grow from one row,
each at most :data:`WARMUP_GROWTH` of the rows already seen (:func:`round_bounds`; one shard has
nothing to merge and never warms up, :func:`warms_up`). Over all splits of protein, kin8nm and
naval (docs/benchmarks/pbp-sharded) the paired test LL difference from serial SEP for K = 2 / 4 /
8 is protein -0.002 / -0.004 / -0.004, kin8nm +0.008 / +0.004 / +0.023 (SE 0.009-0.010), naval
-0.09 / -0.15 / -0.19 (K^(-1/4) in every epoch: protein -0.004 / +0.001 / -0.001, kin8nm -0.003
/ +0.003 / +0.011, naval -0.09 / -0.13 / -0.18; the first default: protein -0.005 / -0.012 /
-0.010, kin8nm -0.009 / -0.012 / -0.014, naval -0.13 / -0.26 / -0.35); one epoch over 10^7 rows
on Ray (docs/benchmarks/sharded) +0.005 / -0.001 / -0.002. Naval, where single updates are
strong, still converges more slowly per epoch.

In one process the K local passes of a round run as one vmapped program over the shards (padded
to a common length and masked; the masked shuffle reproduces each shard's unpadded order), which
is also what a minibatch (parallel) SEP step is. One Ray actor per shard and the driver run the
same :func:`local_pass` and :func:`combine` (:mod:`probprop.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from probprop.learners import pbp
from probprop.learners._order import shuffled_order
from probprop.learners.base import float64

#: Rounds per epoch per shard by default: ``syncs = SYNCS_PER_SHARD * K`` (module docstring).
SYNCS_PER_SHARD = 64
#: The default damping is δ = K ** -DAMPING_EXPONENT (module docstring) ...
DAMPING_EXPONENT = 0.25
#: ... but δ = K ** -FIRST_EPOCH_DAMPING_EXPONENT in a fit's first epoch (the warm-up's epoch).
FIRST_EPOCH_DAMPING_EXPONENT = 0.5

#: In the first epoch of a fit a round takes at most this share of the rows already seen, until
#: the rounds reach their full size (module docstring).
WARMUP_GROWTH = 1 / 8


@dataclass(frozen=True)
class Shards:
    """Rows split into K shards, each padded to the longest: ``X`` (K, n, d), ``y`` (K, n), ``mask``
    (K, n) marking the real rows."""

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray

    @property
    def n_shards(self) -> int:
        return self.X.shape[0]

    @property
    def sizes(self) -> np.ndarray:
        return self.mask.sum(axis=1)


def split_rows(X, y, n_shards: int, order=None) -> Shards:
    """Rows ``order`` (default: as given) dealt into ``n_shards`` contiguous blocks of sizes that
    differ by at most one, padded with zero rows."""
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    n_shards = int(n_shards)
    if not 1 <= n_shards <= len(y):
        raise ValueError(f"n_shards must lie between 1 and the number of rows ({len(y)}), got {n_shards}")
    order = np.arange(len(y)) if order is None else np.asarray(order)
    blocks = np.array_split(order, n_shards)
    size = max(len(b) for b in blocks)
    Xs = np.zeros((n_shards, size, X.shape[1]))
    ys = np.zeros((n_shards, size))
    mask = np.zeros((n_shards, size), bool)
    for k, rows in enumerate(blocks):
        Xs[k, : len(rows)], ys[k, : len(rows)], mask[k, : len(rows)] = X[rows], y[rows], True
    return Shards(Xs, ys, mask)


@float64
def init_sites(state: pbp.PBPState, n_shards: int) -> pbp.TiedSites:
    """Every shard's tied site at the start: zero (no data yet), stacked along a leading axis."""
    if state.spec.inference != "sep":
        raise ValueError("sharded fitting is stochastic EP: the state needs PBPSpec(inference='sep')")
    zeros = tuple(jnp.zeros((int(n_shards), *M.shape), jnp.float64) for M in state.means)
    return pbp.TiedSites(zeros, zeros)


def schedule(n_shards: int, n_rows: int, syncs=None, damping=None, first: bool = False) -> tuple[int, float]:
    """``(syncs, damping)`` checked, with the defaults of the module docstring filled in
    (``64 K`` rounds, δ = K^(-1/4), in a fit's first epoch (``first``) δ = K^(-1/2); one shard:
    δ = 1). An epoch has ``ceil(n / ceil(n / syncs))``
    rounds of ``ceil(n / syncs)`` rows (at most ``syncs``; n: the rows of the largest shard), plus
    the warm-up's small rounds in a fit's first epoch with more than one shard (:func:`round_bounds`,
    :func:`warms_up`)."""
    n_shards, n_rows = int(n_shards), int(n_rows)
    if syncs is None:
        syncs = 1 if n_shards == 1 else SYNCS_PER_SHARD * n_shards
    elif isinstance(syncs, bool) or not isinstance(syncs, (int, np.integer)) or syncs < 1:
        raise ValueError(f"syncs (rounds per epoch) must be a positive integer, got {syncs!r}")
    if damping is None:
        damping = float(n_shards) ** -(FIRST_EPOCH_DAMPING_EXPONENT if first else DAMPING_EXPONENT)
    damping = float(damping)
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"damping must lie in (0, 1], got {damping!r}")
    if n_shards == 1:
        damping = 1.0  # one shard is serial SEP: nothing to merge, nothing to damp
    return max(1, min(int(syncs), n_rows)), damping


def warms_up(n_shards: int, warmup: bool) -> bool:
    """Whether an epoch starts with the warm-up's small rounds: asked for, and more than one shard.
    One shard has nothing to merge (its numbers are serial SEP's whatever the rounds): its warm-up
    would add some 90 rounds for nothing (when rounds still gathered their rows, each padded to all
    of them: 89 x 65,536 rows gathered for 65,536, 1.6x serial SEP's time)."""
    return bool(warmup) and int(n_shards) > 1


def epoch_keys(state: pbp.PBPState, n_shards: int):
    """``(next_key, shard_keys)``: the state's key for after the epoch and each shard's shuffle key
    (one shard: the key serial SEP's epoch shuffles with)."""
    key, sub = jax.random.split(state.key)
    return key, (sub[None] if n_shards == 1 else jax.random.split(sub, n_shards))


def round_bounds(n_rows: int, syncs: int, warmup: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Where each round of an epoch starts in a shard's shuffled order and how many rows it takes:
    two int arrays ``(starts, lengths)`` over the rounds. Without ``warmup``: ``syncs`` consecutive
    chunks of ``ceil(n_rows / syncs)`` rows (the last may be shorter). With it (the first epoch of a
    fit): the first rounds grow from one row, each at most :data:`WARMUP_GROWTH` times the rows
    already seen, until they reach the chunk; then chunks as before."""
    n_rows, syncs = int(n_rows), int(syncs)
    size = -(-n_rows // syncs)
    sizes, seen = [], 0
    if warmup:
        while seen < n_rows:
            step = min(size, n_rows - seen, max(1, int(seen * WARMUP_GROWTH)))
            if step >= size:
                break
            sizes.append(step)
            seen += step
    while seen < n_rows:
        sizes.append(min(size, n_rows - seen))
        seen += sizes[-1]
    lengths = np.asarray(sizes, np.int64)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64), lengths


def round_rows(n_rows: int, syncs: int, warmup: bool = False) -> np.ndarray:
    """:func:`round_bounds` as positions (a view for reading and testing; the rounds use the bounds): an int array (rounds, ``ceil(n_rows / syncs)``) with -1
    where a round has fewer rows than that."""
    starts, lengths = round_bounds(n_rows, syncs, warmup)
    index = np.full((len(starts), -(-int(n_rows) // int(syncs))), -1, np.int64)
    for r, (start, length) in enumerate(zip(starts, lengths)):
        index[r, :length] = np.arange(start, start + length)
    return index


def round_counts(size, start, length):
    """How many of a shard's ``size`` real rows a round (``start``, ``length``) takes: the real rows
    are the first ``size`` of its shuffled order (:func:`probprop.learners._order.shuffled_order`
    puts the padding last), so a shard shorter than the padded length runs out early. On the host
    (NumPy or Python integers: a Ray actor's round) a NumPy result, else a traced one."""
    host = all(isinstance(a, (int, np.integer, np.ndarray)) for a in (size, start, length))
    xp = np if host else jnp
    return xp.clip(xp.asarray(size) - start, 0, length)


def local_pass(state: pbp.PBPState, site: pbp.TiedSites, X, y, order, start, count, n_points) -> pbp.PBPState:
    """One shard's work in a round: from the broadcast posterior with the shard's own tied site,
    SEP updates, N = ``n_points`` (the shard's number of rows), for its rows
    ``order[start : start + count]`` in that order (``X``, ``y``: all the shard's rows; ``order``:
    the epoch's shuffled order; :func:`round_bounds`, :func:`round_counts`). Each update reads its
    row where it lies: a round gathers nothing, so the warm-up's short rounds cost their own rows
    and no memory. Returns the shard's posterior q_k, its new site in ``tied``."""
    X = jnp.asarray(X)
    y = jnp.asarray(y, jnp.float64)
    dtype = state.means[0].dtype

    def step(i, carry):
        row = order[start + i]
        return pbp.sep_update(carry, X[row].astype(dtype), y[row], n_points)

    return lax.fori_loop(0, count, step, state.replace(tied=site))


def damp_sites(old, new, damping):
    """f <- f + δ (f' - f) for every site array (δ = 1: the new sites as they are)."""
    return jax.tree.map(lambda o, n: o + damping * (n - o), old, new)


def merge(state: pbp.PBPState, passes: pbp.PBPState, damping=1.0) -> pbp.PBPState:
    """The broadcast ``state`` plus every shard's change (``passes``: the K local results stacked
    along a leading axis), in natural parameters (module docstring). The merged ``tied`` is the
    rows-weighted mean of the shards' sites (q = prior sites x that^N for a serial continuation)."""
    if passes.means[0].shape[0] == 1:  # one shard: its result as it is (serial SEP, bit for bit)
        return jax.tree.map(lambda a: a[0], passes)
    f64 = jnp.float64
    means, variances, rejections = [], [], []
    for M, V, Mk, Vk, r, rk in zip(state.means, state.variances, passes.means, passes.variances,
                                   state.rejections, passes.rejections):
        prec0, nat0 = 1.0 / V.astype(f64), M.astype(f64) / V.astype(f64)
        prec_k, nat_k = 1.0 / Vk.astype(f64), Mk.astype(f64) / Vk.astype(f64)
        prec = prec0 + damping * jnp.sum(prec_k - prec0, axis=0)
        nat = nat0 + damping * jnp.sum(nat_k - nat0, axis=0)
        ok = (prec > 0) & jnp.isfinite(prec) & jnp.isfinite(nat)
        means.append(jnp.where(ok, nat / jnp.where(ok, prec, 1.0), M).astype(M.dtype))
        variances.append(jnp.where(ok, 1.0 / jnp.where(ok, prec, 1.0), V).astype(V.dtype))
        rejections.append((rk[0] + jnp.sum(rk[1:] - r, axis=0) + (~ok)).astype(r.dtype))
    noise = jax.tree.map(lambda old, new: new[0] + jnp.sum(new[1:] - old, axis=0), state.noise, passes.noise)
    noise_rejections = passes.noise_rejections[0] + jnp.sum(passes.noise_rejections[1:] - state.noise_rejections)
    # the summed Gamma must stay a distribution: else keep the broadcast's
    leaves = jax.tree.leaves(noise)  # none for a likelihood without parameters (heteroscedastic)
    valid = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a) & (a > 0)) for a in leaves])) if leaves else jnp.asarray(True)
    noise = jax.tree.map(lambda new, old: jnp.where(valid, new, old), noise, state.noise)
    noise_rejections = (noise_rejections + (~valid)).astype(state.noise_rejections.dtype)
    return state.replace(means=tuple(means), variances=tuple(variances), noise=noise, rejections=tuple(rejections),
                         noise_rejections=noise_rejections)


def _weighted_site(sites: pbp.TiedSites, sizes) -> pbp.TiedSites:
    w = jnp.asarray(sizes, jnp.float64)
    w = w / jnp.sum(w)

    def mean(a):
        return jnp.tensordot(w, a, axes=1)

    return pbp.TiedSites(tuple(mean(a) for a in sites.natmean), tuple(mean(a) for a in sites.precision))


def combine(state: pbp.PBPState, sites: pbp.TiedSites, passes: pbp.PBPState, sizes, damping):
    """The driver's step of a round: ``(q_new, sites_new)`` from the broadcast ``state``, the
    shards' sites before the round (stacked), their passes (stacked) and their row counts. The
    merged ``tied`` is the rows-weighted mean of the shards' sites (q = prior sites x that^N for a
    serial continuation)."""
    if passes.means[0].shape[0] == 1:  # one shard: serial SEP as it is
        return jax.tree.map(lambda a: a[0], passes), passes.tied
    new_sites = damp_sites(sites, passes.tied, damping)
    return merge(state, passes, damping).replace(tied=_weighted_site(new_sites, sizes)), new_sites


def finish_epoch(state: pbp.PBPState, key) -> pbp.PBPState:
    """After an epoch's last round: the EP prior step with SEP's limit (where the spec learns the
    prior), then the key for the next epoch. The prior step is serial PBP's program of its own
    (``pbp._refine_prior``, compiled light), so one shard stays serial SEP bit for bit."""
    if state.spec.learn_prior:
        state = pbp._refine_prior(state, pbp.SEP_PRIOR_LIMIT)
    return state.replace(key=key)


@partial(jax.jit, static_argnames=("syncs", "warmup", "sequential"))
def _rounds(state, sites, X, y, mask, damping, syncs=1, warmup=False, sequential=False):
    """An epoch's rounds (module docstring): ``(state, sites, key)``, the posterior before the EP
    prior step, every shard's tied site and the next epoch's key."""
    n_shards = X.shape[0]
    key, keys = epoch_keys(state, n_shards)
    counts = jnp.sum(mask, axis=1)
    sizes = counts.astype(jnp.float64)
    orders = jax.vmap(shuffled_order)(keys, mask)  # (K, n): each shard's order, its padding last
    bounds = tuple(jnp.asarray(a) for a in round_bounds(X.shape[1], syncs, warmup))

    def one_round(carry, bound):
        q, f = carry
        start, length = bound
        take = round_counts(counts, start, length)
        if sequential:  # the shards one after another (what K separate workers compute)
            outs = [local_pass(q, jax.tree.map(lambda a, i=i: a[i], f), X[i], y[i], orders[i], start, take[i], sizes[i])
                    for i in range(n_shards)]
            passes = jax.tree.map(lambda *a: jnp.stack(a), *outs)
        else:
            passes = jax.vmap(local_pass, in_axes=(None, 0, 0, 0, 0, None, 0, 0))(q, f, X, y, orders, start, take, sizes)
        return combine(q, f, passes, sizes, damping), None

    (state, sites), _ = lax.scan(one_round, (state, sites), bounds)
    return state, sites, key


@float64
def epoch(state: pbp.PBPState, sites: pbp.TiedSites, shards: Shards, syncs: int | None = None,
          damping: float | None = None, sequential: bool = False, warmup: bool = False):
    """One epoch over the shards (module docstring) in two compiled programs, the rounds and the
    EP prior step (:func:`finish_epoch`): returns ``(state, sites)``, the posterior after the EP
    prior step and every shard's tied site.
    ``syncs``: rounds per epoch (default ``64 K``; one shard: 1); ``damping``: δ (default K^(-1/4),
    with ``warmup`` 1/sqrt(K): :func:`schedule`); ``warmup``: a fit's first epoch, which starts
    with small rounds (:func:`round_bounds`; one shard never does, :func:`warms_up`) and is damped
    more by default (:func:`fit` says so for its first epoch).
    ``sequential``: run the shards one after another instead of as one vmapped program (the
    same numbers to rounding)."""
    syncs, damping = schedule(shards.n_shards, shards.X.shape[1], syncs, damping, first=warmup)
    state, sites, key = _rounds(state, sites, jnp.asarray(shards.X), jnp.asarray(shards.y), jnp.asarray(shards.mask),
                                jnp.asarray(damping, jnp.float64), syncs=syncs,
                                warmup=warms_up(shards.n_shards, warmup),
                                sequential=bool(sequential))
    return finish_epoch(state, key), sites


@float64
def fit(state: pbp.PBPState, X, y, n_shards: int, epochs: int, syncs: int | None = None,
        damping: float | None = None, sequential: bool = False):
    """``epochs`` epochs of sharded SEP from ``state`` over (X, y) (standardised units) split into
    ``n_shards`` contiguous shards; returns ``(state, sites)``."""
    shards = split_rows(X, y, n_shards)
    return run_epochs(state, init_sites(state, n_shards), shards, epochs, syncs, damping, sequential)


def run_epochs(state: pbp.PBPState, sites: pbp.TiedSites, shards: Shards, epochs: int, syncs: int | None = None,
               damping: float | None = None, sequential: bool = False, callback=None):
    """A fit's ``epochs`` epochs (:func:`epoch`) over split ``shards``, the first with the warm-up
    rounds and (by default) its stronger damping; ``callback(epoch, state)`` after each. Returns
    ``(state, sites)``."""
    for e in range(int(epochs)):
        state, sites = epoch(state, sites, shards, syncs, damping, sequential, warmup=e == 0)
        if callback is not None:
            callback(e, state)
    return state, sites

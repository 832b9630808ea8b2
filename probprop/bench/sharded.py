"""Sharded stochastic EP against serial SEP on a small network (the measurement quoted in
:mod:`probprop.learners.pbp_sharded`): ``python -m probprop.bench.sharded``.

A 4-10-1 PBP network (SEP) on 400 rows of y = sin(x_0) + x_1 / 2 + noise (standardised), test
log-likelihood on 400 fresh rows: serial SEP after 10, 20, 40 and 80 epochs, and K = 2, 4, 8 shards
with damping 1/K, 1/sqrt(K) (the default), 1/2 and 1 after as many rounds. Seconds on one core.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy.stats import norm

from probprop.learners import pbp, pbp_sharded
from probprop.learners.base import float64_process

ROUNDS = (10, 20, 40, 80)


def problem(seed: int = 0, n: int = 400):
    rng = np.random.default_rng(seed)

    def rows(m):
        X = rng.normal(size=(m, 4))
        return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=m)

    X, y = rows(n)
    Xt, yt = rows(n)
    mean, std = y.mean(), y.std()
    return X, (y - mean) / std, Xt, (yt - mean) / std


def run(print_=print) -> dict:
    float64_process()
    X, y, Xt, yt = problem()
    start = pbp.init(jax.random.PRNGKey(0), pbp.PBPSpec(n_in=4, hidden=(10,), inference="sep"))

    def ll(state):
        m, v, noise = pbp.predict_moments(state, Xt)
        return float(np.mean(norm.logpdf(yt, np.asarray(m), np.sqrt(np.asarray(v) + np.asarray(noise)))))

    serial, row = start, []
    for r in range(1, ROUNDS[-1] + 1):
        serial = pbp.update(serial, X, y)
        if r in ROUNDS:
            row.append(ll(serial))
    results = {"serial": row}
    print_("K  damping  " + "  ".join(f"{r:>4} rounds" for r in ROUNDS))
    print_("serial SEP " + "  ".join(f"{v:10.3f}" for v in row) + "   (epochs)")
    for k in (2, 4, 8):
        for damping in sorted({1.0 / k, 1.0 / np.sqrt(k), 0.5, 1.0}):
            shards = pbp_sharded.split_rows(X, y, k)
            sites = pbp_sharded.init_sites(start, k)
            state, row = start, []
            for r in range(1, ROUNDS[-1] + 1):
                state, sites = pbp_sharded.round_update(state, sites, shards, damping=damping)
                if r in ROUNDS:
                    row.append(ll(state))
            results[(k, damping)] = row
            print_(f"{k}  {damping:7.3f}  " + "  ".join(f"{v:10.3f}" for v in row))
    return results


if __name__ == "__main__":
    run()

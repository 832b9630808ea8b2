"""probprop's deeper PBP against the original C code, split by split (issue 18).

``data/pbp-c-reference.csv`` holds the test RMSE and log-likelihood of the original PBP code
(HIPS/Probabilistic-Backpropagation, C version) on the standard splits, for networks of two
and three hidden layers of 50 units on Boston and yacht; its header says how they were made.
The numbers are the original's, not probprop's: the code itself is not part of probprop.

- :func:`load_reference`: those rows;
- :func:`paired_against_reference`: per (method, dataset) of a benchmark run, the paired test-LL
  difference (ours minus the original's, split by split) with its standard error and a verdict
  (within two SEs, better, worse), and the worst split's RMSE ratio;
- :func:`batched_against_single`: for a method fitted several splits at a time (``pbp2``) and the
  same method fitted one split at a time (``pbp2-single``), the largest difference per split.

Both feed sections of the UCI report (:mod:`probprop.bench.report`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probprop.bench.stats import mean_se

__all__ = ["REFERENCE_CSV", "batched_against_single", "load_reference", "paired_against_reference"]

REFERENCE_CSV = Path(__file__).parent / "data" / "pbp-c-reference.csv"

#: Benchmark methods with original-code numbers: the number of hidden layers of each.
DEPTH = {"pbp2": 2, "pbp3": 3, "pbp2-single": 2, "pbp3-single": 3}

#: An RMSE more than this many times the original's on the same split counts as far off.
RMSE_RATIO_LIMIT = 2.0


def load_reference(all_seeds: bool = False):
    """The original code's rows: ``dataset, hidden ("50-50"), split, seed_offset, rmse, test_ll,
    fit_seconds``; the seed was ``split + seed_offset``. By default only the runs with seed =
    split (offset 0, the protocol of the comparison); ``all_seeds=True`` adds the other seeds."""
    import pandas as pd

    frame = pd.read_csv(REFERENCE_CSV, comment="#")
    return frame if all_seeds else frame[frame["seed_offset"] == 0]


def _seed_means(reference, dataset: str, hidden: str) -> np.ndarray:
    """The original's mean test LL over splits, one per seed offset with every split run."""
    rows = reference[(reference["dataset"] == dataset) & (reference["hidden"] == hidden)]
    counts = rows.groupby("seed_offset")["split"].nunique()
    full = counts[counts == counts.max()].index
    return rows[rows["seed_offset"].isin(full)].groupby("seed_offset")["test_ll"].mean().to_numpy()


def paired_against_reference(frame) -> list[dict]:
    """One dict per (method, dataset) of ``frame`` that the reference covers, in frame order:
    ``method, dataset, hidden, n`` (splits in both), ``ll_ours, ll_ref, rmse_ours, rmse_ref``
    (means), ``ll_diff, ll_diff_se`` (mean and SE of the per-split difference, ours minus the
    original's), ``verdict`` ("within" when |diff| <= 2 SE, else "better" / "worse"),
    ``worst_ratio, worst_split`` (the largest per-split RMSE ratio, ours / original's) and
    ``far_off`` (splits whose ratio exceeds :data:`RMSE_RATIO_LIMIT`); ``seed_lls``: the
    original's mean test LL over splits for each seed set it was run with (seed = split + offset),
    which shows how far the mean moves with the seeds alone."""
    if not len(frame) or "method" not in frame:
        return []
    every_seed = load_reference(all_seeds=True)
    reference = every_seed[every_seed["seed_offset"] == 0]
    out = []
    for (method, dataset), ours in frame.groupby(["method", "dataset"], sort=False):
        if method not in DEPTH or "n_hidden" not in ours:
            continue
        widths = ours["n_hidden"].unique()
        if len(widths) != 1:
            continue
        hidden = "-".join([str(int(widths[0]))] * DEPTH[method])
        ref = reference[(reference["dataset"] == dataset) & (reference["hidden"] == hidden)]
        both = ours.merge(ref, on="split", suffixes=("", "_ref"))
        if not len(both):
            continue
        diff = both["log_likelihood"].to_numpy() - both["test_ll"].to_numpy()
        n = len(diff)
        mean, se = mean_se(diff)
        verdict = "within" if not np.isfinite(se) or abs(mean) <= 2 * se else ("better" if mean > 0 else "worse")
        ratio = both["rmse"].to_numpy() / both["rmse_ref"].to_numpy()
        worst = int(np.argmax(ratio))
        out.append({
            "method": method, "dataset": dataset, "hidden": hidden, "n": n,
            "ll_ours": float(both["log_likelihood"].mean()), "ll_ref": float(both["test_ll"].mean()),
            "rmse_ours": float(both["rmse"].mean()), "rmse_ref": float(both["rmse_ref"].mean()),
            "ll_diff": mean, "ll_diff_se": se, "verdict": verdict,
            "worst_ratio": float(ratio[worst]), "worst_split": int(both["split"].iloc[worst]),
            "far_off": int(np.sum(ratio > RMSE_RATIO_LIMIT)),
            "seed_lls": _seed_means(every_seed, dataset, hidden),
        })
    return out


def batched_against_single(frame) -> list[dict]:
    """One dict per (method, dataset) where ``frame`` has the method fitted together with other
    splits (``fitted_together`` > 1) and the same method as ``<method>-single``: ``n`` (splits
    in both), ``max_ll_diff`` (largest |test LL difference|) and ``max_rmse_rel`` (largest
    relative RMSE difference)."""
    if not len(frame) or "method" not in frame:
        return []
    out = []
    methods = list(dict.fromkeys(frame["method"]))
    for method in methods:
        single = f"{method}-single"
        if single not in methods:
            continue
        for dataset in dict.fromkeys(frame.loc[frame["method"] == method, "dataset"]):
            a = frame[(frame["method"] == method) & (frame["dataset"] == dataset)]
            if "fitted_together" in a and not (a["fitted_together"] > 1).any():
                continue
            b = frame[(frame["method"] == single) & (frame["dataset"] == dataset)]
            both = a.merge(b, on="split", suffixes=("", "_single"))
            if not len(both):
                continue
            out.append({
                "method": method, "dataset": dataset, "n": len(both),
                "max_ll_diff": float(np.max(np.abs(both["log_likelihood"] - both["log_likelihood_single"]))),
                "max_rmse_rel": float(np.max(np.abs(both["rmse"] - both["rmse_single"]) / both["rmse_single"])),
            })
    return out

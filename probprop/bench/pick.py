"""Which probprop method to pick for which UCI dataset, read from committed benchmark runs.

``python -m probprop.bench.pick [RUN_DIR ...]`` (default: :data:`DEFAULT_RUNS` under
``docs/benchmarks``) merges the runs' ``results.csv`` (the UCI protocol: same splits, same
seeds; a method in several runs is taken from the first that has it) and prints a markdown
table: per dataset, the probprop method with the highest mean test log-likelihood over splits,
its RMSE, and the best external peer (NGBoost, pytagi, BayesianRidge) beside it, with the
difference in standard errors of the split-by-split difference. The README's "which method" table is this output.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from probprop.bench.report import fmt
from probprop.bench.stats import EXTERNAL_METHODS, in_order, label, mean_se, paired_difference, short_name, verdict

#: The runs read by default (folders of docs/benchmarks), in order of precedence.
DEFAULT_RUNS = ("family", "family-variants", "ensemble-select", "ensemble2-val", "pbp-het", "pbp-het-cut",
                "pbp-het-val", "pbp-het-cut-val", "tagi-het", "pytagi")


def merged(run_dirs) -> pd.DataFrame:
    """The runs' results rows, one run per (method, dataset), with a ``run`` column."""
    frames, seen = [], set()
    for folder in map(Path, run_dirs):
        path = folder / "results.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results.csv (is {folder} a `probprop bench uci` output folder?)")
        frame = pd.read_csv(path)
        keys = set(zip(frame["method"], frame["dataset"]))
        keep = frame[[(m, d) not in seen for m, d in zip(frame["method"], frame["dataset"])]].assign(run=folder.name)
        seen |= keys
        frames.append(keep)
    return pd.concat(frames, ignore_index=True)


def _distance(ours: pd.Series, peer: pd.Series) -> tuple[float, str]:
    """(ours - peer) in SEs: of the split-by-split difference when both ran the same splits
    (the runs share splits and seeds), else of the two means (marked "unpaired")."""
    diff, se, note = paired_difference(ours, peer)
    return (diff / se if se > 0 else math.nan), (f", {note}" if note else "")


def table(frame: pd.DataFrame) -> list[str]:
    """The markdown table (see the module docstring). A method with a non-finite test LL or RMSE
    on any split is not ranked (its mean would leave the diverged split out)."""
    runs = {(d, m): r for d, m, r in zip(frame["dataset"], frame["method"], frame["run"])}
    size = frame.groupby("dataset")[["n_train", "n_test"]].first()
    header = ("| dataset (rows) | pick: best probprop method by test LL | test LL | RMSE | best external peer "
              "| peer test LL | pick − peer (SEs of the paired difference) |")
    lines = [header, "|---|---|---:|---:|---|---:|---:|"]
    groups = {key: rows.set_index("split").sort_index()
              for key, rows in frame.groupby(["dataset", "method"], sort=False)}
    for dataset in in_order(frame["dataset"]):
        scores = {}
        for (d, method), rows in groups.items():
            ll, rmse = (rows[m].astype(float) for m in ("log_likelihood", "rmse"))
            if d == dataset and len(ll) and np.isfinite(ll).all() and np.isfinite(rmse).all():
                scores[method] = (ll, rmse)
        ours = [m for m in scores if m not in EXTERNAL_METHODS]
        peers = [m for m in scores if m in EXTERNAL_METHODS]
        rows = int(size.loc[dataset, "n_train"] + size.loc[dataset, "n_test"])
        if not ours:
            lines.append(f"| {short_name(dataset)} ({rows}) | no probprop method ran it with finite scores | – | – | – | – | – |")
            continue
        method = max(ours, key=lambda m: scores[m][0].mean())
        (mean, se), (r_mean, r_se) = (mean_se(v) for v in scores[method])
        cells = [f"{short_name(dataset)} ({rows})", f"{label(method)} (`{method}`, {runs[(dataset, method)]})",
                 fmt(mean, se), fmt(r_mean, r_se)]
        if peers:
            peer = max(peers, key=lambda m: scores[m][0].mean())
            p_mean, p_se = mean_se(scores[peer][0])
            z, note = _distance(scores[method][0], scores[peer][0])
            sign = "higher" if mean > p_mean else "lower"
            cells += [label(peer), fmt(p_mean, p_se), f"{sign}: {verdict(z)} ({z:+.1f}{note})"]
        else:
            cells += ["–", "–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    dirs = args or [Path("docs/benchmarks") / name for name in DEFAULT_RUNS]
    try:
        lines = table(merged(dirs))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Which probprop method to pick for which UCI dataset, read from committed benchmark runs.

``python -m probprop.bench.pick [RUN_DIR ...]`` (default: :data:`DEFAULT_RUNS` under
``docs/benchmarks``) merges the runs' ``results.csv`` (the UCI protocol: same splits, same
seeds; a method in several runs is taken from the first that has it) and prints a markdown
table: per dataset, the probprop method with the highest mean test log-likelihood over splits,
its RMSE, and the best external peer (NGBoost, pytagi, BayesianRidge) beside it, with the
difference in combined standard errors. The README's "which method" table is this output.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from probprop.bench.stats import EXTERNAL_METHODS, in_order, label, short_name, summarise

#: The runs read by default (folders of docs/benchmarks), in order of precedence.
DEFAULT_RUNS = ("family", "family-variants", "pbp-het", "pbp-het-cut", "pbp-het-val", "pbp-het-cut-val",
                "tagi-het", "pytagi")


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


def _number(x: float) -> str:
    return f"{x:.3f}" if abs(x) >= 0.05 or x == 0 else f"{x:.2g}"


def table(frame: pd.DataFrame) -> list[str]:
    """The markdown table (see the module docstring)."""
    ll, rmse = summarise(frame, "log_likelihood"), summarise(frame, "rmse")
    runs = {(d, m): r for d, m, r in zip(frame["dataset"], frame["method"], frame["run"])}
    size = frame.groupby("dataset")[["n_train", "n_test"]].first()
    header = ("| dataset (rows) | pick: best probprop method by test LL | test LL | RMSE | best external peer "
              "| peer test LL | pick − peer (combined SEs) |")
    lines = [header, "|---|---|---:|---:|---|---:|---:|"]
    for dataset in in_order(d for d, _ in ll):
        ours = [(v, m) for (d, m), v in ll.items() if d == dataset and m not in EXTERNAL_METHODS]
        peers = [(v, m) for (d, m), v in ll.items() if d == dataset and m in EXTERNAL_METHODS]
        if not ours:
            continue
        (mean, se, _), method = max(ours, key=lambda c: c[0][0])
        r_mean, r_se, _ = rmse[(dataset, method)]
        rows = int(size.loc[dataset, "n_train"] + size.loc[dataset, "n_test"])
        cells = [f"{short_name(dataset)} ({rows})", f"{label(method)} (`{method}`, {runs[(dataset, method)]})",
                 f"{_number(mean)} ± {_number(se)}", f"{_number(r_mean)} ± {_number(r_se)}"]
        if peers:
            (p_mean, p_se, _), peer = max(peers, key=lambda c: c[0][0])
            z = (mean - p_mean) / math.hypot(se, p_se)
            verdict = "higher" if mean > p_mean else "lower"
            cells += [label(peer), f"{_number(p_mean)} ± {_number(p_se)}", f"{verdict} ({z:+.1f})"]
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

"""``probprop bench active``: pool-based batch active learning on the UCI sets.

Per dataset and split: the split's training rows are the pool, its test rows the test set. Start
from :data:`START` labelled rows (:data:`START_LARGE` on the sets with more than 5,000 rows), drawn
with the split's seed and the same for every rule; then, for each rule, acquire batches of
``batch`` rows (:mod:`probprop.active`) up to :data:`BUDGET` acquired labels, refitting PBP from
scratch (:data:`HIDDEN` units, :data:`EPOCHS` epochs, the split's seed) after each batch and
scoring it on the test rows. The area under a rule's RMSE curve (trapezoid over the number of
labels) divided by the random rule's on the same split is its relative area (below 1: better
than random); for the log-likelihood, the difference of the mean LL over the curve.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

DATASETS = ("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine", "yacht")
RULES = ("random", "variance", "greedy", "reduction", "lcmd")
#: Peers: bmdal-reg's recommended rule (Holzmüller et al., JMLR 2023: LCMD in TP mode on the
#: network's gradient kernel sketched to 512 random features), run on a PyTorch copy of the PBP
#: network's posterior means; needs ``pip install torch bmdal_reg`` (never a CI dependency).
PEER_RULES = ("bmdal-lcmd",)
BATCHES = (10, 50)
START, START_LARGE, LARGE = 20, 100, 5000
BUDGET = 200
HIDDEN = (50,)
EPOCHS = 40


_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed it


def _scores(model, X, y):
    d = model.predict_dist(X)
    return float(np.sqrt(np.mean((d.mean - y) ** 2))), float(np.mean(d.logpdf(y)))


def job(dataset, split, batch, data_dir=None, core=None, rules=RULES, budget=BUDGET):
    """Every rule's curve on one (dataset, split, batch size): rows of
    (dataset, split, batch, rule, labels, rmse, ll, select_seconds)."""
    if core is not None:
        from probprop.bench.machine import pin

        pin(core)
    from probprop.active import select
    from probprop.data.uci import load_uci
    from probprop.estimators import PBPRegressor
    from probprop.learners.base import float64_process

    float64_process()
    data = load_uci(dataset, data_dir)
    X, y, Xt, yt = data.split(split)
    start = START_LARGE if data.n_samples > LARGE else START
    first = np.random.default_rng(split).choice(len(X), start, replace=False)
    rows = []
    for rule in rules:
        labelled = list(first)
        spent = 0.0
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = PBPRegressor(hidden=HIDDEN, epochs=EPOCHS, random_state=split).fit(X[labelled], y[labelled])
            rmse, ll = _scores(model, Xt, yt)
            rows.append({"dataset": dataset, "split": split, "batch": batch, "rule": rule, "labels": len(labelled),
                         "rmse": rmse, "ll": ll, "select_seconds": spent})
            if len(labelled) - start >= budget:
                break
            t0 = time.perf_counter()
            if rule in PEER_RULES:
                picks = _bmdal_select(model, X, batch, np.asarray(labelled))
            else:
                picks = select(model, X, batch, method=rule, random_state=1000 * split + len(labelled),
                               exclude=np.asarray(labelled))
            spent += time.perf_counter() - t0
            labelled += [int(i) for i in picks]
    return rows


def _torch_copy(model):
    """A PyTorch network computing PBP's mean network (each layer W z / sqrt(fan_in + 1) with the
    bias as the last column of W, ReLU between), for bmdal's gradient kernel."""
    import torch

    layers = []
    for k, M in enumerate(model.state_.means):
        M = np.asarray(M, np.float64)
        n = M.shape[1]
        linear = torch.nn.Linear(n - 1, M.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(M[:, :-1] / np.sqrt(n), dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(M[:, -1] / np.sqrt(n), dtype=torch.float32))
        layers.append(linear)
        if k < len(model.state_.means) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _bmdal_select(model, X, batch, labelled):
    """bmdal-reg's LCMD-TP (grad kernel, 512-feature sketch) on the unlabelled rows of X."""
    import torch
    from bmdal_reg.bmdal.algorithms import select_batch
    from bmdal_reg.bmdal.feature_data import TensorFeatureData

    if not hasattr(np, "Inf"):  # bmdal-reg 3.0.2 still uses np.Inf, which NumPy 2 removed
        np.Inf = np.inf
    pool = np.setdiff1d(np.arange(len(X)), labelled)
    Xs = model._standardise(X)
    to_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)
    data = {"train": TensorFeatureData(to_tensor(Xs[labelled])), "pool": TensorFeatureData(to_tensor(Xs[pool]))}
    torch.manual_seed(0)
    with warnings.catch_warnings():  # bmdal's gradient features fire a PyTorch hook warning per call
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        picked, _ = select_batch(batch_size=batch, models=[_torch_copy(model)], data=data, y_train=None,
                                 base_kernel="grad", kernel_transforms=[("rp", [512])], selection_method="lcmd",
                                 sel_with_train=True)
    return pool[picked.cpu().numpy()]


def areas(frame):
    """Per (dataset, batch, split, rule): the RMSE area relative to random's and the mean-LL
    difference from random's (the module docstring)."""
    import pandas as pd

    out = []
    for (dataset, batch, split), group in frame.groupby(["dataset", "batch", "split"]):
        curves = {r: g.sort_values("labels") for r, g in group.groupby("rule")}
        if "random" not in curves:
            continue
        base = curves["random"]
        base_area = _trapezoid(base["rmse"], base["labels"])
        base_ll = _trapezoid(base["ll"], base["labels"]) / np.ptp(base["labels"])
        for rule, g in curves.items():
            out.append({"dataset": dataset, "batch": batch, "split": split, "rule": rule,
                        "rmse_area": _trapezoid(g["rmse"], g["labels"]) / base_area,
                        "ll_gain": _trapezoid(g["ll"], g["labels"]) / np.ptp(g["labels"]) - base_ll,
                        "select_seconds": g["select_seconds"].max()})
    return pd.DataFrame(out)


def run(out=None, datasets=DATASETS, splits: int = 5, batches=BATCHES, rules=RULES, data_dir=None, workers: int = 2,
        budget: int = BUDGET, command: str | None = None, log=print) -> Path:
    import pandas as pd

    from probprop.bench.machine import pinned_results
    from probprop.data.uci import load_uci

    for rule in rules:
        if rule not in RULES + PEER_RULES:
            raise ValueError(f"unknown rule {rule!r}; choose from {list(RULES + PEER_RULES)}")
    if any(rule in PEER_RULES for rule in rules):
        try:
            import bmdal_reg  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise RuntimeError("the bmdal-reg rules need PyTorch and bmdal-reg: pip install torch bmdal_reg") from None
    if "random" not in rules:
        raise ValueError("the rules must include 'random' (the areas are relative to it)")
    for b in batches:
        if int(b) < 1 or int(b) > budget:
            raise ValueError(f"a batch size must be between 1 and the budget {budget}, got {b}")
    for name in datasets:
        load_uci(name, data_dir)  # a clear error before any work
    out = Path("docs/benchmarks/active" if out is None else out)
    out.mkdir(parents=True, exist_ok=True)
    calls = [(d, s, b, data_dir) for d in datasets for s in range(splits) for b in batches]
    start = time.perf_counter()
    rows = []
    for (d, s, b, _), part in pinned_results(partial(job, rules=tuple(rules), budget=budget), calls, workers):
        rows += part
        final = {r["rule"]: r["rmse"] for r in part if r["labels"] == max(p["labels"] for p in part)}
        log(f"{d} split {s} batch {b}: final RMSE " + ", ".join(f"{k} {v:.3f}" for k, v in final.items()))
    wall = time.perf_counter() - start
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    _figures(frame, out)
    (out / "report.md").write_text(report(frame, command or "probprop bench active", wall, budget, workers))
    return out


def _figures(frame, out: Path) -> None:
    from matplotlib.figure import Figure

    for batch, part in frame.groupby("batch"):
        names = list(dict.fromkeys(part["dataset"]))
        cols = 3
        fig = Figure(figsize=(11, 3.2 * ((len(names) + cols - 1) // cols)))
        for k, name in enumerate(names):
            ax = fig.add_subplot((len(names) + cols - 1) // cols, cols, k + 1)
            for rule, g in part[part["dataset"] == name].groupby("rule", sort=False):
                curve = g.groupby("labels")["rmse"].mean()
                ax.plot(curve.index, curve.to_numpy(), label=rule, lw=1.2)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("labels", fontsize=8)
            ax.set_ylabel("test RMSE", fontsize=8)
            if k == 0:
                ax.legend(fontsize=7)
        fig.suptitle(f"Active learning, batches of {batch}: mean test RMSE over splits")
        fig.tight_layout()
        fig.savefig(out / f"rmse-curves-batch{batch}.png", dpi=110)


def _cell(values, digits=3):
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.{digits}f} ± {se:.{digits}f}"


def report(frame, command: str, wall_seconds: float, budget: int = BUDGET, workers: int = 2) -> str:
    from probprop.bench.machine import cpu_name, jobs_at_a_time

    rel = areas(frame)
    splits = frame["split"].nunique()
    lines = [
        "# Active learning for regression: UCI pools",
        "",
        f"Command: `{command}` ({wall_seconds:.0f} s wall time, {jobs_at_a_time(workers)}, each pinned to one core;",
        f"{cpu_name()}). Regenerate with the same command.",
        "",
        f"Pool: a split's training rows; start: {START} labelled rows ({START_LARGE} on the sets with more than",
        f"{LARGE:,} rows), the same for every rule; then batches up to {budget} acquired labels, PBP",
        f"({HIDDEN[0]} units, {EPOCHS} epochs) refitted from scratch after each batch and scored on the split's test rows.",
        f"{splits} splits per dataset. Rules (`probprop.active.select`): `random`; `variance` (the batch's largest",
        "epistemic variances); `greedy` (largest variance, posterior updated on it with its predictive mean as",
        "label, next); `reduction` (the candidate whose pseudo-labelled update leaves the least summed",
        "variance over a sample of the pool, update, next); `lcmd` (largest cluster, maximum distance, on",
        "PBP's posterior-scaled gradient features, the labelled rows as centers); `bmdal-lcmd` where run:",
        "bmdal-reg's recommended LCMD-TP (gradient kernel of a PyTorch copy of the PBP mean network, sketched",
        "to 512 features).",
        "",
        "RMSE area: the area under the test-RMSE curve over the labels, divided by random's on the same split",
        "(below 1: better than random); mean ± SE over splits. LL gain: the curve's mean test",
        "log-likelihood minus random's (above 0: better).",
        "",
    ]
    rules = [r for r in RULES[1:] + PEER_RULES if r in set(rel["rule"])]  # every rule but random
    for batch, part in rel.groupby("batch"):
        lines += [f"## Batches of {batch}", "",
                  "| dataset | " + " | ".join(f"{r} RMSE area" for r in rules) + " | "
                  + " | ".join(f"{r} LL gain" for r in rules) + " |",
                  "|---|" + "---|" * (2 * len(rules))]
        for dataset, g in part.groupby("dataset", sort=False):
            cells = [_cell(g[g["rule"] == r]["rmse_area"]) for r in rules]
            cells += [_cell(g[g["rule"] == r]["ll_gain"]) for r in rules]
            lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
        lines += ["", f"![curves](rmse-curves-batch{batch}.png)", ""]
    lines += ["## Targets (issue 12)", ""]
    means = rel.groupby(["batch", "rule", "dataset"])["rmse_area"].mean()
    for batch in sorted(rel["batch"].unique()):
        n_sets = rel[rel["batch"] == batch]["dataset"].nunique()
        for rule in RULES[2:]:  # the batch-aware rules (not random, not variance)
            if rule not in rules:
                continue
            wins = sum(means[(batch, rule, d)] < 1.0 for d in rel[rel["batch"] == batch]["dataset"].unique())
            worst = max(means[(batch, rule, d)] / means[(batch, "variance", d)] - 1.0
                        for d in rel[rel["batch"] == batch]["dataset"].unique()) if "variance" in rules else float("nan")
            met = wins >= min(7, n_sets) and worst <= 0.02
            lines.append(f"- batches of {batch}, `{rule}`: better than random on {wins} of {n_sets} datasets; at most "
                         f"{100 * worst:+.1f} % RMSE area against `variance`: {'met' if met else 'MISSED'}.")
    for batch in sorted(rel["batch"].unique()):
        names = rel[rel["batch"] == batch]["dataset"].unique()
        for rule in PEER_RULES:
            if rule in rules:
                wins = sum(means[(batch, rule, d)] < 1.0 for d in names)
                lines.append(f"- batches of {batch}, `{rule}` (a peer, for comparison): better than random on {wins} "
                             f"of {len(names)} datasets.")
    seconds = rel.groupby("rule")["select_seconds"].mean()
    lines += ["", "Selection time per (dataset, split, batch size) curve, mean: "
              + ", ".join(f"{r} {s:.1f} s" for r, s in seconds.items()) + ".", ""]
    return "\n".join(lines) + "\n"

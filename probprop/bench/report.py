"""The UCI benchmark report: per-metric tables (mean ± SE over splits) next to published numbers.

:func:`write_report` turns the per-split rows of ``results.csv`` into ``report.md`` and the
comparison plots:

* one table per metric (RMSE, test LL, CRPS, 90 % coverage, fit time), the run's methods side by
  side, then the published numbers of those methods' counterparts
  (:data:`probprop.bench.published.PUBLISHED_FOR`);
* verdicts of each method against its published counterparts: within two combined SEs, better
  or worse, for like-for-like pairs; the signed distance as context, with a note on what differs,
  for the others (:data:`probprop.bench.published.PROTOCOL`);
* the best probprop configuration per dataset, and on how many datasets it beats the paper's PBP
  test log-likelihood.

Published numbers come from :mod:`probprop.bench.published`; their ``±`` is shown as a standard
error where the source's spread and split count allow it (see
:func:`probprop.bench.published.with_se`).
"""

from __future__ import annotations

import math
import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from probprop.bench.methods import LABELS
from probprop.bench.published import (
    PAPER_RUNTIME_SECONDS,
    PUBLISHED,
    PUBLISHED_FOR,
    pairing,
    spread_note,
    with_se,
)

__all__ = [
    "beats_paper_pbp",
    "best_per_dataset",
    "compare_to_paper",
    "compare_to_published",
    "machine_info",
    "plot_comparison",
    "summarise",
    "write_report",
]

#: (results column, heading, direction: +1 higher is better, -1 lower is better, 0 neither)
METRICS = (
    ("rmse", "Test RMSE (lower is better)", -1),
    ("log_likelihood", "Test log-likelihood per point (higher is better)", +1),
    ("crps", "CRPS (lower is better)", -1),
    ("coverage_90", "Coverage of the central 90 % interval (target 0.90)", 0),
    ("fit_seconds", "Fit time per split, seconds (one pinned core)", 0),
)

#: The comparison plots: metric -> (file name, title, alt text in the report).
PLOTS = {
    "rmse": ("rmse_comparison.png", "Test RMSE (mean ± 1 SE over splits)", "Test RMSE per dataset"),
    "log_likelihood": ("ll_comparison.png", "Test log-likelihood (mean ± 1 SE over splits)",
                       "Test log-likelihood per dataset"),
}

#: Metrics with a target value: the method closest to it is marked best.
TARGETS = {"coverage_90": 0.90}

#: Benchmark methods that run another library rather than a probprop learner: shown in every
#: table, but not ranked as a "probprop configuration".
EXTERNAL_METHODS = frozenset({"bayesridge", "ngboost", "pytagi"})

PLOT_LABELS = {"pbp": "probprop PBP", "bayesridge": "BayesianRidge", "ngboost": "NGBoost (ours)"}

SHORT_NAMES = {
    "bostonHousing": "Boston",
    "concrete": "Concrete",
    "energy": "Energy",
    "kin8nm": "Kin8nm",
    "naval-propulsion-plant": "Naval",
    "power-plant": "Power",
    "protein-tertiary-structure": "Protein",
    "wine-quality-red": "Wine",
    "yacht": "Yacht",
}


def label(method: str) -> str:
    """The method's column label (:data:`probprop.bench.methods.LABELS`, else its name)."""
    return LABELS.get(method, method)


def _methods(frame) -> list[str]:
    return list(dict.fromkeys(frame["method"])) if len(frame) else []


def _in_order(names) -> list[str]:
    """Dataset names in the papers' order (unknown names last, as they come)."""
    present = list(dict.fromkeys(names))
    return [d for d in SHORT_NAMES if d in present] + [d for d in present if d not in SHORT_NAMES]


def _datasets(stats) -> list[str]:
    """The datasets of ``{(dataset, method): ...}`` in the papers' order."""
    return _in_order(k[0] for k in stats)


def _short(dataset: str) -> str:
    return SHORT_NAMES.get(dataset, dataset)


def published_for_run(methods, metric: str | None = None) -> list[str]:
    """Published entries that are counterparts of ``methods`` (and have ``metric``), in run order."""
    keys = []
    for method in methods:
        for source in PUBLISHED_FOR.get(method, ()):
            if source not in keys and (metric is None or PUBLISHED[source].get(metric)):
                keys.append(source)
    return keys


def pairs_for_run(methods) -> list[tuple[str, str]]:
    """(method, published entry) pairs to judge, in run order."""
    return [(m, s) for m in methods for s in PUBLISHED_FOR.get(m, ())]


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------


def summarise(frame, metric: str) -> dict:
    """``{(dataset, method): (mean, se, n)}`` over splits; se is NaN for a single split."""
    out = {}
    if metric not in frame.columns or not len(frame):
        return out
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        values = group[metric].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        n = len(values)
        if n == 0:
            continue
        se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        out[(dataset, method)] = (float(values.mean()), se, n)
    return out


def compare_to_published(mean: float, se: float, metric: str, dataset: str, source: str = "pbp") -> dict | None:
    """Is a mean ± SE over splits within two combined standard errors of a published number, or better?

    Combined SE = sqrt(se_ours² + se_published²); half a unit of the source's last printed decimal
    is added to the tolerance (a printed "0.10 ± 0.00" only says the value lies in [0.095, 0.105)).
    Returns ``None`` where the source has no number (or the metric has no direction), else a dict
    with ``verdict`` (``"better"``, ``"within"`` or ``"worse"``; ``None`` where the source's spread
    is an SD over an unknown number of splits, so no combined SE exists), ``z`` (ours − published
    in combined SEs, + is better), ``gain`` (the same in the metric's units), ``tolerance``,
    ``paper`` (the published value) and ``by_rounding`` (within only thanks to the rounding term).
    """
    direction = {"rmse": -1, "log_likelihood": +1}.get(metric)
    published = with_se(source, metric, dataset) if direction else None
    if published is None:
        return None
    gain = direction * (mean - published["value"])  # > 0: ours is better
    if published["kind"] == "sd":
        return {"verdict": None, "z": math.nan, "gain": gain, "tolerance": math.nan,
                "paper": published["value"], "by_rounding": False}
    se_ours = 0.0 if not np.isfinite(se) else se
    se_paper = published["se"] or 0.0
    combined = math.sqrt(se_ours**2 + se_paper**2)
    tolerance = 2 * combined + published["resolution"]
    if gain > tolerance:
        verdict = "better"
    elif gain >= -tolerance:
        verdict = "within"
    else:
        verdict = "worse"
    z = gain / combined if combined > 0 else math.copysign(math.inf, gain) if gain else 0.0
    by_rounding = verdict == "within" and abs(gain) > 2 * combined
    return {"verdict": verdict, "z": z, "gain": gain, "tolerance": tolerance, "paper": published["value"],
            "by_rounding": by_rounding}


def compare_to_paper(mean: float, se: float, metric: str, dataset: str) -> dict | None:
    """:func:`compare_to_published` against the paper's PBP."""
    return compare_to_published(mean, se, metric, dataset, "pbp")


def best_per_dataset(frame, metric: str, methods=None) -> dict:
    """``{dataset: (method, mean, se, n)}``: the best of ``methods`` (default all) by mean ``metric``."""
    direction = {m: d for m, _, d in METRICS}.get(metric, 0)
    stats = summarise(frame, metric)
    methods = _methods(frame) if methods is None else list(methods)
    out = {}
    for dataset in _datasets(stats):
        candidates = [(stats[(dataset, m)], m) for m in methods if (dataset, m) in stats]
        if not candidates:
            continue
        if metric in TARGETS:
            (mean, se, n), method = min(candidates, key=lambda c: abs(c[0][0] - TARGETS[metric]))
        elif direction > 0:
            (mean, se, n), method = max(candidates, key=lambda c: c[0][0])
        else:
            (mean, se, n), method = min(candidates, key=lambda c: c[0][0])
        out[dataset] = (method, mean, se, n)
    return out


def probprop_methods(frame) -> list[str]:
    """The run's methods that are probprop configurations (not :data:`EXTERNAL_METHODS`)."""
    return [m for m in _methods(frame) if m not in EXTERNAL_METHODS]


def beats_paper_pbp(best: dict) -> dict:
    """Count the datasets on which ``best`` (``{dataset: (method, mean, se, n)}`` by test LL) beats
    the paper's PBP test LL: ``{"n": datasets with a paper number, "higher": higher mean LL,
    "clearly": better by more than two combined SEs (the "better" verdict), "verdicts": per dataset}``."""
    verdicts = {}
    for dataset, (_, mean, se, _) in best.items():
        v = compare_to_paper(mean, se, "log_likelihood", dataset)
        if v is not None:
            verdicts[dataset] = v
    return {
        "n": len(verdicts),
        "higher": sum(v["gain"] > 0 for v in verdicts.values()),
        "clearly": sum(v["verdict"] == "better" for v in verdicts.values()),
        "verdicts": verdicts,
    }


def _decimals(se: float, mean: float) -> int:
    """Enough decimals to show the SE to two significant digits (2..6)."""
    ref = se if np.isfinite(se) and se > 0 else abs(mean) / 100 if mean else 0.01
    return int(min(6, max(2, 1 - math.floor(math.log10(ref)))))


def fmt(mean: float, se: float) -> str:
    d = _decimals(se, mean)
    if not np.isfinite(se):
        return f"{mean:.{d}f}"
    return f"{mean:.{d}f} ± {se:.{d}f}"


def _fmt_published(method: str, metric: str, dataset: str) -> str:
    p = with_se(method, metric, dataset)
    if p is None:
        return "–"
    d = p["decimals"]
    value = f"{p['value']:.{d}f}"
    if p["kind"] == "na":
        return value
    if p["kind"] == "se":
        return f"{value} ± {p['printed']:.{d}f}"
    if p["kind"] == "sd->se":
        return f"{value} ± {p['se']:.{d + 1}f}†"
    return f"{value} ± {p['printed']:.{d}f} SD"


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:olive", "tab:cyan", "tab:gray", "navy", "darkgoldenrod", "teal", "maroon")


def plot_comparison(frame, metric: str, path, title: str | None = None, published=None):
    """Per-dataset panels of horizontal dot plots: each method's mean ± 1 SE over splits (filled
    dots), then the published counterparts of the run's methods (open squares in the colour of
    their method, ± 1 SE where the source allows one). One row per method or source, shared by
    all panels, so that the labels stay readable with many methods; a dotted line marks the
    paper's PBP. ``published`` overrides the published entries shown (default: those of
    :func:`published_for_run`). Returns the figure, or ``None`` if there is nothing to plot.
    """
    from matplotlib.figure import Figure

    stats = summarise(frame, metric)
    datasets = _datasets(stats)
    if not datasets:
        return None
    methods = _methods(frame)
    sources = published_for_run(methods, metric) if published is None else list(published)
    color = {m: _COLORS[i % len(_COLORS)] for i, m in enumerate(methods)}
    for source in sources:
        owner = next((m for m in methods if source in PUBLISHED_FOR.get(m, ())), None)
        color[("published", source)] = color.get(owner, "black")
    rows = [(m, PLOT_LABELS.get(m, label(m))) for m in methods]
    rows += [(("published", s), PUBLISHED[s]["label"]) for s in sources]

    cols = min(3, len(datasets))
    n_rows = math.ceil(len(datasets) / cols)
    height = 0.75 + 0.24 * len(rows)
    fig = Figure(figsize=(2.2 + 3.0 * cols, height * n_rows + 0.5), layout="constrained")
    first = None
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(n_rows, cols, i + 1, sharey=first)
        first = first or ax
        for y, (key, _) in enumerate(rows):
            if isinstance(key, tuple):
                p = with_se(key[1], metric, dataset)
                if p is None:
                    continue
                mean, se, marker, face = p["value"], p["se"] or 0.0, "s", "white"
            else:
                if (dataset, key) not in stats:
                    continue
                mean, se, _ = stats[(dataset, key)]
                se = 0.0 if not np.isfinite(se) else se
                marker, face = "o", color[key]
            ax.errorbar([mean], [y], xerr=[se], fmt=marker, capsize=3, markersize=5, color=color[key],
                        markerfacecolor=face)
        paper = with_se("pbp", metric, dataset)
        if paper is not None and "pbp" in sources:
            ax.axvline(paper["value"], color="black", linestyle=":", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [text for _, text in rows], fontsize="small")
        ax.set_ylim(len(rows) - 0.5, -0.5)
        if i % cols:
            ax.tick_params(axis="y", labelleft=False)
        ax.set_title(_short(dataset), fontsize="medium")
        ax.tick_params(axis="x", labelsize="small")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or f"{metric} by dataset (mean ± 1 SE over splits)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return fig


# --------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {}
    for package in ("probprop", "jax", "numpy", "scikit-learn", "ngboost"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


# --------------------------------------------------------------------------------------
# The markdown report
# --------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def _metric_table(frame, metric: str, direction: int) -> list[str]:
    stats = summarise(frame, metric)
    methods = _methods(frame)
    datasets = _datasets(stats)
    published = published_for_run(methods, metric)
    header = ["dataset", "splits"] + [label(m) for m in methods] + [PUBLISHED[s]["label"] for s in published]
    theano = metric == "fit_seconds" and "pbp" in published_for_run(methods)
    if theano:
        header.append("PBP paper (Theano)")
    best = best_per_dataset(frame, metric) if (direction or metric in TARGETS) and len(methods) > 1 else {}
    rows = []
    for dataset in datasets:
        n = max((stats[(dataset, m)][2] for m in methods if (dataset, m) in stats), default=0)
        cells = [_short(dataset), str(n)]
        for method in methods:
            if (dataset, method) not in stats:
                cells.append("–")
                continue
            text = fmt(*stats[(dataset, method)][:2])
            cells.append(f"**{text}**" if best.get(dataset, (None,))[0] == method else text)
        cells += [_fmt_published(s, metric, dataset) for s in published]
        if theano:
            value = PAPER_RUNTIME_SECONDS["values"].get(dataset)
            cells.append("–" if value is None else f"{value:.0f}")
        rows.append(cells)
    return _table(header, rows)


def _z(z: float) -> str:
    return f"{z:+.1f} SE".replace("-", "−") if np.isfinite(z) else ("+∞ SE" if z > 0 else "−∞ SE")


def _verdict_text(verdict, like_for_like: bool = True) -> str:
    """One verdict cell: like-for-like pairs get within / better / worse, the others the signed
    distance only ("context")."""
    if verdict is None:
        return "–"
    if verdict["verdict"] is None:
        return "no SE (source prints an SD over unknown splits)"
    z = _z(verdict["z"])
    if not like_for_like:
        return f"context: {z}"
    if verdict.get("by_rounding"):
        return f"within the source's print rounding ({z})"
    return {"better": f"better ({z})", "within": f"within 2 SE ({z})", "worse": f"**worse ({z})**"}[verdict["verdict"]]


def _pair_header(method: str, source: str) -> str:
    return f"{label(method)} vs {PUBLISHED[source].get('vs', PUBLISHED[source]['label'])}"


def _pair_verdicts(frame, method: str, source: str, metric: str) -> dict:
    """``{dataset: verdict}`` of ``method`` against ``source`` on ``metric``."""
    out = {}
    for (dataset, m), (mean, se, _) in summarise(frame, metric).items():
        if m == method:
            v = compare_to_published(mean, se, metric, dataset, source)
            if v is not None:
                out[dataset] = v
    return out


def _published_section(frame, epochs_override=None) -> list[str]:
    """Verdicts of the run's methods against their published counterparts, with protocol notes."""
    methods = _methods(frame)
    pairs = pairs_for_run(methods)
    if not pairs:
        return []
    like = {pair: pairing(*pair)["like_for_like"] and not epochs_override for pair in pairs}
    lines = ["## Against published numbers", ""]
    if epochs_override:
        lines += [(f"Epochs were overridden to {epochs_override}, so no pair below is like-for-like in this "
                   "run: every comparison is context only."), ""]
    metric_names = (("rmse", "RMSE"), ("log_likelihood", "test LL"))
    for pair in pairs:
        if not like[pair]:
            continue
        parts = []
        for metric, name in metric_names:
            verdicts = _pair_verdicts(frame, *pair, metric)
            groups = {}
            for dataset in _in_order(verdicts):
                groups.setdefault(verdicts[dataset]["verdict"], []).append(_short(dataset))
            total = len(verdicts) - len(groups.get(None, []))
            if not total:
                continue
            ok = len(groups.get("better", [])) + len(groups.get("within", []))
            text = f"{name} within two combined SEs or better on {ok} of {total} datasets"
            extra = []
            if groups.get("better"):
                extra.append(f"better on {', '.join(groups['better'])}")
            if groups.get("worse"):
                extra.append(f"worse on {', '.join(groups['worse'])}")
            parts.append(text + (f" ({'; '.join(extra)})" if extra else ""))
        if parts:
            lines.append(f"- {_pair_header(*pair)}: " + "; ".join(parts) + ".")
    context = [_pair_header(*pair) for pair in pairs if not like[pair]]
    if context:
        lines.append(f"- Not like-for-like, shown as context only: {', '.join(context)} (see the notes).")
    lines += [
        "",
        ("\"Within\" means |ours − published| ≤ 2·sqrt(SE_ours² + SE_published²) + half a unit of the "
         "source's last printed decimal; \"better\" / \"worse\" mean by more than that. The bracket gives "
         "(ours − published) in combined SEs, signed so that + is better. \"context\" cells give that "
         "distance only: the protocols differ (notes below), so no verdict is stated."),
        "",
    ]
    notes = {pair: i + 1 for i, pair in enumerate(pairs)}
    for metric, heading in (("rmse", "Test RMSE"), ("log_likelihood", "Test log-likelihood")):
        columns = [pair for pair in pairs if PUBLISHED[pair[1]].get(metric)]
        verdicts = {pair: _pair_verdicts(frame, *pair, metric) for pair in columns}
        columns = [pair for pair in columns if verdicts[pair]]
        if not columns:
            continue
        datasets = _in_order(d for pair in columns for d in verdicts[pair])
        header = ["dataset"] + [f"{_pair_header(*pair)} [{notes[pair]}]" for pair in columns]
        rows = [[_short(d)] + [_verdict_text(verdicts[pair].get(d), like[pair]) for pair in columns]
                for d in datasets]
        lines += [f"### {heading}: ours against published", ""] + _table(header, rows) + [""]
    lines += ["Notes on the pairs:", ""]
    for pair, i in notes.items():
        info = pairing(*pair)
        kind = "like-for-like" if like[pair] else (
            "not like-for-like, context only" if not info["like_for_like"] else "context only in this run")
        lines.append(f"{i}. **{label(pair[0])} vs {PUBLISHED[pair[1]]['label']}** ({kind}): {info['note']}.")
    lines.append("")
    return lines


def _gain_text(verdict) -> str:
    if verdict is None:
        return "–"
    gain, z = verdict["gain"], _z(verdict["z"])
    word = "higher" if gain > 0 else "lower" if gain < 0 else "equal"
    size = "within 2 SE" if verdict["verdict"] == "within" else "> 2 SE"
    return f"{word} by {abs(gain):.3f}, {size} ({z})"


def _best_section(frame) -> list[str]:
    """The best probprop configuration per dataset, and how it fares against the paper's PBP LL."""
    own = probprop_methods(frame)
    if not own:
        return []
    best_ll = best_per_dataset(frame, "log_likelihood", own)
    best_rmse = best_per_dataset(frame, "rmse", own)
    external = [m for m in _methods(frame) if m in EXTERNAL_METHODS]
    best_ext = best_per_dataset(frame, "log_likelihood", external) if external else {}
    datasets = _in_order(list(best_ll) + list(best_rmse))
    if not datasets:
        return []
    counts = beats_paper_pbp(best_ll)
    header = ["dataset", "best by test LL", "test LL", "best by RMSE", "RMSE", "PBP (paper) test LL",
              "best LL − paper PBP"]
    if external:
        header.append("best external baseline (test LL)")
    rows = []
    for dataset in datasets:
        cells = [_short(dataset)]
        for best in (best_ll, best_rmse):
            if dataset in best:
                method, mean, se, _ = best[dataset]
                cells += [label(method), fmt(mean, se)]
            else:
                cells += ["–", "–"]
        cells += [_fmt_published("pbp", "log_likelihood", dataset), _gain_text(counts["verdicts"].get(dataset))]
        if external:
            if dataset in best_ext:
                method, mean, se, _ = best_ext[dataset]
                cells.append(f"{label(method)}: {fmt(mean, se)}")
            else:
                cells.append("–")
        rows.append(cells)
    lines = [
        "## Best method per dataset",
        "",
        "Among the probprop configurations of this run (" + ", ".join(label(m) for m in own) + "), by mean "
        "test LL and by mean RMSE over splits (± SE)."
        + (" External baselines (" + ", ".join(label(m) for m in external) + ") are in the metric tables "
           "and in the last column, not ranked." if external else ""),
        "",
    ]
    lines += _table(header, rows) + [""]
    if counts["n"]:
        lines.append(
            f"**Best probprop configuration vs the paper's PBP (test LL):** a higher mean test LL on "
            f"**{counts['higher']} of {counts['n']}** datasets; better by more than two combined SEs on "
            f"{counts['clearly']} of {counts['n']}."
        )
        lines.append("")
        for method in own:
            single = beats_paper_pbp(best_per_dataset(frame, "log_likelihood", [method]))
            if single["n"]:
                lines.append(f"- {label(method)}: higher mean test LL than the paper's PBP on {single['higher']} of "
                             f"{single['n']} datasets ({single['clearly']} by more than two combined SEs).")
        lines += ["", ("\"More than two combined SEs\" includes half a unit of the paper's last printed decimal, "
                       "as for the verdicts above."), ""]
    else:
        lines += ["No dataset of this run has a published PBP test LL.", ""]
    return lines


def write_report(frame, out, meta: dict) -> Path:
    """Write ``report.md`` (and the comparison PNGs) into ``out``; return the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = meta.get("machine") or machine_info()
    methods = _methods(frame)
    lines = ["# probprop UCI regression benchmark", ""]
    lines += [
        f"- Command: `{meta.get('command', '?')}`",
        (f"- Total wall time: **{meta.get('wall_seconds', float('nan')):.1f} s** "
         f"({meta.get('n_fits', meta.get('n_tasks', len(frame)))} fits on {meta.get('workers', '?')} worker "
         "process(es), each pinned to one core, XLA intra-op threading off)"),
        f"- Machine: {machine['cpu']}, {machine['logical_cores']} logical cores "
        f"({machine['usable_cores']} usable by this process); {machine['platform']}; Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items()),
        f"- Started: {meta.get('started', '?')}",
    ]
    cache = meta.get("xla_cache")
    if cache is not None:
        lines.append("- Persistent XLA cache at the start: " + (
            "off (every worker compiles each program it needs)" if not cache.get("dir") else
            "empty (cold: the first fit of each data shape includes its compilation; the other worker "
            "then loads the program from the cache)"
            if not cache.get("entries") else
            f"{cache['entries']} files (warm: programs compiled by earlier runs are loaded, not rebuilt)"))
    batch = meta.get("batch_splits")
    batched = [m for m in methods if "fitted_together" in frame and (frame.loc[frame["method"] == m, "fitted_together"] > 1).any()]
    if batched:
        lines.append(
            f"- Fitted together: {', '.join(f'`{m}`' for m in batched)} fit up to {batch} splits of a dataset as one "
            "batched program (`probprop.fit_together`: jax.vmap of the update; each model's own data, seed and "
            "standardisation; equal to separate fits up to rounding, which the tests bound by 1e-9 relative in the "
            "predictive mean). `fit_seconds` is the "
            "batch's fit time divided by its number of splits. `--batch-splits 1` fits each split on its own.")
    if methods:
        lines.append("- Methods: " + ", ".join(f"{label(m)} (`{m}`)" for m in methods))
    if meta.get("epochs_override"):
        lines.append(f"- **Epochs overridden to {meta['epochs_override']}** (the paper's protocol uses n_epochs.txt)")
    lines += [
        "",
        ("Protocol: the fixed 90/10 splits of the PBP / MC-dropout papers; PBP with one hidden layer of "
         "`n_hidden.txt` ReLU units (50; 100 for protein), `n_epochs.txt` epochs (40; 20 for protein), "
         "learned noise, `random_state` = split index. Each cell is the mean ± standard error (SE = SD / "
         "sqrt(n), n = number of splits run) over splits; bold marks the best probprop-run method. "
         "Fit times include any JIT compilation a worker had to do for that data shape (reduced by the "
         "persistent XLA cache on reruns)."),
        "",
    ]
    if len(frame):
        lines += _published_section(frame, meta.get("epochs_override"))
        lines += _best_section(frame)
    if meta.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {s}" for s in meta["skipped"]] + [""]
    if meta.get("failures"):
        lines += ["## Failed fits", ""]
        for f in meta["failures"]:
            last = str(f["error"]).strip().splitlines()[-1] if str(f["error"]).strip() else "?"
            lines.append(f"- {f['method']} / {f['dataset']} / split {f['split']}: {last}")
        lines.append("")

    if len(frame):
        for metric, heading, direction in METRICS:
            lines += [f"## {heading}", ""] + _metric_table(frame, metric, direction) + [""]
            if metric in PLOTS:
                name, title, alt = PLOTS[metric]
                if plot_comparison(frame, metric, out / name, title) is not None:
                    lines += [f"![{alt}]({name})", ""]
            if metric == "coverage_90":
                lines += ["Bold marks the method closest to 0.90.", ""]
            if metric == "fit_seconds" and "pbp" in published_for_run(methods):
                lines += [(f"PBP paper (Theano) column: {PAPER_RUNTIME_SECONDS['source']}; other machine, "
                           "other implementation."), ""]
    else:
        lines += ["No fit finished; see the failures above.", ""]

    shown = published_for_run(methods)
    lines += ["## Published numbers: SE or SD?", ""]
    if shown:
        lines += [
            ("Published columns print `value ± spread` as in the source. † marks a standard deviation "
             "converted to a standard error with the source's split count (SE = SD / sqrt(n_splits); 20 "
             "splits, protein 5); \"SD\" marks a standard deviation left unconverted because the split count "
             "is not confirmed. Log-likelihoods printed as NLL were sign-flipped. Heteroscedastic methods "
             "(deep ensembles, DVI, NGBoost) are not like-for-like with PBP on LL; hoDVI and TAGI are the "
             "homoscedastic moment-propagation peers. Published columns appear only for methods in this run "
             "(`PUBLISHED_FOR` in `probprop/bench/published.py`)."),
            "",
            spread_note(shown),
            "",
        ]
    else:
        lines += ["No method of this run has a published counterpart.", ""]
    lines += [
        ("Source tags are those of `shared/docs/pbp-reference.md` §0; the numbers are in "
         "`probprop/bench/published.py`. The other columns of results.csv (MAE, coverage at 50/95 %, "
         "interval widths, miscalibration area, RMS calibration error, sharpness, predict time) are per split."),
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path

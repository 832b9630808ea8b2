"""The UCI benchmark report: per-metric tables (mean ± SE over splits) next to published numbers.

:func:`write_report` turns the per-split rows of ``results.csv`` into ``report.md`` and the
comparison plots. Published numbers come from :mod:`probprop.bench.published`; their ``±`` is
shown as a standard error where the source's spread and split count allow it (see
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
from probprop.bench.published import PAPER_RUNTIME_SECONDS, PUBLISHED, spread_note, with_se

__all__ = ["summarise", "compare_to_paper", "write_report", "plot_comparison", "machine_info"]

#: (results column, heading, direction: +1 higher is better, -1 lower is better, 0 neither)
METRICS = (
    ("rmse", "Test RMSE (lower is better)", -1),
    ("log_likelihood", "Test log-likelihood per point (higher is better)", +1),
    ("crps", "CRPS (lower is better)", -1),
    ("coverage_90", "Coverage of the central 90 % interval (target 0.90)", 0),
    ("fit_seconds", "Fit time per split, seconds (one pinned core)", 0),
)

#: Published columns shown next to ours, in this order (the paper's PBP always comes first).
PUBLISHED_COLUMNS = ("pbp", "mc_dropout", "deep_ensembles", "ngboost", "hodvi", "tagi")

PLOT_LABELS = {"pbp": "probprop\nPBP", "bayesridge": "Bayesian\nRidge", "ngboost": "NGBoost\n(ours)"}

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


def compare_to_paper(mean: float, se: float, metric: str, dataset: str) -> dict | None:
    """Is probprop's PBP within two combined standard errors of the paper's PBP, or better?

    Combined SE = sqrt(se_ours² + se_paper²); half a unit of the paper's last printed decimal
    is added to the tolerance (a printed "0.10 ± 0.00" only says the value lies in [0.095, 0.105)).
    Returns ``None`` where the paper has no number, else ``{"verdict", "z", "tolerance"}`` with
    verdict ``"better"``, ``"within"`` or ``"worse"``.
    """
    direction = {"rmse": -1, "log_likelihood": +1}.get(metric)
    published = with_se("pbp", metric, dataset) if direction else None
    if published is None:
        return None
    se_ours = 0.0 if not np.isfinite(se) else se
    se_paper = published["se"] or 0.0
    combined = math.sqrt(se_ours**2 + se_paper**2)
    tolerance = 2 * combined + published["resolution"]
    gain = direction * (mean - published["value"])  # > 0: ours is better
    if gain > tolerance:
        verdict = "better"
    elif gain >= -tolerance:
        verdict = "within"
    else:
        verdict = "worse"
    z = gain / combined if combined > 0 else math.copysign(math.inf, gain) if gain else 0.0
    by_rounding = verdict == "within" and abs(gain) > 2 * combined
    return {"verdict": verdict, "z": z, "tolerance": tolerance, "paper": published["value"],
            "by_rounding": by_rounding}


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


def plot_comparison(frame, metric: str, path, title: str | None = None):
    """Per-dataset panels: each probprop method's mean ± 1 SE next to the paper's PBP ± 1 SE."""
    from matplotlib.figure import Figure

    stats = summarise(frame, metric)
    datasets = [d for d in SHORT_NAMES if any(k[0] == d for k in stats)]
    methods = list(dict.fromkeys(frame["method"])) if len(frame) else []
    if not datasets:
        return None
    cols = min(3, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows), layout="constrained")
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(rows, cols, i + 1)
        labels = []
        for j, method in enumerate(methods):
            if (dataset, method) not in stats:
                continue
            mean, se, _ = stats[(dataset, method)]
            x = len(labels)
            ax.errorbar([x], [mean], yerr=[0 if not np.isfinite(se) else se], fmt="o", capsize=4,
                        color=colors[j % len(colors)])
            labels.append(PLOT_LABELS.get(method, method))
        paper = with_se("pbp", metric, dataset)
        if paper is not None:
            x = len(labels)
            ax.errorbar([x], [paper["value"]], yerr=[paper["se"] or 0.0], fmt="s", capsize=4, color="black")
            labels.append("PBP\n(paper)")
        ax.set_xticks(range(len(labels)), labels, fontsize="small")
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(SHORT_NAMES.get(dataset, dataset), fontsize="medium")
        ax.tick_params(axis="y", labelsize="small")
        ax.grid(axis="y", alpha=0.3)
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


def _metric_table(frame, metric: str, direction: int) -> list[str]:
    stats = summarise(frame, metric)
    methods = list(dict.fromkeys(frame["method"]))
    datasets = [d for d in SHORT_NAMES if any(k[0] == d for k in stats)]
    published = [m for m in PUBLISHED_COLUMNS if PUBLISHED[m].get(metric)]
    header = ["dataset", "splits"] + [LABELS.get(m, m) for m in methods]
    show_verdict = "pbp" in methods and "pbp" in published
    if published:
        header.append(PUBLISHED["pbp"]["label"] if "pbp" in published else "")
        if show_verdict:
            header.append("probprop PBP vs paper")
        header += [PUBLISHED[m]["label"] for m in published if m != "pbp"]
    if metric == "fit_seconds":
        header.append("PBP paper (Theano)")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    best_marks = {}
    if direction and len(methods) > 1:
        for dataset in datasets:
            candidates = [(stats[(dataset, m)][0], m) for m in methods if (dataset, m) in stats]
            if candidates:
                best = max(candidates) if direction > 0 else min(candidates)
                best_marks[dataset] = best[1]
    for dataset in datasets:
        n = max((stats[(dataset, m)][2] for m in methods if (dataset, m) in stats), default=0)
        cells = [SHORT_NAMES.get(dataset, dataset), str(n)]
        for method in methods:
            if (dataset, method) not in stats:
                cells.append("–")
                continue
            mean, se, _ = stats[(dataset, method)]
            text = fmt(mean, se)
            cells.append(f"**{text}**" if best_marks.get(dataset) == method else text)
        if published:
            cells.append(_fmt_published("pbp", metric, dataset) if "pbp" in published else "")
            if show_verdict:
                verdict = None
                if (dataset, "pbp") in stats:
                    mean, se, _ = stats[(dataset, "pbp")]
                    verdict = compare_to_paper(mean, se, metric, dataset)
                cells.append(_verdict_text(verdict))
            cells += [_fmt_published(m, metric, dataset) for m in published if m != "pbp"]
        if metric == "fit_seconds":
            value = PAPER_RUNTIME_SECONDS["values"].get(dataset)
            cells.append("–" if value is None else f"{value:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _verdict_text(verdict) -> str:
    if verdict is None:
        return "–"
    z = verdict["z"]
    if verdict.get("by_rounding"):
        return "yes, within the paper's print rounding"
    zs = "" if not np.isfinite(z) else f" ({z:+.1f} SE)"
    return {"better": "yes, better", "within": "yes, within 2 SE", "worse": "**no, worse**"}[verdict["verdict"]] + zs


def _verdict_summary(frame) -> list[str]:
    if "pbp" not in set(frame["method"]):
        return []
    lines = []
    for metric, name in (("rmse", "RMSE"), ("log_likelihood", "test LL")):
        stats = summarise(frame[frame["method"] == "pbp"], metric)
        verdicts = {}
        for (dataset, _), (mean, se, _) in stats.items():
            v = compare_to_paper(mean, se, metric, dataset)
            if v is not None:
                verdicts.setdefault(v["verdict"], []).append(SHORT_NAMES.get(dataset, dataset))
        total = sum(len(v) for v in verdicts.values())
        if not total:
            continue
        ok = len(verdicts.get("better", [])) + len(verdicts.get("within", []))
        text = f"- {name}: {ok} of {total} datasets within two combined SEs of the paper's PBP or better"
        if verdicts.get("better"):
            text += f" (better on {', '.join(verdicts['better'])})"
        if verdicts.get("worse"):
            text += f"; worse on {', '.join(verdicts['worse'])}"
        lines.append(text + ".")
    return lines


def write_report(frame, out, meta: dict) -> Path:
    """Write ``report.md`` (and the comparison PNGs) into ``out``; return the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = meta.get("machine") or machine_info()
    lines = ["# probprop UCI regression benchmark", ""]
    lines += [
        f"- Command: `{meta.get('command', '?')}`",
        f"- Total wall time: **{meta.get('wall_seconds', float('nan')):.1f} s** "
        f"({meta.get('n_tasks', len(frame))} fits on {meta.get('workers', '?')} worker process(es), "
        "each pinned to one core, XLA intra-op threading off)",
        f"- Machine: {machine['cpu']}, {machine['logical_cores']} logical cores "
        f"({machine['usable_cores']} usable by this process); {machine['platform']}; Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items()),
        f"- Started: {meta.get('started', '?')}",
    ]
    if meta.get("epochs_override"):
        lines.append(f"- **Epochs overridden to {meta['epochs_override']}** (the paper's protocol uses n_epochs.txt)")
    lines += [
        "",
        "Protocol: the fixed 90/10 splits of the PBP / MC-dropout papers; PBP with one hidden layer of "
        "`n_hidden.txt` ReLU units (50; 100 for protein), `n_epochs.txt` epochs (40; 20 for protein), "
        "learned noise, `random_state` = split index. Each cell is the mean ± standard error (SE = SD / "
        "sqrt(n), n = number of splits run) over splits; bold marks the best probprop-run method. "
        "Fit times include any JIT compilation a worker had to do for that data shape (reduced by the "
        "persistent XLA cache on reruns).",
        "",
    ]
    summary = _verdict_summary(frame) if len(frame) else []
    if summary:
        lines += ["## probprop PBP against the paper", ""] + summary + [
            "",
            "\"Within\" means |ours − paper| ≤ 2·sqrt(SE_ours² + SE_paper²) + half a unit of the paper's last "
            "printed decimal; \"better\" means better by more than that. The bracket gives (ours − paper) in "
            "combined SEs, signed so that + is better.",
            "",
        ]
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
            if metric == "log_likelihood":
                if plot_comparison(frame, "log_likelihood", out / "ll_comparison.png",
                                   "Test log-likelihood (mean ± 1 SE over splits)") is not None:
                    lines += ["![Test log-likelihood per dataset](ll_comparison.png)", ""]
            if metric == "rmse":
                if plot_comparison(frame, "rmse", out / "rmse_comparison.png",
                                   "Test RMSE (mean ± 1 SE over splits)") is not None:
                    lines += ["![Test RMSE per dataset](rmse_comparison.png)", ""]
            if metric == "fit_seconds":
                lines += [f"PBP paper (Theano) column: {PAPER_RUNTIME_SECONDS['source']}; other machine, "
                          "other implementation.", ""]
    else:
        lines += ["No fit finished; see the failures above.", ""]

    lines += [
        "## Published numbers: SE or SD?",
        "",
        "Published columns print `value ± spread` as in the source. † marks a standard deviation "
        "converted to a standard error with the source's split count (SE = SD / sqrt(n_splits); 20 "
        "splits, protein 5); \"SD\" marks a standard deviation left unconverted because the split count "
        "is not confirmed. Log-likelihoods printed as NLL were sign-flipped. Heteroscedastic methods "
        "(deep ensembles, NGBoost) are not like-for-like with PBP on LL; hoDVI and TAGI are the "
        "homoscedastic moment-propagation peers.",
        "",
        spread_note(),
        "",
        "Source tags are those of `shared/docs/pbp-reference.md` §0; the numbers are in "
        "`probprop/bench/published.py`. The other columns of results.csv (MAE, coverage at 50/95 %, "
        "interval widths, miscalibration area, RMS calibration error, sharpness, predict time) are per split.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path

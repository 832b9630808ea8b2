"""The UCI benchmark report's figures: per-dataset dot plots of each method against the published numbers.

:func:`plot_comparison` draws one metric (mean ± 1 SE over splits per method, the published
counterparts of the run's methods next to them) and writes it as a PNG; :data:`PLOTS` names the
figures the report embeds. The numbers come from :mod:`probprop.bench.stats`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from probprop.bench.published import PUBLISHED, PUBLISHED_FOR, with_se
from probprop.bench.stats import datasets_of, label, methods_of, published_for_run, short_name, summarise

__all__ = ["PLOTS", "plot_comparison"]

#: The comparison plots: metric -> (file name, title, alt text in the report).
PLOTS = {
    "rmse": ("rmse_comparison.png", "Test RMSE (mean ± 1 SE over splits)", "Test RMSE per dataset"),
    "log_likelihood": ("ll_comparison.png", "Test log-likelihood (mean ± 1 SE over splits)",
                       "Test log-likelihood per dataset"),
}

PLOT_LABELS = {"pbp": "probprop PBP", "bayesridge": "BayesianRidge", "ngboost": "NGBoost (ours)"}

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
    datasets = datasets_of(stats)
    if not datasets:
        return None
    methods = methods_of(frame)
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
        ax.set_title(short_name(dataset), fontsize="medium")
        ax.tick_params(axis="x", labelsize="small")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or f"{metric} by dataset (mean ± 1 SE over splits)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return fig

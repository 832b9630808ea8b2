"""The numbers behind the UCI benchmark report: summaries over splits, verdicts, best methods.

- :func:`summarise`: mean, standard error and count over splits per (dataset, method);
- :func:`compare_to_published` / :func:`compare_to_paper`: a mean ± SE against a published
  number (within two combined SEs, better or worse), and :func:`pair_verdicts` for every dataset
  of a (method, published entry) pair; :func:`pairs_for_run` and :func:`published_for_run` say
  which published entries a run is compared with (:data:`probprop.bench.published.PUBLISHED_FOR`);
- :func:`best_per_dataset`, :func:`probprop_methods` and :func:`beats_paper_pbp`: the best
  configuration per dataset and how it fares against the paper's PBP;
- the metrics (:data:`METRICS`, :data:`TARGETS`), and the names and order that the report, its
  figures and the CLI key these numbers by (:data:`SHORT_NAMES`, :func:`label`, :func:`in_order`).
"""

from __future__ import annotations

import math

import numpy as np

from probprop.bench.methods import LABELS
from probprop.bench.published import PUBLISHED, PUBLISHED_FOR, with_se

__all__ = [
    "EXTERNAL_METHODS",
    "METRICS",
    "SHORT_NAMES",
    "TARGETS",
    "beats_paper_pbp",
    "best_per_dataset",
    "combined_difference",
    "compare_to_paper",
    "compare_to_published",
    "datasets_of",
    "in_order",
    "label",
    "mean_se",
    "methods_of",
    "pair_verdicts",
    "paired_difference",
    "pairs_for_run",
    "probprop_methods",
    "published_for_run",
    "short_name",
    "summarise",
    "verdict",
]

#: (results column, heading, direction: +1 higher is better, -1 lower is better, 0 neither)
METRICS = (
    ("rmse", "Test RMSE (lower is better)", -1),
    ("log_likelihood", "Test log-likelihood per point (higher is better)", +1),
    ("crps", "CRPS (lower is better)", -1),
    ("coverage_90", "Coverage of the central 90 % interval (target 0.90)", 0),
    ("fit_seconds", "Fit time per split, seconds (one pinned core)", 0),
)

#: Metrics with a target value: the method closest to it is marked best.
TARGETS = {"coverage_90": 0.90}

#: Benchmark methods that run another library rather than a probprop learner: shown in every
#: table, but not ranked as a "probprop configuration".
EXTERNAL_METHODS = frozenset({"bayesridge", "ngboost", "pytagi", "pytagi-val"})

#: Short dataset names for tables and plots, in the papers' order (the order of every table).
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


def methods_of(frame) -> list[str]:
    """The methods of a results frame, in the order they first appear."""
    return list(dict.fromkeys(frame["method"])) if len(frame) else []


def in_order(names) -> list[str]:
    """Dataset names in the papers' order (unknown names last, as they come)."""
    present = list(dict.fromkeys(names))
    return [d for d in SHORT_NAMES if d in present] + [d for d in present if d not in SHORT_NAMES]


def datasets_of(stats) -> list[str]:
    """The datasets of ``{(dataset, method): ...}`` in the papers' order."""
    return in_order(k[0] for k in stats)


def short_name(dataset: str) -> str:
    """The dataset's short name in tables and plots (:data:`SHORT_NAMES`, else its name)."""
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


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error (SD with ddof=1 over sqrt(n)) of values over splits; SE is NaN for one.
    A NaN or inf among the values propagates (callers that skip diverged splits filter first)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def paired_difference(a, b) -> tuple[float, float, str]:
    """``(mean, se, note)`` of a - b over splits, for two pandas Series indexed by split: the SE of the
    split-by-split difference when both ran the same splits (runs share splits and seeds), else the
    combined SE of the two means (``note`` = ``"unpaired"``)."""
    if a.index.equals(b.index) and len(a) > 1:
        mean, se = mean_se((a - b).to_numpy(np.float64))
        return mean, se, ""
    return (*combined_difference(a, b), "unpaired")


def combined_difference(a, b) -> tuple[float, float]:
    """``(mean, se)`` of mean(a) - mean(b) with the combined SE sqrt(SE_a² + SE_b²) of the two means
    (the unpaired rule, as against a published table); NaN SE when either has one value."""
    (ma, sa), (mb, sb) = mean_se(np.asarray(a, np.float64)), mean_se(np.asarray(b, np.float64))
    return ma - mb, math.hypot(sa, sb)


def verdict(z: float) -> str:
    """"better" / "worse" beyond two SEs (z = gain in SEs, + is better), "within" between, "n/a" without one."""
    return "n/a" if not np.isfinite(z) else "better" if z > 2 else "worse" if z < -2 else "within"


def summarise(frame, metric: str) -> dict:
    """``{(dataset, method): (mean, se, n)}`` over splits; se is NaN for a single split."""
    out = {}
    if metric not in frame.columns or not len(frame):
        return out
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        values = group[metric].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values):
            out[(dataset, method)] = (*mean_se(values), len(values))
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
    methods = methods_of(frame) if methods is None else list(methods)
    out = {}
    for dataset in datasets_of(stats):
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
    return [m for m in methods_of(frame) if m not in EXTERNAL_METHODS]


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


def pair_verdicts(frame, method: str, source: str, metric: str) -> dict:
    """``{dataset: verdict}`` of ``method`` against ``source`` on ``metric``."""
    out = {}
    for (dataset, m), (mean, se, _) in summarise(frame, metric).items():
        if m == method:
            v = compare_to_published(mean, se, metric, dataset, source)
            if v is not None:
                out[dataset] = v
    return out

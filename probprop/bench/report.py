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

This module holds the markdown (and the formatting of numbers in it); the numbers themselves
come from :mod:`probprop.bench.stats`, the plots from :mod:`probprop.bench.figures` and the
machine line from :mod:`probprop.bench.machine`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from probprop.bench.figures import PLOTS, plot_comparison
from probprop.bench.machine import machine_info
from probprop.bench.methods import EPOCHS_ON_VALIDATION
from probprop.bench.published import PAPER_RUNTIME_SECONDS, PUBLISHED, pairing, spread_note, with_se
from probprop.bench.reference import RMSE_RATIO_LIMIT, batched_against_single, paired_against_reference
from probprop.bench.stats import (
    EXTERNAL_METHODS,
    METRICS,
    TARGETS,
    beats_paper_pbp,
    best_per_dataset,
    combined_difference,
    datasets_of,
    in_order,
    label,
    methods_of,
    pair_verdicts,
    paired_difference,
    pairs_for_run,
    probprop_methods,
    published_for_run,
    short_name,
    summarise,
)
from probprop.bench.stats import verdict as stats_verdict

__all__ = ["fmt", "write_report"]


# --------------------------------------------------------------------------------------
# Numbers as text
# --------------------------------------------------------------------------------------


def _decimals(se: float, mean: float) -> int:
    """Enough decimals to show the SE to two significant digits (2..6)."""
    ref = se if np.isfinite(se) and se > 0 else abs(mean) / 100 if mean else 0.01
    return int(min(6, max(2, 1 - math.floor(math.log10(ref)))))


def fmt(mean: float, se: float) -> str:
    """``mean ± se`` with the SE to two significant digits; in scientific notation when the mean or
    the SE reaches a million (a diverged split's CRPS or width would otherwise print 70 digits)."""
    if max(abs(mean), abs(se) if np.isfinite(se) else 0.0) >= 1e6 and np.isfinite(mean):
        return f"{mean:.2e}" if not np.isfinite(se) else f"{mean:.2e} ± {se:.2e}"
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
# The markdown report
# --------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def _metric_table(frame, metric: str, direction: int) -> list[str]:
    stats = summarise(frame, metric)
    methods = methods_of(frame)
    datasets = datasets_of(stats)
    published = published_for_run(methods, metric)
    header = ["dataset", "splits"] + [label(m) for m in methods] + [PUBLISHED[s]["label"] for s in published]
    theano = metric == "fit_seconds" and "pbp" in published_for_run(methods)
    if theano:
        header.append("PBP paper (Theano)")
    best = best_per_dataset(frame, metric) if (direction or metric in TARGETS) and len(methods) > 1 else {}
    rows = []
    for dataset in datasets:
        n = max((stats[(dataset, m)][2] for m in methods if (dataset, m) in stats), default=0)
        cells = [short_name(dataset), str(n)]
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


def _z_cell(z: float) -> str:
    """A table cell for a difference in SEs: rounded before its sign ("+0.0 SE", never "−0.0 SE");
    "n/a" where the SEs are zero (z not a number)."""
    return _z(round(z, 1) + 0.0) if np.isfinite(z) else "n/a"


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


def _published_section(frame, epochs_override=None) -> list[str]:
    """Verdicts of the run's methods against their published counterparts, with protocol notes."""
    methods = methods_of(frame)
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
            verdicts = pair_verdicts(frame, *pair, metric)
            groups = {}
            for dataset in in_order(verdicts):
                groups.setdefault(verdicts[dataset]["verdict"], []).append(short_name(dataset))
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
        verdicts = {pair: pair_verdicts(frame, *pair, metric) for pair in columns}
        columns = [pair for pair in columns if verdicts[pair]]
        if not columns:
            continue
        datasets = in_order(d for pair in columns for d in verdicts[pair])
        header = ["dataset"] + [f"{_pair_header(*pair)} [{notes[pair]}]" for pair in columns]
        rows = [[short_name(d)] + [_verdict_text(verdicts[pair].get(d), like[pair]) for pair in columns]
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
    external = [m for m in methods_of(frame) if m in EXTERNAL_METHODS]
    best_ext = best_per_dataset(frame, "log_likelihood", external) if external else {}
    datasets = in_order(list(best_ll) + list(best_rmse))
    if not datasets:
        return []
    counts = beats_paper_pbp(best_ll)
    header = ["dataset", "best by test LL", "test LL", "best by RMSE", "RMSE", "PBP (paper) test LL",
              "best LL − paper PBP"]
    if external:
        header.append("best external baseline (test LL)")
    rows = []
    for dataset in datasets:
        cells = [short_name(dataset)]
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


def _seed_range(values) -> str:
    values = np.asarray(values, float)
    if values.size < 2:
        return "–"
    return f"{values.min():.3f} to {values.max():.3f} ({values.size} seed sets)"


def _reference_section(frame) -> list[str]:
    """Deeper PBP against the original C code split by split, and batched against single fits."""
    paired, batched = paired_against_reference(frame), batched_against_single(frame)
    lines = []
    if paired:
        lines += [
            "## Against the original C code, split by split",
            "",
            ("The original PBP code (HIPS/Probabilistic-Backpropagation, C version) on the same splits with the "
             "same network, 40 epochs, its own seed per split (`np.random.seed(split)`): its numbers are in "
             "`probprop/bench/data/pbp-c-reference.csv`, whose header says how they were made. Paired test LL: "
             "the mean over splits of (ours − original) ± its SE; \"within\" means within two SEs. RMSE ratio: "
             f"ours / original's on the same split; \"far off\" counts splits above {RMSE_RATIO_LIMIT:g}x."),
            "",
        ]
        rows = [[label(r["method"]), short_name(r["dataset"]), r["hidden"], str(r["n"]),
                 f"{r['rmse_ours']:.3f} / {r['rmse_ref']:.3f}", f"{r['ll_ours']:.3f} / {r['ll_ref']:.3f}",
                 f"{r['ll_diff']:+.3f} ± {r['ll_diff_se']:.3f} ({r['verdict']})",
                 f"{r['worst_ratio']:.2f} (split {r['worst_split']})", str(r["far_off"]),
                 _seed_range(r["seed_lls"])] for r in paired]
        lines += _table(["method", "dataset", "hidden", "splits", "RMSE ours / original", "test LL ours / original",
                         "paired test LL difference", "largest RMSE ratio", "far off",
                         "original's test LL, other seeds"], rows) + [""]
        lines += [("Last column: the original code's mean test LL over the splits with each seed set it was run "
                   "with (seed = split + offset; `seed_offset` in the CSV), lowest to highest: how far the mean "
                   "moves with the random start and order alone."), ""]
    if batched:
        lines += [
            "## Fitted together against one split at a time",
            "",
            ("The same method fitted several splits as one batched program (`probprop.fit_together`) and one "
             "split per fit (`-single`): the largest difference over splits."),
            "",
        ]
        rows = [[label(r["method"]), short_name(r["dataset"]), str(r["n"]), f"{r['max_ll_diff']:.2e}",
                 f"{r['max_rmse_rel']:.2e}"] for r in batched]
        lines += _table(["method", "dataset", "splits", "largest absolute test LL difference",
                         "largest relative RMSE difference"], rows) + [""]
    return lines


#: The largest paired test LL gap to serial SEP that issue 14 accepts for sharded SEP (nats).
SHARDED_TOLERANCE = 0.01


def _sharded_section(frame) -> list[str]:
    """Sharded SEP (``pbp-sep-kK``) against serial SEP (``pbp-sep``), split by split."""
    sharded = sorted(m for m in frame["method"].unique() if str(m).startswith("pbp-sep-k"))
    if not sharded or "pbp-sep" not in set(frame["method"]):
        return []
    serial = frame[frame["method"] == "pbp-sep"].set_index(["dataset", "split"])
    rows = []
    for dataset in frame["dataset"].unique():
        for method in sharded:
            part = frame[(frame["method"] == method) & (frame["dataset"] == dataset)].set_index(["dataset", "split"])
            common = part.index.intersection(serial.index)
            if not len(common):
                continue
            diff = part.loc[common, "log_likelihood"] - serial.loc[common, "log_likelihood"]
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            ratio = part.loc[common, "rmse"] / serial.loc[common, "rmse"]
            verdict = "within" if abs(diff.mean()) <= SHARDED_TOLERANCE else ("better" if diff.mean() > 0 else "worse")
            rows.append([short_name(dataset), method.removeprefix("pbp-sep-k"), str(len(diff)),
                         f"{diff.mean():+.4f} ± {se:.4f}", verdict, f"{ratio.mean():.3f}",
                         f"{part.loc[common, 'fit_seconds'].median() / serial.loc[common, 'fit_seconds'].median():.2f}"])
    if not rows:
        return []
    return ["## Sharded SEP against serial SEP, split by split", "",
            ("K shards fitted in the worker's process (`PBPRegressor(inference='sep', shards=K)`: one vmapped "
             "program; one Ray actor per shard gives the same numbers to rounding) against serial SEP with the "
             "same seed: the mean over splits of (sharded − serial) test LL ± its SE, \"within\" meaning within "
             f"{SHARDED_TOLERANCE} nats (issue 14's target); the mean RMSE ratio; the median fit time ratio (one "
             "core for both: sharding in one process buys no speed)."), ""] + _table(
        ["dataset", "K", "splits", "paired test LL difference", f"within {SHARDED_TOLERANCE}", "RMSE ratio",
         "fit time ratio"], rows) + [""]


#: Heteroscedastic PBP methods and the homoscedastic PBP each is compared with (issue 15: the
#: homoscedastic one is PBP as published, ``pbp``).
HETEROSCEDASTIC_PAIRS = (("pbp-het", "pbp"), ("pbp-sep-het", "pbp"), ("pbp-sep-het", "pbp-sep"), ("pbp-sep-het-cut", "pbp"),
                         ("pbp-sep-het-cut", "pbp-sep"))
#: The 90 % interval coverage a calibrated method should land in (issue 15's band).
COVERAGE_BAND = (0.85, 0.95)


def _chosen_epochs_section(frame) -> list[str]:
    """How often each number of epochs was chosen, per dataset, for the methods of
    :data:`~probprop.bench.methods.EPOCHS_ON_VALIDATION` present."""
    present = [m for m in EPOCHS_ON_VALIDATION if m in set(frame["method"])]
    if not present or "epochs" not in frame:
        return []
    lines = ["## Epochs chosen on validation rows", "",
             "Per dataset, how many splits chose each number of epochs (`count x epochs`).", ""]
    for method in present:
        part = frame[frame["method"] == method]
        for dataset in part["dataset"].unique():
            counts = part[part["dataset"] == dataset]["epochs"].value_counts().sort_index()
            lines.append(f"- {label(method)} (`{method}`), {dataset}: "
                         + ", ".join(f"{n} x {int(e)}" for e, n in counts.items()))
    return lines + [""]


def _heteroscedastic_section(frame) -> list[str]:
    """Heteroscedastic PBP against homoscedastic PBP: the difference of mean test LL in combined SEs
    (unpaired, as the published comparisons), and the 90 % coverage against :data:`COVERAGE_BAND`."""
    present = set(frame["method"])
    pairs = [(h, b) for h, b in HETEROSCEDASTIC_PAIRS if h in present and b in present]
    if not pairs:
        return []
    lo, hi = COVERAGE_BAND
    lines = ["## Heteroscedastic PBP against homoscedastic PBP", "",
             ("Mean test LL difference (heteroscedastic − homoscedastic) over the splits, in combined SEs "
              "sqrt(SE_a² + SE_b²); \"better\" means by more than two. Coverage: the heteroscedastic model's mean "
              f"90 % interval coverage, \"in band\" when within [{lo}, {hi}]."), ""]
    for het, base in pairs:
        rows, better, in_band, n = [], 0, 0, 0
        for dataset in frame["dataset"].unique():
            a = frame[(frame["method"] == het) & (frame["dataset"] == dataset)]
            b = frame[(frame["method"] == base) & (frame["dataset"] == dataset)]
            if not len(a) or not len(b):
                continue
            n += 1
            diff, se = combined_difference(a["log_likelihood"].dropna(), b["log_likelihood"].dropna())
            z = diff / se if se > 0 else math.nan
            coverage = a["coverage_90"].mean()
            better += stats_verdict(z) == "better"
            in_band += bool(lo <= coverage <= hi)
            rows.append([short_name(dataset), f"{diff:+.3f}", _z_cell(z), stats_verdict(z), f"{coverage:.3f}",
                         "yes" if lo <= coverage <= hi else "**no**"])
        lines += [f"### {label(het)} against {label(base)}", "",
                  (f"Better by more than two combined SEs on {better} of {n} datasets; 90 % coverage in band on "
                   f"{in_band} of {n}."), ""]
        lines += _table(["dataset", "test LL difference", "combined SEs", "verdict", "90 % coverage", "in band"],
                        rows) + [""]
    return lines


#: Heteroscedastic PBP with the noise output's feedback cut, against the same model with it.
CUT_PAIRS = (("pbp-sep-het-cut", "pbp-sep-het"), ("pbp2-sep-het-cut-val", "pbp2-sep-het-val"))


def _cut_section(frame) -> list[str]:
    """Each pair of :data:`CUT_PAIRS` present, split by split (same split, same seed): the paired
    difference (cut - feedback) of test LL and RMSE, mean +- SE over splits, per dataset."""
    present = set(frame["method"])
    pairs = [(c, f) for c, f in CUT_PAIRS if c in present and f in present]
    if not pairs:
        return []
    return ["## Heteroscedastic PBP: the noise output's feedback cut, against kept", "",
            ("Paired by split (same split, same seed): the difference cut − feedback, mean ± SE over "
             "splits; \"better\" means by more than two SEs of the paired difference (\"paired\") or by more "
             "than two combined SEs sqrt(SE_a² + SE_b²) of the two means (\"combined\", the unpaired rule; the "
             "\"combined SEs\" columns give the difference in those SEs, signed so that + is better); for the "
             "RMSE, better is lower."), ""] + _paired_tables(frame, pairs)


def _peer_section(frame) -> list[str]:
    """Every probprop method of the run against every external peer of the run
    (:data:`~probprop.bench.stats.EXTERNAL_METHODS`), split by split, as :func:`_cut_section`."""
    methods = methods_of(frame)
    peers = [m for m in methods if m in EXTERNAL_METHODS]
    pairs = [(ours, peer) for peer in peers for ours in methods if ours not in EXTERNAL_METHODS]
    if not pairs:
        return []
    return ["## probprop against the external peers, split by split", "",
            ("Paired by split (same split, same seed): the difference probprop − peer, mean ± SE over "
             "splits (the SE of the split-by-split difference); \"better\" means by more than two SEs of it "
             "(\"paired\"), for the RMSE a lower one, or by more than two combined SEs sqrt(SE_a² + SE_b²) of the "
             "two means (\"combined\", the unpaired rule; the \"combined SEs\" columns give the difference in "
             "those SEs, signed so that + is better)."), ""] + _paired_tables(frame, pairs)


def _paired_tables(frame, pairs) -> list[str]:
    """For each ``(a, b)`` of ``pairs``: per dataset, the paired difference a − b of test LL and
    RMSE (mean ± SE over the splits both ran) with its verdict, and the same difference in combined
    SEs of the two means (:func:`~probprop.bench.stats.combined_difference`, the unpaired rule) with
    its verdict, under lines that count them."""
    lines = []
    for first, second in pairs:
        rows, n = [], 0
        counts = {(metric, rule): dict.fromkeys(("ahead", "better", "within", "worse"), 0)
                  for metric in ("log_likelihood", "rmse") for rule in ("paired", "combined")}
        for dataset in in_order(frame["dataset"]):
            a = frame[(frame["method"] == first) & (frame["dataset"] == dataset)].set_index("split")
            b = frame[(frame["method"] == second) & (frame["dataset"] == dataset)].set_index("split")
            splits = a.index.intersection(b.index).sort_values()
            if not len(splits):
                continue
            n += 1
            cells = [short_name(dataset), str(len(splits))]
            for metric, sign in (("log_likelihood", 1.0), ("rmse", -1.0)):
                mean, se, _ = paired_difference(a.loc[splits, metric], b.loc[splits, metric])
                _, combined_se = combined_difference(a.loc[splits, metric], b.loc[splits, metric])
                z_paired = sign * mean / se if se > 0 else math.nan
                z_combined = sign * mean / combined_se if combined_se > 0 else math.nan
                verdicts = {"paired": stats_verdict(z_paired), "combined": stats_verdict(z_combined)}
                cells += [("+" if mean >= 0 else "") + fmt(mean, se), verdicts["paired"],
                          _z_cell(z_combined), verdicts["combined"]]
                for rule, rule_verdict in verdicts.items():
                    tally = counts[(metric, rule)]
                    tally["ahead"] += sign * mean > 0  # a higher LL, a lower RMSE (the same under both rules)
                    if rule_verdict in tally:
                        tally[rule_verdict] += 1
            rows.append(cells)
        lines += [f"### {label(first)} against {label(second)}", ""]
        for rule, words in (("paired", "SEs of the paired difference"), ("combined", "combined SEs")):
            ll, rmse = counts[("log_likelihood", rule)], counts[("rmse", rule)]
            lines.append(f"- By {words}: higher mean test LL on {ll['ahead']} of {n} datasets, by more than two on "
                         f"{ll['better']}, lower by more than two on {ll['worse']}; RMSE lower on {rmse['ahead']} of "
                         f"{n}, by more than two on {rmse['better']}, higher by more than two on {rmse['worse']}.")
        lines += [""] + _table(["dataset", "splits", "test LL difference", "paired", "combined SEs", "combined",
                                "RMSE difference", "paired", "combined SEs", "combined"], rows) + [""]
    return lines


def write_report(frame, out, meta: dict) -> Path:
    """Write ``report.md`` (and the comparison PNGs) into ``out``; return the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = meta.get("machine") or machine_info()
    methods = methods_of(frame)
    lines = ["# probprop UCI regression benchmark", ""]
    lines += [
        f"- Command: `{meta.get('command', '?')}`",
        (f"- Total wall time: **{meta.get('wall_seconds', float('nan')):.1f} s** "
         f"({meta.get('n_fits', meta.get('n_tasks', len(frame)))} fits on "
         + (f"{meta.get('workers', '?')} worker process(es), each pinned to one core, XLA intra-op threading off)"
            if meta.get("backend", "local") == "local" else
            f"Ray tasks ({meta.get('address') or str(meta.get('workers', '?')) + ' CPU(s) of a local cluster'}), "
            "XLA intra-op threading off)")),
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
    batched = [m for m in methods
               if "fitted_together" in frame and (frame.loc[frame["method"] == m, "fitted_together"] > 1).any()]
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
         "`n_hidden.txt` ReLU units (50; 100 for protein; `pbp2` / `pbp3`: two / three such layers), "
         "`n_epochs.txt` epochs (40; 20 for protein), learned noise, `random_state` = split index. Each cell is the mean ± standard error (SE = SD / "
         "sqrt(n), n = number of splits run) over splits; bold marks the best probprop-run method. "
         "Fit times include any JIT compilation a worker had to do for that data shape (reduced by the "
         "persistent XLA cache on reruns)."),
        "",
    ]
    if len(frame):
        lines += _published_section(frame, meta.get("epochs_override"))
        lines += _best_section(frame)
        lines += _reference_section(frame)
        lines += _sharded_section(frame)
        lines += _heteroscedastic_section(frame)
        lines += _cut_section(frame)
        lines += _peer_section(frame)
        lines += _chosen_epochs_section(frame)
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

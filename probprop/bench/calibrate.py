"""The UCI benchmark with post-hoc calibration: ``probprop bench uci --calibrate conformal,quantile``.

Each training split is divided once more (seeded by the split index): :data:`CALIBRATION_FRACTION`
of its rows calibrate, the rest fit the model, and the test split stays untouched, so nothing is
chosen on test data. The model (any benchmark method) predicts the calibration and the test rows;
then, on those same predictions, every calibration method of the run gives one results row:

``none``                 the model as it is (fitted on the reduced training part)
``quantile``             quantile recalibration (:class:`probprop.calibration.QuantileRecalibratedRegressor`)
``conformal-absolute``   split conformal, |y - μ| (:mod:`probprop.calibration.conformal`)
``conformal-normalized`` split conformal, |y - μ| / σ
``conformal-cqr``        conformalized quantiles of the predictive distribution
``mapie-absolute``       MAPIE's ``SplitConformalRegressor`` (absolute score) on the same predictions
``crepes-absolute``, ``crepes-normalized``  crepes' ``ConformalRegressor`` (sigmas = the model's σ)

The peers' rows carry ``max_bound_diff``: the largest difference between their interval bounds
and probprop's for the same construction, over the test points and the three levels.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

__all__ = ["CALIBRATION_FRACTION", "KINDS", "calibration_rows", "parse_calibrate", "split_calibration",
           "write_calibration_report"]

#: The share of each training split held out to calibrate on.
CALIBRATION_FRACTION = 0.2

#: What ``--calibrate`` accepts.
KINDS = ("conformal", "quantile")

#: Interval masses reported (coverage_XX, width_XX).
LEVELS = (0.5, 0.9, 0.95)

#: Quantile levels for the CRPS of non-Gaussian distributions (:func:`probprop.metrics.general.crps_from_quantiles`).
CRPS_LEVELS = 1000

CONFORMAL = ("absolute", "normalized", "cqr")


def parse_calibrate(spec) -> tuple[str, ...]:
    """``"conformal"``, ``"quantile"``, ``"conformal,quantile"`` or ``"all"`` -> the kinds (empty: None)."""
    if spec is None or spec == "" or spec == ():
        return ()
    parts = [p.strip().lower() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if parts == ["all"]:
        return KINDS
    unknown = [p for p in parts if p not in KINDS]
    if unknown:
        raise ValueError(f"unknown --calibrate value(s) {unknown}; choose from {', '.join(KINDS)} (comma list) or 'all'")
    return tuple(k for k in KINDS if k in parts)


def split_calibration(n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, calibration rows) of a training split of ``n_train`` rows."""
    order = np.random.default_rng(seed).permutation(n_train)
    n_cal = math.ceil(CALIBRATION_FRACTION * n_train)
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def _interval_metrics(row: dict, y, lower_upper) -> None:
    from probprop.metrics.general import coverage, mean_width

    for level, (lower, upper) in zip(LEVELS, lower_upper):
        row[f"coverage_{round(level * 100)}"] = coverage(y, lower, upper)
        row[f"width_{round(level * 100)}"] = mean_width(lower, upper)


def _curve_area_of_intervals(y, interval) -> float:
    """Miscalibration area of central intervals given level by level (conformal: the whole line
    where the calibration set is too small for a level)."""
    from probprop.metrics.general import coverage, curve_area

    expected = np.arange(1, 100) / 100
    observed = np.array([coverage(y, *interval(p)) for p in expected])
    return curve_area(expected, observed)


def calibration_rows(kinds, mean_cal, std_cal, y_cal, mean_test, std_test, y_test) -> list[dict]:
    """One dict of metrics per calibration method (module docstring), from the model's Gaussian
    predictions on the calibration and test rows."""
    from probprop.calibration import ConformalCalibration, RecalibratedPrediction, fit_recalibration
    from probprop.distributions import GaussianPrediction
    from probprop.metrics import all_metrics, rmse
    from probprop.metrics.general import crps_from_quantiles, pit_miscalibration_area, quantile_levels

    cal = GaussianPrediction(mean_cal, std_cal**2, 0.0)
    test = GaussianPrediction(mean_test, std_test**2, 0.0)
    rows = []
    row = {"calibration": "none", **all_metrics(y_test, mean_test, std_test)}
    rows.append(row)
    if "quantile" in kinds:
        dist = RecalibratedPrediction(test, fit_recalibration(cal.cdf(y_cal)))
        row = {"calibration": "quantile", "rmse": rmse(y_test, dist.mean),
               "log_likelihood": float(np.mean(dist.logpdf(y_test))),
               "crps": crps_from_quantiles(y_test, dist.ppf(quantile_levels(CRPS_LEVELS))),
               "miscalibration_area": pit_miscalibration_area(dist.cdf(y_test))}
        _interval_metrics(row, y_test, [dist.interval(c) for c in LEVELS])
        rows.append(row)
    if "conformal" in kinds:
        ours = {}
        for method in CONFORMAL:
            calibration = ConformalCalibration(method, cal, y_cal)
            ours[method] = [calibration.interval(test, c) for c in LEVELS]
            row = {"calibration": f"conformal-{method}", "rmse": rmse(y_test, mean_test),
                   "miscalibration_area": _curve_area_of_intervals(
                       y_test, lambda p, calibration=calibration: calibration.interval(test, p, unbounded=True))}
            _interval_metrics(row, y_test, ours[method])
            rows.append(row)
        for name, bounds in _peer_intervals(mean_cal, std_cal, y_cal, mean_test, std_test).items():
            row = {"calibration": name, "rmse": rmse(y_test, mean_test)}
            _interval_metrics(row, y_test, bounds)
            mine = ours[name.split("-", 1)[1]]
            row["max_bound_diff"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                        for theirs, own in zip(bounds, mine) for a, b in zip(theirs, own))
            rows.append(row)
    return rows


class _Lookup:
    """A fitted 'regressor' that returns stored predictions by row index (column 0 of X): how MAPIE
    wraps the very predictions the other methods calibrate, with no second model."""

    def __init__(self, values):
        self.values = np.asarray(values, np.float64)
        self.fitted_ = True

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.values[np.asarray(X)[:, 0].astype(int)]

    def get_params(self, deep=True):
        return {"values": self.values}

    def set_params(self, **params):
        self.values = params.get("values", self.values)
        return self

    def __sklearn_is_fitted__(self):
        return True


def _peer_intervals(mean_cal, std_cal, y_cal, mean_test, std_test) -> dict:
    """MAPIE's and crepes' intervals at :data:`LEVELS` (only the installed peers)."""
    out = {}
    if importlib.util.find_spec("mapie") is not None:
        from mapie.regression import SplitConformalRegressor

        values = np.concatenate([mean_cal, mean_test])
        index = np.arange(values.size)[:, None]
        mapie = SplitConformalRegressor(_Lookup(values), confidence_level=list(LEVELS), prefit=True)
        mapie.conformalize(index[: mean_cal.size], y_cal)
        _, bounds = mapie.predict_interval(index[mean_cal.size :])
        out["mapie-absolute"] = [(bounds[:, 0, k], bounds[:, 1, k]) for k in range(len(LEVELS))]
    if importlib.util.find_spec("crepes") is not None:
        from crepes import ConformalRegressor as Crepes

        absolute = Crepes().fit(y_cal - mean_cal)
        normalized = Crepes().fit(y_cal - mean_cal, sigmas=std_cal)
        out["crepes-absolute"] = [tuple(absolute.predict_int(mean_test, confidence=c).T) for c in LEVELS]
        out["crepes-normalized"] = [tuple(normalized.predict_int(mean_test, sigmas=std_test, confidence=c).T)
                                    for c in LEVELS]
    return out


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------

ORDER = ("none", "quantile", "conformal-absolute", "conformal-normalized", "conformal-cqr", "mapie-absolute",
         "crepes-absolute", "crepes-normalized")


def _cell(values) -> str:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return "-"
    mean = float(np.mean(values))
    if not np.isfinite(mean):
        return "inf"
    se = float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0
    digits = 3 if abs(mean) < 100 else 1
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def write_calibration_report(frame, out, meta: dict):
    """``report.md`` of a calibrated run: per dataset and method, every calibration's coverage,
    width, calibration error, CRPS and LL (means ± SE over splits), and the issue's targets."""
    from pathlib import Path

    from probprop.bench.machine import machine_info

    out = Path(out)
    machine = meta.get("machine") or machine_info()
    frame = frame.copy()
    frame["calibration"] = frame["calibration"].fillna("none")
    present = [c for c in ORDER if c in set(frame["calibration"])]
    lines = ["# probprop UCI benchmark with post-hoc calibration", "",
             f"- Command: `{meta.get('command', '?')}`",
             f"- Total wall time: **{meta.get('wall_seconds', float('nan')):.1f} s** ({meta.get('n_fits', '?')} fits on "
             f"{meta.get('workers', '?')} worker process(es), each pinned to one core)",
             f"- Machine: {machine['cpu']}; Python {machine['python']}; "
             + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items()),
             f"- Started: {meta.get('started', '?')}", "",
             ("Protocol: the fixed 90/10 splits and each method's protocol as in the uncalibrated benchmark, except "
              f"that a random {CALIBRATION_FRACTION:.0%} of every training split (seeded by the split index) is held "
              "out to calibrate: the model is fitted on the other 80 %, predicts the calibration and the test rows, "
              "and every calibration method works on those same predictions. `none` is that model uncalibrated (so "
              "its numbers are a little worse than the full-data benchmark's). Cells are mean ± SE over splits. "
              "Calibration error is the miscalibration area of central intervals (0 is perfect; for conformal rows "
              "from the conformal intervals at 99 levels, the whole line where the calibration set is too small for "
              "a level). LL and CRPS exist for the distributions (`none`, `quantile`), not for the conformal intervals."),
             ""]
    lines += _targets(frame)
    lines += _figures(frame, out)
    lines += _agreement(frame)
    columns = [("coverage_50", "cov 50"), ("coverage_90", "cov 90"), ("coverage_95", "cov 95"), ("width_90", "width 90"),
               ("miscalibration_area", "cal. error"), ("crps", "CRPS"), ("log_likelihood", "test LL")]
    for dataset in dict.fromkeys(frame["dataset"]):
        lines += [f"## {dataset}", ""]
        lines += ["| method | calibration | " + " | ".join(h for _, h in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        part = frame[frame["dataset"] == dataset]
        for method in dict.fromkeys(part["method"]):
            for calibration in present:
                rows = part[(part["method"] == method) & (part["calibration"] == calibration)]
                if len(rows):
                    cells = [_cell(rows[c]) if c in rows else "-" for c, _ in columns]
                    lines.append(f"| {method} | {calibration} | " + " | ".join(cells) + " |")
        lines.append("")
    if meta.get("failures"):
        lines += ["## Failed fits", ""] + [f"- {f['method']} / {f['dataset']} / split {f['split']}" for f in meta["failures"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def noise_floor(n_test: int, draws: int = 400, seed: int = 0) -> float:
    """The mean miscalibration area of a perfectly calibrated forecaster on ``n_test`` points
    (uniform PIT values): the calibration error that sampling alone leaves."""
    from probprop.metrics.general import pit_miscalibration_area

    rng = np.random.default_rng(seed)
    return float(np.mean([pit_miscalibration_area(rng.uniform(size=n_test)) for _ in range(draws)]))


def _figures(frame, out) -> list[str]:
    """Two PNGs: 90 % coverage per dataset and calibration, and the calibration error before
    against after quantile recalibration."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from probprop.bench.stats import short_name

    lines = []
    kinds = [c for c in ORDER if c in set(frame["calibration"]) and not c.startswith(("mapie", "crepes"))]
    datasets = list(dict.fromkeys(frame["dataset"]))
    cov = frame.groupby(["dataset", "calibration"])["coverage_90"].mean()
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        values = [cov.get((d, kind), np.nan) for d in datasets]
        ax.bar(np.arange(len(datasets)) + (i - (len(kinds) - 1) / 2) * width, values, width, label=kind)
    ax.axhspan(0.88, 0.92, color="0.85", zorder=0, label="target 0.88-0.92")
    ax.axhline(0.9, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(datasets)), [short_name(d) for d in datasets])
    ax.set_ylim(0.7, 1.0)
    ax.set_ylabel("90 % interval coverage (mean over methods, splits)")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(out / "coverage90.png", dpi=110)
    plt.close(fig)
    lines += ["![90 % coverage per dataset and calibration](coverage90.png)", ""]
    if "quantile" in set(frame["calibration"]):
        area = frame.groupby(["dataset", "method", "calibration"])["miscalibration_area"].mean().unstack()
        fig, ax = plt.subplots(figsize=(5, 5))
        for j, dataset in enumerate(datasets):
            part = area.loc[dataset]
            ax.scatter(part["none"], part["quantile"], s=18, label=short_name(dataset), color=f"C{j % 10}")
        top = float(np.nanmax(area[["none", "quantile"]].to_numpy())) * 1.1
        grid = np.linspace(0, top, 10)
        ax.plot(grid, grid, "k-", lw=0.8, label="no change")
        ax.plot(grid, grid / 2, "k--", lw=0.8, label="halved")
        ax.set_xlabel("calibration error, uncalibrated")
        ax.set_ylabel("after quantile recalibration")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "calibration_error.png", dpi=110)
        plt.close(fig)
        lines += ["![calibration error before and after quantile recalibration, per dataset and method]"
                  "(calibration_error.png)", ""]
    return lines


def _targets(frame) -> list[str]:
    lines = ["## Targets", ""]
    conformal = frame[frame["calibration"].str.startswith("conformal-")]
    if len(conformal):
        cov = conformal.groupby(["dataset", "method", "calibration"])["coverage_90"].mean()
        inside = cov.between(0.88, 0.92)
        lines.append(f"- Conformal 90 % coverage (mean over splits) within 0.88-0.92: **{int(inside.sum())} of "
                     f"{len(cov)}** (dataset, method, score) combinations"
                     + ("" if inside.all() else "; outside: " + ", ".join(
                         f"{d}/{m}/{c.removeprefix('conformal-')} {v:.3f}" for (d, m, c), v in cov[~inside].items())))
        sizes = frame.groupby("dataset")[["n_calibration", "n_test"]].first()
        n_splits = frame.groupby("dataset")["split"].nunique()
        parts = []
        for dataset, (n_cal, n_test) in sizes.iterrows():
            p = math.ceil((n_cal + 1) * 0.9 - 1e-9) / (n_cal + 1)
            # a split's coverage: binomial over its test points around a level that is Beta over the
            # calibration sets (variance p(1 - p) / (n + 2)); the mean of independent splits
            se = math.sqrt((p * (1 - p) / n_test + p * (1 - p) / (n_cal + 2)) / n_splits[dataset])
            seen = conformal[conformal["dataset"] == dataset]["coverage_90"].mean()
            parts.append(f"{dataset} {p:.3f} ± {se:.3f} (seen {seen:.3f})")
        lines.append("  What the theory expects of a mean over the splits (⌈(n + 1) 0.9⌉ / (n + 1) for n calibration "
                     "points, ± the standard error of the mean of that many independent splits; the UCI splits overlap, "
                     "so the real spread is larger), and the mean over every method and score seen: " + ", ".join(parts)
                     + ". A band of ± 0.02 is 1.3-2 of those SEs on the small datasets.")
    quantile = frame[frame["calibration"] == "quantile"]
    if len(quantile):
        for method in dict.fromkeys(quantile["method"]):
            base = frame[(frame["calibration"] == "none") & (frame["method"] == method)]
            after = quantile[quantile["method"] == method]
            area0 = base.groupby("dataset")["miscalibration_area"].mean()
            area1 = after.groupby("dataset")["miscalibration_area"].mean()
            crps0 = base.groupby("dataset")["crps"].mean()
            crps1 = after.groupby("dataset")["crps"].mean()
            halved = area1 <= 0.5 * area0
            crps_ok = crps1 <= 1.01 * crps0
            lines.append(f"- {method}, quantile recalibration: calibration error at most half the uncalibrated one on "
                         f"**{int(halved.sum())} of {len(halved)}** datasets; CRPS no worse than 1 % on "
                         f"**{int(crps_ok.sum())} of {len(crps_ok)}**"
                         + ("" if crps_ok.all() else " (worse: " + ", ".join(
                             f"{d} {100 * (crps1[d] / crps0[d] - 1):+.1f} %" for d in crps_ok.index[~crps_ok]) + ")"))
        n_test = frame.groupby("dataset")["n_test"].first()
        floors = {d: noise_floor(int(n)) for d, n in n_test.items()}
        lines += ["", ("Calibration error that sampling alone leaves (the mean miscalibration area of a perfectly "
                       "calibrated forecaster on a test split of that size): " + ", ".join(
                           f"{d} {v:.3f}" for d, v in floors.items()) + ". Per dataset, uncalibrated → recalibrated "
                       "(PBP where it ran, else the first method): ")]
        method = "pbp" if "pbp" in set(quantile["method"]) else quantile["method"].iloc[0]
        base = frame[(frame["calibration"] == "none") & (frame["method"] == method)].groupby("dataset")
        after = quantile[quantile["method"] == method].groupby("dataset")
        lines[-1] += ", ".join(f"{d} {base['miscalibration_area'].mean()[d]:.3f} → "
                               f"{after['miscalibration_area'].mean()[d]:.3f}" for d in floors) + "."
    return lines + [""]


def _agreement(frame) -> list[str]:
    if "max_bound_diff" not in frame:
        return []
    peers = frame[frame["max_bound_diff"].notna()]
    if not len(peers):
        return []
    lines = ["## Agreement with MAPIE and crepes", "",
             "Largest |difference| between a peer's interval bounds and probprop's for the same construction (over "
             "every test point, level, split, method and dataset):", ""]
    for name in dict.fromkeys(peers["calibration"]):
        rows = peers[peers["calibration"] == name]
        diff = float(rows["max_bound_diff"].max())
        differ = rows[rows["max_bound_diff"] > 1e-9]
        text = f"- `{name}`: {diff:.3g}"
        if len(differ):
            text += (f" ({len(differ)} of {len(rows)} (method, split) pairs differ, on "
                     + ", ".join(f"{d} (n = {int(n)})" for d, n in differ.groupby("dataset")["n_calibration"].first().items())
                     + ")")
        lines.append(text)
    if (peers.loc[peers["calibration"].str.startswith("crepes"), "max_bound_diff"] > 1e-9).any():
        lines += ["", ("crepes differs where (n + 1)(1 - c) is a whole number (n calibration points, confidence c) "
                       "that floating point computes just below itself: crepes 0.9's `predict_int` takes "
                       "`int((1 - confidence) * (n + 1)) - 1` as its index, and 1 - 0.9 is 0.09999999999999998, so "
                       "140 × (1 - 0.9) is 13.999999999999996 and truncates to 13; it then takes the next larger "
                       "order statistic of the scores, one rank more conservative than ⌈(n + 1) c⌉ (probprop and "
                       "MAPIE). Everywhere else the three give the same intervals (tested).")]
    ours = frame[frame["calibration"].isin(["conformal-absolute", "conformal-normalized"])]
    if len(ours):
        width = ours.groupby(["dataset", "calibration"])["width_90"].mean().unstack()
        cover = ours.groupby(["dataset", "calibration"])["coverage_90"].mean().unstack()
        if {"conformal-absolute", "conformal-normalized"} <= set(width.columns):
            narrower = (width["conformal-normalized"] < width["conformal-absolute"])
            lines += ["", f"Normalised (by the model's σ) against absolute-residual intervals, averaged over methods and "
                      f"splits: narrower at 90 % on **{int(narrower.sum())} of {len(narrower)}** datasets, at coverage "
                      f"{cover['conformal-normalized'].mean():.3f} against {cover['conformal-absolute'].mean():.3f}. "
                      "Mean 90 % width, normalised / absolute, per dataset and method:", ""]
            ratio = (ours.groupby(["dataset", "method", "calibration"])["width_90"].mean().unstack())
            ratio = (ratio["conformal-normalized"] / ratio["conformal-absolute"]).unstack()
            lines += ["| dataset | " + " | ".join(ratio.columns) + " |", "|---|" + "---:|" * len(ratio.columns)]
            lines += [f"| {d} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for d, row in ratio.iterrows()]
    return lines + [""]

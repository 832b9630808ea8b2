"""``probprop bench streams``: prequential (test-then-train) evaluation on drifting and stationary
streams, probprop's online learners with and without forgetting beside river's online models and
an online SGD network, same stream, same order, same warm-up.

Every method learns the first :data:`WARMUP` rows unscored, then predicts each row before it
learns it. Scores per row: the log loss (-log predictive density of y for regression, -log of
the true class's probability for classification, probabilities floored at :data:`PROB_FLOOR`
for every method), squared error or 0/1 correctness, and (regression) whether y is inside the
central 90 % interval.

Point predictors (river's regressors, the SGD network) have no predictive variance: their
density is N(y | prediction, s^2) with s^2 an exponentially weighted mean (weight
:data:`RESIDUAL_DECAY`) of their own past squared errors, started at the warm-up targets'
variance — a running calibration that adapts to drift as fast as the model does.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from scipy.stats import norm

STREAM_NAMES = ("friedman-abrupt", "friedman-gradual", "friedman-static", "trump-approval",
                "moons-rotating", "moons-static", "mnist-rotating", "phishing")
METHODS = ("pbp-forget-replay", "pbp-replay", "pbp-forget", "pbp", "tagi-forget", "tagi", "sgd-net", "river-linear",
           "river-hat", "river-arf")
#: The ``-replay`` methods' ``replay``: replayed steps per row, over the last 64 rows
#: (:class:`probprop.learners.drift.Replay`). Chosen on moons-rotating (seeds 0-2: 1, 2, 4, 8
#: replays; windows 64, 256), so that stream's replay rows are not an independent test.
REPLAY = 4
#: River's adaptive random forest on 784 pixels would take about an hour per seed (river's
#: trees are pure Python): measured on 300 rows of mnist-rotating, 0.9 s per 100 rows for the
#: Hoeffding adaptive tree and ~10x that for the forest of 10.
SKIP = {("mnist-rotating", "river-arf"): "river's forest of 10 trees on 784 pixels: ~1 h per seed"}
WARMUP = 50
PROB_FLOOR = 1e-15
RESIDUAL_DECAY = 0.01
HIDDEN = {"mnist-rotating": (100,)}
DEFAULT_HIDDEN = (50,)


def _probprop_model(method, stream, seed):
    from probprop.estimators import PBPClassifier, PBPRegressor, TAGIClassifier, TAGIRegressor

    hidden = HIDDEN.get(stream.name, DEFAULT_HIDDEN)
    forgetting = "learn" if "-forget" in method else None
    classify = stream.task == "classification"
    if method.startswith("pbp"):
        cls = PBPClassifier if classify else PBPRegressor
        kwargs = {"input_scaling": "global"} if stream.name == "mnist-rotating" else {}
        replay = REPLAY if method.endswith("-replay") else 0
        return cls(hidden=hidden, forgetting=forgetting, replay=replay, random_state=seed, **kwargs)
    if classify:
        kwargs = {"input_scaling": "global"} if stream.name == "mnist-rotating" else {}
        return TAGIClassifier(hidden=hidden, batch_size=1, forgetting=forgetting, random_state=seed, **kwargs)
    return TAGIRegressor(hidden=hidden, batch_size=1, sigma_v=0.3, forgetting=forgetting, random_state=seed)


def _run_probprop(method, stream, seed):
    from probprop.prequential import prequential

    model = _probprop_model(method, stream, seed)
    rows = prequential(model, stream.X, stream.y, warmup=WARMUP, classes=list(stream.classes) or None)
    out = {"log_loss": rows["log_loss"].to_numpy(), "gamma": rows["gamma"].to_numpy()}
    if stream.task == "classification":
        p = np.maximum(rows["p_true"].to_numpy(), PROB_FLOOR)
        out["log_loss"] = -np.log(p)
        out["correct"] = rows["correct"].to_numpy(np.float64)
    else:
        out["squared_error"] = rows["squared_error"].to_numpy()
        out["covered"] = rows["covered"].to_numpy(np.float64)
    return out


class _PointPredictive:
    """N(prediction, s^2) with s^2 the exponentially weighted mean of past squared errors."""

    def __init__(self, y_warm):
        self.var = float(np.var(y_warm)) or 1.0

    #: The half-width of the central 90 % interval in standard deviations.
    Z90 = float(norm.ppf(0.95))

    def score(self, y, pred):
        std = np.sqrt(self.var)
        log_loss = -norm.logpdf(y, pred, std)
        covered = abs(y - pred) <= self.Z90 * std
        self.var = (1 - RESIDUAL_DECAY) * self.var + RESIDUAL_DECAY * (y - pred) ** 2
        return log_loss, covered


def _river_model(method, stream):
    from river import compose, forest, linear_model, multiclass, preprocessing, tree

    classify = stream.task == "classification"
    if method == "river-linear":
        if not classify:
            return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression())
        if len(stream.classes) == 2:
            return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
        return compose.Pipeline(preprocessing.StandardScaler(), multiclass.OneVsRestClassifier(linear_model.LogisticRegression()))
    if method == "river-hat":
        return tree.HoeffdingAdaptiveTreeClassifier(seed=0) if classify else tree.HoeffdingAdaptiveTreeRegressor(seed=0)
    return forest.ARFClassifier(seed=0) if classify else forest.ARFRegressor(seed=0)


def _run_river(method, stream, seed):
    model = _river_model(method, stream)
    names = [f"x{i}" for i in range(stream.X.shape[1])]
    rows = [dict(zip(names, map(float, x))) for x in stream.X]
    y = stream.y
    classify = stream.task == "classification"
    labels = [int(c) for c in stream.classes]
    for x, t in zip(rows[:WARMUP], y[:WARMUP]):
        model.learn_one(x, int(t) if classify else float(t))
    n = len(y) - WARMUP
    out = {"log_loss": np.empty(n)}
    if classify:
        out["correct"] = np.empty(n)
    else:
        out["squared_error"], out["covered"] = np.empty(n), np.empty(n)
        predictive = _PointPredictive(y[:WARMUP])
    for i, (x, t) in enumerate(zip(rows[WARMUP:], y[WARMUP:])):
        if classify:
            proba = model.predict_proba_one(x) or {}
            p = np.array([float(proba.get(c, 0.0)) for c in labels])
            p = p / p.sum() if p.sum() > 0 else np.full(len(labels), 1.0 / len(labels))
            out["log_loss"][i] = -np.log(max(p[labels.index(int(t))], PROB_FLOOR))
            out["correct"][i] = float(labels[int(np.argmax(p))] == int(t))
            model.learn_one(x, int(t))
        else:
            pred = model.predict_one(x)
            pred = float(pred) if pred is not None and np.isfinite(pred) else float(np.mean(y[:WARMUP]))
            out["log_loss"][i], out["covered"][i] = predictive.score(float(t), pred)
            out["squared_error"][i] = (float(t) - pred) ** 2
            model.learn_one(x, float(t))
    return out


def _run_sgd(stream, seed):
    """scikit-learn's MLP (ReLU, the same hidden layer as PBP, L2 1e-4 = a Gaussian prior: MAP)
    updated by one SGD step (learning rate 0.01) per row, inputs scaled by the warm-up rows."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    hidden = HIDDEN.get(stream.name, DEFAULT_HIDDEN)
    X, y = stream.X, stream.y
    classify = stream.task == "classification"
    mean, std = X[:WARMUP].mean(0), X[:WARMUP].std(0)
    std = np.where(std > 0, std, 1.0)
    if stream.name == "mnist-rotating":
        mean, std = np.zeros(X.shape[1]), np.ones(X.shape[1])
    Z = (X - mean) / std
    common = {"hidden_layer_sizes": hidden, "solver": "sgd", "learning_rate_init": 0.01, "alpha": 1e-4, "random_state": seed}
    n = len(y) - WARMUP
    out = {"log_loss": np.empty(n)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if classify:
            model = MLPClassifier(**common)
            classes = np.asarray(stream.classes)
            for i in range(WARMUP):
                model.partial_fit(Z[i : i + 1], y[i : i + 1], classes=classes)
            out["correct"] = np.empty(n)
            for i in range(n):
                row = Z[WARMUP + i : WARMUP + i + 1]
                p = model.predict_proba(row)[0]
                t = int(y[WARMUP + i])
                out["log_loss"][i] = -np.log(max(p[list(classes).index(t)], PROB_FLOOR))
                out["correct"][i] = float(classes[np.argmax(p)] == t)
                model.partial_fit(row, y[WARMUP + i : WARMUP + i + 1])
        else:
            y_mean, y_std = y[:WARMUP].mean(), y[:WARMUP].std() or 1.0
            model = MLPRegressor(**common)
            for i in range(WARMUP):
                model.partial_fit(Z[i : i + 1], (y[i : i + 1] - y_mean) / y_std)
            predictive = _PointPredictive(y[:WARMUP])
            out["squared_error"], out["covered"] = np.empty(n), np.empty(n)
            for i in range(n):
                row = Z[WARMUP + i : WARMUP + i + 1]
                pred = float(model.predict(row)[0]) * y_std + y_mean
                t = float(y[WARMUP + i])
                out["log_loss"][i], out["covered"][i] = predictive.score(t, pred)
                out["squared_error"][i] = (t - pred) ** 2
                model.partial_fit(row, np.array([(t - y_mean) / y_std]))
    return out


def job(stream_name, method, seed, data_dir=None, core=None, n_rows=None):
    """One (stream, method, seed): the summary row and the per-row scores."""
    if core is not None:
        from probprop.bench.machine import pin

        pin(core)
    from probprop.data.streams import make_stream
    from probprop.learners.base import float64_process

    float64_process()
    stream = make_stream(stream_name, seed=seed, n=n_rows, data_dir=data_dir)
    start = time.perf_counter()
    if method.startswith(("pbp", "tagi")):
        out = _run_probprop(method, stream, seed)
    elif method == "sgd-net":
        out = _run_sgd(stream, seed)
    else:
        out = _run_river(method, stream, seed)
    seconds = time.perf_counter() - start
    row = {"stream": stream_name, "method": method, "seed": seed, "task": stream.task, "rows": len(stream.y),
           "drift": {True: "yes", False: "no", None: "unknown"}[stream.drift],
           "log_loss": float(np.mean(out["log_loss"])), "seconds": seconds,
           "seconds_per_1000": 1000 * seconds / len(stream.y)}
    if "correct" in out:
        row["accuracy"] = float(np.mean(out["correct"]))
    else:
        row["rmse"] = float(np.sqrt(np.mean(out["squared_error"])))
        row["coverage90"] = float(np.mean(out["covered"]))
    if "gamma" in out:
        row["final_gamma"] = float(out["gamma"][-1])
    return row, out


def run(out=None, streams=STREAM_NAMES, methods=METHODS, seeds: int = 3, data_dir=None, workers: int = 2,
        n_rows=None, command: str | None = None, log=print) -> Path:
    """Run every (stream, method, seed) on ``workers`` pinned processes; write results.csv,
    report.md and one figure per stream (seed 0)."""
    import pandas as pd

    from probprop.bench.machine import pinned_results
    from probprop.data.streams import STREAMS

    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {list(METHODS)}")
    for name in streams:
        if name not in STREAMS:
            raise ValueError(f"unknown stream {name!r}; choose from {list(STREAMS)}")
    if any(m.startswith("river") for m in methods) or any(STREAMS[s][1] is None for s in streams):
        try:
            import river  # noqa: F401
        except ImportError:
            raise RuntimeError("the river peers and streams need river: pip install 'probprop[streams]'") from None
    if "mnist-rotating" in streams:
        from probprop.data.images import find_images_dir

        find_images_dir("mnist", data_dir)
    out = Path("docs/benchmarks/streams" if out is None else out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for s in streams:
        real = STREAMS[s][1] is None
        for seed in range(seeds):
            for m in methods:
                if (s, m) in SKIP or (real and seed > 0 and m.startswith("river")):
                    continue  # river's models are deterministic on a fixed stream: one run
                jobs.append((s, m, seed))
    start = time.perf_counter()
    rows, curves = [], {}
    calls = [(s, m, seed, data_dir) for s, m, seed in jobs]
    for (s, m, seed, _), (row, arrays) in pinned_results(partial(job, n_rows=n_rows), calls, workers):
        rows.append(row)
        log(f"{s} {m} seed {seed}: log loss {row['log_loss']:.4f} {row['seconds']:.1f} s")
        if seed == 0:
            curves[(s, m)] = arrays
    wall = time.perf_counter() - start
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    _figures(curves, out)
    (out / "report.md").write_text(report(frame, command or "probprop bench streams", wall, workers))
    return out


def _figures(curves, out: Path) -> None:
    from probprop.plots import plot_stream

    for stream in dict.fromkeys(s for s, _ in curves):
        mine = {m: a for (s, m), a in curves.items() if s == stream}
        plot_stream({m: a["log_loss"] for m, a in mine.items()}, metric="log loss",
                    gammas={m: a["gamma"] for m, a in mine.items() if "-forget" in m},
                    path=out / f"stream-{stream}.png", title=f"{stream} (seed 0)")


def _cell(values, digits=4):
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return f"{values.mean():.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1) / np.sqrt(len(values)):.{digits}f}"


def report(frame, command: str, wall_seconds: float, workers: int = 2) -> str:
    from probprop.bench.machine import cpu_name, jobs_at_a_time

    lines = [
        "# Streams: prequential evaluation under drift",
        "",
        f"Command: `{command}` ({wall_seconds:.0f} s wall time, {jobs_at_a_time(workers)}, each pinned to one core;",
        f"{cpu_name()}). Regenerate with the same command.",
        "",
        f"Every method learns the first {WARMUP} rows unscored, then predicts each row before learning it",
        "(test-then-train), in the stream's order. Log loss: mean over the scored rows of -log p(y) (the",
        f"predictive density for regression, the true class's probability floored at {PROB_FLOOR:g} for",
        "classification); lower is better. Mean ± standard error over seeds (a generated stream is drawn",
        "anew per seed; the real streams keep river's order and vary only the probprop/SGD initialisation;",
        "river's models are deterministic there and run once).",
        "",
        "- `pbp-forget`, `tagi-forget`: `PBPRegressor`/`PBPClassifier` and `TAGIRegressor`/`TAGIClassifier`",
        "  (TAGI with batch 1) with `forgetting=\"learn\"`: before each row every weight variance relaxes",
        "  towards its prior, gamma^2 v + (1 - gamma^2) v0, gamma learned online from each row's predictive",
        "  log-likelihood (`probprop.learners.drift`); `pbp`, `tagi`: the same without forgetting.",
        f"- `pbp-forget-replay`, `pbp-replay`: the same PBP with `replay={REPLAY}`: after each row, {REPLAY} more ADF steps on",
        "  rows drawn from the last 64 learned (online multi-pass ADF over recent rows; every row is still",
        f"  predicted before it is first learned). {REPLAY} replays and the window of 64 were chosen on moons-rotating",
        "  (seeds 0-2, from 1, 2, 4, 8 replays and windows of 64 and 256). With replay, gamma's gradient is taken",
        f"  at the posterior that counts each row once (each weight's precision keeps the prior's and 1/({REPLAY} + 1)",
        "  of what the data added), so that forgetting does not learn to undo replay's repeated evidence.",
        f"  Hidden layer {DEFAULT_HIDDEN[0]} units ({HIDDEN['mnist-rotating'][0]} on mnist-rotating); TAGI regression sigma_v 0.3.",
        "- `sgd-net`: scikit-learn's `MLPRegressor`/`MLPClassifier` (same hidden layer, ReLU, L2 1e-4: MAP),",
        "  one SGD step (rate 0.01) per row by `partial_fit`.",
        "- `river-linear` (river's standardised linear / logistic regression, one-vs-rest for 10 classes),",
        "  `river-hat` (Hoeffding adaptive tree), `river-arf` (adaptive random forest, 10 trees).",
        f"- Point predictors' density: N(prediction, s^2), s^2 their own exponentially weighted (weight {RESIDUAL_DECAY})",
        "  mean squared error so far.",
        "- Seconds per 1,000 rows: the whole prequential run (warm-up, predictions, learning) over the stream's",
        "  rows; a probprop job that is its worker's first on a network shape also compiles (about 1-3 s).",
        "",
    ]
    if SKIP:
        lines += ["Not run: " + "; ".join(f"{m} on {s} ({why})" for (s, m), why in SKIP.items()) + ".", ""]
    for task in ("regression", "classification"):
        part = frame[frame["task"] == task]
        if part.empty:
            continue
        second = "rmse" if task == "regression" else "accuracy"
        lines += [f"## {task.capitalize()}", ""]
        for stream, group in part.groupby("stream", sort=False):
            drift = group["drift"].iloc[0]
            lines += [f"### {stream} ({group['rows'].iloc[0]} rows, drift: {drift})", "",
                      f"| method | log loss | {second} |" + (" 90 % coverage |" if task == "regression" else "")
                      + " s per 1,000 rows | final gamma |",
                      "|---|---|---|" + ("---|" if task == "regression" else "") + "---|---|"]
            best = group.groupby("method")["log_loss"].mean().idxmin()
            for method, g in group.groupby("method", sort=False):
                name = f"**{method}**" if method == best else method
                cells = [name, _cell(g["log_loss"]), _cell(g[second])]
                if task == "regression":
                    cells.append(_cell(g["coverage90"], 3))
                cells.append(f"{g['seconds_per_1000'].mean():.2f}")
                cells.append(f"{g['final_gamma'].mean():.6f}" if "final_gamma" in g and g["final_gamma"].notna().all() else "")
                lines.append("| " + " | ".join(cells) + " |")
            lines += ["", f"![{stream}](stream-{stream}.png)", ""]
    lines += ["## Targets (issue 12)", ""]
    lines += _targets(frame)
    return "\n".join(lines) + "\n"


#: (PBP with learned forgetting, the same PBP without forgetting) pairs the targets compare.
PAIRS = (("pbp-forget", "pbp"), ("pbp-forget-replay", "pbp-replay"))


def _targets(frame) -> list[str]:
    """PBP with learned forgetting against the same PBP without and every river model, per stream
    and per pair of :data:`PAIRS` run."""
    out = []
    means = frame.groupby(["stream", "method"])["log_loss"].mean()
    for forget, plain_name in PAIRS:
        for stream, group in frame.groupby("stream", sort=False):
            if forget not in set(group["method"]) or plain_name not in set(group["method"]):
                continue
            drift = group["drift"].iloc[0]
            mine, plain = means[(stream, forget)], means[(stream, plain_name)]
            if drift == "no":
                ok = mine <= plain + 0.01 * abs(plain)
                out.append(f"- {stream} (no drift): {forget} {mine:.4f} against {plain_name} {plain:.4f}: "
                           f"{'within' if ok else 'NOT within'} 1 %.")
                continue
            rivals = {m: means[(stream, m)] for m in group["method"].unique() if m.startswith("river")}
            beaten = [m for m, v in rivals.items() if mine < v]
            ahead = mine < plain and len(beaten) == len(rivals)
            if drift == "yes":
                verdict = "met" if ahead else "MISSED"
            else:  # a real stream: the target names the drifting ones; shown for information
                verdict = "ahead of all of them" if ahead else "not ahead of all of them (no target: drift unknown)"
            scope = "drifting" if drift == "yes" else "real, drift unknown"
            out.append(f"- {stream} ({scope}): {forget} {mine:.4f}, {plain_name} {plain:.4f}, "
                       + ", ".join(f"{m} {v:.4f}" for m, v in rivals.items()) + f": {verdict}.")
    return out


def sweep_costs(rows: int = 4096, repeats: int = 5) -> dict:
    """Microseconds per row of the drift sweep (``probprop.learners.drift.sweep``) on a 10-50-1 PBP
    network, best of ``repeats``: the plain ADF sweep, no / fixed / learned forgetting, each without
    and with recorded predictions (``python -m probprop.bench.streams`` prints them)."""
    import jax

    from probprop.learners import drift, pbp
    from probprop.learners.base import float64_process

    float64_process()
    rng = np.random.default_rng(0)
    X, y, mask = rng.normal(size=(rows, 10)), rng.normal(size=rows), np.ones(rows, bool)
    spec = pbp.PBPSpec(n_in=10, hidden=(50,))
    state, prior = pbp.init(jax.random.PRNGKey(0), spec), drift.prior(pbp.learner, spec)

    def best(fn):
        jax.block_until_ready(fn())
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
        return 1e6 * min(times) / rows

    plain = jax.jit(pbp.adf_sweep)
    out = {"adf_sweep": best(lambda: plain(state, X, y, mask))}
    for name, f in (("none", None), ("fixed", drift.Forgetting(gamma=0.999, learn=False)), ("learned", drift.Forgetting())):
        for record in (False, True):
            key = f"{name}{' + recorded' if record else ''}"
            out[key] = best(lambda f=f, record=record: drift.sweep(pbp.learner, state, None, prior, X, y, mask, f, record))
    return out


if __name__ == "__main__":
    for name, us in sweep_costs().items():
        print(f"{name:>22}: {us:6.2f} µs per row")

"""The convolution engine, form against form: gathered patches against XLA's convolution, and max
pooling's hand-written pullback against autodiff's.

    probprop bench conv-speed [--rows 2048] [--test-rows 1000] [--out docs/benchmarks/conv-speed]

:func:`probprop.layers.conv._conv` correlates few rows (patch matrices of up to
:data:`probprop.layers.conv.GATHER_MAX` entries: PBP's per-image update, TAGI's batches) by one
gather of the patches and a matrix product, and more rows by ``lax.conv_general_dilated``. This
benchmark fits the image benchmark's CNN (:data:`probprop.bench.images.CNN_CONV`,
:data:`~probprop.bench.images.CNN_HIDDEN`; MNIST) by each learner with convolutions, once with the
threshold as shipped ("gathered") and once with every correlation on XLA's convolution ("xla",
``GATHER_MAX = 0``), and reports per case:

* the first fit (``--rows`` images, one pass; it includes compiling) and a second, steady fit of the
  same shape in the same process, as milliseconds per image and the ratio of the other forms' to
  the gathered one's;
* ``predict_proba`` on ``--test-rows`` test images (a second call, compiled), and the largest
  difference between each form's probabilities and the gathered form's (they must agree to
  rounding: a check that the forms compute the same model, not only a timing; autodiff's pullback
  of max pooling differs only where rounding clips a pooled variance to zero, where its slope is 0,
  or 1/2 at a tie).

Max pooling has a third form, "autodiff-pool": the gathered convolutions with max pooling's moments
(:func:`probprop.moments.maximum.max_pool_moments`, Clark's matching) pulled back by autodiff
(:func:`~probprop.moments.maximum.plain_max_pool_moments`) instead of by their closed-form slopes.

Cases: PBP with average pooling and with max pooling (one image per update), TAGI (batches of
:data:`~probprop.bench.images.TAGI_BATCH`), MAP (Adam, batches of 128: above the threshold, so the
forms should time alike; the control). Every case and form runs in its own pinned worker process,
one at a time, without the persistent compilation cache (every first fit compiles its programs;
no program compiled for one form serves the other).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

#: (learner, pooling) of the cases, in the report's order.
CASES = (("pbp", "avg"), ("pbp", "max"), ("tagi", "avg"), ("map", "avg"))
FORMS = ("gathered", "xla", "autodiff-pool")
MAP_BATCH = 128


def case_forms(pooling: str) -> tuple[str, ...]:
    """The forms a case runs in: autodiff's pullback of the pooling only where it pools by max."""
    return FORMS if pooling == "max" else FORMS[:2]


def _model(learner: str, pooling: str):
    """The case's classifier: the image benchmark's ``pbp-cnn``, ``tagi-cnn`` or ``map-cnn``
    (:func:`probprop.bench.images._probprop_model`), one pass (one Adam epoch for MAP)."""
    from probprop.bench.images import _probprop_model

    if learner not in ("pbp", "tagi", "map"):
        raise ValueError(f"unknown learner {learner!r}; choose from pbp, tagi, map")
    return _probprop_model(f"{learner}-cnn", 1, 0).set_params(pooling=pooling, epochs=1)


def measure(learner: str, pooling: str, form: str, rows: int, test_rows: int, data_dir=None,
            core: int | None = None) -> dict:
    """One case in one form, in this (worker) process: fit times, prediction time, probabilities."""
    import os

    from probprop._cache import CACHE_ENV
    from probprop.bench.machine import pin, thread_environment

    if core is not None:  # a pinned worker of its own (not a caller's process: its environment is left alone)
        pin(core)
        os.environ.update(thread_environment())
        os.environ[CACHE_ENV] = "off"  # every first fit compiles: nothing from the other form's run on disk
    import jax

    if core is not None:
        jax.config.update("jax_enable_compilation_cache", False)  # whatever cache the environment names
    from probprop.data.images import load_images
    from probprop.layers import conv
    from probprop.moments.maximum import plain_max_pool_moments

    if form not in case_forms(pooling):
        raise ValueError(f"unknown form {form!r} with pooling={pooling!r}; choose from {list(case_forms(pooling))}")
    shipped, shipped_pool = conv.GATHER_MAX, conv.max_pool_moments
    conv.GATHER_MAX = 0 if form == "xla" else shipped
    if form == "autodiff-pool":
        conv.max_pool_moments = plain_max_pool_moments
    jax.clear_caches()  # nothing compiled for the other form (an earlier job of this worker) is reused
    try:
        X, y, Xt, _ = load_images("mnist", data_dir, flat=True, scale=True)
        X, y, Xt = X[:rows], y[:rows], Xt[:test_rows]
        seconds = []
        for _ in range(2):
            model = _model(learner, pooling)
            start = time.perf_counter()
            model.fit(X, y)
            seconds.append(time.perf_counter() - start)
        model.predict_proba(Xt)
        start = time.perf_counter()
        proba = model.predict_proba(Xt)
        predict = time.perf_counter() - start
    finally:
        conv.GATHER_MAX, conv.max_pool_moments = shipped, shipped_pool
        jax.clear_caches()  # nor does what this form compiled serve a later call
    return {"learner": learner, "pooling": pooling, "form": form, "rows": len(y), "test_rows": len(Xt),
            "first_seconds": seconds[0], "steady_seconds": seconds[1], "predict_seconds": predict,
            "proba": np.asarray(proba, np.float64)}


def run(out="docs/benchmarks/conv-speed", rows: int = 2048, test_rows: int = 1000, cases=CASES, data_dir=None,
        command: str | None = None, log=print) -> Path:
    """Every case in each of its forms, one pinned worker at a time; writes results.csv and report.md."""
    import pandas as pd

    from probprop.bench.machine import machine_info, pinned_results
    from probprop.data.images import find_images_dir

    if int(rows) < 1 or int(test_rows) < 1:
        raise ValueError(f"rows and test_rows must be at least 1, got {rows} and {test_rows}")
    find_images_dir("mnist", data_dir)  # a missing data folder fails here, before any worker starts
    wall = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    calls = [(learner, pooling, form, int(rows), int(test_rows), data_dir) for learner, pooling in cases
             for form in case_forms(pooling)]
    rows_out, probas = [], {}
    for call in calls:  # each job in a fresh worker process
        ((args, result),) = pinned_results(measure, [call], workers=1)
        probas[args[:3]] = result.pop("proba")
        log(f"{args[0]} {args[1]} {args[2]}: steady {1e3 * result['steady_seconds'] / result['rows']:.3f} ms/image")
        rows_out.append(result)
    frame = pd.DataFrame(rows_out)
    frame["proba_max_diff"] = [float(np.max(np.abs(probas[(r.learner, r.pooling, r.form)]
                                                   - probas[(r.learner, r.pooling, "gathered")])))
                               for r in frame.itertuples()]
    wall = time.perf_counter() - wall
    frame.to_csv(out / "results.csv", index=False)
    text = report(frame, command or f"probprop bench conv-speed --rows {rows} --test-rows {test_rows} --out {out}",
                  wall, started, machine_info())
    (out / "report.md").write_text(text)
    return out


def report(frame, command: str, wall: float, started: str = "?", machine: dict | None = None) -> str:
    """The report of a run from its results table."""
    from probprop.bench.images import CNN_CONV, CNN_HIDDEN, TAGI_BATCH
    from probprop.bench.machine import report_header
    from probprop.layers.conv import GATHER_MAX

    lines = report_header("Convolutions: gathered patches against XLA's convolution; max pooling's pullback",
                          command, wall, started, machine)
    conv = ", ".join(f"{c} maps of {k}x{k} pooled {p}x{p}" for c, k, p in CNN_CONV)
    lines += ["", (f"MNIST, the image benchmark's CNN ({conv}, then {', '.join(map(str, CNN_HIDDEN))} dense units, "
                   "10 classes; float64); one pass over the first training images. \"gathered\": the engine as "
                   f"shipped (correlations over patch matrices of up to {GATHER_MAX:,} entries by one gather and a "
                   "matrix product); \"xla\": every correlation by `lax.conv_general_dilated`; \"autodiff-pool\" (max "
                   "pooling): the gathered form with Clark's max-pooling moments pulled back by autodiff instead "
                   "of by their closed-form slopes (the engine before that pullback was written). Each case and form in "
                   "its own process pinned to one core, one at a time. First fit: includes compiling (no "
                   "persistent cache); steady: a second fit of the same shape in the same process. "
                   f"PBP: one image per update; TAGI: batches of {TAGI_BATCH}; MAP: Adam, batches of {MAP_BATCH}. "
                   "Speed-up = the other form's steady time / gathered's. Probability difference: the largest absolute "
                   "difference of `predict_proba` from the gathered form's, on the test images (autodiff-pool's may "
                   "differ only where rounding clips a pooled variance to zero)."), "",
              ("| learner | pooling | form | images | first fit (s) | steady ms / image | speed-up (steady) | "
               "predict ms / image | probability difference |"),
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for (learner, pooling), group in frame.groupby(["learner", "pooling"], sort=False):
        base = group[group["form"] == "gathered"]
        base_steady = float(base["steady_seconds"].iloc[0]) if len(base) else np.nan
        for r in group.itertuples():
            ratio = "-" if r.form == "gathered" else f"{r.steady_seconds / base_steady:.2f}x"
            lines.append(f"| {learner} | {pooling} | {r.form} | {r.rows:,} | {r.first_seconds:.1f} | "
                         f"{1e3 * r.steady_seconds / r.rows:.3f} | {ratio} | {1e3 * r.predict_seconds / r.test_rows:.3f} | "
                         f"{r.proba_max_diff:.1e} |")
    lines.append("")
    return "\n".join(lines) + "\n"

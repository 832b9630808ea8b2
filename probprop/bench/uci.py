"""The UCI regression benchmark: methods x datasets x splits, in a pool of pinned workers.

    probprop bench uci [--datasets all] [--splits all] [--methods pbp,bayesridge] [--workers N]

Protocol (Hernández-Lobato & Adams 2015, as described in pbp-reference.md §2): the fixed
90/10 splits of the prepared files, one hidden layer of ``n_hidden.txt`` units (50; 100 for
protein), ``n_epochs.txt`` epochs (40; 20 for protein), ``random_state`` = split index, inputs
and target standardised with training statistics (inside the estimator).

This module is the entry point: :func:`run_bench` runs the whole benchmark and writes
``results.csv``, ``meta.json``, ``report.md`` and the plots; :func:`rerender` writes the report
again from a finished run. The pieces live next to it:

- :mod:`probprop.bench.plan`: the selection and the tasks (one method on one split, or on
  several splits fitted together), queued longest first so that the pool stays busy to the end;
- :mod:`probprop.bench.pool`: the ``spawn`` pool of workers, each pinned to one core before it
  imports JAX, with XLA's intra-op threading off and BLAS/OpenMP at one thread;
- :mod:`probprop.bench.machine`: the workers' environment and the machine probe. Compiled XLA
  programs are kept in a persistent cache (``$PROBPROP_JAX_CACHE``, default
  ``~/.cache/probprop/jax``; set it to ``off`` to disable), so reruns skip most compilation;
- :mod:`probprop.bench.report`: the markdown report (numbers from :mod:`probprop.bench.stats`,
  plots from :mod:`probprop.bench.figures`).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from probprop.bench.machine import machine_info, usable_cores, xla_cache_state
from probprop.bench.plan import BATCH_SPLITS, check_batch_splits, parse_splits, plan_tasks, resolve_datasets
from probprop.bench.pool import run_pool, run_ray

__all__ = [
    "BATCH_SPLITS",
    "BenchResult",
    "default_command",
    "rerender",
    "run_bench",
]


@dataclass
class BenchResult:
    rows: list[dict]
    failures: list[dict]
    skipped: list[str]
    wall_seconds: float
    out: Path | None = None
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------


def run_bench(
    out="bench-out",
    datasets="all",
    splits="all",
    methods="pbp,bayesridge",
    workers: int | None = None,
    data_dir=None,
    epochs: int | None = None,
    download: bool = False,
    command: str | None = None,
    progress: bool = True,
    log=print,
    batch_splits: int = BATCH_SPLITS,
    calibrate=None,
    backend: str = "local",
    address: str | None = None,
) -> BenchResult:
    """Run the benchmark and write ``results.csv``, ``report.md`` and the plots into ``out``.

    ``batch_splits``: how many splits of a dataset a batchable method (PBP) fits together as
    one batched program (1: each split on its own). ``calibrate``: post-hoc calibration kinds
    (``"conformal"``, ``"quantile"``, a comma list or ``"all"``; :mod:`probprop.bench.calibrate`):
    each training split then loses a calibration part, and the report compares the calibrations.
    ``backend``: ``"local"`` (pinned worker processes on this machine) or ``"ray"``
    (:func:`probprop.bench.pool.run_ray`: the Ray cluster at ``address``, or a local one with
    ``workers`` CPUs); the same tasks and seeds, so the same numbers.

    Raises ValueError for an unknown dataset/method or a bad split spec (listing the valid
    values), FileNotFoundError if the data are not found.
    """
    import pandas as pd

    start = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if workers is None:
        workers = len(usable_cores())
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    xla_cache = xla_cache_state()
    # the cheap checks before any process starts; loading the data overlaps the workers' start-up
    from probprop.bench.methods import resolve_methods

    resolve_methods(methods)
    resolve_datasets(datasets)
    parse_splits(splits)
    check_batch_splits(batch_splits)
    from probprop.bench.calibrate import parse_calibrate

    calibrate = parse_calibrate(calibrate)
    from probprop.distributed import check_backend

    check_backend(backend)
    if address and backend != "ray":
        raise ValueError("address is the Ray cluster's: it needs backend='ray'")
    skipped: list[str] = []

    def plan():
        tasks, notes = plan_tasks(datasets, splits, methods, data_dir=data_dir, epochs=epochs,
                                  download=download, batch_splits=batch_splits, calibrate=calibrate)
        skipped.extend(notes)
        for note in notes:
            log(f"note: {note}")
        log(f"running {sum(len(t.splits) for t in tasks)} fits ({len({t.method for t in tasks})} method(s) x "
            f"{len({t.dataset for t in tasks})} dataset(s)) as {len(tasks)} task(s) on "
            + (f"{min(workers, len(tasks))} worker(s)" if backend == "local" else
               f"Ray ({address or f'a local cluster of {workers} CPU(s)'})"))
        return tasks

    if backend == "ray":
        tasks, rows, failures = run_ray(plan, workers, progress, address)
    else:
        tasks, rows, failures = run_pool(plan, workers, progress)
    wall = time.perf_counter() - start
    workers = min(workers, len(tasks))
    n_fits = sum(len(t.splits) for t in tasks)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["method", "dataset", "split"] + (["calibration"] if calibrate else [])
    frame = pd.DataFrame(rows)
    if len(frame):
        order = {name: i for i, name in enumerate(resolve_datasets("all"))}
        order.update({name: i for i, name in enumerate(dict.fromkeys(t.method for t in sorted(tasks, key=lambda t: t.id)))})
        from probprop.bench.calibrate import ORDER

        order.update({name: i for i, name in enumerate(ORDER)})
        frame = frame.sort_values(by=columns, key=lambda c: c.map(order) if c.name in ("dataset", "method", "calibration")
                                  else c)
        frame = frame.reset_index(drop=True)
    else:
        frame = pd.DataFrame(columns=columns)
    frame.to_csv(out / "results.csv", index=False)
    if failures:
        pd.DataFrame(failures).to_csv(out / "failures.csv", index=False)
    elif (out / "failures.csv").exists():
        (out / "failures.csv").unlink()

    meta = {
        "wall_seconds": wall,
        "started": started,
        "command": command or default_command(),
        "workers": workers,
        "backend": backend,
        "address": address,
        "machine": machine_info(),
        "skipped": skipped,
        "failures": failures,
        "epochs_override": epochs,
        "n_tasks": len(tasks),
        "n_fits": n_fits,
        "batch_splits": batch_splits,
        "xla_cache": xla_cache,
        "calibrate": list(calibrate),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    _write(frame, out, meta)
    return BenchResult(rows=frame.to_dict("records"), failures=failures, skipped=skipped,
                       wall_seconds=wall, out=out, meta=meta)


def rerender(out) -> Path:
    """Write ``report.md`` and the plots again from a run's ``results.csv`` and ``meta.json``
    (after a change to the report code; the measurements themselves are not touched)."""
    import pandas as pd

    out = Path(out)
    for name in ("results.csv", "meta.json"):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} not found: rerender needs a finished 'probprop bench uci' run")
    try:
        meta = json.loads((out / "meta.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{out / 'meta.json'} is not JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{out / 'meta.json'} is not a JSON object: not written by 'probprop bench uci'")  # noqa: TRY004 - bad file content
    frame = pd.read_csv(out / "results.csv")
    try:
        return _write(frame, out, meta)
    except (KeyError, TypeError, AttributeError, IndexError) as err:  # a column or record missing or malformed
        raise ValueError(f"cannot render a report from {out} ({type(err).__name__}: {err}); "
                         "were results.csv and meta.json written by 'probprop bench uci'?") from err


def _write(frame, out, meta: dict) -> Path:
    """The report of a run: the calibration report when the run calibrated, else the usual one."""
    if meta.get("calibrate"):
        from probprop.bench.calibrate import write_calibration_report

        return write_calibration_report(frame, out, meta)
    from probprop.bench import report

    return report.write_report(frame, out, meta)


def default_command() -> str:
    """The command line of this process, as a user would type it."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("probprop", "probprop.exe"):
        argv[0] = "probprop"
    return shlex.join(argv)

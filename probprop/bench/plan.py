"""What the UCI benchmark runs, and in which order: the selection, the tasks, the scheduling.

- :func:`parse_splits` and :func:`resolve_datasets` read the ``--splits`` / ``--datasets``
  selection; :func:`check_batch_splits` checks ``--batch-splits``;
- :class:`Task` is one method on one split, or on several splits of a dataset fitted together
  (one batched program, for the methods in ``methods.BATCHED``; :data:`BATCH_SPLITS` of them
  by default);
- :func:`plan_tasks` loads the datasets and lists the tasks, ordered by :func:`order_tasks`
  (longest first, the first fit of each (method, dataset) ahead of the rest);
  :func:`next_task` picks the task a free worker runs next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BATCH_SPLITS",
    "Task",
    "check_batch_splits",
    "next_task",
    "order_tasks",
    "parse_splits",
    "plan_tasks",
    "resolve_datasets",
]

#: Splits of one dataset that a batchable method (``methods.BATCHED``) fits together by default.
BATCH_SPLITS = 5


@dataclass(frozen=True)
class Task:
    id: int
    method: str
    dataset: str
    splits: tuple[int, ...]  # fitted together (one batched program) when more than one
    n_hidden: int
    n_epochs: int
    n_features: int
    n_train: int
    data_dir: str | None
    estimate_s: float
    calibrate: tuple[str, ...] = ()  # post-hoc calibration kinds (probprop.bench.calibrate); () none


# --------------------------------------------------------------------------------------
# Parsing the selection
# --------------------------------------------------------------------------------------


#: Split indices must be below this (the UCI sets have 20 splits, protein 5).
MAX_SPLIT = 10_000


def parse_splits(spec) -> list[int] | None:
    """``"all"`` -> None; ``"0-4"``, ``"0,1,2"``, ``"0-2,7"`` -> sorted split indices."""
    if spec is None:
        return None
    if isinstance(spec, (list, tuple, range)):
        values = [int(s) for s in spec]
    else:
        text = str(spec).strip().lower()
        if text in ("", "all"):
            return None
        values = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part, re.ASCII)
            if match:
                lo, hi = int(match.group(1)), int(match.group(2))
                if lo > hi:
                    raise ValueError(f"bad split range {part!r}: start is after end")
                if hi >= MAX_SPLIT:  # refused before the range is listed
                    raise ValueError(f"split indices must be in 0..{MAX_SPLIT - 1}, got {spec!r}")
                values.extend(range(lo, hi + 1))
            elif part.isdecimal() and part.isascii():
                values.append(int(part))
            else:
                raise ValueError(f"bad split spec {spec!r}: use 'all', a range like '0-4', or a list like '0,1,2'")
    if any(v < 0 or v >= MAX_SPLIT for v in values):
        raise ValueError(f"split indices must be in 0..{MAX_SPLIT - 1}, got {spec!r}")
    if not values:
        raise ValueError(f"no split selected by {spec!r}")
    return sorted(set(values))


def resolve_datasets(spec) -> list[str]:
    """``"all"`` or a comma list of names/aliases -> folder names, in the papers' order."""
    from probprop.data import DATASETS, canonical_name

    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if not names or [n.lower() for n in names] == ["all"]:
        return list(DATASETS)
    canonical = [canonical_name(n) for n in names]  # ValueError listing the valid names
    chosen = set(canonical)
    return [d for d in DATASETS if d in chosen]


def check_batch_splits(batch_splits) -> None:
    if isinstance(batch_splits, bool) or not isinstance(batch_splits, int) or batch_splits < 1:
        raise ValueError(f"batch_splits must be a positive integer, got {batch_splits!r}")


def plan_tasks(datasets, splits, methods, data_dir=None, epochs=None, download=False,
               batch_splits: int = BATCH_SPLITS, calibrate: tuple[str, ...] = ()):
    """Load the datasets (downloading if asked) and list the tasks, longest first.

    A method in ``methods.BATCHED`` gets one task per ``batch_splits`` consecutive splits of a
    dataset, fitted together as one batched program; other methods one task per split.

    Returns ``(tasks, skipped)`` where ``skipped`` holds one-line notes (unavailable methods,
    split indices a dataset does not have).
    """
    from probprop.bench.methods import (
        BATCHED,
        DatasetInfo,
        MethodUnavailable,
        check_available,
        estimated_seconds,
        resolve_methods,
    )
    from probprop.data import load_uci

    methods = resolve_methods(methods)
    datasets = resolve_datasets(datasets)
    wanted = parse_splits(splits)
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    check_batch_splits(batch_splits)

    skipped, runnable = [], []
    for name in methods:
        try:
            check_available(name)
            runnable.append(name)
        except MethodUnavailable as err:
            skipped.append(str(err))
    if not runnable:
        raise RuntimeError("no selected method can run here: " + "; ".join(skipped))

    tasks, n = [], 0
    data_dir = None if data_dir is None else str(data_dir)
    for dataset in datasets:
        ds = load_uci(dataset, data_dir=data_dir, download=download)
        available = range(ds.n_splits)
        chosen = list(available) if wanted is None else [k for k in wanted if k < ds.n_splits]
        if wanted is not None and len(chosen) < len(wanted):
            skipped.append(f"{dataset}: has {ds.n_splits} splits; skipped split(s) "
                           + ",".join(str(k) for k in wanted if k >= ds.n_splits))
        n_epochs = int(epochs) if epochs is not None else ds.n_epochs
        info = DatasetInfo(dataset, ds.n_hidden, n_epochs, ds.n_features, len(ds.train_indices[0]))
        for method in runnable:
            cost = estimated_seconds(method, info)
            size = batch_splits if method in BATCHED else 1
            for group in (tuple(chosen[i : i + size]) for i in range(0, len(chosen), size)):
                tasks.append(Task(n, method, dataset, group, ds.n_hidden, n_epochs, ds.n_features,
                                  len(ds.train_indices[group[0]]), data_dir, cost * len(group), tuple(calibrate)))
                n += 1
    if not tasks:
        raise ValueError("the selection holds no task (check --splits against the datasets' split counts)")
    return order_tasks(tasks), skipped


def order_tasks(tasks: list) -> list:
    """Longest first, except that the first fit of each (method, dataset) comes before all the
    others: two workers then compile different programs at the start, and each later fit finds
    its program in the persistent XLA cache instead of compiling it a second time."""
    tasks = sorted(tasks, key=lambda t: (-t.estimate_s, t.id))  # within one cost: dataset, split order
    seen, first, rest = set(), [], []
    for task in tasks:
        group = (task.method, task.dataset)
        (rest if group in seen else first).append(task)
        seen.add(group)
    return first + rest


# --------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------


def next_task(pending: list, seen: set, started: set = frozenset(), finished: set = frozenset()):
    """The task a free worker runs next, by (method, dataset) group:

    1. a group nobody has started (``order_tasks``: its first fit, longest first), so that every
       program is compiled early, once, by one of the workers;
    2. a group this worker has run before (its program is traced and loaded here already);
    3. a group with a finished fit (its program is in the persistent XLA cache);
    4. anything left (a group another worker is still compiling: compiled twice).
    """
    group = lambda task: (task.method, task.dataset)  # noqa: E731
    for wanted in (lambda g: g not in started, lambda g: g in seen, lambda g: g in finished, lambda g: True):
        for task in pending:
            if wanted(group(task)):
                return task
    return None

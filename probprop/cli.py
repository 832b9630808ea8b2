"""The ``probprop`` command line.

    probprop demo      [--out DIR] [--epochs 40]
    probprop fit       DATA.csv --target COLUMN [--hidden 50] [--epochs 40] [--noise learn] [--seed 0] -o MODEL.probprop
    probprop predict   MODEL.probprop NEW.csv [-o predictions.csv] [--level 0.9]
    probprop evaluate  MODEL.probprop TEST.csv --target COLUMN
    probprop bench uci [--datasets all] [--splits all] [--methods pbp,bayesridge] [--workers N] [--out DIR]
    probprop bench speed [--out DIR] [--quick]
    probprop bench accelerator [--out DIR]

CSV files need a header row. Input problems (a missing file, an unreadable CSV, a missing
column, non-numeric or missing values, a corrupt model file) end with a one-line error and a
non-zero exit status, never a traceback; Ctrl-C ends a command with the line "interrupted" and
exit status 130.

Columns are matched to a model's features by name. A model fitted in Python from a NumPy array
has no feature names: ``predict`` and ``evaluate`` then refuse it unless ``--by-position`` says
that the CSV's feature columns are in the order the model was fitted with.

Text cells of output CSV files (the index labels, column names) that start with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return get a leading single quote, so that a spreadsheet shows
them as text instead of running them as formulas (OWASP's advice on CSV injection); numbers are
written as they are.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import sys
from pathlib import Path

import click

from probprop._version import __version__
from probprop.bench.methods import METHODS  # light: the adapters import their estimators lazily
from probprop.bench.uci import BATCH_SPLITS

__all__ = ["main"]

_EXISTING_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


# --------------------------------------------------------------------------------------
# Helpers: CSV input, option parsing
# --------------------------------------------------------------------------------------


def _pandas():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas ships with the test/CLI environment
        raise click.ClickException("reading CSV files needs pandas: pip install pandas") from None
    return pd


def read_csv(path: Path, index_col: str | None = None):
    """Read a CSV with a header row; any failure is a one-line ClickException."""
    pd = _pandas()
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise click.ClickException(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise click.ClickException(f"{path}: the file is empty (expected a CSV file with a header row)") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{path}: not a readable CSV file (not text: undecodable bytes)") from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise click.ClickException(f"{path}: not a readable CSV file ({_first_line(err)})") from None
    if frame.shape[1] == 0:
        raise click.ClickException(f"{path}: no columns found (expected a CSV file with a header row)")
    if len(frame) == 0:
        raise click.ClickException(f"{path}: the CSV file has a header but no data rows")
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed and index_col is None and list(frame.columns).index(unnamed[0]) == 0 and len(unnamed) == 1:
        # a file written by pandas with its index: the first, unnamed column is that index
        frame = frame.set_index(unnamed[0])
        frame.index.name = None
    if index_col is not None:
        if index_col not in frame.columns:
            raise click.ClickException(f"{path}: no column named {index_col!r} (for --index-col); "
                                       f"columns: {_names(frame.columns)}")
        frame = frame.set_index(index_col)
    return frame


def numeric_columns(frame, columns, path: Path):
    """The columns as a float64 DataFrame; non-numeric, missing or infinite values are errors naming the column."""
    import numpy as np

    pd = _pandas()
    out = {}
    for column in columns:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_complex_dtype(values):
            converted = pd.to_numeric(values, errors="coerce")
            bad = values[converted.isna() & values.notna()]
            if len(bad):
                position = list(values.index).index(bad.index[0]) + 1
                raise click.ClickException(
                    f"{path}: column {column!r} has non-numeric values (e.g. {bad.iloc[0]!r} in data row {position})"
                )
            values = converted
        values = values.astype(np.float64)
        missing = values.isna().to_numpy()
        if missing.any():
            first = int(np.flatnonzero(missing)[0]) + 1
            raise click.ClickException(
                f"{path}: column {column!r} has {int(missing.sum())} missing (NaN) value(s), first in data row {first}"
            )
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            raise click.ClickException(f"{path}: column {column!r} has {int(infinite.sum())} infinite value(s)")
        out[str(column)] = values.to_numpy()
    return pd.DataFrame(out, index=frame.index)


#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value):
    """A text cell that a spreadsheet would run as a formula, quoted as text ('=...); anything
    else (numbers included, negative ones too) unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def safe_csv_frame(frame):
    """``frame`` with its text cells, column names and index labels protected by :func:`_safe_cell`."""
    frame = frame.copy()
    frame.columns = [_safe_cell(c) for c in frame.columns]
    frame.index = frame.index.map(_safe_cell)
    frame.index.name = _safe_cell(frame.index.name)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(_safe_cell)
    return frame


def _names(columns, limit: int = 12) -> str:
    columns = [str(c) for c in columns]
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _parse_hidden(ctx, param, values):
    if not values:
        return (50,)
    units = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or int(part) < 1:
                raise click.BadParameter(
                    f"{value!r}: expected positive integers, e.g. --hidden 50, --hidden 50,50 "
                    "(or --hidden \"\" for no hidden layer)"
                )
            units.append(int(part))
    return tuple(units)


def _parse_noise(ctx, param, value):
    if value is None or str(value).strip().lower() == "learn":
        return "learn"
    try:
        variance = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected 'learn' or a positive number (a noise variance)") from None
    if not (math.isfinite(variance) and variance > 0):
        raise click.BadParameter(f"{value!r}: the noise variance must be a positive, finite number")
    return variance


def _parse_level(ctx, param, value):
    if not (isinstance(value, float) and math.isfinite(value) and 0 < value < 1):
        raise click.BadParameter(f"{value!r}: the interval's mass must be a number strictly between 0 and 1, e.g. 0.9")
    return value


def _load_model(path: Path):
    from probprop.io import load_model

    try:
        return load_model(path)  # whichever probprop estimator the file holds
    except FileNotFoundError:
        raise click.ClickException(f"{path}: no such model file") from None
    except (ValueError, OSError, KeyError, TypeError) as err:
        text = _first_line(err)
        if str(path) not in text:
            text = f"{path}: {text}"
        raise click.ClickException(f"cannot read the model: {text}") from None


def _model_features(model, frame, path: Path, ignore=(), by_position: bool = False):
    """The model's feature columns of ``frame``, as float64: matched by name, or (a model without
    feature names, with ``by_position``) taken in order."""
    names = getattr(model, "feature_names_in_", None)
    available = [c for c in frame.columns if c not in ignore]
    if names is not None:
        names = [str(n) for n in names]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise click.ClickException(
                f"{path}: missing the model's feature column(s) {_names(missing)} "
                f"(the model was fit on {_names(names)})"
            )
        extra = [c for c in available if c not in names]
        if extra:
            click.echo(f"note: ignoring column(s) the model does not use: {_names(extra)}", err=True)
        return numeric_columns(frame, names, path)
    if not by_position:
        raise click.ClickException(
            f"the model was fitted without feature names (from an array), so {path}'s columns can only be "
            f"matched by position: pass --by-position if its {len(available)} feature column(s) "
            f"{_names(available)} are in the order the model was fitted with"
        )
    if len(available) != model.n_features_in_:
        raise click.ClickException(
            f"{path}: has {len(available)} feature column(s), the model expects {model.n_features_in_} "
            "(the model has no feature names, so columns are taken in order)"
        )
    click.echo(f"note: the model has no feature names; taking {_names(available)} as its features, in this order",
               err=True)
    return numeric_columns(frame, available, path).to_numpy()


def _predictive(model, X, path: Path):
    """``model.predict_dist(X)``; inputs the model cannot represent are a one-line error."""
    try:
        return model.predict_dist(X)
    except ValueError as err:
        raise click.ClickException(f"{path}: cannot predict: {_first_line(err)}") from None


_BY_POSITION_HELP = ("Take the CSV's feature columns in order when the model has no feature names (fitted in "
                     "Python from an array); without it such a model is refused.")


def _command_line(ctx: click.Context) -> str:
    """The command as typed, when run as the console script or ``python -m probprop.cli``."""
    prog = Path(sys.argv[0]).name if sys.argv else ""
    if prog in ("probprop", "probprop.exe"):
        return shlex.join(["probprop", *sys.argv[1:]])
    if prog in ("cli.py", "__main__.py"):
        return shlex.join(["python", "-m", "probprop.cli", *sys.argv[1:]])
    parts = ["probprop", *ctx.command_path.split()[1:]]
    for name, value in ctx.params.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


class _Interrupted(BaseException):
    """Ctrl-C, raised by the command line's own SIGINT handler (click would turn a
    KeyboardInterrupt into "Aborted!" and exit status 1)."""


def _on_sigint(signum, frame):
    raise _Interrupted


class _Main(click.Group):
    """The ``probprop`` group: Ctrl-C ends any command with the line "interrupted" and exit status
    130 (128 + SIGINT), no traceback; files being written are cleaned up first (the exception
    unwinds through them), then the process ends at once, without waiting on JAX's threads."""

    def main(self, *args, **kwargs):
        try:
            previous = signal.signal(signal.SIGINT, _on_sigint)
        except ValueError:  # not the main thread: leave Ctrl-C as it is
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, **kwargs)
        except (_Interrupted, KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the exit
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
            os._exit(130)
        finally:
            signal.signal(signal.SIGINT, previous)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="probprop")
def main():
    """Bayesian neural networks by probabilistic backpropagation (PBP), in JAX."""
    from probprop.learners.base import float64_process

    float64_process()  # the command line is probprop's own process


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("probprop-demo"),
              show_default=True, help="Folder for results.csv, report.md and the plots.")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True, help="PBP training epochs.")
def demo(out, epochs):
    """Fit PBP on scikit-learn's diabetes data (next to BayesianRidge) and on the cubic toy; write a report.

    Offline: uses only data shipped with scikit-learn and probprop.
    """
    from probprop.demo import format_table, run_demo

    try:
        rows = run_demo(out, epochs=epochs, log=lambda text: click.echo(text, err=True))
    except (OSError, ValueError) as err:
        raise click.ClickException(_first_line(err)) from None
    click.echo("")
    click.echo(format_table(rows))
    click.echo("")
    click.echo(f"wrote {out}/ (results.csv, report.md, toy_fit.png, calibration.png, pit.png, intervals.png)")


@main.command()
@click.argument("data", type=_EXISTING_FILE)
@click.option("--target", "-t", required=True, help="Name of the column to predict.")
@click.option("--hidden", multiple=True, callback=_parse_hidden, metavar="UNITS",
              help="Hidden units per layer: repeat or comma-separate (--hidden 50,50); --hidden \"\" for none. "
                   "[default: 50]")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True, help="Training epochs.")
@click.option("--noise", default="learn", callback=_parse_noise, show_default=True,
              help="'learn' (Gamma prior on the noise precision) or a fixed noise variance in units of the target squared.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (initial weights, data order).")
@click.option("--index-col", default=None, help="A column holding row labels (not a feature).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to save the model. [default: DATA with suffix .probprop]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def fit(data, target, hidden, epochs, noise, seed, index_col, output, quiet):
    """Fit a PBP network to DATA (a CSV with a header row) and save it.

    Every column other than --target (and --index-col) is a feature.
    """
    import numpy as np

    from probprop.estimators import PBPRegressor

    frame = read_csv(data, index_col)
    if target not in frame.columns:
        raise click.ClickException(f"{data}: no target column {target!r}; columns: {_names(frame.columns)}")
    features = [c for c in frame.columns if c != target]
    if not features:
        raise click.ClickException(f"{data}: no feature columns besides the target {target!r}")
    X = numeric_columns(frame, features, data)
    y = numeric_columns(frame, [target], data)[str(target)].to_numpy()
    if len(y) < 2:
        raise click.ClickException(f"{data}: need at least 2 data rows to fit, got {len(y)}")
    output = output or Path(data).with_suffix(".probprop")
    model = PBPRegressor(hidden=hidden, epochs=epochs, noise=noise, random_state=seed, verbose=not quiet)
    try:
        model.fit(X, y)
    except ValueError as err:
        raise click.ClickException(f"cannot fit: {_first_line(err)}") from None
    try:
        model.save(output)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"cannot write the model to {output}: {_first_line(err)}") from None
    mean = model.predict(X)
    shape = "-".join(str(n) for n in (X.shape[1], *hidden, 1))
    click.echo(
        f"fitted PBP {shape} on {len(y)} rows x {X.shape[1]} features of {data} ({epochs} epochs); "
        f"training RMSE {float(np.sqrt(np.mean((y - mean) ** 2))):.4g}, "
        f"noise std {math.sqrt(model.noise_variance_):.4g}"
    )
    click.echo(f"saved {output}")


@main.command()
@click.argument("model_path", metavar="MODEL", type=_EXISTING_FILE)
@click.argument("data", type=_EXISTING_FILE)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the predictions CSV. [default: standard output]")
@click.option("--level", type=float, callback=_parse_level, default=0.9,
              show_default=True, help="Mass of the central interval (lower, upper), strictly between 0 and 1.")
@click.option("--index-col", default=None, help="A column holding row labels (copied to the output).")
@click.option("--by-position", is_flag=True, help=_BY_POSITION_HELP)
def predict(model_path, data, output, level, index_col, by_position):
    """Predict DATA (a CSV with the model's feature columns) with a saved MODEL.

    Writes the input's index and the columns mean, std, epistemic_std, lower and upper. Columns
    are matched to the model's features by name; a model without feature names needs
    --by-position. Text cells starting with =, +, -, @ are written with a leading ' (no
    spreadsheet formulas).
    """
    pd = _pandas()
    model = _load_model(model_path)
    frame = read_csv(data, index_col)
    X = _model_features(model, frame, data, by_position=by_position)
    dist = _predictive(model, X, data)
    lower, upper = dist.interval(level)
    result = pd.DataFrame(
        {"mean": dist.mean, "std": dist.std, "epistemic_std": dist.epistemic_std, "lower": lower, "upper": upper},
        index=frame.index,
    )
    label = _safe_cell(frame.index.name or "index")
    result = safe_csv_frame(result)
    if output is None:
        click.echo(result.to_csv(index_label=label), nl=False)
        return
    try:
        result.to_csv(output, index_label=label)
    except OSError as err:
        raise click.ClickException(f"cannot write {output}: {_first_line(err)}") from None
    click.echo(f"wrote {len(result)} predictions ({level:.0%} intervals) to {output}")


@main.command()
@click.argument("model_path", metavar="MODEL", type=_EXISTING_FILE)
@click.argument("data", type=_EXISTING_FILE)
@click.option("--target", "-t", required=True, help="Name of the column holding the true values.")
@click.option("--index-col", default=None, help="A column holding row labels (not a feature).")
@click.option("--by-position", is_flag=True, help=_BY_POSITION_HELP)
def evaluate(model_path, data, target, index_col, by_position):
    """Score a saved MODEL on labelled DATA: RMSE, test LL, CRPS, coverage, calibration.

    Columns are matched to the model's features by name; a model without feature names needs
    --by-position."""
    from probprop.metrics import all_metrics

    model = _load_model(model_path)
    frame = read_csv(data, index_col)
    if target not in frame.columns:
        raise click.ClickException(f"{data}: no target column {target!r}; columns: {_names(frame.columns)}")
    X = _model_features(model, frame, data, ignore=(target,), by_position=by_position)
    y = numeric_columns(frame, [target], data)[str(target)].to_numpy()
    dist = _predictive(model, X, data)
    metrics = all_metrics(y, dist.mean, dist.std)
    width = max(len(k) for k in metrics)
    click.echo(f"{len(y)} rows of {data}, target {target!r}")
    click.echo(f"{'metric'.ljust(width)}  value")
    click.echo(f"{'-' * width}  {'-' * 10}")
    for key, value in metrics.items():
        click.echo(f"{key.ljust(width)}  {value:.6g}")


@main.group()
def bench():
    """Benchmarks: the UCI regression suite, and update throughput."""


@bench.command("report")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
def bench_report(folder):
    """Re-render FOLDER/report.md and its plots from FOLDER/results.csv and meta.json."""
    from probprop.bench.uci import rerender

    try:
        path = rerender(folder)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}")


@bench.command("uci")
@click.option("--datasets", default="all", show_default=True,
              help="Comma list of datasets (boston, concrete, energy, kin8nm, naval, power, protein, wine, yacht) or 'all'.")
@click.option("--splits", default="all", show_default=True, help="'all', a range '0-4', or a list '0,1,2'.")
@click.option("--methods", default="pbp,bayesridge", show_default=True,
              help=f"Comma list of {', '.join(METHODS)} (or 'all').")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes, one pinned core each. [default: number of usable cores]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-out"),
              show_default=True, help="Folder for results.csv, report.md and the plots.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding the UCI dataset folders. [default: $PROBPROP_UCI_DIR, shared/data/uci, or the user cache]")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override the protocol's epochs (n_epochs.txt) for PBP.")
@click.option("--download", is_flag=True, help="Fetch missing datasets (checksum-verified).")
@click.option("--batch-splits", type=click.IntRange(min=1), default=BATCH_SPLITS, show_default=True,
              help="Splits of a dataset that PBP fits together as one batched program (1: each on its own).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def bench_uci(ctx, datasets, splits, methods, workers, out, data_dir, epochs, download, batch_splits, no_progress):
    """Run methods x datasets x splits of the UCI regression benchmark (the PBP paper's protocol)."""
    from probprop.bench.stats import SHORT_NAMES, summarise
    from probprop.bench.uci import run_bench

    try:
        result = run_bench(
            out=out, datasets=datasets, splits=splits, methods=methods, workers=workers,
            data_dir=data_dir, epochs=epochs, download=download, command=_command_line(ctx),
            progress=not no_progress, log=lambda text: click.echo(text, err=True), batch_splits=batch_splits,
        )
    except FileNotFoundError as err:  # the data-location message lists where it looked
        raise click.ClickException(f"{str(err).strip()} (On the command line: --data-dir DIR, or --download.)") from None
    except (ValueError, RuntimeError, OSError) as err:
        raise click.ClickException(_first_line(err)) from None

    pd = _pandas()
    frame = pd.DataFrame(result.rows)
    if len(frame):
        rmse, ll = summarise(frame, "rmse"), summarise(frame, "log_likelihood")
        click.echo(f"{'dataset':<10} {'method':<11} {'splits':>6} {'RMSE':>10} {'test LL':>9}")
        for (dataset, method), (mean, _, n) in rmse.items():
            click.echo(f"{SHORT_NAMES.get(dataset, dataset):<10} {method:<11} {n:>6} {mean:>10.4g} "
                       f"{ll[(dataset, method)][0]:>9.3f}")
    click.echo(f"total wall time {result.wall_seconds:.1f} s; wrote {out}/results.csv and {out}/report.md")
    if result.failures:
        raise click.ClickException(f"{len(result.failures)} fit(s) failed; see {out}/failures.csv and {out}/report.md")


@bench.command("speed")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for speed.md and speed.json.")
@click.option("--core", type=click.IntRange(min=0), default=0, show_default=True, help="CPU core to pin the workers to.")
@click.option("--quick", is_flag=True, help="Fewer repeats and a smaller memory fit.")
@click.pass_context
def bench_speed(ctx, out, core, quick):
    """Update throughput of the compiled engine against the NumPy reference (pinned workers)."""
    from probprop.bench import speed

    try:
        code = speed.run(out=out, core=core, quick=quick, command=_command_line(ctx))
    except (RuntimeError, OSError, ValueError) as err:
        raise click.ClickException(_first_line(err)) from None
    ctx.exit(code)


@bench.command("accelerator")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for accelerator.md and accelerator.json.")
@click.pass_context
def bench_accelerator(ctx, out):
    """The engine on a GPU against the same machine's CPU (needs a JAX build that sees a GPU)."""
    from probprop.bench import accelerator

    code = accelerator.run(out=out, command=_command_line(ctx))
    if code == 2:
        raise click.ClickException("no accelerator visible to JAX here; install a GPU build of jax (e.g. jax[cuda13])")
    ctx.exit(code)


if __name__ == "__main__":
    main()

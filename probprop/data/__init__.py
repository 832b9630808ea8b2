"""Datasets: the UCI regression benchmark, synthetic toys, and scikit-learn's diabetes data.

* :func:`load_uci` / :data:`DATASETS` / :func:`find_data_dir` / :func:`download_uci` - the nine
  UCI benchmark datasets with the fixed train/test splits of the PBP and MC-dropout papers.
* :func:`make_toy_1d`, :func:`make_linear_gaussian`, :func:`toy_grid` - synthetic problems.
* :func:`load_diabetes` - scikit-learn's bundled diabetes data (offline).
"""

from __future__ import annotations

import numpy as np

from probprop.data.toy import make_linear_gaussian, make_toy_1d, toy_grid
from probprop.data.uci import (
    DATASETS,
    ChecksumError,
    UCIDataset,
    canonical_name,
    download_uci,
    find_data_dir,
    load_uci,
)

__all__ = [
    "DATASETS",
    "ChecksumError",
    "UCIDataset",
    "canonical_name",
    "download_uci",
    "find_data_dir",
    "load_diabetes",
    "load_uci",
    "make_linear_gaussian",
    "make_toy_1d",
    "toy_grid",
]


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled diabetes regression data as float64 ``(X, y)``.

    442 rows, 10 features (already mean-centred and scaled by scikit-learn), target a disease
    progression score. Read from the files shipped with scikit-learn; no network access.
    """
    from sklearn.datasets import load_diabetes as _sk_load_diabetes

    X, y = _sk_load_diabetes(return_X_y=True)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)

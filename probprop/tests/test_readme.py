"""Every Python code block of the README runs, in order, in one namespace (so the front page
stays true). The blocks use names a reader would have (``X_train``, ``y_train``, ...): they are
defined here from a small synthetic problem with the README's 13 features."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3
    assert any("PBPRegressor" in b for b in blocks)


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks write model files
    rng = np.random.default_rng(0)
    w = rng.normal(size=13)

    def data(n):
        X = rng.normal(size=(n, 13))
        return X, X @ w + np.sin(X[:, 0]) + 0.3 * rng.standard_normal(n)

    X_train, y_train = data(200)
    X_test, y_test = data(50)
    X_more, y_more = data(40)
    namespace = {
        "X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test,
        "X_more": X_more, "y_more": y_more,
        "X_noisy": X_test + 0.3 * X_train.std(axis=0) * rng.standard_normal(X_test.shape),
        # the functional core works in standardised units
        "X": (X_train - X_train.mean(0)) / X_train.std(0), "y": (y_train - y_train.mean()) / y_train.std(),
    }
    for i, block in enumerate(python_blocks(README.read_text()), 1):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102
        except Exception as err:  # pragma: no cover - the failure message
            raise AssertionError(f"README python block {i} fails: {type(err).__name__}: {err}\n{block}") from err

"""The image benchmark's job on a few hundred training images (the full run is `probprop bench images`)."""

import numpy as np
import pytest

from probprop.bench import images
from probprop.data.images import find_images_dir


@pytest.fixture(scope="module")
def have_images():
    try:
        find_images_dir("mnist")
        find_images_dir("fashion-mnist")
    except FileNotFoundError:
        pytest.skip("no shared/data image sets here")


@pytest.mark.parametrize("method", ["pbp-1pass", "ensemble", "tagi-1pass", "mcdropout"])
def test_a_job_reports_every_metric_and_beats_chance(have_images, method):
    row, arrays = images.job("mnist", method, 0, 1, 300, None, test_rows=400)
    assert row["error"] < 0.5  # chance is 0.9
    for name in ("fashion-mnist", "gaussian-noise", "uniform-noise"):
        assert 0 <= row[f"ood_{name}_max_probability_auroc"] <= 1
        assert 0 <= row[f"ood_{name}_entropy_aupr"] <= 1
    assert ("ood_fashion-mnist_mutual_information_auroc" in row)
    assert np.allclose(arrays["proba"].sum(1), 1)
    text = images.report(__import__("pandas").DataFrame([row]), "probprop bench images", 1.0)
    assert f"| mnist | {method} |" in text


def test_the_pytagi_job_where_pytagi_is_installed(have_images):
    """pytagi's hierarchical-softmax classifier (``make pytagi``; skipped without it): its
    probabilities are a distribution per row and it learns something from 2,000 images."""
    from probprop.bench.methods import MethodUnavailable, check_available

    try:
        check_available("pytagi")
    except MethodUnavailable as err:
        pytest.skip(str(err))
    row, arrays = images.job("mnist", "pytagi", 0, 2, 2000, None, test_rows=400)
    assert row["error"] < 0.5
    assert np.allclose(arrays["proba"].sum(1), 1) and np.all(arrays["proba"] >= 0)
    assert "ood_fashion-mnist_mutual_information_auroc" not in row

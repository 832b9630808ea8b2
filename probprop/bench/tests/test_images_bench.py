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


@pytest.mark.parametrize("method", ["pbp-1pass", "map", "ensemble", "tagi-1pass", "mcdropout"])
def test_a_job_reports_every_metric_and_beats_chance(have_images, method):
    row, arrays = images.job("mnist", method, 0, 1, 300, None, test_rows=400)
    assert row["error"] < 0.5  # chance is 0.9
    for name in ("fashion-mnist", "gaussian-noise", "uniform-noise"):
        assert 0 <= row[f"ood_{name}_max_probability_auroc"] <= 1
        assert 0 <= row[f"ood_{name}_entropy_aupr"] <= 1
    # a single network (scikit-learn's "map") has no epistemic scores to rank by
    assert ("ood_fashion-mnist_mutual_information_auroc" in row) == (method != "map")
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


def test_hidden_sets_the_dense_networks_and_the_report_names_them(have_images):
    """``--hidden``: the MLP methods get those layers, the CNN methods keep theirs, the row and the
    report name the network; a fourth layer or a zero width is refused before any work."""
    row, _ = images.job("mnist", "tagi-1pass", 0, 1, 200, None, hidden=(20, 30), test_rows=100)
    assert row["network"] == "784-20-30-10" and row["error"] < 0.85  # chance: 0.9
    model = images._probprop_model("tagi", 1, 0, (20, 30))
    assert model.hidden == (20, 30)
    for cnn in ("map-cnn", "tagi-cnn"):
        model = images._probprop_model(cnn, 1, 0, (20, 30))
        assert (model.hidden, model.conv) == (images.CNN_HIDDEN, images.CNN_CONV)
    text = images.report(__import__("pandas").DataFrame([row]), "probprop bench images", 1.0)
    assert "Networks 784-20-30-10 (ReLU);" in text and "two jobs at a time" in text
    one = images.report(__import__("pandas").DataFrame([row]), "probprop bench images", 1.0, workers=1)
    assert "one job at a time" in one
    for bad in ((), (10, 10, 10, 10), (0,)):
        with pytest.raises(ValueError, match="hidden must be one to three"):
            images.run(out=None, datasets=["mnist"], methods=["tagi"], hidden=bad)


def test_the_cli_passes_hidden_and_refuses_a_bad_width(tmp_path):
    from click.testing import CliRunner

    from probprop.cli import main

    result = CliRunner().invoke(main, ["bench", "images", "--hidden", "10,x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "expected positive integers" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["bench", "images", "--hidden", "5,5,5,5", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "hidden must be one to three" in result.output

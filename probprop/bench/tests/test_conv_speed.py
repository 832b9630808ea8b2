"""The convolution-form benchmark on a few images (the full run is `probprop bench conv-speed`)."""

import numpy as np
import pandas as pd
import pytest

from probprop.bench import conv_speed
from probprop.data.images import find_images_dir
from probprop.layers import conv


@pytest.fixture(scope="module")
def have_images():
    try:
        find_images_dir("mnist")
    except FileNotFoundError:
        pytest.skip("no shared/data image sets here")


def test_both_forms_fit_the_same_pbp_cnn_and_the_report_compares_them(have_images, monkeypatch):
    shipped, xla_calls = conv.GATHER_MAX, []
    xla_conv = conv.lax.conv_general_dilated
    monkeypatch.setattr(conv.lax, "conv_general_dilated", lambda *a, **k: xla_calls.append(1) or xla_conv(*a, **k))
    rows = []
    for form in conv_speed.case_forms("avg"):
        xla_calls.clear()
        conv._patch_index.cache_clear()
        rows.append(conv_speed.measure("pbp", "avg", form, 24, 16))  # 16 test rows: all gathered
        assert conv.GATHER_MAX == shipped  # restored after each job
        # each form traced its own programs: the gathered one never convolves, the other never gathers
        assert (len(xla_calls) > 0, conv._patch_index.cache_info().misses > 0) == (form == "xla", form == "gathered")
    gathered, xla = (row["proba"] for row in rows)
    assert gathered.shape == (16, 10) and np.allclose(gathered.sum(1), 1)
    np.testing.assert_allclose(xla, gathered, rtol=0, atol=1e-10)  # the same model, to rounding
    assert np.abs(gathered - 0.1).max() > 1e-3  # and one that learned something from its 24 images
    frame = pd.DataFrame([{k: v for k, v in row.items() if k != "proba"} for row in rows])
    frame["steady_seconds"] = [1.0, 3.0]
    frame["proba_max_diff"] = [0.0, float(np.abs(xla - gathered).max())]
    text = conv_speed.report(frame, "probprop bench conv-speed", 1.0)
    assert "| pbp | avg | gathered | 24 |" in text and "| 3.00x |" in text


def test_max_pooling_pulled_back_by_autodiff_swaps_in_the_plain_chain(have_images, monkeypatch):
    """The "autodiff-pool" form swaps in the plain chain (spied on) and restores the shipped one;
    that both pullbacks are the same is tested in moments/tests/test_maximum.py."""
    from probprop.moments import maximum

    shipped, plain_calls = conv.max_pool_moments, []
    plain = maximum.plain_max_pool_moments
    monkeypatch.setattr(maximum, "plain_max_pool_moments", lambda *a: plain_calls.append(1) or plain(*a))
    row = conv_speed.measure("pbp", "max", "autodiff-pool", 12, 8)
    assert conv.max_pool_moments is shipped and plain_calls
    assert len(row["proba"]) == 8 and np.allclose(row["proba"].sum(1), 1)
    assert np.abs(row["proba"] - 1 / row["proba"].shape[1]).max() > 1e-3  # learned something from 12 images


def test_unknown_learner_and_form_are_refused():
    # the image benchmark's networks, one pass; MAP's batches as the report states them
    assert conv_speed._model("map", "avg").get_params()["batch_size"] == conv_speed.MAP_BATCH
    assert conv_speed._model("pbp", "max").get_params()["pooling"] == "max"
    with pytest.raises(ValueError, match="unknown learner"):
        conv_speed._model("dvi", "avg")
    with pytest.raises(ValueError, match="unknown form"):
        conv_speed.measure("pbp", "avg", "fft", 4, 4)
    with pytest.raises(ValueError, match="unknown form 'autodiff-pool' with pooling='avg'"):
        conv_speed.measure("pbp", "avg", "autodiff-pool", 4, 4)
    with pytest.raises(ValueError, match="at least 1"):
        conv_speed.run(rows=0)


def test_the_command_line_says_what_is_missing_without_a_traceback(tmp_path):
    from click.testing import CliRunner

    from probprop.cli import main

    result = CliRunner().invoke(main, ["bench", "conv-speed", "--data-dir", str(tmp_path / "nowhere"),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "not a folder holding the mnist IDX files" in result.output and "--data-dir" in result.output
    result = CliRunner().invoke(main, ["bench", "conv-speed", "--rows", "0", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--rows" in result.output

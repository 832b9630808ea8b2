"""Each plot returns a Figure and writes a non-empty PNG (headless)."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from probprop import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gaussian_data():
    rng = np.random.default_rng(0)
    mean = rng.normal(0.0, 2.0, 500)
    std = rng.uniform(0.3, 1.5, 500)
    y = rng.normal(mean, 0.8 * std)
    return y, mean, std


def _assert_png(path):
    assert path.is_file()
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(PNG_MAGIC)


def test_plot_fit_1d(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.uniform(-3, 3, 40)
    y_train = np.sin(x_train) + 0.1 * rng.standard_normal(40)
    x_test = rng.uniform(-4, 4, 10)
    y_test = np.sin(x_test)
    x_grid = np.linspace(4, -4, 100)  # unsorted on purpose
    mean, std = np.sin(x_grid), 0.1 + 0.1 * np.abs(x_grid)
    path = tmp_path / "nested" / "dir" / "fit.png"
    fig = plots.plot_fit_1d(
        x_train, y_train, x_grid, mean, std, x_test=x_test, y_test=y_test, title="t",
        path=path,
    )  # fmt: skip
    assert isinstance(fig, Figure)
    _assert_png(path)
    assert fig.axes[0].get_title() == "t"


def test_plot_fit_1d_without_test_points_or_path():
    x = np.linspace(0, 1, 5)
    fig = plots.plot_fit_1d(x, x, x, x, np.ones(5))
    assert isinstance(fig, Figure)


def test_plot_fit_1d_rejects_half_test_set():
    x = np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="x_test and y_test"):
        plots.plot_fit_1d(x, x, x, x, np.ones(5), x_test=x)


def test_plot_fit_1d_names_mismatched_grid():
    x = np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="x_grid has 5, mean has 5, std has 4"):
        plots.plot_fit_1d(x, x, x, x, np.ones(4))


def test_plot_calibration(tmp_path, gaussian_data):
    path = tmp_path / "cal.png"
    fig = plots.plot_calibration(*gaussian_data, path=path)
    assert isinstance(fig, Figure)
    _assert_png(path)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("Miscalibration area = ") for t in texts)


def test_plot_pit_histogram(tmp_path, gaussian_data):
    path = tmp_path / "pit.png"
    fig = plots.plot_pit_histogram(*gaussian_data, bins=10, path=path, title="PIT")
    assert isinstance(fig, Figure)
    _assert_png(path)
    assert len(fig.axes[0].patches) == 10


def test_plot_intervals_ordered(tmp_path, gaussian_data):
    path = tmp_path / "intervals.png"
    fig = plots.plot_intervals_ordered(*gaussian_data, level=0.9, max_points=100, path=path)
    assert isinstance(fig, Figure)
    _assert_png(path)
    assert "100 of 500 shown" in fig.axes[0].get_xlabel()


def test_plots_validate_inputs(gaussian_data):
    y, mean, std = gaussian_data
    with pytest.raises(ValueError, match="std must be strictly positive"):
        plots.plot_calibration(y, mean, -std)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        plots.plot_pit_histogram(y, mean, std, bins=0)
    with pytest.raises(ValueError, match="level"):
        plots.plot_intervals_ordered(y, mean, std, level=95)

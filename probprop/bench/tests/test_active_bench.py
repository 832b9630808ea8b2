"""`probprop bench active` end to end on a small budget, and the bmdal-reg adapter."""

import numpy as np
import pandas as pd
import pytest

from probprop.bench import active


def test_bench_active_runs_and_reports(tmp_path):
    out = active.run(out=tmp_path, datasets=["yacht"], splits=2, batches=[10], rules=["random", "greedy"], budget=20,
                     workers=1, command="probprop bench active (test)", log=lambda text: None)
    frame = pd.read_csv(out / "results.csv")
    # 2 splits x 2 rules x (start + 2 batches)
    assert len(frame) == 12 and set(frame["labels"]) == {20, 30, 40}
    first = frame[frame["labels"] == 20]
    assert first.groupby("split")["rmse"].nunique().eq(1).all()  # every rule starts from the same rows
    report = (out / "report.md").read_text()
    assert "probprop bench active (test)" in report and "`greedy`: better than random on" in report
    assert (out / "rmse-curves-batch10.png").stat().st_size > 1000


def test_areas_are_relative_to_random():
    frame = pd.DataFrame({"dataset": "d", "batch": 10, "split": 0,
                          "rule": ["random"] * 3 + ["greedy"] * 3, "labels": [10, 20, 30] * 2,
                          "rmse": [4.0, 2.0, 2.0, 2.0, 1.0, 1.0], "ll": [-2.0, -1.0, -1.0, -1.0, -0.5, -0.5],
                          "select_seconds": 0.0})
    rel = active.areas(frame).set_index("rule")
    assert rel.loc["greedy", "rmse_area"] == pytest.approx(0.5) and rel.loc["random", "rmse_area"] == 1.0
    assert rel.loc["greedy", "ll_gain"] == pytest.approx(0.625)


def test_the_torch_copy_computes_pbps_mean_network():
    torch = pytest.importorskip("torch")
    from probprop import PBPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    model = PBPRegressor(hidden=(7,), epochs=3, random_state=0).fit(X, X[:, 0])
    Xs = model._standardise(X)
    (M1, M2) = (np.asarray(M) for M in model.state_.means)
    hidden = np.maximum(0.0, (Xs @ M1[:, :-1].T + M1[:, -1]) / 2.0)
    expected = (hidden @ M2[:, :-1].T + M2[:, -1]) / np.sqrt(8.0)
    got = active._torch_copy(model)(torch.as_tensor(Xs, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got.ravel(), expected.ravel(), atol=1e-5)

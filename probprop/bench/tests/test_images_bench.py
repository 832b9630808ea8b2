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


@pytest.mark.parametrize("method", ["pbp-1pass", "pbp-sep", "map", "ensemble", "tagi-1pass", "mcdropout", "laplace"])
def test_a_job_reports_every_metric_and_beats_chance(have_images, method):
    # stochastic EP learns less than ADF from one pass over few images (300 MNIST images: 56 % error
    # against 46 %): three passes
    (row,), (arrays,) = images.job("mnist", method, 0, 3 if method == "pbp-sep" else 1, 300, None, test_rows=400)
    assert row["error"] < 0.5  # chance is 0.9
    for name in ("fashion-mnist", "gaussian-noise", "uniform-noise"):
        assert 0 <= row[f"ood_{name}_max_probability_auroc"] <= 1
        assert 0 <= row[f"ood_{name}_entropy_aupr"] <= 1
    # a single network (scikit-learn's "map") has no epistemic scores to rank by
    assert ("ood_fashion-mnist_mutual_information_auroc" in row) == (method != "map")
    assert np.allclose(arrays["proba"].sum(1), 1)
    text = images.report(__import__("pandas").DataFrame([row]), "probprop bench images", 1.0)
    assert f"| mnist | {method} |" in text


def test_links_read_one_laplace_fit_several_ways(have_images):
    """``--links``: one fit of a Laplace method gives a row per link (named METHOD+LINK past "mc"),
    each the model read with that link_approx; other methods ignore them; a bad name is refused."""
    from probprop import LaplaceClassifier

    links = ("mc", "bridge_norm", "probit")
    rows, arrays = images.job("mnist", "laplace", 0, 3, 300, None, hidden=(20,), test_rows=200, links=links)
    assert [r["method"] for r in rows] == ["laplace", "laplace+bridge_norm", "laplace+probit"]
    assert len({r["nll"] for r in rows}) == 3 and all(r["error"] < 0.7 for r in rows)  # chance: 0.9
    # the rows are the same fitted model read each way (refitted here with the job's settings)
    from probprop.data.images import load_images

    X, y, Xt, yt = load_images("mnist", None, flat=True, scale=True)
    model = images._probprop_model("laplace", 3, 0, (20,))
    assert isinstance(model, LaplaceClassifier)
    model.fit(X[:300], y[:300])
    from probprop.metrics.classification import classification_metrics

    for row, row_arrays, link in zip(rows, arrays, links, strict=True):
        proba = model.set_params(link_approx=link).predict_proba(Xt[:200])
        assert abs(row["nll"] - classification_metrics(yt[:200], proba)["nll"]) < 1e-9, link
        np.testing.assert_allclose(row_arrays["proba"], proba, rtol=1e-12)  # each row's figures are its own
    (row,), _ = images.job("mnist", "tagi-1pass", 0, 1, 200, None, hidden=(10,), test_rows=100, links=links)
    assert row["method"] == "tagi-1pass"
    text = images.report(__import__("pandas").DataFrame(rows), "probprop bench images", 1.0)
    assert "| mnist | laplace+bridge_norm |" in text and "Networks 784-20-10 (ReLU);" in text
    assert "![reliability mnist laplace+probit](reliability-mnist-laplace+probit.png)" in text
    for bad in ((), ("mc", "mc"), ("softmax",), "mc,probit,mc"):
        with pytest.raises(ValueError, match="links must be distinct names among"):
            images.run(out=None, datasets=["mnist"], methods=["laplace"], links=bad)


def test_laplace_cnn_is_map_cnns_network_with_a_last_layer_posterior():
    """The Laplace rows' networks are trained exactly as the MAP rows' (same parameters and seed)."""
    la, point = images._probprop_model("laplace-cnn", 1, 0), images._probprop_model("map-cnn", 1, 0)
    assert {k: v for k, v in la.get_params().items() if k in point.get_params()} == point.get_params()
    assert la.n_samples == images.LAPLACE_SAMPLES and la.prior_precision is None and la.hessian_structure == "full"
    kron = images._probprop_model("laplace-kron-cnn", 1, 0)
    assert kron.get_params() == {**la.get_params(), "hessian_structure": "kron"}
    assert images._probprop_model("laplace-kron", 1, 0, (30,)).get_params() == {
        **images._probprop_model("laplace", 1, 0, (30,)).get_params(), "hessian_structure": "kron"}
    mola = images._probprop_model("laplace-ensemble-cnn", 1, 0, members=3)
    ensemble = images._probprop_model("deep-ensemble-cnn", 1, 0, members=3)
    assert {k: v for k, v in mola.get_params().items() if k in ensemble.get_params()} == ensemble.get_params()
    assert mola.n_members == 3 and mola.n_samples == images.LAPLACE_SAMPLES and mola.prior_precision is None


def test_the_pytagi_job_where_pytagi_is_installed(have_images):
    """pytagi's hierarchical-softmax classifier (``make pytagi``; skipped without it): its
    probabilities are a distribution per row and it learns something from 2,000 images."""
    from probprop.bench.methods import MethodUnavailable, check_available

    try:
        check_available("pytagi")
    except MethodUnavailable as err:
        pytest.skip(str(err))
    (row,), (arrays,) = images.job("mnist", "pytagi", 0, 2, 2000, None, test_rows=400)
    assert row["error"] < 0.5
    assert np.allclose(arrays["proba"].sum(1), 1) and np.all(arrays["proba"] >= 0)
    assert "ood_fashion-mnist_mutual_information_auroc" not in row


def test_hidden_sets_the_dense_networks_and_the_report_names_them(have_images):
    """``--hidden``: the MLP methods get those layers, the CNN methods keep theirs, the row and the
    report name the network; a fourth layer or a zero width is refused before any work."""
    (row,), _ = images.job("mnist", "tagi-1pass", 0, 1, 200, None, hidden=(20, 30), test_rows=100)
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
    result = CliRunner().invoke(main, ["bench", "images", "--members", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--members" in result.output and "Traceback" not in result.output


def test_members_reach_the_ensembles_and_the_rows(have_images, monkeypatch):
    """``--members``: the ensemble methods get that many members (scikit-learn's, counted by its
    fits inside a job, and probprop's) and the rows say so."""
    from sklearn.neural_network import MLPClassifier

    for method in ("deep-ensemble", "deep-ensemble-cnn"):
        assert images._probprop_model(method, 1, 0, (20,), members=3).n_members == 3
    assert images._probprop_model("deep-ensemble", 1, 0, (20,)).n_members == images.ENSEMBLE_MEMBERS
    fits = []
    fit = MLPClassifier.fit
    monkeypatch.setattr(MLPClassifier, "fit", lambda self, X, y: fits.append(1) or fit(self, X, y))
    (row,), _ = images.job("mnist", "ensemble", 0, 1, 200, None, hidden=(20,), members=3, test_rows=100)
    assert len(fits) == 3  # one network per member
    assert (row["members"], row["device"]) == (3, "cpu")  # scikit-learn's: on the CPU whatever JAX's default


def test_the_report_names_the_ensemble_size_and_an_accelerator():
    import pandas as pd

    row = {"dataset": "mnist", "method": "deep-ensemble-cnn", "seed": 0, "epochs": 1, "network": "cnn", "members": 3,
           "device": "cpu", "error": 0.1, "nll": 0.3, "brier": 0.1, "ece": 0.01, "ece_adaptive": 0.01,
           "misclassification_auroc": 0.9, "train_images_per_s": 1.0, "predict_images_per_s": 1.0,
           "scores_images_per_s": 1.0, "fit_seconds": 1.0}
    text = images.report(pd.DataFrame([row]), "probprop bench images", 1.0)
    assert "ensembles of 3 members;" in text and "JAX's default device" not in text
    gpu = images.report(pd.DataFrame([{**row, "device": "NVIDIA H200"}]), "probprop bench images", 1.0)
    assert "the probprop methods on JAX's default device, NVIDIA H200)" in gpu
    assert "## Speed (images per second, one core and the NVIDIA H200)" in gpu
    old = images.report(pd.DataFrame([{k: v for k, v in row.items() if k not in ("members", "device")}]), "c", 1.0)
    assert f"ensembles of {images.ENSEMBLE_MEMBERS} members;" in old  # results from before the column
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="members must be an integer of at least 2"):
            images.run(out=None, datasets=["mnist"], methods=["ensemble"], members=bad)


def test_a_rows_device_is_jax_default_for_probprop_methods_only(monkeypatch):
    import jax

    class Device:
        platform, device_kind = "gpu", "NVIDIA H200"

    assert images._device_name("tagi") == "cpu"  # CI
    monkeypatch.setattr(jax, "devices", lambda *a: [Device()])
    assert images._device_name("tagi") == "NVIDIA H200"
    assert images._device_name("map") == images._device_name("pytagi") == "cpu"
    with jax.default_device(jax.local_devices(backend="cpu")[0]):  # a default device set by the user
        assert images._device_name("tagi") == "cpu"


def test_the_cli_passes_members_to_the_run(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from probprop.cli import main

    seen = {}
    monkeypatch.setattr(images, "run", lambda **kwargs: seen.update(kwargs) or tmp_path)
    result = CliRunner().invoke(main, ["bench", "images", "--members", "7", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen["members"] == 7
    result = CliRunner().invoke(main, ["bench", "images", "--out", str(tmp_path)])
    assert seen["members"] == images.ENSEMBLE_MEMBERS  # the CLI's default is the module's
    assert seen["links"] == ["mc"]
    CliRunner().invoke(main, ["bench", "images", "--links", "mc, bridge_norm", "--out", str(tmp_path)])
    assert seen["links"] == ["mc", "bridge_norm"]


def test_the_sep_methods_are_pbp_by_stochastic_ep_on_the_same_networks():
    for adf, sep in (("pbp", "pbp-sep"), ("pbp-cnn", "pbp-sep-cnn")):
        a, b = images._probprop_model(adf, 4, 0), images._probprop_model(sep, 4, 0)
        assert a.inference == "adf" and b.inference == "sep"
        assert {**a.get_params(), "inference": "sep"} == b.get_params()
    assert "pbp-sep-cnn" in images.CNN_METHODS and "pbp-sep" not in images.CNN_METHODS


def test_the_max_pooling_cnn_is_pbp_cnn_with_max_pooling():
    a, b = images._probprop_model("pbp-cnn", 4, 0), images._probprop_model("pbp-cnn-max", 4, 0)
    assert a.pooling == "avg" and b.pooling == "max"
    assert {**a.get_params(), "pooling": "max"} == b.get_params()
    assert "pbp-cnn-max" in images.CNN_METHODS and "pbp-cnn-max" in images.FIGURE_METHODS
    import pandas as pd

    row = {"dataset": "mnist", "method": "pbp-cnn-max", "seed": 0, "epochs": 1, "network": "cnn", "members": 1,
           "device": "cpu", "error": 0.1, "nll": 0.3, "brier": 0.1, "ece": 0.01, "ece_adaptive": 0.01,
           "misclassification_auroc": 0.9, "train_images_per_s": 1.0, "predict_images_per_s": 1.0,
           "scores_images_per_s": 1.0, "fit_seconds": 1.0}
    text = images.report(pd.DataFrame([row]), "probprop bench images", 1.0)
    assert "pbp-cnn-max pools by max instead" in text
    assert "pools by max" not in images.report(pd.DataFrame([{**row, "method": "pbp-cnn"}]), "c", 1.0)


def test_the_shift_methods_learn_every_pass_from_freshly_shifted_images(have_images, monkeypatch):
    from probprop.data import images as data_images

    for shifted in images.SHIFT_METHODS:
        plain = shifted.removesuffix("-shift")
        assert images._probprop_model(plain, 4, 0).get_params() == images._probprop_model(shifted, 4, 0).get_params()
        assert shifted in images.METHODS and shifted in images.FIGURE_METHODS
        assert (shifted in images.CNN_METHODS) == (plain in images.CNN_METHODS)
    seen = []
    real = data_images.random_shifts

    def spy(X, max_shift, rng, *args, **kwargs):
        out = real(X, max_shift, rng, *args, **kwargs)
        seen.append((max_shift, out))
        return out

    monkeypatch.setattr(data_images, "random_shifts", spy)
    models, learned = [], []
    make = images._probprop_model

    def capture(*args, **kwargs):
        model = make(*args, **kwargs)
        for name in ("fit", "partial_fit"):
            real = getattr(model, name)

            def call(X, y, _real=real, _name=name):
                learned.append((_name, X))
                return _real(X, y)

            setattr(model, name, call)
        models.append(model)
        return model

    monkeypatch.setattr(images, "_probprop_model", capture)
    (row,), _ = images.job("mnist", "tagi-shift", 0, 3, 300, None, test_rows=400)
    assert [s for s, _ in seen] == [images.AUGMENT_SHIFT] * 3  # one draw per pass
    assert not np.array_equal(seen[0][1], seen[1][1])  # each pass its own offsets
    # one pass by fit, two by partial_fit, each on its own draw
    assert [name for name, _ in learned] == ["fit", "partial_fit", "partial_fit"]
    assert all(X is out for (_, X), (_, out) in zip(learned, seen))
    assert len(models[0].rejected_per_epoch_) == 3
    assert row["epochs"] == 3 and row["error"] < 0.5  # chance is 0.9
    import pandas as pd

    text = images.report(pd.DataFrame([row]), "probprop bench images", 1.0)
    assert f"tagi-shift train on images moved by up to {images.AUGMENT_SHIFT} pixels" in text


def test_an_ensembles_members_fitted_as_jobs_of_their_own_score_as_its_fit(have_images, tmp_path, monkeypatch):
    """A :data:`MEMBER_JOB_METHODS` ensemble: its members fitted by ``member_job`` one by one,
    saved, and scored together give the row of the ensemble fitted as one batched program, with
    the members' fit seconds summed (on a narrower CNN than the bench's: the same layers, less to
    compute)."""
    assert images.MEMBER_JOB_METHODS == ("pbp-cnn-max-ensemble",)
    monkeypatch.setattr(images, "CNN_CONV", ((2, 5, 2), (3, 5, 2)))
    monkeypatch.setattr(images, "CNN_HIDDEN", (8,))
    (whole,), (whole_arrays,) = images.job("mnist", "pbp-cnn-max-ensemble", 0, 1, 100, None, members=2, test_rows=100)
    files = [str(tmp_path / f"member{k}.npz") for k in range(2)]
    seconds = [images.member_job("mnist", "pbp-cnn-max-ensemble", 0, k, 1, 100, None, 2, path)
               for k, path in enumerate(files)]
    (row,), (arrays,) = images.job("mnist", "pbp-cnn-max-ensemble", 0, 1, 100, None, members=2, test_rows=100,
                                   member_files=files, member_seconds=seconds)
    np.testing.assert_allclose(arrays["proba"], whole_arrays["proba"], rtol=0, atol=1e-10)
    for key in ("error", "nll", "ece", "misclassification_auroc", "ood_fashion-mnist_mutual_information_auroc"):
        assert abs(row[key] - whole[key]) < 1e-9, key
    assert row["fit_seconds"] == sum(seconds) and row["members"] == 2
    text = images.report(__import__("pandas").DataFrame([row]), "probprop bench images", 1.0)
    assert "pbp-cnn-max-ensemble: each member fitted alone, as a job of its own on one core" in text


def test_an_ensembles_scoring_follows_its_own_members_and_a_resume_refits_only_what_it_needs(monkeypatch, tmp_path):
    """The run's jobs: each :data:`MEMBER_JOB_METHODS` ensemble's scoring job listed right after
    its members and waiting on them (so that it starts once they are done, not after every
    member of the run), given their fit seconds; with ``resume``, a finished member is taken
    from before and a member of an ensemble already scored is not fitted again."""
    import probprop.data.images

    class Stop(Exception):
        pass

    seen = {}

    def capture(units, jobs, settings, workers, earlier=None, on_start=None):
        seen.update(units=units, earlier=earlier)
        raise Stop
        yield

    monkeypatch.setattr(probprop.data.images, "find_images_dir", lambda name, data_dir=None: tmp_path)
    monkeypatch.setattr(images, "_run_jobs", capture)
    logs = []
    options = {"datasets": ["fashion-mnist"], "methods": ["pbp-cnn-max-ensemble", "map"], "members": 2,
               "epochs": 1, "log": logs.append, "out": tmp_path}
    with pytest.raises(Stop):
        images.run(seeds=2, **options)
    names = [(name, needs) for name, _, needs in seen["units"]]
    ensemble = "fashion-mnist_pbp-cnn-max-ensemble_seed{}"
    parts = [tuple(f"{ensemble.format(s)}_member{k}" for k in range(2)) for s in range(2)]
    assert names == [(parts[0][0], ()), (parts[0][1], ()), (ensemble.format(0), parts[0]),
                     ("fashion-mnist_map_seed0", ()), (parts[1][0], ()), (parts[1][1], ()),
                     (ensemble.format(1), parts[1]), ("fashion-mnist_map_seed1", ())]
    call = seen["units"][2][1]  # (fn, args, kwargs)
    *_, fn, _, kwargs = images._job_call(ensemble.format(0), "J", {}, *call, parts[0],
                                         {parts[0][0]: 3.0, parts[0][1]: 4.0})
    assert fn is images.job and kwargs["member_seconds"] == [3.0, 4.0]
    assert kwargs["member_files"] == [str(tmp_path / images.JOBS_DIR / f"{part}{images._MODEL_SUFFIX}")
                                      for part in parts[0]]

    jobs = tmp_path / images.JOBS_DIR
    settings = {"epochs": 1, "train_rows": None, "test_rows": None, "hidden": list(images.HIDDEN), "members": 2,
                "links": ["mc"], "version": images._JOB_FILES_VERSION}
    images._save_job(jobs, ensemble.format(0), settings, ([{"error": 0.1}], [{}]))  # scored: its members not needed
    images._save_job(jobs, parts[1][0], settings, 5.0)
    (jobs / f"{parts[1][0]}{images._MODEL_SUFFIX}").write_bytes(b"")
    with pytest.raises(Stop):
        images.run(seeds=2, resume=True, **options)
    assert [name for name, _, _ in seen["units"]] == ["fashion-mnist_map_seed0", parts[1][1], ensemble.format(1),
                                                       "fashion-mnist_map_seed1"]
    assert set(seen["earlier"]) == {ensemble.format(0), parts[1][0]} and seen["earlier"][parts[1][0]] == 5.0
    assert logs[-1] == "2 jobs' results taken from an earlier run; 4 to run"


def test_resume_reuses_the_finished_jobs_of_the_same_settings_only(have_images, tmp_path):
    """``resume``: a job an earlier run finished (here: its record, marked) is taken as it is and
    the others run; other settings, a record without its figures or no ``resume`` run it afresh;
    the jobs folder goes with the report."""
    import pandas as pd

    options = {"datasets": ["mnist"], "methods": ["map"], "epochs": 1, "hidden": (10,), "train_rows": 200,
               "test_rows": 100, "workers": 1, "log": lambda text: None}
    settings = {"epochs": 1, "train_rows": 200, "test_rows": 100, "hidden": [10], "members": images.ENSEMBLE_MEMBERS,
                "links": ["mc"], "version": images._JOB_FILES_VERSION}
    jobs = tmp_path / images.JOBS_DIR
    jobs.mkdir()
    rows, figures = images.job("mnist", "map", 0, 1, 200, None, hidden=(10,), test_rows=100)
    marked = [{**rows[0], "error": 0.123}]
    images._save_job(jobs, "mnist_map_seed0", settings, (marked, figures))
    back_rows, back_figures = images._load_job(jobs, "mnist_map_seed0", settings)
    assert back_rows == marked and set(back_figures[0]) == set(figures[0])
    for key, value in figures[0].items():
        np.testing.assert_array_equal(back_figures[0][key], value)
    assert images._load_job(jobs, "mnist_map_seed0", {**settings, "epochs": 2}) is None
    assert images._load_job(jobs, "mnist_map_seed1", settings) is None
    images._save_job(jobs, "mnist_x_seed0_member0", settings, 5.0)  # a member's record without its network
    assert images._load_job(jobs, "mnist_x_seed0_member0", settings) is None

    out = images.run(out=tmp_path, seeds=2, resume=True, **options)
    frame = pd.read_csv(out / "results.csv")
    assert frame.loc[frame["seed"] == 0, "error"].tolist() == [0.123]  # reused
    assert frame.loc[frame["seed"] == 1, "error"].iloc[0] != 0.123  # run
    assert "`--resume`d: 1 of 2 jobs' results from earlier runs" in (out / "report.md").read_text()
    assert not jobs.exists()
    jobs.mkdir()
    images._save_job(jobs, "mnist_map_seed0", settings, (marked, figures))
    images.run(out=tmp_path, seeds=1, resume=False, **options)
    assert pd.read_csv(out / "results.csv")["error"].tolist() != [0.123]
    assert "--resume" not in (out / "report.md").read_text()


def test_the_cli_passes_resume_and_leaves_it_out_of_the_reports_command(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from probprop.cli import main

    seen = {}
    monkeypatch.setattr(images, "run", lambda **kwargs: seen.update(kwargs) or tmp_path)
    result = CliRunner().invoke(main, ["bench", "images", "--resume", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen["resume"] is True and "--resume" not in seen["command"]
    CliRunner().invoke(main, ["bench", "images", "--out", str(tmp_path)])
    assert seen["resume"] is False

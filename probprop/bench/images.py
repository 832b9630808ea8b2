"""Image classification benchmark: MNIST and Fashion-MNIST, calibration and out-of-distribution detection.

    probprop bench images [--datasets mnist,fashion-mnist] [--methods pbp-1pass,pbp,map,ensemble,...]
                          [--seeds 3] [--epochs 3] [--hidden 100,100] [--members 5] [--train-rows N]
                          [--data-dir DIR] [--out DIR] [--resume]

Each (dataset, method, seed) is one job on one pinned core (two at a time on a two-core machine;
``pbp-cnn-max-ensemble``: one job per member, then one that combines and scores them, started
as soon as its own members are done). A job's results stay in ``OUT/jobs`` from when it finishes
until the report is written, and ``--resume`` reuses those of an interrupted run with the same
settings. Each job:
fit on the training images (pixels / 255, standardised with one global mean and std), then on the
10,000 test images: error, NLL, Brier, ECE (15 equal-width bins) and its adaptive variant, and
misclassification detection (AUROC of 1 - max probability for the errors); and out-of-distribution
detection: the test images of the other set, 2,000 Gaussian-noise images (the training pixels'
mean and std, clipped to [0, 1]) and 2,000 uniform-noise images, each scored with every score the
method gives (1 - max probability, entropy, mutual information, summed probability variance), as
AUROC / AUPR with the OOD images as positives. Times: training images per second, and test
images per second of ``predict_proba`` and of ``predict_dist`` (the scores). Each row also names
its ensemble size (``members``: 1 but for the ensemble methods) and the device it ran on
(``device``: JAX's default device for probprop's methods, "cpu" for scikit-learn's and pytagi's).

Methods (784-100-100-10 ReLU networks but the CNN; ``--hidden`` sets the hidden layers of all
but the CNN methods):

- ``pbp-1pass``: :class:`probprop.PBPClassifier`, ONE pass of ADF (one update per image);
- ``pbp``: the same for ``--epochs`` passes;
- ``pbp-sep`` and ``pbp-sep-cnn``: ``pbp`` and ``pbp-cnn`` by stochastic EP (``inference="sep"``: one
  tied site per weight, removed before each image's update, so that passes over the same images
  do not keep shrinking the variances as ADF's do);
- ``pbp-cnn``: a PBP CNN for ``--epochs`` passes, every weight Gaussian and learned by the same
  per-image ADF: two 5x5 convolutions (16 and 32 maps) each followed by 2x2 average pooling, one
  dense layer of 100 units (:data:`CNN_CONV`, :data:`CNN_HIDDEN`);
- ``pbp-cnn-max``: ``pbp-cnn`` with 2x2 max pooling (Clark's moment matching of each window's
  maximum, ``pooling="max"``) instead of average pooling: its convolutions run at stride 1, about
  five times the cost per image;
- ``pbp-cnn-max-ensemble``: :class:`probprop.PBPEnsembleClassifier`, ``--members`` (five by default)
  ``pbp-cnn-max`` networks, each from its own initialisation and shuffles, their probabilities
  averaged; the scores mix the members' closed forms (their disagreement plus each one's weight
  uncertainty), no sampling. The run fits each member as a job of its own on one core
  (:meth:`~probprop.PBPEnsembleClassifier.member_estimator`: the network the ensemble's batched fit
  trains, up to float rounding) and combines them
  (:meth:`~probprop.PBPEnsembleClassifier.from_members`); fit seconds: the members' sum;
- ``map``: scikit-learn's ``MLPClassifier`` (softmax, Adam, L2 1e-4, batch 200) for ``--epochs``
  x 5 epochs: the MAP network everyone has;
- ``ensemble``: ``--members`` (five by default) such MAP networks with different seeds, probabilities averaged (Lakshminarayanan
  et al. 2017, without adversarial training); mutual information = the members' disagreement;
- ``tagi-1pass`` and ``tagi``: :class:`probprop.TAGIClassifier` (multinomial-probit output, mini-batches
  of :data:`TAGI_BATCH`), ONE pass and ``--epochs`` passes;
- ``pbp-shift``, ``tagi-shift``, ``pbp-cnn-shift``, ``pbp-cnn-max-shift``, ``tagi-cnn-shift``: the
  method before ``-shift`` (``pbp``, ``tagi``, ...) whose every pass sees each training image
  moved by a fresh random offset of up to :data:`AUGMENT_SHIFT` pixels in each direction
  (:func:`probprop.data.images.random_shifts`, zero fill; a ``fit`` of one pass, then
  ``partial_fit`` pass by pass): translation augmentation, a regulariser for the multi-pass MLPs and CNNs
  (the scikit-learn and gradient baselines train on the images as they are). Their fit seconds
  leave out drawing the shifts; ``partial_fit`` pads the 60,000 rows to 61,440 as ``fit`` does
  (until 2026-12-06 to 65,536: the reports before then took about 7 % more steps per pass after
  the first);
- ``tagi-cnn``: :class:`probprop.TAGIClassifier` with ``pbp-cnn``'s network (Gaussian kernels,
  conditioned on by TAGI, each kernel's update summed over the positions of its maps) for
  ``--epochs`` passes in mini-batches of :data:`TAGI_BATCH`;
- ``mcdropout``: :class:`probprop.MCDropoutClassifier` for ``--epochs`` x 5 epochs (Adam, step 1e-3,
  batch 128), dropout rate :data:`MC_DROPOUT_RATE` before every layer, :data:`MC_DROPOUT_SAMPLES`
  passes per prediction;
- ``deep-ensemble``: :class:`probprop.DeepEnsembleClassifier`, ``--members`` (five by default) softmax networks trained together
  for ``--epochs`` x 5 epochs (Adam, step 1e-3, batch 200, no weight decay, as in the paper).
- ``map-cnn`` and ``deep-ensemble-cnn``: :class:`probprop.MAPClassifier` (prior variance 1) and
  :class:`probprop.DeepEnsembleClassifier` (``--members``) with ``pbp-cnn``'s network, point-estimate kernels, for
  ``--epochs`` x 5 epochs (Adam, step 1e-3, batch 128): the ConvNet baselines of the PBP CNN.
- ``laplace`` and ``laplace-cnn``: :class:`probprop.LaplaceClassifier`, a last-layer Laplace
  approximation (exact last-layer Hessian, prior precision by the evidence, probabilities over
  :data:`LAPLACE_SAMPLES` draws of the last layer) on a MAP network: ``laplace`` the dense
  layers of ``--hidden`` trained as ``deep-ensemble``'s members are (Adam, step 1e-3, batch 200,
  ``--epochs`` x 5 epochs) but with a prior variance of 1; ``laplace-cnn`` exactly ``map-cnn``'s
  network (the same parameters and seed: the same trained weights).
- ``laplace-kron`` and ``laplace-kron-cnn``: the same networks (the same trained weights) with the
  Kronecker-factored last-layer posterior (``hessian_structure="kron"``), which also takes last
  layers wider than the full posterior's 6,144 parameters (e.g. ``--hidden 1024,1024``).
- ``laplace-ensemble-cnn``: :class:`probprop.LaplaceEnsembleClassifier`, exactly ``deep-ensemble-cnn``'s
  networks (``--members``, no weight decay; the same parameters and seed: the same trained weights),
  each with ``laplace-cnn``'s last-layer posterior (its own prior precision, :data:`LAPLACE_SAMPLES`
  draws per member): a mixture of Laplace approximations (Eschenhagen et al. 2021).
- ``--links``: the Laplace methods' predictions read each way named (``link_approx``: "mc" the
  draws, "probit", "bridge", "bridge_norm" the closed forms of :mod:`probprop.moments.softmax`)
  from the same fit, one row each; a row other than "mc" is named ``METHOD+LINK``.
- ``pytagi``: TAGI by its authors' library (``make pytagi``), their MNIST tutorial's classifier on
  the same network: MixtureReLU, a hierarchical-softmax output (a binary tree of 11
  units observed through noise of sd :data:`PYTAGI_SIGMA_V`), mini-batches of :data:`PYTAGI_BATCH`
  as for ``tagi`` (the tutorial's 128 did worse), ``--epochs`` passes, float32; class probabilities by ``Utils.obs_to_label_prob`` with the
  observation noise added to the output variance, renormalised (the tree does not sum exactly to
  one when K is not a power of two). Scores from the probabilities only.

``map`` and ``ensemble`` are scikit-learn's networks (the baseline a user already has); the other
methods are probprop's classifiers through the same learner protocol.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from functools import partial
from pathlib import Path

import numpy as np

from probprop.distributions import ClassPrediction, normalise_rows

DATASETS = ("mnist", "fashion-mnist")
METHODS = ("pbp-1pass", "pbp", "pbp-shift", "pbp-sep", "pbp-cnn", "pbp-cnn-shift", "pbp-cnn-max", "pbp-cnn-max-shift",
           "pbp-cnn-max-ensemble", "pbp-sep-cnn",
           "map", "ensemble", "tagi-1pass", "tagi", "tagi-shift", "tagi-cnn", "tagi-cnn-shift", "mcdropout",
           "deep-ensemble", "map-cnn", "deep-ensemble-cnn", "laplace", "laplace-cnn", "laplace-kron", "laplace-kron-cnn",
           "laplace-ensemble-cnn", "pytagi")
#: The methods whose network is the CNN (:data:`CNN_CONV`, :data:`CNN_HIDDEN`).
CNN_METHODS = ("pbp-cnn", "pbp-cnn-shift", "pbp-cnn-max", "pbp-cnn-max-shift", "pbp-cnn-max-ensemble", "pbp-sep-cnn", "tagi-cnn", "tagi-cnn-shift", "map-cnn", "deep-ensemble-cnn", "laplace-cnn", "laplace-kron-cnn",
               "laplace-ensemble-cnn")
#: The methods of the default run (``pbp-cnn`` and the family rows have reports of their own).
DEFAULT_METHODS = ("pbp-1pass", "pbp", "map", "ensemble")
HIDDEN = (100, 100)
#: ``pbp-cnn``: (channels, kernel, pool) per convolution, then CNN_HIDDEN dense units.
CNN_CONV = ((16, 5, 2), (32, 5, 2))
CNN_HIDDEN = (100,)
#: Methods whose reliability diagram and confidence histograms the report shows.
FIGURE_METHODS = ("pbp", "pbp-shift", "tagi-shift", "pbp-cnn-shift", "pbp-cnn-max-shift", "tagi-cnn-shift", "pbp-sep", "pbp-cnn",
                  "pbp-cnn-max", "pbp-cnn-max-ensemble", "pbp-sep-cnn", "map", "tagi", "tagi-cnn", "mcdropout", "deep-ensemble", "map-cnn",
                  "deep-ensemble-cnn", "laplace", "laplace-cnn", "laplace-kron", "laplace-kron-cnn", "laplace-ensemble-cnn")
N_NOISE = 2000
#: Members of the ensemble methods (:data:`ENSEMBLE_METHODS`) unless ``--members`` says otherwise.
ENSEMBLE_MEMBERS = 5
ENSEMBLE_METHODS = ("ensemble", "deep-ensemble", "deep-ensemble-cnn", "laplace-ensemble-cnn", "pbp-cnn-max-ensemble")
#: Ensemble methods whose members the run fits as separate one-core jobs (:func:`member_job`: each
#: the single network the ensemble's member is), then combines
#: (:meth:`probprop.PBPEnsembleClassifier.from_members`) and scores in a job of its own; the row's
#: fit seconds are the members' sum (one core each, as one batched fit would take one core).
MEMBER_JOB_METHODS = ("pbp-cnn-max-ensemble",)
MAP_EPOCHS_PER_EPOCH = 5  # MAP epochs per --epochs (an Adam epoch is much cheaper than an ADF pass)
TAGI_BATCH = 10
#: The largest offset (pixels, each direction) of the :data:`SHIFT_METHODS`' training images.
AUGMENT_SHIFT = 2
#: The methods trained on shifted images: each is the method its name ends in ``-shift`` after.
SHIFT_METHODS = tuple(m for m in METHODS if m.endswith("-shift"))
#: Chosen by MCDropoutClassifier's own search (held-out fifth of the first 10,000 MNIST training
#: images, 15 epochs, over 0.01, 0.05, 0.1, 0.2), not on test data.
MC_DROPOUT_RATE = 0.1
MC_DROPOUT_SAMPLES = 100
#: Draws of the last layer per prediction of ``laplace``, ``laplace-cnn`` and their ``-kron`` forms (per member:
#: ``laplace-ensemble-cnn``).
LAPLACE_SAMPLES = 100
#: ``pytagi``: the mini-batch of the ``tagi`` rows (pytagi's MNIST tutorial, cuTAGI
#: ``examples/classification.py``, uses 128: 4.35 % MNIST error after three passes against 2.68 %
#: with 10, one seed) and the tutorial's sigma_v.
PYTAGI_BATCH = TAGI_BATCH
PYTAGI_SIGMA_V = 0.1


#: The methods whose predictions ``--links`` reads several ways (their ``link_approx``).
LAPLACE_METHODS = ("laplace", "laplace-cnn", "laplace-kron", "laplace-kron-cnn", "laplace-ensemble-cnn")


def base_method(name: str) -> str:
    """The method of a result row: ``laplace-cnn+bridge`` -> ``laplace-cnn``."""
    return name.split("+", 1)[0]


#: The methods that do not run on JAX (their rows' device is the CPU whatever JAX's default).
NOT_JAX_METHODS = ("map", "ensemble", "pytagi")


def _device_name(method: str) -> str:
    """Where ``method`` runs: "cpu", or for probprop's methods on an accelerator JAX's default
    device's kind (``jax_default_device`` where set, else JAX's first device)."""
    if method in NOT_JAX_METHODS:
        return "cpu"
    import jax

    device = jax.config.jax_default_device or jax.devices()[0]
    if isinstance(device, str):  # a platform's name
        return device
    return "cpu" if device.platform == "cpu" else str(getattr(device, "device_kind", device.platform))


def _noise_images(X_train, n, seed):
    rng = np.random.default_rng(seed)
    gauss = np.clip(rng.normal(X_train.mean(), X_train.std(), (n, X_train.shape[1])), 0, 1)
    return {"gaussian-noise": gauss, "uniform-noise": rng.uniform(0, 1, (n, X_train.shape[1]))}


def _probprop_model(method, epochs, seed, hidden=HIDDEN, members=ENSEMBLE_MEMBERS):
    """The probprop classifier a method names (None: a scikit-learn network); ``hidden``: the
    hidden layers of all but the CNN methods; ``members``: of the ensemble methods."""
    from probprop.estimators import (
        DeepEnsembleClassifier,
        LaplaceClassifier,
        LaplaceEnsembleClassifier,
        MAPClassifier,
        MCDropoutClassifier,
        PBPClassifier,
        PBPEnsembleClassifier,
        TAGIClassifier,
    )

    if method in SHIFT_METHODS:  # the same model; the job shifts its images
        method = method.removesuffix("-shift")
    passes = 1 if method.endswith("-1pass") else epochs
    common = {"input_scaling": "global", "random_state": seed}
    if method in ("pbp-1pass", "pbp", "pbp-cnn", "pbp-cnn-max", "pbp-sep", "pbp-sep-cnn"):
        shape = {"hidden": CNN_HIDDEN, "conv": CNN_CONV} if method in CNN_METHODS else {"hidden": hidden}
        if method == "pbp-cnn-max":
            shape["pooling"] = "max"
        inference = "sep" if method.startswith("pbp-sep") else "adf"
        return PBPClassifier(**shape, epochs=passes, inference=inference, **common)
    if method == "pbp-cnn-max-ensemble":
        return PBPEnsembleClassifier(hidden=CNN_HIDDEN, conv=CNN_CONV, pooling="max", epochs=passes, n_members=members,
                                     **common)
    if method in ("tagi-1pass", "tagi", "tagi-cnn"):
        shape = {"hidden": CNN_HIDDEN, "conv": CNN_CONV} if method == "tagi-cnn" else {"hidden": hidden}
        return TAGIClassifier(**shape, epochs=passes, batch_size=TAGI_BATCH, **common)
    if method == "mcdropout":
        return MCDropoutClassifier(hidden=hidden, epochs=epochs * MAP_EPOCHS_PER_EPOCH, dropout=MC_DROPOUT_RATE,
                                   n_samples=MC_DROPOUT_SAMPLES, batch_size=128, **common)
    if method == "deep-ensemble":
        return DeepEnsembleClassifier(hidden=hidden, epochs=epochs * MAP_EPOCHS_PER_EPOCH, n_members=members,
                                      learning_rate=1e-3, batch_size=200, **common)
    structure = "kron" if method in ("laplace-kron", "laplace-kron-cnn") else "full"
    if method in ("laplace", "laplace-kron"):
        return LaplaceClassifier(hidden=hidden, epochs=epochs * MAP_EPOCHS_PER_EPOCH, learning_rate=1e-3, batch_size=200,
                                 n_samples=LAPLACE_SAMPLES, hessian_structure=structure, **common)
    cnn = {"hidden": CNN_HIDDEN, "conv": CNN_CONV, "epochs": epochs * MAP_EPOCHS_PER_EPOCH, "learning_rate": 1e-3,
           "batch_size": 128}
    if method == "map-cnn":
        return MAPClassifier(**cnn, **common)
    if method == "deep-ensemble-cnn":
        return DeepEnsembleClassifier(**cnn, n_members=members, **common)
    if method in ("laplace-cnn", "laplace-kron-cnn"):
        return LaplaceClassifier(**cnn, n_samples=LAPLACE_SAMPLES, hessian_structure=structure, **common)
    if method == "laplace-ensemble-cnn":
        return LaplaceEnsembleClassifier(**cnn, n_members=members, prior_var=None, n_samples=LAPLACE_SAMPLES, **common)
    return None


def _readers(model, method, links):
    """A fitted probprop model's (link, predict_proba, predict_scores) list, as :func:`_fit_predict`'s."""

    def reader(link):
        def read():  # the Laplace models read with ``link``; the others as they are
            return model.set_params(link_approx=link) if method in LAPLACE_METHODS else model

        def proba(Z):
            return read().predict_proba(Z)

        def scores(Z):  # a point estimate's (map-cnn's) leave out the epistemic scores
            dist = read().predict_dist(Z)
            return dist.probabilities, dist.scores()

        return link, proba, scores

    return [reader(link) for link in (links if method in LAPLACE_METHODS else ("mc",))]


def _fit_predict(method, X, y, seed, epochs, hidden=HIDDEN, members=ENSEMBLE_MEMBERS, links=("mc",)):
    """A list of (link, predict_proba, predict_scores) after fitting (one per link of ``links``
    for a Laplace method, else one "mc"), and the fit's seconds."""
    from sklearn.neural_network import MLPClassifier

    start = time.perf_counter()
    model = _probprop_model(method, epochs, seed, hidden, members)
    if model is not None:
        if method in SHIFT_METHODS:  # a fresh offset per image and pass
            from probprop.data.images import random_shifts

            rng = np.random.default_rng(seed)
            drawing = 0.0  # the shifts' own time, left out of the fit's

            def shifted():
                nonlocal drawing
                begin = time.perf_counter()
                out = random_shifts(X, AUGMENT_SHIFT, rng)
                drawing += time.perf_counter() - begin
                return out

            model.set_params(epochs=1).fit(shifted(), y)
            for _ in range(epochs - 1):
                model.partial_fit(shifted(), y)
            start += drawing
        else:
            model.fit(X, y)
        return _readers(model, method, links), time.perf_counter() - start
    if method == "pytagi":
        proba, scores, fit_seconds = _pytagi_fit_predict(X, y, seed, epochs, start, hidden)
        return [("mc", proba, scores)], fit_seconds
    mean, std = X.mean(), X.std()
    nets = []
    for m in range(members if method == "ensemble" else 1):
        net = MLPClassifier(hidden_layer_sizes=hidden, max_iter=epochs * MAP_EPOCHS_PER_EPOCH, batch_size=200,
                            random_state=seed * 100 + m, tol=0.0, n_iter_no_change=10**6)
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            nets.append(net.fit((X - mean) / std, y))
    fit_seconds = time.perf_counter() - start

    def member_proba(Z):
        return np.stack([net.predict_proba((Z - mean) / std) for net in nets])

    def proba(Z):
        return member_proba(Z).mean(0)

    def scores(Z):
        dist = ClassPrediction.from_members(member_proba(Z), nets[0].classes_)
        return dist.probabilities, dist.scores()

    return [("mc", proba, scores)], fit_seconds


def _pytagi_fit_predict(X, y, seed, epochs, start, hidden=HIDDEN):
    """The ``pytagi`` method: (predict_proba, predict_scores, fit seconds), as :func:`_fit_predict`."""
    from probprop.bench.methods import check_available, import_pytagi

    check_available("pytagi")
    pytagi = import_pytagi()
    from pytagi import Utils
    from pytagi.nn import Linear, MixtureReLU, OutputUpdater, Sequential

    k = int(y.max()) + 1
    utils = Utils()
    tree = utils.get_hierarchical_softmax(k)
    pytagi.manual_seed(int(seed))
    sizes = (X.shape[1], *hidden)
    layers = [piece for n_in, n_out in itertools.pairwise(sizes) for piece in (Linear(n_in, n_out), MixtureReLU())]
    net = Sequential(*layers, Linear(sizes[-1], tree.len))
    net.set_threads(1)
    updater = OutputUpdater(net.device)
    mean, std = X.mean(), X.std()
    X32 = ((X - mean) / std).astype(np.float32)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for first in range(0, len(y), PYTAGI_BATCH):
            rows = order[first:first + PYTAGI_BATCH]
            obs, index, _ = utils.label_to_obs(y[rows].astype(np.int32), k)
            net(X32[rows].ravel())
            updater.update_using_indices(output_states=net.output_z_buffer, mu_obs=obs.astype(np.float32),
                                         var_obs=np.full(len(obs), PYTAGI_SIGMA_V**2, np.float32),
                                         selected_idx=index.astype(np.int32), delta_states=net.input_delta_z_buffer)
            net.backward()
            net.step()
    fit_seconds = time.perf_counter() - start

    def proba(Z):
        Z32 = ((Z - mean) / std).astype(np.float32)
        out = []
        for first in range(0, len(Z32), PYTAGI_BATCH):  # no larger than the training batches
            m, v = (np.asarray(a, np.float64).reshape(-1, tree.len) for a in net(Z32[first:first + PYTAGI_BATCH].ravel()))
            out += [np.asarray(utils.obs_to_label_prob(mi, vi + PYTAGI_SIGMA_V**2, tree, k), np.float64).ravel()
                    for mi, vi in zip(m, v)]
        return normalise_rows(np.maximum(np.stack(out), 0.0))

    def scores(Z):
        dist = ClassPrediction.from_members(proba(Z)[None], np.arange(k))
        return dist.probabilities, dist.scores()

    return proba, scores, fit_seconds


def _worker(core) -> None:
    """A job's process: pinned to ``core`` (None: as it is), float64 JAX."""
    if core is not None:
        from probprop.bench.machine import pin

        pin(core)
    from probprop.learners.base import float64_process

    float64_process()


def member_job(dataset, method, seed, member, epochs, train_rows, data_dir, members, path, core=None) -> float:
    """Fit member ``member`` of a :data:`MEMBER_JOB_METHODS` ensemble on its own (the single
    network :meth:`probprop.estimators.pbp.PBPMembers.member_estimator` makes, exactly the one the
    ensemble's fit would train beside the others) and save it to ``path``; its fit seconds."""
    _worker(core)
    from probprop.data.images import load_images

    X, y, _, _ = load_images(dataset, data_dir, flat=True, scale=True)
    if train_rows:
        X, y = X[:train_rows], y[:train_rows]
    start = time.perf_counter()
    model = _probprop_model(method, epochs, seed, members=members).member_estimator(member).fit(X, y)
    seconds = time.perf_counter() - start
    model.save(path)
    return seconds


def job(dataset, method, seed, epochs, train_rows, data_dir, hidden=HIDDEN, members=ENSEMBLE_MEMBERS, core=None,
        test_rows=None, links=("mc",), member_files=None, member_seconds=None):
    """One (dataset, method, seed): a list of dicts of results (one per link of ``links`` for a
    Laplace method, else one), and a list of the arrays each row's figures need (``train_rows`` / ``test_rows``: only the first so many images of each set, for tests;
    ``hidden``: the hidden layers of all but the CNN methods; ``members``: of the ensemble methods).
    ``member_files`` (a :data:`MEMBER_JOB_METHODS` method): the members :func:`member_job` fitted
    and saved, combined instead of a fit; the row's fit seconds are ``member_seconds``' sum."""
    _worker(core)
    from probprop.data.images import load_images

    X, y, Xt, yt = load_images(dataset, data_dir, flat=True, scale=True)
    if train_rows:
        X, y = X[:train_rows], y[:train_rows]
    other = "fashion-mnist" if dataset == "mnist" else "mnist"
    ood = {other: load_images(other, data_dir, flat=True, scale=True)[2], **_noise_images(X, N_NOISE, seed)}
    if test_rows:
        Xt, yt = Xt[:test_rows], yt[:test_rows]
        ood = {name: Z[:test_rows] for name, Z in ood.items()}
    hidden = tuple(int(h) for h in hidden)
    if member_files is None:
        readers, fit_seconds = _fit_predict(method, X, y, seed, epochs, hidden, members, links)
    else:
        from probprop.io import load_model

        model = type(_probprop_model(method, epochs, seed, members=members)).from_members(
            [load_model(path) for path in member_files])
        readers, fit_seconds = _readers(model, method, links), float(sum(member_seconds))
    rows, figures = [], []
    for link, proba_fn, scores_fn in readers:
        metrics, arrays = _evaluate(proba_fn, scores_fn, Xt, yt, ood)
        rows.append({"dataset": dataset, "method": method if link == "mc" else f"{method}+{link}", "seed": seed,
                     "epochs": 1 if method.endswith("-1pass") else epochs,
                     "network": "cnn" if method in CNN_METHODS else "-".join(map(str, (X.shape[1], *hidden, 10))),
                     "members": members if method in ENSEMBLE_METHODS else 1, "device": _device_name(method),
                     "n_train": len(X), "fit_seconds": fit_seconds, "train_images_per_s": len(X) / fit_seconds,
                     **metrics})
        figures.append(arrays)
    return rows, figures


def _evaluate(proba_fn, scores_fn, Xt, yt, ood):
    """A fitted model's speed of prediction and metrics on the test and OOD images (a dict), and
    the arrays the figures need."""
    from probprop.metrics.classification import classification_metrics, detection_metrics

    start = time.perf_counter()
    proba_fn(Xt)
    proba_seconds = time.perf_counter() - start
    start = time.perf_counter()
    proba, scores_in = scores_fn(Xt)
    scores_seconds = time.perf_counter() - start
    row = {"predict_images_per_s": len(Xt) / proba_seconds, "scores_images_per_s": len(Xt) / scores_seconds,
           **classification_metrics(yt, proba)}
    wrong = proba.argmax(1) != yt
    row["misclassification_auroc"] = detection_metrics(scores_in["max_probability"][~wrong],
                                                       scores_in["max_probability"][wrong])["auroc"]
    arrays = {"labels": yt, "proba": proba, "confidence_in": proba.max(1)}
    for name, Z in ood.items():
        p_out, scores_out = scores_fn(Z)
        arrays[f"confidence_{name}"] = p_out.max(1)
        for score, values in scores_out.items():
            d = detection_metrics(scores_in[score], values)
            row[f"ood_{name}_{score}_auroc"] = d["auroc"]
            row[f"ood_{name}_{score}_aupr"] = d["aupr"]
    return row, arrays


def run(out=None, datasets=DATASETS, methods=DEFAULT_METHODS, seeds: int = 3, epochs: int = 3, train_rows=None,
        data_dir=None, workers: int = 2, command: str | None = None, log=print, hidden=HIDDEN,
        members: int = ENSEMBLE_MEMBERS, links=("mc",), resume: bool = False, test_rows=None) -> Path:
    """Run every job (``workers`` pinned processes) and write results.csv, report.md and figures
    (``hidden``: the hidden layers of all but the CNN methods, at most three; ``members``: of the
    ensemble methods, at least two). Each job leaves its results in ``out/jobs`` as it finishes
    (a :data:`MEMBER_JOB_METHODS` member: its fitted network); ``resume`` reuses those of an
    interrupted run with the same settings (else they are cleared first). The folder goes once
    the report is written. ``test_rows``: only the first so many test and OOD images (for tests)."""
    import shutil

    import pandas as pd

    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {list(METHODS)}")
    from probprop.estimators._checks import hidden_sizes

    try:
        sizes = hidden_sizes(hidden)
    except ValueError:
        sizes = ()
    if not 1 <= len(sizes) <= 3:
        raise ValueError(f"hidden must be one to three positive layer widths, got {tuple(hidden)!r}")
    hidden = sizes
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 2:
        raise ValueError(f"members must be an integer of at least 2, got {members!r}")
    members = int(members)
    from probprop.moments.softmax import LINKS

    links = tuple(link.strip() for link in links.split(",")) if isinstance(links, str) else tuple(links)
    if not links or len(set(links)) != len(links) or not set(links) <= set(LINKS):
        raise ValueError(f"links must be distinct names among {list(LINKS)}, got {list(links)}")
    from probprop.data.images import find_images_dir

    for name in datasets:
        find_images_dir(name, data_dir)  # a clear error before any work
    out = Path("docs/benchmarks/images" if out is None else out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = out / JOBS_DIR
    if jobs.exists() and not resume:
        shutil.rmtree(jobs)
    jobs.mkdir(exist_ok=True)
    settings = {"epochs": epochs, "train_rows": train_rows, "test_rows": test_rows, "hidden": list(hidden),
                "members": members, "links": list(links), "version": _JOB_FILES_VERSION}
    common = (epochs, train_rows, data_dir, hidden, members)
    units, scored = [], []  # units: (name, job call, needs); a job that scores follows the members it combines
    for s, d, m in itertools.product(range(seeds), datasets, methods):
        name, kwargs, needs = f"{d}_{m}_seed{s}", {"links": links, "test_rows": test_rows}, ()
        if m in MEMBER_JOB_METHODS:
            needs = tuple(f"{name}_member{k}" for k in range(members))
            units += [(part, (member_job, (d, m, s, k, epochs, train_rows, data_dir, members,
                                           str(jobs / f"{part}{_MODEL_SUFFIX}")), {}), ())
                      for k, part in enumerate(needs)]
            kwargs["member_files"] = [str(jobs / f"{part}{_MODEL_SUFFIX}") for part in needs]
        units.append((name, (job, (d, m, s, *common), kwargs), needs))
        scored.append((name, s, d))
    earlier = {}
    if resume:
        earlier = {name: result for name, _, _ in units
                   if (result := _load_job(jobs, name, settings)) is not None}
    parts = {need for _, _, needs in units for need in needs}  # members: run only for an ensemble still to score
    wanted = {need for name, _, needs in units if name not in earlier for need in needs}
    todo = [unit for unit in units if unit[0] not in earlier and (unit[0] not in parts or unit[0] in wanted)]
    start = time.perf_counter()
    done = dict(earlier)
    if earlier:
        log(f"{len(earlier)} jobs' results taken from an earlier run; {len(todo)} to run")
    begun = itertools.count(1)

    def started(name):
        log(f"{name}: started at {time.strftime('%H:%M')} (job {next(begun)} of {len(todo)})")

    for name, result in _run_jobs(todo, jobs, settings, workers, earlier, started):
        done[name] = result
        if isinstance(result, float):
            log(f"{name}: fit {result:.0f} s")
        else:
            for row in result[0]:
                log(f"{row['dataset']} {row['method']} seed {row['seed']}: error {row['error']:.4f} "
                    f"nll {row['nll']:.4f} ece {row['ece']:.4f} fit {row['fit_seconds']:.0f} s")
    wall = time.perf_counter() - start
    rows, figures = [], {}
    for name, s, d in scored:
        job_rows, arrays = done[name]
        rows += job_rows
        if s == 0:
            figures.update({(d, row["method"]): row_arrays for row, row_arrays in zip(job_rows, arrays, strict=True)})
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    _figures(figures, out)
    (out / "report.md").write_text(report(frame, command or "probprop bench images", wall, workers,
                                          reused=(len(earlier), len(earlier) + len(todo))))
    shutil.rmtree(jobs)
    return out


# --------------------------------------------------------------------------------------
# Jobs' results on disk (``--resume``)
# --------------------------------------------------------------------------------------

#: The folder of a run's finished jobs, inside its ``out`` folder, until the report is written.
JOBS_DIR = "jobs"
_JOB_FILES_VERSION = 1
_MODEL_SUFFIX = "-model.npz"


def _run_jobs(units, jobs: Path, settings: dict, workers: int, earlier=None, on_start=None):
    """:func:`probprop.bench.machine.pinned_graph` of ``units`` (``(name, (fn, args, kwargs),
    needs)``; ``earlier``: results of jobs that ran before), each job leaving its result in ``jobs``
    as it finishes (in its own process: a job that ends while an earlier one runs is kept even if
    the run is stopped then); a job that scores an ensemble is given its members' fit seconds.
    Yields ``(name, result)`` as each finishes; ``on_start(name)`` as each starts."""
    from probprop.bench.machine import pinned_graph

    calls = [(name, partial(_job_call, name, str(jobs), settings, *call, needs), needs)
             for name, call, needs in units]
    yield from pinned_graph(_kept_job, calls, workers, done=earlier, on_start=on_start)


def _job_call(name, jobs, settings, fn, args, kwargs, needs, results):
    """The arguments of :func:`_kept_job` for a job, once the jobs it ``needs`` (an ensemble's
    members) have their ``results`` (fit seconds)."""
    if needs:
        kwargs = {**kwargs, "member_seconds": [results[need] for need in needs]}
    return name, jobs, settings, fn, args, kwargs


def _kept_job(name, jobs, settings, fn, args, kwargs, core=None):
    """``fn(*args, **kwargs, core=core)``, its result written to ``jobs`` (:func:`_save_job`)."""
    result = fn(*args, **kwargs, core=core)
    _save_job(Path(jobs), name, settings, result)
    return result


def _save_job(jobs: Path, name: str, settings: dict, result) -> None:
    """A job's result as ``name.json`` (the run's settings and the rows, or a member's fit
    seconds) and ``name-figures.npz`` (the rows' figure arrays); the JSON last, so that a job
    stopped while writing is not taken as finished."""
    record = {"settings": settings}
    if isinstance(result, float):
        record["fit_seconds"] = result
    else:
        rows, figures = result
        record["rows"] = rows
        arrays = {f"{i}/{key}": np.asarray(value) for i, row_arrays in enumerate(figures)
                  for key, value in row_arrays.items()}
        np.savez(jobs / f"{name}-figures.npz", **arrays)
    partial = jobs / f"{name}.json.part"
    partial.write_text(json.dumps(record, default=_json_number))
    partial.replace(jobs / f"{name}.json")


def _json_number(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"cannot keep a {type(value).__name__} in a job's record")


def _load_job(jobs: Path, name: str, settings: dict):
    """A finished job's result (as :func:`_save_job` wrote it) if it ran with ``settings``, else None."""
    try:
        record = json.loads((jobs / f"{name}.json").read_text())
        if record.get("settings") != settings:
            return None
        if "fit_seconds" in record:
            return float(record["fit_seconds"]) if (jobs / f"{name}{_MODEL_SUFFIX}").is_file() else None
        rows = record["rows"]
        with np.load(jobs / f"{name}-figures.npz", allow_pickle=False) as saved:
            figures = [{} for _ in rows]
            for key in saved.files:
                i, field = key.split("/", 1)
                figures[int(i)][field] = saved[key]
        return rows, figures
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _figures(figures, out: Path) -> None:
    from probprop.plots import plot_reliability, plot_score_histograms

    for (dataset, method), arrays in figures.items():
        if base_method(method) not in FIGURE_METHODS:
            continue
        plot_reliability(arrays["labels"], arrays["proba"], path=out / f"reliability-{dataset}-{method}.png",
                         title=f"{method}, {dataset} test set")
        scores = {f"{dataset} (in)": arrays["confidence_in"]}
        scores.update({k.removeprefix("confidence_"): v for k, v in arrays.items()
                       if k.startswith("confidence_") and k != "confidence_in"})
        plot_score_histograms(scores, path=out / f"confidence-{dataset}-{method}.png",
                              title=f"{method} trained on {dataset}: top-class probability")


def _cell(group, column, digits=4, scale=1.0):
    values = group[column].to_numpy(np.float64) * scale
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.{digits}f} ± {se:.{digits}f}"


def _cnn_description() -> str:
    convs = ", ".join(f"{c} maps {k}x{k}" + (f" + {p}x{p} average pooling" if p > 1 else "") for c, k, p in CNN_CONV)
    return f"convolutions ({convs}), dense {'-'.join(map(str, CNN_HIDDEN))}, 10 outputs (ReLU)"


def report(frame, command: str, wall_seconds: float, workers: int = 2, reused=(0, 0)) -> str:
    """The report's text; ``reused``: (jobs whose results a ``--resume`` took from an earlier
    run, all jobs)."""
    from probprop.bench.machine import cpu_name, jobs_at_a_time

    seeds = frame["seed"].nunique()
    base = frame["method"].map(base_method)
    cnns = [m for m in CNN_METHODS if (base == m).any()]
    dense = frame["method"][~base.isin(CNN_METHODS)]
    mlps = sorted(set(frame.loc[dense.index, "network"].dropna())) if "network" in frame else []
    mlps = mlps or ["784-100-100-10"]  # results from before the network column: the default
    mlp_text = f"Networks {' and '.join(mlps)} (ReLU)"
    if cnns and len(dense):
        networks = f"{mlp_text}, but\n{', '.join(cnns)}: {_cnn_description()};"
    elif cnns:
        networks = f"Network of {', '.join(cnns)}:\n{_cnn_description()};"
    else:
        networks = f"{mlp_text};"
    shifted = [m for m in SHIFT_METHODS if (base == m).any()]
    if shifted:
        networks += (f" {', '.join(shifted)} train on images moved by up to {AUGMENT_SHIFT} pixels each way, a fresh"
                     " random offset per image and pass;")
    by_max = [m for m in cnns if m.startswith("pbp-cnn-max")]
    if by_max:
        verb = "pools" if len(by_max) == 1 else "pool"
        networks += f" {', '.join(by_max)} {verb} by max instead (2x2, Clark's moment matching of each window's maximum);"
    devices = sorted(set(frame["device"].dropna()) - {"cpu"}) if "device" in frame else []
    on = f"; the probprop methods on JAX's default device, {', '.join(devices)}" if devices else ""
    ensembles = frame[base.isin(ENSEMBLE_METHODS)]
    if len(ensembles):  # results from before the members column: the default
        counts = ensembles["members"].fillna(ENSEMBLE_MEMBERS) if "members" in ensembles else [ENSEMBLE_MEMBERS]
        networks += f" ensembles of {' / '.join(str(n) for n in sorted({int(n) for n in counts}))} members;"
    split = [m for m in MEMBER_JOB_METHODS if (base == m).any()]
    if split:
        networks += (f" {', '.join(split)}: each member fitted alone, as a job of its own on one core, then the"
                     " members combined (fit seconds: the members' sum);")
    if reused[0]:
        wall_text = (f"{wall_seconds:.0f} s wall time of the run that finished it, `--resume`d: {reused[0]} of "
                     f"{reused[1]} jobs' results from earlier runs, with the times measured then")
    else:
        wall_text = f"{wall_seconds:.0f} s wall time"
    lines = [
        "# Image classification: MNIST and Fashion-MNIST",
        "",
        f"Command: `{command}` ({wall_text}, {jobs_at_a_time(workers)}, each pinned to one core;",
        f"CPU: {cpu_name()}{on}). Means ± standard errors over {seeds} seeds. {networks}",
        "how each method is trained is in `probprop/bench/images.py`. ECE: 15 equal-width bins; adaptive: 15",
        "equal-mass bins. OOD AUROC: the other image set's test images (and noise images) as positives.",
        "",
        "## Test set",
        "",
        "| dataset | method | epochs | error % | NLL | Brier | ECE | ECE adaptive | misclass. AUROC |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (dataset, method), g in frame.groupby(["dataset", "method"], sort=False):
        lines.append(f"| {dataset} | {method} | {int(g['epochs'].iloc[0])} | {_cell(g, 'error', 2, 100)} | "
                     f"{_cell(g, 'nll')} | {_cell(g, 'brier')} | {_cell(g, 'ece')} | {_cell(g, 'ece_adaptive')} | "
                     f"{_cell(g, 'misclassification_auroc', 3)} |")
    lines += ["", "## Out-of-distribution detection (AUROC; AUPR in results.csv)", ""]
    ood_cols = [c for c in frame.columns if c.startswith("ood_") and c.endswith("_auroc")]
    sets = sorted({c[4:].rsplit("_", 2)[0].split("_")[0] for c in ood_cols})
    score_names = ("max_probability", "entropy", "mutual_information", "epistemic_variance")
    lines += ["| trained on | method | OOD set | " + " | ".join(score_names) + " |", "|---|---|---|" + "---:|" * 4]
    for (dataset, method), g in frame.groupby(["dataset", "method"], sort=False):
        for name in sets:
            cells = []
            for score in score_names:
                col = f"ood_{name}_{score}_auroc"
                cells.append(_cell(g, col, 3) if col in g and g[col].notna().all() else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {dataset} | {method} | {name} | " + " | ".join(cells) + " |")
    lines += ["", f"## Speed (images per second, one core{' and the ' + ', '.join(devices) if devices else ''})", "",
              "| dataset | method | training | predict_proba | predict_dist / scores | fit seconds |",
              "|---|---|---:|---:|---:|---:|"]
    for (dataset, method), g in frame.groupby(["dataset", "method"], sort=False):
        lines.append(f"| {dataset} | {method} | {g['train_images_per_s'].mean():,.0f} | "
                     f"{g['predict_images_per_s'].mean():,.0f} | {g['scores_images_per_s'].mean():,.0f} | "
                     f"{g['fit_seconds'].mean():.1f} |")
    lines += ["", "## Figures", ""]
    for dataset in frame["dataset"].unique():
        for method in frame.loc[frame["dataset"] == dataset, "method"].unique():
            if base_method(method) in FIGURE_METHODS:
                lines += [f"![reliability {dataset} {method}](reliability-{dataset}-{method}.png)",
                          f"![confidence {dataset} {method}](confidence-{dataset}-{method}.png)", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    run(train_rows=int(os.environ.get("ROWS", "0")) or None)

"""Deeper PBP against the original C code (issue 18).

``data/pbp-reference-deep.npz`` holds numbers written by the original PBP code
(HIPS/Probabilistic-Backpropagation, ``c/PBP_net/network.c``, built outside the project), not
code: for a two-hidden-layer (16, 16) and a three-hidden-layer (12, 12, 12) ReLU network on a
small synthetic data set (48 rows, 4 inputs, standardised), the initial weight means and
variances, the data order of three epochs, and after each epoch (ADF sweep, then the EP prior
step) every weight's mean and variance, the four prior-site arrays (in the C code's natural
parameters: the Gamma site's second one is -rate), the noise Gamma and the
prior Gamma. Keys ``l2_*`` and ``l3_*``; weights flattened layer by layer, row-major, in
probprop's layout (out, fan_in + 1), bias last.

In both cases the EP prior step takes the prior Gamma through shape < 1 in the first epoch: the
original keeps such an update and skips the improper cavities after it. probprop used to refuse
it and then drove the prior variance, and the weights of deeper networks, to huge values.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probprop  # noqa: F401  (enables float64)
from probprop.learners import pbp, pbp_numpy
from probprop.likelihoods import Gamma

FIXTURE = Path(__file__).parent / "data" / "pbp-reference-deep.npz"


def _unflatten(vector, shapes):
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(jnp.asarray(vector[start:start + size].reshape(shape)))
        start += size
    assert start == vector.size
    return tuple(out)


def _case(tag):
    with np.load(FIXTURE) as z:
        case = {k[len(tag) + 1:]: z[k] for k in z.files if k.startswith(tag + "_")}
    spec = pbp.PBPSpec(n_in=case["X"].shape[1], hidden=tuple(int(h) for h in case["hidden"]))
    state = pbp.init(jax.random.PRNGKey(0), spec)
    shapes = [m.shape for m in state.means]
    state = state.replace(means=_unflatten(case["m0"], shapes), variances=_unflatten(case["v0"], shapes))
    return case, state, shapes


def _flat(arrays):
    return np.concatenate([np.ravel(np.asarray(a)) for a in arrays])


@pytest.mark.parametrize("tag", ["l2", "l3"])
def test_deep_epochs_equal_the_original_c_code(tag):
    case, state, _ = _case(tag)
    X, y = case["X"], case["y"]
    params = pbp_numpy.from_state(state)
    for epoch, order in enumerate(case["orders"], start=1):
        state = pbp.refine_prior(pbp.adf_sweep(state, X[order], y[order]))
        pbp_numpy.epoch(params, X, y, order)
        prior = np.asarray([state.prior.shape, state.prior.rate])
        if epoch == 1:
            # the case exercises the step this fixture was made for: an improper prior Gamma kept
            assert case["prior1"][0] < 1.0
        for name, ours, numpy_ref, theirs in (
            ("means", _flat(state.means), _flat(params["m"]), case[f"m{epoch}"]),
            ("variances", _flat(state.variances), _flat(params["v"]), case[f"v{epoch}"]),
            ("site precisions", _flat(state.sites.precision), _flat(params["site_v"]), case[f"site_precision{epoch}"]),
            ("site natural means", _flat(state.sites.natmean), _flat(params["site_m"]), case[f"site_natmean{epoch}"]),
            ("site shapes", _flat(state.sites.shape), _flat(params["site_a"]), case[f"site_shape{epoch}"]),
            # the C code stores the Gamma site's natural parameter -rate; probprop the rate
            ("site rates", _flat(state.sites.rate), _flat(params["site_b"]), -case[f"site_rate{epoch}"]),
            ("noise", np.asarray([state.noise.shape, state.noise.rate]), np.asarray(params["noise"]), case[f"noise{epoch}"]),
            ("prior", prior, np.asarray(params["prior"]), case[f"prior{epoch}"]),
        ):
            scale = np.maximum(np.abs(theirs), 1.0)
            assert np.max(np.abs(ours - theirs) / scale) < 1e-9, f"epoch {epoch}: {name} differ from the C code"
            assert np.max(np.abs(numpy_ref - theirs) / scale) < 1e-9, f"epoch {epoch}: NumPy {name} differ"
    assert int(state.rejected) == 0


def test_an_improper_prior_gamma_is_kept_and_later_cavities_are_skipped():
    """The reference's EP rule, on a hand-built state: a proper cavity whose moment match gives
    shape < 1 updates the prior anyway; the next weight's cavity is then improper and skipped."""
    case, state, _ = _case("l2")
    X, y, order = case["X"], case["y"], case["orders"][0]
    swept = pbp.adf_sweep(state, X[order], y[order])
    refined = pbp.refine_prior(swept)
    assert float(refined.prior.shape) < 1.0  # kept, as the C code does
    # every weight after the step that made the prior improper is skipped, although many of
    # them have a proper Gaussian cavity: it is the prior's cavity that is improper now
    changed = np.nonzero(_flat(refined.means) != _flat(swept.means))[0]
    last = int(changed[-1])
    assert last < len(_flat(swept.means)) - 100
    v, site_precision = _flat(swept.variances)[last + 1:], _flat(swept.sites.precision)[last + 1:]
    v_cav = 1.0 / (1.0 / v - site_precision)
    assert np.sum((v_cav > 0) & (v_cav < 1e6)) > 100
    # a non-finite Gamma update is still refused: a prior at shape 1 makes the plug-in
    # variance rate / (shape - 1) infinite for the first cavity
    broken = swept.replace(prior=Gamma(jnp.asarray(1.0 + 1e-300), jnp.asarray(6.0)))
    out = pbp.refine_prior(broken)
    assert np.isfinite(float(out.prior.shape)) and np.isfinite(float(out.prior.rate))
    assert np.all(np.isfinite(_flat(out.means))) and np.all(_flat(out.variances) > 0)


def test_a_fitted_model_with_an_improper_prior_saves_loads_and_predicts(tmp_path):
    """After fitting a deeper network on small data the prior Gamma may be improper (shape < 1);
    it is a bookkeeping state of EP, not used for prediction: the model file keeps and accepts it."""
    from probprop import PBPRegressor

    case, _, _ = _case("l2")
    model = PBPRegressor(hidden=(16, 16), epochs=3, random_state=0).fit(case["X"], case["y"])
    assert float(model.state_.prior.shape) < 1.0
    path = tmp_path / "deep.probprop"
    model.save(path)
    loaded = PBPRegressor.load(path)
    np.testing.assert_array_equal(loaded.state_.prior.shape, model.state_.prior.shape)
    mean, std = model.predict(case["X"], return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    np.testing.assert_array_equal(loaded.predict(case["X"]), mean)

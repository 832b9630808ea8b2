"""The drift model (probprop.learners.drift): the transition against the Kalman filter's predict
step, gamma = 1 against no drift model, the gamma gradient against autodiff, learned forgetting
after an abrupt change."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probprop.learners import drift, pbp, tagi
from probprop.learners.base import float64
from probprop.likelihoods import Probit
from probprop.moments import adf


@settings(max_examples=60, deadline=None)
@given(m=st.floats(-5, 5), v=st.floats(1e-3, 4), gm=st.floats(-3, 3), gv=st.floats(-2, 0.1))
def test_update_gradients_invert_the_gaussian_update(m, v, gm, gv):
    m_new, v_new = adf.gaussian_update(m, v, gm, gv)
    back_m, back_v = adf.update_gradients(m, v, m_new, v_new)
    assert back_m == pytest.approx(gm, rel=1e-6, abs=1e-6)
    assert back_v == pytest.approx(gv, rel=1e-6, abs=1e-5)


@float64
def test_transition_is_the_kalman_predict_step_of_a_diagonal_covariance():
    rng = np.random.default_rng(0)
    spec = pbp.PBPSpec(n_in=4, hidden=(), learn_noise=False, noise_variance=0.1)
    state = pbp.init(jax.random.PRNGKey(0), spec)
    state = state.replace(means=(jnp.asarray(rng.normal(size=(1, 5))),),
                          variances=(jnp.asarray(rng.uniform(0.1, 2.0, size=(1, 5))),))
    prior = drift.prior(pbp.learner, spec)
    g = 0.97
    m, P = np.asarray(state.means[0])[0], np.diag(np.asarray(state.variances[0])[0])
    F = g * np.eye(5)
    Q = (1 - g**2) * np.diag(np.asarray(prior.variances[0])[0])
    m_kf, P_kf = F @ m, F @ P @ F.T + Q
    moved = drift.transition(state, prior, g, shrink_mean=True)
    np.testing.assert_allclose(np.asarray(moved.means[0])[0], m_kf, rtol=1e-14)
    np.testing.assert_allclose(np.diag(np.asarray(moved.variances[0])[0]), P_kf, rtol=1e-14)
    kept = drift.transition(state, prior, g)  # the default keeps the means (F = I on the mean)
    np.testing.assert_array_equal(np.asarray(kept.means[0]), np.asarray(state.means[0]))
    np.testing.assert_allclose(np.asarray(kept.variances[0])[0], np.diag(P_kf), rtol=1e-14)


def _stream(n=600, change=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    w = np.array([1.0, -1.0, 0.5])
    y = np.where(np.arange(n) < change, X @ w, -(X @ w)) + 0.1 * rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("learner", [pbp.learner, tagi.learner], ids=["pbp", "tagi"])
def test_gamma_one_is_no_drift_model_bit_for_bit(learner):
    X, y = _stream(80)
    spec = learner.spec_class(n_in=3, hidden=(8,)) if learner is pbp.learner else \
        learner.spec_class(n_in=3, hidden=(8,), batch_size=3, sigma_v=0.2)
    state = learner.init(jax.random.PRNGKey(1), spec)
    prior = drift.prior(learner, spec)
    plain, _, rec_plain = drift.sweep(learner, state, None, prior, X, y, None, None, record=True)
    one, _, rec_one = drift.sweep(learner, state, None, prior, X, y, None,
                                  drift.Forgetting(gamma=1.0, learn=False, shrink_mean=True), record=True)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(one)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(rec_plain[0].mean), np.asarray(rec_one[0].mean))
    # and the sweep without a drift model is the learner's own ordered step, row group by row group
    manual = state
    rows = getattr(spec, "batch_size", 1)
    for lo in range(0, 80, rows):
        manual = learner.step(manual, jnp.asarray(X[lo:lo + rows]), jnp.asarray(y[lo:lo + rows]),
                              jnp.ones(len(y[lo:lo + rows]), bool))
    for a, b in zip(manual.means, plain.means):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


@float64
@pytest.mark.parametrize("shrink", [False, True])
def test_gamma_gradient_matches_autodiff_of_the_log_evidence(shrink):
    """For PBP with a fixed noise, log Z(gamma) = log N(y | forward moments of the transitioned
    posterior) exactly, so its autodiff derivative is the oracle for the gradient recovered from
    the update."""
    rng = np.random.default_rng(2)
    spec = pbp.PBPSpec(n_in=3, hidden=(6,), learn_noise=False, noise_variance=0.3)
    state = pbp.init(jax.random.PRNGKey(3), spec)
    state = state.replace(variances=tuple(v * rng.uniform(0.05, 0.5, size=v.shape) for v in state.variances))
    prior = drift.prior(pbp.learner, spec)
    x, y = jnp.asarray(rng.normal(size=3)), jnp.asarray(0.7)
    g = 0.9

    def log_z(gamma):
        moved = drift.transition(state, prior, gamma, shrink)
        mean, var = pbp.forward(moved, x[None])
        mean, var = jnp.ravel(mean)[0], jnp.ravel(var)[0]
        return -0.5 * (jnp.log(var + 0.3) + (y - mean) ** 2 / (var + 0.3))

    moved = drift.transition(state, prior, g, shrink)
    learned = pbp.adf_update(moved, x, y)
    got = drift._gamma_gradient(state.means, state.variances, prior.variances, moved, learned, g, 1, shrink)
    assert float(got) == pytest.approx(float(jax.grad(log_z)(g)), rel=1e-6)


@float64
@pytest.mark.parametrize("shrink", [False, True])
def test_with_replay_the_gamma_gradient_is_that_of_the_once_counted_posterior(shrink):
    """Under replay (R replays per step) the gradient is autodiff of the one-step log evidence at
    the posterior that counts each row once: the transitioned precision keeps the prior's and
    1 / (R + 1) of what the data added."""
    rng = np.random.default_rng(4)
    spec = pbp.PBPSpec(n_in=3, hidden=(6,), learn_noise=False, noise_variance=0.3)
    state = pbp.init(jax.random.PRNGKey(5), spec)
    state = state.replace(variances=tuple(v * rng.uniform(0.01, 0.9, size=v.shape) for v in state.variances))
    prior = drift.prior(pbp.learner, spec)
    x, y, g, counts = jnp.asarray(rng.normal(size=3)), jnp.asarray(-0.4), 0.95, 5.0

    def log_z(gamma):
        moved = drift.transition(state, prior, gamma, shrink)
        moved = moved.replace(variances=tuple(1.0 / (1.0 / v0 + (1.0 / v - 1.0 / v0) / counts) for v, v0 in
                                              zip(moved.variances, prior.variances)))
        mean, var = pbp.forward(moved, x[None])
        mean, var = jnp.ravel(mean)[0], jnp.ravel(var)[0]
        return -0.5 * (jnp.log(var + 0.3) + (y - mean) ** 2 / (var + 0.3))

    moved = drift.transition(state, prior, g, shrink)
    got = drift._once_counted_gamma_gradient(pbp.learner, state, prior, moved, x[None], y[None],
                                             jnp.ones(1, bool), g, 1.0, shrink, counts)
    assert float(got) == pytest.approx(float(jax.grad(log_z)(g)), rel=1e-6)


@float64
def test_the_sweep_judges_gamma_at_the_posterior_counting_each_row_once_under_replay():
    """One step of the sweep with replay R moves gamma by the once-counted gradient with R + 1."""
    rng = np.random.default_rng(6)
    spec = pbp.PBPSpec(n_in=3, hidden=(4,), learn_noise=False, noise_variance=0.3)
    state = pbp.init(jax.random.PRNGKey(6), spec)
    state = state.replace(variances=tuple(v * rng.uniform(0.02, 0.6, size=v.shape) for v in state.variances))
    prior = drift.prior(pbp.learner, spec)
    X, y = rng.normal(size=(1, 3)), rng.normal(size=1)
    forgetting, replay = drift.Forgetting(gamma=0.99), drift.Replay(rows=3, window=8)
    start = drift.init(forgetting)
    _, got, _, _ = drift.sweep(pbp.learner, state, start, prior, X, y, None, forgetting, False, replay)
    g = drift.gamma(start, forgetting)
    moved = drift.transition(state, prior, g)

    def gradient(counts):
        return float(drift._once_counted_gamma_gradient(pbp.learner, state, prior, moved, jnp.asarray(X),
                                                        jnp.asarray(y), jnp.ones(1, bool), g, 1.0, False, counts))

    scale = -float(jnp.exp(start.log_one_minus))  # d gamma / d log(1 - gamma); the first moment is the gradient
    assert float(got.first) == pytest.approx(gradient(4.0) * scale, rel=1e-10)
    assert gradient(3.0) != pytest.approx(gradient(4.0), rel=1e-3)  # the count matters


def test_replay_does_not_teach_forgetting_on_a_stream_without_drift():
    """Without drift, replay's extra evidence alone made the learned gamma forget (it fell below
    its start); judged at the once-counted posterior, it moves towards no forgetting."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 3))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=1500)
    spec = pbp.PBPSpec(n_in=3, hidden=(10,))
    state = pbp.init(jax.random.PRNGKey(0), spec)
    _, drift_state, _, _ = drift.sweep(pbp.learner, state, None, drift.prior(pbp.learner, spec), X, y, None,
                                       drift.Forgetting(), False, drift.Replay(rows=4, window=64))
    assert float(drift.gamma(drift_state, drift.Forgetting())) > 0.9999


def test_with_replay_learned_forgetting_still_responds_to_a_classification_stream():
    """A probit stream whose rows each say little (the posterior narrows slowly): gamma must still
    move away from its start under replay, as it does without replay."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 100))
    w = rng.normal(size=100)
    y = (np.where(np.arange(400) < 200, X @ w, -(X @ w)) + 0.5 * rng.normal(size=400) > 0).astype(np.float64)
    spec = pbp.PBPSpec(n_in=100, hidden=(50,), likelihood=Probit())  # capping v (R + 1) at v0 froze gamma here
    state = pbp.init(jax.random.PRNGKey(0), spec)
    _, drift_state, _, _ = drift.sweep(pbp.learner, state, None, drift.prior(pbp.learner, spec), X, y, None,
                                       drift.Forgetting(), False, drift.Replay(rows=4, window=64))
    assert abs(float(drift.gamma(drift_state, drift.Forgetting())) - 0.999) > 1e-4


def test_learned_forgetting_moves_towards_more_forgetting_after_an_abrupt_change():
    X, y = _stream(1200, change=600)
    spec = tagi.TAGISpec(n_in=3, hidden=(20,), batch_size=1, sigma_v=0.1)
    state = tagi.learner.init(jax.random.PRNGKey(0), spec)
    _, _, (_, gammas) = drift.sweep(tagi.learner, state, None, drift.prior(tagi.learner, spec), X, y,
                                    None, drift.Forgetting(), record=True)
    forget = 1.0 - np.asarray(gammas)
    assert forget[599] < forget[0] / 10  # a stationary start: much less forgetting than it began with
    assert forget[600:700].mean() > 1.5 * forget[599]  # measured: 5.5e-5 before, 9.7e-5 after


def test_padding_rows_move_neither_the_weights_nor_gamma():
    X, y = _stream(40)
    spec = pbp.PBPSpec(n_in=3, hidden=(5,))
    state = pbp.init(jax.random.PRNGKey(0), spec)
    prior = drift.prior(pbp.learner, spec)
    f = drift.Forgetting()
    Xp, yp = np.concatenate([X, np.zeros((24, 3))]), np.concatenate([y, np.zeros(24)])
    mask = np.arange(64) < 40
    a, da, _ = drift.sweep(pbp.learner, state, None, prior, X, y, None, f)
    b, db, _ = drift.sweep(pbp.learner, state, None, prior, Xp, yp, mask, f)
    for u, v in zip(jax.tree.leaves((a, da)), jax.tree.leaves((b, db))):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12)


@pytest.mark.parametrize("value, message", [
    (1.5, "gamma must be in"), (0.0, "gamma must be in"), ("x", "unknown forgetting"), (True, "forgetting must be"),
    ([0.9], "forgetting must be"),
])
def test_bad_forgetting_is_refused(value, message):
    with pytest.raises(ValueError, match=message):
        drift.as_forgetting(value)


def test_forgetting_fields_are_checked():
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        drift.Forgetting(learning_rate=0.0)
    with pytest.raises(ValueError, match="min_gamma < max_gamma"):
        drift.Forgetting(min_gamma=0.99, max_gamma=0.9)
    with pytest.raises(ValueError, match="starts inside"):
        drift.Forgetting(gamma=0.5)
    with pytest.raises(ValueError, match="finite number"):
        drift.Forgetting(gamma=float("nan"))
    assert drift.as_forgetting(None) is None and drift.as_forgetting("learn") == drift.Forgetting()
    assert drift.as_forgetting(0.99) == drift.Forgetting(gamma=0.99, learn=False)


def test_the_sweep_needs_an_online_step():
    from probprop.learners import mapnet

    with pytest.raises(ValueError, match="no online step"):
        drift.sweep(mapnet.learner, None, None, None, np.zeros((2, 1)), np.zeros(2))


def test_a_partly_filled_step_forgets_once_per_real_row():
    """TAGI steps batch_size rows at once; a step holding one real row (the rest padding) is
    preceded by gamma^1, not gamma^batch_size."""
    X, y = _stream(4)
    spec = tagi.TAGISpec(n_in=3, hidden=(5,), batch_size=4, sigma_v=0.3)
    state = tagi.learner.init(jax.random.PRNGKey(0), spec)
    prior = drift.prior(tagi.learner, spec)
    f = drift.Forgetting(gamma=0.9, learn=False)
    mask = np.array([True, False, False, False])
    got, _, _ = drift.sweep(tagi.learner, state, None, prior, X, y, mask, f)
    expected = tagi.step(drift.transition(state, prior, 0.9), jnp.asarray(X), jnp.asarray(y), jnp.asarray(mask))
    for a, b in zip(got.variances, expected.variances):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
    full, _, _ = drift.sweep(tagi.learner, state, None, prior, X, y, None, f)
    expected = tagi.step(drift.transition(state, prior, 0.9**4), jnp.asarray(X), jnp.asarray(y), jnp.ones(4, bool))
    for a, b in zip(full.variances, expected.variances):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_drift_states_that_the_next_step_could_not_use_are_refused():
    f = drift.Forgetting()
    drift.check_state([np.log1p(-0.999), 0.1, 0.2, 3.0], f)
    for bad, message in [([np.log1p(-0.999), 0.0, -1.0, 3.0], "second"), ([0.0, 0.0, 0.0, 0.0], "outside"),
                         ([np.log1p(-0.999), 0.0, 0.0, -1.0], "step count"), ([np.nan, 0, 0, 0], "outside"),
                         ([1.0, 2.0], "four numbers")]:
        with pytest.raises(ValueError, match=message):
            drift.check_state(bad, f)


def test_numbers_of_any_real_type_and_overflowing_ones():
    assert drift.as_forgetting(np.float32(0.5)).gamma == pytest.approx(0.5)
    with pytest.raises(ValueError, match="finite number"):
        drift.Forgetting(gamma=10**400, learn=False)


@pytest.mark.parametrize("value, expected", [
    (None, None), (0, None), (4, drift.Replay(4, drift.REPLAY_WINDOW)), ((2, 8), drift.Replay(2, 8)),
    ([3, 16], drift.Replay(3, 16)), (np.int64(1), drift.Replay(1, drift.REPLAY_WINDOW)),
])
def test_replay_values(value, expected):
    assert drift.as_replay(value) == expected


@pytest.mark.parametrize("value", [-1, 1.5, True, (0, 4), (2, 0), (2,), "4", (2, 3, 4), (2.0, 4)])
def test_bad_replay_is_refused(value):
    with pytest.raises(ValueError, match="replay must be"):
        drift.as_replay(value)


@pytest.mark.parametrize("learner", [pbp.learner, tagi.learner], ids=["pbp", "tagi"])
def test_replay_over_a_window_of_one_step_repeats_the_step_before(learner):
    """With a window of one row and one replay, whatever the draws, each step is followed by a
    step on the last row learned before it (a TAGI step of 3 rows: that row 3 times): x1, x2, x1,
    x3, x2, x4, x3, ... for PBP."""
    X, y = _stream(24)
    rows = 1 if learner is pbp.learner else 3
    spec = learner.spec_class(n_in=3, hidden=(5,)) if rows == 1 else \
        learner.spec_class(n_in=3, hidden=(5,), batch_size=rows, sigma_v=0.2)
    state = learner.init(jax.random.PRNGKey(2), spec)
    prior = drift.prior(learner, spec)
    replay = drift.Replay(rows=1, window=1)
    got, _, _, window = drift.sweep(learner, state, None, prior, X, y, None, None, False, replay)
    manual, one = state, jnp.ones(rows, bool)
    groups = [(jnp.asarray(X[lo:lo + rows]), jnp.asarray(y[lo:lo + rows])) for lo in range(0, 24, rows)]
    for k, (Xg, yg) in enumerate(groups):
        manual = learner.step(manual, Xg, yg, one)
        if k:
            Xl, yl = groups[k - 1]
            manual = learner.step(manual, jnp.repeat(Xl[-1:], rows, axis=0), jnp.repeat(yl[-1:], rows), one)
    for a, b in zip(jax.tree.leaves(manual), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
    # the window holds the last rows, and is full
    np.testing.assert_array_equal(np.asarray(window.X), X[-1:])
    assert int(window.filled) == 1 and int(window.slot) == 0


def test_replay_continues_across_sweeps_and_ignores_padding():
    """A stream swept in one call or in two (the window carried over, the second padded) ends in
    the same posterior: padding steps neither replay nor draw."""
    X, y = _stream(60)
    spec = pbp.PBPSpec(n_in=3, hidden=(5,))
    state = pbp.init(jax.random.PRNGKey(0), spec)
    prior = drift.prior(pbp.learner, spec)
    replay, f = drift.Replay(rows=3, window=16), drift.Forgetting()
    whole, d_whole, _, w_whole = drift.sweep(pbp.learner, state, None, prior, X, y, None, f, False, replay)
    first, d1, _, w1 = drift.sweep(pbp.learner, state, None, prior, X[:25], y[:25], None, f, False, replay)
    Xp, yp = np.concatenate([X[25:], np.zeros((29, 3))]), np.concatenate([y[25:], np.zeros(29)])
    second, d2, _, w2 = drift.sweep(pbp.learner, first, d1, prior, Xp, yp, np.arange(64) < 35, f, False, replay, w1)
    for a, b in zip(jax.tree.leaves((whole, d_whole, w_whole)), jax.tree.leaves((second, d2, w2))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
    # and replay moved the posterior beyond what the plain sweep learns
    plain, _, _ = drift.sweep(pbp.learner, state, None, prior, X, y, None, f)
    assert not np.allclose(np.asarray(plain.means[0]), np.asarray(whole.means[0]))


def test_a_step_of_more_rows_than_the_window_keeps_its_last_rows():
    """A TAGI step of 8 rows into a window of 3: the window holds the step's last 3 rows, each slot
    written once (no two writes to one slot, whose order a device may not keep)."""
    X, y = _stream(20)
    spec = tagi.TAGISpec(n_in=3, hidden=(4,), batch_size=8, sigma_v=0.2)
    state = tagi.init(jax.random.PRNGKey(0), spec)
    prior = drift.prior(tagi.learner, spec)
    mask = np.arange(24) < 20  # the last step: 4 real rows and 4 of padding
    Xp, yp = np.concatenate([X, np.zeros((4, 3))]), np.concatenate([y, np.zeros(4)])
    *_, window = drift.sweep(tagi.learner, state, None, prior, Xp, yp, mask, None, False, drift.Replay(1, 3))
    # 20 rows written in order into a ring of 3: row r sits in slot r % 3
    np.testing.assert_array_equal(np.asarray(window.X)[np.arange(17, 20) % 3], X[17:20])
    assert int(window.filled) == 3 and int(window.slot) == 20 % 3


def test_the_sweep_checks_its_replay():
    spec = pbp.PBPSpec(n_in=3, hidden=(2,))
    state = pbp.init(jax.random.PRNGKey(0), spec)
    X, y = _stream(4)
    with pytest.raises(ValueError, match="replay must be"):
        drift.sweep(pbp.learner, state, None, drift.prior(pbp.learner, spec), X, y, replay=drift.Replay(2, 0))
    with pytest.raises(ValueError, match="replays nothing"):
        drift.sweep(pbp.learner, state, None, drift.prior(pbp.learner, spec), X, y, replay=0)
    # an int is a Replay over the default window
    *_, window = drift.sweep(pbp.learner, state, None, drift.prior(pbp.learner, spec), X, y, replay=2)
    assert window.X.shape == (drift.REPLAY_WINDOW, 3)

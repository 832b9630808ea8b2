"""probprop's Threefry keys, splits and draws are jax.random's, bit for bit, on the host and traced;
the light-compile jit gives the default jit's numbers and falls back where its options are refused."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probprop  # noqa: F401
from probprop.learners import _threefry, base, memory, pbp, tagi
from probprop.learners.base import light_jit
from probprop.moments import ACTIVATIONS

SEEDS = st.integers(min_value=0, max_value=2**63 - 1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_key_is_prng_key(seed):
    got = _threefry.key(seed)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.random.PRNGKey(seed)))
    if seed >= 0:  # built on the host (a negative seed is left to JAX)
        assert isinstance(got, np.ndarray) and got.dtype == np.uint32


def test_key_takes_integers_only():
    with pytest.raises(TypeError):
        _threefry.key(1.5)


_traced_split = jax.jit(_threefry.split, static_argnums=1)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, num=st.integers(min_value=1, max_value=9))
def test_split_on_the_host_and_traced(seed, num):
    key = jax.random.PRNGKey(seed)
    expected = np.asarray(jax.random.split(key, num))
    host = _threefry.split(key, num)
    assert isinstance(host, np.ndarray)  # no compiled program
    np.testing.assert_array_equal(host, expected)
    np.testing.assert_array_equal(np.asarray(_traced_split(key, num)), expected)


_traced_bits = jax.jit(_threefry.bits, static_argnums=1)


@pytest.mark.parametrize("n", [1, 2, 3, 512, 1001, 4097])
def test_bits_on_the_host_and_traced(n):
    for seed in (0, 7, 2**40 + 3):
        key = jax.random.PRNGKey(seed)
        expected = np.asarray(jax.random.bits(key, (n,), jnp.uint32))
        np.testing.assert_array_equal(_threefry.bits(key, n), expected)
        traced = _traced_bits(key, n)
        np.testing.assert_array_equal(np.asarray(traced), expected)


def _normal_pair(n):
    """jax.random.normal and probprop's, each divided by a traced divisor (as the sampler does)."""
    jax_draw = jax.jit(lambda k, d: jax.random.normal(k, (n,), jnp.float64) / d)
    own_draw = jax.jit(lambda k, d: _threefry.normal(k, n) / d)
    return jax_draw, own_draw


@pytest.mark.parametrize("n", [1, 2, 5, 4096, 8192])
def test_normal_is_jax_random_normal(n):
    jax_draw, own_draw = _normal_pair(n)
    for seed in range(6):
        key = jax.random.PRNGKey(seed)
        np.testing.assert_array_equal(np.asarray(own_draw(key, 3.7)), np.asarray(jax_draw(key, 3.7)))


def test_without_partitionable_threefry_it_is_jax_random():
    """jax_threefry_partitionable off: another stream, which jax.random itself then gives."""
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        key = jax.random.PRNGKey(5)
        np.testing.assert_array_equal(np.asarray(_threefry.split(key, 3)), np.asarray(jax.random.split(key, 3)))
        np.testing.assert_array_equal(np.asarray(_threefry.bits(key, 9)),
                                      np.asarray(jax.random.bits(key, (9,), jnp.uint32)))
        np.testing.assert_array_equal(
            np.asarray(jax.jit(lambda k: _threefry.normal(k, 9))(key)),
            np.asarray(jax.random.normal(key, (9,), jnp.float64)))
    finally:
        jax.config.update("jax_threefry_partitionable", before)


def _fitted(learner, spec, rows: int = 64):
    state = learner.init(_threefry.key(0), spec)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, spec.n_in))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=rows)
    for _ in range(3):
        state = learner.update(state, X, y)
    return state, rng.normal(size=(256, spec.n_in)) * 2


def _fitted_state():
    return _fitted(pbp, pbp.PBPSpec(n_in=3, hidden=(20,)))


def test_light_programs_give_the_default_programs_numbers(default_xla):
    """The light options change the compile, not the numbers beyond rounding (at XLA's default
    level, where the library runs; docs/engine.md): PBP's and TAGI's prediction programs equal
    the default programs' to 1e-14 of each output's largest value, bit for bit for PBP's ReLU
    network (the paper's): the moments' program with each activation, the bare forward pass (the
    same layers without the noise) with ReLU and GELU; the normal sampler gives
    jax.random.normal's draws bit for bit."""
    if default_xla.rerun():
        return
    assert base.light_compile_options() == base.LIGHT_COMPILE_OPTIONS  # taken by this jaxlib
    rng = np.random.default_rng(1)
    X = rng.normal(size=(256, 3)) * 2
    for activation in sorted(ACTIVATIONS):
        for module, spec in ((pbp, pbp.PBPSpec(n_in=3, hidden=(20,), activation=activation)),
                             (tagi, tagi.TAGISpec(n_in=3, hidden=(20,), activation=activation))):
            state = module.init(_threefry.key(0), spec)
            for light in (module._predict_moments, module._predict)[: 2 if activation in ("relu", "gelu") else 1]:
                got = jax.tree_util.tree_leaves(light(state, X))
                default = jax.tree_util.tree_leaves(jax.jit(light.__wrapped__)(state, X))
                for a, b in zip(got, default):
                    if module is pbp and activation == "relu":
                        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
                    else:
                        scale = float(np.max(np.abs(np.asarray(b))))  # rounding, also of near-zero sums
                        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14, atol=1e-14 * scale)
    jax_draw, _ = _normal_pair(4096)
    for seed in (0, 3, 12345):
        key = _threefry.key(seed)
        np.testing.assert_array_equal(np.asarray(_threefry._normal_draw(key, 4096, 3.7)), np.asarray(jax_draw(key, 3.7)))


def test_light_jit_falls_back_where_the_options_are_refused(monkeypatch):
    monkeypatch.setattr(base, "LIGHT_COMPILE_OPTIONS", {"xla_no_such_option_anywhere": True})
    monkeypatch.setattr(base, "_light_options", None)
    assert base.light_compile_options() == {}

    @light_jit(static_argnums=1)
    def scaled(x, k):
        return x * k

    np.testing.assert_array_equal(np.asarray(scaled(np.arange(3.0), 2)), [0.0, 2.0, 4.0])
    assert scaled.lower(np.arange(3.0), 2).compile() is not None  # the jit's own attributes
    assert copy.deepcopy(scaled) is scaled and copy.copy(scaled) is scaled
    assert "scaled" in repr(scaled)


def test_light_jit_inside_vmap_and_jit():
    """Traced calls take the plain jit (JAX refuses compiler options on a nested jit)."""
    state, X = _fitted_state()
    direct = np.asarray(pbp._predict_moments(state, X).mean)
    under_jit = np.asarray(jax.jit(lambda s: pbp._predict_moments(s, X).mean)(state))
    np.testing.assert_allclose(under_jit, direct, rtol=1e-12)
    stacked = jax.tree_util.tree_map(lambda a: np.stack([a, a]), state)
    under_vmap = np.asarray(jax.vmap(lambda s: pbp._predict_moments(s, X).mean)(stacked))
    np.testing.assert_allclose(under_vmap, np.stack([direct, direct]), rtol=1e-12)


def test_concrete_arguments_inside_a_trace():
    """Inside eval_shape or jit with closed-over concrete values (no tracer among the arguments)
    the learners still trace, as jax.random did."""
    spec = pbp.PBPSpec(n_in=3, hidden=(20,))
    key = _threefry.key(0)  # concrete, closed over
    template = jax.eval_shape(lambda: pbp.init(key, spec))
    assert template.means[0].shape == (20, 4) and template.key.shape == (2,)
    batched = jax.vmap(lambda i: pbp.init(key, spec).means[0] * i)(np.arange(2.0))
    np.testing.assert_array_equal(np.asarray(batched[1]), np.asarray(pbp.init(key, spec).means[0]))
    jax.jit(lambda: [leaf.at[...].get() for leaf in jax.tree_util.tree_leaves(pbp.init(key, spec))])()
    state, X = _fitted_state()
    shapes = jax.eval_shape(lambda: pbp.predict_moments(state, X))
    assert shapes.mean.shape == (256,)
    inside = jax.jit(lambda: pbp.predict_moments(state, X).mean)()
    np.testing.assert_allclose(np.asarray(inside), np.asarray(pbp.predict_moments(state, X).mean), rtol=1e-12)


def _tagi_prior_by_jax_random(key, spec):
    """TAGI's prior from jax.random's draws (each draw a program of its own), scaled in NumPy.
    (The compiled init it replaced folded the scale into its sampler's constant sqrt(2): the same
    weights to 1 ulp.)"""
    key, *layer_keys = jax.random.split(key, len(spec.weight_shapes) + 1)
    means, variances = [], []
    for layer, (k, (out, n)) in enumerate(zip(layer_keys, spec.weight_shapes)):
        var_w = spec.init_gain / (n - 1)
        draw = np.asarray(jax.random.normal(k, (out * (n - 1),), jnp.float64))
        mean_b = np.zeros((out, 1))
        if spec.heteroscedastic and layer == len(spec.weight_shapes) - 1:
            mean_b[1, 0] = np.log(spec.sigma_v**2)
        means.append(np.concatenate([draw.reshape(out, n - 1) * np.sqrt(var_w), mean_b], 1).astype(spec.dtype))
        variances.append(np.concatenate([np.full((out, n - 1), var_w), np.full((out, 1), spec.init_bias_variance)],
                                        1).astype(spec.dtype))
    return means, variances, key


@pytest.mark.parametrize("spec", [tagi.TAGISpec(n_in=3, hidden=(20, 7)),
                                  tagi.TAGISpec(n_in=5, hidden=(9,), heteroscedastic=True, sigma_v=0.4, init_gain=1.0,
                                                init_bias_variance=0.2),
                                  tagi.TAGISpec(n_in=2, hidden=(70, 70), dtype="float32")])
def test_tagi_prior_is_built_on_the_host_bit_for_bit(spec):
    """TAGI's prior from host arrays and the shared sampler equals jax.random's draws scaled
    bit for bit (homoscedastic, heteroscedastic, float32, layers over NORMAL_DRAW_MIN weights),
    its leaves are JAX arrays, and under eval_shape it traces (nothing of the declared size)."""
    key = _threefry.key(11)
    state = tagi.init(key, spec)
    means, variances, rest = _tagi_prior_by_jax_random(jax.random.PRNGKey(11), spec)
    for got, want in zip(state.means + state.variances, means + variances):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(state.key), np.asarray(rest))
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(state))
    huge = tagi.TAGISpec(n_in=10**6, hidden=(10**6,), heteroscedastic=spec.heteroscedastic)
    template = jax.eval_shape(lambda: tagi.init(key, huge))  # 8 TB if it were built
    assert template.means[0].shape == (10**6, 10**6 + 1) and template.rejections[1].dtype == jnp.int32


def test_init_returns_jax_arrays():
    state = pbp.init(_threefry.key(0), pbp.PBPSpec(n_in=3, hidden=(5,)))
    for leaf in jax.tree_util.tree_leaves(state):
        assert isinstance(leaf, jax.Array)  # immutable, with .at, as before


def test_typed_keys_are_jax_random():
    spec = pbp.PBPSpec(n_in=3, hidden=(5,))
    typed = pbp.init(jax.random.key(4), spec)
    raw = pbp.init(jax.random.PRNGKey(4), spec)
    for a, b in zip(typed.means, raw.means):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(_threefry.split(jax.random.key(4))[1])),
                                  np.asarray(jax.random.split(jax.random.PRNGKey(4))[1]))


def test_a_seed_offset_is_jax_random():
    before = jax.config.jax_random_seed_offset
    jax.config.update("jax_random_seed_offset", 7)
    try:
        np.testing.assert_array_equal(np.asarray(_threefry.key(5)), np.asarray(jax.random.PRNGKey(5)))
    finally:
        jax.config.update("jax_random_seed_offset", before)


def test_another_generator_is_jax_random():
    """jax_default_prng_impl "rbg": keys of four words, which jax.random makes."""
    before = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    try:
        key = _threefry.key(3)
        np.testing.assert_array_equal(np.asarray(key), np.asarray(jax.random.PRNGKey(3)))
        assert np.shape(key) == (4,)
        np.testing.assert_array_equal(np.asarray(_threefry.split(key, 3)), np.asarray(jax.random.split(key, 3)))
        from probprop.learners.mapnet import MAPSpec

        template = memory.state_template(MAPSpec(n_in=3, hidden=(5,)))
        assert jax.tree_util.tree_leaves(template)
    finally:
        jax.config.update("jax_default_prng_impl", before)

"""Every built-in model's hand gradient equals jax.grad, across drawn sizes, activations, seeds."""

import jax
import jax.numpy as jnp
import pytest
from helpers import DTYPES, JIT, assert_trees_close, maybe_jit
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxprop
from jaxprop.models import seed000, seed001

SETTINGS = settings(max_examples=3, deadline=None)
# The registered networks (entries that are Models; worked examples such as a Jacobian are
# registry entries too, verified through their own check()).
MODEL_NAMES = [n for n in jaxprop.model_names() if isinstance(jaxprop.get_model(n), jaxprop.Model)]
activations = st.sampled_from(sorted(jaxprop.ACTIVATIONS))


def _point(model, key, batch, dtype, **sizes):
    k1, k2, k3 = jax.random.split(key, 3)
    params = model.init(k1, dtype=jnp.dtype(dtype), **sizes)
    # Nonzero biases, so a dropped bias term cannot hide.
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(k2, p.shape, p.dtype), params)
    x, Y = model.sample(k3, params, batch)
    return params, x, Y


def _assert_hand_equals_auto(model, params, x, Y, jit, dtype):
    hand = maybe_jit(model.grad, jit)(params, x, Y)
    auto = maybe_jit(jax.grad(model.loss), jit)(params, x, Y)
    assert_trees_close(hand, auto, dtype=dtype)


@JIT
@SETTINGS
@given(
    f=activations,
    g=activations,
    n_in=st.integers(1, 5),
    n_hidden=st.integers(1, 8),
    n_out=st.integers(1, 4),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_seed000_hand_gradient_equals_jax_grad(jit, f, g, n_in, n_hidden, n_out, batch, seed):
    model = seed000.two_layer_mse(f=f, g=g)
    params, x, Y = _point(
        model, jax.random.key(seed), batch, "float64", n_in=n_in, n_hidden=n_hidden, n_out=n_out
    )
    _assert_hand_equals_auto(model, params, x, Y, jit, "float64")


@JIT
@SETTINGS
@given(
    n_in=st.integers(1, 5),
    n_hidden=st.integers(1, 12),
    n_out=st.integers(1, 5),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_seed001_hand_gradient_equals_jax_grad(jit, n_in, n_hidden, n_out, batch, seed):
    model = seed001.tanh_softmax()
    params, x, Y = _point(
        model, jax.random.key(seed), batch, "float64", n_in=n_in, n_hidden=n_hidden, n_out=n_out
    )
    _assert_hand_equals_auto(model, params, x, Y, jit, "float64")


@pytest.mark.parametrize("name", MODEL_NAMES)
@DTYPES
def test_registered_models_at_default_sizes(name, dtype):
    model = jaxprop.get_model(name)
    params, x, Y = _point(model, jax.random.key(0), 8, dtype)
    _assert_hand_equals_auto(model, params, x, Y, True, dtype)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_adjoints_cover_every_node_with_its_shape(name):
    model = jaxprop.get_model(name)
    params, x, Y = _point(model, jax.random.key(1), 3, "float64")
    _, saved = model.forward(params, x)
    _grads, adjoints = model.backward(params, x, saved, Y)
    nodes = model.node_names(params)
    assert set(adjoints) == set(nodes) and len(nodes) == len(adjoints)
    for node in nodes:
        assert adjoints[node].shape == saved[node].shape, node


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_value_and_grad_matches_loss_and_grad(name):
    model = jaxprop.get_model(name)
    params, x, Y = _point(model, jax.random.key(2), 4, "float64")
    value, grads = jax.jit(model.value_and_grad)(params, x, Y)
    assert float(value) == pytest.approx(float(model.loss(params, x, Y)), rel=1e-14)
    assert_trees_close(grads, model.grad(params, x, Y))


def test_seed001_default_sizes_are_the_documents():
    params = seed001.tanh_softmax().init(jax.random.key(0))
    assert {k: v.shape for k, v in params.items()} == {
        "W1": (2, 500), "b1": (500,), "W2": (500, 2), "b2": (2,)
    }  # fmt: skip


def test_seed001_loss_is_finite_for_huge_logits():
    model = seed001.tanh_softmax()
    params = model.init(jax.random.key(0), n_in=2, n_hidden=3, n_out=2, dtype=jnp.float64)
    params = {**params, "W2": jnp.full((3, 2), 1e4, jnp.float64) * jnp.array([[1.0, -1.0]])}
    x = jnp.ones((2, 2), jnp.float64)
    Y = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    assert jnp.isfinite(model.loss(params, x, Y))
    grads = model.grad(params, x, Y)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))

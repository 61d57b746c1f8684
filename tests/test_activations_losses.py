"""Each activation's and loss's hand derivative equals JAX's, and stays finite at |z| = 1e4."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxprop

ACTS = sorted(jaxprop.ACTIVATIONS)
LOSSES = sorted(jaxprop.LOSSES)


def _z(seed, shape=(3, 5), scale=3.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float64)


@pytest.mark.parametrize("name", ACTS)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_activation_vjp_equals_jax_vjp(name, seed):
    act = jaxprop.get_activation(name)
    z, g = _z(seed), _z(seed + 1)
    a, vjp = jax.vjp(act.fn, z)
    assert_trees_close(act.vjp(z, a, g), vjp(g)[0])
    if act.deriv is not None:
        assert_trees_close(act.deriv(z), jax.vmap(jax.vmap(jax.grad(act.fn)))(z))


@pytest.mark.parametrize("name", ACTS)
def test_activation_is_finite_at_huge_inputs(name):
    act = jaxprop.get_activation(name)
    z = jnp.array([[-1e4, -30.0, 0.5, 30.0, 1e4]], jnp.float32)
    a = act.fn(z)
    g = act.vjp(z, a, jnp.ones_like(z))
    assert bool(jnp.all(jnp.isfinite(a))) and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("name", LOSSES)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), width=st.integers(1, 4))
def test_loss_grad_equals_jax_grad(name, seed, batch, width):
    loss = jaxprop.LOSSES[name]
    out = _z(seed, (batch, width))
    Y = jax.nn.softmax(_z(seed + 1, (batch, width)))  # probability rows suit every loss
    assert_trees_close(loss.grad(out, Y), jax.grad(loss.fn)(out, Y))


def test_softmax_cross_entropy_is_finite_at_huge_logits():
    loss = jaxprop.LOSSES["softmax_cross_entropy"]
    z = jnp.array([[1e4, -1e4], [-1e4, 1e4]], jnp.float32)
    Y = jnp.array([[0.0, 1.0], [0.0, 1.0]], jnp.float32)
    value = float(loss.fn(z, Y))
    assert np.isfinite(value) and value == pytest.approx(1e4, rel=1e-6)
    assert bool(jnp.all(jnp.isfinite(loss.grad(z, Y))))


def test_sigmoid_derivative_is_sigma_times_one_minus_sigma():
    # 001_90440b38c2c51fc3.txt eq (6) prints ln σ · ln(1 − σ); the derivative is σ(1 − σ).
    act = jaxprop.get_activation("sigmoid")
    z = jnp.linspace(-4, 4, 9, dtype=jnp.float64)
    s = 1 / (1 + jnp.exp(-z))
    assert_trees_close(act.deriv(z), s * (1 - s))
    assert not np.allclose(act.deriv(z), jnp.log(s) * jnp.log(1 - s))


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*'relu'.*'tanh'"):
        jaxprop.get_activation("swish")

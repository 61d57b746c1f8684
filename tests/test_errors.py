"""Bad input gets a clear error that names the argument, its shape and the shape expected."""

import jax
import jax.numpy as jnp
import pytest

import jaxprop
from jaxprop.models import seed000, seed001


@pytest.fixture(scope="module")
def tanh_softmax():
    model = seed001.tanh_softmax()
    params = model.init(jax.random.key(0), n_in=2, n_hidden=4, n_out=3, dtype=jnp.float64)
    return model, params


def test_wrong_input_width(tanh_softmax):
    model, params = tanh_softmax
    with pytest.raises(ValueError, match=r"input x has shape \(5, 3\); expected \(batch, 2\)"):
        model.loss(params, jnp.ones((5, 3)), jnp.ones((5, 3)))


def test_unbatched_input(tanh_softmax):
    model, params = tanh_softmax
    with pytest.raises(ValueError, match=r"input x has shape \(2,\); expected \(batch, 2\)"):
        model.grad(params, jnp.ones(2), jnp.ones((1, 3)))


def test_mismatched_label_shape(tanh_softmax):
    model, params = tanh_softmax
    x = jnp.ones((5, 2))
    for fn in (model.loss, model.grad, model.value_and_grad):
        with pytest.raises(ValueError, match=r"labels Y have shape \(5, 2\).*\(5, 3\)"):
            fn(params, x, jnp.ones((5, 2)))


def test_input_of_another_dtype(tanh_softmax):
    model, params = tanh_softmax
    x = jnp.ones((5, 2), jnp.float32)
    with pytest.raises(ValueError, match=r"x has dtype float32 but the parameters are float64"):
        model.loss(params, x, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"labels Y have dtype float32 but the network output"):
        model.loss(params, x.astype(jnp.float64), jnp.ones((5, 3), jnp.float32))


def test_parameters_that_do_not_chain(tanh_softmax):
    model, params = tanh_softmax
    bad = {**params, "b1": jnp.zeros(5)}
    with pytest.raises(ValueError, match=r"params\['b1'\] has shape \(5,\), expected \(4,\)"):
        model.loss(bad, jnp.ones((1, 2)), jnp.ones((1, 3)))


def test_missing_parameter(tanh_softmax):
    model, params = tanh_softmax
    bad = {k: v for k, v in params.items() if k != "W2"}
    with pytest.raises(ValueError, match=r"missing \['W2'\]"):
        model.grad(bad, jnp.ones((1, 2)), jnp.ones((1, 3)))


def test_unknown_activation_in_a_model():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; expected one of \["):
        seed000.two_layer_mse(f="gelu")


def test_unknown_model():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; expected one of \["):
        jaxprop.get_model("nope")


def test_registering_a_second_model_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        jaxprop.register(seed001.tanh_softmax())


MODEL_NAMES = [n for n in jaxprop.model_names() if isinstance(jaxprop.get_model(n), jaxprop.Model)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_no_rows_a_list_or_a_batch_size_of_zero_is_a_clear_error(name):
    # Every built-in loss is a batch mean: over no rows it would be NaN, not an answer.
    model = jaxprop.get_model(name)
    params = model.init(jax.random.key(0), dtype=jnp.float64)
    x, Y = model.sample(jax.random.key(1), params, 2)
    with pytest.raises(ValueError, match=r"has shape \(0, \d+\), no examples"):
        model.loss(params, x[:0], Y[:0])
    with pytest.raises(TypeError, match=r"input (x|Phi) is a list; expected an array"):
        model.grad(params, x.tolist(), Y)
    with pytest.raises(ValueError, match="batch must be a positive integer, got 0"):
        model.sample(jax.random.key(1), params, 0)

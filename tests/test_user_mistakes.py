"""A user's realistic mistakes with the public API get an error or a report that names them."""

import jax
import jax.numpy as jnp
import pytest

import jaxprop


def forward(params, x, taps=None):
    z1 = jaxprop.tap(taps, "z1", x @ params["W1"])
    h = jaxprop.tap(taps, "h", jnp.tanh(z1))
    out = jaxprop.tap(taps, "out", h @ params["W2"])
    return out, {"z1": z1, "h": h, "out": out}


def backward(params, x, saved, Y):
    d_out = (saved["out"] - Y) / Y.shape[0]
    d_h = d_out @ params["W2"].T
    d_z1 = d_h * (1 - saved["h"] ** 2)
    grads = {"W1": x.T @ d_z1, "W2": saved["h"].T @ d_out}
    return grads, {"z1": d_z1, "h": d_h, "out": d_out}


def model(**changes):
    fields = {
        "name": "mine",
        "forward": forward,
        "backward": backward,
        "objective": "half_squared_error",
        "nodes": ("z1", "h", "out"),
    }
    return jaxprop.Model(**{**fields, **changes})


@pytest.fixture(scope="module")
def point():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"W1": jax.random.normal(k1, (3, 4)), "W2": jax.random.normal(k2, (4, 2))}
    return params, jax.random.normal(k3, (5, 3)), jnp.ones((5, 2))


def test_a_node_the_forward_pass_does_not_tap_is_named(point):
    def forward_untapped_z1(params, x, taps=None):
        z1 = x @ params["W1"]  # tap forgotten: the true adjoint would read as 0
        h = jaxprop.tap(taps, "h", jnp.tanh(z1))
        out = jaxprop.tap(taps, "out", h @ params["W2"])
        return out, {"z1": z1, "h": h, "out": out}

    with pytest.raises(ValueError, match=r"forward never adds the tap of the nodes \['z1'\]"):
        jaxprop.check_nodes(model(forward=forward_untapped_z1), *point)


def test_nodes_listed_out_of_forward_order_are_an_error(point):
    # Listed in backward order, the report would run forward and name the wrong first node.
    with pytest.raises(
        ValueError, match=r"forward computes them in the order \('z1', 'h', 'out'\)"
    ):
        jaxprop.check_nodes(model(nodes=("out", "h", "z1")), *point)


def test_a_forward_or_backward_returning_the_wrong_thing_is_named(point):
    def forward_out_only(params, x, taps=None):
        return forward(params, x, taps)[0]

    def backward_grads_only(params, x, saved, Y):
        return backward(params, x, saved, Y)[0]

    bad_forward = model(forward=forward_out_only)
    for call in (bad_forward.loss, bad_forward.grad, bad_forward.value_and_grad):
        with pytest.raises(
            TypeError, match=r"forward must return \(out, saved\).*got an array of shape \(5, 2\)"
        ):
            call(*point)
    with pytest.raises(TypeError, match=r"forward must return \(out, saved\)"):
        jaxprop.check_nodes(bad_forward, *point)
    bad_backward = model(backward=backward_grads_only)
    with pytest.raises(TypeError, match=r"backward must return \(grads, adjoints\).*got a dict"):
        bad_backward.grad(*point)
    with pytest.raises(TypeError, match=r"backward must return \(grads, adjoints\)"):
        jaxprop.check_nodes(bad_backward, *point)


def test_a_malformed_model_is_named_at_construction():
    with pytest.raises(ValueError, match=r"Model 'mine': forward must be a function, got str"):
        model(forward="forward")
    with pytest.raises(ValueError, match=r"node names must be strings, got \[1\]"):
        model(nodes=("z1", 1))
    with pytest.raises(ValueError, match=r"nodes \['h'\] are named more than once"):
        model(nodes=("z1", "h", "h", "out"))
    with pytest.raises(ValueError, match=r"nodes \['h'\] are named more than once"):
        model(nodes=lambda params: ("z1", "h", "h")).node_names({})
    with pytest.raises(ValueError, match="Model name must be a non-empty string, got None"):
        model(name=None)


def test_a_tapped_value_missing_from_nodes_is_named(point):
    def backward_two_nodes(params, x, saved, Y):
        grads, adjoints = backward(params, x, saved, Y)
        return grads, {"z1": adjoints["z1"], "h": adjoints["h"]}

    partial = model(nodes=("z1", "h"), backward=backward_two_nodes)
    with pytest.raises(KeyError, match=r"tap 'out': forward taps a node that is not in the model"):
        jaxprop.check_nodes(partial, *point)


def loss(p, x):
    return jnp.sum((p["w"] * x) ** 2)


def grad(p, x):
    return {"w": 2 * p["w"] * x**2}


P, X = {"w": jnp.array([1.0, -2.0])}, jnp.array([0.5, 3.0])


def test_functions_that_are_not_callable_are_named():
    with pytest.raises(TypeError, match=r"grad_fn must be a function, got dict; the call is"):
        jaxprop.check_grads(loss, P, grad, X)  # params and grad_fn swapped
    with pytest.raises(TypeError, match=r"loss_fn must be a function, got NoneType"):
        jaxprop.check_grads(None, grad, P, X)
    with pytest.raises(TypeError, match=r"jac_fn must be a function, got ArrayImpl"):
        jaxprop.check_jacobian(jnp.sin, X, X)


def test_a_loss_returning_loss_and_aux_is_named():
    # Not "an array of shape (2,)": the tuple (loss, aux) is not an array at all.
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar, got a tuple of 2; if it"):
        jaxprop.check_grads(lambda p, x: (loss(p, x), {"aux": x}), grad, P, X)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"rtol": -1.0}, r"rtol must be a positive finite number, got -1.0"),
        ({"fd_rtol": "1e-3"}, r"fd_rtol must be a positive number, got '1e-3'"),
        ({"fd_samples": 2.5}, r"fd_samples must be an integer >= 1, got 2.5"),
    ],
)
def test_bad_tolerances_and_sample_counts_are_named(option, message):
    # A negative rtol failed every leaf at error 0; a float fd_samples crashed inside NumPy.
    big = {"w": jnp.linspace(0.0, 1.0, 8)}
    with pytest.raises(ValueError, match=message):
        jaxprop.check_grads(lambda p, x: jnp.sum(p["w"] ** 2), lambda p, x: {"w": 2 * p["w"]},
                            big, X, **option)  # fmt: skip


def test_a_negative_node_tolerance_is_named(point):
    with pytest.raises(ValueError, match=r"rtol must be a positive finite number, got -1"):
        jaxprop.check_nodes(model(), *point, rtol=-1)


@pytest.mark.parametrize("params", [{}, None, ()], ids=["empty-dict", "None", "empty-tuple"])
def test_empty_params_are_an_error_not_a_pass(params):
    # A report of no leaves passed with nothing checked.
    with pytest.raises(ValueError, match=r"params has no array leaves .*nothing to check"):
        jaxprop.check_grads(lambda p, x: jnp.sum(x), lambda p, x: p, params, X)


def test_a_parameter_that_is_not_an_array_is_named():
    # Non-array leaves are held (tests/test_user_project.py); with nothing else, nothing to check.
    with pytest.raises(ValueError, match=r"no array leaves: w \(str\) are not arrays"):
        jaxprop.check_grads(loss, grad, {"w": "1.0"}, X)


def test_a_grad_fn_returning_grads_and_aux_is_named():
    # Without this every leaf read as missing, and again as 0/w in excess.
    with pytest.raises(ValueError, match=r"grad_fn returned a tuple of 2 whose first element"):
        jaxprop.check_grads(loss, lambda p, x: (grad(p, x), 0.0), P, X)
    # A tuple of parameters with a tuple of gradients is no such case.
    assert jaxprop.check_grads(
        lambda p, x: loss({"w": p[0]}, x), lambda p, x: (grad({"w": p[0]}, x)["w"],), (P["w"],), X
    ).ok


def test_verify_model_names_a_bad_model_seed_or_batch():
    two_layer = jaxprop.get_model("two-layer-mse")
    with pytest.raises(TypeError, match=r"needs a jaxprop.Model, got str; look a registered one"):
        jaxprop.verify_model("two-layer-mse")
    # A batch of 0 read as "the loss is not finite"; -1 and 2.0 failed inside XLA and jnp.
    for batch in (0, -1, 2.0):
        with pytest.raises(ValueError, match=rf"batch must be an integer >= 1, got {batch}"):
            jaxprop.verify_model(two_layer, batch=batch)
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0, got 1.5"):
        jaxprop.verify_entry(two_layer, seed=1.5)


def test_an_argument_jit_cannot_trace_is_named():
    def scaled_loss(p, x, how):
        return loss(p, x) * (2.0 if how == "double" else 1.0)

    def scaled_grad(p, x, how):
        return {"w": grad(p, x)["w"] * (2.0 if how == "double" else 1.0)}

    # JAX's own message suggests static_argnums, which check_grads has not.
    with pytest.raises(ValueError, match=r"args\[1\] is a str \('double'\), which jax.jit cannot"):
        jaxprop.check_grads(scaled_loss, scaled_grad, P, X, "double")
    assert jaxprop.check_grads(scaled_loss, scaled_grad, P, X, "double", jit=False).ok


def test_a_node_tapped_twice_is_named(point):
    def forward_reusing_a_name(params, x, taps=None):
        z = jaxprop.tap(taps, "z", x @ params["W1"])
        z = jaxprop.tap(taps, "z", 2 * jnp.tanh(z))  # the name of the node above
        return z @ params["W2"], {"z": z}

    def backward_last(params, x, saved, Y):
        return {}, {"z": (saved["z"] @ params["W2"] - Y) / Y.shape[0] @ params["W2"].T}

    reused = model(forward=forward_reusing_a_name, backward=backward_last, nodes=("z",))
    with pytest.raises(ValueError, match=r"adds the tap of the nodes \['z'\] more than once"):
        jaxprop.check_nodes(reused, *point)


def test_a_saved_node_of_another_shape_than_the_tapped_value_is_named(point):
    def forward_saving_a_row(params, x, taps=None):
        out, saved = forward(params, x, taps)
        return out, {**saved, "h": saved["h"][0]}  # not the value tapped as "h"

    with pytest.raises(ValueError, match=r"tap 'h': the tapped value has shape \(5, 4\), but"):
        jaxprop.check_nodes(model(forward=forward_saving_a_row), *point)

"""The checker fails when it should, at the right leaf, and reports structure by leaf path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import JIT

import jaxprop
from jaxprop import GradientCheckError, check_grads
from jaxprop.models import seed001


@pytest.fixture(scope="module")
def point():
    model = seed001.tanh_softmax()
    key = jax.random.key(3)
    params = model.init(key, n_in=3, n_hidden=5, n_out=4, dtype=jnp.float64)
    params = jax.tree.map(lambda p: p + 0.1, params)
    x, Y = model.sample(jax.random.key(4), params, batch=6)
    return model, params, x, Y


def _wrong(model, edit):
    """A hand gradient with one deliberate slip, applied by ``edit(params, x, Y, grads)``."""

    def grad(params, x, Y):
        return edit(params, x, Y, dict(model.grad(params, x, Y)))

    return grad


def _sign(params, x, Y, g):
    g["W2"] = -g["W2"]
    return g


def _missing_transpose(params, x, Y, g):
    # dW1 = (xᵀ dz1) written as (dz1ᵀ x)ᵀ is right; written without the transpose on a square
    # shape it is wrong. Force a square case by transposing a square slice.
    W1 = g["W1"]
    g["W1"] = W1.at[:, :3].set(W1[:, :3].T)
    return g


def _dropped_term(params, x, Y, g):
    # db2 without the batch sum: only the first row's contribution.
    _, saved = model_forward(params, x)
    g["b2"] = jaxprop.LOSSES["softmax_cross_entropy"].grad(saved["z2"], Y)[0]
    return g


def model_forward(params, x):
    return seed001.forward(params, x)


@JIT
@pytest.mark.parametrize(
    ("edit", "leaf"),
    [(_sign, "W2"), (_missing_transpose, "W1"), (_dropped_term, "b2")],
    ids=["sign", "missing-transpose", "dropped-term"],
)
def test_a_deliberate_slip_fails_at_its_leaf(point, edit, leaf, jit):
    model, params, x, Y = point
    report = check_grads(model.loss, _wrong(model, edit), params, x, Y, jit=jit)
    assert not report.ok and not bool(report)
    assert report.failing == (leaf,)
    assert not report[leaf].vs_auto.ok and not report[leaf].vs_fd.ok
    assert leaf in str(report)
    with pytest.raises(GradientCheckError, match=leaf):
        report.raise_if_failed()


def test_the_correct_gradient_passes_both_references(point):
    model, params, x, Y = point
    report = check_grads(model.loss, model.grad, params, x, Y, raise_on_failure=True)
    assert report.ok and report.failing == ()
    for leaf in report.leaves:
        assert leaf.vs_auto.max_rel < 1e-13
        assert leaf.vs_fd.max_rel < 1e-7
        assert leaf.vs_fd.n_compared == min(leaf.vs_auto.n_compared, 32)


def test_finite_differences_alone_catch_a_wrong_gradient(point):
    """A loss whose jax.grad is itself wrong (a custom_vjp with a slip): only FD can tell."""

    @jax.custom_vjp
    def square(w):
        return w**2

    square.defvjp(lambda w: (w**2, w), lambda w, g: (3 * w * g,))  # slip: 3w, not 2w
    loss = lambda p: jnp.sum(square(p["w"]))  # noqa: E731
    p = {"w": jnp.array([1.0, 2.0])}
    report = check_grads(loss, lambda p: {"w": 3 * p["w"]}, p)
    assert report["w"].vs_auto.ok and not report["w"].vs_fd.ok and report.failing == ("w",)


def test_structure_mismatches_are_reported_by_leaf_path(point):
    model, params, x, Y = point

    def broken(params, x, Y):
        g = dict(model.grad(params, x, Y))
        del g["b1"]  # missing leaf
        g["W1"] = g["W1"].T  # wrong shape
        g["b2"] = g["b2"].astype(jnp.float32)  # wrong dtype
        g["extra"] = jnp.zeros(2)  # a leaf that is not a parameter
        return g

    report = check_grads(model.loss, broken, params, x, Y)
    problems = {leaf.path: leaf.problem for leaf in report.leaves if leaf.problem}
    assert set(report.failing) == {"b1", "W1", "b2", "extra"}
    assert "missing" in problems["b1"]
    assert "shape (5, 3), expected (3, 5)" in problems["W1"]
    assert "dtype float32, expected float64" in problems["b2"]
    assert "not a parameter" in problems["extra"]
    assert report["W2"].ok


def test_non_finite_parameters_are_reported_not_hidden(point):
    model, params, x, Y = point
    bad = {**params, "b1": params["b1"].at[2].set(jnp.nan)}
    with pytest.raises(ValueError, match=r"not finite.*b1"):
        check_grads(model.loss, model.grad, bad, x, Y)


def test_a_non_finite_hand_gradient_fails():
    loss = lambda p: jnp.sum(p["w"] ** 2)  # noqa: E731
    report = check_grads(loss, lambda p: {"w": p["w"] / 0.0}, {"w": jnp.ones(3)})
    assert report.failing == ("w",) and "not finite" in report["w"].problem


def test_nested_pytrees_name_leaves_by_path():
    params = {"layers": [{"A": jnp.ones((2, 2)), "b": jnp.ones(2)}] * 2}
    loss = lambda p: sum(jnp.sum(layer["A"]) * jnp.sum(layer["b"]) for layer in p["layers"])  # noqa: E731

    def grad(p):
        g = jax.grad(loss)(p)
        g["layers"][1]["b"] = 2 * g["layers"][1]["b"]
        return g

    assert check_grads(loss, grad, params).failing == ("layers/1/b",)


def test_report_to_dict_is_json_ready(point):
    import json

    model, params, x, Y = point
    d = check_grads(model.loss, model.grad, params, x, Y, name="m", source="s").to_dict()
    json.dumps(d)
    assert d["name"] == "m" and d["source"] == "s" and d["ok"] is True
    assert {leaf["path"] for leaf in d["leaves"]} == {"W1", "b1", "W2", "b2"}
    assert set(d["leaves"][0]["vs_auto"]) >= {"max_abs", "max_rel", "worst_index", "ok"}


def test_float32_checks_run_in_float32(point):
    model, params, x, Y = point
    report = check_grads(model.loss, model.grad, params, x, Y, dtype="float32")
    assert report.ok and report.dtype == "float32"
    assert all(leaf.dtype == "float32" for leaf in report.leaves)


def test_float64_is_the_default_even_without_x64_enabled(point):
    model, params, x, Y = point
    with jax.enable_x64(False):
        report = check_grads(model.loss, model.grad, *jax.tree.map(np.asarray, (params, x, Y)))
    assert report.dtype == "float64" and report.ok


def test_bad_arguments_are_named():
    loss = lambda p: jnp.sum(p**2)  # noqa: E731
    with pytest.raises(ValueError, match="dtype must be one of"):
        check_grads(loss, lambda p: 2 * p, jnp.ones(2), dtype="int32")
    with pytest.raises(ValueError, match="fd_samples"):
        check_grads(loss, lambda p: 2 * p, jnp.ones(2), fd_samples=0)


def test_a_negative_seed_is_named_not_a_numpy_traceback():
    loss = lambda p: jnp.sum(p**2)  # noqa: E731
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        check_grads(loss, lambda p: 2 * p, jnp.ones(2), seed=-1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        jaxprop.check_jacobian(lambda x: 2 * x, lambda x: 2 * jnp.eye(2), jnp.ones(2), seed=-1)


def test_a_loss_that_is_not_a_scalar_is_named():
    with pytest.raises(
        ValueError, match=r"loss_fn must return a scalar, got an array of shape \(3,\)"
    ):
        check_grads(lambda p: p**2, lambda p: 2 * p, jnp.ones(3))


def test_a_leaf_with_no_elements_is_compared_not_a_crash():
    loss = lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(p["b"])  # noqa: E731
    params = {"a": jnp.ones(2), "b": jnp.ones((0, 3))}
    report = check_grads(loss, lambda p: {"a": 2 * p["a"], "b": jnp.ones((0, 3))}, params)
    assert report.ok and report["b"].vs_auto.n_compared == 0
    wrong = check_grads(loss, lambda p: {"a": p["a"], "b": jnp.ones((0, 3))}, params)
    assert wrong.failing == ("a",)


def test_check_jacobian_names_a_primal_that_is_not_one_float_array():
    double = lambda x: 2 * x  # noqa: E731
    with pytest.raises(ValueError, match="primal must be one floating-point array, got dict"):
        jaxprop.check_jacobian(double, lambda x: 2 * jnp.eye(2), {"a": jnp.ones(2)})
    with pytest.raises(ValueError, match="primal must be one floating-point array, got dtype int"):
        jaxprop.check_jacobian(double, lambda x: 2 * jnp.eye(2), jnp.arange(2))


def test_integer_parameters_and_unknown_dtypes_are_named():
    loss = lambda p: jnp.sum(p["w"] ** 2) + p["n"]  # noqa: E731
    with pytest.raises(ValueError, match=r"floating-point.*leaf n \(int"):
        check_grads(loss, lambda p: p, {"w": jnp.ones(2), "n": jnp.arange(3)})
    with pytest.raises(ValueError, match="dtype must be one of"):
        check_grads(loss, lambda p: p, {"w": jnp.ones(2)}, dtype="foo")


def test_check_jacobian_refuses_a_non_finite_primal():
    with pytest.raises(ValueError, match="primal is not finite"):
        jaxprop.check_jacobian(lambda x: 2 * x, lambda x: 2 * jnp.eye(2), jnp.array([1.0, jnp.nan]))

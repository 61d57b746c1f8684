"""jaxprop in a user's own project: the rough edges a new user hits, each fixed and tested.

Parameters with non-array leaves (a module's static fields), a forward pass that hard-codes its
dtype, a forward pass without taps, a node missing on its own, a malformed hand gradient inside a
worked example's self-check, and the least-squares gradient checked away from its minimum.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

import jaxprop
from jaxprop.models import seed002_calculus


@jax.tree_util.register_pytree_node_class
class Layer:
    """A module-like pytree (as an equinox Module is): its children are an array, an activation
    function and a string naming it; only the array is a parameter."""

    def __init__(self, W, act, kind):
        self.W, self.act, self.kind = W, act, kind

    def tree_flatten(self):
        return (self.W, self.act, self.kind), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def _layer_loss(layer, x):
    return jnp.sum(layer.act(x @ layer.W) ** 2)


def _layer_grad(layer, x, factor=2.0):
    a = layer.act(x @ layer.W)
    # An equinox-style gradient: the same module, its static fields held.
    return Layer(x.T @ (factor * a * (1 - a**2)), layer.act, layer.kind)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
def test_non_array_leaves_are_skipped_and_named(jit):
    layer = Layer(jnp.linspace(-0.5, 0.5, 6).reshape(3, 2), jnp.tanh, "tanh")
    x = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    report = jaxprop.check_grads(_layer_loss, _layer_grad, layer, x, jit=jit)
    assert report.ok, str(report)
    assert [leaf.path for leaf in report.leaves] == ["0"]
    assert [p for p, _ in report.skipped] == ["1", "2"]
    assert dict(report.skipped)["2"] == "str"
    assert "skipped, not arrays: 1 (" in str(report)
    assert report.to_dict()["skipped"]["2"] == "str"
    # Still a check: a wrong factor fails at the array leaf.
    wrong = jaxprop.check_grads(
        _layer_loss, lambda l, x: _layer_grad(l, x, 3.0), layer, x, jit=jit, fd=False
    )
    assert wrong.failing == ("0",) and wrong.diagnosis.kind == "scale"
    # A gradient with None where the static fields are (eqx.filter_grad) is as good.
    nones = jaxprop.check_grads(
        _layer_loss, lambda l, x: {"0": _layer_grad(l, x).W}, layer, x, jit=jit, fd=False
    )
    assert nones.ok, str(nones)


def test_a_tree_of_nothing_but_non_arrays_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no array leaves: act \(PjitFunction\) are not arrays"):
        jaxprop.check_grads(lambda p: 0.0, lambda p: p, {"act": jnp.tanh})


def test_check_nodes_holds_non_array_parameters():
    def forward(params, x, taps=None):
        z = jaxprop.tap(taps, "z", x @ params["W"])
        a = jaxprop.tap(taps, "a", params["act"](z))
        return a, {"z": z, "a": a}

    def backward(params, x, saved, Y):
        da = (saved["a"] - Y) / Y.shape[0]
        dz = da * (1 - saved["a"] ** 2)
        return {"W": x.T @ dz, "act": None}, {"z": dz, "a": da}

    model = jaxprop.Model(name="static act", forward=forward, backward=backward,
                          objective="half_squared_error", nodes=("z", "a"))  # fmt: skip
    params = {"W": jnp.linspace(-0.5, 0.5, 6).reshape(3, 2), "act": jnp.tanh}
    x, Y = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), jnp.zeros((4, 2))
    assert jaxprop.check_nodes(model, params, x, Y).ok


def _float32_model():
    def forward(params, x, taps=None):
        z = jaxprop.tap(taps, "z", (x @ params["w"]).astype(jnp.float32))  # hard-coded
        return z, {"z": z}

    def backward(params, x, saved, Y):
        dz = (saved["z"] - Y) / Y.shape[0]
        return {"w": (x.T @ dz).astype(params["w"].dtype)}, {"z": dz}

    return jaxprop.Model(name="f32", forward=forward, backward=backward,
                         objective="half_squared_error", nodes=("z",))  # fmt: skip


def test_a_forward_that_hard_codes_float32_gets_advice_that_works():
    model = _float32_model()
    params = {"w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(3, 2)}
    x = jnp.linspace(0.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3)
    Y = jnp.zeros((4, 2), jnp.float32)
    for check in (
        lambda **kw: jaxprop.check_nodes(model, params, x, Y, **kw),
        lambda **kw: jaxprop.check_grads(model.loss, model.grad, params, x, Y, **kw),
    ):
        with pytest.raises(ValueError, match=r"hard-coded dtype.*dtype='float32'") as err:
            check()
        assert "Y.astype" not in str(err.value)  # the old advice, which moved the mismatch
        assert check(dtype="float32").ok  # the advice, applied
    # Labels of the wrong dtype (the inputs agree with the output) still get the cast advice.
    with pytest.raises(ValueError, match=r"Y.astype\('float32'\)"):
        model.loss(params, x, Y.astype(jnp.float16))


def test_a_forward_without_taps_names_the_convention():
    def forward(params, x):
        return x @ params["w"], {"z": x @ params["w"]}

    def backward(params, x, saved, Y):
        dz = (saved["z"] - Y) / Y.shape[0]
        return {"w": x.T @ dz}, {"z": dz}

    model = jaxprop.Model(name="no taps", forward=forward, backward=backward,
                          objective="half_squared_error", nodes=("z",))  # fmt: skip
    params = {"w": jnp.ones((3, 2))}
    x, Y = jnp.linspace(0.0, 1.0, 12).reshape(4, 3), jnp.zeros((4, 2))
    # Without taps it runs; the gradient check needs none.
    assert jaxprop.check_grads(model.loss, model.grad, params, x, Y).ok
    with pytest.raises(TypeError, match=r"forward takes no taps.*forward\(params, x, taps=None\)"):
        jaxprop.check_nodes(model, params, x, Y)


def test_a_node_missing_on_its_own_is_not_labelled_inherited():
    model = jaxprop.get_model("tanh-softmax")
    params, x, Y = jaxprop.random_point(model, jax.random.key(2), batch=3, n_hidden=4)

    def backward(params, x, saved, Y):
        grads, adj = model.backward(params, x, saved, Y)
        return grads, {"z1": adj["z1"], "z2": -adj["z2"]}  # z2's sign flipped, a1 left out

    report = jaxprop.check_nodes(dataclasses.replace(model, backward=backward), params, x, Y)
    rows = {line.split()[0]: line for line in str(report).splitlines()[2:5]}
    assert "<- first failing: sign" in rows["z2"]
    assert "missing from the hand adjoints" in rows["a1"] and "inherits" not in rows["a1"]


def test_a_malformed_jacobian_in_a_self_check_is_a_fail_row(monkeypatch):
    good = seed002_calculus.dA_dx_collate
    monkeypatch.setattr(seed002_calculus, "dA_dx_collate", lambda *a: good(*a)[..., :2])
    report = jaxprop.verify_entry(jaxprop.get_model("dA/dx"), seed=0, dtype="float64",
                                  jit=False, batch=4)  # fmt: skip
    assert not report.ok
    assert "approach 1 = approach 2" in report.failing
    assert "shape" in report["approach 1 = approach 2"].problem


def test_the_least_squares_gradient_is_checked_away_from_its_minimum(monkeypatch):
    good = seed002_calculus.least_squares_grad
    model = jaxprop.get_model("least-squares")
    assert jaxprop.verify_entry(model, seed=0, dtype="float64", jit=False, batch=6).ok
    # 2·e → 3·e: 0 at the normal equations either way; a random θ shows it.
    monkeypatch.setattr(seed002_calculus, "least_squares_grad", lambda *a: 1.5 * good(*a))
    report = jaxprop.verify_entry(model, seed=0, dtype="float64", jit=False, batch=6)
    assert report.failing == ("theta (5.83)",), str(report)
    assert report["theta (5.83)"].diagnosis.figures["c"] == pytest.approx(1.5)
    # A malformed one (a column for the row vector) is a FAIL row, not a crash.
    monkeypatch.setattr(seed002_calculus, "least_squares_grad", lambda *a: good(*a).T)
    report = jaxprop.verify_entry(model, seed=0, dtype="float64", jit=False, batch=6)
    assert "theta (5.83)" in report.failing and "shape" in report["theta (5.83)"].problem


def test_a_closed_pipe_is_exit_141_without_a_traceback():
    # `jaxprop verify --json | head -c 0`: the reader is gone before the first write (closed
    # at once, so that the output cannot fit in the pipe's buffer first).
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxprop", "verify", "--model", "least-squares", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err

"""Node checking with no convention: the nodes found in the traced forward pass.

Every built-in model, its ``tap`` calls removed from a fresh copy of its module and its ``nodes``
emptied, gives the node table it gives with them; a plain forward/backward pair (no jaxprop in
the model code) with a planted bug is reported at that node; what the program reveals (a saved
value never used, an input, a constant, a closure, one variable under two names) is a clear error;
a value saved inside a ``lax.scan`` is one node, its adjoint that of every iteration.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_nodes as tn

import jaxprop
from jaxprop import Model, check_nodes, true_adjoints


class _Untap(ast.NodeTransformer):
    """``tap(taps, name, value)`` -> ``value``."""

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "tap" and len(node.args) == 3:
            return node.args[2]
        return node


def _untapped(model: Model) -> Model:
    module = tn._module_of(model)
    tree = ast.fix_missing_locations(_Untap().visit(ast.parse(inspect.getsource(module))))
    assert "tap(" not in ast.unparse(tree).replace("_tap(", "")
    rebuilt, _ = tn._rebuild(module, tree, model.name, mutator=tn.Mutator(1.0))
    return dataclasses.replace(rebuilt, nodes=())


@pytest.mark.parametrize("name", [m.name for m in tn._models()])
def test_without_taps_every_built_in_model_gives_the_same_node_table(name):
    model = jaxprop.get_model(name)
    params, x, Y = tn._point(name)
    plain = _untapped(model)
    tapped, found = check_nodes(model, params, x, Y), check_nodes(plain, params, x, Y)
    assert found.ok and tapped.ok, str(found)
    assert [n.name for n in found.nodes] == [n.name for n in tapped.nodes]
    for a, b in zip(found.nodes, tapped.nodes, strict=True):
        assert (a.shape, a.ok) == (b.shape, b.ok)
        assert a.vs_auto.max_rel < 1e-12
    with jax.enable_x64(True):
        t_plain, t_tapped = true_adjoints(plain, params, x, Y), true_adjoints(model, params, x, Y)
    assert sorted(t_plain) == sorted(t_tapped)
    for n in t_tapped:
        np.testing.assert_allclose(t_plain[n], t_tapped[n], rtol=1e-13, atol=0, err_msg=n)


# A plain forward/backward pair, as people write it: no jaxprop in the model code.


def forward(params, x):
    z1 = x @ params["W1"] + params["b1"][None, :]
    h = jnp.tanh(z1)
    out = h @ params["W2"]
    return out, {"z1": z1, "h": h, "out": out}


def backward(params, x, saved, Y, bug=None):
    d_out = (saved["out"] - Y) / Y.shape[0]
    d_h = d_out @ params["W2"].T
    if bug == "h":
        d_h = d_out @ params["W2"].T * 2.0
    d_z1 = d_h * (1 - saved["h"] ** 2)
    if bug == "z1":
        d_z1 = d_h
    grads = {"W1": x.T @ d_z1, "b1": d_z1.sum(axis=0), "W2": saved["h"].T @ d_out}
    return grads, {"z1": d_z1, "h": d_h, "out": d_out}


def _point():
    k = jax.random.split(jax.random.key(0), 4)
    params = {"W1": jax.random.normal(k[0], (3, 4)), "b1": jax.random.normal(k[1], (4,)),
              "W2": jax.random.normal(k[2], (4, 2))}  # fmt: skip
    return params, jax.random.normal(k[3], (5, 3)), jnp.zeros((5, 2))


def _model(fwd=forward, bwd=backward, name="plain"):
    return Model(name=name, forward=fwd, backward=bwd, objective="half_squared_error")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("bug", [None, "h", "z1"])
def test_a_plain_pair_is_checked_and_a_planted_bug_found(bug, jit, dtype):
    model = _model(bwd=lambda *a: backward(*a, bug=bug))
    report = check_nodes(model, *_point(), jit=jit, dtype=dtype)
    assert [n.name for n in report.nodes] == ["out", "h", "z1"]
    assert report.first_failing == bug
    if bug is not None:
        kind = {"h": "scale", "z1": "missing-local-derivative"}[bug]
        assert report.diagnosis.kind == kind


def test_pytree_params_and_saved_values():
    def fwd(params, x):
        z = x @ params["layer"]["W"]
        a = jnp.tanh(z)
        return a, {"layer1": {"z": z, "a": a}}

    def bwd(params, x, saved, Y):
        da = (saved["layer1"]["a"] - Y) / Y.shape[0]
        dz = da * (1 - saved["layer1"]["a"] ** 2)
        return {"layer": {"W": x.T @ dz}}, {"layer1": {"z": dz, "a": da}}

    params = {"layer": {"W": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)}}
    x, Y = jnp.linspace(0.0, 1.0, 12).reshape(4, 3), jnp.zeros((4, 2))
    report = check_nodes(_model(fwd, bwd), params, x, Y)
    assert report.ok and [n.name for n in report.nodes] == ["layer1/a", "layer1/z"]


def test_a_value_saved_in_a_scan_is_one_node_checked_per_iteration():
    def fwd(params, x):
        def layer(h, W):
            z = h @ W
            return jnp.tanh(z), z  # carry the activation, stack the pre-activations

        out, zs = jax.lax.scan(layer, x, params["Ws"])
        return out, {"zs": zs, "out": out}

    def bwd(params, x, saved, Y, skip=False, flip=False):
        d = (saved["out"] - Y) / Y.shape[0] * (-1.0 if flip else 1.0)
        dzs, dWs = [], []
        for i in reversed(range(params["Ws"].shape[0])):
            dz = d * (1 - jnp.tanh(saved["zs"][i]) ** 2)
            if skip and i == 1:
                dz = d  # tanh′ skipped at the second layer
            h = x if i == 0 else jnp.tanh(saved["zs"][i - 1])
            dWs.append(h.T @ dz)
            dzs.append(dz)
            d = dz @ params["Ws"][i].T
        d_out = (saved["out"] - Y) / Y.shape[0] * (-1.0 if flip else 1.0)
        return {"Ws": jnp.stack(dWs[::-1])}, {"zs": jnp.stack(dzs[::-1]), "out": d_out}

    params = {"Ws": 0.5 * jax.random.normal(jax.random.key(1), (3, 4, 4))}
    x, Y = jax.random.normal(jax.random.key(2), (5, 4)), jnp.zeros((5, 4))
    report = check_nodes(_model(fwd, bwd), params, x, Y)
    assert report.ok, str(report)
    # Backward order: the final carry (computed after every iteration) first.
    assert [n.name for n in report.nodes] == ["out", "zs"] and report["zs"].shape == (3, 5, 4)
    wrong = check_nodes(_model(fwd, lambda *a: bwd(*a, skip=True)), params, x, Y)
    assert wrong.first_failing == "zs"
    flipped = check_nodes(_model(fwd, lambda *a: bwd(*a, flip=True)), params, x, Y)
    assert flipped.first_failing == "out" and flipped.diagnosis.kind == "sign"


@pytest.mark.parametrize(
    ("fwd", "message"),
    [
        (
            lambda p, x: (jnp.tanh(x @ p["W"]) @ p["V"],
                          {"h": jnp.tanh(x @ p["W"]), "out": jnp.tanh(x @ p["W"]) @ p["V"]}),
            r"saved value 'h' .* is never used by the rest of the forward pass: it is recomputed "
            r"by the same tanh at .*test_program.py",
        ),
        (
            lambda p, x: ((x @ p["W"]) @ p["V"], {"h": x, "out": (x @ p["W"]) @ p["V"]}),
            r"saved value 'h' is the input x itself",
        ),
        (
            lambda p, x: ((x @ p["W"]) @ p["V"],
                          {"h": jnp.ones((5, 4)), "out": (x @ p["W"]) @ p["V"]}),
            r"saved value 'h' is (the constant|a constant)",
        ),
        (
            lambda p, x: _twice(p, x),
            r"saved values \['h', 'out'\] are one variable of the program",
        ),
        (
            lambda p, x: (x @ p["W"] @ p["V"] + _CLOSED.sum(),
                          {"h": _CLOSED, "out": x @ p["W"] @ p["V"] + _CLOSED.sum()}),
            r"saved value 'h' is computed outside the traced forward pass",
        ),
    ],
    ids=["recomputed", "input", "constant", "two-names", "closure"],
)  # fmt: skip
def test_what_the_program_reveals_is_a_clear_error(fwd, message):
    def bwd(params, x, saved, Y):
        return {k: jnp.zeros_like(v) for k, v in params.items()}, {
            "h": jnp.zeros_like(saved["h"]), "out": jnp.zeros_like(saved["out"])
        }  # fmt: skip

    params = {"W": jnp.ones((3, 4)), "V": jnp.ones((4, 4))}
    x, Y = jnp.ones((5, 3)), jnp.zeros((5, 4))
    with pytest.raises(ValueError, match=message):
        check_nodes(_model(fwd, bwd), params, x, Y)


_CLOSED = jnp.linspace(0.0, 1.0, 20).reshape(5, 4)


def _twice(p, x):
    out = (x @ p["W"]) @ p["V"]
    return out, {"h": out, "out": out}


def test_a_model_with_neither_nodes_nor_adjoints_is_a_clear_error():
    model = _model(bwd=lambda p, x, saved, Y: (backward(p, x, saved, Y)[0], {}))
    with pytest.raises(ValueError, match="backward returns no adjoint of a saved value"):
        check_nodes(model, *_point())

"""The node-by-node check names the faulty step: every line of every built-in backward pass, broken
in turn, is found.

The mutation test covers every :class:`~jaxprop.Model` in ``jaxprop.REGISTRY`` (models added later
are covered without editing this file, as long as their module follows docs/nodes.md): it parses the
model's module, and for EACH assignment statement inside a function whose name contains "backward"
(and that the model's backward pass runs) it rebuilds the module from source with that one
statement's value scaled by 1.5, rebuilds the model through the module's ``models()``, and checks
that the node check and the gradient check blame exactly that statement's node (or parameter leaf).

The expected outcome of a statement is read off the backward pass itself: a variable that the
backward returns as the adjoint of a node (a dict literal keyed by node names, e.g.
``{"z1": dz1, ...}``) must make that node the FIRST failing one; a variable returned only as a
parameter gradient (a dict literal keyed by parameter names) must make exactly that leaf fail and
no node. Statements that are neither (reading saved values, assembling or reducing the result dicts)
are listed in ``OTHER`` below with the outcome they must have and why; a statement in none of these
fails the test with a message saying what to add.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import json
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
import jaxprop.cli
from jaxprop import Model, check_grads, check_nodes
from jaxprop.verify import random_point

ALL = "all"


@dataclasses.dataclass(frozen=True)
class Expect:
    """What breaking one statement must do.

    Attributes:
      first: the node that must be the first failing one, or ``None`` for "every node passes".
      leaves: the parameter leaves that must fail, exactly; ``ALL`` for every leaf.
      why: the justification.
    """

    first: str | None
    leaves: tuple[str, ...] | str
    why: str


# Statements that compute neither a node's adjoint nor a parameter gradient, keyed by (model name,
# the statement's source text). Each must still be caught, and caught where stated.
OTHER: dict[tuple[str, str], Expect] = {
    (
        "two-layer-mse",
        'h_hat, h, y_hat, y = (saved["h_hat"], saved["h"], saved["y_hat"], saved["y"])',
    ): Expect(
        "y_hat",
        ALL,
        "reads the saved forward values; the first step that uses them is dc = g.vjp(ŷ, y, dL), "
        "the adjoint of y_hat (the adjoint of y is dL, from the loss alone); dU uses h",
    ),
    ("two-layer-mse", 'grads = {"W": dW, "b": db, "U": dU, "c": dc}'): Expect(
        None, ALL, "assembles the gradient dict: every leaf is scaled, no adjoint is touched"
    ),
    ("two-layer-mse", 'adjoints = {"h_hat": db, "h": dh, "y_hat": dc, "y": dL}'): Expect(
        "y", (), "assembles the adjoint dict: every node is scaled; the first in backward order: y"
    ),
    (
        "two-layer-mse",
        "per_example, adjoints = jax.vmap(_backward_one, in_axes=(None, 0, 0, 0, None, None))"
        "(params, x, saved, dL, f, g)",
    ): Expect("y", ALL, "the per-example backward's whole result, gradients and adjoints"),
    ("two-layer-mse", "grads = jax.tree.map(lambda d: jnp.sum(d, axis=0), per_example)"): Expect(
        None, ALL, "the sum over the batch of every per-example gradient: every leaf, no node"
    ),
    ("tanh-softmax", 'a1 = saved["a1"]'): Expect(
        "z1",
        ("W1", "W2", "b1"),
        "reads the saved a1 = tanh(z1); it enters ∂Loss/∂W2 = a1ᵀ dz2 (eq (14)) and the tanh′ "
        "step to z1 (eq (11)), and so dW1 and db1 after it; z2 and a1's adjoints do not use it",
    ),
    ("tanh-softmax", 'grads = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}'): Expect(
        None, ALL, "assembles the gradient dict: every leaf is scaled, no adjoint is touched"
    ),
}

SCALE = 1.5


def _norm(text: str) -> str:
    """A statement's text as ``ast.unparse`` writes it (quotes, spacing)."""
    return ast.unparse(ast.parse(text))


OTHER = {(name, _norm(text)): expect for (name, text), expect in OTHER.items()}


def _scale(tree):
    """Scales every floating-point array leaf; other leaves (functions, activations) pass."""

    def one(u):
        if isinstance(u, (jax.Array, np.ndarray)) and jnp.issubdtype(u.dtype, jnp.inexact):
            return u * SCALE
        return u

    return jax.tree.map(one, tree)


def _models():
    return [m for m in jaxprop.REGISTRY.values() if isinstance(m, Model)]


def _module_of(model: Model) -> types.ModuleType:
    return sys.modules[model.backward.__module__]


def _backward_functions(tree: ast.Module):
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "backward" in node.name
    ]


def _functions_run_by(model: Model, module: types.ModuleType) -> set[int]:
    """The first lines of the module's functions that the model's backward pass runs (a module
    may hold the backward passes of several models, or helpers that this one does not call)."""
    params, x, Y = random_point(model, jax.random.key(0), batch=2)
    _, saved = model.forward(params, x)
    lines: set[int] = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == module.__file__:
            lines.add(frame.f_code.co_firstlineno)

    sys.setprofile(profile)
    try:
        model.backward(params, x, saved, Y)
    finally:
        sys.setprofile(None)
    return lines


def _assignments(tree: ast.Module, run: set[int]):
    """Every assignment statement inside a backward function that the model runs, once each, in
    source order."""
    seen, out = set(), []
    for fn in _backward_functions(tree):
        if min([d.lineno for d in fn.decorator_list] + [fn.lineno]) not in run:
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value:
                key = (node.lineno, node.col_offset)
                if key not in seen:
                    seen.add(key)
                    out.append(node)
    return sorted(out, key=lambda n: (n.lineno, n.col_offset))


def _name_maps(tree: ast.Module, node_names: tuple[str, ...], param_names: set[str]):
    """Variable name -> node, and variable name -> parameter leaf, from the dict literals of the
    backward functions (the adjoints and gradients they return)."""
    to_node, to_leaf = {}, {}
    for fn in _backward_functions(tree):
        for node in ast.walk(fn):
            if not isinstance(node, ast.Dict) or not node.keys:
                continue
            keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
            names = [v.id if isinstance(v, ast.Name) else None for v in node.values]
            if all(k in node_names for k in keys):
                to_node.update({v: k for k, v in zip(keys, names, strict=True) if v})
            elif all(k in param_names for k in keys):
                to_leaf.update({v: k for k, v in zip(keys, names, strict=True) if v})
    return to_node, to_leaf


def _targets(stmt) -> list[str]:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    names = []
    for t in targets:
        names += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
    return names


def _rebuild(module: types.ModuleType, tree: ast.Module, name: str) -> Model:
    """Executes ``tree`` as a fresh module object and builds the model called ``name`` from its
    ``models()``."""
    fresh = types.ModuleType(module.__name__, module.__doc__)
    fresh.__file__ = module.__file__
    fresh.__package__ = module.__package__
    fresh.__dict__["__mutate__"] = _scale
    exec(compile(tree, module.__file__, "exec"), fresh.__dict__)
    if not hasattr(fresh, "models"):
        raise AssertionError(
            f"{module.__name__} registers {name!r} but has no models() function returning the "
            "models it registers (see docs/nodes.md)"
        )
    built = {m.name: m for m in fresh.models()}
    assert name in built, f"{module.__name__}.models() builds {sorted(built)}, not {name!r}"
    return built[name]


def _mutants():
    """(model, statement text, expected, mutated tree) for every assignment in every backward."""
    cases = []
    for model in _models():
        module = _module_of(model)
        tree = ast.parse(inspect.getsource(module))
        params = model.init(jax.random.key(0))
        param_names = {jaxprop.check.leaf_path(p) for p, _ in
                       jax.tree_util.tree_flatten_with_path(params)[0]}  # fmt: skip
        to_node, to_leaf = _name_maps(tree, model.node_names(params), param_names)
        for stmt in _assignments(tree, _functions_run_by(model, module)):
            text = ast.unparse(stmt)
            expect = _expectation(model, text, _targets(stmt), to_node, to_leaf)
            mutated = copy.deepcopy(tree)
            for node in ast.walk(mutated):
                if type(node) is type(stmt) and (node.lineno, node.col_offset) == (
                    stmt.lineno,
                    stmt.col_offset,
                ):
                    node.value = ast.Call(ast.Name("__mutate__", ast.Load()), [node.value], [])
            ast.fix_missing_locations(mutated)
            cases.append(
                pytest.param(model, text, expect, mutated, id=f"{model.name}:{stmt.lineno}")
            )
    return cases


def _expectation(model, text, targets, to_node, to_leaf) -> Expect | str:
    if (model.name, text) in OTHER:
        return OTHER[(model.name, text)]
    if len(targets) == 1 and targets[0] in to_node:
        node = to_node[targets[0]]
        leaf = (to_leaf[targets[0]],) if targets[0] in to_leaf else ()
        return Expect(node, ("at least", *leaf), f"{targets[0]} is the adjoint of {node}")
    if len(targets) == 1 and targets[0] in to_leaf:
        return Expect(None, (to_leaf[targets[0]],), f"{targets[0]} is ∂L/∂{to_leaf[targets[0]]}")
    return (
        f"{model.name}: the statement `{text}` assigns {targets}, which the backward returns "
        "neither as a node's adjoint nor as a parameter gradient; add its expected outcome, with "
        "the reason, to OTHER in tests/test_nodes.py"
    )


MUTANTS = _mutants()


def test_every_registered_model_has_mutants():
    names = {p.values[0].name for p in MUTANTS}
    assert names == {m.name for m in _models()}
    assert len(MUTANTS) >= 20


def test_every_other_entry_names_a_real_statement():
    texts = {(p.values[0].name, p.values[1]) for p in MUTANTS}
    stale = [key for key in OTHER if key not in texts]
    assert not stale, f"OTHER lists statements no backward has: {stale}"


@pytest.mark.parametrize(("model", "text", "expect", "mutated"), MUTANTS)
def test_breaking_one_statement_is_found_at_its_node(model, text, expect, mutated):
    assert isinstance(expect, Expect), expect
    mutant = _rebuild(_module_of(model), mutated, model.name)
    params, x, Y = random_point(mutant, jax.random.key(0), batch=3)
    nodes = check_nodes(mutant, params, x, Y, jit=False)
    grads = check_grads(mutant.loss, mutant.grad, params, x, Y, jit=False, fd=False)
    assert nodes.first_failing == expect.first, f"`{text}`: {expect.why}\n{nodes}"
    every_leaf = tuple(leaf.path for leaf in grads.leaves)
    if expect.leaves == ALL:
        assert grads.failing == every_leaf, f"`{text}`: {expect.why}\n{grads}"
    elif expect.leaves[:1] == ("at least",):
        assert set(expect.leaves[1:]) <= set(grads.failing), f"`{text}`: {expect.why}\n{grads}"
    else:
        assert set(grads.failing) == set(expect.leaves), f"`{text}`: {expect.why}\n{grads}"
    # Something is caught, always: no statement of a backward pass is dead.
    assert not (nodes.ok and grads.ok)


def test_the_unmutated_models_pass_node_by_node():
    for model in _models():
        params, x, Y = random_point(model, jax.random.key(1), batch=3)
        report = check_nodes(model, params, x, Y)
        assert report.ok and report.first_failing is None, str(report)
        assert [n.name for n in report.nodes] == list(reversed(model.node_names(params)))
        for n in report.nodes:
            assert n.vs_auto.max_rel < 1e-12, str(report)


def _mutant_of(model_name: str, line_text: str) -> Model:
    for p in MUTANTS:
        if p.values[0].name == model_name and p.values[1] == line_text:
            return _rebuild(_module_of(p.values[0]), p.values[3], model_name)
    raise AssertionError(f"no statement {line_text!r} in {model_name}")


def test_cli_verify_nodes_names_the_node(monkeypatch, capsys):
    mutant = _mutant_of("tanh-softmax", _norm('da1 = dz2 @ params["W2"].T'))
    monkeypatch.setattr(jaxprop.models, "REGISTRY", {mutant.name: mutant})
    assert jaxprop.cli.main(["verify", "--nodes", "--batch", "3"]) == 1
    out = capsys.readouterr().out
    assert "first failing node a1" in out
    assert "a1" in out and "<- first failing" in out
    assert jaxprop.cli.main(["verify", "--nodes", "--json", "--batch", "3"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False
    assert payload["models"][0]["nodes"]["first_failing"] == "a1"
    assert payload["models"][0]["nodes"]["failing"] == ["a1", "z1"]


def test_cli_verify_nodes_passes_and_skips_entries_without_nodes(monkeypatch, capsys):
    class JacobianExample:  # a registry entry that is not a Model: check() alone
        name, source = "jacobian-example", "nowhere"

        def check(self, *, seed, dtype, jit, batch):
            return jaxprop.check_grads(
                lambda p: jnp.sum(p["a"] ** 2), lambda p: {"a": 2 * p["a"]},
                {"a": jnp.ones(3)}, name=self.name, source=self.source,
            )  # fmt: skip

    model = jaxprop.get_model("two-layer-mse")
    registry = {model.name: model, "jacobian-example": JacobianExample()}
    monkeypatch.setattr(jaxprop.models, "REGISTRY", registry)
    assert jaxprop.cli.main(["verify", "--nodes", "--json", "--batch", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    by_name = {m["name"]: m for m in payload["models"]}
    assert by_name["two-layer-mse"]["nodes"]["first_failing"] is None
    assert [n["name"] for n in by_name["two-layer-mse"]["nodes"]["nodes"]] == [
        "y", "y_hat", "h", "h_hat"
    ]  # fmt: skip
    assert "nodes" not in by_name["jacobian-example"]


def test_user_model_from_forward_and_backward():
    def forward(params, x, taps=None):
        z = jaxprop.tap(taps, "z", x @ params["w"])
        a = jaxprop.tap(taps, "a", jnp.sin(z))
        return a, {"z": z, "a": a}

    def backward(params, x, saved, Y, wrong=False):
        da = jaxprop.LOSSES["half_squared_error"].grad(saved["a"], Y)
        dz = da * (jnp.sin(saved["z"]) if wrong else jnp.cos(saved["z"]))
        return {"w": x.T @ dz}, {"z": dz, "a": da}

    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)}
    x, Y = jnp.linspace(0.0, 1.0, 12).reshape(4, 3), jnp.ones((4, 2))
    good = Model(name="mine", forward=forward, backward=backward, objective="half_squared_error",
                 nodes=("z", "a"))  # fmt: skip
    assert check_nodes(good, params, x, Y).ok
    bad = dataclasses.replace(good, backward=lambda *a: backward(*a, wrong=True))
    report = check_nodes(bad, params, x, Y)
    assert report.first_failing == "z" and report.failing == ("z",)
    assert report.to_dict()["first_failing"] == "z"
    assert "first failing node: z" in str(report)


def test_missing_wrong_shape_and_extra_adjoints_are_named():
    model = jaxprop.get_model("tanh-softmax")
    params, x, Y = random_point(model, jax.random.key(2), batch=3, n_hidden=4)

    def drop(fn):
        def backward(params, x, saved, Y):
            grads, adj = model.backward(params, x, saved, Y)
            return grads, fn(dict(adj))

        return dataclasses.replace(model, backward=backward)

    missing = check_nodes(drop(lambda a: {k: v for k, v in a.items() if k != "a1"}), params, x, Y)
    assert missing.first_failing == "a1" and "missing" in missing["a1"].problem
    shaped = check_nodes(drop(lambda a: {**a, "z2": a["z2"].T}), params, x, Y)
    assert shaped.first_failing == "z2" and "shape" in shaped["z2"].problem
    extra = check_nodes(drop(lambda a: {**a, "y_hat": a["z2"]}), params, x, Y)
    assert not extra.ok and extra.first_failing is None and extra.extra == ("y_hat",)


def test_forward_without_a_saved_node_is_a_clear_error():
    model = jaxprop.get_model("tanh-softmax")
    params, x, Y = random_point(model, jax.random.key(2), batch=3, n_hidden=4)
    broken = dataclasses.replace(model, nodes=(*model.nodes, "nowhere"))
    with pytest.raises(ValueError, match="nowhere"):
        check_nodes(broken, params, x, Y)


def test_float32_check():
    model = jaxprop.get_model("two-layer-mse")
    params, x, Y = random_point(model, jax.random.key(3), batch=3)
    report = check_nodes(model, params, x, Y, dtype="float32")
    assert report.ok and report.dtype == "float32"


def test_bad_models_are_clear_errors():
    model = jaxprop.get_model("tanh-softmax")
    params, x, Y = random_point(model, jax.random.key(2), batch=3, n_hidden=4)
    with pytest.raises(ValueError, match="nodes is empty"):
        check_nodes(dataclasses.replace(model, nodes=()), params, x, Y)
    with pytest.raises(TypeError, match=r"jaxprop\.Model"):
        check_nodes(object(), params, x, Y)


def test_verify_model_with_nodes_raises_naming_the_node():
    mutant = _mutant_of("tanh-softmax", _norm('da1 = dz2 @ params["W2"].T'))
    report = jaxprop.verify_model(mutant, nodes=True, batch=3)
    assert not report.ok and report.first_failing_node == "a1"
    assert report.to_dict()["nodes"]["first_failing"] == "a1"
    with pytest.raises(jaxprop.GradientCheckError, match="first failing node a1"):
        report.raise_if_failed()
    assert jaxprop.verify_model(jaxprop.get_model("two-layer-mse"), nodes=True, batch=3).ok

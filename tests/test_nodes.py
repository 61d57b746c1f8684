"""The node-by-node check names the faulty step: every statement of every built-in backward pass,
broken in turn, is found where it breaks.

The mutation test covers every :class:`~jaxprop.Model` in ``jaxprop.REGISTRY`` (models added later
are covered without editing this file, as long as their module follows docs/nodes.md).

**Which statements.** The functions of the model's module that its backward pass runs and its loss
does not (found by profiling one call of each; so a module may hold several models' passes and
helpers shared with the forward pass are left alone), and in each of them every assignment
(``=``, ``+=``, annotated) and every ``return`` with a value, loops and branches included. Each
one, in turn, has its value wrapped in ``__mutate__(...)`` in a fresh copy of the module, and the
model is rebuilt through the module's ``models()``.

**The mutation.** ``__mutate__`` scales every floating-point leaf of the value by 1.5 (a float
array, a tracer under ``jax.vmap``, a Python float) and leaves every other leaf as it is (integers
such as ``depth = len(params)``, shapes, ``None``, functions, activations). A statement whose
value has no floating-point leaf when the backward pass runs is thereby left unchanged; the test
finds that out by running it (nothing is listed by hand) and then asserts that the mutant's output
is bit-identical to the original's. ``test_float_valued_statements`` lists those statements per
model in its failure message and requires that the static adjoint and gradient variables be among
the float-valued ones. A statement that never runs at the test's sizes fails the test.

**The ground truth**, determined without the checkers under test and without ``jax.grad``: the
ORIGINAL and the MUTANT hand backward run at the same float64 point. A node (leaf) is changed when
max |mutant − original| > 1e-6 · max |original| and unchanged when it is below 1e-12 of it; a value
in between is ambiguous and fails the test. The expected first failing node is the first node, in
backward order (reversed ``model.node_names(params)``), whose hand adjoint changed; the expected
failing nodes and failing gradient leaves are exactly the changed ones. A float-valued statement
that changes nothing fails the test as dead code, unless ``NO_EFFECT`` lists it with the reason the
model does not use it (a helper shared with another model); listed ones must change nothing.
``check_nodes`` and ``check_grads`` (both against ``jax.grad``) must report exactly that.

**The static cross-check.** Where the backward pass names a variable as a node's adjoint (a dict
literal ``{"z1": dz1, ...}`` or a subscript assignment ``adjoints[f"in{l}"] = delta``, the f-string
read as a pattern) the runtime first failing node of a statement assigning that variable must be
that node (match that pattern); where a dict literal names a variable as a parameter's gradient
only (``{"W1": dW1, ...}``), the statement must fail exactly that leaf and no node.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import json
import re
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
import jaxprop.cli
import jaxprop.registry
from jaxprop import Model, check_grads, check_nodes, random_point
from jaxprop.check import leaf_path
from jaxprop.teach.source import _called, stored_items

SCALE = 1.5
CHANGED, UNCHANGED = 1e-6, 1e-12  # relative change of a node or leaf: changed / unchanged


class Mutator:
    """The ``__mutate__`` of a mutated module: scales the floating-point leaves of a value by
    ``SCALE`` and counts the calls and the leaves scaled."""

    def __init__(self, scale: float = SCALE):
        self.scale = scale
        self.calls = 0
        self.scaled = 0

    def _one(self, u):
        if isinstance(u, float) or (
            isinstance(u, (jax.Array, np.ndarray)) and jnp.issubdtype(u.dtype, jnp.inexact)
        ):
            self.scaled += 1
            return u * self.scale
        return u

    def __call__(self, value):
        self.calls += 1
        return jax.tree.map(self._one, value)


def _models():
    return [m for m in jaxprop.REGISTRY.values() if isinstance(m, Model)]


def _module_of(model: Model) -> types.ModuleType:
    return sys.modules[model.backward.__module__]


@functools.cache
def _point(name: str):
    """The float64 point every mutant of a model is checked at: ``(params, x, Y)``."""
    model = jaxprop.get_model(name)
    point = random_point(model, jax.random.key(0), batch=3)
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), point)


def _backward_functions(model: Model, module: types.ModuleType, tree: ast.Module):
    """The functions of the module that the backward pass runs and the loss does not."""
    params, x, Y = _point(model.name)
    _, saved = model.forward(params, x)
    run = _called(lambda: model.backward(params, x, saved, Y), module)
    run -= _called(lambda: model.loss(params, x, Y), module)
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and min([d.lineno for d in node.decorator_list] + [node.lineno]) in run
    ]


def _statements(fn) -> list[ast.stmt]:
    """Assignments and returns with a value in ``fn``'s own body (not in nested functions)."""
    out = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)) and (
                child.value is not None
            ):
                out.append(child)
            visit(child)

    visit(fn)
    return out


def _key_pattern(key) -> str | None:
    """A dict key or subscript as a regex over node names: a constant, or an f-string whose
    formatted parts match anything."""
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return re.escape(key.value)
    if isinstance(key, ast.JoinedStr):
        return "".join(
            re.escape(v.value) if isinstance(v, ast.Constant) else ".+?" for v in key.values
        )
    return None


def _static_roles(fns, node_names, param_names):
    """Variable name -> node-name patterns it is returned as, and variable name -> the parameter
    leaf it is returned as, read off the dict literals and subscript assignments of ``fns``."""
    to_node: dict[str, set[str]] = {}
    to_leaf: dict[str, str] = {}

    def is_node(p):
        return p is not None and any(re.fullmatch(p, n) for n in node_names)

    for fn in fns:
        for node in ast.walk(fn):
            pairs = []
            if isinstance(node, ast.Dict) and node.keys and all(node.keys):
                pairs = list(zip(node.keys, node.values, strict=True))
                keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
                if all(k in param_names for k in keys):
                    for k, v in zip(keys, node.values, strict=True):
                        if isinstance(v, ast.Name):
                            to_leaf[v.id] = k
                    continue
            else:
                pairs = stored_items(node)
            for key, value in pairs:
                pattern = _key_pattern(key)
                if is_node(pattern) and isinstance(value, ast.Name):
                    to_node.setdefault(value.id, set()).add(pattern)
    return to_node, {v: k for v, k in to_leaf.items() if v not in to_node}


def _targets(stmt) -> list[str]:
    if isinstance(stmt, ast.Return):
        return []
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One statement of one model's backward pass, and the module with it mutated."""

    model: Model
    text: str
    lineno: int
    targets: tuple[str, ...]
    node_patterns: frozenset[str]  # static: the node patterns the target is returned as
    leaf: str | None  # static: the parameter leaf the target alone is returned as
    tree: ast.Module


def _mutants() -> list[Mutant]:
    out = []
    for model in _models():
        module = _module_of(model)
        tree = ast.parse(inspect.getsource(module))
        params = _point(model.name)[0]
        param_names = {leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
        fns = _backward_functions(model, module, tree)
        to_node, to_leaf = _static_roles(fns, model.node_names(params), param_names)
        stmts = sorted({id(s): s for fn in fns for s in _statements(fn)}.values(),
                       key=lambda s: (s.lineno, s.col_offset))  # fmt: skip
        for stmt in stmts:
            targets = tuple(_targets(stmt))
            one = targets[0] if len(targets) == 1 else None
            mutated = copy.deepcopy(tree)
            for node in ast.walk(mutated):
                if type(node) is type(stmt) and (node.lineno, node.col_offset) == (
                    stmt.lineno,
                    stmt.col_offset,
                ):
                    node.value = ast.Call(ast.Name("__mutate__", ast.Load()), [node.value], [])
            ast.fix_missing_locations(mutated)
            out.append(
                Mutant(model, ast.unparse(stmt), stmt.lineno, targets,
                       frozenset(to_node.get(one, ())), to_leaf.get(one), mutated)
            )  # fmt: skip
    return out


def _rebuild(
    module: types.ModuleType, tree: ast.Module, name: str, mutator=None, **names
) -> tuple[Model, Mutator]:
    """Executes ``tree`` as a fresh module object (with ``names`` among its globals) and builds
    the model called ``name`` from its ``models()``; returns it with the module's
    ``__mutate__`` (``mutator``, by default one that scales by ``SCALE``)."""
    fresh = types.ModuleType(module.__name__, module.__doc__)
    fresh.__file__ = module.__file__
    fresh.__package__ = module.__package__
    fresh.__dict__.update(names)
    mutator = fresh.__dict__["__mutate__"] = Mutator() if mutator is None else mutator
    exec(compile(tree, module.__file__, "exec"), fresh.__dict__)
    if not hasattr(fresh, "models"):
        raise AssertionError(
            f"{module.__name__} registers {name!r} but has no models() function returning the "
            "models it registers (see docs/nodes.md)"
        )
    built = {m.name: m for m in fresh.models()}
    assert name in built, f"{module.__name__}.models() builds {sorted(built)}, not {name!r}"
    return built[name], mutator


def _hand(model: Model, name: str):
    """The hand backward at the model's point: ({leaf path: grad}, {node: adjoint}), NumPy."""
    params, x, Y = _point(name)
    grads, adjoints = model.backward_from(params, x, Y)
    leaves = {
        leaf_path(p): np.asarray(g) for p, g in jax.tree_util.tree_flatten_with_path(grads)[0]
    }
    return leaves, {n: np.asarray(adjoints[n]) for n in model.node_names(params)}


@functools.cache
def _original(name: str):
    return _hand(jaxprop.get_model(name), name)


def _changed(mutant: np.ndarray, original: np.ndarray, what: str) -> bool:
    """Whether a value changed, by the rule of the module docstring (ambiguous: AssertionError)."""
    diff = float(np.max(np.abs(mutant - original), initial=0.0))
    if not np.isfinite(diff):
        return True
    rel = diff / max(float(np.max(np.abs(original), initial=0.0)), np.finfo(np.float64).tiny)
    assert rel > CHANGED or rel < UNCHANGED, f"{what}: relative change {rel:.2e} is ambiguous"
    return rel > CHANGED


@functools.cache
def _ground_truth(index: int):
    """For MUTANTS[index]: (mutant model, float-valued?, changed nodes in backward order, changed
    leaves), from the original and mutant hand backward passes alone."""
    m = MUTANTS[index]
    mutant, mutator = _rebuild(_module_of(m.model), m.tree, m.model.name)
    leaves, adjoints = _hand(mutant, m.model.name)
    assert mutator.calls > 0, (
        f"{m.model.name}: `{m.text}` (line {m.lineno}) never runs at the test's sizes; the "
        "mutation test cannot check it"
    )
    orig_leaves, orig_adjoints = _original(m.model.name)
    nodes = tuple(
        n for n in reversed(orig_adjoints)
        if _changed(adjoints[n], orig_adjoints[n], f"`{m.text}` node {n}")
    )  # fmt: skip
    failing = tuple(
        p for p in orig_leaves if _changed(leaves[p], orig_leaves[p], f"`{m.text}` leaf {p}")
    )
    identical = all(np.array_equal(leaves[p], orig_leaves[p]) for p in orig_leaves) and all(
        np.array_equal(adjoints[n], orig_adjoints[n]) for n in orig_adjoints
    )
    return mutant, mutator.scaled > 0 or not identical, nodes, failing


MUTANTS = _mutants()

# Statements that run and have a floating-point value but that the model's backward pass, at this
# model's settings, does not use (a helper shared with another model), keyed by (model name, the
# statement's source text), with the reason. Each must change nothing; every other float-valued
# statement must change something.
NO_EFFECT: dict[tuple[str, str], str] = {}


def test_every_registered_model_has_mutants():
    names = {m.model.name for m in MUTANTS}
    assert names == {m.name for m in _models()}
    assert len(MUTANTS) >= 20


@pytest.mark.parametrize(
    "index", range(len(MUTANTS)), ids=[f"{m.model.name}:{m.lineno}" for m in MUTANTS]
)
def test_breaking_one_statement_is_found_at_its_node(index):
    m = MUTANTS[index]
    mutant, float_valued, changed_nodes, changed_leaves = _ground_truth(index)
    where = f"{m.model.name}: `{m.text}` (line {m.lineno})"
    if not float_valued:
        # Nothing to scale: the mutant is the original, bit for bit.
        assert not changed_nodes and not changed_leaves, where
        return
    if (m.model.name, m.text) in NO_EFFECT:
        assert not changed_nodes and not changed_leaves, where
        return
    # No other statement of a backward pass is dead.
    assert changed_nodes or changed_leaves, (
        f"{where} changes no adjoint and no gradient; if it is genuinely unused by this model, "
        "add it to NO_EFFECT with the reason"
    )
    params, x, Y = _point(m.model.name)
    nodes = check_nodes(mutant, params, x, Y, jit=False)
    grads = check_grads(mutant.loss, mutant.grad, params, x, Y, jit=False, fd=False)
    first = changed_nodes[0] if changed_nodes else None
    assert nodes.first_failing == first, f"{where}: changes {changed_nodes}\n{nodes}"
    assert nodes.failing == changed_nodes, f"{where}: changes {changed_nodes}\n{nodes}"
    assert set(grads.failing) == set(changed_leaves), f"{where}: changes {changed_leaves}\n{grads}"
    # The static cross-check, where the backward names the statement's variable.
    if m.node_patterns:
        assert first is not None and any(re.fullmatch(p, first) for p in m.node_patterns), (
            f"{where}: {m.targets[0]} is returned as the adjoint of {sorted(m.node_patterns)}, "
            f"but the first node it changes is {first}"
        )
        if m.leaf is not None:
            assert m.leaf in changed_leaves, where
    elif m.leaf is not None:
        assert (first, changed_leaves) == (None, (m.leaf,)), (
            f"{where}: {m.targets[0]} is returned as ∂L/∂{m.leaf} only, but it changes the nodes "
            f"{changed_nodes} and the leaves {changed_leaves}"
        )


def test_every_no_effect_entry_names_a_real_statement():
    texts = {(m.model.name, m.text) for m in MUTANTS}
    stale = [key for key in NO_EFFECT if key not in texts]
    assert not stale, f"NO_EFFECT lists statements no backward has: {stale}"


def test_float_valued_statements():
    """Per model, the statements with no floating-point value (left unchanged by the mutation)
    are found by running them; the adjoint and gradient variables must not be among them."""
    for model in _models():
        indices = [i for i, m in enumerate(MUTANTS) if m.model.name == model.name]
        untouched = [MUTANTS[i] for i in indices if not _ground_truth(i)[1]]
        listing = "\n".join(f"  line {m.lineno}: {m.text}" for m in untouched)
        assert len(untouched) < len(indices) / 2, f"{model.name}: not float-valued:\n{listing}"
        static = [m for m in untouched if m.node_patterns or m.leaf]
        assert not static, f"{model.name}: adjoint/gradient statements not float-valued: {static}"


def test_the_unmutated_models_pass_node_by_node():
    for model in _models():
        params, x, Y = random_point(model, jax.random.key(1), batch=3)
        report = check_nodes(model, params, x, Y)
        assert report.ok and report.first_failing is None, str(report)
        assert [n.name for n in report.nodes] == list(reversed(model.node_names(params)))
        for n in report.nodes:
            assert n.vs_auto.max_rel < 1e-12, str(report)


def _mutant_of(model_name: str, line_text: str) -> Model:
    text = ast.unparse(ast.parse(line_text))
    for m in MUTANTS:
        if m.model.name == model_name and m.text == text:
            return _rebuild(_module_of(m.model), m.tree, model_name)[0]
    raise AssertionError(f"no statement {line_text!r} in {model_name}")


def test_cli_verify_nodes_names_the_node(monkeypatch, capsys):
    mutant = _mutant_of("tanh-softmax", 'da1 = dz2 @ params["W2"].T')
    monkeypatch.setattr(jaxprop.registry, "REGISTRY", {mutant.name: mutant})
    assert jaxprop.cli.main(["verify", "--nodes", "--batch", "3"]) == 1
    out = capsys.readouterr().out
    assert "first failing node a1" in out
    assert "a1" in out and "<- first failing: scale" in out
    assert "diagnosis at node a1 (scale): ∂L/∂a1 is c = 1.5 times the true adjoint" in out
    assert jaxprop.cli.main(["verify", "--nodes", "--json", "--batch", "3"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False
    assert payload["models"][0]["nodes"]["first_failing"] == "a1"
    assert payload["models"][0]["nodes"]["failing"] == ["a1", "z1"]
    diagnosis = payload["models"][0]["nodes"]["diagnosis"]
    assert (diagnosis["node"], diagnosis["kind"]) == ("a1", "scale")
    assert diagnosis["figures"]["c"] == pytest.approx(1.5, rel=1e-12)


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
    monkeypatch.setattr(jaxprop.registry, "REGISTRY", registry)
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
    # Without nodes, the nodes are found in the traced program (tests/test_program.py).
    found = check_nodes(dataclasses.replace(model, nodes=()), params, x, Y)
    assert found.ok and [n.name for n in found.nodes] == ["z2", "a1", "z1"]
    with pytest.raises(TypeError, match=r"jaxprop\.Model"):
        check_nodes(object(), params, x, Y)
    with pytest.raises(ValueError, match=r"nodes must be a tuple of names.*nodes=\('z1',\)"):
        dataclasses.replace(model, nodes="z1")
    with pytest.raises(ValueError, match=r"objective must be a jaxprop\.Loss"):
        dataclasses.replace(model, objective=3)


def test_non_finite_parameters_are_named_not_blamed_on_a_node():
    model = jaxprop.get_model("tanh-softmax")
    params, x, Y = random_point(model, jax.random.key(2), batch=3, n_hidden=4)
    bad = {**params, "W2": params["W2"].at[0, 0].set(jnp.nan)}
    with pytest.raises(ValueError, match=r"not finite.*W2"):
        check_nodes(model, bad, x, Y)


def test_verify_model_with_nodes_raises_naming_the_node():
    mutant = _mutant_of("tanh-softmax", 'da1 = dz2 @ params["W2"].T')
    report = jaxprop.verify_model(mutant, nodes=True, batch=3)
    assert not report.ok and report.first_failing_node == "a1"
    assert report.to_dict()["nodes"]["first_failing"] == "a1"
    with pytest.raises(jaxprop.GradientCheckError, match="first failing node a1"):
        report.raise_if_failed()
    assert jaxprop.verify_model(jaxprop.get_model("two-layer-mse"), nodes=True, batch=3).ok

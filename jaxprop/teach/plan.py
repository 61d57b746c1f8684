"""The plan of an exercise: which statements of a model's backward pass become blanks (one per
node adjoint), found by running the backward pass on a recording copy of its module.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import itertools
import json
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprop.teach.assignment import BATCH, SEED, _get_model
from jaxprop.teach.source import (
    _base_name,
    _called,
    _citations,
    _key_label,
    _matches,
    _references,
    _Source,
    stored_items,
)

# Models whose node adjoints are written per neuron in helper functions: the blanks are those
# helpers' return statements (the adjoint of one neuron), not the mapped calls. Function name ->
# (node label, what the student writes).
_RETURN_BLANKS: dict[str, dict[str, tuple[str, str]]] = {
    "neuron-delta-per-neuron": {
        "_dE_dout_output": ("out{l}", "∂E/∂out_k of one output neuron k of one example"),
        "_dE_dout_hidden": ("out{l}", "∂E/∂out_k of one hidden neuron k of one example"),
        "_delta": ("in{l}", "δ_k = ∂E/∂in_k of one neuron k of one example"),
    },
}


@dataclasses.dataclass
class _Blank:
    """One statement of the backward pass whose value the student writes."""

    function: str  # the qualified name of the function it is in
    stmt: ast.stmt
    label: str  # the node (pattern) it computes the adjoint of
    target: str | None  # the variable assigned, or None for a return
    what: str  # what the student writes, for the comment
    cites: list[str]
    comment_lines: list[int]  # the comment lines above it that belong to it
    template: str = ""  # the TODO's shape argument: ', like=saved["z1"]', ', shape=(1, 5)', ''


@dataclasses.dataclass
class _Function:
    fn: types.FunctionType
    node: ast.FunctionDef
    role: str  # "forward", "backward" or "helper"
    renames: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Plan:
    name: str  # the registry name
    model: Any
    config: dict[str, Any]
    source: _Source
    functions: list[_Function]
    blanks: list[_Blank]
    imports: dict[str, str]  # the import statement -> its sort key
    bindings: dict[str, str]  # name -> the expression bound to it
    nodes: tuple[str, ...] = ()
    saved_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


def _binding(value: Any) -> str | None:
    """Source text for a constant the exercise's functions read, or None."""
    from jaxprop.nn.activations import ACTIVATIONS, Activation
    from jaxprop.nn.losses import LOSSES, Loss

    if isinstance(value, Activation):
        names = [k for k, v in ACTIVATIONS.items() if v is value]
        return f"jaxprop.ACTIVATIONS[{json.dumps(names[0])}]" if names else None
    if isinstance(value, Loss):
        names = [k for k, v in LOSSES.items() if v is value]
        return f"jaxprop.LOSSES[{json.dumps(names[0])}]" if names else None
    if isinstance(value, tuple) and value and all(isinstance(v, Activation) for v in value):
        parts = [_binding(v) for v in value]
        one = "," if len(parts) == 1 else ""
        return None if None in parts else "(" + ", ".join(map(str, parts)) + one + ")"
    text = _literal(value)
    if text is None:
        return None
    literal = ast.literal_eval(text)
    return text if literal == value and type(literal) is type(value) else None


def _literal(value: Any) -> str | None:
    """``repr(value)`` for a constant of str, numbers, None, tuples, lists and dicts, with strings
    in double quotes; None for anything else."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        parts = [_literal(v) for v in value]
        if None in parts:
            return None
        one = "," if isinstance(value, tuple) and len(value) == 1 else ""
        inner = ", ".join(map(str, parts)) + one
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        items = [(_literal(k), _literal(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in items):
            return None
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    return None


def _plan(name: str, config: Mapping[str, Any]) -> _Plan:
    model = _get_model(name, config)
    module = sys.modules[model.backward.__module__]
    if sys.modules[model.forward.__module__] is not module:
        raise ValueError(f"{model.name}: forward and backward are in different modules")
    source = _Source.of(module)

    def profile(params, x, Y):
        _, saved = model.run_forward(params, x)
        lines = _called(lambda: model.backward(params, x, saved, Y), module)
        lines -= _called(lambda: model.loss(params, x, Y), module)
        return lines, model.node_names(params), {k: tuple(v.shape) for k, v in saved.items()}

    backward_only, nodes, saved_shapes = _traced(model, profile)

    def taps(node: ast.FunctionDef) -> bool:
        return any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "tap"
            for n in ast.walk(node)
        )

    functions: dict[int, _Function] = {}
    imports: dict[str, str] = {}
    bindings: dict[str, str] = {}
    entries = {model.forward: "forward", model.backward: "backward"}

    def visit(fn: types.FunctionType, role: str) -> None:
        first = fn.__code__.co_firstlineno
        if first in functions:
            return
        node = source.defs[first]
        functions[first] = entry = _Function(fn, node, role)
        if fn in entries and node.name != entries[fn]:
            entry.renames[node.name] = entries[fn]
        # The names in its annotations (strings under `from __future__ import annotations`,
        # so read from the source): imported, so that the file reads without undefined names.
        annotations = [a.annotation for a in ast.walk(node.args) if isinstance(a, ast.arg)]
        for ann in [*annotations, node.returns]:
            for n in ast.walk(ann) if ann is not None else ():
                if isinstance(n, ast.Name) and not hasattr(builtins, n.id):
                    value = fn.__globals__.get(n.id)
                    if isinstance(value, type):
                        _import(value, n.id, imports)
        for ref, value in _references(fn).items():
            if isinstance(value, types.ModuleType):
                imports[
                    f"import {value.__name__}"
                    if value.__name__ == ref
                    else f"import {value.__name__} as {ref}"
                ] = value.__name__
            elif isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
                shown = (
                    value in entries
                    or (role == "forward" and taps(source.defs[value.__code__.co_firstlineno]))
                    or (role == "backward" and value.__code__.co_firstlineno in backward_only)
                )
                if shown or "<locals>" in value.__qualname__:
                    visit(value, role if shown else "helper")
                    target = functions[value.__code__.co_firstlineno].node.name
                    target = entries.get(value, target)
                    if target != ref:
                        entry.renames[ref] = target
                else:
                    _import(value, ref, imports)
            elif isinstance(value, (types.FunctionType, type)):
                _import(value, ref, imports)
            else:
                text = _binding(value)
                if text is None:
                    raise ValueError(
                        f"{model.name}: cannot write {ref} = {value!r} (read by "
                        f"{fn.__qualname__}) into an exercise"
                    )
                if bindings.setdefault(ref, text) != text:
                    raise ValueError(f"{model.name}: {ref} is bound to two different values")

    visit(model.forward, "forward")
    visit(model.backward, "backward")
    ordered = sorted(functions.values(), key=lambda f: f.node.lineno)
    names = [entries.get(f.fn, f.node.name) for f in ordered]
    if len(set(names)) != len(names) or set(names) & set(bindings):
        raise ValueError(f"{model.name}: the exercise's functions {names} collide")
    plan = _Plan(name, model, dict(config), source, ordered, [], imports, bindings)
    plan.nodes, plan.saved_shapes = tuple(nodes), saved_shapes
    plan.blanks = _blanks(plan, nodes)
    _templates(plan)
    return plan


def _traced(model, fn: Callable[..., Any]) -> Any:
    """``fn(params, x, Y)`` at the graded point, traced (``jax.eval_shape``: shapes, no values and
    nothing compiled); what it returns must not hold arrays."""
    from jaxprop.check.tolerance import precision
    from jaxprop.check.trees import cast
    from jaxprop.model.contract import random_point

    out: list[Any] = []

    def run(key):
        params, x, Y = cast(random_point(model, key, BATCH), jnp.float64)
        out.append(fn(params, x, Y))

    with precision("float64"):
        jax.eval_shape(run, jax.random.key(SEED))
    return out[0]


def _import(value: Any, ref: str, imports: dict[str, str]) -> None:
    mod: str = value.__module__
    qualname: str = value.__qualname__
    if getattr(sys.modules[mod], qualname, None) is not value:
        raise ValueError(f"cannot import {qualname} from {mod}")
    # From the subpackage's public face where it re-exports the name (jaxprop.model, not
    # jaxprop.model.validate): the exercise reads as a user writes it.
    parent = mod.rpartition(".")[0]
    while parent.count(".") >= 1 and getattr(sys.modules.get(parent), qualname, None) is value:
        mod, parent = parent, parent.rpartition(".")[0]
    alias = "" if ref == qualname else f" as {ref}"
    imports[f"from {mod} import {qualname}{alias}"] = mod


def _blanks(plan: _Plan, nodes: Sequence[str]) -> list[_Blank]:
    """The statements of the backward functions that compute a node's adjoint."""
    backward = [f for f in plan.functions if f.role == "backward"]
    source = plan.source
    blanks: list[_Blank] = []
    override = _RETURN_BLANKS.get(plan.model.name)
    if override is not None:
        for f in backward:
            if f.node.name in override:
                label, what = override[f.node.name]
                returns = [s for s in _statements(f.node) if isinstance(s, ast.Return)]
                if len(returns) != 1:
                    raise ValueError(f"{plan.model.name}: {f.node.name} has {len(returns)} returns")
                blanks.append(_blank(source, f, returns[0], label, None, what, whole=True))
    else:
        roles: dict[str, tuple[str, str | None]] = {}  # variable -> (label, how it is returned)
        for f in backward:
            for n in ast.walk(f.node):
                pairs: list[tuple[ast.expr, ast.expr]] = []
                if isinstance(n, ast.Dict) and n.keys and all(n.keys):
                    pairs = list(zip(n.keys, n.values, strict=True))  # type: ignore[arg-type]
                else:
                    pairs = stored_items(n)
                for key, value in pairs:
                    found = _key_label(key)
                    if found is None or not any(_matches(found, n) for n in nodes):
                        continue
                    label = found
                    if label is None or not any(_matches(label, n) for n in nodes):
                        continue
                    var = _base_name(value)
                    if var is None:
                        raise ValueError(
                            f"{plan.model.name}: the adjoint of {label} is returned as "
                            f"{ast.unparse(value)}, which names no variable"
                        )
                    via = None if isinstance(value, ast.Name) else ast.unparse(value)
                    roles.setdefault(var, (label, via))
        for f in backward:
            for stmt in _statements(f.node):
                targets = _assigned(stmt)
                hit = [t for t in targets if t in roles]
                if not hit:
                    continue
                if not (isinstance(stmt, ast.Assign) and targets == hit and len(hit) == 1):
                    raise ValueError(
                        f"{plan.model.name}: cannot blank `{ast.unparse(stmt)}` (it assigns the "
                        f"adjoint variables {hit} among others)"
                    )
                label, via = roles[hit[0]]
                what = (
                    f"∂L/∂{label}"
                    if via is None
                    else f"{hit[0]} (the adjoint of {label} is returned as {via})"
                )
                blanks.append(_blank(source, f, stmt, label, hit[0], what))
    for before, b in itertools.pairwise(blanks):
        # "dE_dZ1 = dE_df1 @ df1_dZ1  # … (∂f1/∂Z1)": a step that continues the one before it.
        if not b.cites and before.function == b.function:
            b.cites = before.cites
    uncovered = [n for n in nodes if not any(_matches(b.label, n) for b in blanks)]
    if uncovered:
        raise ValueError(f"{plan.model.name}: no statement computes the adjoint of {uncovered}")
    return blanks


def _statements(fn: ast.FunctionDef) -> list[ast.stmt]:
    """The statements in ``fn``'s own body (loops and branches included, nested functions not)."""
    out: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(child, ast.stmt):
                out.append(child)
            visit(child)

    visit(fn)
    return out


def _assigned(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        targets = [stmt.target]
    else:
        return []
    return [
        n.id
        for t in targets
        if not isinstance(t, ast.Subscript)
        for n in ast.walk(t)
        if isinstance(n, ast.Name)
    ]


def _blank(
    source: _Source, f: _Function, stmt: ast.stmt, label, target, what, whole: bool = False
) -> _Blank:
    """A blank, with the comment lines that belong to it: the block right above it, or (for the
    return of a helper that computes one neuron's adjoint, ``whole``) every comment line of the
    function."""
    if whole:
        above = [i for i in range(f.node.lineno, stmt.lineno) if source.is_comment_line(i)]
    else:
        above = []
        line = stmt.lineno - 1
        while line > f.node.lineno and source.is_comment_line(line):
            above.append(line)
            line -= 1
        above.reverse()
    texts = [source.comments[i][1] for i in above]
    texts += [
        source.comments[i][1]
        for i in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
        if i in source.comments
    ]
    return _Blank(f.fn.__qualname__, stmt, label, target, what, _citations(texts), above)


def _templates(plan: _Plan) -> None:
    """Each blank's shape argument, found by running the built-in backward pass with every blank's
    value recorded: ``saved[<node>]`` where it has the blank's shape, else the first local array
    that has it at every run of the statement, else the shape itself."""
    source = plan.source
    mutated = copy.deepcopy(source.tree)
    where: dict[tuple[type, int, int], int] = {
        (type(b.stmt), b.stmt.lineno, b.stmt.col_offset): i for i, b in enumerate(plan.blanks)
    }
    for node in ast.walk(mutated):
        i = where.get((type(node), getattr(node, "lineno", 0), getattr(node, "col_offset", 0)))
        if i is not None:
            node.value = ast.Call(  # type: ignore[attr-defined]
                ast.Name("__exercise_record__", ast.Load()),
                [ast.Constant(i), node.value, ast.Call(ast.Name("locals", ast.Load()), [], [])],  # type: ignore[attr-defined]
                [],
            )
    ast.fix_missing_locations(mutated)
    module = source.module
    fresh = types.ModuleType(module.__name__, module.__doc__)
    fresh.__file__ = module.__file__
    fresh.__package__ = module.__package__
    runs: dict[int, list[tuple[tuple[int, ...], dict[str, tuple[int, ...]]]]] = {
        i: [] for i in range(len(plan.blanks))
    }

    def record(i: int, value: Any, scope: dict[str, Any]) -> Any:
        b = plan.blanks[i]
        candidates = []
        if isinstance(scope.get("saved"), Mapping) and "{" not in b.label:
            candidates.append(f"saved[{b.label!r}]".replace("'", '"'))
        candidates += [k for k in scope if k != b.target and not k.startswith("_")]
        shapes = {}
        for expr in candidates:
            try:
                v = eval(expr, fresh.__dict__, scope)
            except Exception:
                continue
            if hasattr(v, "shape") and hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.inexact):
                shapes[expr] = tuple(v.shape)
        runs[i].append((tuple(jnp.shape(value)), shapes))
        values[i].append(value)
        return value

    values: dict[int, list[Any]] = {i: [] for i in range(len(plan.blanks))}
    fresh.__dict__["__exercise_record__"] = record
    exec(compile(mutated, module.__file__ or module.__name__, "exec"), fresh.__dict__)
    from jaxprop.registry import FACTORIES

    if plan.config:
        rebuilt = getattr(fresh, FACTORIES[plan.name].__name__)(**plan.config)
    else:
        rebuilt = next(m for m in fresh.models() if m.name == plan.model.name)

    def run(params, x, Y):
        # Which node's final adjoint each recorded value is (the very same array object): the
        # values computed outside jax.vmap, where a statement computes a whole adjoint.
        _, adjoints = rebuilt.backward_from(params, x, Y)
        return {
            i: [next((n for n, a in adjoints.items() if a is v), None) for v in vs]
            for i, vs in values.items()
        }

    node_of = _traced(rebuilt, run)
    for i, b in enumerate(plan.blanks):
        calls = runs[i]
        # The nodes whose adjoint this statement computes, one per run (where it is computed
        # outside jax.vmap, as the whole adjoint): "∂L/∂Z3, ∂L/∂Z2, ∂L/∂Z1" for a loop.
        nodes = node_of[i]
        if b.target is not None and nodes and None not in nodes and b.what.startswith("∂L/∂"):
            b.what = ", ".join(f"∂L/∂{n}" for n in dict.fromkeys(nodes))
        if not calls:
            raise ValueError(f"{plan.model.name}: `{ast.unparse(b.stmt)}` never runs")
        shapes = {shape for shape, _ in calls}
        if shapes == {()}:
            b.template = ""
            continue
        common = [e for e in calls[0][1] if all(c[1].get(e) == c[0] for c in calls)]
        if common:
            b.template = f", like={common[0]}"
        elif len(shapes) == 1:
            b.template = f", shape={shapes.pop()}"
        else:
            raise ValueError(
                f"{plan.model.name}: `{ast.unparse(b.stmt)}` takes the shapes {sorted(shapes)} "
                "and no array in scope has them"
            )

"""Exercises: a built-in model's backward pass to fill in, and the grading of a submission.

:func:`exercise_source` (``jaxprop exercise NAME``) writes a Python file for one built-in
:class:`~jaxprop.Model`, generated from the model's own source: its forward pass as it is, and its
backward pass with the right-hand side of every statement that computes a node's adjoint replaced
by a ``TODO(...)``, each under a comment citing the document's equation. The lines that compute a
parameter gradient from the adjoints are kept; the backward pass's comments are reduced to their
equation references (the originals spell out the very formulas to be found), and its docstrings
are dropped. ``TODO(node, like=...)`` returns zeros of the node's shape, so a file that is only
partly filled in still runs and is graded node by node.

:func:`grade` (``jaxprop grade FILE``) grades a submission: it rebuilds the built-in model named
by the file's ``MODEL`` (and ``CONFIG``) with the submission's ``backward`` swapped in (the
forward pass is the built-in one, never the exercise's copy, which takes ``taps``), runs
:func:`jaxprop.check_nodes` and its diagnosis at a fixed point (float64, seed 0, batch 7), and
gives each node a verdict: ``ok``, ``not filled in``, the diagnosis of the first failing node, or
``inherits the error of ...`` for the nodes after it. The score is the number of nodes right.

A submission written from scratch, whose file defines a plain ``forward(params, x) -> (out,
saved)`` (no ``taps`` parameter) beside its ``backward``, is graded with its own forward pass:
that must compute the built-in model's output (to 1e-12 relative, float64; otherwise the grade
says so and scores 0), its nodes are found in its traced program (:mod:`jaxprop.program`: a
Model without ``nodes``), and every node of the built-in model is graded at the value saved under
its name (0 for a node whose adjoint is missing, or whose saved value is not the built-in one).

A file that does not parse or import, a backward pass that raises, returns the wrong structure,
hangs or crashes the interpreter is graded too (score 0 for what could not be checked), with a
one-line reason: by default the grading runs in a subprocess with a time limit. The parameter
gradients are checked against ``jax.grad`` as information; they do not count.

>>> from jaxprop.exercise import exercise_source
>>> text = exercise_source("tanh-softmax")
>>> 'MODEL = "tanh-softmax"' in text, text.count("= TODO(")
(True, 3)
>>> 'dz2 = TODO("z2", like=saved["z2"])' in text
True
"""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import dis
import io
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import tokenize
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "BATCH",
    "DEFAULT_TIMEOUT",
    "FORWARD_RTOL",
    "SEED",
    "TODO",
    "GradeReport",
    "NodeGrade",
    "exercise_models",
    "exercise_source",
    "grade",
    "grade_in_process",
    "write_exercise",
]

#: The graded point: seed of parameters and data, and the batch size (7: a prime, so that a
#: factor 1/B missing is told apart from a factor 2, and no node is square).
SEED, BATCH = 0, 7
#: The default time limit of a grading, in seconds.
DEFAULT_TIMEOUT = 60.0
#: How closely the forward pass of a submission written from scratch must compute the built-in
#: model's output (and each node's value), relative, in float64.
FORWARD_RTOL = 1e-12
SCHEMA = "jaxprop.grade/1"

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


def TODO(node: str, like: Any = None, *, shape: Sequence[int] | None = None) -> jax.Array:
    """The placeholder of an exercise's blank: zeros shaped like ``like`` (or of ``shape``, or a
    scalar), so that a partly filled-in backward pass still runs and the grader reports the blank's
    node as not filled in.

    Args:
      node: the node (or the pattern of nodes, ``"Z{i}"``) whose adjoint the blank computes.
      like: an array of the blank's shape.
      shape: the blank's shape, where no array in scope has it.

    >>> TODO("z2", like=jnp.ones((2, 3))).shape
    (2, 3)
    """
    del node  # read by the grader from the file's text
    if like is not None:
        return jnp.zeros_like(like)
    return jnp.zeros(() if shape is None else tuple(shape))


def exercise_models() -> list[str]:
    """The names of the registered :class:`~jaxprop.Model` entries: those with an exercise."""
    from jaxprop.model import Model
    from jaxprop.models import REGISTRY

    return [name for name, entry in REGISTRY.items() if isinstance(entry, Model)]


def _get_model(name: Any, config: Mapping[str, Any]):
    from jaxprop._names import did_you_mean
    from jaxprop.model import Model
    from jaxprop.models import REGISTRY, get_model

    if isinstance(name, str) and name in REGISTRY and not isinstance(REGISTRY[name], Model):
        raise ValueError(
            f"{name!r} is a worked example ({type(REGISTRY[name]).__name__}), not a Model with a "
            f"backward pass; exercises exist for {exercise_models()}"
        )
    if not isinstance(name, str) or name not in REGISTRY:
        models = exercise_models()
        raise ValueError(
            f"unknown model {name!r}{did_you_mean(name, models)}; exercises exist for {models}"
        )
    return get_model(name, **config)


def _point(model):
    """The graded point, float64: ``(params, x, Y)`` (memoised: drawing it compiles JAX's random
    number generators for each shape, the most of a grading's time)."""
    from jaxprop.core import memoised

    return memoised(_draw_point, model)


def _draw_point(model):
    from jaxprop.core import cast, precision
    from jaxprop.model import random_point

    with precision("float64"):
        point = random_point(model, jax.random.key(SEED), BATCH)
        return cast(point, jnp.float64)


# ---------------------------------------------------------------------------------------------
# Reading a model's source.


@dataclasses.dataclass
class _Source:
    """A module's source: its AST, its lines, its comments and its functions by first line."""

    module: types.ModuleType
    tree: ast.Module
    lines: list[str]
    comments: dict[int, tuple[int, str]]  # line -> (column, text without "#")
    defs: dict[int, ast.FunctionDef]

    @classmethod
    def of(cls, module: types.ModuleType) -> _Source:
        import inspect

        text = inspect.getsource(module)
        tree = ast.parse(text)
        comments = {
            tok.start[0]: (tok.start[1], tok.string[1:].strip())
            for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type == tokenize.COMMENT
        }
        defs = {
            min([d.lineno for d in node.decorator_list] + [node.lineno]): node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
        }
        return cls(module, tree, text.splitlines(), comments, defs)

    def is_comment_line(self, line: int) -> bool:
        return line in self.comments and not self.lines[line - 1][: self.comments[line][0]].strip()


def _called(fn: Callable[[], Any], module: types.ModuleType) -> set[int]:
    """The first lines of the functions of ``module`` that ``fn()`` calls."""
    lines: set[int] = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == module.__file__:
            lines.add(frame.f_code.co_firstlineno)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return lines


def _references(fn: types.FunctionType) -> dict[str, Any]:
    """The names ``fn`` (and the lambdas and comprehensions inside it) reads from its closure and
    its globals, with their values; builtins are left out."""
    names: list[str] = []

    def walk(code: types.CodeType) -> None:
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and ins.argval not in names:
                names.append(ins.argval)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)

    walk(fn.__code__)
    refs: dict[str, Any] = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        refs[name] = cell.cell_contents
    for name in names:
        if name in fn.__globals__:
            refs[name] = fn.__globals__[name]
        elif not hasattr(builtins, name):
            raise ValueError(f"{fn.__qualname__} reads {name!r}, which is not defined")
    return refs


def _key_label(key: ast.expr) -> str | None:
    """A dict key or subscript naming a node: ``"z1"``, or ``f"Z{i}"`` as the label ``Z{i}``."""
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return key.value
    if isinstance(key, ast.JoinedStr):
        return "".join(
            "{" + ast.unparse(v.value) + "}" if isinstance(v, ast.FormattedValue) else
            str(v.value) if isinstance(v, ast.Constant) else ""
            for v in key.values
        )  # fmt: skip
    return None


def _label_pattern(label: str) -> str:
    """A label as a regular expression over node names: ``Z{i}`` matches Z1, Z2, ..."""
    return "".join(
        ".+?" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{[^}]*\})", label)
        if part
    )


def _matches(label: str, node: str) -> bool:
    return re.fullmatch(_label_pattern(label), node) is not None


def _base_name(value: ast.expr) -> str | None:
    """The variable a returned adjoint is read from: ``dz1``, ``dE_dZ1[0]``, ``-dL_de[0]``."""
    while isinstance(value, (ast.UnaryOp, ast.Subscript)):
        value = value.operand if isinstance(value, ast.UnaryOp) else value.value
    return value.id if isinstance(value, ast.Name) else None


# One equation reference in a comment of the built-in models: eq (7), eqs (8), (14), (5.113),
# (5.115)–(5.118), (5.114) with (5.81), 003 [8] lines 1–2, [9] and [11], path (1), paths (1) and
# (3), 000, dc.
_CITATION = re.compile(
    r"eqs? \(\d+\)(?:(?:, | and |–|-)\(\d+\))*"
    r"|\(\d+\.\d+(?: over N)?\)(?:\s*(?:–|-|, | with )\s*\(\d+\.\d+\))*"
    r"|(?:\d{3} )?\[\d+\](?: lines? \d+(?:–\d+)?)?(?:(?:, | and )\[\d+\](?! lines))*"
    r"|paths? \(\d\)(?:(?:,| and) \(\d\))*"
    r"|\b000, d[A-Za-z]+\b"
)


def _citations(texts: Sequence[str]) -> list[str]:
    """The equation references in comments, in order, each once (nothing else of them)."""
    found: list[str] = []
    for cite in _CITATION.findall(" ".join(texts)):
        if cite not in found and not any(cite in other for other in found):
            found.append(cite)
    return found


# ---------------------------------------------------------------------------------------------
# The plan of an exercise: which functions, which blanks, which names to bind.


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
    from jaxprop.activations import ACTIVATIONS, Activation
    from jaxprop.losses import LOSSES, Loss

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
    from jaxprop.core import cast, precision
    from jaxprop.model import random_point

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
                elif isinstance(n, ast.Assign) and len(n.targets) == 1:
                    t, v = n.targets[0], n.value
                    if isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple):
                        pairs = [
                            (ti.slice, vi)
                            for ti, vi in zip(t.elts, v.elts, strict=True)
                            if isinstance(ti, ast.Subscript)
                        ]
                    elif isinstance(t, ast.Subscript):
                        pairs = [(t.slice, v)]
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
    from jaxprop.models import FACTORIES

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


# ---------------------------------------------------------------------------------------------
# Writing the exercise file.


def _dedent(lines: list[str], indent: int) -> list[str]:
    return [s[indent:] if not s[:indent].strip() else s.lstrip() for s in lines]


def _rename(text: str, renames: Mapping[str, str]) -> str:
    """``text`` with every name in ``renames`` (not an attribute) replaced."""
    if not renames:
        return text
    lines = text.split("\n")
    edits: list[tuple[int, int, int, str]] = []
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and tok.string in renames and previous != ".":
            edits.append((tok.start[0], tok.start[1], tok.end[1], renames[tok.string]))
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT):
            previous = tok.string
    for row, start, end, new in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + new + line[end:]
    return "\n".join(lines)


def _cite(plan: _Plan, cites: Sequence[str]) -> str:
    doc = plan.model.source[:3]
    if not cites:
        return f"see {plan.model.source}"
    text = ", ".join(cites)
    return text if not doc.isdigit() or text.startswith(doc) else f"{doc} {text}"


def _comment(text: str, indent: str, width: int = 99) -> list[str]:
    """A comment, wrapped at ``width`` columns."""
    import textwrap

    return textwrap.wrap(
        text, width, initial_indent=indent + "# ", subsequent_indent=indent + "# ",
        break_on_hyphens=False,
    )  # fmt: skip


def _without_comments(source: _Source, first: int, last: int) -> list[str]:
    out = []
    for line in range(first, last + 1):
        text = source.lines[line - 1]
        if line in source.comments:
            if source.is_comment_line(line):
                continue
            text = text[: source.comments[line][0]].rstrip()
        out.append(text)
    return out


def _function_text(plan: _Plan, f: _Function, solution: bool) -> str:
    """One function of the exercise: its source, dedented; in the backward pass, the blanks
    replaced, the comments reduced to their equation references and the docstring dropped."""
    source, node = plan.source, f.node
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    end = node.end_lineno or node.lineno
    backward = f.role == "backward"
    blanks = {b.stmt.lineno: b for b in plan.blanks if b.function == f.fn.__qualname__}
    skip = {line for b in blanks.values() for line in b.comment_lines}
    if backward:  # `grads: list[...]`, a declaration for the type checker alone
        for stmt in _statements(node):
            if isinstance(stmt, ast.AnnAssign) and stmt.value is None:
                skip.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    body0 = node.body[0]
    if (
        backward
        and isinstance(body0, ast.Expr)
        and isinstance(body0.value, ast.Constant)
        and isinstance(body0.value.value, str)
    ):
        skip.update(range(body0.lineno, (body0.end_lineno or body0.lineno) + 1))
    out: list[str] = []
    line = start
    while line <= end:
        if line in skip:
            line += 1
            continue
        if line in blanks:
            b = blanks[line]
            ind = " " * b.stmt.col_offset
            last = b.stmt.end_lineno or b.stmt.lineno
            said = f"{'' if solution else 'TODO '}{b.what}: {_cite(plan, b.cites)}"
            out += _comment(said, ind, width=99 - node.col_offset)
            if solution:
                out += _without_comments(source, b.stmt.lineno, last)
            else:
                lhs = "return " if b.target is None else f"{b.target} = "
                out.append(f'{ind}{lhs}TODO("{b.label}"{b.template})')
            line = last + 1
            continue
        text = source.lines[line - 1]
        if backward and line in source.comments:
            col = source.comments[line][0]
            if source.is_comment_line(line):
                block = [line]
                while (
                    block[-1] + 1 <= end
                    and source.is_comment_line(block[-1] + 1)
                    and block[-1] + 1 not in skip
                ):
                    block.append(block[-1] + 1)
                cites = _citations([source.comments[i][1] for i in block])
                if cites:
                    out.append(f"{text[:col]}# {', '.join(cites)}")
                line = block[-1] + 1
                continue
            cites = _citations([source.comments[line][1]])
            text = text[:col].rstrip() + (f"  # {', '.join(cites)}" if cites else "")
        out.append(text)
        line += 1
    return _rename("\n".join(_dedent(out, node.col_offset)), f.renames)


_HEADER = '''"""Exercise: the hand-derived backward pass of {title}.

Source: {source}.
Loss: {loss}, the MEAN over the batch (so every adjoint carries the factor 1/B).
Nodes in forward order, with their shapes at the graded point (batch B = {batch}):
{nodes}

{task}

Grade it with `jaxprop grade {{this file}}` (or run it: `python {{this file}}`). The grader runs
jaxprop's own forward pass of {name} (the copy below is for reading: changing it changes
nothing), at a fixed point (float64, seed {seed}, batch {batch}), and compares each node's adjoint
with the true one from jax.grad, in backward order. Score: the number of nodes right.
"""'''

_TASK = """Fill in every TODO(...) in the backward pass below: each is the adjoint ∂L/∂v of a
node v, the TOTAL derivative of the loss with respect to v's value as everything downstream uses
it (the same shape as v). Replace the whole TODO(...) call by your expression; the comment above
it cites the document's equation. The lines computing the parameter gradients from the adjoints
are given. TODO(...) returns zeros, so a file partly filled in runs and is graded node by node."""

_SOLUTION = """This is the SOLUTION (the built-in backward pass): every TODO filled in."""


def exercise_source(name: str, *, solution: bool = False, **config: Any) -> str:
    """The exercise file of a built-in model, as text.

    Args:
      name: a registered :class:`~jaxprop.Model` (:func:`exercise_models`).
      solution: the answer key instead: every blank filled in with the built-in statement.
      **config: the model's configuration, as for :func:`jaxprop.get_model` (``activations=``
        for ``"k-layer"``); recorded in the file's ``CONFIG``.

    Returns:
      The Python source: the model's forward pass and its backward pass with one ``TODO`` per
      statement that computes a node's adjoint; ``MODEL`` and ``CONFIG`` say what it is for.

    Raises:
      ValueError: for an unknown name, a registry entry that is not a Model (an Example; the
        message lists the Models), or a configuration the model does not take.
    """
    plan = _plan(name, config)
    model = plan.model
    nodes, shapes = plan.nodes, plan.saved_shapes
    width = max(map(len, nodes))
    header = _HEADER.format(
        title=model.name,
        name=model.name,
        source=model.source,
        loss=model.objective.name,
        batch=BATCH,
        seed=SEED,
        nodes="\n".join(f"  {n.ljust(width)}  {shapes[n]}" for n in nodes),
        task=_SOLUTION if solution else _TASK,
    )
    imports = dict(plan.imports)
    imports["import jaxprop"] = "jaxprop"
    if not solution:
        imports["from jaxprop.exercise import TODO"] = "jaxprop.exercise"

    parts = [header, "from __future__ import annotations", _imports(imports)]
    parts.append(f"MODEL = {json.dumps(plan.name)}\nCONFIG = {_literal(plan.config)}")
    if plan.bindings:
        parts.append(
            "# The values the model's definition binds, read by the functions below.\n"
            + "\n".join(f"{k} = {v}" for k, v in plan.bindings.items())
        )
    texts = {role: [] for role in ("helper", "forward", "backward")}  # type: dict[str, list[str]]
    for f in plan.functions:
        texts[f.role].append(_function_text(plan, f, solution))
    banners = {
        "helper": "# ---- Helpers (given) ",
        "forward": "# ---- The forward pass (for reading: the grader runs jaxprop's own) ",
        "backward": "# ---- The backward pass" + ("" if solution else ": fill in every TODO") + " ",
    }
    for role, functions in texts.items():
        if functions:
            banner = banners[role].ljust(99, "-")
            parts.append(banner + "\n\n\n" + "\n\n\n".join(functions))
    parts.append(
        'if __name__ == "__main__":  # `python this_file.py` grades it\n'
        "    import jaxprop.cli\n\n"
        '    raise SystemExit(jaxprop.cli.main(["grade", __file__]))'
    )
    return (
        "\n\n".join(p.strip("\n") for p in parts[:3])
        + "\n\n\n"
        + "\n\n\n".join(p.strip("\n") for p in parts[3:])
        + "\n"
    )


def _imports(imports: Mapping[str, str]) -> str:
    """The import statements, in isort's groups (standard library, third party, jaxprop), the
    ``from`` imports of one module merged."""
    groups: dict[int, dict[str, list[str]]] = {}
    for statement, module in imports.items():
        top = module.split(".")[0]
        group = 0 if top in sys.stdlib_module_names else 2 if top == "jaxprop" else 1
        if statement.startswith("from "):
            head, names = statement.split(" import ")
            groups.setdefault(group, {}).setdefault(head, []).append(names)
        else:
            groups.setdefault(group, {})[statement] = []
    blocks = []
    for _, statements in sorted(groups.items()):
        lines = sorted(
            (f"{head} import {', '.join(sorted(names))}" if names else head)
            for head, names in statements.items()
        )
        blocks.append("\n".join(sorted(lines, key=lambda s: (s.startswith("from "), s))))
    return "\n\n".join(blocks)


def write_exercise(
    name: str,
    path: str | os.PathLike,
    *,
    solution: bool = False,
    force: bool = False,
    **config: Any,
) -> str:
    """Writes the exercise file of a built-in model (:func:`exercise_source`) to ``path``.

    Raises:
      FileExistsError: if ``path`` exists and ``force`` is false.
      FileNotFoundError: if the directory of ``path`` does not exist.
      IsADirectoryError: if ``path`` is a directory.
      ValueError: as :func:`exercise_source`.
    """
    from jaxprop._io import atomic_write_bytes

    path = os.fspath(path)
    _check_out(path, force)
    text = exercise_source(name, solution=solution, **config)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def _check_out(path: str, force: bool) -> None:
    directory = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give the exercise file's path")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"the directory {directory} does not exist")
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} exists; pass --force (force=True) to overwrite it")


# ---------------------------------------------------------------------------------------------
# Grading.


@dataclasses.dataclass(frozen=True)
class NodeGrade:
    """The verdict on one node of a submission.

    Attributes:
      name: the node.
      ok: whether the submission's adjoint of it agrees with the true one.
      feedback: one line: ``ok``, ``not filled in``, the diagnosis of the first failing node,
        ``inherits the error of <node>`` for the failing nodes after it, or why it was not
        checked.
      kind: ``None`` when ok; the diagnosis's kind (one of :data:`jaxprop.diagnosis.KINDS`) for
        the first failing node; ``"not-filled-in"``, ``"inherits"`` or ``"not-checked"``
        otherwise.
      rel_err: max |hand − true| over max |true| (``None`` where not compared).
    """

    name: str
    ok: bool
    feedback: str
    kind: str | None = None
    rel_err: float | None = None

    def to_dict(self) -> dict:
        from jaxprop.core import json_float

        return {
            "name": self.name,
            "ok": self.ok,
            "feedback": self.feedback,
            "kind": self.kind,
            "rel_err": None if self.rel_err is None else json_float(self.rel_err),
        }


@dataclasses.dataclass(frozen=True)
class GradeReport:
    """The grade of one submission (:func:`grade`); ``to_dict()`` is the JSON of
    ``jaxprop grade --json``, a stable schema (``"schema": "jaxprop.grade/1"``).

    Attributes:
      file: the submission's path.
      model: the model it is graded as (``None`` when the file does not say).
      config: the model's configuration.
      score: the number of nodes right.
      max_score: the number of nodes.
      nodes: one :class:`NodeGrade` per node, in backward order.
      status: ``"graded"`` (the node check ran), ``"error"`` (the file does not parse or
        import, ``backward`` is missing, raises or returns the wrong structure, a forward pass of
        the submission's own raises, returns the wrong structure or computes another output
        than the built-in one, or the grading process died) or ``"timeout"``.
      error: what went wrong, one line (``None`` when graded).
      first_failing: the first failing node in backward order.
      diagnosis: the diagnosis of the first failing node, ``Diagnosis.to_dict()``.
      grads: the parameter-gradient check against ``jax.grad`` (information, not scored):
        ``{"ok", "failing", "error"}``.
      unfilled: the TODO labels still in the file.
      notes: remarks that do not change the score (adjoints of names that are not nodes).
    """

    file: str
    model: str | None
    config: Mapping[str, Any]
    score: int
    max_score: int
    nodes: tuple[NodeGrade, ...]
    status: str = "graded"
    error: str | None = None
    first_failing: str | None = None
    diagnosis: Mapping[str, Any] | None = None
    grads: Mapping[str, Any] | None = None
    unfilled: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Full marks."""
        return self.status == "graded" and self.max_score > 0 and self.score == self.max_score

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict:
        """JSON-ready; the keys of the schema, in this order."""
        return {
            "schema": SCHEMA,
            "file": self.file,
            "model": self.model,
            "config": dict(self.config),
            "score": self.score,
            "max_score": self.max_score,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "first_failing": self.first_failing,
            "nodes": [n.to_dict() for n in self.nodes],
            "diagnosis": None if self.diagnosis is None else dict(self.diagnosis),
            "grads": None if self.grads is None else dict(self.grads),
            "unfilled": list(self.unfilled),
            "notes": list(self.notes),
            "point": {"dtype": "float64", "seed": SEED, "batch": BATCH},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GradeReport:
        """The report back from :meth:`to_dict`."""
        nodes = tuple(
            NodeGrade(n["name"], n["ok"], n["feedback"], n["kind"], _float(n["rel_err"]))
            for n in d["nodes"]
        )
        return cls(
            file=d["file"], model=d["model"], config=d["config"], score=d["score"],
            max_score=d["max_score"], nodes=nodes, status=d["status"], error=d["error"],
            first_failing=d["first_failing"], diagnosis=d["diagnosis"], grads=d["grads"],
            unfilled=tuple(d["unfilled"]), notes=tuple(d.get("notes", ())),
        )  # fmt: skip

    def __str__(self) -> str:
        from jaxprop.core import format_rows

        what = self.model if self.model else "unknown model"
        lines = [
            f"{os.path.basename(self.file)}: exercise {what}  [float64, seed {SEED}, batch "
            f"{BATCH}]  nodes in backward order"
        ]
        if self.nodes:
            rows = [("node", "verdict", "feedback")]
            rows += [(n.name, "ok" if n.ok else "FAIL", n.feedback) for n in self.nodes]
            lines.append(format_rows(rows))
        if self.error:
            lines.append(f"error: {self.error}")
        lines += [f"note: {note}" for note in self.notes]
        if self.grads is not None:
            if self.grads.get("error"):
                lines.append(f"parameter gradients (not scored): {self.grads['error']}")
            elif self.grads["ok"]:
                lines.append("parameter gradients (not scored): all agree with jax.grad")
            else:
                wrong = ", ".join(self.grads["failing"])
                lines.append(f"parameter gradients (not scored): wrong at {wrong}")
        lines.append(f"score: {self.score}/{self.max_score}")
        return "\n".join(lines)


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _exception(exc: BaseException, path: str) -> str:
    """An exception in one line, with the submission's line where it was raised."""
    if isinstance(exc, SyntaxError) and exc.filename in (path, None):
        text = (exc.text or "").strip()
        return f"SyntaxError: {exc.msg} (line {exc.lineno}" + (f": {text})" if text else ")")
    message = str(exc).strip().splitlines()
    said = f"{type(exc).__name__}" + (f": {message[0]}" if message else "")
    if len(said) > 300:
        said = said[:297] + "..."
    mine = [
        fr
        for fr in traceback.extract_tb(exc.__traceback__)
        if os.path.abspath(fr.filename) == os.path.abspath(path)
    ]
    if mine:
        fr = mine[-1]
        said += f" (line {fr.lineno}" + (f": {fr.line.strip()})" if fr.line else ")")
    return said


def _read_model(tree: ast.Module) -> tuple[Any, Any]:
    """The file's MODEL and CONFIG assignments, read without running it (``None`` if absent)."""
    found: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name) and target.id in ("MODEL", "CONFIG"):
                try:
                    found[target.id] = ast.literal_eval(stmt.value)
                except ValueError:
                    found[target.id] = stmt.value
    return found.get("MODEL"), found.get("CONFIG", {})


def _unfilled(tree: ast.Module) -> tuple[str, ...]:
    """The labels of the ``TODO(...)`` calls left in the file."""
    labels = []
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and (
                (isinstance(n.func, ast.Name) and n.func.id == "TODO")
                or (isinstance(n.func, ast.Attribute) and n.func.attr == "TODO")
            )
            and n.args
            and isinstance(n.args[0], ast.Constant)
            and isinstance(n.args[0].value, str)
            and n.args[0].value not in labels
        ):
            labels.append(n.args[0].value)
    return tuple(labels)


@dataclasses.dataclass
class _Setup:
    """What a grading knows before it runs the submission."""

    path: str
    model_name: str | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: Any = None
    nodes: tuple[str, ...] = ()
    tree: ast.Module | None = None
    error: str | None = None

    def report(self, status: str, error: str, why: str, unfilled=()) -> GradeReport:
        """A report of a submission that could not be checked: every node scores 0."""
        grades = tuple(
            NodeGrade(n, False, "not filled in", "not-filled-in")
            if any(_matches(u, n) for u in unfilled)
            else NodeGrade(n, False, f"not checked: {why}", "not-checked")
            for n in reversed(self.nodes)
        )
        return GradeReport(
            self.path, self.model_name, self.config, 0, len(self.nodes), grades, status, error,
            unfilled=tuple(unfilled),
        )  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    """Whether two configurations are the same, tuples and lists alike (JSON turns one into the
    other)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except TypeError:
        return a == b


def _short(error: str) -> str:
    """The reason of an error, for each node's feedback: ``the file does not parse``."""
    return error.split(":")[0]


def _setup(path: str, model: str | None, pinned_config: Mapping[str, Any] | None = None) -> _Setup:
    """Reads the file's MODEL and CONFIG (without running it) and builds the model."""
    setup = _Setup(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        setup.error = f"cannot read the file: {e}"
        return setup
    try:
        setup.tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        setup.error = f"the file does not parse: {_exception(e, path)}"
        match = re.search(r"""^MODEL\s*=\s*["']([^"']+)["']""", text, re.M)
        name, config = (match.group(1) if match else None), {}  # type: tuple[Any, Any]
    else:
        name, config = _read_model(setup.tree)
    if model is not None:
        expected = dict(pinned_config or {})
        if name is not None and name != model:
            setup.error = f"the file is the exercise for {name!r}, not for {model!r}"
        elif isinstance(config, dict) and not _same(config, expected):
            setup.error = (
                f"the file's CONFIG = {config!r} is not the assignment's configuration {expected!r}"
            )
        name, config = model, expected
    if name is None:
        setup.error = setup.error or (
            'the file does not say which model it is for: MODEL = "..." is missing (write the '
            f"name of one of {exercise_models()})"
        )
        return setup
    if not isinstance(name, str) or not isinstance(config, dict):
        setup.error = setup.error or "MODEL must be a string and CONFIG a dict, as written"
        return setup
    setup.model_name, setup.config = name, dict(config)
    try:
        setup.model = _get_model(name, config)
        setup.nodes = tuple(_traced(setup.model, lambda p, x, Y: setup.model.node_names(p)))
    except ValueError as e:
        setup.model = None
        setup.error = setup.error or f"MODEL = {name!r}: {e}"
    return setup


def _load(path: str) -> types.ModuleType:
    """Runs the file as a fresh module (not registered in ``sys.modules`` afterwards)."""
    name = f"_jaxprop_submission_{abs(hash(os.path.abspath(path)))}"
    module = types.ModuleType(name)
    module.__file__ = path
    with open(path, encoding="utf-8") as fh:
        code = compile(fh.read(), path, "exec")
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    finally:
        sys.modules.pop(name, None)
    return module


def _describe(value: Any) -> str:
    from jaxprop.model import _describe as describe

    return describe(value)


def grade_in_process(
    path: str | os.PathLike,
    *,
    model: str | None = None,
    config: Mapping[str, Any] | None = None,
    jit: bool = False,
) -> GradeReport:
    """:func:`grade` in this process, without a time limit (a submission that hangs hangs it).

    For tests and trusted files; :func:`grade` runs this in a subprocess.

    Args:
      path: the submission.
      model: as for :func:`grade`.
      config: as for :func:`grade`.
      jit: compute the true adjoints under ``jax.jit``: one compilation per grading, the faster
        choice for one grading per process (the subprocess of :func:`grade`); eagerly (the
        default), JAX caches each operation by shape, the faster choice for many submissions
        of one model in one process. The submission's own backward pass always runs eagerly.
    """
    from jaxprop.core import precision
    from jaxprop.model import _takes_taps

    path = os.fspath(path)
    setup = _setup(path, model, config)
    unfilled = _unfilled(setup.tree) if setup.tree is not None else ()
    if setup.error is not None:
        return setup.report("error", setup.error, _short(setup.error), unfilled)
    try:
        module = _load(path)
    except BaseException as e:  # a submission's SystemExit or KeyboardInterrupt is graded too
        error = f"the file does not import: {_exception(e, path)}"
        return setup.report("error", error, "the file does not import", unfilled)
    backward = getattr(module, "backward", None)
    if not callable(backward):
        error = "the file defines no function backward(params, x, saved, Y)"
        return setup.report("error", error, "no backward", unfilled)
    forward = getattr(module, "forward", None)
    if callable(forward) and not _takes_taps(forward):
        # A forward pass of its own, written without taps (from scratch): graded as it is.
        return _grade_plain(setup, forward, backward, path, unfilled, jit)
    params, x, Y = _point(setup.model)
    with precision("float64"):
        _, saved = setup.model.run_forward(params, x)
        result = _run_backward(setup, backward, (params, x, saved, Y), path, unfilled)
    if isinstance(result, GradeReport):
        return result
    # The check compares the hand adjoints the submission just returned at this very point (its
    # backward pass runs once, eagerly, so that any exception above is its own and no JAX
    # tracing rules apply to it); the true ones come from jax.grad of the built-in model.
    answered = dataclasses.replace(setup.model, backward=lambda params, x, saved, Y: result)
    report = _check(setup, answered, (params, x, Y), jit, path, unfilled)
    if isinstance(report, GradeReport):
        return report
    grads = _grads_check(setup.model, (params, x, Y), result[0], path)
    first, diagnosis = report.first_failing, report.diagnosis
    first_unfilled = first is not None and any(_matches(u, first) for u in unfilled)
    grades = [_verdict(n, first, diagnosis, unfilled, first_unfilled) for n in report.nodes]
    notes: tuple[str, ...] = ()
    if report.extra:
        notes = (f"the adjoints name nodes the model does not have: {', '.join(report.extra)}",)
    return _graded(setup, grades, report, first_unfilled, grads, unfilled, notes)


def _grade_plain(setup: _Setup, forward, backward, path: str, unfilled, jit: bool) -> GradeReport:
    """A submission with a forward pass of its own, ``forward(params, x) -> (out, saved)`` with no
    ``taps``, and its backward pass: both written from scratch. Its forward pass must compute
    the built-in model's output; its nodes are found in its traced program (a
    :class:`~jaxprop.Model` without ``nodes``), and every node of the built-in model is graded,
    under its name, at the value the submission saves."""
    from jaxprop.core import paths, precision
    from jaxprop.model import Model

    params, x, Y = _point(setup.model)
    name = setup.model_name
    with precision("float64"):
        reference, ref_saved = setup.model.run_forward(params, x)
        try:
            produced = forward(params, x)
        except BaseException as e:
            error = f"forward raised {_exception(e, path)}"
            return setup.report("error", error, "forward raised", unfilled)
        if not (
            isinstance(produced, tuple) and len(produced) == 2 and isinstance(produced[1], Mapping)
        ):
            error = (
                f"forward returned {_describe(produced)}; it must return a pair (out, saved): the "
                "network's output and a dict of the values backward reads, the nodes among them"
            )
            return setup.report("error", error, "forward returned the wrong structure", unfilled)
        out, saved = produced
        differs = _differs(out, reference)
        if differs is not None:
            error = (
                f"the forward pass differs from {name}'s: its output has a {differs}; it must "
                f"compute {name}'s output (to {FORWARD_RTOL:g} relative, in float64) for its "
                "adjoints to be graded"
            )
            return setup.report("error", error, "the forward pass differs", unfilled)
        result = _run_backward(setup, backward, (params, x, saved, Y), path, unfilled)
        if isinstance(result, GradeReport):
            return result
        assert setup.model is not None  # _setup built it
        # Each node of the built-in model is graded at the value the submission saves under its
        # name, which must be that node's value.
        mine, theirs = paths(saved), paths(ref_saved)
        other = {}
        for n in setup.nodes:
            if n in mine and n in theirs:
                said = _differs(mine[n], theirs[n])
                if said is not None:
                    other[n] = said
    answered = Model(
        name=setup.model.name, forward=forward, backward=lambda params, x, saved, Y: result,
        objective=setup.model.objective, check_labels=setup.model.check_labels,
    )  # fmt: skip
    report = _check(setup, answered, (params, x, Y), jit, path, unfilled)
    if isinstance(report, GradeReport):
        return report
    grads = _grads_check(setup.model, (params, x, Y), result[0], path)
    first, diagnosis = report.first_failing, report.diagnosis
    first_unfilled = first is not None and any(_matches(u, first) for u in unfilled)
    checked = {n.name: n for n in report.nodes}
    hand = paths(result[1])
    grades = []
    for n in reversed(setup.nodes):
        if n not in hand:
            said = f"∂L/∂{n} is missing from the hand adjoints (backward returns none under {n!r})"
            grades.append(NodeGrade(n, False, said, "not-checked"))
        elif n not in mine:
            said = (
                f"not checked: forward saves no value under {n!r} (an adjoint is graded at the "
                "value saved under its name)"
            )
            grades.append(NodeGrade(n, False, said, "not-checked"))
        elif n in other:
            said = f"not checked: the value forward saves under {n!r} is not {name}'s {n} (a "
            grades.append(NodeGrade(n, False, said + other[n] + ")", "not-checked"))
        else:
            grades.append(_verdict(checked[n], first, diagnosis, unfilled, first_unfilled))
    notes = []
    more = [r for r in report.nodes if r.name not in setup.nodes]
    if more:
        notes.append(
            f"checked, not scored (not nodes of {name}): "
            + ", ".join(f"{r.name} {'ok' if r.ok else 'FAIL'}" for r in more)
            + (
                f"; the first failing node is {first}: {diagnosis.message}"
                if first in {r.name for r in more} and diagnosis is not None
                else ""
            )
        )
    unsaved = [n for n in report.extra if n not in setup.nodes]
    if unsaved:
        notes.append(f"the adjoints name values forward does not save: {', '.join(unsaved)}")
    return _graded(setup, grades, report, first_unfilled, grads, unfilled, tuple(notes))


def _differs(mine: Any, reference: Any) -> str | None:
    """How a submission's value departs from the built-in one (``None`` when it does not, to
    :data:`FORWARD_RTOL` relative): its structure, a shape, or the worst element."""
    import numpy as np

    if str(jax.tree.structure(mine)) != str(jax.tree.structure(reference)):
        return f"structure {jax.tree.structure(mine)}, not {jax.tree.structure(reference)}"
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(reference), strict=True):
        try:
            a = np.asarray(a, np.float64)
        except (TypeError, ValueError):
            return f"leaf that is not an array of numbers ({_describe(a)})"
        b = np.asarray(b, np.float64)
        if a.shape != b.shape:
            return f"shape {a.shape}, not {b.shape}"
        if a.size == 0:
            continue
        gap = np.abs(a - b)
        gap[np.isnan(gap)] = np.inf  # NaN where the built-in value is finite: differs
        worst = np.unravel_index(int(np.argmax(gap)), a.shape)
        rel = float(gap[worst]) / (float(np.max(np.abs(b))) or 1.0)
        if not rel <= FORWARD_RTOL:
            where = [int(i) for i in worst]
            return (
                f"relative difference of {rel:.2e} (worst at {where}: yours {a[worst]:.6g}, "
                f"built-in {b[worst]:.6g})"
            )
    return None


def _run_backward(setup: _Setup, backward, args, path: str, unfilled) -> Any:
    """The submission's ``backward(*args)``, run once, eagerly: its ``(grads, adjoints)``, or the
    report of an error when it raises or returns the wrong structure."""
    try:
        result = backward(*args)
    except BaseException as e:
        error = f"backward raised {_exception(e, path)}"
        return setup.report("error", error, "backward raised", unfilled)
    if not (isinstance(result, tuple) and len(result) == 2):
        error = (
            f"backward returned {_describe(result)}; it must return a pair (grads, adjoints): "
            "the parameter gradients and a dict from node name to ∂L/∂node"
        )
        return setup.report("error", error, "backward returned the wrong structure", unfilled)
    if not isinstance(result[1], Mapping):
        error = (
            f"the adjoints backward returned (the second of the pair) are {_describe(result[1])}"
            f"; they must be a dict from node name to ∂L/∂node, with the nodes {list(setup.nodes)}"
        )
        return setup.report("error", error, "backward returned the wrong structure", unfilled)
    return result


def _check(setup: _Setup, answered, point, jit: bool, path: str, unfilled) -> Any:
    """:func:`jaxprop.check_nodes` of the answered model at the graded point, or the report of
    an error when it fails."""
    from jaxprop.nodes import check_nodes

    try:
        return check_nodes(answered, *point, jit=jit)
    except BaseException as e:
        error = f"the node check failed: {_exception(e, path)}"
        return setup.report("error", error, "the node check failed", unfilled)


def _verdict(
    n: Any, first: str | None, diagnosis: Any, unfilled, first_unfilled: bool
) -> NodeGrade:
    """The grade of one node of the node check's report."""
    rel = None if n.vs_auto is None else float(n.vs_auto.max_rel)
    if n.ok:
        return NodeGrade(n.name, True, "ok", None, rel)
    if any(_matches(u, n.name) for u in unfilled):
        return NodeGrade(n.name, False, "not filled in", "not-filled-in", rel)
    if n.name == first:
        return NodeGrade(n.name, False, *_first_feedback(n, diagnosis), rel)
    said = f"inherits the error of {first}" + (" (not filled in)" if first_unfilled else "")
    return NodeGrade(n.name, False, said, "inherits", rel)


def _graded(setup: _Setup, grades, report, first_unfilled, grads, unfilled, notes) -> GradeReport:
    diagnosis = report.diagnosis
    return GradeReport(
        setup.path, setup.model_name, setup.config, sum(g.ok for g in grades), len(grades),
        tuple(grades), first_failing=report.first_failing,
        diagnosis=None if diagnosis is None or first_unfilled else diagnosis.to_dict(),
        grads=grads, unfilled=unfilled, notes=notes,
    )  # fmt: skip


def _grads_check(model, point, hand: Any, path: str) -> dict[str, Any]:
    """The submission's parameter gradients against ``jax.grad`` of the built-in loss, leaf by
    leaf (information; the score counts nodes): ``{"ok", "failing", "error"}``."""
    from jaxprop.core import default_tolerances, judge, memoised, paths, peak_of, precision

    out: dict[str, Any] = {"ok": False, "failing": [], "error": None}
    params = point[0]
    try:
        if str(jax.tree.structure(hand)) != str(jax.tree.structure(params)):
            out["error"] = (
                f"grads has the structure {jax.tree.structure(hand)}; expected that of params, "
                f"{jax.tree.structure(params)}"
            )
            return out
        with precision("float64"):
            ref = paths(memoised(lambda m: jax.jit(jax.grad(m.loss)), model)(*point))
        peak = peak_of(ref.values())
        rtol = default_tolerances("float64")[0]
        for (leaf, r), h in zip(ref.items(), paths(hand).values(), strict=True):
            cmp, problem = judge(
                h, r, what="gradient", missing="missing", rtol=rtol, dtype=jnp.float64, peak=peak
            )
            if problem is not None or cmp is None or not cmp.ok:
                out["failing"].append(leaf)
        out["ok"] = not out["failing"]
    except Exception as e:
        out["error"] = f"the gradient check failed: {_exception(e, path)}"
    return out


def _first_feedback(node: Any, diagnosis: Any) -> tuple[str, str | None]:
    """The feedback and kind of the first failing node: its diagnosis, else what the check said."""
    if diagnosis is not None and diagnosis.node == node.name:
        return diagnosis.message, diagnosis.kind
    if node.problem:
        return node.problem, None
    a = node.vs_auto
    return (
        f"wrong: relative error {a.max_rel:.2e} against jax.grad (worst at {list(a.worst_index)}: "
        f"yours {a.hand:.6g}, true {a.ref:.6g})",
        None,
    )


def grade(
    path: str | os.PathLike,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    model: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> GradeReport:
    """Grades a submission: the exercise file of :func:`exercise_source`, filled in, or a file
    with ``MODEL = "..."`` and a plain ``forward(params, x)`` (no ``taps``) and ``backward`` of
    its own, written from scratch (graded with its forward pass, which must compute the built-in
    output; see the module's docstring).

    The grading runs in a subprocess (``python -c``, JAX on the CPU unless ``JAX_PLATFORMS`` is
    set) that is killed after ``timeout`` seconds, so a submission that loops forever or crashes
    the interpreter gets a report that says so. The subprocess is for robustness, not security:
    the submission's code runs with the grader's rights (sandbox untrusted code yourself).

    Args:
      path: the submission's file.
      timeout: the time limit in seconds; ``None`` grades in this process, without one
        (:func:`grade_in_process`).
      model: the model the assignment is for; the file's ``MODEL`` must name it and its
        ``CONFIG`` must be ``config`` (otherwise a submission could switch to an easier model).
        By default the file's ``MODEL`` and ``CONFIG`` decide.
      config: the assignment's configuration of ``model`` (default: none).

    Returns:
      A :class:`GradeReport`: score, a verdict per node, the diagnosis, or why nothing could be
      checked. Never raises for a bad submission.

    Raises:
      FileNotFoundError: if ``path`` is not a file.
      ValueError: for a ``model`` that has no exercise, or a ``timeout`` that is not positive.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no file {path}")
    if model is not None and model not in exercise_models():
        _get_model(model, {})  # raises, listing the exercises
    if config is not None and model is None:
        raise ValueError("config= pins the assignment's configuration; give model= too")
    if timeout is None:
        return grade_in_process(path, model=model, config=config)
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    with tempfile.TemporaryDirectory(prefix="jaxprop-grade-") as tmp:
        result = os.path.join(tmp, "report.json")
        stderr_path = os.path.join(tmp, "stderr")
        env = dict(os.environ)
        env.setdefault("JAX_PLATFORMS", "cpu")  # tiny problems; no GPU memory grabbed per grading
        # The child imports this very jaxprop, and not from the working directory: a file there
        # named like a module (json.py, a student's signal.py) would shadow it.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        command = [
            sys.executable, "-c",
            "import sys; sys.path[0] = sys.argv[1]; from jaxprop.exercise import _child; "
            "sys.exit(_child(sys.argv[2:]))",
            root, path, result, json.dumps({"model": model, "config": config}),
        ]  # fmt: skip
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=env, start_new_session=os.name == "posix",
            )  # fmt: skip
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                setup = _setup(path, model, config)
                if setup.error is not None:
                    return setup.report("error", setup.error, _short(setup.error))
                error = (
                    f"timed out after {timeout:g} s: the submission did not finish (an infinite "
                    "loop, or a step that never ends?)"
                )
                return setup.report("timeout", error, "timed out")
        if os.path.exists(result):
            with open(result, encoding="utf-8") as fh:
                return GradeReport.from_dict(json.load(fh))
        with open(stderr_path, encoding="utf-8", errors="replace") as fh:
            tail = [line for line in fh.read().splitlines() if line.strip()]
    code = proc.returncode
    how = (
        f"killed by signal {signal.Signals(-code).name}"
        if code < 0 and -code in signal.Signals._value2member_map_
        else f"exit status {code}"
    )
    setup = _setup(path, model, config)
    error = f"the grading process died ({how}) before it could report" + (
        f": {tail[-1][:300]}" if tail else ""
    )
    return setup.report("error", error, "the grading process died")


def _kill(proc: subprocess.Popen) -> None:
    """Kills the process and its process group (anything the submission started)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _child(argv: Sequence[str]) -> int:
    """The grading subprocess: grades ``argv[0]`` and writes the report's JSON to ``argv[1]``."""
    path, out, pinned = argv
    report = grade_in_process(path, **json.loads(pinned), jit=True)
    from jaxprop._io import atomic_write_json

    atomic_write_json(out, report.to_dict())
    return 0

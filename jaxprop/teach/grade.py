"""Grading one submission in this process: load it, swap its backward pass into the built-in
model (or run its own forward pass), check every node and diagnose the first mistake.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import sys
import traceback
import types
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxprop.teach.assignment import _get_model, _point, exercise_models
from jaxprop.teach.plan import _traced
from jaxprop.teach.report import GradeReport, NodeGrade
from jaxprop.teach.source import _matches

__all__ = ["FORWARD_RTOL", "grade_in_process"]

#: How closely the forward pass of a submission written from scratch must compute the built-in
#: model's output (and each node's value), relative, in float64.
FORWARD_RTOL = 1e-12


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
    from jaxprop.model.validate import _describe as describe

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
    from jaxprop.check.tolerance import precision
    from jaxprop.model.contract import _takes_taps

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
    from jaxprop.check.tolerance import precision
    from jaxprop.check.trees import paths
    from jaxprop.model.contract import Model

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
    from jaxprop.check.nodes import check_nodes

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
    from jaxprop.check.compare import judge, peak_of
    from jaxprop.check.tolerance import default_tolerances, precision
    from jaxprop.check.trees import memoised, paths

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

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
says so and scores 0), its nodes are found in its traced program (:mod:`jaxprop.check.program`: a
Model without ``nodes``), and every node of the built-in model is graded at the value saved under
its name (0 for a node whose adjoint is missing, or whose saved value is not the built-in one).

A file that does not parse or import, a backward pass that raises, returns the wrong structure,
hangs or crashes the interpreter is graded too (score 0 for what could not be checked), with a
one-line reason: by default the grading runs in a subprocess with a time limit. The parameter
gradients are checked against ``jax.grad`` as information; they do not count.

>>> from jaxprop.teach import exercise_source
>>> text = exercise_source("tanh-softmax")
>>> 'MODEL = "tanh-softmax"' in text, text.count("= TODO(")
(True, 3)
>>> 'dz2 = TODO("z2", like=saved["z2"])' in text
True
"""

from __future__ import annotations

import ast
import io
import json
import os
import sys
import tokenize
from collections.abc import Mapping, Sequence
from typing import Any

from jaxprop.teach.assignment import BATCH, SEED
from jaxprop.teach.plan import _Function, _literal, _Plan, _plan, _statements
from jaxprop.teach.source import _citations, _Source

__all__ = ["exercise_source", "write_exercise"]


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
        imports["from jaxprop.teach import TODO"] = "jaxprop.teach"

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
    from jaxprop.util.files import atomic_write_bytes

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

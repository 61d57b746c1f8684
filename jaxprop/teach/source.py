"""Reading a model's source for an exercise: the functions it calls, the names they bind, the
labels of the adjoints they compute and the equations their comments cite.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import dis
import io
import re
import sys
import tokenize
import types
from collections.abc import Callable, Sequence
from typing import Any


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


def stored_items(node: ast.AST) -> list[tuple[ast.expr, ast.expr]]:
    """The (key, value) pairs a statement stores by subscript: ``d[k] = v`` gives ``[(k, v)]``,
    ``d[a], d[b] = x, y`` gives ``[(a, x), (b, y)]``; anything else ``[]``."""
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
        return []
    t, v = node.targets[0], node.value
    if isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple):
        return [
            (ti.slice, vi)
            for ti, vi in zip(t.elts, v.elts, strict=True)
            if isinstance(ti, ast.Subscript)
        ]
    return [(t.slice, v)] if isinstance(t, ast.Subscript) else []


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

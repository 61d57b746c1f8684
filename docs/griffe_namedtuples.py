"""A griffe extension: a ``typing.NamedTuple`` class gets the signature Python gives it.

griffe reads the source without running it, and makes the ``__init__`` of a dataclass from its
fields (its built-in dataclasses extension) but not that of a named tuple, so mkdocstrings showed
:class:`jaxprop.Activation` and :class:`jaxprop.Loss` with no signature at all. This extension
adds to every class whose base is ``typing.NamedTuple`` an ``__init__`` whose parameters are its
annotated fields, in order, with their defaults: what ``inspect.signature`` of the class says.

mkdocs.yml: ``plugins: mkdocstrings: handlers: python: options: extensions:
[docs/griffe_namedtuples.py]``.
"""

from __future__ import annotations

from typing import Any

import griffe

_NAMEDTUPLE = {"typing.NamedTuple", "typing_extensions.NamedTuple"}


def _is_namedtuple(cls: griffe.Class) -> bool:
    return any(
        isinstance(base, griffe.Expr) and base.canonical_path in _NAMEDTUPLE for base in cls.bases
    )


def _set_init(cls: griffe.Class) -> None:
    fields = [
        member
        for member in cls.members.values()
        if not member.is_alias and member.is_attribute and member.annotation is not None
    ]
    self = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
    parameters = [
        griffe.Parameter(
            field.name,
            annotation=field.annotation,
            kind=griffe.ParameterKind.positional_or_keyword,
            default=field.value,  # type: ignore[union-attr]
            docstring=field.docstring,
        )
        for field in fields
    ]
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(self, *parameters),
        returns="None",
    )
    cls.set_member("__init__", init)


class NamedTupleSignatures(griffe.Extension):
    """Gives every named tuple of the package its ``__init__`` once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "jaxprop":
            return
        for obj in _walk(pkg):
            if isinstance(obj, griffe.Class) and "__init__" not in obj.members:
                if _is_namedtuple(obj):
                    _set_init(obj)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]

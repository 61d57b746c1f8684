"""A griffe extension: jaxprop's docstrings, written with Sphinx roles, rendered by mkdocstrings.

- ``:func:`jaxprop.tap``` / ``:class:`~jaxprop.Model``` (any role) becomes a cross-reference to
  the API reference where the target is documented there (a name of ``jaxprop.__all__`` or a
  member of one, under its public or its defining path, or relative to the docstring's module),
  and inline code otherwise (a private helper, a module, ``jax.lax.scan``); ``~`` keeps the last
  component as the title, as in Sphinx;
- a run of ``>>>`` lines outside an ``Examples:`` section becomes a ``pycon`` code block (as
  markdown, ``>>>`` would be a nested quote).

mkdocs.yml: ``plugins: mkdocstrings: handlers: python: options: extensions:
[docs/griffe_roles.py]``. The docstrings themselves stay as they are (their doctests run).
"""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any

import griffe

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gen_equations import public_names

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):`(~?)([^`<]+)`")
_EXAMPLES = re.compile(r"^\s*Examples?:\s*$", re.M)


class _Targets:
    """The identifiers the API page documents, and the defining paths that lead to them."""

    def __init__(self, package: griffe.Module) -> None:
        names = public_names()
        self.package = package
        self.public = {f"jaxprop.{name}": f"{module}.{name}" for name, module in names.items()}
        self.canonical = {f"{module}.{name}": f"jaxprop.{name}" for name, module in names.items()}
        # A subpackage re-exports its modules' public names (``jaxprop.check.check_grads`` for
        # ``jaxprop.check.grads.check_grads``): those paths lead to the same entries.
        for name, module in names.items():
            parts = module.split(".")
            for k in range(2, len(parts)):
                self.canonical.setdefault(".".join(parts[:k]) + f".{name}", f"jaxprop.{name}")

    def resolve(self, target: str, context: list[str]) -> str | None:
        target = target.strip().removesuffix("()")
        for base in ["", "jaxprop.", *(c + "." for c in context)]:
            found = self._documented(base + target)
            if found:
                return found
        return None

    def _documented(self, path: str) -> str | None:
        if path in self.public:
            return path
        if path in self.canonical:
            return self.canonical[path]
        owner, _, member = path.rpartition(".")
        public = owner if owner in self.public else self.canonical.get(owner)
        if public and self._rendered_member(self.public[public], member):
            return f"{public}.{member}"
        return None

    def _rendered_member(self, canonical: str, member: str) -> bool:
        """Whether the API page shows ``member`` of the class at ``canonical``: its own public
        member with a docstring (mkdocs.yml's filters; inherited members are not shown)."""
        try:
            cls = self.package[canonical.removeprefix("jaxprop.")]
        except (KeyError, ValueError):
            return False
        if not getattr(cls, "is_class", False) or member.startswith("_"):
            return False
        obj = cls.members.get(member)
        return obj is not None and not obj.is_alias and obj.docstring is not None


def convert(text: str, context: list[str], targets: _Targets) -> str:
    """Sphinx roles to cross-references or code; doctest runs to code blocks."""

    def role(m: re.Match) -> str:
        short, target = m.group(1), m.group(2).strip()
        title = target.split(".")[-1] if short else target
        found = targets.resolve(target, context)
        return f"[`{title}`][{found}]" if found else f"`{title}`"

    text = _ROLE.sub(role, text)
    if ">>>" in text and not _EXAMPLES.search(text):
        text = _fence_doctests(text)
    return text


def _fence_doctests(text: str) -> str:
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
        else:
            out.append(line)
            i += 1
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "jaxprop":
            return
        targets = _Targets(pkg)
        for obj in _walk(pkg):
            if obj.docstring is None:
                continue
            context = []
            parent = obj if obj.is_module or obj.is_class else obj.parent
            while parent is not None:
                context.append(parent.path)
                parent = parent.parent
            obj.docstring.value = convert(obj.docstring.value, context, targets)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]

"""The one report base: a :class:`Record` per checked leaf, node or rule check, a :class:`Report`
of records (``ok``, ``failing``, ``to_dict``, the table), and the error ``assert_*`` raise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from jaxprop.check.compare import Comparison

__all__ = ["GradientCheckError", "Record", "Report", "format_rows"]


class GradientCheckError(AssertionError):
    """Raised by :meth:`Report.raise_if_failed`: a hand value disagrees with the truth."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One checked entry of a report (a gradient leaf, a node): its comparisons and its problem.

    Subclasses declare their identifying fields (``path``, ``name``, ``shape``, …), then the
    comparisons (fields of type :class:`Comparison` or ``None``) and ``problem``. A record passes
    when it has no problem, has a comparison ``vs_auto`` (with the exact reference), and every
    comparison passes.
    """

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        values = (getattr(self, f.name) for f in dataclasses.fields(self))
        return tuple(v for v in values if isinstance(v, Comparison))

    @property
    def ok(self) -> bool:
        return (
            getattr(self, "problem", None) is None
            and getattr(self, "vs_auto", None) is not None
            and all(c.ok for c in self.comparisons)
        )

    def to_dict(self) -> dict:
        """JSON-ready: the identifying fields, ``ok``, ``problem``, then every comparison."""
        ident, comps = {}, {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "problem":
                continue
            if isinstance(value, Comparison) or value is None or hasattr(value, "to_dict"):
                # A comparison, or a diagnosis: its figures as a dict.
                comps[f.name] = None if value is None else value.to_dict()
            else:
                ident[f.name] = list(value) if isinstance(value, tuple) else value
        return {**ident, "ok": self.ok, "problem": getattr(self, "problem", None), **comps}


@dataclasses.dataclass(frozen=True)
class Report:
    """The base of every report of jaxprop: a table of :class:`Record` entries.

    Subclasses say which field holds the entries (``_entries``), which field of an entry names it
    (``_key``) and what the hand value is called in messages (``_what``); their ``__str__`` lays
    out the table with :func:`format_rows`. ``ok`` is true when every entry passes (and
    :meth:`_extra_ok`); a report is truthy exactly when it passes.
    """

    _entries: ClassVar[str] = "leaves"
    _key: ClassVar[str] = "path"
    _what: ClassVar[str] = "hand value"

    def entries(self) -> tuple[Any, ...]:
        """The checked entries, in the report's order."""
        return tuple(getattr(self, self._entries))

    def _extra_ok(self) -> bool:
        return True

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries()) and self._extra_ok()

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failing(self) -> tuple[str, ...]:
        """The names of the failing entries, in order."""
        return tuple(getattr(e, self._key) for e in self.entries() if not e.ok)

    @property
    def diagnosis(self) -> Any:
        """What the mistake is at the first failing entry (a
        :class:`jaxprop.check.diagnosis.Diagnosis`), or ``None`` when the report passes or has no
        diagnosis."""
        return next((e.diagnosis for e in self.entries() if getattr(e, "diagnosis", None)), None)

    @property
    def diagnoses(self) -> dict[str, Any]:
        """The diagnosis of every diagnosed entry, by its name."""
        return {
            getattr(e, self._key): e.diagnosis
            for e in self.entries()
            if getattr(e, "diagnosis", None) is not None
        }

    def __getitem__(self, key: str) -> Any:
        for e in self.entries():
            if getattr(e, self._key) == key:
                return e
        names = [getattr(e, self._key) for e in self.entries()]
        kinds = "leaves" if self._kind() == "leaf" else f"{self._kind()}s"
        raise KeyError(f"no {self._kind()} {key!r}; {kinds} are {names}")

    @classmethod
    def _kind(cls) -> str:
        return "leaf" if cls._entries == "leaves" else cls._entries.rstrip("s")

    def _header(self) -> dict:
        """The fields of ``to_dict`` before ``failing`` and the entries."""
        return {"name": getattr(self, "name", None), "ok": self.ok}

    def _trailer(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        """A JSON-ready dict: the header fields, ``failing``, and every entry's figures."""
        return {
            **self._header(),
            "failing": list(self.failing),
            **self._trailer(),
            self._entries: [e.to_dict() for e in self.entries()],
        }

    def _failure_message(self) -> str:
        return f"{self._what} is wrong at {', '.join(self.failing)}"

    def raise_if_failed(self) -> Any:
        """Returns the report if it passes.

        Raises:
          GradientCheckError: naming every failing entry, with the table.
        """
        if not self.ok:
            raise GradientCheckError(f"{self._failure_message()}\n{self}")
        return self


def format_rows(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as a left-aligned table, columns two spaces apart (the first row is the
    header): the one table layout of every report."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )

"""The rule check's report: a :class:`RuleRecord` per check of a ``custom_vjp`` / ``custom_jvp``
rule and the :class:`RuleReport` of :func:`jaxprop.check_rule`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from jaxprop.check.compare import Comparison
from jaxprop.check.report import Record, Report, format_rows

__all__ = ["RuleRecord", "RuleReport"]


@dataclasses.dataclass(frozen=True)
class RuleRecord(Record):
    """One check of a rule at one argument (or output) leaf.

    Attributes:
      name: ``"<check> <leaf>"``, e.g. ``"reverse args[0]/w"``: what :attr:`RuleReport.failing`
        lists.
      check: the check (``primal``, ``reverse``, ``dot-product``, ``forward``, ``linearity``,
        ``consistency``, ``types``, ``jit``, ``vmap``, ``grad-of-vmap``, ``probe x1000``, …).
      leaf: the argument or output leaf, or ``""`` for a check of the whole rule.
      shape: the leaf's shape.
      comparison: the numbers, where the check compares values.
      problem: what went wrong otherwise (an exception's first line, a wrong dtype), or ``None``.
      diagnosis: on a failing ``reverse`` or ``forward`` check, what the mistake is
        (:class:`jaxprop.check.diagnosis.Diagnosis`: ``swapped``, ``sign``, ``scale``,
        ``transpose``, ``zero``, ``unclassified``), or ``None``.
    """

    name: str
    check: str
    leaf: str
    shape: tuple[int, ...]
    comparison: Comparison | None = None
    problem: str | None = None
    diagnosis: Any = None

    @property
    def unverified(self) -> bool:
        """Finite differences could judge none of the elements: with no other reference for a
        rule, nothing was verified (a failure, not a pass)."""
        c = self.comparison
        if c is None or c.n_compared == 0:
            return False
        # At a kink the one-sided differences vouch for a value between them, even where the
        # central one cannot judge.
        return len(set(c.inconclusive) - set(c.kinks)) == c.n_compared

    @property
    def ok(self) -> bool:
        if self.problem is not None or self.unverified:
            return False
        return self.comparison is None or self.comparison.ok


@dataclasses.dataclass(frozen=True)
class RuleReport(Report):
    """The result of :func:`check_rule`: truthy when every check passes.

    Attributes:
      checks: one :class:`RuleRecord` per check and leaf.
      dtype: the dtype the rule ran in.
      reference_dtype: the dtype of the finite-difference reference.
      name: the function's name.
      notes: what was not checked and why (a custom_vjp has no forward mode, say).
    """

    _entries: ClassVar[str] = "checks"
    _key: ClassVar[str] = "name"
    _what: ClassVar[str] = "the rule"

    checks: tuple[RuleRecord, ...]
    dtype: str
    reference_dtype: str
    name: str | None = None
    notes: tuple[str, ...] = ()

    def _header(self) -> dict:
        return {
            "name": self.name,
            "ok": self.ok,
            "dtype": self.dtype,
            "reference_dtype": self.reference_dtype,
        }

    def _trailer(self) -> dict:
        return {"notes": list(self.notes)}

    def __str__(self) -> str:
        rows = [("check", "leaf", "shape", "error", "rule", "reference", "worst at", "")]
        for r in self.checks:
            c = r.comparison
            status = "ok" if r.ok else "FAIL" + (f": {r.problem}" if r.problem else "")
            if r.unverified:
                status = "FAIL: unverified, finite differences inconclusive at every element"
            elif c is not None and c.reference.startswith("finite") and c.inconclusive:
                status += f" (FD inconclusive at {len(c.inconclusive)})"
            if r.ok and c is not None and c.kinks:
                status += f" (kink at {len(c.kinks)}: between the one-sided derivatives)"
            if r.diagnosis is not None and not r.ok:
                status += f" [{r.diagnosis}]"
            shown = c is not None and not r.unverified
            rows.append(
                (
                    r.check,
                    r.leaf or "-",
                    "x".join(map(str, r.shape)) or "scalar",
                    _error(c) if shown and c else "-",
                    f"{c.hand:.6g}" if shown and c else "-",
                    f"{c.ref:.6g}" if shown and c else "-",
                    str(list(c.worst_index)) if shown and c else "-",
                    status,
                )
            )
        title = f"{self.name or 'rule check'}  [{self.dtype}, reference {self.reference_dtype}]"
        notes = "".join(f"\nnote: {n}" for n in self.notes)
        return f"{title}\n{format_rows(rows)}{notes}"


def _error(c: Comparison) -> str:
    """The relative error; where the reference is exactly 0 at the worst element, the absolute
    one (a relative error against 0 says nothing)."""
    if c.ref == 0.0 and c.max_abs > 0:
        return f"abs {c.max_abs:.2e}"
    return f"{c.max_rel:.2e}"

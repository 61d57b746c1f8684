"""The gradient check's report: a :class:`LeafReport` per parameter leaf and the
:class:`GradReport` of :func:`jaxprop.check_grads` and :func:`jaxprop.check_jacobian`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from jaxprop.check import fd
from jaxprop.check.compare import Comparison, json_float
from jaxprop.check.diagnosis import Diagnosis
from jaxprop.check.report import Record, Report, format_rows

__all__ = ["GradReport", "LeafReport"]


@dataclasses.dataclass(frozen=True)
class LeafReport(Record):
    """One leaf of the gradient pytree.

    Attributes:
      path: the leaf's name, e.g. ``W1`` or ``layers/0/A``.
      shape: the shape of the true gradient leaf.
      dtype: its dtype.
      vs_auto: the comparison with ``jax.grad`` (``None`` when the leaf could not be compared).
      vs_fd: the comparison with finite differences (``None`` when not run).
      problem: what is wrong with the leaf's structure (missing, extra, shape, dtype,
        non-finite), or ``None``.
      diagnosis: what the mistake is, where the leaf departs from ``jax.grad``
        (:class:`jaxprop.check.diagnosis.Diagnosis`: sign, scale, transpose, zero, unclassified), or
        ``None``.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    vs_auto: Comparison | None = None
    vs_fd: Comparison | None = None
    problem: str | None = None
    diagnosis: Diagnosis | None = None


@dataclasses.dataclass(frozen=True)
class GradReport(Report):
    """The result of :func:`check_grads`: truthy when every leaf passes.

    Attributes:
      leaves: one :class:`LeafReport` per leaf, in the order of the true gradient's leaves
        (followed by leaves the hand gradient has in excess).
      dtype: the dtype the check ran in.
      loss: the loss value at the checked point.
      name: an optional name of what was checked (a model's name).
      source: an optional citation of what was checked.
    """

    _entries: ClassVar[str] = "leaves"
    _key: ClassVar[str] = "path"
    _what: ClassVar[str] = "hand gradient"

    leaves: tuple[LeafReport, ...]
    dtype: str
    loss: float
    name: str | None = None
    source: str | None = None
    reference_dtype: str | None = None
    seed: int | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    replay: Callable[[str, tuple[int, ...]], fd.Estimate] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def rerun(self, path: str, index: Sequence[int]) -> fd.Estimate:
        """Re-runs the finite differences of one element exactly as the check took them (the
        same ladder of steps, the same point): a failing element, reproduced.

        Args:
          path: the leaf, e.g. ``"W1"``.
          index: the element's index in the leaf, e.g. ``report["W1"].vs_fd.worst_index``.

        Returns:
          The :class:`jaxprop.check.fd.Estimate` of that element (``value``, ``error``, ``left``,
          ``right``, ``kink``, ``steps``).

        Raises:
          ValueError: if the report has no finite differences to re-run (``fd=False``, a
            directional check, or a report built by hand).
          KeyError: if that element was not among those the check sampled.
        """
        if self.replay is None:
            raise ValueError(
                "this report has no element-wise finite differences to re-run (fd=False, "
                "fd_mode='directions', or a report not made by check_grads)"
            )
        return self.replay(path, tuple(int(i) for i in index))

    def _header(self) -> dict:
        head: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "ok": self.ok,
            "dtype": self.dtype,
            "loss": json_float(self.loss),
        }
        if self.reference_dtype is not None:
            head["reference_dtype"] = self.reference_dtype
        if self.seed is not None:
            head["seed"] = self.seed
        if self.skipped:
            head["skipped"] = dict(self.skipped)
        return head

    def __str__(self) -> str:
        title = self.name or "gradient check"
        head = f"{title}  [{self.dtype}]" + (f"  source: {self.source}" if self.source else "")
        said = "".join(
            f"\ndiagnosis of {path} ({d.kind}): {d.message}" for path, d in self.diagnoses.items()
        )
        if self.skipped:
            said += "\nskipped, not arrays: " + ", ".join(f"{p} ({t})" for p, t in self.skipped)
        return head + "\n" + format_table(self.leaves) + said


def leaf_status(leaf: LeafReport) -> str:
    """A leaf's verdict in words: ok, or which reference disagreed; kinks and inconclusive
    finite differences are counted."""
    if leaf.problem:
        return "FAIL: " + leaf.problem
    notes = []
    for c in (leaf.vs_auto, leaf.vs_fd):
        if c is not None and c.kinks and c.reference.startswith("finite"):
            notes.append(f"{len(c.kinks)} kink{'s' * (len(c.kinks) > 1)}")
    if leaf.vs_fd is not None and leaf.vs_fd.inconclusive:
        notes.append(f"FD inconclusive at {len(leaf.vs_fd.inconclusive)}")
    if leaf.ok:
        return "ok" + (f" ({', '.join(notes)})" if notes else "")
    against = [c.reference for c in (leaf.vs_auto, leaf.vs_fd) if c is not None and not c.ok]
    return "FAIL vs " + " and ".join(against) + (f" ({', '.join(notes)})" if notes else "")


def format_table(leaves: Sequence[LeafReport]) -> str:
    """The per-leaf table of a report, one line per leaf."""
    rows = [("leaf", "shape", "rel err vs jax.grad", "worst at", "rel err vs FD", "n FD", "")]
    for leaf in leaves:
        a, f = leaf.vs_auto, leaf.vs_fd
        rows.append(
            (
                leaf.path,
                "x".join(map(str, leaf.shape)) or "scalar",
                f"{a.max_rel:.2e}" if a else "-",
                str(list(a.worst_index)) if a else "-",
                f"{f.max_rel:.2e}" if f else "-",
                str(f.n_compared) if f else "-",
                leaf_status(leaf),
            )
        )
    return format_rows(rows)

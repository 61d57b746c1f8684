"""The grade of a submission: a :class:`NodeGrade` per node and the :class:`GradeReport` (score,
feedback, ``--json`` schema ``jaxprop.grade/1``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from jaxprop.teach.assignment import BATCH, SEED

__all__ = ["GradeReport", "NodeGrade"]

SCHEMA = "jaxprop.grade/1"


@dataclasses.dataclass(frozen=True)
class NodeGrade:
    """The verdict on one node of a submission.

    Attributes:
      name: the node.
      ok: whether the submission's adjoint of it agrees with the true one.
      feedback: one line: ``ok``, ``not filled in``, the diagnosis of the first failing node,
        ``inherits the error of <node>`` for the failing nodes after it, or why it was not
        checked.
      kind: ``None`` when ok; the diagnosis's kind (one of :data:`jaxprop.check.diagnosis.KINDS`)
        for the first failing node; ``"not-filled-in"``, ``"inherits"`` or ``"not-checked"``
        otherwise.
      rel_err: max |hand − true| over max |true| (``None`` where not compared).
    """

    name: str
    ok: bool
    feedback: str
    kind: str | None = None
    rel_err: float | None = None

    def to_dict(self) -> dict:
        from jaxprop.check.compare import json_float

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
        from jaxprop.check.report import format_rows

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

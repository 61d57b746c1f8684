"""A formula of a source document, and the checks that say exactly when it holds.

A :class:`Slip` is one printed formula with an *as printed* backward variant of the network it
belongs to and the corrected backward pass. Its :class:`Case` s say how the printed formula is
read (numerator or denominator layout, a 1 × 1 factor as a scalar, which loss, which sizes) and
what it must give under that reading: ``"holds"`` (the as-printed variant passes the node and
gradient checks), ``"fails"`` (it runs, and fails at exactly the slip's node, or leaf) or
``"cannot-form"`` (the printed product raises a dimension error). One case is the one the
document treats; the verdict follows from what that case *measures*: a ``"slip"`` where the printed
formula fails there, ``"right in the document's case"`` where it holds there and fails elsewhere.

Every check runs in float64 (``jaxprop.check_nodes`` and ``jaxprop.check_grads`` switch 64-bit
mode on for their own duration; the parameters and data are drawn under ``jax.enable_x64``), at
a fixed seed, without ``jax.jit``, against ``jax.grad`` only: finite differences add nothing to a
comparison with automatic differentiation (``jaxprop verify`` runs them on the public models).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxprop.check.grad_report import GradReport
from jaxprop.check.grads import check_grads
from jaxprop.check.nodes import NodeReport, check_nodes
from jaxprop.model.contract import Model

__all__ = [
    "DOCS",
    "EXPECT",
    "VERDICTS",
    "Case",
    "CaseResult",
    "Result",
    "Slip",
    "check_model",
    "entries_of",
    "literal_product",
    "run_slip",
]

#: The four source documents (in ``../shared/seeds``), by their number.
DOCS = {
    "000": "000_5eab1a4fa2460359.txt",
    "001": "001_90440b38c2c51fc3.txt",
    "002": "002_dadcaa6bdb722c5e.txt",
    "003": "003_c347acbe1cb23503.txt",
}

#: What a case may expect of the as-printed variant.
EXPECT = ("holds", "fails", "cannot-form")

#: A formula's verdict, from what the document's own case measures.
VERDICTS = ("slip", "right in the document's case")

BATCH = 4  # examples per checked batch
SEED = 0  # of the parameters and the data


def literal_product(*factors: jax.Array) -> jax.Array:
    """The printed product of 2-D factors, left to right, as matrix algebra reads it.

    A 1 × 1 factor multiplies as a scalar (a single output's g′(ŷ) or dL); any other pair is a
    matrix product.

    Raises:
      TypeError: where two factors do not conform, naming their shapes.
    """
    out = factors[0]
    for f in factors[1:]:
        if out.shape == (1, 1) or f.shape == (1, 1):
            out = out * f
        elif out.shape[1] != f.shape[0]:
            raise TypeError(
                f"the printed product cannot be formed: {out.shape[0]}×{out.shape[1]} times "
                f"{f.shape[0]}×{f.shape[1]}"
            )
        else:
            out = out @ f
    return out


def entries_of(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``a``'s entries in ``shape`` where it has as many (a row or a column read as the vector it
    holds), else ``a`` as it is, for the check to report its wrong shape."""
    return a.reshape(shape) if a.size == math.prod(shape) else a


@dataclasses.dataclass(frozen=True)
class Case:
    """One reading of a printed formula at one point, and what the as-printed variant must give.

    Attributes:
      reading: how the formula is read, in words (layout, sizes, the loss it is held to).
      expect: ``"holds"``, ``"fails"`` or ``"cannot-form"`` (:data:`EXPECT`).
      sizes: keyword sizes for the model's ``init``.
      make: the as-printed variant under this reading; ``None`` for the slip's ``make_printed``.
      document: this is the case the document treats (exactly one per slip).
    """

    reading: str
    expect: str
    sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    make: Callable[[], Model] | None = None
    document: bool = False

    def __post_init__(self):
        if self.expect not in EXPECT:
            raise ValueError(f"expect must be one of {EXPECT}, got {self.expect!r}")


@dataclasses.dataclass(frozen=True)
class Slip:
    """One printed formula: where, what is printed, what is right, and when the print holds.

    Attributes:
      key: a short unique name, e.g. ``"000-db"`` (the heading in docs/errata.md).
      doc: the document's number, a key of :data:`DOCS`.
      where: the equation or passage, as the document names it.
      printed: the formula as printed.
      corrected: the formula as it must read.
      make_printed: builds the :class:`jaxprop.Model` whose backward pass follows the print.
      make_corrected: builds the same model with the corrected backward pass (checked at the
        sizes of the first failing case).
      node: the node the as-printed variant must fail at first, in backward order, in every case
        expected to fail; ``None`` when the formula is a parameter gradient, then no node fails
        and ``leaf`` must be exactly the failing leaf.
      leaf: the failing parameter leaf when ``node`` is ``None``.
      cases: the readings and points, each with what it must give; the first ``"fails"`` case
        is the *as-printed variant* of the entry (its tables, its diagnosis).
      document: the case the document treats, in words (what in the text says so).
      holds_when: when the printed formula holds, in words; ``""`` where it never does.
      fails_when: when it fails, in words.
      note: what the formula is, in a sentence or two.
      figures: further measured evidence, ``() -> {quantity: value}``, or ``None``.
    """

    key: str
    doc: str
    where: str
    printed: str
    corrected: str
    make_printed: Callable[[], Model]
    make_corrected: Callable[[], Model]
    node: str | None
    leaf: str | None = None
    cases: tuple[Case, ...] = ()
    document: str = ""
    holds_when: str = ""
    fails_when: str = ""
    note: str = ""
    figures: Callable[[], dict[str, Any]] | None = None

    def __post_init__(self):
        if sum(c.document for c in self.cases) != 1:
            raise ValueError(f"{self.key}: exactly one case must be the document's")
        if not any(c.expect == "fails" for c in self.cases):
            raise ValueError(f"{self.key}: a case where the as-printed variant runs and fails")

    @property
    def expected_at(self) -> str:
        """``"node NAME"`` or ``"leaf NAME"``: where the as-printed variant must fail."""
        return f"node {self.node}" if self.node is not None else f"leaf {self.leaf}"

    @property
    def variant(self) -> Case:
        """The first case expected to fail: the entry's as-printed variant."""
        return next(c for c in self.cases if c.expect == "fails")

    @property
    def sizes(self) -> Mapping[str, int]:
        """The sizes of the as-printed variant (and of the corrected model's check)."""
        return self.variant.sizes


def _max_rel(nodes: NodeReport, grads: GradReport) -> float | None:
    """The largest relative error against ``jax.grad`` over every node and leaf; ``None`` where
    one could not be compared (a wrong shape)."""
    comparisons = [i.vs_auto for i in nodes.nodes] + [i.vs_auto for i in grads.leaves]
    if any(c is None for c in comparisons):
        return None
    return max(c.max_rel for c in comparisons if c is not None)


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """What one :class:`Case` measured.

    Attributes:
      case: the case.
      nodes: ``jaxprop.check_nodes`` of the as-printed variant, or ``None`` where it cannot run.
      grads: ``jaxprop.check_grads`` of it (against ``jax.grad``), or ``None`` likewise.
      error: the dimension error (``"TypeError: ..."``) where the printed product cannot be
        formed, else ``None``.
    """

    case: Case
    nodes: NodeReport | None
    grads: GradReport | None
    error: str | None

    @property
    def outcome(self) -> str:
        """What the case gave: ``"holds"``, ``"fails"`` or ``"cannot-form"``."""
        if self.error is not None:
            return "cannot-form"
        assert self.nodes is not None and self.grads is not None
        return "holds" if self.nodes.ok and self.grads.ok else "fails"

    @property
    def max_rel(self) -> float | None:
        """The largest relative error against ``jax.grad`` over every node and leaf (the
        evidence where the formula holds); ``None`` where it cannot run or a shape is wrong."""
        if self.nodes is None or self.grads is None:
            return None
        return _max_rel(self.nodes, self.grads)

    def fails_at(self, slip: Slip) -> str | None:
        """The first failing node (a node slip) or the failing leaves, comma-separated (a leaf
        slip); ``None`` where nothing fails or it cannot run."""
        if self.nodes is None or self.grads is None:
            return None
        if slip.node is not None:
            return self.nodes.first_failing
        return ", ".join(self.grads.failing) or None

    def rel_at(self, slip: Slip) -> float | None:
        """The relative error against ``jax.grad`` at the formula's own node (``slip.node``) or
        leaf (``slip.leaf``); ``None`` where it cannot run or could not be compared there."""
        if self.nodes is None or self.grads is None:
            return None
        if slip.node is not None:
            item = self.nodes[slip.node]
        else:
            assert slip.leaf is not None  # a leaf slip names its leaf
            item = self.grads[slip.leaf]
        return None if item.vs_auto is None else item.vs_auto.max_rel

    def failure(self, slip: Slip) -> tuple[float | None, str | None]:
        """Where it fails: (the relative error against ``jax.grad`` at the failing node, or at the
        first failing leaf; the problem there, such as a wrong shape). ``(None, None)`` where
        nothing fails."""
        at = self.fails_at(slip)
        if at is None:
            return None, None
        assert self.nodes is not None and self.grads is not None
        item = self.nodes[at] if slip.node is not None else self.grads[self.grads.failing[0]]
        rel = None if item.vs_auto is None else item.vs_auto.max_rel
        return rel, item.problem

    def diagnosis(self, slip: Slip) -> Any:
        """The diagnosis (:class:`jaxprop.check.diagnosis.Diagnosis`) of the first failing node, or
        of the first failing leaf for a leaf slip; ``None`` where nothing fails."""
        report = self.nodes if slip.node is not None else self.grads
        return None if report is None else report.diagnosis

    def as_expected(self, slip: Slip) -> bool:
        """The case gives what it expects: holds; cannot be formed; or fails at exactly
        ``slip.node`` (for a leaf slip: every node passes and ``slip.leaf`` is the only failing
        leaf)."""
        if self.outcome != self.case.expect:
            return False
        if self.case.expect != "fails":
            return True
        assert self.nodes is not None and self.grads is not None
        if slip.node is not None:
            return self.nodes.first_failing == slip.node
        return self.nodes.ok and self.grads.failing == (slip.leaf,)

    def to_dict(self, slip: Slip) -> dict:
        """JSON-ready: the reading, sizes, what it expects and gives, and the figures."""
        rel, problem = self.failure(slip)
        d = self.diagnosis(slip)
        return {
            "reading": self.case.reading,
            "sizes": dict(self.case.sizes),
            "document": self.case.document,
            "expect": self.case.expect,
            "outcome": self.outcome,
            "max_rel_error": _finite(self.max_rel),
            "rel_error_at_formula": _finite(self.rel_at(slip)),
            "fails_at": self.fails_at(slip),
            "rel_error_there": _finite(rel),
            "problem": problem,
            "error": self.error,
            "diagnosis": None if d is None else d.to_dict(),
            "as_expected": self.as_expected(slip),
        }


def _finite(v: float | None) -> float | None:
    return v if v is None or math.isfinite(v) else None


@dataclasses.dataclass(frozen=True)
class Result:
    """The checks of one slip.

    Attributes:
      slip: the :class:`Slip`.
      cases: one :class:`CaseResult` per ``slip.cases``, in order.
      corrected_nodes: ``jaxprop.check_nodes`` of the corrected model at ``slip.sizes``.
      corrected_grads: ``jaxprop.check_grads`` of the corrected model.
    """

    slip: Slip
    cases: tuple[CaseResult, ...]
    corrected_nodes: NodeReport
    corrected_grads: GradReport

    @property
    def variant(self) -> CaseResult:
        """The result of the as-printed variant (``slip.variant``)."""
        return self.cases[self.slip.cases.index(self.slip.variant)]

    @property
    def document_case(self) -> CaseResult:
        """The result of the case the document treats."""
        return next(c for c in self.cases if c.case.document)

    @property
    def printed_nodes(self) -> NodeReport:
        """The node check of the as-printed variant."""
        assert self.variant.nodes is not None  # the variant runs (it is expected to fail)
        return self.variant.nodes

    @property
    def printed_grads(self) -> GradReport:
        """The gradient check of the as-printed variant."""
        assert self.variant.grads is not None
        return self.variant.grads

    @property
    def diagnosis(self) -> Any:
        """The as-printed variant's diagnosis: of its first failing node, or of the failing leaf
        (:class:`jaxprop.check.diagnosis.Diagnosis`); ``None`` where it does not fail."""
        return self.variant.diagnosis(self.slip)

    @property
    def verdict(self) -> str:
        """``"slip"`` where the printed formula fails (or cannot be formed) in the document's own
        case, ``"right in the document's case"`` where it holds there: measured, not recorded."""
        return "right in the document's case" if self.document_case.outcome == "holds" else "slip"

    @property
    def corrected_passes(self) -> bool:
        """The corrected backward pass passes the node check and the gradient check."""
        return self.corrected_nodes.ok and self.corrected_grads.ok

    @property
    def fails_at(self) -> str | None:
        """Where the as-printed variant fails: the first failing node (a node slip) or the
        failing leaves, comma-separated (a leaf slip); ``None`` where nothing fails."""
        return self.variant.fails_at(self.slip)

    @property
    def as_expected(self) -> bool:
        """Every case gives what it expects (the variant fails at exactly ``slip.node``, or
        ``slip.leaf``; the holding cases pass; the others cannot be formed), and the corrected
        model passes."""
        return all(c.as_expected(self.slip) for c in self.cases) and self.corrected_passes

    def error(self) -> tuple[float | None, str | None]:
        """The as-printed variant's error where it fails: (the maximum relative error against
        ``jax.grad``, or ``None`` where it could not be compared; the problem, such as a wrong
        shape, or ``None``). ``(None, None)`` where nothing fails."""
        return self.variant.failure(self.slip)

    def to_dict(self) -> dict:
        """JSON-ready: the slip's text, its verdict, every case with its figures, where the
        as-printed variant must fail and does, its diagnosis, whether the corrected form passes,
        and whether all of it is as recorded."""
        s = self.slip
        rel, problem = self.error()
        d = self.diagnosis
        return {
            "key": s.key,
            "doc": s.doc,
            "document": DOCS[s.doc],
            "equation": s.where,
            "verdict": self.verdict,
            "as_printed": s.printed,
            "corrected": s.corrected,
            "documents_case": s.document,
            "holds_when": s.holds_when or None,
            "fails_when": s.fails_when,
            "expected_at": {"node": s.node} if s.node is not None else {"leaf": s.leaf},
            "fails_at": self.fails_at,
            "failing_nodes": list(self.printed_nodes.failing),
            "failing_leaves": list(self.printed_grads.failing),
            "max_rel_error": _finite(rel),
            "problem": problem,
            "diagnosis": None if d is None else d.to_dict(),
            "cases": [c.to_dict(s) for c in self.cases],
            "corrected_passes": self.corrected_passes,
            "as_expected": self.as_expected,
            "note": s.note,
        }


_POINTS: dict = {}


def _point(model: Model, sizes: Mapping[str, int]) -> tuple:
    """Random parameters and data for ``model``, drawn once per network family and sizes (the
    as-printed and corrected variants of a slip share their forward pass, init and sample)."""
    assert model.init is not None and model.sample is not None  # every slip's model has both
    fns: tuple[Callable[..., Any], ...] = (model.init, model.sample)
    family = tuple((fn.__module__, fn.__qualname__) for fn in fns)
    key = (family, tuple(sorted(sizes.items())))
    if key not in _POINTS:
        k1, k2 = jax.random.split(jax.random.key(SEED))
        params = model.init(k1, **sizes)
        params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)  # nonzero biases
        _POINTS[key] = (params, *model.sample(k2, params, BATCH))
    return _POINTS[key]


def check_model(model: Model, sizes: Mapping[str, int]) -> tuple[NodeReport, GradReport]:
    """The node check and the gradient check (against ``jax.grad``) of ``model`` in float64.

    Args:
      model: a :class:`jaxprop.Model` that names its nodes.
      sizes: keyword sizes for ``model.init``.

    Returns:
      ``(node_report, grad_report)``.
    """
    with jax.enable_x64(True):
        params, x, Y = _point(model, sizes)
        nodes = check_nodes(model, params, x, Y, dtype="float64", jit=False)
        grads = check_grads(
            model.loss,
            model.grad,
            params,
            x,
            Y,
            dtype="float64",
            jit=False,
            fd=False,
            name=model.name,
        )
    return nodes, grads


def _run_case(slip: Slip, case: Case) -> CaseResult:
    """Checks the as-printed variant of ``case``; a dimension error (``TypeError`` or
    ``ValueError`` from the printed product) is the case's outcome, not a crash."""
    model = (case.make or slip.make_printed)()
    try:
        nodes, grads = check_model(model, case.sizes)
    except (TypeError, ValueError) as e:
        return CaseResult(case, None, None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
    return CaseResult(case, nodes, grads, None)


_CORRECTED: dict = {}


def run_slip(slip: Slip) -> Result:
    """Checks one slip: every case of its as-printed variants, and the corrected model.

    The corrected model of several slips is often the same (same name, same sizes): it is checked
    once per process.

    Args:
      slip: the :class:`Slip`.

    Returns:
      Its :class:`Result`; ``result.as_expected`` says whether it behaves as recorded.
    """
    cases = tuple(_run_case(slip, c) for c in slip.cases)
    corrected = slip.make_corrected()
    key = (corrected.name, tuple(sorted(slip.sizes.items())))
    if key not in _CORRECTED:
        _CORRECTED[key] = check_model(corrected, slip.sizes)
    corrected_nodes, corrected_grads = _CORRECTED[key]
    return Result(slip, cases, corrected_nodes, corrected_grads)

"""A slip of a source document, and the check that proves it: the as-printed variant fails at its
node (or leaf), the corrected one passes.

Every check runs in float64 (``jaxprop.check_nodes`` and ``jaxprop.check_grads`` switch 64-bit
mode on for their own duration; the parameters and data are drawn under ``jax.enable_x64``), at
a fixed seed, without ``jax.jit``, against ``jax.grad`` only: finite differences add nothing to a
comparison with automatic differentiation (``jaxprop verify`` runs them on the public models).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import jaxprop

__all__ = ["DOCS", "Result", "Slip", "run_slip"]

#: The four source documents (in ``../shared/seeds``), by their number.
DOCS = {
    "000": "000_5eab1a4fa2460359.txt",
    "001": "001_90440b38c2c51fc3.txt",
    "002": "002_dadcaa6bdb722c5e.txt",
    "003": "003_c347acbe1cb23503.txt",
}

BATCH = 4  # examples per checked batch
SEED = 0  # of the parameters and the data


@dataclasses.dataclass(frozen=True)
class Slip:
    """One slip: where, what is printed, what is right, and the variants that show it.

    Attributes:
      key: a short unique name, e.g. ``"000-db-U"`` (the heading in docs/errata.md).
      doc: the document's number, a key of :data:`DOCS`.
      where: the equation or passage, as the document names it.
      printed: the formula as printed.
      corrected: the formula as it must read.
      make_printed: builds the :class:`jaxprop.Model` whose backward pass follows the print.
      make_corrected: builds the same model with the corrected backward pass.
      node: the node the as-printed variant must fail at first, in backward order; ``None``
        when the slip is in a parameter gradient, then no node fails and ``leaf`` must be
        exactly the failing leaf.
      leaf: the failing parameter leaf when ``node`` is ``None``.
      sizes: keyword sizes for the model's ``init`` at which the printed formula runs (square
        where it needs to be).
      wrong_sizes: sizes at which the printed formula cannot run (a dimension error), or
        ``None``.
      note: what the slip is, in a sentence or two.
    """

    key: str
    doc: str
    where: str
    printed: str
    corrected: str
    make_printed: Callable[[], jaxprop.Model]
    make_corrected: Callable[[], jaxprop.Model]
    node: str | None
    leaf: str | None = None
    sizes: dict = dataclasses.field(default_factory=dict)
    wrong_sizes: dict | None = None
    note: str = ""

    @property
    def expected_at(self) -> str:
        """``"node NAME"`` or ``"leaf NAME"``: where the as-printed variant must fail."""
        return f"node {self.node}" if self.node is not None else f"leaf {self.leaf}"


@dataclasses.dataclass(frozen=True)
class Result:
    """The checks of one slip.

    Attributes:
      slip: the :class:`Slip`.
      printed_nodes: ``jaxprop.check_nodes`` of the as-printed variant at ``slip.sizes``.
      printed_grads: ``jaxprop.check_grads`` of the as-printed variant (against ``jax.grad``).
      corrected_nodes: ``jaxprop.check_nodes`` of the corrected model at the same point.
      corrected_grads: ``jaxprop.check_grads`` of the corrected model.
      shape_error: the dimension error of the as-printed variant at ``slip.wrong_sizes``
        (``"TypeError: ..."``, or the problems the checks report), or ``None``.
    """

    slip: Slip
    printed_nodes: jaxprop.NodeReport
    printed_grads: jaxprop.GradReport
    corrected_nodes: jaxprop.NodeReport
    corrected_grads: jaxprop.GradReport
    shape_error: str | None

    @property
    def corrected_passes(self) -> bool:
        """The corrected backward pass passes the node check and the gradient check."""
        return self.corrected_nodes.ok and self.corrected_grads.ok

    @property
    def fails_at(self) -> str | None:
        """Where the as-printed variant fails: the first failing node (a node slip) or the
        failing leaves, comma-separated (a leaf slip); ``None`` where nothing fails."""
        if self.slip.node is not None:
            return self.printed_nodes.first_failing
        return ", ".join(self.printed_grads.failing) or None

    @property
    def as_expected(self) -> bool:
        """The slip behaves as recorded: the as-printed variant fails at exactly ``slip.node``
        (or, for a leaf slip, every node passes and ``slip.leaf`` is the only failing leaf), and
        the corrected one passes."""
        s = self.slip
        if s.node is not None:
            printed_ok = self.printed_nodes.first_failing == s.node
        else:
            printed_ok = self.printed_nodes.ok and self.printed_grads.failing == (s.leaf,)
        return printed_ok and self.corrected_passes

    def error(self) -> tuple[float | None, str | None]:
        """The as-printed variant's error where it fails: (the maximum relative error against
        ``jax.grad``, or ``None`` where it could not be compared; the problem, such as a wrong
        shape, or ``None``). ``(None, None)`` where nothing fails."""
        at = self.fails_at
        if at is None:
            return None, None
        if self.slip.node is not None:
            item = self.printed_nodes[at]
        else:
            item = self.printed_grads[self.printed_grads.failing[0]]
        rel = None if item.vs_auto is None else item.vs_auto.max_rel
        return rel, item.problem

    def to_dict(self) -> dict:
        """JSON-ready: the slip's text, where it must fail and where it does, the error there,
        whether the corrected form passes, and whether all of it is as recorded."""
        s = self.slip
        rel, problem = self.error()
        return {
            "key": s.key,
            "doc": s.doc,
            "document": DOCS[s.doc],
            "equation": s.where,
            "as_printed": s.printed,
            "corrected": s.corrected,
            "expected_at": {"node": s.node} if s.node is not None else {"leaf": s.leaf},
            "fails_at": self.fails_at,
            "failing_nodes": list(self.printed_nodes.failing),
            "failing_leaves": list(self.printed_grads.failing),
            "max_rel_error": rel if rel is None or math.isfinite(rel) else None,
            "problem": problem,
            "shape_error": self.shape_error,
            "corrected_passes": self.corrected_passes,
            "as_expected": self.as_expected,
            "note": s.note,
        }


_POINTS: dict = {}


def _point(model: jaxprop.Model, sizes: dict) -> tuple:
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


def check_model(model: jaxprop.Model, sizes: dict) -> tuple[jaxprop.NodeReport, jaxprop.GradReport]:
    """The node check and the gradient check (against ``jax.grad``) of ``model`` in float64.

    Args:
      model: a :class:`jaxprop.Model` that names its nodes.
      sizes: keyword sizes for ``model.init``.

    Returns:
      ``(node_report, grad_report)``.
    """
    with jax.enable_x64(True):
        params, x, Y = _point(model, sizes)
        nodes = jaxprop.check_nodes(model, params, x, Y, dtype="float64", jit=False)
        grads = jaxprop.check_grads(model.loss, model.grad, params, x, Y, dtype="float64",
                                    jit=False, fd=False, name=model.name)  # fmt: skip
    return nodes, grads


def _shape_error(model: jaxprop.Model, sizes: dict | None) -> str | None:
    """The dimension error of ``model`` at ``sizes``: the exception raised, or the problems the
    checks report. Raises AssertionError where it runs cleanly (the slip's record is wrong)."""
    if sizes is None:
        return None
    try:
        nodes, grads = check_model(model, sizes)
    except (TypeError, ValueError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    problems = [n.problem for n in nodes.nodes if n.problem] + [
        f"{leaf.path}: {leaf.problem}" for leaf in grads.leaves if leaf.problem
    ]
    if problems:
        return "; ".join(problems)
    raise AssertionError(f"{model.name}: expected a dimension error at {sizes}, none raised")


_CORRECTED: dict = {}


def run_slip(slip: Slip) -> Result:
    """Checks one slip's as-printed variant and corrected model.

    The corrected model of several slips is often the same (same name, same sizes): it is checked
    once per process.

    Args:
      slip: the :class:`Slip`.

    Returns:
      Its :class:`Result`; ``result.as_expected`` says whether it behaves as recorded.
    """
    printed, corrected = slip.make_printed(), slip.make_corrected()
    printed_nodes, printed_grads = check_model(printed, slip.sizes)
    key = (corrected.name, tuple(sorted(slip.sizes.items())))
    if key not in _CORRECTED:
        _CORRECTED[key] = check_model(corrected, slip.sizes)
    corrected_nodes, corrected_grads = _CORRECTED[key]
    return Result(slip, printed_nodes, printed_grads, corrected_nodes, corrected_grads,
                  _shape_error(printed, slip.wrong_sizes))  # fmt: skip

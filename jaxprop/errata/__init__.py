"""The formulas of the four source documents, each checked for exactly when it holds.

For every formula recorded here this package holds an *as printed* backward variant of the
document's network (kept out of the public models and the registry) and its corrected backward
pass, and runs ``jaxprop.check_nodes`` and ``jaxprop.check_grads`` (against ``jax.grad``, float64)
under each reading the entry records (:class:`Case`: numerator or denominator layout, a 1 × 1
factor as a scalar, the loss it is held to, the sizes): where it must hold, the variant passes
both checks; where it must fail, it fails at exactly the node the formula computes (or, for a
parameter gradient, at exactly that leaf, every node passing); where the printed product cannot
be formed, the dimension error is recorded. The corrected model must pass. The verdict follows
from the case the document treats: a *slip* where the formula fails there, *right in the
document's case* where it holds there and fails elsewhere. Terminology, notation and labels are
:data:`REMARKS`, with the passage quoted. docs/errata.md is :func:`markdown` of :func:`run`
(``python experiments/errata.py`` writes it); ``jaxprop errata`` prints :func:`format_table`.

Layout: :mod:`~jaxprop.errata.slip` (the record of a formula, its cases and their checks),
:mod:`~jaxprop.errata.doc000` … :mod:`~jaxprop.errata.doc003` (the as-printed variants, one
module per document), :mod:`~jaxprop.errata.evidence` (the figures that are not node checks, the
remarks, the formulas found correct), :mod:`~jaxprop.errata.render` (the markdown and the
terminal table). ``import jaxprop`` does not import this package.

Documents (../shared/seeds): 000_5eab1a4fa2460359.txt, 001_90440b38c2c51fc3.txt,
002_dadcaa6bdb722c5e.txt, 003_c347acbe1cb23503.txt.

>>> from jaxprop import errata
>>> [(r.fails_at, r.verdict) for r in errata.run(docs=["002"])]
[('st', 'slip')]

May import: ``registry``, ``models``, ``check``, ``model``, ``nn``, ``util``.
"""

from __future__ import annotations

from collections.abc import Iterable

from jaxprop.errata import doc000, doc001, doc002, doc003
from jaxprop.errata.evidence import REMARKS, Remark
from jaxprop.errata.render import format_table, markdown
from jaxprop.errata.slip import DOCS, Case, CaseResult, Result, Slip, run_slip

__all__ = [
    "DOCS",
    "REMARKS",
    "SLIPS",
    "Case",
    "CaseResult",
    "Remark",
    "Result",
    "Slip",
    "check",
    "entries",
    "format_table",
    "markdown",
    "run",
]

#: Every formula with a backward variant, in document order.
SLIPS: tuple[Slip, ...] = doc000.SLIPS + doc001.SLIPS + doc002.SLIPS + doc003.SLIPS

_RESULTS: dict[str, Result] = {}


def _select(docs: Iterable[str] | str | None) -> list[Slip]:
    if docs is None:
        return list(SLIPS)
    docs = [docs] if isinstance(docs, str) else list(docs)
    unknown = [d for d in docs if d not in DOCS]
    if unknown:
        raise ValueError(f"unknown document {unknown[0]!r}; documents are {', '.join(DOCS)}")
    return [s for s in SLIPS if s.doc in docs]


def run(docs: Iterable[str] | str | None = None) -> list[Result]:
    """Checks the slips; does not raise when one misbehaves (see :attr:`Result.as_expected`).

    The checks are deterministic (fixed seed, float64), so each slip is checked once per process
    and its :class:`Result` reused.

    Args:
      docs: the documents whose slips to check, e.g. ``["001"]`` (keys of :data:`DOCS`); all by
        default.

    Returns:
      One :class:`Result` per slip, in the order of :data:`SLIPS`.

    Raises:
      ValueError: for an unknown document; the message lists the valid ones.
    """
    results = []
    for s in _select(docs):
        if s.key not in _RESULTS:
            _RESULTS[s.key] = run_slip(s)
        results.append(_RESULTS[s.key])
    return results


def check(docs: Iterable[str] | str | None = None) -> list[Result]:
    """:func:`run`, raising unless every slip behaves as recorded.

    Raises:
      AssertionError: naming each slip with a case that does not give what it expects (hold,
        fail at exactly its node or leaf, or not form) or whose corrected model does not pass.
      ValueError: for an unknown document.
    """
    results = run(docs)
    bad = [
        f"{r.slip.key}: expected {r.slip.expected_at} where it fails; "
        + "; ".join(
            f"case {i} ({dict(c.case.sizes)}) expects {c.case.expect}, gives {c.outcome}"
            + (f" at {c.fails_at(r.slip)}" if c.outcome == "fails" else "")
            for i, c in enumerate(r.cases)
            if not c.as_expected(r.slip)
        )
        + f"; corrected ok: {r.corrected_passes}"
        for r in results
        if not r.as_expected
    ]
    if bad:
        raise AssertionError("\n".join(bad))
    return results


def entries(results: Iterable[Result] | None = None) -> list[dict]:
    """The results as JSON-ready dicts (:meth:`Result.to_dict`); those of :func:`run` if None."""
    return [r.to_dict() for r in (run() if results is None else results)]

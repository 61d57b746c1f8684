"""The slips of the four source documents, each shown failing at its node.

For every slip in a backward formula this package holds an *as printed* backward variant of the
document's network (kept out of the public models and the registry) and its corrected backward
pass, and runs ``jaxprop.check_nodes`` and ``jaxprop.check_grads`` (against ``jax.grad``, float64)
on both: the as-printed variant must fail at exactly the node the formula computes (or, for a
parameter gradient, at exactly that leaf, every node passing), and the corrected one must pass.
Where the printed formula cannot even run (a dimension error), the error is recorded as well,
and a square case, where it runs, shows that it is also wrong. docs/errata.md is
:func:`markdown` of :func:`run` (``python experiments/errata.py`` writes it); ``jaxprop errata``
prints :func:`format_table`.

Layout: :mod:`~jaxprop.errata.slip` (the record of a slip and its check),
:mod:`~jaxprop.errata.doc000` … :mod:`~jaxprop.errata.doc003` (the as-printed variants, one
module per document), :mod:`~jaxprop.errata.evidence` (the slips that are not backward formulas,
the slips of notation, the formulas found correct), :mod:`~jaxprop.errata.render` (the markdown
and the terminal table). ``import jaxprop`` does not import this package.

Documents (../shared/seeds): 000_5eab1a4fa2460359.txt, 001_90440b38c2c51fc3.txt,
002_dadcaa6bdb722c5e.txt, 003_c347acbe1cb23503.txt.

>>> from jaxprop import errata
>>> [r.fails_at for r in errata.run(docs=["002"])]
['st']
"""

from __future__ import annotations

from collections.abc import Iterable

from jaxprop.errata import doc000, doc001, doc002, doc003
from jaxprop.errata.evidence import NOTATION
from jaxprop.errata.render import format_table, markdown
from jaxprop.errata.slip import DOCS, Result, Slip, run_slip

__all__ = [
    "DOCS",
    "NOTATION",
    "SLIPS",
    "Result",
    "Slip",
    "check",
    "entries",
    "format_table",
    "markdown",
    "run",
]

#: Every slip with a backward variant, in the order of docs/errata.md.
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
      AssertionError: naming each slip whose as-printed variant does not fail exactly where
        expected or whose corrected model does not pass.
      ValueError: for an unknown document.
    """
    results = run(docs)
    bad = [
        f"{r.slip.key}: expected first failing node {r.slip.node!r} / leaf {r.slip.leaf!r}, got "
        f"node {r.printed_nodes.first_failing!r}, leaves {r.printed_grads.failing}; corrected "
        f"ok: {r.corrected_passes}"
        for r in results
        if not r.as_expected
    ]
    if bad:
        raise AssertionError("\n".join(bad))
    return results


def entries(results: Iterable[Result] | None = None) -> list[dict]:
    """The results as JSON-ready dicts (:meth:`Result.to_dict`); those of :func:`run` if None."""
    return [r.to_dict() for r in (run() if results is None else results)]

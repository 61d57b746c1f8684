"""Writes docs/errata.md: the formulas of the four source documents, and exactly when each holds.

Run from the repository root:

    python experiments/errata.py

The as-printed variants, their checks and the markdown are in :mod:`jaxprop.errata`; this script
checks every formula (:func:`jaxprop.errata.check` raises ``AssertionError`` unless every case of
each as-printed variant holds, fails exactly where recorded or cannot be formed, as recorded, and
each corrected one passes), writes the document and prints one line per formula. ``jaxprop
errata`` prints the same checks as a table, without writing.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's jaxprop, wherever the script is run from

from jaxprop import errata  # noqa: E402


def main(argv=None) -> int:
    results = errata.check()
    path = ROOT / "docs" / "errata.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(errata.markdown(results) + "\n", encoding="utf-8")
    for r in results:
        s = r.slip
        kinds = ", ".join(f"{c.case.expect} {c.outcome}" for c in r.cases)
        d = r.diagnosis
        print(
            f"{s.key:20s} {r.verdict}: as printed fails at {r.fails_at} "
            f"({'no diagnosis' if d is None else d.kind}); cases: {kinds}; corrected passes"
        )
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

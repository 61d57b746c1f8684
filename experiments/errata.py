"""Writes docs/errata.md: the slips of the four source documents, each proven numerically.

Run from the repository root:

    python experiments/errata.py

The as-printed variants, their checks and the markdown are in :mod:`jaxprop.errata`; this script
checks every slip (:func:`jaxprop.errata.check` raises ``AssertionError`` unless each as-printed
variant fails exactly where recorded and each corrected one passes), writes the document and
prints one line per slip. ``jaxprop errata`` prints the same checks as a table, without writing.
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
        print(f"{s.key:20s} {errata.DOCS[s.doc]} {s.where}: as printed fails at {r.fails_at}; "
              "corrected passes")  # fmt: skip
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

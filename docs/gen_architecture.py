"""Draws docs/figures/architecture.svg, jaxprop's layers, from the code's own imports.

Every module of jaxprop/ is read (``ast``, imports at any depth, as tests/test_core.py reads them)
and its imports of other jaxprop modules are summed by subpackage (or top-level module): one box
per subpackage, one arrow per pair "A imports B". A box stands one row above every box it imports
(its row is the length of its longest chain of imports), so the rows are the layers and every
arrow points down. Nothing is drawn by hand: a new import moves the picture, and
tests/test_docs_site.py fails while the committed SVG is not what this script draws.

    python docs/gen_architecture.py            # writes docs/figures/architecture.svg
    python docs/gen_architecture.py --check    # exit 1 if the committed file is out of date
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys
from html import escape

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxprop"
OUT = ROOT / "docs" / "figures" / "architecture.svg"

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 150, 46, 24, 52, 20


def _unit(module: str) -> str:
    """The box a module belongs to: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    if len(parts) == 1:
        return "jaxprop"
    return parts[1]


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Box -> the boxes its modules import (jaxprop's root package, the public face, included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":  # ``python -m jaxprop``: runs the command line, nothing else
            continue
        unit = _unit(_module_name(path))
        edges = graph.setdefault(unit, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] if node.module.startswith("jaxprop") else []
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("jaxprop")]
            else:
                continue
            edges |= {_unit(t) for t in targets if t == "jaxprop" or t.startswith("jaxprop.")}
    return {u: {e for e in es if e != u} for u, es in graph.items()}


def modules_of(unit: str) -> int:
    """How many modules a box holds (not their lines: the picture changes with the layout only)."""
    files = (
        [PACKAGE / "__init__.py"]
        if unit == "jaxprop"
        else sorted((PACKAGE / unit).rglob("*.py"))
        if (PACKAGE / unit).is_dir()
        else [PACKAGE / f"{unit}.py"]
    )
    return len(files)


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each box's row: 0 for a box that imports nothing, else one more than its highest import."""
    row: dict[str, int] = {}

    def visit(u: str, stack: tuple[str, ...]) -> int:
        if u in row:
            return row[u]
        if u in stack:
            raise SystemExit(f"import circle: {' -> '.join((*stack, u))}")
        row[u] = 1 + max((visit(v, (*stack, u)) for v in graph.get(u, ())), default=-1)
        return row[u]

    for u in sorted(graph):
        visit(u, ())
    return row


def reduction(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The arrows worth drawing: an import that a chain of other imports already implies (cli ->
    check, where cli -> registry -> check) is left out, so that each arrow shows a layer's own
    step down."""

    def below(u: str) -> set[str]:
        seen, todo = set(), list(graph[u])
        while todo:
            v = todo.pop()
            if v not in seen:
                seen.add(v)
                todo += graph[v]
        return seen

    implied = {u: set().union(*(below(w) for w in vs)) for u, vs in graph.items()}
    return {u: vs - implied[u] for u, vs in graph.items()}


def svg(graph: dict[str, set[str]]) -> str:
    row = layers(graph)
    drawn = reduction(graph)
    top = max(row.values())
    rows: dict[int, list[str]] = {}
    for u in sorted(graph, key=lambda u: (row[u], u)):
        rows.setdefault(row[u], []).append(u)
    # Within a row, boxes in the order of the mean place of what they import (fewer crossings).
    place = {u: float(i) for i, u in enumerate(rows[0])}
    for r in range(1, top + 1):
        rows[r].sort(key=lambda u: (sum(place[v] for v in drawn[u]) / max(len(drawn[u]), 1), u))
        n = len(rows[r])
        scale = (len(rows[r - 1]) - 1) / max(n - 1, 1)
        place.update({u: i * scale for i, u in enumerate(rows[r])})
    width = max(len(r) for r in rows.values()) * (BOX_W + GAP_X) - GAP_X + 2 * MARGIN
    width = max(width, 640)
    height = (top + 1) * (BOX_H + GAP_Y) - GAP_Y + 2 * MARGIN + 40
    pos: dict[str, tuple[float, float]] = {}
    for r, units in rows.items():
        span = len(units) * (BOX_W + GAP_X) - GAP_X
        x0 = (width - span) / 2
        y = MARGIN + 40 + (top - r) * (BOX_H + GAP_Y)
        for i, u in enumerate(units):
            pos[u] = (x0 + i * (BOX_W + GAP_X), y)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
        "<title>jaxprop's layers, from the imports of its modules "
        "(docs/gen_architecture.py)</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#7986cb"/></marker></defs>',
        f'<text x="{MARGIN}" y="{MARGIN + 4}" font-size="13" fill="#333">An arrow: modules of '
        "a box import the box it points to (an import a chain implies is not drawn).</text>",
        f'<text x="{MARGIN}" y="{MARGIN + 22}" font-size="13" fill="#333">A box sits one row '
        "above everything it imports: the rows are the layers.</text>",
    ]
    for u in sorted(drawn):
        x1, y1 = pos[u]
        for v in sorted(drawn[u]):
            x2, y2 = pos[v]
            out.append(
                f'<line x1="{x1 + BOX_W / 2:.1f}" y1="{y1 + BOX_H:.1f}" '
                f'x2="{x2 + BOX_W / 2:.1f}" y2="{y2:.1f}" stroke="#9fa8da" stroke-width="1.2" '
                'marker-end="url(#arrow)"><title>'
                f"{escape(u)} imports {escape(v)}</title></line>"
            )
    for u, (x, y) in sorted(pos.items()):
        modules = modules_of(u)
        label = "jaxprop (public face)" if u == "jaxprop" else u + ("/" if modules > 1 else ".py")
        fill = "#e8eaf6" if u != "jaxprop" else "#fff3e0"
        out += [
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{fill}" stroke="#3949ab" stroke-width="1.2"/>',
            f'<text x="{x + BOX_W / 2:.1f}" y="{y + 19:.1f}" text-anchor="middle" '
            f'font-weight="bold">{escape(label)}</text>',
            f'<text x="{x + BOX_W / 2:.1f}" y="{y + 35:.1f}" text-anchor="middle" '
            f'fill="#555">{modules} module{"s" if modules > 1 else ""}</text>',
        ]
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = svg(imports())
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python docs/gen_architecture.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

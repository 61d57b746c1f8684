"""The equation → code tables of the documentation site, generated from the code's comments.

Every line of a backward pass cites the equation it implements in a comment (``# eq (10)``,
``# (5.113)``, ``# (003 [6], [7])``, ``# (000, dc)``). This module reads

- each source document's equation labels from its text (``../shared/seeds``): 001's ``\\tag{N}``;
  002's ``(5.NN)`` (a ``\\tag`` or a label closing its display) and the lecture's named displays
  (Total Cost, Problem Formulation, Forward Path, Backward Path (1)-(4), approaches 1 and 2);
  000's definitions (``dL``, ``db``, … by ``\\stackrel{def}``, the local derivatives ∂y/∂ŷ …, and
  the loss L); 003's displays in the order printed, ``[1]``, ``[2]``, … (the document numbers
  none; the code numbers them so, see :data:`CONTINUED`);
- every comment of ``jaxprop/models/*.py`` and ``jaxprop/errata/*.py`` (:data:`CODE`) with the
  citations in it, each attached to the code line it explains (a trailing comment: its own line;
  a comment line: the next line of code),

and builds, per document, the table equation → file:line (:func:`table`). An equation that
defines a computation and has no citing line is listed as *uncited*; a citation that names an
equation the document does not have raises :class:`CitationError` (the site's build fails on it,
``docs/hooks.py``).

Run ``python docs/gen_equations.py`` to print the tables and the uncited equations.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import io
import pathlib
import re
import tokenize
import unicodedata
from collections.abc import Iterable, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The documents beside the checkout (../shared/seeds) or, on a machine without them (a fresh CI
# checkout), the copies in docs/sources (tests/test_docs_site.py keeps the two identical).
BESIDE = ROOT.parent / "shared" / "seeds"
SEEDS = BESIDE if BESIDE.is_dir() else ROOT / "docs" / "sources"

#: The four source documents, by number.
DOCUMENTS = {
    "000": "000_5eab1a4fa2460359.txt",
    "001": "001_90440b38c2c51fc3.txt",
    "002": "002_dadcaa6bdb722c5e.txt",
    "003": "003_c347acbe1cb23503.txt",
}

#: The code whose comments are read, relative to the repository.
CODE = ("jaxprop/models", "jaxprop/errata")

#: 003 numbers none of its formulas; the code cites its displays in the order printed, except
#: that display 5 continues display 4 (the same left side, ∂in_k/∂w_jk, evaluated after a
#: sentence of text): both are [4]. Checked: a continued display must have the previous one's
#: left side.
CONTINUED = {"003": (5,)}

#: Labels that state notation, a dimension or a rule rather than a computation: listed, never
#: reported as uncited.
NOT_COMPUTED = {
    "002": {
        "(5.40)": "notation: the partial derivatives collected in a row vector",
        "(5.46)": "a rule of differentiation (product rule)",
        "(5.47)": "a rule of differentiation (sum rule)",
        "(5.49)": "the chain rule for f(x1(t), x2(t)), as (5.48) applies it",
        "(5.51)": "the chain rule for f(x1(s, t), x2(s, t)); checked through (5.53)",
        "(5.52)": "the chain rule for f(x1(s, t), x2(s, t)); checked through (5.53)",
        "(5.54)": "notation: a vector of functions",
        "(5.56a)": "notation: the Jacobian's columns",
        "(5.56b)": "notation: the Jacobian's entries",
        "(5.57)": "definition of the Jacobian",
        "(5.58)": "definition of the Jacobian",
        "(5.59)": "the Jacobian's index convention",
        "(5.78)": "the gradient's dimension",
        "(5.86)": "the gradient's dimension",
        "(5.111)": "the network as a composition, computed by (5.112)-(5.113)",
    },
}


class CitationError(ValueError):
    """A comment cites an equation its document does not have."""


@dataclasses.dataclass(frozen=True)
class Equation:
    """One labelled equation of a document.

    Attributes:
      doc: the document's number ("001").
      label: as the code cites it: "(7)", "(5.113)", "[4]", "db", "∂y/∂ŷ", "path (1)".
      latex: the equation as printed (LaTeX; the displays joined where a label spans several).
      computed: whether it defines a computation (else :data:`NOT_COMPUTED` says what it is).
    """

    doc: str
    label: str
    latex: str
    computed: bool = True

    @property
    def anchor(self) -> str:
        """The HTML id of its row in the table."""
        slug = re.sub(r"[^0-9A-Za-z]+", "-", unicodedata.normalize("NFKD", self.label))
        return f"eq-{self.doc}-{slug.strip('-') or 'x'}"


@dataclasses.dataclass(frozen=True)
class Citation:
    """One citation of an equation by a comment.

    Attributes:
      doc, label: the equation cited.
      path: the file, relative to the repository ("jaxprop/models/seed001.py").
      line: the code line the comment explains (1-based).
      comment_line: the comment's own line.
      code: that code line, without its comment.
      ranged: cited only as part of a range ("(5.115)–(5.118)").
    """

    doc: str
    label: str
    path: str
    line: int
    comment_line: int
    code: str
    ranged: bool = False


# -- the documents' labels -------------------------------------------------------------------


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _displays(text: str) -> list[re.Match]:
    return list(re.finditer(r"\$\$(.*?)\$\$", text, re.S))


def labels_001(text: str) -> list[Equation]:
    out = []
    for m in re.finditer(r"\\\[(.*?)\\\]", text, re.S):
        tag = re.search(r"\\tag\{(\d+)\}", m.group(1))
        if tag:
            latex = m.group(1).replace(tag.group(0), "")
            out.append(Equation("001", f"({tag.group(1)})", latex.strip()))
    return out


_LABEL_002 = re.compile(
    r"\\tag\{(5\.\d+[a-z]?)\}|\((5\.\d+[a-z]?)\)(?=[ \t]*(?:\$\$)?[ \t]*$)", re.M
)
_LECTURE = re.compile(
    r"^(Total Cost|Problem Formulation|Forward Path|Backward Path \((\d)\)[^\n]*)$", re.M
)
_LABEL_END = re.compile(r",?\s*(?:\\q?quad)?\s*\(5\.\d+[a-z]?\)\s*$")
_APPROACH = re.compile(r"^\([ab]\) Approach (\d):(.*)$", re.M)
_MATH = re.compile(r"\$\$(.*?)\$\$|\$([^$\n]+)\$", re.S)


def labels_002(text: str) -> list[Equation]:
    out: list[Equation] = []
    chapter = text.index("Vector Calculus")
    # The lecture (before the chapter, and its specific example after it): headings name it.
    heads = list(_LECTURE.finditer(text))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        if m.start() < chapter < end:
            end = chapter
        body = text[m.end() : end]
        label = f"path ({m.group(2)})" if m.group(2) else m.group(1)
        if label in ("Total Cost", "Problem Formulation"):  # their prose has inline symbols
            maths = [d.group(1).strip() for d in _displays(body)]
        else:  # the specific example's lines are inline math
            maths = [(a or b).strip() for a, b in _MATH.findall(body)]
        out.append(Equation("002", label, _gather(maths)))
    # The chapter: (5.NN) closing a display, or \tag{5.NN}.
    displays = _displays(text)
    seen, previous = set(), chapter
    for m in _LABEL_002.finditer(text, chapter):
        number = m.group(1) or m.group(2)
        label = f"({number})"
        if label not in seen:
            seen.add(label)
            maths = [
                d.group(1).strip() for d in displays if d.end() > previous and d.start() < m.end()
            ]
            maths = [_LABEL_END.sub("", re.sub(r"\\tag\{[^}]*\}", "", x)) for x in maths]
            computed = label not in NOT_COMPUTED.get("002", {})
            out.append(Equation("002", label, _gather(maths), computed))
        inside = [d for d in displays if d.start() < m.start() < d.end()]
        previous = inside[0].end() if inside else m.end()
    for m in _APPROACH.finditer(text):
        maths = re.findall(r"\$([^$]+)\$", m.group(2))
        out.append(Equation("002", f"approach {m.group(1)}", _gather(maths)))
    return out


_TRAILING = re.compile(r"(?:\s|\\[,;:! ]|[,.])+$")


def _gather(maths: Sequence[str]) -> str:
    maths = [_TRAILING.sub("", x) for x in maths if x.strip() and x.strip() != r"\vdots"]
    if len(maths) == 1:
        return maths[0]
    return r"\begin{gathered}" + r" \\ ".join(maths) + r"\end{gathered}"


def _000_name(lhs: str) -> str:
    """``\\frac{\\partial \\hat{y}}{\\partial U}`` → ``∂ŷ/∂U``."""
    m = re.fullmatch(r"\\frac\{\\partial (.+?)\}\{\\partial (.+?)\}", lhs.strip())
    if not m:
        return ""

    def plain(s: str) -> str:
        return _nfc(re.sub(r"\\hat\{(\w)\}", "\\1\u0302", s).strip())

    return f"∂{plain(m.group(1))}/∂{plain(m.group(2))}"


def labels_000(text: str) -> list[Equation]:
    groups: dict[str, list[str]] = {}
    for d in _displays(text):
        body = d.group(1).strip()
        if r"\begin{align}" not in body:
            if re.match(r"L(\(x\))?\s*=", body):
                groups.setdefault("L", [body])
            continue
        inner = body.replace(r"\begin{align}", "").replace(r"\end{align}", "")
        current = None
        for row in inner.split(r"\\"):
            row = row.strip()
            lhs = row.split("&", 1)[0].strip()
            if row.startswith("&") and current:
                groups[current].append(row)
            elif r"\stackrel{\mathrm{def}}" in row:
                current = lhs
                groups[current] = [row]
            elif _000_name(lhs):
                current = _000_name(lhs)
                groups[current] = [row]
    return [
        Equation("000", label, r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}")
        for label, rows in groups.items()
    ]


def _lhs(latex: str) -> str:
    body = latex.replace(r"\begin{aligned}", "").strip()
    return body.split("=", 1)[0].replace("&", "").strip()


def labels_003(text: str) -> list[Equation]:
    out: list[Equation] = []
    for number, d in enumerate(_displays(text), start=1):
        body = d.group(1).strip()
        if number in CONTINUED.get("003", ()):
            previous = out[-1]
            if _lhs(previous.latex) != _lhs(body):
                raise CitationError(
                    f"003: display {number} is declared to continue display {number - 1}, but "
                    f"their left sides differ: {_lhs(body)!r} vs {_lhs(previous.latex)!r}"
                )
            out[-1] = dataclasses.replace(previous, latex=_gather([previous.latex, body]))
            continue
        out.append(Equation("003", f"[{len(out) + 1}]", body))
    return out


_PARSERS = {"000": labels_000, "001": labels_001, "002": labels_002, "003": labels_003}


def equations(doc: str, text: str | None = None) -> list[Equation]:
    """The document's labelled equations, in the order printed."""
    if text is None:
        path = SEEDS / DOCUMENTS[doc]
        if not path.is_file():
            raise CitationError(
                f"the source document {path} is missing (expected ../shared/seeds or docs/sources)"
            )
        text = path.read_text(encoding="utf-8")
    return _PARSERS[doc](text)


# -- the code's citations --------------------------------------------------------------------

_FILE_DOC = (
    (re.compile(r"models/seed000\.py$|errata/doc000\.py$"), "000"),
    (re.compile(r"models/seed001\.py$|errata/doc001\.py$"), "001"),
    (re.compile(r"models/seed002\w*\.py$|errata/doc002\.py$"), "002"),
    (re.compile(r"models/_?seed003\w*\.py$|errata/doc003\.py$"), "003"),
)

_RANGE = r"\s*(?:-|–|to)\s*"
_TOKEN = re.compile(
    "|".join(
        (
            r"(?P<r5>\((?P<a5>5\.\d+[a-z]?)\)" + _RANGE + r"\((?P<b5>5\.\d+[a-z]?)\))",
            r"(?P<e5>\((?P<n5>5\.\d+[a-z]?)\b)",
            r"(?P<eq>\beqs?\s*(?P<eqlist>\(\d+\)(?:\s*(?:,|and|-|–)\s*\(\d+\))*))",
            r"(?P<path>\bpaths?\s*(?P<plist>\(\d\)(?:\s*(?:,|and)\s*\(\d\))*))",
            r"(?P<named>\((?P<name>Total Cost|Problem Formulation|Forward Path)\))",
            r"(?P<appr>\bapproach (?P<an>\d)\b)",
            r"(?P<br>(?<![\w\])])\[(?P<bn>\d+)\](?:" + _RANGE + r"\[(?P<bm>\d+)\])?)",
            r"(?P<z>\b000(?:\s*§[\d.]+)?,\s*(?P<zl>d[A-Za-z]+|L)\b)",
            r"(?P<doc>(?<![\d.])(?P<dn>00[0-3])(?![\d.]))",
            r"(?P<del>∂\S+?/∂\S+?)(?=\s*=)",
        )
    )
)


def _file_doc(path: str) -> str | None:
    for pattern, doc in _FILE_DOC:
        if pattern.search(path):
            return doc
    return None


def _number(label: str) -> tuple:
    m = re.search(r"(\d+)(?:\.(\d+))?([a-z]?)", label)
    assert m, label
    return (int(m.group(1)), int(m.group(2) or 0), m.group(3))


def _expand(doc: str, first: str, last: str, known: Sequence[str]) -> list[str]:
    """The labels of ``doc`` from ``first`` to ``last`` (both must exist)."""
    for end in (first, last):
        if end not in known:
            raise CitationError(f"{doc} has no equation {end}")
    lo, hi = _number(first), _number(last)
    return [k for k in known if k[0] in "([" and lo <= _number(k) <= hi]


def _cites(
    comment: str, default: str | None, known: dict[str, list[str]]
) -> Iterable[tuple[str, str, bool]]:
    """(doc, label, ranged) for every citation in one comment's text; ``default`` is the document
    a citation without a document number refers to."""
    current = default
    for m in _TOKEN.finditer(comment):
        if m.group("doc"):
            current = m.group("dn")
        elif m.group("r5"):
            for label in _expand("002", f"({m.group('a5')})", f"({m.group('b5')})", known["002"]):
                yield "002", label, True
        elif m.group("e5"):
            yield "002", f"({m.group('n5')})", False
        elif m.group("eq"):
            doc = current or "001"
            items = re.findall(r"\((\d+)\)|(-|–)", m.group("eqlist"))
            labels = [f"({n})" if n else "-" for n, _ in items]
            i = 0
            while i < len(labels):
                if i + 2 < len(labels) and labels[i + 1] == "-":
                    for inner in _expand(doc, labels[i], labels[i + 2], known[doc]):
                        yield doc, inner, True
                    i += 3
                else:
                    if labels[i] != "-":
                        yield doc, labels[i], False
                    i += 1
        elif m.group("path"):
            for n in re.findall(r"\((\d)\)", m.group("plist")):
                yield "002", f"path ({n})", False
        elif m.group("named"):
            yield "002", m.group("name"), False
        elif m.group("appr"):
            yield "002", f"approach {m.group('an')}", False
        elif m.group("br") and current == "003":
            if m.group("bm"):
                yield from (
                    ("003", label, True)
                    for label in _expand(
                        "003", f"[{m.group('bn')}]", f"[{m.group('bm')}]", known["003"]
                    )
                )
            else:
                yield "003", f"[{m.group('bn')}]", False
        elif m.group("z"):
            yield "000", m.group("zl"), False
        elif m.group("del") and current == "000":
            label = _nfc(m.group("del"))
            if label in known["000"]:  # a local derivative named as the document names it
                yield "000", label, False


def _comments(source: str) -> list[tuple[int, int, str]]:
    """(line, column, text after '#') of every comment."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.start[1], tok.string.lstrip("#:").strip()))
    return out


def _statement_starts(source: str) -> dict[int, int]:
    """line → the first line of the innermost statement that contains it."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.stmt):
            spans.append((node.end_lineno - node.lineno, node.lineno, node.end_lineno))
    out: dict[int, int] = {}
    for _, first, last in sorted(spans, reverse=True):  # the innermost last, so it wins
        for n in range(first, (last or first) + 1):
            out[n] = first
    return out


def citations_in(
    path: str, source: str, known: dict[str, list[str]] | None = None
) -> list[Citation]:
    """Every citation in one file's comments. Raises :class:`CitationError` for a citation of an
    equation its document does not have (naming the file and line)."""
    if known is None:
        known = {doc: [e.label for e in equations(doc)] for doc in DOCUMENTS}
    lines = source.splitlines()
    comments = _comments(source)
    comment_cols = {line: col for line, col, _ in comments}
    code_only = {
        n: (lines[n - 1][: comment_cols[n]] if n in comment_cols else lines[n - 1]).rstrip()
        for n in range(1, len(lines) + 1)
    }
    start = _statement_starts(source)
    default, sticky = _file_doc(path), None
    out: list[Citation] = []
    for line, _, text in comments:
        target = line
        while target <= len(lines) and not code_only[target].strip():
            target += 1
        if target > len(lines):
            target = line
        target = start.get(target, target)
        try:
            found = list(_cites(text, default or sticky, known))
        except CitationError as e:
            raise CitationError(f"{path}:{line}: {e} (comment: {text!r})") from None
        explicit = re.findall(r"(?<![\d.])(00[0-3])(?![\d.])", text)
        if explicit and default is None:
            sticky = explicit[-1]
        for doc, label, ranged in found:
            if label not in known[doc]:
                raise CitationError(
                    f"{path}:{line}: cites {doc} {label}, which {DOCUMENTS[doc]} does not have "
                    f"(its labels: {', '.join(known[doc])}); comment: {text!r}"
                )
            code = code_only[target].strip()
            out.append(Citation(doc, label, path, target, line, code, ranged))
    return out


def all_citations(root: pathlib.Path = ROOT) -> list[Citation]:
    known = {doc: [e.label for e in equations(doc)] for doc in DOCUMENTS}
    out = []
    for folder in CODE:
        for file in sorted((root / folder).glob("*.py")):
            rel = file.relative_to(root).as_posix()
            out += citations_in(rel, file.read_text(encoding="utf-8"), known)
    return out


# -- the tables ------------------------------------------------------------------------------


def source_page(path: str) -> str:
    """The site page that shows a source file with line anchors."""
    return "source/" + path.removesuffix(".py").replace("/", ".") + ".md"


def line_link(path: str, line: int, page: str) -> str:
    """A link from ``page`` to line ``line`` of ``path``'s source page."""
    depth = page.count("/")
    return "../" * depth + source_page(path) + f"#__span-0-{line}"


def _cell_math(latex: str) -> str:
    """LaTeX as inline math in a markdown table cell (no pipes, no newlines)."""
    latex = " ".join(latex.replace(r"\|", r"\Vert ").replace("|", r"\vert ").split())
    return f"$\\displaystyle {latex}$"


def table(doc: str, citations: Sequence[Citation], page: str, text: str | None = None) -> str:
    """The markdown table equation → code of one document, for the site page ``page``."""
    rows = [
        "| equation | as printed | implemented at |",
        "| --- | --- | --- |",
    ]
    by_label: dict[str, list[Citation]] = {}
    for c in citations:
        if c.doc == doc:
            by_label.setdefault(c.label, []).append(c)
    for eq in equations(doc, text):
        cites = by_label.get(eq.label, [])
        direct = [c for c in cites if not c.ranged]
        ranged = [c for c in cites if c.ranged]
        cells = [_code_cell(c, page) for c in direct]
        if ranged:
            cells.append(
                "in a range: " + ", ".join(_code_cell(c, page, short=True) for c in ranged)
            )
        if not cells:
            note = NOT_COMPUTED.get(doc, {}).get(eq.label)
            cells = [f"*{note}*" if note else "**uncited**"]
        label = html.escape(eq.label)
        rows.append(
            f'| <span id="{eq.anchor}"></span>{label} | {_cell_math(eq.latex)} | '
            + "<br>".join(cells)
            + " |"
        )
    return "\n".join(rows) + "\n"


def _code_cell(c: Citation, page: str, short: bool = False) -> str:
    name = f"{pathlib.PurePosixPath(c.path).name}:{c.line}"
    link = f"[`{name}`]({line_link(c.path, c.line, page)})"
    if short:
        return link
    code = c.code if len(c.code) <= 70 else c.code[:67] + "…"
    code = code.replace("|", "\\|").replace("`", "'")
    return f"{link} `{code}`"


def uncited(doc: str, citations: Sequence[Citation]) -> list[str]:
    """The labels of ``doc`` that define a computation and no comment cites."""
    cited = {c.label for c in citations if c.doc == doc}
    return [e.label for e in equations(doc) if e.computed and e.label not in cited]


# -- the errata entries and the API page ---------------------------------------------------


def errata_table(doc: str, slips: Sequence, errata_md: str, page: str) -> str:
    """The entries of ``jaxprop.errata`` for ``doc``, each linked to its section of errata.md
    (found by its heading ``### KEY: … { #KEY }``: the id the heading gives itself, or the slug
    of its text where it gives none)."""
    from markdown.extensions.toc import slugify

    headings = {}
    for line in errata_md.splitlines():
        m = re.match(r"### (\S+?): (.*?)(?: \{ #(\S+) \})?$", line)
        if m:
            headings[m.group(1)] = m.group(3) or slugify(line[4:].strip(), "-")
    up = "../" * page.count("/")
    rows = ["| entry | equation | as printed | corrected |", "| --- | --- | --- | --- |"]
    for s in slips:
        if s.doc != doc:
            continue
        if s.key not in headings:
            raise CitationError(f"errata.md has no section for {s.key}")
        link = f"[`{s.key}`]({up}errata.md#{headings[s.key]})"
        where = s.where.replace("|", "\\|").replace("[", "&#91;")
        # As code: the printed matrices "[a] [b]" are no links; a pipe would end the cell.
        printed, corrected = (
            f"`{t.replace('|', '∣').replace('`', '')}`" for t in (s.printed, s.corrected)
        )
        rows.append(f"| {link} | {where} | {printed} | {corrected} |")
    return "\n".join(rows) + "\n"


def public_names(init: pathlib.Path | None = None) -> dict[str, str]:
    """name → the module that defines it, for every name of ``jaxprop.__all__`` (read from the
    source, in ``__all__``'s order)."""
    init = init or ROOT / "jaxprop" / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    where: dict[str, str] = {}
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                where[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "__all__":
                    names = list(ast.literal_eval(node.value))
                elif isinstance(target, ast.Name):
                    where[target.id] = "jaxprop"
    return {name: where.get(name, "jaxprop") for name in names}


def api_markdown(names: dict[str, str]) -> str:
    """One ``::: jaxprop.NAME`` entry per public name, a section per defining module."""
    by_module: dict[str, list[str]] = {}
    for name, module in names.items():
        by_module.setdefault(module, []).append(name)
    out = []
    for module in sorted(by_module):
        out.append(f"## `{module}`\n")
        for name in by_module[module]:
            out.append(f"::: jaxprop.{name}\n")
    return "\n".join(out)


if __name__ == "__main__":
    cites = all_citations()
    for doc in DOCUMENTS:
        print(f"## {doc}: {len([c for c in cites if c.doc == doc])} citations; uncited:",
              ", ".join(uncited(doc, cites)) or "none")  # fmt: skip

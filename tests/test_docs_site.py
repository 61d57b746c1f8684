"""The documentation site's sources (mkdocs.yml, docs/): the tutorials run as written, the equation
→ code generator holds every citation in the code to an equation its document has, the API page
covers ``jaxprop.__all__``, and the home page's set-up commands are the README's. The site itself
is built by ``mkdocs build --strict`` in .ci/run; the test of the built API page builds it once
(the ``built_site`` fixture). The ``test`` extra installs the ``docs`` extra, so the README's test
command runs these; they are skipped only where the docs extra is absent (a bare pytest run)."""

import ast
import contextlib
import dataclasses
import html.parser
import importlib.util
import inspect
import io
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import jaxprop

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.S)
NUMBER = re.compile(r"-?\d+\.\d+(e[+-]\d+)?|-?\d+e[+-]\d+|\[[\d, ]*\]")
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


eqs = _load("gen_equations")


def _normalise(text: str) -> list[str]:
    return [" ".join(NUMBER.sub("#", line).split()) for line in text.strip().splitlines()]


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.name)
def test_the_tutorial_runs_and_shows_what_it_prints(page):
    """Its python blocks run in order in one namespace; a text block right after one shows what
    that block printed (figures blanked)."""
    namespace: dict = {"__name__": "tutorial"}
    printed = None
    for kind, body in BLOCK.findall(page.read_text(encoding="utf-8")):
        if kind == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, str(page), "exec"), namespace)
            printed = out.getvalue()
        else:
            assert printed is not None, f"{page.name}: a text block follows no python block"
            assert _normalise(body) == _normalise(printed), f"shows\n{body}\nprints\n{printed}"
            printed = None


def test_the_documents_labels_are_parsed_from_their_text():
    labels = {doc: [e.label for e in eqs.equations(doc)] for doc in eqs.DOCUMENTS}
    assert labels["001"] == [f"({n})" for n in range(1, 18)]
    assert labels["003"] == [f"[{n}]" for n in range(1, 13)]
    assert {"dL", "db", "dW", "dc", "dU", "∂y/∂ŷ", "∂ĥ/∂W", "L"} <= set(labels["000"])
    assert {"(5.39)", "(5.53)", "(5.83)", "(5.113)", "(5.118)", "(5.56a)", "Total Cost"} <= set(
        labels["002"]
    )
    assert {"path (1)", "path (4)", "approach 1", "approach 2"} <= set(labels["002"])
    assert len(labels["002"]) == len(set(labels["002"]))  # the repeated passages count once


def test_every_citation_in_the_code_names_an_equation_of_its_document():
    cites = eqs.all_citations()  # raises CitationError otherwise
    for doc in eqs.DOCUMENTS:
        assert sum(c.doc == doc for c in cites) >= 10, doc
    for c in cites[:: max(1, len(cites) // 40)]:  # the line is the code the comment explains
        line = (ROOT / c.path).read_text(encoding="utf-8").splitlines()[c.line - 1]
        assert line.strip() and not line.strip().startswith("#"), c
        assert c.code == line.split("  #")[0].strip(), c


@pytest.mark.parametrize(
    ("path", "old", "new", "message"),
    [
        ("jaxprop/models/seed001.py", "(eq (11))", "(eq (18))", "cites 001 (18)"),
        ("jaxprop/models/seed002.py", "f_0 := x (5.112)", "f_0 := x (5.212)", "cites 002 (5.212)"),
        ("jaxprop/models/seed002.py", "(5.115)–(5.118) (softmax", "(5.115)–(5.119) (softmax",
         "002 has no equation (5.119)"),
        ("jaxprop/models/seed003.py", "(003 [3])", "(003 [13])", "cites 003 [13]"),
        ("jaxprop/models/seed000.py", "(000, dU)", "(000, dZ)", "cites 000 dZ"),
        ("jaxprop/models/seed002_lecture.py", "(path (1))", "(path (5))", "cites 002 path (5)"),
    ],
)  # fmt: skip
def test_a_planted_citation_of_a_missing_equation_fails(path, old, new, message):
    source = (ROOT / path).read_text(encoding="utf-8")
    assert old in source
    with pytest.raises(eqs.CitationError, match=re.escape(message)) as info:
        eqs.citations_in(path, source.replace(old, new, 1))
    assert re.search(re.escape(path) + r":\d+", str(info.value))  # names the file and line


def test_the_table_links_each_equation_to_its_lines_and_lists_the_uncited():
    cites = [c for c in eqs.all_citations() if not (c.doc == "001" and c.label == "(6)")]
    table = eqs.table("001", cites, "documents/001.md")
    rows = {row.split("</span>")[1].split(" |")[0]: row for row in table.splitlines()[2:]}
    assert list(rows) == [f"({n})" for n in range(1, 18)]
    assert "**uncited**" in rows["(6)"] and "uncited" not in rows["(7)"]
    assert "../source/jaxprop.models.seed001.md#__span-0-" in rows["(10)"]
    assert "(6)" in eqs.uncited("001", cites) and "(7)" not in eqs.uncited("001", cites)
    assert "|" not in rows["(16)"].split(" | ")[1].replace("\\|", "")  # math without pipes


def test_every_document_page_shows_its_tables_and_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for doc in eqs.DOCUMENTS:
        text = (DOCS / "documents" / f"{doc}.md").read_text(encoding="utf-8")
        assert f"<!-- equations {doc} -->" in text and f"<!-- errata {doc} -->" in text
    for page in sorted(DOCS.rglob("*.md")):
        assert page.relative_to(DOCS).as_posix() in nav, f"{page} is not in mkdocs.yml's nav"


def test_the_api_page_documents_every_public_name():
    names = eqs.public_names()
    assert list(names) == list(jaxprop.__all__)
    page = eqs.api_markdown(names)
    for name, module in names.items():
        assert f"::: jaxprop.{name}\n" in page
        obj = getattr(jaxprop, name)
        if callable(obj) and hasattr(obj, "__module__") and not isinstance(obj, dict):
            assert obj.__module__ == module, name


def test_the_home_page_has_the_readmes_set_up_commands():
    def commands(text):
        return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert commands((DOCS / "index.md").read_text(encoding="utf-8")) == commands(readme)
    assert ".[docs]" in readme and "mkdocs serve" in readme


def test_sphinx_roles_become_cross_references_or_code():
    pytest.importorskip("griffe")
    roles = _load("griffe_roles")

    class Package:  # no member lookups resolve
        def __getitem__(self, path):
            raise KeyError(path)

    targets = roles._Targets(Package())
    text = (
        ":class:`~jaxprop.Model`, :func:`jaxprop.check.check_grads`, :func:`check_nodes`, "
        ":mod:`jaxprop.check.fd`, :func:`jax.lax.scan`"
    )
    assert roles.convert(text, ["jaxprop.check.nodes"], targets) == (
        "[`Model`][jaxprop.Model], [`jaxprop.check.check_grads`][jaxprop.check_grads], "
        "[`check_nodes`][jaxprop.check_nodes], `jaxprop.check.fd`, `jax.lax.scan`"
    )
    fenced = roles.convert("Text.\n\n>>> 1 + 1\n2\n\nMore.", [], targets)
    assert fenced == "Text.\n\n```pycon\n>>> 1 + 1\n2\n```\n\nMore."


def test_the_copies_of_the_documents_are_the_documents():
    # docs/sources holds the documents for a checkout without ../shared/seeds (a fresh CI run).
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent
    beside = root.parent / "shared" / "seeds"
    copies = sorted((root / "docs" / "sources").glob("*.txt"))
    assert [c.name for c in copies] == [
        "000_5eab1a4fa2460359.txt", "001_90440b38c2c51fc3.txt", "002_dadcaa6bdb722c5e.txt",
        "003_c347acbe1cb23503.txt",
    ]  # fmt: skip
    if beside.is_dir():
        for c in copies:
            assert c.read_bytes() == (beside / c.name).read_bytes(), c.name


_VOID = {"br", "img", "input", "hr", "meta", "link", "wbr"}
_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class _Page(html.parser.HTMLParser):
    """The API page as mkdocstrings renders it, one entry per ``<h3 id="jaxprop.NAME">``: its
    signature block, as shown and with every cross-referenced name (``zeros``) as the path of
    its ``title`` (``numpy.zeros``), and the rows of its own tables (those before its first
    member's heading) as ``(section title, header row, cells)``."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, dict] = {}
        self._entry: dict | None = None  # the entry whose own content is being read
        self._open: list[tuple[str, str, bool]] = []  # (tag, class, titled) of open elements
        self._shown: list[str] | None = None  # the signature block being read
        self._paths: list[str] = []
        self._title = ""
        self._header: tuple[str, ...] = ()
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        cls, title = attrs.get("class") or "", attrs.get("title") or ""
        if re.fullmatch(r"h[1-6]", tag):
            name = (attrs.get("id") or "").removeprefix("jaxprop.")
            if tag == "h3" and name != attrs.get("id") and "." not in name:
                self._entry = self.entries[name] = {"shown": None, "paths": None, "rows": []}
            else:  # a member's or a module's heading: the entry's own content has ended
                self._entry = None
        if tag in _VOID:
            return
        titled = self._shown is not None and tag == "span" and bool(_PATH.fullmatch(title))
        if titled and not any(t for _, _, t in self._open):
            self._paths.append(title)
        self._open.append((tag, cls, titled))
        if "doc-signature" in cls and self._entry is not None and self._entry["shown"] is None:
            self._shown, self._paths = [], []
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in _VOID or not self._open:
            return
        _, cls, _ = self._open.pop()
        if "doc-signature" in cls and self._shown is not None and self._entry is not None:
            self._entry["shown"], self._entry["paths"] = "".join(self._shown), "".join(self._paths)
            self._shown = None
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._entry is not None and "doc-section-item" in cls:
                self._entry["rows"].append((self._title, self._header, self._row))
            elif self._row:
                self._header = tuple(self._row)
            self._row = None

    def handle_data(self, data):
        if self._shown is not None:
            self._shown.append(data)
            if not any(t for _, _, t in self._open):
                self._paths.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._open and "doc-section-title" in self._open[-1][1]:
            self._title = data.strip().rstrip(":")


def _line_length() -> int:
    found = re.search(r"^\s*line_length:\s*(\d+)", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert found, "mkdocs.yml sets no line_length for the signatures"
    return int(found.group(1))


def _signed(obj) -> inspect.Signature | None:
    """``inspect.signature(obj)`` for a public function or instantiable class, else None."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return None
    if getattr(obj, "_is_protocol", False):  # a Protocol: not instantiated, no signature
        return None
    try:
        return inspect.signature(obj)
    except ValueError:  # an exception class with BaseException's own __init__
        return None


def _parameters(text: str) -> list[tuple[str, inspect._ParameterKind, ast.expr | None]]:
    """(name, kind, default) of every parameter of a signature ``name(...) -> ...``."""
    tree = ast.parse("def f" + text[text.index("(") :] + ": pass")
    args = tree.body[0].args  # type: ignore[attr-defined]
    P = inspect.Parameter
    positional = [(a, P.POSITIONAL_ONLY) for a in args.posonlyargs]
    positional += [(a, P.POSITIONAL_OR_KEYWORD) for a in args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    shown = [(a.arg, kind, d) for (a, kind), d in zip(positional, defaults, strict=True)]
    if args.vararg:
        shown.append((args.vararg.arg, P.VAR_POSITIONAL, None))
    shown += [
        (a.arg, P.KEYWORD_ONLY, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        shown.append((args.kwarg.arg, P.VAR_KEYWORD, None))
    return shown


def _value(expr: ast.expr):
    """A default as the page shows it, its names as full paths (``numpy.zeros``), evaluated."""
    roots = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
    namespace = {}
    for root in roots:
        with contextlib.suppress(ImportError):
            namespace[root] = importlib.import_module(root)
    return eval(compile(ast.Expression(expr), "<default>", "eval"), namespace)


def _same(shown, real) -> bool:
    if isinstance(real, np.ndarray):
        same_dtype = isinstance(shown, np.ndarray) and shown.dtype == real.dtype
        return same_dtype and np.array_equal(shown, real)
    return shown is real or (type(shown) is type(real) and shown == real)


def api_signature_problems(page_html: str) -> list[str]:
    """Everything wrong with the API page's entries of ``jaxprop.__all__``, none when right: a
    function or class whose signature shown is not one readable signature, lacks a parameter of
    ``inspect.signature`` or its default (the page's expression evaluates to another value),
    shows one it does not have, or has a line longer than mkdocs.yml's ``line_length``
    (unformatted: cut off by the block's edge); a table row whose name has a comma (an Args line
    for several parameters, rendered as one); a "Parameters" row that is no parameter."""
    page = _Page()
    page.feed(page_html)
    width = _line_length()
    problems = []
    for name in jaxprop.__all__:
        obj, entry = getattr(jaxprop, name), page.entries.get(name)
        if entry is None:
            problems.append(f"{name}: no entry on the API page")
            continue
        for title, header, cells in entry["rows"]:
            if header[:1] == ("Name",) and "," in cells[0]:
                problems.append(f"{name}: {title} row {cells[0]!r} names several")
        sig = _signed(obj)
        if sig is None:
            continue
        params = sig.parameters
        for title, _, cells in entry["rows"]:
            if title == "Parameters" and cells[0].lstrip("*") not in params:
                problems.append(f"{name}: Parameters row {cells[0]!r} is no parameter")
        if entry["shown"] is None:
            problems.append(f"{name}: no signature shown; inspect.signature: {sig}")
            continue
        shown = entry["shown"].strip()
        long = [line for line in shown.splitlines() if len(line) > width]
        if long:
            problems.append(f"{name}: signature lines over {width} characters: {long}")
        try:
            parsed = _parameters(entry["paths"].strip())
        except (ValueError, SyntaxError) as e:
            problems.append(f"{name}: the signature shown is not one signature ({e}): {shown!r}")
            continue
        if [(n, k) for n, k, _ in parsed] != [(p.name, p.kind) for p in params.values()]:
            problems.append(f"{name}: shows {[n for n, _, _ in parsed]}, has {list(params)}")
            continue
        factories = {
            f.name: f.default_factory
            for f in (dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ())
            if f.default_factory is not dataclasses.MISSING
        }
        for pname, _, default in parsed:
            real = params[pname].default
            real = factories[pname]() if pname in factories else real
            if default is None or real is inspect.Parameter.empty:
                if (default is None) != (real is inspect.Parameter.empty):
                    problems.append(f"{name}: {pname}'s default shown: {default}, is {real!r}")
                continue
            try:
                ok = _same(_value(default), real)
            except Exception:
                ok = False
            if not ok:
                problems.append(f"{name}: {pname}'s default shown: {ast.unparse(default)}, is "
                                f"{real!r}")  # fmt: skip
    return problems


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site, built once per module as ``mkdocs build --strict`` builds it (.ci/run), into a
    temporary folder (it needs the ``docs`` extra)."""
    for module in ("mkdocs", "mkdocstrings_handlers.python", "material", "mathjax"):
        pytest.importorskip(module, reason='the docs extra: pip install -e ".[docs]"')
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", out]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return out


def test_every_api_entry_shows_its_real_parameters_and_defaults(built_site):
    page_html = (built_site / "api.html").read_text(encoding="utf-8")
    assert api_signature_problems(page_html) == []
    page = _Page()
    page.feed(page_html)
    rows = {cells[0]: cells for _, _, cells in page.entries["check_rule"]["rows"]}
    assert rows["jit"][-1] == rows["vmap"][-1] == "True"  # each in a row of its own, its default

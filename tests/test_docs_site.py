"""The documentation site's sources (mkdocs.yml, docs/): the tutorials run as written, the equation
→ code generator holds every citation in the code to an equation its document has, the API page
covers ``jaxprop.__all__``, and the home page's set-up commands are the README's. The site itself
is built by ``mkdocs build --strict`` in .ci/run (it needs the ``docs`` extra, which the test step
does not install)."""

import contextlib
import importlib.util
import io
import pathlib
import re
import sys

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

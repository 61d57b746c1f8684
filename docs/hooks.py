"""mkdocs hooks of jaxprop's site (mkdocs.yml: ``hooks: [docs/hooks.py]``).

- the MathJax file of the django-static-mathjax package is copied into the site, so that math
  renders with no network (a page opened from disk included);
- every file of ``jaxprop/models`` and ``jaxprop/errata`` gets a page of its source with line
  anchors, the target of the equation tables' links;
- ``<!-- equations NNN -->`` in a page becomes document NNN's table equation → code
  (:mod:`gen_equations`); a citation of an equation the document does not have fails the build;
- ``<!-- api -->`` becomes one mkdocstrings entry per name of ``jaxprop.__all__``, grouped by the
  module that defines it.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))
import gen_equations as eqs  # noqa: E402

MATHJAX = "assets/mathjax/tex-svg-full.js"
_EQUATIONS = re.compile(r"<!-- equations (\d{3}) -->")
_ERRATA = re.compile(r"<!-- errata (\d{3}) -->")
_ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc|obj):`")
_CITATIONS: list[eqs.Citation] = []


def _mathjax() -> pathlib.Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise PluginError(
            'MathJax is missing: install the docs extra (pip install -e ".[docs]"), which brings '
            "the django-static-mathjax package"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "static/mathjax/es5"
    return path / "tex-svg-full.js"


def source_markdown(path: str, citations: list[eqs.Citation]) -> str:
    """A source file's page: what it cites, then the file with line anchors."""
    text = (ROOT / path).read_text(encoding="utf-8")
    fence = "`" * max(4, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    cited = {}
    for c in citations:
        if c.path == path:
            cited.setdefault((c.doc, c.label), c)
    lines = [f"# `{path}`", ""]
    if cited:
        links = []
        for (doc, label), _ in sorted(cited.items(), key=lambda kv: kv[0][0]):
            anchor = eqs.Equation(doc, label, "").anchor
            links.append(f"[{doc} {label}](../documents/{doc}.md#{anchor})")
        lines += ["Equations cited here: " + ", ".join(links) + ".", ""]
    lines += [f'{fence}python linenums="1"', text.rstrip("\n"), fence, ""]
    return "\n".join(lines)


def _unlink_brackets(markdown: str) -> str:
    """``[a] [b]`` outside code spans with the second bracket as an entity, so that neither
    markdown nor autorefs reads it as a reference-style link."""
    parts = re.split(r"(`[^`]*`)", markdown)
    return "".join(p if p.startswith("`") else p.replace("] [", "] &#91;") for p in parts)


def on_page_content(html, page, config, files):
    if page.file.src_uri == "api.md" and _ROLE.search(html):
        raise PluginError(
            "api.md: a Sphinx role is left unrendered: "
            + _ROLE.search(html).group(0)  # type: ignore[union-attr]
            + " (docs/griffe_roles.py converts them)"
        )
    # Code lines' anchors (pymdownx.highlight) are made after mkdocs collects a page's anchors:
    # add them, so that mkdocs checks the equation tables' links to source lines.
    if page.present_anchor_ids is not None:
        page.present_anchor_ids |= set(re.findall(r'id="(__(?:span|codelineno)-[\d-]+)"', html))
    return html


def on_config(config):
    # Material's offline plugin loads the iframe-worker shim (search from disk) from a CDN: use the
    # copy in docs/assets, so that no page needs the network.
    polyfills = config.extra.get("polyfills", [])
    config.extra["polyfills"] = [
        "assets/iframe-worker-shim.js" if "iframe-worker" in str(url) else url for url in polyfills
    ]
    _CITATIONS.clear()
    try:
        _CITATIONS.extend(eqs.all_citations())
    except eqs.CitationError as e:
        raise PluginError(f"equation → code: {e}") from None
    return config


def on_files(files, config):
    files.append(File.generated(config, MATHJAX, abs_src_path=str(_mathjax())))
    sources = []
    for folder in eqs.CODE:
        for file in sorted((ROOT / folder).glob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            sources.append(rel)
            page = eqs.source_page(rel)
            files.append(File.generated(config, page, content=source_markdown(rel, _CITATIONS)))
    index = ["# Source code", "", "The code whose comments the equation tables read:", ""]
    index += [f"- [`{rel}`]({eqs.source_page(rel).removeprefix('source/')})" for rel in sources]
    files.append(File.generated(config, "source/index.md", content="\n".join(index) + "\n"))
    return files


def on_page_markdown(markdown, page, config, files):
    def equations(m: re.Match) -> str:
        doc = m.group(1)
        table = eqs.table(doc, _CITATIONS, page.file.src_uri)
        missing = eqs.uncited(doc, _CITATIONS)
        cited = len({c.label for c in _CITATIONS if c.doc == doc})
        summary = (
            f"{cited} of the document's {len(eqs.equations(doc))} labelled equations are cited "
            f"({sum(c.doc == doc for c in _CITATIONS)} citations in the code's comments); "
            "uncited: " + (", ".join(missing) if missing else "none") + "."
        )
        return summary + "\n\n" + table

    def errata(m: re.Match) -> str:
        from jaxprop.errata import SLIPS

        text = (DOCS / "errata.md").read_text(encoding="utf-8")
        try:
            return eqs.errata_table(m.group(1), SLIPS, text, page.file.src_uri)
        except eqs.CitationError as e:
            raise PluginError(f"{page.file.src_uri}: {e}") from None

    markdown = _EQUATIONS.sub(equations, markdown)
    markdown = _ERRATA.sub(errata, markdown)
    if page.file.src_uri == "errata.md":  # generated: "[∂f/∂x1 ∂f/∂x2] [∂x1/∂s ∂x1/∂t]" is
        markdown = _unlink_brackets(markdown)  # printed matrices, not a reference-style link
    if "<!-- api -->" in markdown:
        markdown = markdown.replace("<!-- api -->", eqs.api_markdown(eqs.public_names()))
    return markdown

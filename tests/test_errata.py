"""docs/errata.md's claims hold: each formula of :mod:`jaxprop.errata` holds, fails at exactly its
node (or leaf), or cannot be formed, in exactly the cases it records, with the measured figures
the page shows; the verdicts follow from the document's own case; each as-printed variant has a
diagnosis; remarks quote their passages; and ``jaxprop errata`` reports it all."""

import dataclasses
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxprop import errata
from jaxprop.check import KINDS
from jaxprop.cli import main
from jaxprop.errata import evidence, render

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_TEXT = (ROOT / "docs" / "errata.md").read_text(encoding="utf-8")
BESIDE = ROOT.parent / "shared" / "seeds"
SEEDS = BESIDE if BESIDE.is_dir() else ROOT / "docs" / "sources"  # the copies (test_docs_site)

ROUNDING = 1e-14  # float64: a correct formula agrees with jax.grad to ~1e-16 (here ≤ 7.8e-16)
WRONG = 1e-2  # a wrong one is off by far more: the smallest measured is 0.12 (002-5.53)

RIGHT_IN_THE_DOCUMENTS_CASE = {"000-db", "000-dU"}


@pytest.fixture(scope="module")
def results():
    # Raises unless every case gives what it records; run() reuses these results afterwards,
    # so the command-line tests below do not check the formulas again.
    return errata.check()


@pytest.fixture(scope="module")
def by_key(results):
    return {r.slip.key: r for r in results}


def _section(title: str) -> str:
    """The text of docs/errata.md under the ``## title`` heading, up to the next one."""
    start = DOC_TEXT.index(f"\n## {title}")
    end = DOC_TEXT.find("\n## ", start + 1)
    return DOC_TEXT[start : None if end < 0 else end]


def test_every_case_gives_what_it_records(results):
    assert len(results) >= 12
    assert {r.slip.doc for r in results} == {"000", "001", "002", "003"}
    for r in results:
        s = r.slip
        assert r.as_expected, s.key
        assert r.corrected_nodes.ok and r.corrected_grads.ok, s.key
        for c in r.cases:
            assert c.outcome == c.case.expect, (s.key, c.case.reading, c.outcome)
            if c.outcome == "cannot-form":
                assert c.error.startswith("TypeError:"), (s.key, c.error)
                continue
            assert c.nodes.dtype == c.grads.dtype == "float64", s.key
            if c.outcome == "holds":
                continue
            if s.node is not None:
                assert c.nodes.first_failing == s.node, (s.key, str(c.nodes))
                # The nodes before it, in backward order, pass: the slip is at that step.
                names = [n.name for n in c.nodes.nodes]
                for n in c.nodes.nodes[: names.index(s.node)]:
                    assert n.ok, (s.key, str(c.nodes))
            else:
                assert c.nodes.ok, (s.key, str(c.nodes))
                assert c.grads.failing == (s.leaf,), (s.key, str(c.grads))


def test_where_a_formula_holds_it_matches_jax_grad_to_rounding(results):
    holding = [(r.slip, c) for r in results for c in r.cases if c.case.expect == "holds"]
    assert len(holding) >= 8
    for s, c in holding:
        assert c.max_rel is not None and c.max_rel <= ROUNDING, (s.key, c.case.reading, c.max_rel)
        assert c.rel_at(s) <= c.max_rel, s.key


def test_where_a_formula_fails_it_is_wrong_by_far_more_than_rounding(results):
    for r in results:
        s = r.slip
        for c in r.cases:
            if c.case.expect != "fails":
                continue
            rel, problem = c.failure(s)
            if problem is not None:
                assert "shape" in problem, (s.key, problem)
            else:
                assert rel >= WRONG, (s.key, c.case.reading, rel)


def test_verdicts_are_measured_in_the_documents_case(results, by_key):
    for r in results:
        s = r.slip
        expected = (
            "right in the document's case" if s.key in RIGHT_IN_THE_DOCUMENTS_CASE else "slip"
        )
        assert r.verdict == expected, s.key
        assert (r.document_case.outcome == "holds") == (expected != "slip"), s.key
        assert bool(s.holds_when) == any(c.outcome == "holds" for c in r.cases), s.key
    # The verdict follows the measurement: the same slip with its failing case as the
    # document's is a slip.
    r = by_key["000-db"]
    cases = tuple(dataclasses.replace(c.case, document=c.case.expect == "fails") for c in r.cases)
    moved = dataclasses.replace(r.slip, cases=cases)
    rebuilt_cases = tuple(
        dataclasses.replace(c, case=k) for c, k in zip(r.cases, cases, strict=True)
    )
    rebuilt = dataclasses.replace(r, slip=moved, cases=rebuilt_cases)
    assert rebuilt.verdict == "slip"


def test_000_db_and_dU_hold_for_one_output_and_fail_for_vector_outputs(by_key):
    for key, at in (("000-db", "h_hat"), ("000-dU", "U")):
        r = by_key[key]
        holds = r.document_case
        assert holds.case.sizes["n_out"] == 1 and holds.outcome == "holds", key
        assert holds.rel_at(r.slip) <= ROUNDING and holds.max_rel <= ROUNDING, key
        vector = [c for c in r.cases if c.case.sizes["n_out"] > 1]
        assert vector and all(c.outcome in ("fails", "cannot-form") for c in vector), key
        ran = [c for c in vector if c.outcome == "fails"]
        assert [c.fails_at(r.slip) for c in ran] == [at], key
    assert by_key["000-db"].variant.rel_at(by_key["000-db"].slip) > 0.5
    assert "shape (3, 1), expected (3, 3)" in by_key["000-dU"].error()[1]
    # The middle form of dW cannot be formed in the document's case (n_hidden > 1).
    dW = by_key["000-dW"]
    assert dW.document_case.outcome == "cannot-form" and "1×3 times 1×3" in dW.document_case.error


def test_001_eq7_is_the_derivative_of_eq5_as_printed_and_the_sign_is_the_slip(by_key):
    r = by_key["001-eq5"]
    holds = next(c for c in r.cases if c.case.expect == "holds")
    assert holds.rel_at(r.slip) <= ROUNDING and holds.max_rel <= ROUNDING
    for c in r.cases:
        if c.case.expect == "fails":  # against the cross-entropy: exactly −1 times the truth
            assert abs(c.rel_at(r.slip) - 2.0) < 1e-12 and abs(c.max_rel - 2.0) < 1e-12
            assert c.diagnosis(r.slip).kind == "sign"
    ev = evidence.loss_sign()
    assert abs(ev["sum (5) + cross-entropy"]) < 1e-12
    assert ev["max |d(5)/dz2 − (7)|"] < 1e-12  # (7) is the derivative of (5) as printed
    assert ev["max |d(cross-entropy)/dz2 + (7)|"] < 1e-12
    assert ev["cross-entropy after"] > ev["cross-entropy before a descent step on (5)"]


def test_eq6_never_holds():
    ev = evidence.sigmoid_ratio()
    assert ev["min over z in [−30, 30] of printed / σ(1 − σ)"] > 1.9  # ln 2 / ½ squared: 1.92
    assert abs(ev["at z"]) < 1e-9


def test_each_as_printed_variant_has_a_diagnosis_and_the_page_shows_it(results):
    for r in results:
        d = r.diagnosis
        assert d is not None and d.kind in KINDS, r.slip.key
        assert d.node == (r.slip.node or r.slip.leaf), r.slip.key
        assert r.to_dict()["diagnosis"]["kind"] == d.kind
        entry = DOC_TEXT.split(f"### {r.slip.key}:", 1)[1].split("\n### ", 1)[0]
        assert f"\n- Diagnosis: {d.kind}: " in entry, r.slip.key
    kinds = {r.slip.key: r.diagnosis.kind for r in results}
    assert kinds["001-eq5"] == "sign"
    assert kinds["003-delta-def"] == "missing-local-derivative"


def test_the_page_separates_slips_remarks_and_lists_every_entry(results):
    slips, right = _section("Slips"), _section("Right in the document's case")
    remarks = _section("Remarks")
    for r in results:
        heading = f"### {r.slip.key}:"
        assert heading in (slips if r.verdict == "slip" else right), r.slip.key
        assert heading not in remarks
    for m in errata.REMARKS:
        assert f"`{m.quote}`".replace("|", "\\|") in remarks, m.quote
    assert "python experiments/errata.py" in DOC_TEXT
    # The summary (no floating-point figures in it) is the one the package renders now.
    assert render.summary(results) in DOC_TEXT


def _summary_rows() -> list[list[str]]:
    """The cells of docs/errata.md's summary table, the header row first."""
    lines = [line for line in _section("Summary").splitlines() if line.startswith("|")]
    assert lines and set(lines[1].replace("|", "").split()) == {"---"}, lines[:2]
    # A cell's own "|" is escaped; split on the others.
    return [
        [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        for line in lines[:1] + lines[2:]
    ]


def test_the_summary_is_a_table_of_a_few_short_columns_linked_to_the_entries(results):
    header, *rows = _summary_rows()
    assert len(header) <= 5, header
    assert header[0] == "entry" and "verdict" in header
    assert len(rows) == len(results)
    for r, row in zip(results, rows, strict=True):
        s = r.slip
        assert len(row) == len(header), row
        assert max(len(c) for c in row[1:]) <= 40, row  # short cells: the rest is in the entry
        assert row[0] == f"[`{s.key}`](#{s.key})", row
        assert row[header.index("verdict")] == r.verdict
        # The link's target is the entry's heading, which keeps the whole equation name.
        assert f"\n### {s.key}: {errata.DOCS[s.doc]}, {s.where} {{ #{s.key} }}\n" in DOC_TEXT
        # What left the table is in the entry's section.
        entry = DOC_TEXT.split(f"### {s.key}:", 1)[1].split("\n### ", 1)[0]
        for text in (s.printed, s.corrected, s.holds_when or "never", s.fails_when):
            assert text in entry, (s.key, text)
        assert f"`; {'passes both checks' if r.corrected_passes else '**FAILS**'}" in entry


def test_the_terminal_table_fits_100_columns_and_keeps_every_detail(results):
    text = errata.format_table(results)
    lines = text.splitlines()
    assert render.WIDTH == 100
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    header = next(i for i, line in enumerate(lines) if line.startswith("slip "))
    table = lines[header : header + 1 + len(results)]
    assert [line.split()[0] for line in table[1:]] == [r.slip.key for r in results]
    assert len(re.split(r"\s{2,}", table[0].strip())) <= 6, table[0]  # a few short columns

    def flat(text: str) -> str:  # the details wrap: compare with the line breaks undone
        return re.sub(r"\s+", " ", text)

    details = flat(text)
    for r in results:
        s = r.slip
        assert flat(f"{s.key}: {errata.DOCS[s.doc]}, {s.where}") in details, s.key
        for label, said in (
            ("as printed", s.printed),
            ("corrected", s.corrected),
            ("diagnosis", f"{r.diagnosis.kind}: {r.diagnosis.message}"),
        ):
            assert flat(f"{label}: {said}") in details, (s.key, label)
        for c in r.cases:
            assert flat(f"{c.outcome}: {render.case_line(c, s)}") in details, (s.key, c.outcome)


def test_logistic_regression_is_a_remark_not_a_slip():
    (m,) = [m for m in errata.REMARKS if "logistic regression" in m.quote]
    assert (m.doc, m.kind) == ("000", "terminology")
    for s in errata.SLIPS:
        assert "logistic" not in (s.printed + s.where + s.corrected).lower(), s.key


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the source documents are not beside the checkout")
def test_remarks_quote_their_passage_verbatim():
    def norm(text):
        return re.sub(r"\s+", " ", text)

    for m in errata.REMARKS:
        text = norm((SEEDS / errata.DOCS[m.doc]).read_text(encoding="utf-8"))
        assert norm(m.quote) in text, (m.doc, m.quote)


def test_a_misbehaving_case_is_reported_not_hidden(results):
    """A slip recorded at the wrong node, or a case that expects the wrong outcome, is not as
    expected, and the table names it."""
    r = results[0]
    wrong = dataclasses.replace(r, slip=dataclasses.replace(r.slip, node="y_hat"))
    assert not wrong.as_expected and r.as_expected
    table = errata.format_table([wrong])
    assert "NO (expected node y_hat)" in table
    (row,) = [line for line in table.splitlines() if line.startswith(f"{r.slip.key} ")]
    assert row.split()[-1] == "NO", row
    flipped = tuple(
        dataclasses.replace(c, case=dataclasses.replace(c.case, expect="fails"))
        if c.case.expect == "holds"
        else c
        for c in r.cases
    )
    assert not dataclasses.replace(r, cases=flipped).as_expected
    assert "<- expected fails" in errata.format_table([dataclasses.replace(r, cases=flipped)])


def test_gradient_descent_transpose_is_a_layout_remark():
    """The lecture's update θ − η ∂E/∂θ subtracts a 1 × D row from a D-vector column: literally a
    D × D matrix, so the update needs (∂E/∂θ)ᵀ."""
    theta, row = np.ones((3, 1)), np.arange(3.0)[None, :]
    assert (theta - 0.1 * row).shape == (3, 3)
    (m,) = [m for m in errata.REMARKS if m.where == "Problem Formulation"]
    assert m.kind == "layout" and "(∂E/∂θ)ᵀ" in m.remark
    assert m.figures() == {"shape of θ(t) − η ∂E/∂θ (3 × 1 minus 1 × 3)": "(3, 3)"}
    assert "θ(t+1) = θ(t) − η (∂E/∂θ)ᵀ" in DOC_TEXT


def test_cli_json_lists_every_formula_and_exits_0(results, capsys):
    assert main(["errata", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    assert [e["key"] for e in payload["slips"]] == [s.key for s in errata.SLIPS]
    for e in payload["slips"]:
        assert e["as_expected"] and e["corrected_passes"], e["key"]
        assert e["fails_at"] == next(iter(e["expected_at"].values())), e["key"]
        assert e["max_rel_error"] is not None or "shape" in e["problem"], e["key"]
        assert e["diagnosis"]["kind"] in KINDS, e["key"]
        assert e["verdict"] in errata.slip.VERDICTS, e["key"]
        assert sum(c["document"] for c in e["cases"]) == 1, e["key"]
        for c in e["cases"]:
            assert c["outcome"] == c["expect"] and c["as_expected"], e["key"]
            if c["outcome"] == "holds":
                assert c["max_rel_error"] <= ROUNDING, e["key"]


def test_cli_doc_filters(results, capsys):
    assert main(["errata", "--doc", "001", "--json"]) == 0
    slips = json.loads(capsys.readouterr().out)["slips"]
    assert {e["doc"] for e in slips} == {"001"}
    assert len(slips) == sum(s.doc == "001" for s in errata.SLIPS)
    assert main(["errata", "--doc", "002"]) == 0
    out = capsys.readouterr().out
    assert "002-5.53" in out and "leaf st" in out and "000-db" not in out
    assert "holds:" in out and "cannot-form:" in out
    assert "1 of 1 slips behave as recorded" in out
    assert max(len(line) for line in out.splitlines()) <= 100
    # The document's number as a person types it: 1 is 001.
    assert main(["errata", "--doc", "1", "--json"]) == 0
    assert {e["doc"] for e in json.loads(capsys.readouterr().out)["slips"]} == {"001"}


def test_cli_bad_doc_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["errata", "--doc", "004"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: '004'" in err, err
    with pytest.raises(ValueError, match="unknown document '4'"):
        errata.run(docs=["4"])


def test_import_jaxprop_does_not_import_errata_nor_turn_on_x64():
    code = (
        "import sys, jax, jaxprop\n"
        "assert 'jaxprop.errata' not in sys.modules, 'import jaxprop imported jaxprop.errata'\n"
        "import jaxprop.errata\n"
        "assert not jax.config.jax_enable_x64, 'importing jaxprop.errata turned on 64-bit mode'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

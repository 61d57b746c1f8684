"""docs/errata.md's claims hold: each "as printed" backward variant of :mod:`jaxprop.errata` fails
at exactly its node (or leaf), each corrected one passes, the document lists every slip, and
``jaxprop errata`` reports it."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxprop import errata
from jaxprop.cli import main
from jaxprop.errata import evidence, render

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_TEXT = (ROOT / "docs" / "errata.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def results():
    # Raises unless every variant fails where expected; run() reuses these results afterwards,
    # so the command-line tests below do not check the slips again.
    return errata.check()


def test_each_as_printed_variant_fails_at_its_node_and_each_corrected_one_passes(results):
    assert len(results) >= 12
    assert {r.slip.doc for r in results} == {"000", "001", "002", "003"}
    for r in results:
        s = r.slip
        assert r.as_expected, s.key
        if s.node is not None:
            assert r.printed_nodes.first_failing == s.node, (s.key, str(r.printed_nodes))
            # The nodes before it, in backward order, pass: the slip is at that step.
            names = [n.name for n in r.printed_nodes.nodes]
            for n in r.printed_nodes.nodes[: names.index(s.node)]:
                assert n.ok, (s.key, str(r.printed_nodes))
        else:
            assert r.printed_nodes.ok, (s.key, str(r.printed_nodes))
            assert r.printed_grads.failing == (s.leaf,), (s.key, str(r.printed_grads))
        assert r.corrected_nodes.ok and r.corrected_grads.ok, s.key
        assert r.printed_grads.dtype == r.printed_nodes.dtype == "float64", s.key


def test_dimension_slips_cannot_run_as_printed(results):
    by_key = {r.slip.key: r for r in results}
    for key in ("000-db-U", "000-db-order", "000-dU", "001-eq10", "001-eq16-order"):
        assert by_key[key].shape_error, key
    assert "shape" in by_key["003-delta-is-dw"].printed_grads["W2"].problem
    assert "shape" in by_key["001-eq17-W1"].printed_grads["b1"].problem


def test_a_misbehaving_slip_is_reported_not_hidden(results):
    """A slip recorded at the wrong node is not as expected, and check() names it."""
    import dataclasses

    r = results[0]
    wrong = dataclasses.replace(r, slip=dataclasses.replace(r.slip, node="y_hat"))
    assert not wrong.as_expected and r.as_expected
    assert "NO (expected node y_hat)" in errata.format_table([wrong])


def test_loss_sign_evidence():
    ev = evidence.loss_sign()
    assert abs(ev["sum (5) + cross-entropy"]) < 1e-12
    assert ev["max |d(5)/dz2 − (7)|"] < 1e-12  # (7) is the derivative of (5) as printed
    assert ev["cross-entropy after"] > ev["cross-entropy before a descent step on (5)"]


def test_errata_document_lists_every_slip(results):
    for s in errata.SLIPS:
        assert f"### {s.key}:" in DOC_TEXT, s.key
    assert "python experiments/errata.py" in DOC_TEXT
    # The summary (no floating-point figures in it) is the one the package renders now.
    assert render.summary(results) in DOC_TEXT


def test_gradient_descent_transpose_is_listed():
    """The lecture's update θ − η ∂E/∂θ subtracts a 1 × D row from a D-vector column: literally a
    D × D matrix, so the update needs (∂E/∂θ)ᵀ."""
    theta, row = np.ones((3, 1)), np.arange(3.0)[None, :]
    assert (theta - 0.1 * row).shape == (3, 3)
    assert any(n[1] == "Problem Formulation" and "(∂E/∂θ)ᵀ" in n[3] for n in errata.NOTATION)
    assert "θ(t+1) = θ(t) − η (∂E/∂θ)ᵀ" in DOC_TEXT


def test_cli_json_lists_every_slip_and_exits_0(results, capsys):
    assert main(["errata", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    assert [e["key"] for e in payload["slips"]] == [s.key for s in errata.SLIPS]
    for e in payload["slips"]:
        assert e["as_expected"] and e["corrected_passes"], e["key"]
        assert e["fails_at"] == next(iter(e["expected_at"].values())), e["key"]
        assert e["max_rel_error"] is not None or "shape" in e["problem"], e["key"]


def test_cli_doc_filters(results, capsys):
    assert main(["errata", "--doc", "001", "--json"]) == 0
    slips = json.loads(capsys.readouterr().out)["slips"]
    assert {e["doc"] for e in slips} == {"001"}
    assert len(slips) == sum(s.doc == "001" for s in errata.SLIPS)
    assert main(["errata", "--doc", "002"]) == 0
    out = capsys.readouterr().out
    assert "002-5.53" in out and "leaf st" in out and "000-db-U" not in out
    assert "1 of 1 slips behave as recorded" in out
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

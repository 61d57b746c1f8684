"""docs/errata.md's claims hold: each "as printed" backward variant of experiments/errata.py fails
at exactly its node (or leaf), each corrected one passes, and the document lists every slip."""

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def errata():
    spec = importlib.util.spec_from_file_location("errata", ROOT / "experiments" / "errata.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["errata"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("errata", None)


@pytest.fixture(scope="module")
def results(errata):
    return errata.check()  # raises unless every variant fails where expected


def test_each_as_printed_variant_fails_at_its_node_and_each_corrected_one_passes(results):
    assert len(results) >= 12
    assert {r.slip.doc for r in results} == {"000", "001", "002", "003"}
    for r in results:
        s = r.slip
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


def test_dimension_slips_cannot_run_as_printed(results):
    by_key = {r.slip.key: r for r in results}
    for key in ("000-db-U", "000-db-order", "000-dU", "001-eq10", "001-eq16-order"):
        assert by_key[key].shape_error, key
    assert "shape" in by_key["003-delta-is-dw"].printed_grads["W2"].problem
    assert "shape" in by_key["001-eq17-W1"].printed_grads["b1"].problem


def test_loss_sign_evidence(errata):
    ev = errata.evidence_loss_sign()
    assert abs(ev["sum (5) + cross-entropy"]) < 1e-12
    assert ev["max |d(5)/dz2 − (7)|"] < 1e-12  # (7) is the derivative of (5) as printed
    assert ev["cross-entropy after"] > ev["cross-entropy before a descent step on (5)"]


def test_errata_document_lists_every_slip(errata):
    text = (ROOT / "docs" / "errata.md").read_text(encoding="utf-8")
    for s in errata.SLIPS:
        assert f"### {s.key}:" in text, s.key
    assert "python experiments/errata.py" in text


def test_gradient_descent_transpose_is_listed(errata):
    """The lecture's update θ − η ∂E/∂θ subtracts a 1 × D row from a D-vector column: literally a
    D × D matrix, so the update needs (∂E/∂θ)ᵀ."""
    import numpy as np

    theta, row = np.ones((3, 1)), np.arange(3.0)[None, :]
    assert (theta - 0.1 * row).shape == (3, 3)
    assert any(n[1] == "Problem Formulation" and "(∂E/∂θ)ᵀ" in n[3] for n in errata.NOTATION)
    text = (ROOT / "docs" / "errata.md").read_text(encoding="utf-8")
    assert "θ(t+1) = θ(t) − η (∂E/∂θ)ᵀ" in text

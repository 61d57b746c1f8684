"""The diagnosis names the kind of mistake: every built-in backward pass, broken in known ways.

The mutants come from the mutation machinery of tests/test_nodes.py (a statement of a model's
backward pass, rewritten in a fresh copy of its module), with three families of mistake:

- **scale**: a statement's value times c: c = −1 (``sign``) at the statements that name a node's
  adjoint or a gradient leaf and at every third other float-valued statement;
  c = 0 (``zero``), 2, 1/2, B and 1/B (``scale``) at the statements that assign a node's
  adjoint (the batch mean missing or applied twice, the ½ of a squared error);
- **activation**: one call ``act.vjp(z, a, g)`` or ``act.deriv(z)`` of the backward pass with
  the local derivative dropped (``missing-local-derivative``: g for the VJP, ones for σ′) or
  replaced by a known wrong one (``elementwise-factor``: the activation's value, σ′ taken at the
  output, and each ``Activation.mistakes`` entry);
- **transpose**: one node's returned adjoint transposed (``transpose``), or, where it is not
  square, its values read in the other layout.

**The ground truth**, from the hand passes alone (no diagnosis code, no jax.grad): the first node,
in backward order, whose mutant hand adjoint h differs from the original one t (the original
backward passes are right, tests/test_nodes.py); the mutant's kind is the family's kind when the
family's relation holds there (h = c·t, h = the original adjoint of a downstream node, h = g ⊙ φ
with g the original adjoint of the next node and φ the wrong factor, h = tᵀ), and ``other`` when
it does not (a statement feeding a sum: h = t + (c − 1)·part), which the ≥ 90 % rule leaves out.
A mutant that changes no node is left out too.

**The check**: ``jaxprop.check_nodes`` on the mutant; its ``report.diagnosis`` must name the kind,
and for a named scale the right c and name, for a wrong factor the right factor. At least 90 % of
the mutants of each kind must be diagnosed right; ``python tests/test_diagnosis.py`` prints the
confusion table.
"""

from __future__ import annotations

import ast
import collections
import copy
import dataclasses
import functools
import inspect
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import pytest
import test_nodes as tn

import jaxprop
from jaxprop import Activation, Model, check_grads, check_nodes
from jaxprop.check import KINDS, diagnose

B = 3  # the batch of the mutation test's point (tests/test_nodes.py::_point)
SAME = 1e-9  # relative: two hand values are the same (float64 round-off is ~1e-16)
NAMED = {2.0: "2", 0.5: "1/2", float(B): f"B = {B}", 1.0 / B: f"1/B = 1/{B}"}


@dataclasses.dataclass(frozen=True)
class KindMutant:
    """One broken backward pass and the mistake it was broken with."""

    model: str
    label: str
    kind: str  # the family's kind
    build: Callable[[], Model]
    c: float | None = None  # scale family
    op: str | None = None  # activation family: "missing", "value", "at-output" or a mistake index
    line: int | None = None


# ---------------------------------------------------------------------------------------------
# The families.


def _scale_mutants() -> list[KindMutant]:
    out = []
    for m in tn.MUTANTS:
        module = tn._module_of(m.model)
        # The sign at every statement that names a node's adjoint or a gradient leaf, and at
        # every third other one (the suite's time budget); the other scales at node statements.
        sign = m.node_patterns or m.leaf or m.lineno % 3 == 0
        cs = ([-1.0] if sign else []) + (
            [0.0, 2.0, 0.5, float(B), 1.0 / B] if m.node_patterns else []
        )
        for c in cs:
            kind = {-1.0: "sign", 0.0: "zero"}.get(c, "scale")
            build = functools.partial(_rebuilt, module, m.tree, m.model.name, c)
            out.append(KindMutant(m.model.name, f"line {m.lineno} ×{c:.3g}: {m.text}", kind,
                                  build, c=c, line=m.lineno))  # fmt: skip
    return out


def _rebuilt(module, tree, name, c, **names) -> Model:
    return tn._rebuild(module, tree, name, mutator=tn.Mutator(c), **names)[0]


def _factors(act: Activation):
    """The wrong factors φ(z, a) of an activation, by op name (the diagnosis's candidates are
    the same mistakes; the ground truth below applies them, it does not diagnose)."""
    assert act.deriv is not None
    yield "value", lambda z, a: act.fn(z)
    yield "at-output", lambda z, a: act.deriv(a)
    for i, m in enumerate(act.mistakes):
        yield str(i), m.factor


ACT_OPS = ("missing", "value", "at-output", "0", "1", "2")


def _act_replacement(op: str):
    """The ``__act__(act, method, *args)`` of a mutant module: the local derivative dropped
    (``missing``) or replaced by the wrong factor ``op``."""

    def act_call(act, method, *args):
        if not isinstance(act, Activation) or act.deriv is None:
            return getattr(act, method)(*args)
        factors = dict(_factors(act))
        if op != "missing" and op not in factors:
            return getattr(act, method)(*args)  # no such mistake: unchanged
        if method == "vjp":
            z, a, g = args
            return g if op == "missing" else g * factors[op](z, a)
        (z,) = args
        return jnp.ones_like(z) if op == "missing" else factors[op](z, act.fn(z))

    return act_call


def _activation_mutants() -> list[KindMutant]:
    out = []
    for model in tn._models():
        module = tn._module_of(model)
        tree = ast.parse(inspect.getsource(module))
        for fn in tn._backward_functions(model, module, tree):
            for call in ast.walk(fn):
                if not (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("vjp", "deriv")
                ):
                    continue
                at = (call.lineno, call.col_offset)
                mutated = copy.deepcopy(tree)
                for node in ast.walk(mutated):
                    if isinstance(node, ast.Call) and (node.lineno, node.col_offset) == at:
                        node.args = [node.func.value, ast.Constant(node.func.attr), *node.args]
                        node.func = ast.Name("__act__", ast.Load())
                ast.fix_missing_locations(mutated)
                for op in ACT_OPS:
                    kind = "missing-local-derivative" if op == "missing" else "elementwise-factor"
                    build = functools.partial(_rebuilt, module, mutated, model.name, 1.0,
                                              __act__=_act_replacement(op))  # fmt: skip
                    out.append(KindMutant(model.name, f"line {call.lineno} {ast.unparse(call)} "
                                          f"-> {op}", kind, build, op=op,
                                          line=call.lineno))  # fmt: skip
    return out


def _transposed(model: Model, node: str, layout: bool) -> Model:
    def backward(params, x, saved, Y):
        grads, adjoints = model.backward(params, x, saved, Y)
        d = adjoints[node]
        return grads, {**adjoints, node: d.T.reshape(d.shape) if layout else d.T}

    return dataclasses.replace(model, backward=backward)


def _transpose_mutants() -> list[KindMutant]:
    out = []
    for model in tn._models():
        params = tn._point(model.name)[0]
        _, adjoints = tn._original(model.name)
        for node in model.node_names(params):
            shape = adjoints[node].shape
            if len(shape) != 2:
                continue
            for layout in (False, True) if shape[0] != shape[1] else (False,):
                label = f"{node} {'in the other layout' if layout else 'transposed'}"
                build = functools.partial(_transposed, model, node, layout)
                out.append(KindMutant(model.name, label, "transpose", build))
    return out


# ---------------------------------------------------------------------------------------------
# The ground truth and the verdict.


def _same(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0)) <= SAME * scale


def _truth(k: KindMutant, mutant: Model) -> tuple[str | None, str | None, dict]:
    """(first changed node, the mutant's kind or "other"; None where nothing changed, the
    expected figures)."""
    params, x, _ = tn._point(k.model)
    _, orig = tn._original(k.model)
    _, hand = tn._hand(mutant, k.model)
    nodes = list(orig)  # forward order
    changed = [n for n in reversed(nodes) if not _same(hand[n], orig[n])]
    if not changed:
        return None, None, {}
    v = changed[0]
    h, t = np.asarray(hand[v]), np.asarray(orig[v])
    after = nodes[nodes.index(v) + 1 :]
    if k.c is not None:
        ok = _same(h, k.c * t)
        return v, (k.kind if ok else "other"), {"c": k.c}
    if k.kind == "transpose":
        ok = (
            _same(h.T, t) if h.shape != t.shape else _same(h, t.T) or _same(h, t.T.reshape(t.shape))
        )
        return v, (k.kind if ok else "other"), {}
    if k.op == "missing":
        ok = any(_same(h, orig[u]) for u in after)
        return v, (k.kind if ok else "other"), {}
    # A wrong factor: h = g ⊙ φ(z, a) across the elementwise step to the next node.
    _, saved = jaxprop.get_model(k.model).forward(params, x)
    if not after:
        return v, "other", {}
    u = after[0]
    for act in jaxprop.ACTIVATIONS.values():
        if act.deriv is None or not _same(act.fn(saved[v]), saved[u]):
            continue
        factors = dict(_factors(act))
        if k.op in factors and _same(h, orig[u] * factors[k.op](saved[v], saved[u])):
            says = {"value": "instead of its derivative", "at-output": "taken at the output"}
            expected = says.get(k.op) or act.mistakes[int(k.op)].says.format(z=v, a=u)
            return v, k.kind, {"factor": expected}
    return v, "other", {}


def _right(d, kind: str, expected: dict) -> bool:
    """The diagnosis names the kind, and the figures the mistake was made with."""
    if d is None or d.kind != kind:
        return False
    if kind == "scale":
        c = expected["c"]
        if abs(d.figures["c"] - c) > 1e-6 * abs(c):
            return False
        name = next((n for v, n in NAMED.items() if abs(v - c) < 1e-12), None)
        return d.figures.get("named") == name
    if kind == "elementwise-factor":
        return expected["factor"] in d.figures.get("factor", "")
    return True


@functools.cache
def results() -> tuple[tuple[KindMutant, str, str, str, bool], ...]:
    """For every mutant that changes a node: (mutant, node, truth, diagnosed kind, right)."""
    out = []
    for k in _scale_mutants() + _activation_mutants() + _transpose_mutants():
        mutant = k.build()
        node, truth, expected = _truth(k, mutant)
        if node is None:
            continue
        params, x, Y = tn._point(k.model)
        report = check_nodes(mutant, params, x, Y, jit=False)
        assert report.first_failing == node, f"{k.model}: {k.label}\n{report}"
        d = report.diagnosis
        diagnosed = "none" if d is None else d.kind
        out.append((k, node, truth, diagnosed, truth != "other" and _right(d, truth, expected)))
    return tuple(out)


def confusion_table(rows) -> str:
    """Rows: the true kind; columns: the kind diagnosed; then the share diagnosed right."""
    counts = collections.Counter((truth, got) for _, _, truth, got, _ in rows)
    right = collections.Counter(truth for _, _, truth, _, ok in rows if ok)
    total = collections.Counter(truth for _, _, truth, _, _ in rows)
    truths = [k for k in (*KINDS, "other") if total[k]]
    cols = [k for k in (*KINDS, "none") if any(counts[(t, k)] for t in truths)]
    table = [("true \\ diagnosed", *cols, "right")]
    for t in truths:
        share = f"{right[t]}/{total[t]}" if t != "other" else "-"
        table.append((t, *(str(counts[(t, c)] or ".") for c in cols), share))
    return jaxprop.check.format_rows(table)


def test_the_diagnosis_names_the_kind_of_at_least_90_percent_of_the_mutants():
    rows = results()
    table = confusion_table(rows)
    by_kind = collections.defaultdict(list)
    for r in rows:
        by_kind[r[2]].append(r)
    misses = "\n".join(
        f"  {k.model}: {k.label} at {node}: {truth} diagnosed {got}"
        for k, node, truth, got, ok in rows
        if truth != "other" and not ok
    )
    # Every family is represented (the test cannot pass on an empty set of mutants).
    for kind in ("sign", "scale", "zero", "transpose", "missing-local-derivative",
                 "elementwise-factor"):  # fmt: skip
        assert len(by_kind[kind]) >= 5, f"only {len(by_kind[kind])} {kind} mutants\n{table}"
    for kind, rs in by_kind.items():
        if kind == "other":
            continue
        share = sum(r[4] for r in rs) / len(rs)
        assert share >= 0.9, f"{kind}: {share:.0%} diagnosed right\n{table}\n{misses}"
    # Every model contributes.
    assert {r[0].model for r in rows} == {m.name for m in tn._models()}


# ---------------------------------------------------------------------------------------------
# The diagnosis on its own, and in the reports.


def test_scale_names_the_batch_and_the_half():
    t = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
    for c, name in ((4.0, "B = 4"), (0.25, "1/B = 1/4"), (2.0, "2"), (0.5, "1/2")):
        d = diagnose("z2", c * t, t, batch=4)
        assert (d.kind, d.figures["named"], d.figures["c"]) == ("scale", name, pytest.approx(c))
    d = diagnose("z2", -4.0 * t, t, batch=4)
    assert d.kind == "scale" and "opposite sign" in d.message and d.figures["named"] == "B = 4"
    d = diagnose("z2", 1.7 * t, t, batch=4)
    assert d.kind == "scale" and "named" not in d.figures and "1.7" in d.message


def test_transposes_and_layouts_of_another_shape():
    t = np.arange(1.0, 7.0).reshape(2, 3)
    assert diagnose("W", t.T, t).kind == "transpose"
    assert diagnose("W", t.reshape(3, 2), t).kind == "unclassified"  # a reshape is not it
    assert diagnose("W", t.reshape(3, 2).T.reshape(3, 2), t).kind in ("transpose", "unclassified")
    assert "shape" in diagnose("W", np.ones(5), t).message


def test_unclassified_reports_what_was_tried():
    t = np.linspace(0.5, 2.0, 6).reshape(2, 3)
    h = t + np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -3.0]])
    d = diagnose("z1", h, t)
    assert d.kind == "unclassified"
    assert {"c", "scale_mismatch", "ratio_min", "ratio_max"} <= set(d.figures)
    assert diagnose("z1", np.full((2, 3), np.nan), t).kind == "unclassified"
    assert "missing" in diagnose("z1", None, t).message


def test_the_printed_sigmoid_derivative_is_named():
    # 001_90440b38c2c51fc3.txt eq (6) prints ln σ · ln(1 − σ) for σ′.
    z = np.linspace(-2.0, 2.0, 8).reshape(2, 4)
    a = 1 / (1 + np.exp(-z))
    g = np.cos(z)
    d = diagnose("z2", g * np.log(a) * np.log1p(-a), g * a * (1 - a), downstream=[("s", g)],
                 saved={"z2": z, "s": a})  # fmt: skip
    assert d.kind == "elementwise-factor" and "eq (6)" in d.figures["factor"]


def test_float32_reports_diagnose_too():
    model = jaxprop.get_model("tanh-softmax")
    params, x, Y = jaxprop.random_point(model, jaxprop_key(), batch=4, n_hidden=6)

    def backward(params, x, saved, Y):
        grads, adj = model.backward(params, x, saved, Y)
        return grads, {**adj, "z1": adj["a1"]}  # tanh′ skipped

    report = check_nodes(dataclasses.replace(model, backward=backward), params, x, Y,
                         dtype="float32")  # fmt: skip
    assert report.first_failing == "z1"
    assert report.diagnosis.kind == "missing-local-derivative"
    assert report.to_dict()["diagnosis"]["kind"] == "missing-local-derivative"
    assert report.to_dict()["nodes"][2]["diagnosis"]["figures"]["activation"] == "tanh"


def test_gradient_leaves_are_diagnosed():
    model = jaxprop.get_model("tanh-softmax")
    params, x, Y = jaxprop.random_point(model, jaxprop_key(), batch=4, n_hidden=6)

    def grad(params, x, Y):
        g = model.grad(params, x, Y)
        return {**g, "W1": 4 * g["W1"], "W2": g["W2"].T, "b2": -g["b2"]}

    report = check_grads(model.loss, grad, params, x, Y, fd=False)
    assert {p: d.kind for p, d in report.diagnoses.items()} == {
        "W1": "scale", "W2": "transpose", "b2": "sign"
    }  # fmt: skip
    assert report["W1"].diagnosis.figures["named"] == "B = 4"
    assert report.diagnosis.node == "W1"
    assert "diagnosis of W2 (transpose)" in str(report)
    assert report.to_dict()["leaves"][0]["diagnosis"]["kind"] == "scale"
    assert check_grads(model.loss, model.grad, params, x, Y, fd=False).diagnosis is None


def jaxprop_key():
    import jax

    return jax.random.key(5)


if __name__ == "__main__":  # the confusion table, for the record
    import jax

    jax.config.update("jax_enable_x64", True)
    rows = results()
    print(confusion_table(rows))
    print(f"{len(rows)} mutants that change a node")
    for k, node, truth, got, ok in rows:
        if truth != "other" and not ok:
            print(f"  miss: {k.model}: {k.label} at {node}: {truth} diagnosed {got}")

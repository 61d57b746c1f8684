"""Node-by-node checking: which step of a hand-derived chain rule goes wrong.

A gradient check says only *that* a hand gradient is wrong. :func:`check_nodes` says *where*: it
compares the hand adjoint ∂L/∂v of every named intermediate v of a :class:`~jaxprop.Model` with the
true one, and names the first node, in the order the backward pass visits them, whose hand value
departs. That node's step is the faulty one; the nodes after it are wrong only because they inherit
its error.

The true adjoints come from JAX in one ``jax.grad``. The forward pass adds a perturbation
``taps[name]`` to every named node where it is computed (:func:`jaxprop.tap`); with all taps zero
the forward pass is unchanged, and the gradient of the loss with respect to the taps is, for every
node at once, the TOTAL derivative of the loss with respect to that node's value as the rest of the
network uses it. That is what a hand backward pass's adjoint of the node must be.

The check knows nothing of the built-in models: any :class:`~jaxprop.Model` whose ``forward`` taps
its nodes and whose ``backward`` returns ``(grads, adjoints)`` works, a user's own included.

>>> import jax, jax.numpy as jnp
>>> import jaxprop
>>> def forward(params, x, taps=None):
...     z = jaxprop.tap(taps, "z", x @ params["w"])          # z = x w
...     a = jaxprop.tap(taps, "a", jnp.tanh(z))              # a = tanh(z)
...     return a, {"z": z, "a": a}
>>> def backward(params, x, saved, Y):
...     da = jaxprop.LOSSES["half_squared_error"].grad(saved["a"], Y)
...     dz = da * (1 - saved["a"] ** 2)                      # tanh′ = 1 − tanh²
...     return {"w": x.T @ dz}, {"z": dz, "a": da}
>>> model = jaxprop.Model(name="mine", forward=forward, backward=backward,
...                       objective="half_squared_error", nodes=("z", "a"))
>>> params = {"w": jnp.ones((3, 2))}
>>> x, Y = jnp.arange(12.0).reshape(4, 3) / 10, jnp.zeros((4, 2))
>>> report = jaxprop.check_nodes(model, params, x, Y)
>>> report.ok, report.first_failing
(True, None)
>>> [n.name for n in report.nodes]            # backward order
['a', 'z']
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import Comparison, judge, peak_of
from jaxprop.check.diagnosis import Diagnosis, diagnose
from jaxprop.check.grad_report import GradReport
from jaxprop.check.program import trace
from jaxprop.check.report import Record, Report, format_rows
from jaxprop.check.tolerance import precision, tolerances
from jaxprop.check.trees import cast, finite_leaves_check, partition, paths
from jaxprop.check.user_code import user_error
from jaxprop.model.contract import Model

__all__ = ["ModelReport", "NodeReport", "NodeResult", "check_nodes", "true_adjoints"]


@dataclasses.dataclass(frozen=True)
class NodeResult(Record):
    """One node: its hand adjoint against the true one.

    Attributes:
      name: the node's name.
      shape: the shape of the node (and of its adjoint).
      vs_auto: the comparison with the true adjoint (``None`` when it could not be compared).
      problem: what is wrong with the hand adjoint's structure (missing, shape, dtype, not
        finite), or ``None``.
      diagnosis: what the mistake is (:class:`jaxprop.check.diagnosis.Diagnosis`), on the first
        failing node only (the nodes after it inherit its error); ``None`` elsewhere.
    """

    name: str
    shape: tuple[int, ...]
    vs_auto: Comparison | None = None
    problem: str | None = None
    diagnosis: Diagnosis | None = None


@dataclasses.dataclass(frozen=True)
class NodeReport(Report):
    """The result of :func:`check_nodes`: truthy when every node's hand adjoint is right.

    Attributes:
      nodes: one :class:`NodeResult` per node, in BACKWARD order (the reverse of ``model.nodes``).
      dtype: the dtype the check ran in.
      name: the model's name.
      extra: names the hand backward returns adjoints of that are not nodes of the model.
    """

    _entries: ClassVar[str] = "nodes"
    _key: ClassVar[str] = "name"
    _what: ClassVar[str] = "hand adjoint"

    nodes: tuple[NodeResult, ...]
    dtype: str
    name: str | None = None
    extra: tuple[str, ...] = ()

    def _extra_ok(self) -> bool:
        return not self.extra

    @property
    def first_failing(self) -> str | None:
        """The first node, in backward order, whose hand adjoint departs: the faulty step."""
        return next((n.name for n in self.nodes if not n.ok), None)

    def _header(self) -> dict:
        d = self.diagnosis
        return {
            "name": self.name,
            "ok": self.ok,
            "dtype": self.dtype,
            "first_failing": self.first_failing,
            "diagnosis": None if d is None else d.to_dict(),
        }

    def _trailer(self) -> dict:
        return {"extra": list(self.extra)}

    def __str__(self) -> str:
        title = f"{self.name or 'node check'}  [{self.dtype}]  nodes in backward order"
        verdict = (
            "all node adjoints agree with jax.grad"
            if self.ok
            else f"first failing node: {self.first_failing}"
            if self.first_failing
            else f"hand adjoints of unknown nodes: {', '.join(self.extra)}"
        )
        d = self.diagnosis
        said = "" if d is None else f"\ndiagnosis ({d.kind}): {d.message}"
        return f"{title}\n{format_node_table(self)}\n{verdict}{said}"


def format_node_table(report: NodeReport) -> str:
    """One line per node, in backward order; the first failing one is marked."""
    rows = [("node", "shape", "rel err vs jax.grad", "worst at", "hand", "true", "")]
    first = report.first_failing
    for n in report.nodes:
        a = n.vs_auto
        if n.ok:
            status = "ok"
        else:
            status = "FAIL" + (f": {n.problem}" if n.problem else "")
            if n.name == first:
                status += "  <- first failing" + (f": {n.diagnosis.kind}" if n.diagnosis else "")
            elif n.vs_auto is not None:
                # A structural problem (missing, shape, dtype: nothing to compare) is this
                # node's own, not inherited.
                status += "  (inherits)"
        rows.append(
            (
                n.name,
                "x".join(map(str, n.shape)) or "scalar",
                f"{a.max_rel:.2e}" if a else "-",
                str(list(a.worst_index)) if a else "-",
                f"{a.hand:.6g}" if a else "-",
                f"{a.ref:.6g}" if a else "-",
                status,
            )
        )
    for name in report.extra:
        rows.append((name, "-", "-", "-", "-", "-", "FAIL: not a node of the model"))
    return format_rows(rows)


def true_adjoints(model: Model, params: Any, x: jax.Array, Y: jax.Array) -> dict[str, jax.Array]:
    """The true adjoint ∂L/∂v of every node v of ``model``, in one ``jax.grad``.

    A forward pass gives each node's shape; the loss is then differentiated with respect to a zero
    tap at every node (:func:`jaxprop.tap`). A model with no ``nodes`` has as nodes the saved
    values its backward returns adjoints of, found in the traced program
    (:mod:`jaxprop.check.program`), perturbed where the program defines them.

    Raises:
      ValueError: if the forward pass does not save a value under some name in ``model.nodes``,
        or never adds the tap of one or adds it more than once, or computes them in another order
        than ``model.nodes``.
    """
    _, saved = model.run_forward(params, x)
    nodes = model.node_names(params)
    if not nodes:
        # No convention: the saved values backward returns adjoints of, found in the program.
        hand = paths(model.backward_from(params, x, Y)[1])
        program = trace(model.run_forward, params, x)
        order = program.order([n for n in hand if n in program.saved])
        return _program_adjoints(model, program, params, x, Y, order)
    missing = [n for n in nodes if n not in saved]
    if missing:
        raise ValueError(
            f"{model.name}: forward saves {sorted(saved)}, but the nodes {missing} are missing; "
            "every name in model.nodes must be a key of forward's saved dict"
        )
    zeros = {n: jnp.zeros_like(saved[n]) for n in nodes}

    def loss_of_taps(taps):
        return model.loss(params, x, Y, taps)

    reads = _tap_reads(loss_of_taps, zeros)
    untapped = [n for n in nodes if n not in reads]
    if untapped:
        # The loss would not depend on these taps: their true adjoint would read as 0 and the
        # hand backward pass be blamed for the forward pass's omission.
        raise ValueError(
            f"{model.name}: forward never adds the tap of the nodes {untapped}; pass each node "
            "through jaxprop.tap(taps, name, value) where it is computed"
        )
    repeated = [n for n in nodes if len(reads[n]) > 1]
    if repeated:
        # A name tapped at two places (a loop over layers reusing it) has as true adjoint the sum
        # of both places' adjoints, which no hand backward pass carries.
        raise ValueError(
            f"{model.name}: forward adds the tap of the nodes {repeated} more than once; tap each "
            "node once, where it is computed, and give each layer's node its own name "
            "(e.g. f'z{i}')"
        )
    first = {n: reads[n][0] for n in nodes}
    if any(first[a] > first[b] for a, b in itertools.pairwise(nodes)):
        # Backward order is the reverse of model.nodes: out of order, the first failing node
        # would not be the faulty step.
        computed = tuple(sorted(nodes, key=first.__getitem__))
        raise ValueError(
            f"{model.name}: model.nodes must be in forward order; got {nodes}, but forward "
            f"computes them in the order {computed}"
        )
    return jax.grad(loss_of_taps)(zeros)


def _tap_reads(loss_of_taps, zeros: dict[str, jax.Array]) -> dict[str, list[int]]:
    """For each node whose tap the traced loss reads, the indices of the operations that read it
    (operations are traced in the order the forward pass runs them)."""
    jaxpr = jax.make_jaxpr(loss_of_taps)(zeros).jaxpr
    names = [path[0].key for path, _ in jax.tree_util.tree_flatten_with_path(zeros)[0]]
    name_of = {id(v): n for v, n in zip(jaxpr.invars, names, strict=True)}
    reads: dict[str, list[int]] = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            name = name_of.get(id(v))
            if name is not None:
                reads.setdefault(name, []).append(i)
    return reads


def check_nodes(
    model: Model,
    params: Any,
    x: jax.Array,
    Y: jax.Array,
    *,
    dtype: Any = "float64",
    rtol: float | None = None,
    jit: bool = True,
) -> NodeReport:
    """Compares the hand adjoint of every node of a model with the true one, in backward order.

    Args:
      model: a :class:`~jaxprop.Model` (its ``forward`` taps every name in ``model.nodes``; its
        ``backward`` returns ``(grads, adjoints)`` with ``adjoints[name]`` = ∂L/∂node).
      params: the parameters to check at.
      x: the inputs.
      Y: the labels.
      dtype: ``"float64"`` (default; 64-bit mode is on for the check's duration) or
        ``"float32"``; the floating-point leaves of params, x and Y are cast to it.
      rtol: tolerance on each node's relative error (max |hand − true| over max |true|);
        defaults to the tolerance of :func:`jaxprop.check_grads` against ``jax.grad``.
      jit: run both passes under ``jax.jit``.

    Returns:
      A :class:`NodeReport`; ``report.first_failing`` names the faulty step.

    Raises:
      TypeError: if ``model`` is not a Model.
      ValueError: if the model names no nodes, the forward pass does not save or does not tap
        (or taps twice) one of them or computes them out of the order of ``model.nodes``, a
        parameter is not finite (NaN or inf; the message names the leaf), the dtype is not
        supported, or ``rtol`` is not a positive number.
    """
    for attr in ("forward", "backward", "nodes", "loss", "backward_from", "run_forward"):
        if not hasattr(model, attr):
            raise TypeError(
                f"check_nodes needs a jaxprop.Model (forward with taps, backward with adjoints, "
                f"nodes); got {type(model).__name__} without {attr!r}"
            )
    nodes = model.node_names(params)
    dtype, rtol, _ = tolerances(dtype, rtol)  # an unknown dtype fails here, by name
    with precision(dtype):
        params, x, Y = cast((params, x, Y), dtype)
        # Non-finite parameters make every adjoint NaN, which would be blamed on the backward pass.
        # Leaves that are not arrays (a function, a string) are held: jit takes arrays only.
        arrays, part = partition(params)
        whole = (lambda a: a) if part is None else part.combine
        finite_leaves_check(arrays)
        maybe_jit = jax.jit if jit else (lambda f: f)

        def hand_adjoints():
            return maybe_jit(lambda a, x, Y: model.backward_from(whole(a), x, Y)[1])(arrays, x, Y)

        def raised(e: Exception, names, true=None) -> NodeReport:
            # The user's forward or backward raised: every node fails with the reason.
            problem = user_error(e, f"{model.name}: the backward pass")
            if problem is None:
                raise e
            results = tuple(
                NodeResult(name=n, shape=tuple(np.shape(true[n])) if true else (), problem=problem)
                for n in reversed(names)
            )
            return NodeReport(nodes=results, dtype=dtype.name, name=model.name)

        program = None
        if nodes:
            # The taps first: a forward pass that breaks the convention is named before the
            # backward pass runs on what it saved.
            true = maybe_jit(lambda a, x, Y: true_adjoints(model, whole(a), x, Y))(arrays, x, Y)
            try:
                hand = hand_adjoints()
            except Exception as e:
                return raised(e, nodes, true)
        else:
            try:
                hand = hand_adjoints()
            except Exception as e:
                return raised(e, ["backward"])
            # No convention: the nodes are the saved values backward returns adjoints of, in
            # the order the traced program computes them.
            hand = paths(hand)
            program = trace(lambda a, x: model.run_forward(whole(a), x), arrays, x)
            nodes = program.order([n for n in hand if n in program.saved])
            if not nodes:
                raise ValueError(
                    f"{model.name}: backward returns no adjoint of a saved value (adjoints "
                    f"{sorted(hand)}, saved {sorted(program.saved)}); return the adjoint of each "
                    "saved intermediate under its key, or name the nodes with Model(nodes=...)"
                )
            true = maybe_jit(lambda a, x, Y: _program_adjoints(model, program, a, x, Y, nodes))(
                arrays, x, Y
            )
        saved = maybe_jit(lambda a, x: model.run_forward(whole(a), x)[1])(arrays, x)
        if program is not None:
            saved = paths(saved)
        true = {k: np.asarray(v) for k, v in true.items()}
        peak = peak_of(true.values())
        results = []
        for name in reversed(nodes):
            vs_auto, problem = judge(
                hand.get(name), true[name], what="hand adjoint",
                missing="missing from the hand adjoints", rtol=rtol, dtype=dtype, peak=peak,
            )  # fmt: skip
            results.append(
                NodeResult(
                    name=name, shape=tuple(true[name].shape), vs_auto=vs_auto, problem=problem
                )
            )
        extra = tuple(sorted(set(hand) - set(nodes)))
        results = _diagnose_first(results, nodes, hand, true, saved, x, dtype, rtol)
    return NodeReport(nodes=tuple(results), dtype=dtype.name, name=model.name, extra=extra)


def _program_adjoints(model, program, arrays, x, Y, nodes) -> dict[str, jax.Array]:
    """The true adjoints of ``nodes`` from the traced program: zero perturbations added where
    each is defined, the loss differentiated with respect to them."""
    zeros = {n: jnp.zeros(program.saved[n].aval.shape, program.saved[n].aval.dtype) for n in nodes}

    def loss_of_taps(taps):
        out, _ = program.evaluate(arrays, x, taps)
        return model.loss_of_output(out, x, Y)

    return jax.grad(loss_of_taps)(zeros)


def _diagnose_first(results, nodes, hand, true, saved, x, dtype, rtol) -> list[NodeResult]:
    """The results with the first failing node diagnosed: its hand adjoint against the true
    one, the true adjoints of the nodes after it (in forward order, nearest first) and the saved
    forward values."""
    first = next((i for i, r in enumerate(results) if not r.ok), None)
    if first is None:
        return results
    r = results[first]
    after = nodes[nodes.index(r.name) + 1 :]
    batch = int(jnp.shape(x)[0]) if jnp.ndim(x) >= 1 else None
    diagnosis = diagnose(
        r.name, hand.get(r.name), true[r.name], dtype=dtype, rtol=rtol, batch=batch,
        downstream=[(n, true[n]) for n in after], saved=saved, problem=r.problem,
    )  # fmt: skip
    return [*results[:first], dataclasses.replace(r, diagnosis=diagnosis), *results[first + 1 :]]


@dataclasses.dataclass(frozen=True)
class ModelReport(GradReport):
    """A :class:`~jaxprop.GradReport` with the model's node table: what ``verify_model(...,
    nodes=True)`` returns. It passes when every leaf and every node passes."""

    nodes: NodeReport | None = None

    def _extra_ok(self) -> bool:
        return self.nodes is None or self.nodes.ok

    @property
    def first_failing_node(self) -> str | None:
        """The first node, in backward order, whose hand adjoint departs (``None`` if all pass
        or there is no node table)."""
        return None if self.nodes is None else self.nodes.first_failing

    def _failure_message(self) -> str:
        where = [f"leaves {', '.join(self.failing)}"] if self.failing else []
        if self.first_failing_node is not None:
            where.append(f"first failing node {self.first_failing_node}")
        return f"hand backward pass is wrong: {'; '.join(where)}"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "nodes": None if self.nodes is None else self.nodes.to_dict()}

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.nodes is None else f"{text}\n{self.nodes}"

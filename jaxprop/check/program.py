"""The nodes of a forward pass found in its traced program: node checking with no convention.

A forward pass written as people write it, ``forward(params, x) -> (out, saved)`` with ``saved`` a
dict (or any pytree) of arrays it computed, and a backward pass returning the adjoints of some of
them, keyed like ``saved``, need no ``jaxprop.tap`` and no ``nodes`` list. The forward pass is
traced once (``jax.make_jaxpr``); each saved array is a variable of that program, defined by one
equation, so the program orders the nodes, and evaluating it with a zero perturbation added right
where each node's variable is defined gives, differentiated with respect to the perturbations,
the true adjoint of every node at once: the total derivative of the loss with respect to that
value as the rest of the program uses it, exactly what a tap gives.

What the program shows is checked first, each a clear error rather than a wrong verdict: a saved
value that the rest of the program never uses (the forward recomputes it; its true adjoint is 0),
a saved value that is an input or a constant, two saved names for one variable, a value computed
outside the traced function (a closure).

A value saved inside a ``lax.scan`` (a ``fori_loop`` with a static trip count) is the stacked
per-iteration values, one node: its perturbation is added inside the loop body, iteration by
iteration, so its true adjoint is that of each iteration's value.

>>> import jax.numpy as jnp
>>> from jaxprop.check.program import trace
>>> def forward(params, x):
...     z = x @ params["w"]
...     a = jnp.tanh(z)
...     return a.sum(axis=1), {"a": a, "z": z}
>>> program = trace(forward, {"w": jnp.ones((3, 2))}, jnp.ones((4, 3)))
>>> program.order(["a", "z"])
('z', 'a')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.extend.core import Literal, Var

from jaxprop.check.trees import leaf_path

__all__ = ["Program", "trace"]


def _where(eqn) -> str:
    """Where an equation comes from in the user's code: ``file:line (function)``."""
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # the summary is a courtesy; the primitive's name always exists
        return "an unknown line"


def _scan_body_var(eqn, index: int):
    """For the ``index``-th output of a scan equation that is a stacked ``ys`` output, the body
    variable stacked there; ``None`` for a carry output."""
    num_carry = eqn.params["num_carry"]
    if index < num_carry:
        return None
    body = eqn.params["jaxpr"].jaxpr
    return body.outvars[index]


@dataclasses.dataclass(frozen=True)
class Program:
    """A traced forward pass and where each saved value is in it.

    Attributes:
      closed: the ``ClosedJaxpr`` of ``(params, x) -> (out, saved)``.
      out_tree: the pytree structure of ``(out, saved)``.
      n_out: how many leaves ``out`` has (the first outputs of the program).
      saved: saved name (its leaf path) -> the program's output variable (or literal).
      inputs: input variable -> ``"params/W1"`` or ``"x"`` (its leaf path).
    """

    closed: Any
    out_tree: Any
    n_out: int
    saved: dict[str, Any]
    inputs: dict[Any, str]

    @property
    def jaxpr(self) -> Any:
        return self.closed.jaxpr

    def _definitions(self) -> dict[Any, tuple[int, int | None]]:
        """Variable -> (index of the equation defining it, output index inside a scan)."""
        out: dict[Any, tuple[int, int | None]] = {}
        for i, eqn in enumerate(self.jaxpr.eqns):
            scan = eqn.primitive.name == "scan"
            for k, v in enumerate(eqn.outvars):
                out[v] = (i, k if scan else None)
        return out

    def check(self, names: Sequence[str]) -> None:
        """Raises ``ValueError`` for a node whose true adjoint the program cannot give as the
        user means it: not a saved value, an input, a constant, a closure, saved twice, or
        never used by the rest of the program."""
        unknown = [n for n in names if n not in self.saved]
        if unknown:
            raise ValueError(
                f"backward returns adjoints of {unknown}, which forward does not save; saved "
                f"values are {sorted(self.saved)} (an adjoint is keyed like the value it is of)"
            )
        jaxpr = self.jaxpr
        defined = self._definitions()
        consts = set(jaxpr.constvars)
        by_var: dict[Any, list[str]] = {}
        for n in names:
            v = self.saved[n]
            if isinstance(v, Literal):
                raise ValueError(
                    f"saved value {n!r} is the constant {v.val}: the forward pass does not "
                    "compute it from params or x, so it has no adjoint to check"
                )
            if v in self.inputs:
                raise ValueError(
                    f"saved value {n!r} is the input {self.inputs[v]} itself, not a value the "
                    "forward pass computes; its gradient is checked by check_grads, not as a "
                    "node: leave its adjoint out of backward's adjoints"
                )
            if v in consts:
                raise ValueError(
                    f"saved value {n!r} is computed outside the traced forward pass (a value it "
                    "closes over): it does not depend on params or x as forward computes them; "
                    "compute it inside forward from its arguments"
                )
            if not self._depends_on_inputs(v):
                raise ValueError(
                    f"saved value {n!r} is a constant: it depends on neither params nor x, so "
                    "it has no adjoint to check"
                )
            by_var.setdefault(v, []).append(n)
        twice = [ns for ns in by_var.values() if len(ns) > 1]
        if twice:
            raise ValueError(
                f"saved values {twice[0]} are one variable of the program: one node under two "
                "names (their true adjoints would be one); save it once"
            )
        used = {v for eqn in jaxpr.eqns for v in eqn.invars if isinstance(v, Var)}
        used |= {v for v in jaxpr.outvars[: self.n_out] if isinstance(v, Var)}
        for n in names:
            v = self.saved[n]
            i, k = defined[v]
            if v in used or (k is not None and _scan_body_var(jaxpr.eqns[i], k) is not None):
                continue  # read later, or stacked from a loop body that reads it
            eqn = jaxpr.eqns[i]
            keys = self._computations()
            again = [
                e
                for j, e in enumerate(jaxpr.eqns)
                if j != i and any(keys.get(o) == keys[v] for o in e.outvars)
            ]
            where = (
                f"it is recomputed by the same {eqn.primitive.name} at {_where(again[0])}"
                if again
                else "nothing after it reads it"
            )
            raise ValueError(
                f"saved value {n!r} (computed at {_where(eqn)}) is never used by the rest of the "
                f"forward pass: {where}, so its true adjoint is 0, not what backward computes; "
                f"compute the output from the saved value"
            )

    def _computations(self) -> dict[Any, Any]:
        """Variable -> what it computes, structurally (the primitive, its parameters and what
        its operands compute, down to the inputs): equal for a value computed twice."""
        keys: dict[Any, Any] = {v: ("input", i) for i, v in enumerate(self.jaxpr.invars)}
        keys.update({v: ("const", i) for i, v in enumerate(self.jaxpr.constvars)})

        def key(a):
            return ("literal", repr(a.val)) if isinstance(a, Literal) else keys.get(a)

        for eqn in self.jaxpr.eqns:
            operands = tuple(key(a) for a in eqn.invars)
            params = tuple(sorted((k, str(v)) for k, v in eqn.params.items()))
            for k, v in enumerate(eqn.outvars):
                keys[v] = hash((eqn.primitive.name, params, operands, k))
        return keys

    def _depends_on_inputs(self, var: Any) -> bool:
        reached = set(self.jaxpr.invars)
        for eqn in self.jaxpr.eqns:
            if any(isinstance(v, Var) and v in reached for v in eqn.invars):
                reached.update(eqn.outvars)
        return var in reached

    def order(self, names: Sequence[str]) -> tuple[str, ...]:
        """The nodes in the order the program computes them (forward order)."""
        self.check(names)
        defined = self._definitions()

        def computed(n):
            i, k = defined[self.saved[n]]
            # In a scan, the stacked per-iteration values come before the final carry, which
            # depends on every iteration.
            carry = k is not None and _scan_body_var(self.jaxpr.eqns[i], k) is None
            return (i, carry, -1 if k is None else k)

        return tuple(sorted(names, key=computed))

    def evaluate(self, params: Any, x: Any, taps: dict[str, Any]) -> tuple[Any, Any]:
        """``(out, saved)`` of the program with ``taps[name]`` added where each node's variable
        is defined (inside the loop body for a value saved from a scan)."""
        defined = self._definitions()
        at_eqn: dict[int, dict[int, Any]] = {}  # scan equation -> output index -> tap
        direct: dict[Any, Any] = {}
        for name, t in taps.items():
            v = self.saved[name]
            i, k = defined[v]
            if k is not None and _scan_body_var(self.jaxpr.eqns[i], k) is not None:
                at_eqn.setdefault(i, {})[k] = t
            else:
                direct[v] = t
        flat = jax.tree.leaves((params, x))
        outs = _run(self.jaxpr, self.closed.consts, flat, direct, at_eqn)
        return jax.tree.unflatten(self.out_tree, outs)


def _run(jaxpr, consts, args, taps: dict, scans: dict[int, dict[int, Any]]) -> list[Any]:
    """``jax.core.eval_jaxpr`` with ``taps[v]`` added to each tapped variable where it is
    defined, and the scan equations of ``scans`` run with per-iteration taps in their body."""
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    def write(v, val):
        env[v] = val + taps[v] if v in taps else val

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        write(v, c)
    for v, a in zip(jaxpr.invars, args, strict=True):
        write(v, a)
    for i, eqn in enumerate(jaxpr.eqns):
        invals = [read(v) for v in eqn.invars]
        if i in scans:
            outs = _tapped_scan(eqn, invals, scans[i])
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            ans = eqn.primitive.bind(*invals, **params)
            outs = ans if eqn.primitive.multiple_results else [ans]
        for v, val in zip(eqn.outvars, outs, strict=True):
            write(v, val)
    return [read(v) for v in jaxpr.outvars]


def _tapped_scan(eqn, invals: list[Any], taps_by_out: dict[int, Any]) -> list[Any]:
    """A scan equation evaluated by ``lax.scan`` with its body interpreted, the stacked
    per-iteration taps of ``taps_by_out`` (output index -> (length, ...) tap) added to the body
    variables stacked there."""
    p = eqn.params
    body = p["jaxpr"]
    nc, nk = p["num_consts"], p["num_carry"]
    consts, carry, xs = invals[:nc], invals[nc : nc + nk], invals[nc + nk :]
    keys = sorted(taps_by_out)
    body_vars = [body.jaxpr.outvars[k] for k in keys]

    def step(carry, slices):
        xs_t, taps_t = slices
        outs = _run(body.jaxpr, body.consts, [*consts, *carry, *xs_t],
                    dict(zip(body_vars, taps_t, strict=True)), {})  # fmt: skip
        return outs[:nk], outs[nk:]

    final, ys = jax.lax.scan(step, carry, (xs, [taps_by_out[k] for k in keys]),
                             length=p["length"], reverse=p["reverse"])  # fmt: skip
    return [*final, *ys]


def trace(forward: Callable[..., Any], params: Any, x: Any) -> Program:
    """Traces ``forward(params, x) -> (out, saved)`` once and locates each saved value.

    Raises:
      TypeError: if ``forward`` does not return ``(out, saved)``.
    """
    closed, shapes = jax.make_jaxpr(forward, return_shape=True)(params, x)
    if not (isinstance(shapes, tuple) and len(shapes) == 2):
        raise TypeError(
            f"forward must return (out, saved), got {type(shapes).__name__}; saved is a dict of "
            "the values the backward pass reads"
        )
    out_shapes, saved_shapes = shapes
    n_out = len(jax.tree.leaves(out_shapes))
    saved_paths = [leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(saved_shapes)[0]]
    outvars = closed.jaxpr.outvars
    saved = dict(zip(saved_paths, outvars[n_out:], strict=True))
    in_paths = jax.tree_util.tree_flatten_with_path((params, x))[0]
    names = [
        "x" if p[0].idx == 1 else "params/" + leaf_path(p[1:]) for p, _ in in_paths
    ]  # fmt: skip
    inputs = dict(zip(closed.jaxpr.invars, names, strict=True))
    return Program(closed, jax.tree.structure(shapes), n_out, saved, inputs)

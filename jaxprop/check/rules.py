"""Checking any derivative rule JAX would use: ``jax.custom_vjp``, ``jax.custom_jvp``, plain code.

:func:`check_rule` takes a function ``f(*args)`` whose derivative JAX would use (decorated with
``custom_vjp`` or ``custom_jvp``, containing such functions, or plain) and runs it through every
check a hand-written rule can fail, each against a reference that does not use the rule (finite
differences of the primal, :mod:`jaxprop.check.fd`) or against itself under a transformation:

- **primal**: what ``jax.vjp`` / ``jax.jvp`` return as the primal equals ``f(*args)``;
- **reverse**: an independent random cotangent c_o for every output leaf; every argument leaf's
  cotangent against the finite differences of the projected output Σ_o ⟨c_o, f_o⟩ (sampled for a
  large leaf, always including its largest element), and the dot-product identity
  ⟨Jᵀc, t⟩ = d/dε ⟨c, f(x + ε t)⟩ for a random tangent t;
- **forward** (where the rule has one): random tangents, never all-ones, against finite
  differences; linearity in the tangent; jvp and vjp consistent, ⟨c, J t⟩ = ⟨Jᵀc, t⟩;
- **types**: each cotangent has its argument's shape and dtype (JAX accepts a float32 cotangent
  for a float64 argument without a word); integer and boolean arguments get none (float0);
- **transformations**: the rule under ``jax.jit`` equals the rule eagerly; under ``jax.vmap`` over
  a leading batch axis equals the per-example results; ``jax.grad`` of ``jax.vmap`` equals
  ``jax.vmap`` of ``jax.grad`` where the output is one scalar per example;
- **probes**: at the floating arguments scaled by ``probes`` (large and near zero), wherever the
  primal is finite a non-finite cotangent is a failure named by its probe.

An exception raised inside the user's code (f, fwd, bwd, jvp; eagerly, under jit or under vmap)
is the failed check's problem, its first line, never a traceback; only misuse of check_rule's own
arguments raises.

>>> import jax, jax.numpy as jnp
>>> @jax.custom_vjp
... def square(x):
...     return x**2
>>> square.defvjp(lambda x: (x**2, x), lambda x, g: (g * x,))   # drops the factor 2
>>> report = check_rule(square, jnp.array([1.0, 2.0, 3.0]))
>>> report.ok, report.failing[:2]
(False, ('reverse args[0]', 'dot-product'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import Comparison
from jaxprop.check.complex import COMPLEX_NOTE, has_complex, realify
from jaxprop.check.rule_checks import (
    _arg_paths,
    _consistent,
    _dot_product,
    _fd_records,
    _first_line,
    _FloatReference,
    _forward_records,
    _integer_arguments,
    _leaf_from_message,
    _out_paths,
    _projected,
    _random_like,
    _Rule,
)
from jaxprop.check.rule_intended import intended_records, project_tangents, projected_records
from jaxprop.check.rule_options import RuleOptions, output_cotangents, rule_options
from jaxprop.check.rule_report import RuleRecord, RuleReport
from jaxprop.check.rule_transforms import _jit_records, _probe_records, _vmap_records
from jaxprop.check.tolerance import is_float, precision
from jaxprop.check.trees import cast

__all__ = ["check_rule"]

PyTree = Any


def check_rule(
    f: Callable[..., Any],
    *args: Any,
    dtype: Any = "float64",
    seed: int = 0,
    rtol: float | Mapping[str, float] | None = None,
    fd_samples: int = 16,
    jit: bool = True,
    vmap: bool = True,
    probes: Sequence[float] = (10.0, 1e3, 1e-3),
    name: str | None = None,
    intended: Callable[..., Any] | None = None,
    hold: Sequence[int] = (),
    cotangents: Any = None,
    cotangent_scale: float = 1.0,
    project: Callable[..., Any] | None = None,
    order: int = 1,
) -> RuleReport:
    """Checks the derivative rule JAX uses for ``f`` at ``args``: every check of the module's list.

    Args:
      f: ``f(*args) -> pytree of arrays``; decorated with ``jax.custom_vjp`` / ``custom_jvp``,
        containing such functions, or plain.
      *args: pytrees; their floating leaves are cast to ``dtype`` and differentiated, integer and
        boolean leaves are held.
      dtype: ``"float64"`` (default), ``"float32"``, ``"bfloat16"`` or ``"float16"``; the finite
        differences are taken in float64 where ``f`` runs in it.
      seed: seeds every random cotangent, tangent and sample.
      rtol: the tolerance of the comparisons (the dtype's default of
        :func:`jaxprop.default_tolerances`); or a mapping from argument leaves to tolerances,
        ``{"args[1]": 1e-7}``, for a rule whose designed accuracy is below the dtype's (a check
        that mixes every argument takes the loosest).
      fd_samples: the most elements per argument leaf compared with finite differences.
      jit: also check the rule under ``jax.jit`` against the rule run eagerly.
      vmap: also check the rule under ``jax.vmap`` over a leading batch axis against the
        per-example results, and ``jax.grad`` of ``jax.vmap`` against ``jax.vmap`` of
        ``jax.grad`` where the output is one scalar per example.
      probes: factors the floating arguments are scaled by for the finiteness probes.
      name: a name for the report (default: ``f``'s).
      intended: for a rule that is deliberately not the derivative (a straight-through
        estimator, gradient clipping, gradient reversal, a surrogate gradient),
        ``intended(g, *args) -> cotangents``, one per argument as a bwd returns them (a bare
        array for one argument): the cotangents the rule is meant to return for the output
        cotangent ``g``. The value checks against finite differences (``reverse``,
        ``dot-product``, ``forward``) are replaced by ``intended args[k]``; the structural
        checks still run.
      hold: positions of floating arguments to hold fixed, never differentiated (a temperature
        ``gamma``), as ``nondiff_argnums`` holds a rule's own.
      cotangents: the output cotangents to use in place of random ones: a pytree like ``f``'s
        output.
      cotangent_scale: a factor on the random output cotangents (standard normal): a clipping
        rule is exercised only by cotangents beyond its threshold.
      project: ``project(args, tangents) -> tangents``, both tuples like ``args``: the
        projection onto the tangent space the rule is valid on (|q| = 1 for a unit
        quaternion). Every tangent is projected, and the reverse check compares ⟨Jᵀc, P d⟩ with
        finite differences along ``fd_samples`` projected random directions P d
        (``reverse (tangent space)``).
      order: 2 also checks the derivative of the rule's derivative: the rule's cotangent
        x ↦ Jᵀc (and, for a rule with a forward mode, its tangent x ↦ J t) checked again, by
        reverse and forward mode through the rule, against finite differences of the rule's own
        first derivative; its records are named ``order 2 ...``.

    Returns:
      A :class:`RuleReport`.

    Raises:
      TypeError: if ``f``, ``intended`` or ``project`` is not callable.
      ValueError: if there is no floating argument, the dtype is not supported, ``seed`` is not a
        non-negative integer, ``fd_samples`` not a positive integer, ``order`` not 1 or 2, or an
        option names no argument (each message names the option).
    """
    if not callable(f):
        raise TypeError(f"check_rule needs a function f, got {type(f).__name__}")
    for arg, value, least in (("seed", seed, 0), ("fd_samples", fd_samples, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{arg} must be an integer >= {least}, got {value!r}")
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    dtype, options = rule_options(
        dtype=dtype, rtol=rtol, hold=hold, n_args=len(args), cotangents=cotangents,
        cotangent_scale=cotangent_scale, project=project, intended=intended,
        arg_paths=_arg_paths(args),
    )  # fmt: skip
    name = name or getattr(f, "__name__", None) or type(f).__name__
    held = set(getattr(f, "nondiff_argnums", None) or ()) | options.hold
    complex_rule = _is_complex_rule(f, args, held, dtype)
    if complex_rule:
        # Checked through the real and imaginary parts (jaxprop.check.complex).
        f, args = realify(f, args, held, dtype)
    with precision(dtype):
        # Arguments in a custom rule's nondiff_argnums are held as given, never traced.
        args = tuple(a if k in held else cast(a, dtype) for k, a in enumerate(args))
        rule = _Rule(f, args, held)
        empty = [rule.paths[i] for i in rule.where if np.size(rule.leaves[i]) == 0]
        if empty:
            raise ValueError(
                f"check_rule: argument leaf {', '.join(empty)} has no elements; there is "
                "nothing to differentiate there (pass arrays with at least one element)"
            )
        if not rule.where:
            raise ValueError(
                "check_rule: no floating-point argument to differentiate; pass the arrays f's "
                "derivative is taken with respect to"
            )
        report = _run(rule, args, dtype, options, seed, fd_samples, jit, vmap, tuple(probes), name)
        if order == 2:
            report = _second_order(report, rule, args, dtype, options, seed, fd_samples)
        if complex_rule:
            report = dataclasses.replace(report, notes=(*report.notes, COMPLEX_NOTE))
        return report


def _is_complex_rule(f, args, held, dtype) -> bool:
    """Whether a differentiated argument or an output of ``f`` is complex."""
    if has_complex([a for k, a in enumerate(args) if k not in held]):
        return True
    try:
        with precision(dtype):
            return has_complex(jax.eval_shape(f, *args))
    except Exception:  # the user's f fails: the primal check says so
        return False


def _guarded(check: str, build: Callable[[], list[RuleRecord]]) -> list[RuleRecord]:
    """A check's records, or, where the check raises (the user's code, or the checker's own
    arithmetic on the user's values: an overflow, a NaN), one failed record with the reason."""
    try:
        return build()
    except Exception as e:
        return [RuleRecord(check, check, "", (), problem=_first_line(e))]


def _run(
    rule, args, dtype, options: RuleOptions, seed, fd_samples, jit, vmap, probes, name,
    prefix: str = "",
) -> RuleReport:  # fmt: skip
    records: list[RuleRecord] = []
    notes: list[str] = []
    paths = [rule.paths[i] for i in rule.where]

    def fail(check: str, leaf: str, problem: str, shape=()) -> None:
        records.append(
            RuleRecord(f"{check} {leaf}".strip(), check, leaf, tuple(shape), problem=problem)
        )

    def record(check: str, leaf: str, comparison: Comparison, shape=()) -> None:
        records.append(
            RuleRecord(f"{check} {leaf}".strip(), check, leaf, tuple(shape), comparison=comparison)
        )

    def report() -> RuleReport:
        named = [
            dataclasses.replace(r, name=f"{prefix}{r.name}", check=f"{prefix}{r.check}")
            for r in records
        ]
        return RuleReport(tuple(named), dtype.name, ref.dtype.name, name, tuple(notes))

    ref = _FloatReference.of(rule, dtype)
    floats = rule.floats()
    try:
        out = rule.call(*floats)
    except Exception as e:  # the user's f
        fail("primal", "", _first_line(e))
        return report()
    out_leaves, out_tree = jax.tree.flatten(out)
    out_names = _out_paths(out)
    float_out = [is_float(o) for o in out_leaves]

    # Reverse mode: an independent random cotangent for every floating output leaf (or the
    # user's, or the random ones scaled).
    random = [
        _random_like(seed, n, o) if isf else np.zeros(np.shape(o), jax.dtypes.float0)
        for n, o, isf in zip(out_names, out_leaves, float_out, strict=True)
    ]
    cot_out = output_cotangents(options, out, random)
    # An output element that is not finite at the point (an overflow) holds the rule to
    # nothing: its cotangent is 0 and it is left out of the projected output, so that the
    # other elements are still judged.
    finite = [np.isfinite(np.asarray(o)) if isf else None for o, isf in
              zip(out_leaves, float_out, strict=True)]  # fmt: skip
    n_out = sum(int(np.sum(~m)) for m in finite if m is not None)
    if n_out:
        cot_out = [c if m is None else jnp.where(m, c, jnp.zeros_like(c))
                   for c, m in zip(cot_out, finite, strict=True)]  # fmt: skip
        notes.append(f"{n_out} output elements not finite at the point: left out of the checks")
    try:
        primal_v, vjp_fn = jax.vjp(rule.call, *floats)
        cots = vjp_fn(jax.tree.unflatten(out_tree, cot_out))
    except Exception as e:  # the user's fwd or bwd
        leaf = _leaf_from_message(str(e))
        fail("reverse", leaf, _first_line(e))
        cots = None
        primal_v = None
    if primal_v is not None:
        for n, a, b in zip(out_names, jax.tree.leaves(primal_v), out_leaves, strict=True):
            c = _consistent("f(*args)", a, b, rtol=options.rtol, dtype=dtype)
            record("primal", n, c, np.shape(b))
    projected = _projected(rule, out_tree, cot_out, float_out, finite if n_out else None)
    hand: dict[str, np.ndarray] = {}
    if cots is not None:
        for i, p, c in zip(rule.where, paths, cots, strict=True):
            arg = rule.leaves[i]
            if jnp.shape(c) != jnp.shape(arg) or jnp.result_type(c) != jnp.result_type(arg):
                fail(
                    "types",
                    p,
                    f"cotangent is {jnp.result_type(c)}{list(jnp.shape(c))}, the "
                    f"argument {jnp.result_type(arg)}{list(jnp.shape(arg))}",
                    jnp.shape(arg),
                )
                if jnp.shape(c) != jnp.shape(arg):
                    continue
            hand[p] = np.asarray(c, np.float64)
        if options.intended is not None:
            records.extend(
                _guarded("intended", lambda: intended_records(rule, args, out_tree, cot_out,
                                                              hand, options, dtype))
            )  # fmt: skip
        elif options.project is not None:
            records.extend(
                _guarded("reverse", lambda: projected_records(rule, args, ref, projected, hand,
                                                              seed, dtype, options, fd_samples))
            )  # fmt: skip
        else:
            records.extend(
                _guarded("reverse", lambda: _fd_records(rule, ref, projected, hand, seed, dtype,
                                                        options, fd_samples))
            )  # fmt: skip
            dot = _guarded(
                "dot-product",
                lambda: _dot_product(
                    rule, ref, projected, hand, seed, dtype, options.rtol_of_all(paths)
                ),
            )
            reverse_ok = all(r.ok for r in records if r.check == "reverse")
            if reverse_ok and len(dot) == 1 and dot[0].unverified:
                # Near or at the boundary of f's domain (a random direction leaves it, the
                # ladder's larger steps cross it) the differences along one direction cannot
                # judge; every argument's reverse check has vouched for the rule there.
                notes.append(
                    "dot-product not checked: finite differences along its random direction "
                    "cannot judge it here (near the boundary of f's domain?); every reverse "
                    "check passed"
                )
                dot = []
            records.extend(dot)
    records.extend(_guarded("types", lambda: _integer_arguments(rule, args, out_tree, cot_out)))

    # Forward mode, where the rule has one.
    tangents = tuple(_random_like(seed, "tangent " + p, rule.leaves[i]) for i, p in
                     zip(rule.where, paths, strict=True))  # fmt: skip
    if options.project is not None:
        tangents = project_tangents(rule, args, tangents, options)
    try:
        primal_j, jt = jax.jvp(rule.call, floats, tangents)
    except TypeError as e:
        if "custom_vjp" in str(e):
            notes.append("forward mode not checked: a custom_vjp rule has none")
            primal_j = jt = None
        else:
            fail("forward", "", _first_line(e))
            primal_j = jt = None
    except Exception as e:  # the user's jvp
        fail("forward", "", _first_line(e))
        primal_j = jt = None
    if jt is not None:
        fd_forward = options.intended is None
        records.extend(
            _guarded("forward", lambda: _forward_records(
                rule, ref, floats, tangents, out, primal_j, jt, cot_out, hand, seed, dtype,
                options.rtol_of_all(paths), fd=fd_forward,
            ))
        )  # fmt: skip

    if jit and cots is not None:
        records.extend(
            _guarded("jit", lambda: _jit_records(rule, floats, out_tree, cot_out, cots, dtype,
                                                 options.rtol))
        )  # fmt: skip
    if vmap:
        records.extend(
            _guarded("vmap", lambda: _vmap_records(rule, args, seed, dtype, options.rtol))
        )
    records.extend(_guarded("probes", lambda: _probe_records(rule, out_tree, cot_out, probes)))
    if options.intended is not None:
        notes.append(
            "declared intended: the cotangents are compared with intended(g, *args), not with "
            "finite differences"
        )
    return report()


def _second_order(report, rule, args, dtype, options, seed, fd_samples) -> RuleReport:
    """The derivative of the rule's derivative: the rule's cotangent x ↦ Jᵀc for a fixed c
    (and its tangent x ↦ J t for a fixed t, where it has a forward mode), checked as rules of
    their own, through the rule's bwd (jvp), against finite differences."""
    out = rule.call(*rule.floats())
    out_leaves, out_tree = jax.tree.flatten(out)
    out_names = _out_paths(out)
    random = [
        _random_like(seed, n, o) if is_float(o) else np.zeros(np.shape(o), jax.dtypes.float0)
        for n, o in zip(out_names, out_leaves, strict=True)
    ]
    g = jax.tree.unflatten(out_tree, output_cotangents(options, out, random))
    where, paths = rule.where, [rule.paths[i] for i in rule.where]
    t = tuple(_random_like(seed, "tangent " + p, rule.leaves[i]) for i, p in
              zip(where, paths, strict=True))  # fmt: skip

    def floats_of(a):
        leaves = jax.tree.leaves(a)
        return tuple(leaves[i] for i in where)

    def cotangent(*a):  # x -> Jᵀc, through the rule's bwd
        return jax.vjp(rule.call, *floats_of(a))[1](g)

    def tangent(*a):  # x -> J t, through the rule's jvp
        return jax.jvp(rule.call, floats_of(a), t)[1]

    second = RuleOptions(rtol=options.rtol, rtols=options.rtols, hold=options.hold)
    held = set(getattr(rule.f, "nondiff_argnums", None) or ()) | options.hold
    records = list(report.checks)
    notes = list(report.notes)
    for label, fn in (("order 2 ", cotangent), ("order 2 (jvp) ", tangent)):
        try:
            jax.eval_shape(fn, *args)
        except TypeError as e:
            if "custom_vjp" in str(e):
                continue  # a custom_vjp rule has no forward mode to differentiate
            raise
        except Exception as e:
            records.append(RuleRecord(label.strip(), label.strip(), "", (), problem=_first_line(e)))
            continue
        more = _run(_Rule(fn, args, held), args, dtype, second, seed + 1, fd_samples, False,
                    False, (), report.name, prefix=label)  # fmt: skip
        records += [r for r in more.checks if not r.check.endswith(("primal", "primal (jvp)"))]
        notes += [n for n in more.notes if "forward mode not checked" not in n]
    return dataclasses.replace(report, checks=tuple(records), notes=tuple(notes))

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

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import Comparison, compare
from jaxprop.check.rule_checks import (
    _dot_product,
    _fd_records,
    _first_line,
    _FloatReference,
    _forward_records,
    _integer_arguments,
    _jit_records,
    _leaf_from_message,
    _out_paths,
    _probe_records,
    _projected,
    _random_like,
    _Rule,
    _vmap_records,
)
from jaxprop.check.rule_report import RuleRecord, RuleReport
from jaxprop.check.tolerance import is_float, precision, tolerances
from jaxprop.check.trees import cast

__all__ = ["check_rule"]

PyTree = Any


def check_rule(
    f: Callable[..., Any],
    *args: Any,
    dtype: Any = "float64",
    seed: int = 0,
    rtol: float | None = None,
    fd_samples: int = 16,
    jit: bool = True,
    vmap: bool = True,
    probes: Sequence[float] = (10.0, 1e3, 1e-3),
    name: str | None = None,
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
      rtol: the tolerance of the exact comparisons (the dtype's default of
        :func:`jaxprop.default_tolerances`).
      fd_samples: the most elements per argument leaf compared with finite differences.
      jit: also check the rule under ``jax.jit`` against the rule run eagerly.
      vmap: also check the rule under ``jax.vmap`` over a leading batch axis against the
        per-example results, and ``jax.grad`` of ``jax.vmap`` against ``jax.vmap`` of
        ``jax.grad`` where the output is one scalar per example.
      probes: factors the floating arguments are scaled by for the finiteness probes.
      name: a name for the report (default: ``f``'s).

    Returns:
      A :class:`RuleReport`.

    Raises:
      TypeError: if ``f`` is not callable.
      ValueError: if there is no floating argument, the dtype is not supported, ``seed`` is not a
        non-negative integer, or ``fd_samples`` not a positive integer.
    """
    if not callable(f):
        raise TypeError(f"check_rule needs a function f, got {type(f).__name__}")
    for arg, value, least in (("seed", seed, 0), ("fd_samples", fd_samples, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{arg} must be an integer >= {least}, got {value!r}")
    dtype, rtol, _ = tolerances(dtype, rtol)
    name = name or getattr(f, "__name__", None) or type(f).__name__
    held = set(getattr(f, "nondiff_argnums", None) or ())
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
        return _run(rule, args, dtype, seed, rtol, fd_samples, jit, vmap, tuple(probes), name)


def _run(rule, args, dtype, seed, rtol, fd_samples, jit, vmap, probes, name) -> RuleReport:
    records: list[RuleRecord] = []
    notes: list[str] = []

    def fail(check: str, leaf: str, problem: str, shape=()) -> None:
        records.append(
            RuleRecord(f"{check} {leaf}".strip(), check, leaf, tuple(shape), problem=problem)
        )

    def record(check: str, leaf: str, comparison: Comparison, shape=()) -> None:
        records.append(
            RuleRecord(f"{check} {leaf}".strip(), check, leaf, tuple(shape), comparison=comparison)
        )

    def report() -> RuleReport:
        return RuleReport(tuple(records), dtype.name, ref.dtype.name, name, tuple(notes))

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

    # Reverse mode: an independent random cotangent for every floating output leaf.
    cot_out = [
        _random_like(seed, n, o) if isf else np.zeros(np.shape(o), jax.dtypes.float0)
        for n, o, isf in zip(out_names, out_leaves, float_out, strict=True)
    ]
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
            record("primal", n, compare("f(*args)", a, b, rtol=rtol, dtype=dtype), np.shape(b))
    projected = _projected(rule, out_tree, cot_out, float_out)
    hand: dict[str, np.ndarray] = {}
    if cots is not None:
        for i, p, c in zip(rule.where, [rule.paths[i] for i in rule.where], cots, strict=True):
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
        records.extend(_fd_records(rule, ref, projected, hand, seed, dtype, rtol, fd_samples))
        records.extend(_dot_product(rule, ref, projected, hand, seed, dtype, rtol))
    records.extend(_integer_arguments(rule, args, out_tree, cot_out))

    # Forward mode, where the rule has one.
    tangents = tuple(
        _random_like(seed, "tangent " + rule.paths[i], rule.leaves[i]) for i in rule.where
    )
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
        records.extend(
            _forward_records(
                rule, ref, floats, tangents, out, primal_j, jt, cot_out, hand, seed, dtype, rtol
            )
        )

    if jit and cots is not None:
        records.extend(_jit_records(rule, floats, out_tree, cot_out, cots, dtype, rtol))
    if vmap:
        records.extend(_vmap_records(rule, args, seed, dtype, rtol))
    records.extend(_probe_records(rule, out_tree, cot_out, probes))
    return report()

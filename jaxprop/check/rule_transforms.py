"""The checks of :func:`jaxprop.check_rule` under JAX's transformations: the rule under
``jax.jit`` against the rule eagerly, under ``jax.vmap`` against the per-example results
(``jax.grad`` of ``jax.vmap`` against ``jax.vmap`` of ``jax.grad``), and the finiteness probes at
scaled arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import compare
from jaxprop.check.rule_checks import _consistent, _first_line, _out_paths, _random_like
from jaxprop.check.rule_report import RuleRecord
from jaxprop.check.tolerance import is_float


def _jit_records(rule, floats, out_tree, cot_out, cots, dtype, rtol) -> list[RuleRecord]:
    """The rule under jax.jit against the rule eagerly."""

    def vjp_of(*floats):
        return jax.vjp(rule.call, *floats)[1](jax.tree.unflatten(out_tree, cot_out))

    try:
        jitted = jax.jit(vjp_of)(*floats)
    except Exception as e:  # a Python branch on a traced value, say
        return [RuleRecord("jit", "jit", "", (), problem=_first_line(e))]
    records = []
    for i, a, b in zip(rule.where, jitted, cots, strict=True):
        p = rule.paths[i]
        if jnp.shape(a) != jnp.shape(b):
            continue
        records.append(
            RuleRecord(
                f"jit {p}",
                "jit",
                p,
                tuple(np.shape(b)),
                comparison=_consistent("the rule eagerly", a, b, rtol=rtol, dtype=dtype),
            )
        )
    return records


def _vmap_records(rule, args, seed, dtype, rtol) -> list[RuleRecord]:
    """Under jax.vmap over a leading batch axis of 3 examples: the primal and the vjp equal the
    per-example ones; jax.grad of vmap equals vmap of grad where the output is one scalar."""
    B = 3
    scales = [1.0, 0.9, 1.1]
    examples = [tuple(jnp.asarray(v * s, v.dtype) for v in rule.floats()) for s in scales]
    batched = tuple(jnp.stack([ex[k] for ex in examples]) for k in range(len(rule.where)))
    records: list[RuleRecord] = []
    try:
        out_b = jax.vmap(rule.call)(*batched)
        outs = [rule.call(*ex) for ex in examples]
    except Exception as e:
        return [RuleRecord("vmap", "vmap", "", (), problem=_first_line(e))]
    out_tree = jax.tree.structure(outs[0])
    names = _out_paths(outs[0])
    for k, n in enumerate(names):
        per = np.stack([np.asarray(jax.tree.leaves(o)[k], np.float64) for o in outs])
        got = np.asarray(jax.tree.leaves(out_b)[k], np.float64)
        if got.shape != per.shape:
            records.append(
                RuleRecord(
                    f"vmap {n}",
                    "vmap",
                    n,
                    per.shape[1:],
                    problem=f"batched output has shape {got.shape}, expected {per.shape}",
                )
            )
            continue
        records.append(
            RuleRecord(
                f"vmap {n}",
                "vmap",
                n,
                per.shape[1:],
                comparison=_consistent("per example", got, per, rtol=rtol, dtype=dtype),
            )
        )
    out_leaves = jax.tree.leaves(outs[0])
    if not all(is_float(o) for o in out_leaves):
        return records
    cot = [
        jnp.stack([_random_like(seed + b, "vmap " + n, o) for b in range(B)])
        for n, o in zip(names, out_leaves, strict=True)
    ]

    def vjp_one(floats, c):
        return jax.vjp(rule.call, *floats)[1](jax.tree.unflatten(out_tree, c))

    try:
        vb = jax.vmap(vjp_one)(batched, cot)
        per_vjp = [vjp_one(ex, [c[b] for c in cot]) for b, ex in enumerate(examples)]
    except Exception as e:
        return [*records, RuleRecord("vmap (vjp)", "vmap (vjp)", "", (), problem=_first_line(e))]
    for k, i in enumerate(rule.where):
        p = rule.paths[i]
        want = np.stack([np.asarray(pe[k], np.float64) for pe in per_vjp])
        got = np.asarray(vb[k], np.float64)
        if got.shape != want.shape:
            continue
        records.append(
            RuleRecord(
                f"vmap (vjp) {p}",
                "vmap (vjp)",
                p,
                want.shape[1:],
                comparison=_consistent("per example", got, want, rtol=rtol, dtype=dtype),
            )
        )
    if len(out_leaves) == 1 and np.size(out_leaves[0]) == 1:
        try:
            gv = jax.grad(
                lambda *b: jnp.sum(jax.vmap(rule.call)(*b)), argnums=tuple(range(len(batched)))
            )(*batched)
            vg = jax.vmap(
                jax.grad(lambda *x: jnp.sum(rule.call(*x)), argnums=tuple(range(len(batched))))
            )(*batched)
        except Exception as e:
            return [
                *records,
                RuleRecord("grad-of-vmap", "grad-of-vmap", "", (), problem=_first_line(e)),
            ]
        for k, i in enumerate(rule.where):
            p = rule.paths[i]
            records.append(
                RuleRecord(
                    f"grad-of-vmap {p}",
                    "grad-of-vmap",
                    p,
                    tuple(np.shape(rule.leaves[i])),
                    comparison=compare(
                        "vmap of grad",
                        np.asarray(gv[k], np.float64),
                        np.asarray(vg[k], np.float64),
                        rtol=rtol,
                        dtype=dtype,
                    ),
                )
            )
    return records


def _probe_records(rule, out_tree, cot_out, probes) -> list[RuleRecord]:
    """At the floating arguments scaled by each probe: where the primal is finite, a non-finite
    cotangent is a failure."""
    records = []
    for s in probes:
        label = f"probe x{s:g}"
        scaled = tuple(jnp.asarray(v * s, v.dtype) for v in rule.floats())
        try:
            out = rule.call(*scaled)
            if not all(
                np.all(np.isfinite(np.asarray(o))) for o in jax.tree.leaves(out) if is_float(o)
            ):
                continue  # the primal itself is not finite here: nothing to hold the rule to
            cots = jax.vjp(rule.call, *scaled)[1](jax.tree.unflatten(out_tree, cot_out))
        except Exception as e:
            records.append(RuleRecord(label, label, "", (), problem=_first_line(e)))
            continue
        for i, c in zip(rule.where, cots, strict=True):
            p = rule.paths[i]
            bad = ~np.isfinite(np.asarray(c, np.float64))
            records.append(
                RuleRecord(
                    f"{label} {p}",
                    label,
                    p,
                    tuple(np.shape(c)),
                    problem=None
                    if not bad.any()
                    else f"cotangent not finite at {int(bad.sum())} of {bad.size} elements, the "
                    "primal finite",
                )
            )
    return records

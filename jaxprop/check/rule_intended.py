"""Two checks of :func:`jaxprop.check_rule` for rules that are not held to finite differences
coordinate by coordinate: a rule declared ``intended`` (deliberately not the derivative: a
straight-through estimator, clipping, reversal), compared with its intended cotangents; and a rule
valid only on a tangent space (``project``), compared along projected directions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import compare, compare_fd
from jaxprop.check.rule_checks import _fd_estimates, _random_like, _vdot
from jaxprop.check.rule_options import RuleOptions
from jaxprop.check.rule_report import RuleRecord
from jaxprop.check.tolerance import precision, reference_scale

__all__ = ["intended_records", "project_tangents", "projected_records"]


def intended_records(rule, args, out_tree, cot_out, hand, options: RuleOptions, dtype):
    """The rule's cotangents against ``intended(g, *args)``, argument leaf by leaf."""
    assert options.intended is not None
    g = jax.tree.unflatten(out_tree, cot_out)
    want = options.intended(g, *args)
    if len(args) == 1 and not (isinstance(want, tuple) and len(want) == 1):
        want = (want,)
    if not isinstance(want, (tuple, list)) or len(want) != len(args):
        raise ValueError(
            f"intended(g, *args) must return one cotangent per argument ({len(args)}), as a bwd "
            f"does; got {type(want).__name__}"
            + (f" of length {len(want)}" if isinstance(want, (tuple, list)) else "")
        )
    records = []
    for k, (arg, w) in enumerate(zip(args, want, strict=True)):
        leaves = jax.tree.leaves(arg)
        got = jax.tree.leaves(w) if w is not None else [None] * len(leaves)
        first = sum(len(jax.tree.leaves(a)) for a in args[:k])
        for j in range(len(leaves)):
            i = first + j
            if i not in rule.where:
                continue
            p = rule.paths[i]
            shape = tuple(np.shape(leaves[j]))
            if p not in hand:
                continue
            ref = got[j] if j < len(got) else None
            if ref is None or np.shape(ref) != shape:
                problem = (
                    f"intended gives {'no cotangent' if ref is None else list(np.shape(ref))} "
                    f"for {p}, of shape {list(shape)}"
                )
                records.append(RuleRecord(f"intended {p}", "intended", p, shape, problem=problem))
                continue
            c = compare(
                "intended", hand[p], np.asarray(ref, np.float64), rtol=options.rtol_of(p),
                dtype=dtype,
            )  # fmt: skip
            records.append(RuleRecord(f"intended {p}", "intended", p, shape, comparison=c))
    return records


def project_tangents(rule, args, tangents, options: RuleOptions) -> tuple:
    """``tangents`` (one per float leaf) projected by ``options.project(args, tangents)``, whose
    tangents are a tuple like ``args`` (zeros at the leaves that are not differentiated)."""
    full: list[Any] = [jnp.zeros_like(leaf) for leaf in rule.leaves]
    for i, t in zip(rule.where, tangents, strict=True):
        full[i] = t
    assert options.project is not None
    tree = jax.tree.unflatten(rule.treedef, full)
    projected = options.project(tuple(jax.tree.unflatten(rule.treedef, rule.leaves)), tree)
    leaves = jax.tree.leaves(projected)
    if len(leaves) != len(full):
        raise ValueError(
            f"project(args, tangents) must return tangents like args ({len(full)} leaves), got "
            f"{len(leaves)}"
        )
    return tuple(
        jnp.asarray(leaves[i], jnp.result_type(rule.leaves[i])).reshape(np.shape(rule.leaves[i]))
        for i in rule.where
    )


def projected_records(rule, args, ref, projected, hand, seed, dtype, options, fd_samples):
    """⟨Jᵀc, P d⟩ against finite differences of ⟨c, f⟩ along P d, for ``fd_samples`` random
    directions d projected onto the rule's tangent space: one record over all of them."""
    paths = [rule.paths[i] for i in rule.where]
    if any(p not in hand for p in paths):
        return []
    dirs, lhs, size = [], [], []
    for s in range(fd_samples):
        d = tuple(
            _random_like(seed + s, "direction " + p, rule.leaves[i])
            for i, p in zip(rule.where, paths, strict=True)
        )
        d = project_tangents(rule, args, d, options)
        with precision(ref.dtype):
            dirs.append(tuple(jnp.asarray(di, ref.dtype) for di in d))
        lhs.append(sum(_vdot(hand[p], di) for p, di in zip(paths, d, strict=True)))
        size.append(
            sum(
                float(np.sum(np.abs(hand[p] * np.asarray(di, np.float64))))
                for p, di in zip(paths, d, strict=True)
            )
        )
    with precision(ref.dtype):
        e = _fd_estimates(projected, ref.floats, dirs, ref.dtype)
    scale = reference_scale(np.asarray(size), dtype=dtype)
    c = compare_fd(
        "finite differences", np.asarray(lhs), e.value[:, 0], e.error[:, 0],
        rtol=options.rtol_of_all(paths), scale=scale, dtype=dtype, left=e.left[:, 0],
        right=e.right[:, 0], kink=e.kink[:, 0], index_of=lambda k: (k,),
    )  # fmt: skip
    return [RuleRecord("reverse (tangent space)", "reverse", "tangent space", (), comparison=c)]

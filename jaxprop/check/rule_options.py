"""What a user can tell :func:`jaxprop.check_rule` about a rule: a tolerance per argument, the
arguments held fixed, the output cotangents, the tangent space the rule is valid on, and the
reference of a rule that is deliberately not the derivative (``intended``); each checked before
anything runs, with a one-line error naming the argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.tolerance import check_tolerance, tolerances

__all__ = ["RuleOptions", "rule_options"]


@dataclasses.dataclass(frozen=True)
class RuleOptions:
    """The options of one rule check, resolved.

    Attributes:
      rtol: the default tolerance of the exact comparisons.
      rtols: leaf path prefix -> its own tolerance (``{"args[1]": 1e-8}``), for a rule whose
        designed accuracy is below the dtype's (a divisor with 1e-8 added, say).
      hold: argument positions held fixed (never differentiated), beside ``nondiff_argnums``.
      cotangents: the output cotangents to use in place of random ones (a pytree like the output).
      cotangent_scale: what the random output cotangents are multiplied by (a clipping rule is
        exercised only by cotangents beyond its threshold).
      project: ``project(args, tangents) -> tangents``: the projection onto the tangent space
        the rule is valid on (|q| = 1 for a quaternion); every tangent and finite-difference
        direction is projected, and the reverse check compares along projected directions.
      intended: ``intended(g, *args) -> cotangents`` (one per argument, as the bwd returns
        them): the rule is deliberately not the derivative; its cotangents are compared with
        these instead of with finite differences.
    """

    rtol: float
    rtols: Mapping[str, float] = dataclasses.field(default_factory=dict)
    hold: frozenset[int] = frozenset()
    cotangents: Any = None
    cotangent_scale: float = 1.0
    project: Callable[..., Any] | None = None
    intended: Callable[..., Any] | None = None

    def rtol_of(self, path: str) -> float:
        """The tolerance of an argument leaf: the longest matching prefix of ``rtols``, else the
        default."""
        best = None
        for key, value in self.rtols.items():
            if (path == key or path.startswith(key + "/")) and (best is None or len(key) > best[0]):
                best = (len(key), value)
        return self.rtol if best is None else best[1]

    def rtol_of_all(self, paths: Sequence[str]) -> float:
        """The tolerance of a check that mixes every argument (the dot product, the jvp): the
        loosest of theirs."""
        return max([self.rtol, *(self.rtol_of(p) for p in paths)])


def rule_options(
    *,
    dtype: Any,
    rtol: float | Mapping[str, float] | None,
    hold: Sequence[int],
    n_args: int,
    cotangents: Any,
    cotangent_scale: float,
    project: Callable[..., Any] | None,
    intended: Callable[..., Any] | None,
    arg_paths: Sequence[str],
) -> tuple[np.dtype, RuleOptions]:
    """Checks and resolves the options of :func:`jaxprop.check_rule`.

    Raises:
      ValueError: naming the option for a tolerance that is not a positive number, a key of
        ``rtol`` that names no argument leaf, a ``hold`` position out of range, or a
        ``cotangent_scale`` that is not a positive number.
      TypeError: for a ``project`` or ``intended`` that is not callable.
    """
    rtols: dict[str, float] = {}
    if isinstance(rtol, Mapping):
        for key, value in rtol.items():
            if not isinstance(key, str) or not any(
                p == key or p.startswith(key + "/") for p in arg_paths
            ):
                raise ValueError(
                    f"check_rule: rtol key {key!r} names no argument leaf; the leaves are "
                    f"{list(arg_paths)} (a key may also name a whole argument, 'args[0]')"
                )
            rtols[key] = check_tolerance(f"rtol[{key!r}]", value)
        rtol = None
    dt, default, _ = tolerances(dtype, rtol)
    held = []
    for k in hold:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n_args:
            raise ValueError(
                f"check_rule: hold must list argument positions 0..{n_args - 1}, got {k!r}"
            )
        held.append(int(k))
    scale = check_tolerance("cotangent_scale", cotangent_scale)
    for name, fn in (("project", project), ("intended", intended)):
        if fn is not None and not callable(fn):
            raise TypeError(f"check_rule: {name} must be a function, got {type(fn).__name__}")
    return dt, RuleOptions(
        rtol=default,
        rtols=rtols,
        hold=frozenset(held),
        cotangents=cotangents,
        cotangent_scale=scale,
        project=project,
        intended=intended,
    )


def output_cotangents(options: RuleOptions, out: Any, random: list) -> list:
    """The output cotangents of the check: the user's (checked against the output's structure,
    shapes and dtypes) or the random ones scaled."""
    out_leaves, out_tree = jax.tree.flatten(out)
    if options.cotangents is None:
        return [
            c if jnp.result_type(c) == jax.dtypes.float0 else c * options.cotangent_scale
            for c in random
        ]
    given, tree = jax.tree.flatten(options.cotangents)
    if str(tree) != str(out_tree):
        raise ValueError(
            f"check_rule: cotangents must have the structure of f's output, {out_tree}, got {tree}"
        )
    cots = []
    for o, c, r in zip(out_leaves, given, random, strict=True):
        if np.shape(c) != np.shape(o):
            raise ValueError(
                f"check_rule: a cotangent of shape {np.shape(c)} for an output of shape "
                f"{np.shape(o)}"
            )
        isf = jnp.result_type(r) != jax.dtypes.float0
        cots.append(jnp.asarray(c, jnp.result_type(o)) if isf else r)
    return cots

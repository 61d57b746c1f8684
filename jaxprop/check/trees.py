"""Pytree helpers of the checkers: leaf paths, casting, the split of a parameter tree into its
array leaves and the rest (:func:`partition`), and memoised compiled functions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["leaf_path", "memoised"]


def _compiled(fn, jit: bool, grad: bool = False):
    """``fn`` (or ``jax.grad(fn)``) under ``jax.jit`` when ``jit``; memoised on ``fn``, so that
    checking the same function again reuses its compiled code."""
    return memoised(_build_compiled, fn, jit, grad)


def _build_compiled(fn, jit: bool, grad: bool):
    f = jax.grad(fn) if grad else fn
    return jax.jit(f) if jit else f


PyTree = Any


def memoised(build: Callable[..., Any], *key: Any) -> Any:
    """``build(*key)``, memoised when the key is hashable: the same function (a loss, a gradient
    source) then gives the same compiled function, which JAX's cache reuses across calls. An
    unhashable key (a model holding a list, say) is built afresh."""
    try:
        return _memo(build, *key)
    except TypeError:
        return build(*key)


@functools.lru_cache(maxsize=128)
def _memo(build: Callable[..., Any], *key: Any) -> Any:
    return build(*key)


def leaf_path(path: Sequence[Any]) -> str:
    """A readable name for a pytree key path: ``('layers', 0, 'A')`` becomes ``layers/0/A``."""
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts) if parts else "<root>"


def paths(tree: PyTree) -> dict[str, Any]:
    """The leaves of a pytree by :func:`leaf_path`, in flattening order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {leaf_path(p): leaf for p, leaf in leaves}


def cast(tree: PyTree, dtype: Any) -> PyTree:
    """Casts the floating-point leaves of a pytree to ``dtype``; other leaves pass through."""

    def cast_leaf(x: Any) -> Any:
        if isinstance(x, (jax.Array, np.ndarray, float)) and jnp.issubdtype(
            jnp.result_type(x), jnp.floating
        ):
            return jnp.asarray(x, dtype)
        return x

    return jax.tree.map(cast_leaf, tree)


def is_array_leaf(x: Any) -> bool:
    """Whether a pytree leaf is an array or a number (a leaf a check looks at), rather than a
    function, a string, an activation choice or another object (a leaf it skips, the way
    equinox's ``filter`` keeps a module's static fields out of ``jax.grad``)."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex))


@dataclasses.dataclass(frozen=True)
class Partition:
    """A parameter pytree split into its array leaves and the rest (:func:`partition`).

    Attributes:
      treedef: the structure of the whole tree.
      static: its leaves, with ``None`` in place of each array leaf.
      skipped: ``(path, type name)`` of each leaf that is not an array.
    """

    treedef: Any
    static: tuple[Any, ...]
    skipped: tuple[tuple[str, str], ...]

    def combine(self, arrays: PyTree) -> PyTree:
        """The whole tree again, from the tree of array leaves (``None`` elsewhere)."""
        leaves = self.treedef.flatten_up_to(arrays)
        return self.treedef.unflatten(
            [s if a is None else a for a, s in zip(leaves, self.static, strict=True)]
        )

    def arrays_of(self, grads: PyTree) -> dict[str, Any]:
        """The leaves of a hand gradient that are not skipped leaves of the parameters (those
        may hold anything: the same function, ``None``), by path."""
        skipped = {p for p, _ in self.skipped}
        return {p: g for p, g in paths(grads).items() if p not in skipped}


def partition(params: PyTree) -> tuple[PyTree, Partition | None]:
    """``(arrays, partition)``: ``params`` with every leaf that is not an array replaced by
    ``None``, and how to put them back; ``(params, None)`` when every leaf is an array."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    if all(is_array_leaf(leaf) for _, leaf in flat):
        return params, None
    static = tuple(None if is_array_leaf(leaf) else leaf for _, leaf in flat)
    skipped = tuple(
        (leaf_path(p), type(leaf).__name__) for p, leaf in flat if not is_array_leaf(leaf)
    )
    arrays = jax.tree_util.tree_unflatten(
        treedef, [leaf if is_array_leaf(leaf) else None for _, leaf in flat]
    )
    return arrays, Partition(treedef, static, skipped)


@dataclasses.dataclass(frozen=True)
class OnArrays:
    """``fn(params, *args)`` as a function of the array leaves of ``params`` alone (the others
    held, :class:`Partition`); with ``grads=True`` its result is a hand gradient, of which only
    the leaves that are not skipped parameters are kept. Hashable, so that checking the same
    function again reuses its compiled code."""

    fn: Callable[..., Any]
    part: Partition
    grads: bool = False

    def __call__(self, arrays: PyTree, *args: Any) -> Any:
        out = self.fn(self.part.combine(arrays), *args)
        return self.part.arrays_of(out) if self.grads else out


def finite_leaves_check(params: Mapping[str, Any] | PyTree) -> None:
    """Raises ``ValueError`` naming the parameter leaves that are not finite (NaN or inf), which
    would make every reference NaN and be blamed on the hand value."""
    bad = [p for p, v in paths(params).items() if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        raise ValueError(f"parameters are not finite (NaN or inf) at leaf {', '.join(bad)}")

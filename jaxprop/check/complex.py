"""Complex arguments and outputs, checked through their real and imaginary parts.

JAX's convention for a complex input z = x + iy of a real-valued L is that its cotangent (what
``jax.grad`` and a rule's bwd return) is ∂L/∂x − i ∂L/∂y::

    >>> import jax, jax.numpy as jnp
    >>> complex(jax.grad(lambda z: jnp.imag(z))(jnp.asarray(1.0 + 2.0j)))  # L = y: ∂L/∂y = 1
    -1j

A rule with complex leaves is checked as the real function of the pairs (x, y), stacked on a last
axis of 2 (:func:`realify`): every complex argument leaf becomes a real one of shape
``(*shape, 2)`` and every complex output leaf likewise. JAX composes the rule with the two
conversions by that same convention, so the finite differences along each real and imaginary
direction judge the rule's complex cotangents (and tangents) exactly; holomorphic and
non-holomorphic rules alike.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "COMPLEX_NOTE",
    "complex_dtype",
    "has_complex",
    "realify",
    "realify_grads",
    "realify_tree",
]

COMPLEX_NOTE = (
    "complex leaves checked as (real, imaginary) pairs on a last axis of 2; JAX's convention: the "
    "cotangent of z = x + iy is ∂L/∂x − i ∂L/∂y"
)


def _is_complex(x: Any) -> bool:
    """A complex array, number or ``jax.ShapeDtypeStruct``."""
    if isinstance(x, complex):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and bool(jnp.issubdtype(dtype, jnp.complexfloating))


def has_complex(tree: Any) -> bool:
    """Whether any leaf of ``tree`` is a complex array or number."""
    return any(_is_complex(x) for x in jax.tree.leaves(tree))


def complex_dtype(dtype: Any) -> np.dtype:
    """The complex dtype of a real one: complex128 for float64, complex64 for float32.

    Raises:
      ValueError: for a dtype with no complex counterpart (bfloat16, float16).
    """
    dt = jnp.dtype(dtype)
    if dt == jnp.float64:
        return jnp.dtype(jnp.complex128)
    if dt == jnp.float32:
        return jnp.dtype(jnp.complex64)
    raise ValueError(
        f"complex arguments are checked in float64 or float32 (complex128 or complex64), not in "
        f"{dt.name}; pass dtype='float64'"
    )


def _to_real(x: Any) -> Any:
    return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1) if _is_complex(x) else x


def realify_tree(tree: Any) -> Any:
    """Each complex leaf as its (real, imaginary) pairs on a last axis of 2."""
    return jax.tree.map(_to_real, tree)


def realify(
    f: Callable[..., Any], args: tuple, held: Collection[int], dtype: Any
) -> tuple[Callable[..., Any], tuple]:
    """``f`` as a real function of real arguments: ``(f_real, args_real)``.

    The complex leaves of the arguments that are not held are cast to the complex dtype of
    ``dtype`` and become real leaves of shape ``(*shape, 2)``; ``f_real`` rebuilds them, calls
    ``f`` and returns its complex output leaves the same way.
    """
    cdt = complex_dtype(dtype)
    leaves, treedef = jax.tree.flatten(args)
    owner = [k for k, a in enumerate(args) for _ in jax.tree.leaves(a)]
    complex_at = [_is_complex(x) and owner[i] not in held for i, x in enumerate(leaves)]
    real_leaves = [
        _to_real(jnp.asarray(x, cdt)) if c else x for x, c in zip(leaves, complex_at, strict=True)
    ]

    def f_real(*a: Any) -> Any:
        got = jax.tree.leaves(a)
        back = [
            jax.lax.complex(r[..., 0], r[..., 1]) if c else r
            for r, c in zip(got, complex_at, strict=True)
        ]
        return realify_tree(f(*jax.tree.unflatten(treedef, back)))

    f_real.__name__ = getattr(f, "__name__", type(f).__name__)
    return f_real, tuple(jax.tree.unflatten(treedef, real_leaves))


def realify_grads(
    loss_fn: Callable[..., Any], grad_fn: Callable[..., Any], params: Any, dtype: Any
) -> tuple[Callable[..., Any], Callable[..., Any], Any]:
    """A loss of complex parameters and its hand gradient, as the loss of their real and
    imaginary parts: ``(loss_real, grad_real, params_real)``.

    A complex leaf z = x + iy becomes the real leaf ``(*shape, 2)`` of (x, y); the hand gradient
    h = ∂L/∂x − i ∂L/∂y (JAX's convention) becomes (Re h, −Im h) = (∂L/∂x, ∂L/∂y), which is what
    ``jax.grad`` of the real loss is.
    """
    cdt = complex_dtype(dtype)
    leaves, treedef = jax.tree.flatten(params)
    complex_at = [_is_complex(x) for x in leaves]

    def back(p_real: Any) -> Any:
        got = jax.tree.leaves(p_real)
        return jax.tree.unflatten(
            treedef,
            [
                jax.lax.complex(r[..., 0], r[..., 1]) if c else r
                for r, c in zip(got, complex_at, strict=True)
            ],
        )

    def loss_real(p_real: Any, *args: Any) -> Any:
        return loss_fn(back(p_real), *args)

    def grad_real(p_real: Any, *args: Any) -> Any:
        hand = grad_fn(back(p_real), *args)
        hand_leaves, hand_tree = jax.tree.flatten(hand)
        if str(hand_tree) != str(treedef):
            return hand  # the structure check names the mismatch
        return jax.tree.unflatten(
            treedef,
            [
                jnp.stack([jnp.real(h), -jnp.imag(h)], axis=-1) if c else h
                for h, c in zip(hand_leaves, complex_at, strict=True)
            ],
        )

    params_real = jax.tree.unflatten(
        treedef,
        [
            _to_real(jnp.asarray(x, cdt)) if c else x
            for x, c in zip(leaves, complex_at, strict=True)
        ],
    )
    return loss_real, grad_real, params_real

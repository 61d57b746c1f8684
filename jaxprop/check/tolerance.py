"""The verification core: one comparison, one tolerance policy, one report family.

Every checker of jaxprop (:func:`jaxprop.check_grads`, :func:`jaxprop.check_jacobian`,
:func:`jaxprop.check_nodes`, the worked examples of the registry) compares a hand value with a
reference through :func:`compare` and reports through a :class:`Report`. The numbers of the policy
live here and nowhere else.

**Tolerances, by dtype** (:func:`default_tolerances`):

============  ======================  ==============================
dtype         rtol vs an exact        finite differences judge up to
              reference (jax.grad)    this allowance (× the scale)
============  ======================  ==============================
float64       1e-10                   1e-2
float32       1e-4                    1e-2
bfloat16      5e-2                    1e-1
float16       1e-2                    1e-1
============  ======================  ==============================

A correct hand gradient agrees with ``jax.grad`` to rounding, about 1e-15 relative in float64; a
float32, bfloat16 or float16 one is held to a float64 reference. Against finite differences
(:mod:`jaxprop.check.fd`) a hand value agrees within ``FD_ERROR_MULTIPLE`` (10) times the
estimate's own error plus rtol × the scale; an element whose allowance exceeds the last column is
inconclusive.

**The scale rule** (:func:`reference_scale`). The error of a leaf is ``max |hand − ref|`` over the
leaf's *scale*, the largest of:

1. ``max |ref|``, the size of the reference leaf itself: the usual relative error;
2. ``terms``, the size of the terms that sum to the reference, where the caller knows them (a
   gradient that vanishes at the normal equations is a difference of two terms of size
   2‖Φ‖‖y‖: it is compared with them);
3. ``noise / rtol``: the rounding noise of a correct computation in the check's dtype, over the
   tolerance. A deviation below the noise cannot be a verdict. For the comparison with
   ``jax.grad`` the noise is measured on the function itself: ``NOISE_MULTIPLE`` (10) times the
   largest difference between ``jax.grad`` in a lower precision and the float64 reference (for a
   float64 check, float32 scaled by ε64/ε32), capped at ``NOISE_CAP_ULPS`` (1000) units of
   rounding of the gradient's terms (ε S, :func:`sensitivity`). At a minimum, where every true
   gradient is round-off of terms that cancel, this is what keeps the scale from vanishing with
   the reference; it is computed only for a leaf that fails against ``max |ref|`` alone, and it
   never lowers a scale;
4. ``1e-6`` of the largest leaf of the same check (``peak``), so that one leaf of tiny values
   beside large ones is compared absolutely at the others' precision;
5. the dtype's smallest normal number, so that the quotient is always defined.

Away from a stationary point, and unless the gradient is ill-conditioned in the check's dtype,
items 2–5 are below ``max |ref|`` and the error is the plain relative error.

>>> import numpy as np
>>> from jaxprop.check import compare
>>> c = compare("jax.grad", np.array([1.0, 2.0 + 1e-12]), np.array([1.0, 2.0]), rtol=1e-10)
>>> c.ok, c.worst_index, f"{c.max_rel:.1e}"
(True, (1,), '5.0e-13')
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.trees import PyTree

__all__ = ["default_tolerances", "precision", "reference_scale", "sensitivity"]


def max_abs(ref: Any) -> float:
    """``max |ref|`` (0 for an empty array), without an array of absolute values."""
    a = np.asarray(ref)
    if a.size == 0:
        return 0.0
    return float(max(abs(float(np.max(a))), abs(float(np.min(a)))))


def is_float(x: Any) -> bool:
    """Whether a pytree leaf is a floating-point array or number (a leaf that is differentiated).

    Only arrays and numbers count: ``jnp.result_type("double")`` would read a string as a dtype
    name."""
    if not isinstance(x, (jax.Array, np.ndarray, np.generic, float)):
        return False
    return bool(jnp.issubdtype(jnp.result_type(x), jnp.floating))


_TOLERANCES = {
    # dtype: (rtol vs an exact reference such as jax.grad, the largest relative allowance at which
    # finite differences still judge: beyond it an element is inconclusive)
    "float64": (1e-10, 1e-2),
    "float32": (1e-4, 1e-2),
    "bfloat16": (5e-2, 1e-1),
    "float16": (1e-2, 1e-1),
}


# A hand value agrees with a finite-difference estimate within this many of its error estimates
# (plus the dtype's rtol times the scale).
FD_ERROR_MULTIPLE = 10.0


# Item 4 of the scale rule: a leaf is compared at least at this fraction of the check's peak.
PEAK_FRACTION = 1e-6


# Item 3: a hand value within this many times the rounding noise of a correct gradient in its
# dtype (measured: jax.grad in a lower precision against float64) cannot be judged wrong ...
NOISE_MULTIPLE = 10.0


# ... and the measured noise is believed up to this many units of rounding of the gradient's
# terms (ε S, :func:`sensitivity`): beyond it the lower precision has overflowed or saturated
# and says nothing about rounding.
NOISE_CAP_ULPS = 1000.0


def dtype_name(dtype: Any) -> str:
    """The name of a dtype (``"float64"``), or the string given when it is not one."""
    try:
        return jnp.dtype(dtype).name
    except TypeError:
        return str(dtype)


def default_tolerances(dtype: Any) -> tuple[float, float]:
    """``(rtol vs jax.grad, rtol vs finite differences)`` for float64 or float32.

    Raises:
      ValueError: for any other dtype.
    """
    name = dtype_name(dtype)
    if name not in _TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(_TOLERANCES)}, got {name!r}")
    return _TOLERANCES[name]


def check_tolerance(name: str, value: Any) -> float:
    """``value`` as a float, checked to be a positive finite number.

    Raises:
      ValueError: naming the argument otherwise (a negative tolerance would fail every leaf).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def tolerances(
    dtype: Any, rtol: float | None = None, fd_rtol: float | None = None
) -> tuple[np.dtype, float, float | None]:
    """The dtype a check runs in, its tolerance against an exact reference (the dtype's default
    unless given) and the extra allowance against finite differences (``None`` unless given).

    Raises:
      ValueError: for an unsupported dtype or a tolerance that is not a positive number.
    """
    auto_rtol, _ = default_tolerances(dtype)
    rtol = auto_rtol if rtol is None else check_tolerance("rtol", rtol)
    return jnp.dtype(dtype), rtol, None if fd_rtol is None else check_tolerance("fd_rtol", fd_rtol)


def precision(dtype: Any) -> contextlib.AbstractContextManager:
    """The context a check in ``dtype`` runs in: 64-bit mode on for float64 (whatever the global
    setting), nothing changed otherwise."""
    if jnp.dtype(dtype) == jnp.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def reference_scale(
    ref: Any,
    *,
    dtype: Any,
    peak: float = 0.0,
    terms: float = 0.0,
    noise: float = 0.0,
    rtol: float | None = None,
) -> float:
    """The scale a hand value's error is divided by: the module's scale rule, items 1–5.

    Args:
      ref: the reference values (any array).
      dtype: the dtype of the check (its smallest normal number is the last floor).
      peak: the largest ``max |ref|`` over the leaves of the same check.
      terms: the size of the terms that sum to the reference, where known.
      noise: the reference's own absolute uncertainty.
      rtol: the tolerance the error is held to (needed when ``noise`` is given).

    Returns:
      ``max(max |ref|, terms, noise / rtol, 1e-6 · peak, tiny)``.
    """
    for name, value in (("peak", peak), ("terms", terms), ("noise", noise)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"reference_scale: {name} must be a number >= 0, got {value!r}")
        if not value >= 0:
            raise ValueError(f"reference_scale: {name} must be a number >= 0, got {value!r}")
    if noise and rtol is None:
        raise ValueError("reference_scale: noise is divided by rtol; pass rtol= as well")
    if rtol is not None:
        rtol = check_tolerance("rtol", rtol)
    if not _is_floating_dtype(dtype):
        raise ValueError(
            f"reference_scale: dtype must be a floating-point dtype, got {dtype_name(dtype)!r}"
        )
    ref = np.asarray(ref)
    if not _is_real(ref):
        raise ValueError(f"reference_scale: ref must be a real array, got dtype {ref.dtype}")
    size = max_abs(ref)
    from_noise = noise / rtol if noise and rtol else 0.0
    if not math.isfinite(size):
        return math.inf  # a non-finite reference: every error is then 0 (equal inf) or NaN
    return max(size, terms, from_noise, PEAK_FRACTION * peak, float(jnp.finfo(dtype).tiny))


def _is_real(arr: np.ndarray) -> bool:
    """Real numbers: floating (bfloat16 and float16 included), integer or boolean arrays."""
    return bool(
        jnp.issubdtype(arr.dtype, jnp.floating)
        or jnp.issubdtype(arr.dtype, jnp.integer)
        or arr.dtype == np.bool_
    )


def _is_floating_dtype(dtype: Any) -> bool:
    try:
        return bool(jnp.issubdtype(jnp.dtype(dtype), jnp.floating))
    except TypeError:
        return False


def sensitivity(
    grad_fn: Callable[..., PyTree], inputs: tuple, seed: int = 0, directions: int = 2
) -> PyTree:
    """How much ``grad_fn(*inputs)`` moves when every input moves by its own size: ``S``.

    For each of ``directions`` random sign vectors s, the directional derivative of ``grad_fn``
    along δz = s ⊙ z over all floating-point leaves z of ``inputs`` (parameters and data alike),
    in forward mode (``jax.jvp``: exact, so a kink is never stepped across); ``S`` is the root mean
    square of those derivatives, elementwise: the size of the terms whose sum is the gradient
    (for least squares (2/N) ΦᵀΦθ and (2/N) Φᵀy, which cancel at the minimum). ε S is the change
    that rounding the inputs alone makes in any computed gradient.

    Returns:
      A pytree like ``grad_fn``'s output of non-negative NumPy float64 arrays.
    """
    leaves, treedef = jax.tree.flatten(inputs)
    where = [i for i, leaf in enumerate(leaves) if is_float(leaf)]
    rng = np.random.default_rng(seed)

    def of_floats(*floats: Any) -> PyTree:
        full = list(leaves)
        for i, v in zip(where, floats, strict=True):
            full[i] = v
        return grad_fn(*jax.tree.unflatten(treedef, full))

    total = None
    for _ in range(directions):
        tangents = tuple(
            jnp.asarray(
                rng.choice([-1.0, 1.0], size=np.shape(leaves[i])), jnp.result_type(leaves[i])
            )
            * leaves[i]
            for i in where
        )
        _, change = jax.jvp(of_floats, tuple(leaves[i] for i in where), tangents)
        squared = jax.tree.map(lambda c: np.asarray(c, np.float64) ** 2, change)
        total = squared if total is None else jax.tree.map(np.add, total, squared)
    return jax.tree.map(lambda v: np.sqrt(v / directions), total)

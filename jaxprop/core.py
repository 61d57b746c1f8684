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
(:mod:`jaxprop.fd`) a hand value agrees within ``FD_ERROR_MULTIPLE`` (10) times the estimate's own
error plus rtol × the scale; an element whose allowance exceeds the last column is inconclusive.

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
>>> c = compare("jax.grad", np.array([1.0, 2.0 + 1e-12]), np.array([1.0, 2.0]), rtol=1e-10)
>>> c.ok, c.worst_index, f"{c.max_rel:.1e}"
(True, (1,), '5.0e-13')
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Comparison",
    "GradientCheckError",
    "Record",
    "Report",
    "compare",
    "compare_fd",
    "default_tolerances",
    "fd_allowance",
    "format_rows",
    "is_float",
    "judge",
    "leaf_path",
    "memoised",
    "precision",
    "reference_scale",
    "relative_difference",
    "sensitivity",
]

PyTree = Any

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


class GradientCheckError(AssertionError):
    """Raised by :meth:`Report.raise_if_failed`: a hand value disagrees with the truth."""


# ---------------------------------------------------------------------------------------------
# The tolerance policy.


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


def is_float(x: Any) -> bool:
    """Whether a pytree leaf is a floating-point array or number (a leaf that is differentiated).

    Only arrays and numbers count: ``jnp.result_type("double")`` would read a string as a dtype
    name."""
    if not isinstance(x, (jax.Array, np.ndarray, np.generic, float)):
        return False
    return bool(jnp.issubdtype(jnp.result_type(x), jnp.floating))


# ---------------------------------------------------------------------------------------------
# One comparison.


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A hand value against one reference.

    Attributes:
      reference: what it was compared with: ``"jax.grad"``, ``"finite differences"``, …
      max_abs: the largest absolute error (over the elements that were judged).
      max_rel: ``max_abs`` over the scale (:func:`reference_scale`).
      worst_index: the index of the element with the largest error.
      hand: the hand value at that element.
      ref: the reference value at that element.
      n_compared: how many elements were compared.
      rtol: the tolerance ``max_rel`` was held to.
      margin: against an inexact reference (finite differences), the largest error over its
        element's allowance (``FD_ERROR_MULTIPLE`` × the estimate's error + rtol × scale); the
        comparison passes when it is at most 1. ``None`` against an exact reference.
      error_estimate: the reference's estimated error at the worst element (finite differences).
      steps: the ladder of steps of the worst element (finite differences), to re-run it.
      kinks: the indices where the function is not differentiable and the hand value is a valid
        subgradient (it lies between the one-sided derivatives): counted, not failed.
      inconclusive: the indices where the reference's error is too large to judge (noise,
        overflow): reported, not failed; the verdict rests on the other reference.
    """

    reference: str
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...]
    hand: float
    ref: float
    n_compared: int
    rtol: float
    margin: float | None = None
    error_estimate: float | None = None
    steps: tuple[float, ...] = ()
    kinks: tuple[tuple[int, ...], ...] = ()
    inconclusive: tuple[tuple[int, ...], ...] = ()

    @property
    def ok(self) -> bool:
        if self.margin is not None:
            return bool(np.isfinite(self.margin) and self.margin <= 1.0)
        return bool(np.isfinite(self.max_rel) and self.max_rel <= self.rtol)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["worst_index"] = list(self.worst_index)
        d["ok"] = self.ok
        d["kinks"] = [list(i) for i in self.kinks]
        d["inconclusive"] = [list(i) for i in self.inconclusive]
        d["steps"] = list(self.steps)
        for k in ("max_abs", "max_rel", "hand", "ref", "margin", "error_estimate"):
            if d[k] is not None:
                d[k] = json_float(d[k])
        return d


def compare(
    reference: str,
    hand: Any,
    ref: Any,
    *,
    rtol: float,
    dtype: Any = None,
    scale: float | None = None,
    peak: float = 0.0,
    terms: float = 0.0,
    noise: float = 0.0,
    index_of: Callable[[int], tuple[int, ...]] | None = None,
    allowance: Any = None,
    interval: tuple[Any, Any] | None = None,
    kink: Any = None,
    excused: Any = None,
    inconclusive: Any = None,
    error: Any = None,
    steps: Any = None,
) -> Comparison:
    """Compares a hand value with a reference, elementwise: the one comparison of jaxprop.

    Args:
      reference: the reference's name, for the report.
      hand: the hand values, an array.
      ref: the reference values, an array of the same size.
      rtol: the tolerance on the relative error.
      dtype: the dtype of the check (default: ``ref``'s).
      scale: the scale, when already computed by :func:`reference_scale`; otherwise it is
        computed from ``ref``, ``peak``, ``terms`` and ``noise`` by that rule.
      peak, terms, noise: as for :func:`reference_scale`.
      index_of: maps a flat position to the index reported (default: the index in ``ref``'s
        shape).
      allowance: for an inexact reference, each element's absolute allowance (the comparison
        passes when every error is within it: ``margin <= 1``).
      interval: ``(low, high)``, each element's one-sided derivatives; where ``kink`` is true the
        error is the distance of the hand value from ``[min, max]`` of the two.
      kink: where the reference is not differentiable (elementwise booleans).
      excused: elements excused from this comparison because they are valid subgradients at a
        kink found by the other reference (counted among ``kinks``).
      inconclusive: elements the reference cannot judge (left out of the verdict, listed).
      error: the reference's error estimate per element (recorded at the worst element).
      steps: per element, the ladder of steps (recorded at the worst element).

    Returns:
      The :class:`Comparison`; a non-finite error makes ``max_rel`` infinite (a failure).

    Raises:
      ValueError: if ``hand`` and ``ref`` have different sizes, or ``rtol`` is not a positive
        number.
    """
    rtol = check_tolerance("rtol", rtol)
    hand_arr, ref_arr = np.asarray(hand), np.asarray(ref)
    for name, arr in (("hand", hand_arr), ("ref", ref_arr)):
        if not _is_real(arr):
            raise ValueError(f"compare: {name} must be a real array, got dtype {arr.dtype}")
    if scale is not None:
        scale = check_tolerance("scale", scale)
    hand_flat = np.asarray(np.ravel(hand_arr), np.float64)
    ref_flat = np.asarray(np.ravel(ref_arr), np.float64)
    if hand_flat.size != ref_flat.size:
        raise ValueError(
            f"compare: hand has {hand_flat.size} elements (shape {np.shape(hand)}) but ref has "
            f"{ref_flat.size} (shape {ref_arr.shape}); pass arrays of the same size"
        )
    if index_of is None:
        shape = ref_arr.shape

        def index_of(k: int) -> tuple[int, ...]:
            return tuple(int(i) for i in np.unravel_index(k, shape)) if shape else ()

    def flat(mask: Any) -> np.ndarray:
        if mask is None:
            return np.zeros(ref_flat.shape, bool)
        return np.ravel(np.asarray(mask, bool))

    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(hand_flat - ref_flat)
        kinked = flat(kink) if kink is not None else np.zeros(0, bool)
        if interval is not None and kinked.any():
            lo, hi = (np.ravel(np.asarray(v, np.float64)) for v in interval)
            low, high = np.minimum(lo, hi), np.maximum(lo, hi)
            outside = np.maximum(low - hand_flat, hand_flat - high).clip(min=0.0)
            err = np.where(kinked, outside, err)
    if err.size == 0:
        # A leaf with no elements (shape (0,), say) has nothing to disagree on.
        return Comparison(reference, 0.0, 0.0, (), 0.0, 0.0, 0, rtol)
    if scale is None:
        scale = reference_scale(
            ref_arr,
            dtype=(ref_arr.dtype if _is_floating_dtype(ref_arr.dtype) else np.float64)
            if dtype is None
            else dtype,
            peak=peak,
            terms=terms,
            noise=noise,
            rtol=rtol,
        )
    plain = allowance is None and inconclusive is None and excused is None and kink is None
    if plain:
        # The common case (an exact reference, nothing excused): one pass over the errors.
        finite = bool(np.isfinite(err).all())
        k = int(np.argmax(err)) if finite else int(np.argmax(~np.isfinite(err)))
        margin: float | None = None
        max_abs = float(err[k]) if finite else math.inf
        max_rel = max_abs / scale if finite else math.inf
        kink_ok = left_out = np.zeros(0, bool)
    else:
        kinked = flat(kink)
        left_out = flat(inconclusive)
        judged = ~left_out & ~flat(excused)
        kink_ok = (kinked & (err == 0)) | flat(excused)
        if allowance is not None:
            allow = np.broadcast_to(np.ravel(np.asarray(allowance, np.float64)), err.shape)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(judged, err / allow, 0.0)
            ratio = np.where(np.isnan(ratio), np.inf, ratio)
            k = int(np.argmax(ratio))
            margin = float(ratio[k])
            kink_ok = kink_ok | (kinked & judged & (ratio <= 1.0))
        else:
            margin = None
            k = int(np.argmax(np.where(judged, np.where(np.isfinite(err), err, np.inf), -1.0)))
        if not np.isfinite(err[k]) and judged[k]:
            max_abs = max_rel = math.inf
        else:
            max_abs = float(np.max(np.where(judged, err, 0.0)))
            max_rel = max_abs / scale
    return Comparison(
        reference=reference,
        max_abs=max_abs,
        max_rel=max_rel,
        worst_index=index_of(k),
        hand=float(hand_flat[k]),
        ref=float(ref_flat[k]),
        n_compared=int(err.size),
        rtol=rtol,
        margin=margin,
        error_estimate=None if error is None else float(np.ravel(np.asarray(error))[k]),
        steps=() if steps is None else tuple(float(v) for v in np.asarray(steps)[k]),
        kinks=tuple(index_of(int(i)) for i in np.flatnonzero(kink_ok)),
        inconclusive=tuple(index_of(int(i)) for i in np.flatnonzero(left_out)),
    )


def fd_allowance(error: Any, *, rtol: float, scale: float, dtype: Any) -> tuple[Any, Any]:
    """How far a hand value may lie from a finite-difference estimate: ``FD_ERROR_MULTIPLE`` ×
    the estimate's error + ``rtol`` × the scale; and where the estimate cannot judge (the
    allowance beyond the dtype's limit, ``default_tolerances(dtype)[1]`` × the scale, or not
    finite: *inconclusive*). Returns ``(allowance, inconclusive)``, elementwise."""
    allowance = FD_ERROR_MULTIPLE * np.asarray(error, np.float64) + rtol * scale
    limit = default_tolerances(dtype)[1]
    return allowance, ~np.isfinite(allowance) | (allowance > limit * scale)


def compare_fd(
    reference: str,
    hand: Any,
    estimate_value: Any,
    error: Any,
    *,
    rtol: float,
    scale: float,
    dtype: Any,
    left: Any = None,
    right: Any = None,
    kink: Any = None,
    index_of: Callable[[int], tuple[int, ...]] | None = None,
    steps: Any = None,
) -> Comparison:
    """A hand value against a finite-difference estimate with its error (:mod:`jaxprop.fd`): the
    one judging rule of every finite-difference comparison (:func:`fd_allowance`); at a kink
    (``kink``, with the one-sided estimates ``left`` and ``right``) any value between them
    passes."""
    allowance, inconclusive = fd_allowance(error, rtol=rtol, scale=scale, dtype=dtype)
    return compare(
        reference,
        hand,
        estimate_value,
        rtol=rtol,
        scale=scale,
        index_of=index_of,
        allowance=np.where(inconclusive, np.inf, allowance),
        interval=None if left is None else (left, right),
        kink=kink,
        inconclusive=inconclusive,
        error=error,
        steps=steps,
    )


def judge(
    hand: Any,
    ref: Any,
    *,
    what: str,
    missing: str,
    reference: str = "jax.grad",
    expected_dtype: Any = None,
    **compare_kwargs: Any,
) -> tuple[Comparison | None, str | None]:
    """A hand array against its reference: the structural checks first, then :func:`compare`.

    Args:
      hand: the hand value (``None`` when the hand result has no such entry).
      ref: the reference, an array.
      what: what the hand value is, for the problem text (``"hand gradient"``, ``"hand
        adjoint"``, ``"hand Jacobian"``).
      missing: the problem text when ``hand`` is ``None``.
      expected_dtype: the dtype the hand value must have (default: the reference's; a float64
        reference of a float32 check expects float32).
      reference: the reference's name.
      **compare_kwargs: ``rtol`` and the scale arguments of :func:`compare`.

    Returns:
      ``(comparison, problem)``: the comparison (``None`` when the shapes or dtypes do not even
      allow one) and what is wrong with the hand value's structure or finiteness (or ``None``).
    """
    ref = np.asarray(ref)
    if hand is None:
        return None, missing
    if jnp.shape(hand) != ref.shape:
        return None, f"{what} has shape {jnp.shape(hand)}, expected {ref.shape}"
    expected = ref.dtype if expected_dtype is None else jnp.dtype(expected_dtype)
    if jnp.result_type(hand) != expected:
        return None, f"{what} has dtype {jnp.result_type(hand)}, expected {expected}"
    hand = np.asarray(hand)
    comparison = compare(reference, hand, ref, **compare_kwargs)
    return comparison, None if np.all(np.isfinite(hand)) else f"{what} is not finite"


def max_abs(ref: Any) -> float:
    """``max |ref|`` (0 for an empty array), without an array of absolute values."""
    a = np.asarray(ref)
    if a.size == 0:
        return 0.0
    return float(max(abs(float(np.max(a))), abs(float(np.min(a)))))


def peak_of(refs: Iterable[Any]) -> float:
    """The largest ``max |ref|`` over the leaves of one check (item 4 of the scale rule)."""
    return max((max_abs(r) for r in refs), default=0.0)


def relative_difference(a: Any, b: Any) -> np.ndarray:
    """``|a − b| / |b|`` elementwise, in float64, the denominator floored at the smallest normal
    number (item 5 of the scale rule): how far two curves (two runs' losses) drift apart."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged run's inf − inf: NaN
        return np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)


def mismatch(hand: Any, candidate: Any) -> float:
    """``max |hand − candidate|`` over the larger of ``max |hand|`` and ``max |candidate|``, in
    float64 (the denominator floored at the smallest normal number, item 5 of the scale rule):
    how far a hand value is from one explanation of it (a diagnosis's candidate); ``inf`` where
    either is not finite or the shapes differ."""
    a, b = np.asarray(hand, np.float64), np.asarray(candidate, np.float64)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    scale = max(max_abs(a), max_abs(b), float(np.finfo(np.float64).tiny))
    return max_abs(a - b) / scale


def json_float(v: float) -> float | str:
    """``v`` for JSON: non-finite numbers as their string (``"inf"``, ``"nan"``)."""
    return float(v) if math.isfinite(v) else str(v)


# ---------------------------------------------------------------------------------------------
# One report family.


@dataclasses.dataclass(frozen=True)
class Record:
    """One checked entry of a report (a gradient leaf, a node): its comparisons and its problem.

    Subclasses declare their identifying fields (``path``, ``name``, ``shape``, …), then the
    comparisons (fields of type :class:`Comparison` or ``None``) and ``problem``. A record passes
    when it has no problem, has a comparison ``vs_auto`` (with the exact reference), and every
    comparison passes.
    """

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        values = (getattr(self, f.name) for f in dataclasses.fields(self))
        return tuple(v for v in values if isinstance(v, Comparison))

    @property
    def ok(self) -> bool:
        return (
            getattr(self, "problem", None) is None
            and getattr(self, "vs_auto", None) is not None
            and all(c.ok for c in self.comparisons)
        )

    def to_dict(self) -> dict:
        """JSON-ready: the identifying fields, ``ok``, ``problem``, then every comparison."""
        ident, comps = {}, {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "problem":
                continue
            if isinstance(value, Comparison) or value is None or hasattr(value, "to_dict"):
                # A comparison, or a diagnosis: its figures as a dict.
                comps[f.name] = None if value is None else value.to_dict()
            else:
                ident[f.name] = list(value) if isinstance(value, tuple) else value
        return {**ident, "ok": self.ok, "problem": getattr(self, "problem", None), **comps}


@dataclasses.dataclass(frozen=True)
class Report:
    """The base of every report of jaxprop: a table of :class:`Record` entries.

    Subclasses say which field holds the entries (``_entries``), which field of an entry names it
    (``_key``) and what the hand value is called in messages (``_what``); their ``__str__`` lays
    out the table with :func:`format_rows`. ``ok`` is true when every entry passes (and
    :meth:`_extra_ok`); a report is truthy exactly when it passes.
    """

    _entries: ClassVar[str] = "leaves"
    _key: ClassVar[str] = "path"
    _what: ClassVar[str] = "hand value"

    def entries(self) -> tuple[Any, ...]:
        """The checked entries, in the report's order."""
        return tuple(getattr(self, self._entries))

    def _extra_ok(self) -> bool:
        return True

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries()) and self._extra_ok()

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failing(self) -> tuple[str, ...]:
        """The names of the failing entries, in order."""
        return tuple(getattr(e, self._key) for e in self.entries() if not e.ok)

    @property
    def diagnosis(self) -> Any:
        """What the mistake is at the first failing entry (a
        :class:`jaxprop.diagnosis.Diagnosis`), or ``None`` when the report passes or has no
        diagnosis."""
        return next((e.diagnosis for e in self.entries() if getattr(e, "diagnosis", None)), None)

    @property
    def diagnoses(self) -> dict[str, Any]:
        """The diagnosis of every diagnosed entry, by its name."""
        return {
            getattr(e, self._key): e.diagnosis
            for e in self.entries()
            if getattr(e, "diagnosis", None) is not None
        }

    def __getitem__(self, key: str) -> Any:
        for e in self.entries():
            if getattr(e, self._key) == key:
                return e
        names = [getattr(e, self._key) for e in self.entries()]
        kinds = "leaves" if self._kind() == "leaf" else f"{self._kind()}s"
        raise KeyError(f"no {self._kind()} {key!r}; {kinds} are {names}")

    @classmethod
    def _kind(cls) -> str:
        return "leaf" if cls._entries == "leaves" else cls._entries.rstrip("s")

    def _header(self) -> dict:
        """The fields of ``to_dict`` before ``failing`` and the entries."""
        return {"name": getattr(self, "name", None), "ok": self.ok}

    def _trailer(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        """A JSON-ready dict: the header fields, ``failing``, and every entry's figures."""
        return {
            **self._header(),
            "failing": list(self.failing),
            **self._trailer(),
            self._entries: [e.to_dict() for e in self.entries()],
        }

    def _failure_message(self) -> str:
        return f"{self._what} is wrong at {', '.join(self.failing)}"

    def raise_if_failed(self) -> Any:
        """Returns the report if it passes.

        Raises:
          GradientCheckError: naming every failing entry, with the table.
        """
        if not self.ok:
            raise GradientCheckError(f"{self._failure_message()}\n{self}")
        return self


def format_rows(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as a left-aligned table, columns two spaces apart (the first row is the
    header): the one table layout of every report."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# ---------------------------------------------------------------------------------------------
# Pytree helpers every checker uses.


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

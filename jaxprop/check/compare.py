"""One comparison of a hand value with a reference: :class:`Comparison`, :func:`compare`, and the
finite-difference allowance (:func:`compare_fd`, :func:`judge`); every checker compares through
here, under the tolerances of :mod:`jaxprop.check.tolerance`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxprop.check.tolerance import (
    FD_ERROR_MULTIPLE,
    _is_floating_dtype,
    _is_real,
    check_tolerance,
    default_tolerances,
    max_abs,
    reference_scale,
)

__all__ = [
    "Comparison",
    "compare",
    "compare_fd",
    "fd_allowance",
    "judge",
    "relative_difference",
]


def json_float(v: float) -> float | str:
    """``v`` for JSON: non-finite numbers as their string (``"inf"``, ``"nan"``)."""
    return float(v) if math.isfinite(v) else str(v)


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
      peak: as for :func:`reference_scale`.
      terms: as for :func:`reference_scale`.
      noise: as for :func:`reference_scale`.
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
    """A hand value against a finite-difference estimate with its error (:mod:`jaxprop.check.fd`):
    the one judging rule of every finite-difference comparison (:func:`fd_allowance`); at a kink
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


def peak_of(refs: Iterable[Any]) -> float:
    """The largest ``max |ref|`` over the leaves of one check (item 4 of the scale rule), over
    their finite elements: an overflowed or NaN element sets no floor (it fails on its own)."""
    peaks = []
    for r in refs:
        a = np.asarray(r)
        if a.size and np.issubdtype(a.dtype, np.number):
            finite = a[np.isfinite(a)]
            peaks.append(max_abs(finite))
        else:
            peaks.append(max_abs(a))
    return max(peaks, default=0.0)


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

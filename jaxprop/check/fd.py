"""The finite-difference reference: a ladder of steps, Richardson extrapolation, an error estimate.

Every checker of jaxprop takes its finite differences from here. For each *probe* (an element of a
parameter, an input column of a Jacobian, or a random direction of a leaf) the function is
evaluated along the probe's direction d at t = ±h_k for a ladder of steps h_k = h_0 s / 2^k
(``LADDER`` steps, s the probe's own scale, so that a 1e-6-valued leaf gets steps of its size and a
1e6-valued one of its own, :func:`element_scale`), with h_0 = 8 ε^(1/4) for the dtype the
reference is computed in.

- **Central estimate**: D(h) = (f(h) − f(−h)) / 2h, the limit of 002_dadcaa6bdb722c5e.txt (5.39)
  taken symmetrically, has error a₂h² + a₄h⁴ + …; Richardson extrapolation over the ladder,
  R_j(h) = (4^j R_{j−1}(h/2) − R_{j−1}(h)) / (4^j − 1), removes one term per level. Each entry's
  error is estimated as its last correction (the truncation) plus the rounding of the values it
  is made of, ε (|f(h)| + |f(−h)|) / 2h amplified by the extrapolation's weights; the entry with the
  smallest estimate is the derivative, returned WITH that estimate.
- **One-sided estimates** from the same evaluations, D₊(h) = (f(h) − f(0)) / h and
  D₋(h) = (f(0) − f(−h)) / h, extrapolated likewise (error terms h, h², …). Where they disagree
  beyond ``FD_ERROR_MULTIPLE`` times their error estimates the function has a **kink** here (relu
  at 0, |t| at 0, a max with a tie): the derivative is any value in [min(g₋, g₊), max(g₋, g₊)].

How a hand value is judged against the estimate (the numbers are in :mod:`jaxprop.check`): it
agrees when ``|hand − fd| ≤ FD_ERROR_MULTIPLE · error + rtol · scale`` (rtol the dtype's
tolerance against an exact reference, scale the leaf's), or, at a kink, when it lies in the
interval widened by that allowance. An element whose allowance exceeds the dtype's limit
(``default_tolerances(dtype)[1]``, 1e-6 in float64) times the leaf's scale (noise, overflow, a
non-finite value) is **inconclusive**: reported with its estimate, never as a failure of the hand
value; the verdict rests on the other reference.

>>> import numpy as np
>>> f = lambda t: np.abs(t)                       # a kink at 0
>>> steps = ladder(np.array([1.0]), np.float64)
>>> e = estimate(f(0.0), f(steps), f(-steps), steps, np.float64)
>>> bool(e.kink[0]), float(e.left[0]), float(e.right[0])
(True, -1.0, 1.0)
>>> e = estimate(np.sin(1.0), np.sin(1.0 + steps), np.sin(1.0 - steps), steps, np.float64)
>>> bool(abs(e.value[0] - np.cos(1.0)) < 1e-12), bool(e.error[0] < 1e-9)
(True, True)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["LADDER", "Estimate", "element_scale", "estimate", "ladder", "leaf_scale"]

# How many steps the ladder has, and the ratio between neighbours.
LADDER = 12


# Along random directions (large models) the ladder is shorter: the cost is 2 k DIRECTION_LADDER
# loss evaluations per leaf.
DIRECTION_LADDER = 2


# Above this many parameters check_grads takes directional differences (fd_mode="auto").
DIRECTIONS_ABOVE = 1_000_000


# At most this many elements per leaf where jax.grad and the hand value disagree are examined
# for a kink.
MAX_DISAGREEING = 64


_RATIO = 2.0


# How many extrapolation levels at most (central: removes h², h⁴, h⁶).
_LEVELS = 3


def first_step(dtype: Any) -> float:
    """h₀, the ladder's largest relative step: 8 ε^(1/4) for the reference's dtype."""
    return 8 * float(jnp.finfo(dtype).eps) ** 0.25


def element_scale(values: np.ndarray, leaf: np.ndarray) -> np.ndarray:
    """Each element's own size, the scale of its ladder: ``|θ_i|``, or for an element that is
    exactly zero its leaf's root mean square (1 for a leaf of zeros). Never floored by the leaf:
    every step of an element then stays below its distance to 0, so a kink at 0 (relu, |t|) is
    only seen where the element is at it.

    Args:
      values: the elements, any shape.
      leaf: the whole leaf they belong to.
    """
    v = np.abs(np.asarray(values, np.float64))
    return np.where(v > 0, v, leaf_scale(leaf))


def leaf_scale(leaf: np.ndarray) -> float:
    """A leaf's typical size: its root mean square, or 1 for a leaf of zeros."""
    flat = np.asarray(leaf, np.float64).ravel()
    rms = float(np.sqrt(np.dot(flat, flat) / flat.size)) if flat.size else 0.0
    return rms if rms > 0 and np.isfinite(rms) else 1.0


def ladder(scale: np.ndarray, dtype: Any, levels: int = LADDER) -> np.ndarray:
    """The steps of every probe: ``scale[p] · h₀ / 2^k`` for k = 0 … levels − 1, shape (P, levels).

    Args:
      scale: each probe's own scale s (the element's size, or its leaf's), shape (P,).
      dtype: the dtype the function is evaluated in.
      levels: how many steps.
    """
    scale = np.asarray(scale, np.float64)
    return scale[:, None] * first_step(dtype) / _RATIO ** np.arange(levels)[None, :]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Finite-difference derivatives of P probes, each with its error estimate.

    Attributes:
      value: the central estimate, shape (P, ...) (trailing axes: a function with array values).
      error: its estimated absolute error.
      left: the one-sided estimate g₋ (steps to the left).
      right: the one-sided estimate g₊ (steps to the right).
      left_error: the error estimate of ``left``.
      right_error: the error estimate of ``right``.
      kink: where g₋ and g₊ disagree beyond their errors (the function is not differentiable).
      steps: the ladder of every probe, shape (P, levels).
    """

    value: np.ndarray
    error: np.ndarray
    left: np.ndarray
    right: np.ndarray
    left_error: np.ndarray
    right_error: np.ndarray
    kink: np.ndarray
    steps: np.ndarray

    def take(self, p: int) -> Estimate:
        """The estimate of probe ``p`` alone (as a one-probe Estimate)."""
        return self.take_range(p, p + 1)

    def take_range(self, start: int, stop: int) -> Estimate:
        """The estimates of probes ``start`` … ``stop − 1``."""
        return Estimate(*(np.asarray(getattr(self, f.name))[start:stop] for f in _FIELDS))


_FIELDS = dataclasses.fields(Estimate)


def _extrapolate(D: np.ndarray, rounding: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Richardson extrapolation of a ladder of difference quotients; the best entry per element.

    Args:
      D: quotients at steps h₀/2^k, shape (P, K, ...).
      rounding: the rounding error of each quotient, same shape.
      order: 2 for central quotients (error h², h⁴, …), 1 for one-sided ones (h, h², …).

    Returns:
      ``(value, error)``, shape (P, ...): the entry of the table with the smallest estimated error.
    """
    K = D.shape[1]
    prev = [D[:, k] for k in range(K)]
    prev_round = [rounding[:, k] for k in range(K)]
    values, errors = [], []
    for k in range(1, K):
        # Level 0: the quotient itself, its error the change from the step before.
        values.append(prev[k])
        errors.append(np.abs(prev[k] - prev[k - 1]) + prev_round[k])
    for j in range(1, _LEVELS + 1):
        factor = _RATIO ** (order * j)
        # Entries k >= j of level j; those below j keep the previous level's (unused).
        col, col_round = list(prev), list(prev_round)
        for k in range(j, K):
            col[k] = (factor * prev[k] - prev[k - 1]) / (factor - 1)
            col_round[k] = (factor * prev_round[k] + prev_round[k - 1]) / (factor - 1)
        for k in range(j, K):
            # The last correction and, where there is one, the change along the column,
            # whichever is larger.
            trunc = np.abs(col[k] - prev[k])
            if k > j:
                trunc = np.maximum(trunc, np.abs(col[k] - col[k - 1]))
            values.append(col[k])
            errors.append(trunc + col_round[k])
        prev, prev_round = col, col_round
    v, e = np.stack(values), np.stack(errors)
    e = np.where(np.isfinite(e) & np.isfinite(v), e, np.inf)
    best = np.argmin(e, axis=0)
    return (
        np.take_along_axis(v, best[None], axis=0)[0],
        np.take_along_axis(e, best[None], axis=0)[0],
    )


def estimate(
    f0: Any, f_plus: Any, f_minus: Any, steps: np.ndarray, dtype: Any, multiple: float = 10.0
) -> Estimate:
    """Derivatives from the values along each probe's ladder.

    Args:
      f0: f at the point, a scalar or an array of the function's shape (...).
      f_plus: f(h_k) for every probe and step, shape (P, K, ...).
      f_minus: f(−h_k), the same shape.
      steps: the ladder, shape (P, K) (:func:`ladder`).
      dtype: the dtype the values were computed in (its ε sets the rounding estimate).
      multiple: how many error estimates apart g₋ and g₊ must be to call a kink.

    Returns:
      The :class:`Estimate`.
    """
    eps = float(jnp.finfo(dtype).eps)
    fp = np.asarray(f_plus, np.float64)
    fm = np.asarray(f_minus, np.float64)
    f0 = np.asarray(f0, np.float64)
    h = np.asarray(steps, np.float64).reshape(steps.shape + (1,) * (fp.ndim - 2))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        size = np.maximum(np.maximum(np.abs(fp), np.abs(fm)), np.abs(f0))
        central = (fp - fm) / (2 * h)
        right = (fp - f0) / h
        left = (f0 - fm) / h
        value, error = _extrapolate(central, eps * size / h, order=2)
        r, r_err = _extrapolate(right, 2 * eps * size / h, order=1)
        lft, l_err = _extrapolate(left, 2 * eps * size / h, order=1)
        kink = np.abs(r - lft) > multiple * (r_err + l_err)
        # At the boundary of f's domain (sqrt, log at 0) one side is not finite: the derivative
        # there is the one-sided one from the side where f is defined, with its own error.
        one_sided = ~np.isfinite(value) & (np.isfinite(r) != np.isfinite(lft))
        if one_sided.any():
            value = np.where(one_sided, np.where(np.isfinite(r), r, lft), value)
            error = np.where(one_sided, np.where(np.isfinite(r), r_err, l_err), error)
    return Estimate(value, error, lft, r, l_err, r_err, kink & np.isfinite(r - lft), steps)

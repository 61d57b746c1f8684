"""The verification engine: a hand-written gradient against ``jax.grad`` and finite differences.

:func:`check_grads` works on any pair of functions ``loss_fn(params, *args) -> scalar`` and
``grad_fn(params, *args) -> pytree like params``; it knows nothing of the built-in models.

Each leaf of the hand gradient is compared twice:

- against ``jax.grad(loss_fn)``, on every element (in float64 for a float32, bfloat16 or float16
  check: the hand gradient is held to the truth of the same function);
- against finite differences (:mod:`jaxprop.check.fd`: a ladder of steps, Richardson extrapolation,
  an error estimate per element), on every element of a small leaf and on ``fd_samples`` elements of
  a large one (always including the element where the hand gradient departs most from
  ``jax.grad``, and those where the two disagree, examined for a kink); above a million
  parameters along random directions per leaf.

The tolerances and the scale an error is relative to are the verification core's
(:mod:`jaxprop.check`): one policy for every checker.

>>> import jax.numpy as jnp
>>> from jaxprop import check_grads
>>> loss = lambda p, x: jnp.sum((p["w"] * x) ** 2)
>>> good = lambda p, x: {"w": 2 * p["w"] * x**2}
>>> bad = lambda p, x: {"w": p["w"] * x**2}          # drops the factor 2
>>> p, x = {"w": jnp.array([1.0, -2.0])}, jnp.array([0.5, 3.0])
>>> check_grads(loss, good, p, x).ok
True
>>> report = check_grads(loss, bad, p, x)
>>> report.ok, report.failing
(False, ('w',))
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import Comparison, judge, peak_of
from jaxprop.check.complex import has_complex, realify_grads
from jaxprop.check.diagnosis import diagnose
from jaxprop.check.grad_fd import _fd_check
from jaxprop.check.grad_report import GradReport, LeafReport
from jaxprop.check.tolerance import (
    NOISE_CAP_ULPS,
    NOISE_MULTIPLE,
    default_tolerances,
    precision,
    reference_scale,
    sensitivity,
    tolerances,
)
from jaxprop.check.trees import (
    OnArrays,
    _compiled,
    cast,
    finite_leaves_check,
    leaf_path,
    partition,
    paths,
)
from jaxprop.check.user_code import user_error

__all__ = ["check_grads"]

PyTree = Any


def _resolve(dtype, rtol, fd_rtol, fd_samples, seed=0):
    """The dtype and the tolerances a check uses (the core's policy), after checking ``seed`` and
    ``fd_samples``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        # The finite-difference sample is drawn by NumPy, whose seeds are non-negative.
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    default_tolerances(dtype)  # an unknown dtype is named before any other argument
    if isinstance(fd_samples, bool) or not isinstance(fd_samples, (int, np.integer)):
        raise ValueError(f"fd_samples must be an integer >= 1, got {fd_samples!r}")
    if fd_samples < 1:
        raise ValueError(f"fd_samples must be >= 1, got {fd_samples}")
    return tolerances(dtype, rtol, fd_rtol)


def _require_functions(signature: str, **fns) -> None:
    """Raises ``TypeError`` naming the first argument that is not callable (arguments in the wrong
    order, most often)."""
    for arg, fn in fns.items():
        if not callable(fn):
            raise TypeError(
                f"{arg} must be a function, got {type(fn).__name__}; the call is {signature}"
            )


def _require_traceable(args: tuple) -> None:
    """Raises ``ValueError`` naming the first extra argument that ``jax.jit`` cannot trace (a
    string, a function, an object), with the two ways out."""
    for i, arg in enumerate(args):
        for path, leaf in jax.tree_util.tree_flatten_with_path(arg)[0]:
            if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, bool, int, float, complex)):
                where = f"args[{i}]" + (f" at {leaf_path(path)}" if path else "")
                raise ValueError(
                    f"{where} is a {type(leaf).__name__} ({leaf!r:.40}), which jax.jit cannot "
                    "trace; bind it into the functions (functools.partial or a lambda) or pass "
                    "jit=False"
                )


def _kind(leaf) -> Any:
    """The dtype of an array-like leaf, or the type name of anything else (a string, say)."""
    try:
        return jnp.result_type(leaf)
    except TypeError:
        return type(leaf).__name__


def check_grads(
    loss_fn: Callable[..., jax.Array],
    grad_fn: Callable[..., PyTree],
    params: PyTree,
    *args: Any,
    dtype: Any = "float64",
    rtol: float | None = None,
    fd: bool = True,
    fd_rtol: float | None = None,
    fd_samples: int = 32,
    jit: bool = True,
    seed: int = 0,
    name: str | None = None,
    source: str | None = None,
    raise_on_failure: bool = False,
    fd_mode: str = "auto",
    fd_directions: int = 1,
) -> GradReport:
    """Checks a hand-written gradient against ``jax.grad`` and finite differences, leaf by leaf.

    Args:
      loss_fn: ``(params, *args) -> scalar``.
      grad_fn: ``(params, *args) -> grads``, the hand-written ∂loss/∂params, a pytree with the
        structure, shapes and dtypes of ``params``.
      params: the point to check at, any pytree of arrays.
      *args: the further arguments of both functions (data, labels); their floating-point
        leaves are cast to ``dtype`` like the parameters.
      dtype: ``"float64"`` (the default: the check turns 64-bit mode on for its own duration) or
        ``"float32"``.
      rtol: tolerance on the relative error against ``jax.grad``; defaults by dtype.
      fd: whether to compare with central finite differences too.
      fd_rtol: an extra relative allowance against finite differences (default: none; a hand
        value agrees when within ``FD_ERROR_MULTIPLE`` of the estimate's own error plus
        ``rtol`` × the leaf's scale, :mod:`jaxprop.check.fd`).
      fd_samples: the most elements per leaf compared by finite differences (besides those
        where jax.grad disagrees, examined for a kink).
      jit: run both gradients (and the finite differences) under ``jax.jit``.
      seed: chooses the elements sampled for finite differences (a non-negative integer).
      name: a name for the report (e.g. the model's).
      source: a citation for the report.
      raise_on_failure: raise :class:`GradientCheckError` instead of returning a failing report.
      fd_mode: ``"elements"`` (finite differences element by element), ``"directions"``
        (``fd_directions`` random directions per leaf: O(k) loss evaluations whatever the size),
        or ``"auto"``: directions above ``jaxprop.check.fd.DIRECTIONS_ABOVE`` parameters.
      fd_directions: how many random directions per leaf in directional mode.

    Returns:
      A :class:`GradReport`.

    Raises:
      TypeError: if ``loss_fn`` or ``grad_fn`` is not callable.
      ValueError: if ``params`` has no leaves, or ``grad_fn`` returns ``(grads, aux)``, or under
        ``jit`` an argument is not an array (a string, a function), or a parameter is not a
        floating-point array or not finite (NaN or inf; the message names the leaf), or the loss
        is not a finite scalar, or ``dtype`` is not float32/float64, or ``seed`` is negative, or
        a tolerance is not a positive number, or ``fd_samples`` not an integer >= 1.
      GradientCheckError: if ``raise_on_failure`` and the check fails.
    """
    _require_functions("check_grads(loss_fn, grad_fn, params, *args)", loss_fn=loss_fn,
                       grad_fn=grad_fn)  # fmt: skip
    dtype, rtol, fd_rtol = _resolve(dtype, rtol, fd_rtol, fd_samples, seed)
    if fd_mode not in ("auto", "elements", "directions"):
        raise ValueError(f"fd_mode must be 'auto', 'elements' or 'directions', got {fd_mode!r}")
    if (
        isinstance(fd_directions, bool)
        or not isinstance(fd_directions, (int, np.integer))
        or (fd_directions < 1)
    ):
        raise ValueError(f"fd_directions must be an integer >= 1, got {fd_directions!r}")
    # Leaves that are not arrays (a function, a string: a module's static fields) are held, not
    # differentiated.
    arrays, part = partition(params)
    if part is not None and not jax.tree.leaves(arrays):
        held = ", ".join(f"{p} ({t})" for p, t in part.skipped)
        raise ValueError(
            f"params has no array leaves: {held} are not arrays (they would be held, not "
            "checked), so there is nothing to check; pass the arrays loss_fn differentiates, "
            "e.g. jnp.asarray(value)"
        )
    if part is not None:
        loss_fn, grad_fn, params = OnArrays(loss_fn, part), OnArrays(grad_fn, part, True), arrays
    if has_complex(params):
        # A complex leaf is checked as its (real, imaginary) pairs (jaxprop.check.complex).
        with precision(dtype):
            loss_fn, grad_fn, params = realify_grads(loss_fn, grad_fn, params, dtype)
    with precision(dtype):
        report = _check(
            loss_fn, grad_fn, params, args, dtype, rtol, fd, fd_rtol, fd_samples, jit, seed,
            fd_mode, int(fd_directions),
        )  # fmt: skip
    report = dataclasses.replace(
        report, name=name, source=source, skipped=() if part is None else part.skipped
    )
    if raise_on_failure:
        report.raise_if_failed()
    return report


def _check(
    loss_fn, grad_fn, params, args, dtype, rtol, fd, fd_rtol, fd_samples, jit, seed, fd_mode,
    fd_directions,
):  # fmt: skip
    params, args = cast(params, dtype), cast(args, dtype)
    param_leaves = paths(params)
    if not param_leaves:
        # An empty report would pass with nothing checked.
        raise ValueError(
            f"params has no array leaves (got {params!r}): there is nothing to check; pass the "
            "arrays loss_fn differentiates"
        )
    not_float = [
        f"{p} ({_kind(v)})"
        for p, v in param_leaves.items()
        if not jnp.issubdtype(_kind(v), jnp.floating)
    ]
    if not_float:
        raise ValueError(
            f"parameters must be floating-point to be differentiated; not so at leaf "
            f"{', '.join(not_float)}"
        )
    finite_leaves_check(params)

    if jit:
        _require_traceable(args)
    try:
        loss = _compiled(loss_fn, jit)(params, *args)
    except Exception as e:
        # The user's loss raised: every leaf fails with the reason (jaxprop's own error raises).
        return _raised(e, "loss_fn", param_leaves, dtype)
    if isinstance(loss, (tuple, list, dict)):
        raise ValueError(
            f"loss_fn must return a scalar, got a {type(loss).__name__} of {len(loss)}; if it "
            "returns (loss, aux), check lambda *a: loss_fn(*a)[0]"
        )
    loss = np.asarray(loss)
    if loss.shape != ():
        raise ValueError(
            f"loss_fn must return a scalar, got an array of shape {loss.shape}: "
            "reduce it (e.g. jnp.sum or jnp.mean) to the scalar loss"
        )
    loss = float(loss)
    if not math.isfinite(loss):
        raise ValueError(f"the loss is not finite at these parameters: {loss}")
    try:
        hand = _compiled(grad_fn, jit)(params, *args)
    except Exception as e:
        return _raised(e, "grad_fn", param_leaves, dtype, loss)
    # The reference: jax.grad of the same function in float64 (a low-precision hand gradient is
    # held to the truth, not to jax.grad's own rounding in that precision), else in the dtype.
    ref = _Reference.of(loss_fn, params, args, dtype, jit)
    if ref.dtype == dtype:
        ref.loss = loss
    auto = ref.grad

    auto_leaves, hand_leaves = paths(auto), paths(hand)
    if (
        isinstance(hand, (tuple, list))
        and hand
        and set(hand_leaves) != set(auto_leaves)
        and set(paths(hand[0])) == set(auto_leaves)
    ):
        # Otherwise every leaf reads as missing and again, prefixed with 0/, as in excess.
        raise ValueError(
            f"grad_fn returned a {type(hand).__name__} of {len(hand)} whose first element has the "
            "leaves of params; if it returns (grads, aux), check lambda *a: grad_fn(*a)[0]"
        )
    peak = peak_of(auto_leaves.values())

    def auto_comparisons(noise: dict[str, float], excused: dict[str, np.ndarray]) -> dict:
        out = {}
        for path, a in auto_leaves.items():
            a = np.asarray(a)
            out[path] = judge(
                hand_leaves.get(path),
                a,
                what="hand gradient",
                missing="missing from the hand gradient",
                expected_dtype=jnp.result_type(param_leaves[path]),
                rtol=rtol,
                dtype=dtype,
                peak=peak,
                noise=noise.get(path, 0.0),
                excused=excused.get(path),
            )
        return out

    first = auto_comparisons({}, {})
    noise: dict[str, float] = {}
    if any(c is not None and not c.ok for c, _ in first.values()):
        # The rounding noise of a correct gradient in this dtype (the core's scale rule, item 3)
        # keeps the scale from vanishing at a minimum. Only a leaf that fails against max|ref|
        # alone needs it: a larger scale cannot fail a passing leaf.
        noise = ref.rounding_noise(dtype)
        first = auto_comparisons(noise, {})

    compared = {
        path: (np.asarray(hand_leaves[path]), np.asarray(auto_leaves[path]))
        for path, (c, _) in first.items()
        if c is not None
    }
    fd_result: dict[str, tuple[Comparison, np.ndarray | None]] = {}
    replay = None
    if fd and compared:
        auto_scale = {
            path: reference_scale(a, dtype=dtype, peak=peak, noise=noise.get(path, 0.0), rtol=rtol)
            for path, (_, a) in compared.items()
        }
        fd_result, replay = _fd_check(
            loss_fn, ref, compared, auto_scale, fd_samples, seed, dtype, rtol, fd_rtol, fd_mode,
            fd_directions,
        )  # fmt: skip
        excused = {p: e for p, (_, e) in fd_result.items() if e is not None}
        if excused:
            # jax.grad picks one subgradient at a kink; a hand value between the one-sided
            # derivatives is another valid one, not a mistake.
            first = auto_comparisons(noise, excused)

    leaves: list[LeafReport] = []
    batch = _batch_size(args)
    for path, a in auto_leaves.items():
        vs_auto, problem = first[path]
        vs_fd = fd_result[path][0] if path in fd_result else None
        diagnosis = None
        if (vs_auto is not None and not vs_auto.ok) or (
            path in hand_leaves and np.shape(hand_leaves[path]) != np.shape(a)
        ):
            diagnosis = diagnose(
                path,
                hand_leaves[path],
                a,
                dtype=dtype,
                rtol=rtol,
                batch=batch,
                problem=problem,
                noun="gradient",
            )
        leaves.append(
            LeafReport(
                path=path,
                shape=np.shape(a),
                dtype=str(jnp.result_type(param_leaves[path])),
                vs_auto=vs_auto,
                vs_fd=vs_fd,
                problem=problem,
                diagnosis=diagnosis,
            )
        )
    for path, h in hand_leaves.items():
        if path not in auto_leaves:
            leaves.append(
                LeafReport(
                    path=path,
                    shape=tuple(jnp.shape(h)),
                    dtype=str(jnp.result_type(h)),
                    problem="not a parameter: the hand gradient has this leaf in excess",
                )
            )
    return GradReport(
        leaves=tuple(leaves),
        dtype=dtype.name,
        loss=loss,
        reference_dtype=ref.dtype.name,
        seed=seed,
        replay=replay,
    )


def _raised(e: Exception, what: str, param_leaves, dtype, loss: float = math.nan) -> GradReport:
    """The report of a check whose user function raised: every leaf FAIL, the exception's type,
    first line and the user's frame as the problem; an exception of jaxprop's own is raised."""
    problem = user_error(e, what)
    if problem is None:
        raise e
    leaves = tuple(
        LeafReport(path=p, shape=tuple(np.shape(v)), dtype=str(jnp.result_type(v)), problem=problem)
        for p, v in param_leaves.items()
    )
    return GradReport(leaves=leaves, dtype=jnp.dtype(dtype).name, loss=loss)


def _batch_size(args: tuple) -> int | None:
    """The batch size B a diagnosis names a scale of B or 1/B by: the leading dimension of the
    first array argument (the inputs x), or ``None`` where there is none."""
    for a in jax.tree.leaves(args):
        if jnp.ndim(a) >= 1:
            return int(jnp.shape(a)[0])
    return None


@dataclasses.dataclass
class _Reference:
    """The function a check's references are computed from: float64 where the function runs in
    float64, else the check's own dtype."""

    loss_fn: Callable[..., Any]
    params: PyTree
    args: tuple
    dtype: np.dtype
    jit: bool
    grad: PyTree
    loss: float | None = None  # the loss at the point, where the check computed it in this dtype

    @classmethod
    def of(cls, loss_fn, params, args, dtype, jit) -> _Reference:
        if dtype != jnp.float64:
            try:
                with jax.enable_x64(True):
                    p64, a64 = cast(params, jnp.float64), cast(args, jnp.float64)
                    g64 = _compiled(loss_fn, jit, grad=True)(p64, *a64)
                if all(jnp.result_type(g) == jnp.float64 for g in jax.tree.leaves(g64)):
                    return cls(loss_fn, p64, a64, jnp.dtype(jnp.float64), jit, g64)
            except Exception:  # a function that runs in its own dtype only
                pass
        grad = _compiled(loss_fn, jit, grad=True)(params, *args)
        return cls(loss_fn, params, args, jnp.dtype(dtype), jit, grad)

    def context(self) -> contextlib.AbstractContextManager:
        return precision(self.dtype)

    def rounding_noise(self, dtype: np.dtype) -> dict[str, float]:
        """Per leaf, how far a correct gradient computed in ``dtype`` lies from the truth:
        ``NOISE_MULTIPLE`` × max |jax.grad in a lower precision − the float64 reference|, the
        lower precision being ``dtype`` itself (float32, bfloat16, float16) or, for a float64
        check, float32 with the difference scaled by ε64 / ε32. It measures the rounding of
        this very function (its sums' lengths, its cancellations), which no fixed rule knows;
        it is capped at ``NOISE_CAP_ULPS`` units of rounding of the gradient's terms (where the
        lower precision overflows or saturates, its difference is no rounding).
        Empty when there is no float64 reference or the function does not run in the lower
        precision; a non-finite difference (overflow there) gives no noise for its leaf."""
        if self.dtype != jnp.float64:
            return {}
        low = jnp.dtype(jnp.float32) if dtype == jnp.float64 else jnp.dtype(dtype)
        factor = float(jnp.finfo(dtype).eps) / float(jnp.finfo(low).eps)
        try:
            with jax.enable_x64(False):  # the lower precision throughout, not promoted back
                g_low = _compiled(self.loss_fn, self.jit, grad=True)(
                    cast(self.params, low), *cast(self.args, low)
                )
            diffs = {
                p: float(np.max(np.abs(np.asarray(lo, np.float64) - np.asarray(hi)), initial=0.0))
                for (p, lo), hi in zip(paths(g_low).items(), paths(self.grad).values(), strict=True)
            }
            with self.context():
                grad_fn = _compiled(self.loss_fn, self.jit, grad=True)
                S = paths(sensitivity(grad_fn, (self.params, *self.args)))
        except Exception:  # the function does not run in the lower precision
            return {}
        eps = float(jnp.finfo(dtype).eps)
        noise = {}
        for p, d in diffs.items():
            cap = NOISE_CAP_ULPS * eps * float(np.max(S[p], initial=0.0))
            measured = factor * d if math.isfinite(d) else 0.0
            noise[p] = NOISE_MULTIPLE * min(measured, cap) if math.isfinite(cap) else 0.0
        return noise

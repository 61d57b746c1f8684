"""The verification engine: a hand-written gradient against ``jax.grad`` and finite differences.

:func:`check_grads` works on any pair of functions ``loss_fn(params, *args) -> scalar`` and
``grad_fn(params, *args) -> pytree like params``; it knows nothing of the built-in models.

Each leaf of the hand gradient is compared twice:

- against ``jax.grad(loss_fn)``, on every element (in float64 for a float32, bfloat16 or float16
  check: the hand gradient is held to the truth of the same function);
- against finite differences (:mod:`jaxprop.fd`: a ladder of steps, Richardson extrapolation, an
  error estimate per element), on every element of a small leaf and on ``fd_samples`` elements of
  a large one (always including the element where the hand gradient departs most from
  ``jax.grad``, and those where the two disagree, examined for a kink); above a million
  parameters along random directions per leaf.

The tolerances and the scale an error is relative to are the verification core's
(:mod:`jaxprop.core`): one policy for every checker.

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
import zlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxprop import fd
from jaxprop.core import (
    FD_ERROR_MULTIPLE,
    NOISE_CAP_ULPS,
    NOISE_MULTIPLE,
    Comparison,
    GradientCheckError,
    OnArrays,
    Record,
    Report,
    cast,
    compare_fd,
    default_tolerances,
    fd_allowance,
    finite_leaves_check,
    format_rows,
    json_float,
    judge,
    leaf_path,
    memoised,
    partition,
    paths,
    peak_of,
    precision,
    reference_scale,
    sensitivity,
    tolerances,
)
from jaxprop.diagnosis import Diagnosis, diagnose

__all__ = [
    "Comparison",
    "GradReport",
    "GradientCheckError",
    "LeafReport",
    "check_grads",
    "check_jacobian",
    "default_tolerances",
    "leaf_path",
]

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


@dataclasses.dataclass(frozen=True)
class LeafReport(Record):
    """One leaf of the gradient pytree.

    Attributes:
      path: the leaf's name, e.g. ``W1`` or ``layers/0/A``.
      shape: the shape of the true gradient leaf.
      dtype: its dtype.
      vs_auto: the comparison with ``jax.grad`` (``None`` when the leaf could not be compared).
      vs_fd: the comparison with finite differences (``None`` when not run).
      problem: what is wrong with the leaf's structure (missing, extra, shape, dtype,
        non-finite), or ``None``.
      diagnosis: what the mistake is, where the leaf departs from ``jax.grad``
        (:class:`jaxprop.diagnosis.Diagnosis`: sign, scale, transpose, zero, unclassified), or
        ``None``.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    vs_auto: Comparison | None = None
    vs_fd: Comparison | None = None
    problem: str | None = None
    diagnosis: Diagnosis | None = None


@dataclasses.dataclass(frozen=True)
class GradReport(Report):
    """The result of :func:`check_grads`: truthy when every leaf passes.

    Attributes:
      leaves: one :class:`LeafReport` per leaf, in the order of the true gradient's leaves
        (followed by leaves the hand gradient has in excess).
      dtype: the dtype the check ran in.
      loss: the loss value at the checked point.
      name: an optional name of what was checked (a model's name).
      source: an optional citation of what was checked.
    """

    _entries: ClassVar[str] = "leaves"
    _key: ClassVar[str] = "path"
    _what: ClassVar[str] = "hand gradient"

    leaves: tuple[LeafReport, ...]
    dtype: str
    loss: float
    name: str | None = None
    source: str | None = None
    reference_dtype: str | None = None
    seed: int | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    replay: Callable[[str, tuple[int, ...]], fd.Estimate] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def rerun(self, path: str, index: Sequence[int]) -> fd.Estimate:
        """Re-runs the finite differences of one element exactly as the check took them (the
        same ladder of steps, the same point): a failing element, reproduced.

        Args:
          path: the leaf, e.g. ``"W1"``.
          index: the element's index in the leaf, e.g. ``report["W1"].vs_fd.worst_index``.

        Returns:
          The :class:`jaxprop.fd.Estimate` of that element (``value``, ``error``, ``left``,
          ``right``, ``kink``, ``steps``).

        Raises:
          ValueError: if the report has no finite differences to re-run (``fd=False``, a
            directional check, or a report built by hand).
          KeyError: if that element was not among those the check sampled.
        """
        if self.replay is None:
            raise ValueError(
                "this report has no element-wise finite differences to re-run (fd=False, "
                "fd_mode='directions', or a report not made by check_grads)"
            )
        return self.replay(path, tuple(int(i) for i in index))

    def _header(self) -> dict:
        head: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "ok": self.ok,
            "dtype": self.dtype,
            "loss": json_float(self.loss),
        }
        if self.reference_dtype is not None:
            head["reference_dtype"] = self.reference_dtype
        if self.seed is not None:
            head["seed"] = self.seed
        if self.skipped:
            head["skipped"] = dict(self.skipped)
        return head

    def __str__(self) -> str:
        title = self.name or "gradient check"
        head = f"{title}  [{self.dtype}]" + (f"  source: {self.source}" if self.source else "")
        said = "".join(
            f"\ndiagnosis of {path} ({d.kind}): {d.message}" for path, d in self.diagnoses.items()
        )
        if self.skipped:
            said += "\nskipped, not arrays: " + ", ".join(f"{p} ({t})" for p, t in self.skipped)
        return head + "\n" + format_table(self.leaves) + said


def leaf_status(leaf: LeafReport) -> str:
    """A leaf's verdict in words: ok, or which reference disagreed; kinks and inconclusive
    finite differences are counted."""
    if leaf.problem:
        return "FAIL: " + leaf.problem
    notes = []
    for c in (leaf.vs_auto, leaf.vs_fd):
        if c is not None and c.kinks and c.reference.startswith("finite"):
            notes.append(f"{len(c.kinks)} kink{'s' * (len(c.kinks) > 1)}")
    if leaf.vs_fd is not None and leaf.vs_fd.inconclusive:
        notes.append(f"FD inconclusive at {len(leaf.vs_fd.inconclusive)}")
    if leaf.ok:
        return "ok" + (f" ({', '.join(notes)})" if notes else "")
    against = [c.reference for c in (leaf.vs_auto, leaf.vs_fd) if c is not None and not c.ok]
    return "FAIL vs " + " and ".join(against) + (f" ({', '.join(notes)})" if notes else "")


def format_table(leaves: Sequence[LeafReport]) -> str:
    """The per-leaf table of a report, one line per leaf."""
    rows = [("leaf", "shape", "rel err vs jax.grad", "worst at", "rel err vs FD", "n FD", "")]
    for leaf in leaves:
        a, f = leaf.vs_auto, leaf.vs_fd
        rows.append(
            (
                leaf.path,
                "x".join(map(str, leaf.shape)) or "scalar",
                f"{a.max_rel:.2e}" if a else "-",
                str(list(a.worst_index)) if a else "-",
                f"{f.max_rel:.2e}" if f else "-",
                str(f.n_compared) if f else "-",
                leaf_status(leaf),
            )
        )
    return format_rows(rows)


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
        ``rtol`` × the leaf's scale, :mod:`jaxprop.fd`).
      fd_samples: the most elements per leaf compared by finite differences (besides those
        where jax.grad disagrees, examined for a kink).
      jit: run both gradients (and the finite differences) under ``jax.jit``.
      seed: chooses the elements sampled for finite differences (a non-negative integer).
      name: a name for the report (e.g. the model's).
      source: a citation for the report.
      raise_on_failure: raise :class:`GradientCheckError` instead of returning a failing report.
      fd_mode: ``"elements"`` (finite differences element by element), ``"directions"``
        (``fd_directions`` random directions per leaf: O(k) loss evaluations whatever the size),
        or ``"auto"``: directions above ``jaxprop.fd.DIRECTIONS_ABOVE`` parameters.
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
    loss = _compiled(loss_fn, jit)(params, *args)
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
    hand = _compiled(grad_fn, jit)(params, *args)
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


def _batch_size(args: tuple) -> int | None:
    """The batch size B a diagnosis names a scale of B or 1/B by: the leading dimension of the
    first array argument (the inputs x), or ``None`` where there is none."""
    for a in jax.tree.leaves(args):
        if jnp.ndim(a) >= 1:
            return int(jnp.shape(a)[0])
    return None


def _build_compiled(fn, jit: bool, grad: bool):
    f = jax.grad(fn) if grad else fn
    return jax.jit(f) if jit else f


def _compiled(fn, jit: bool, grad: bool = False):
    """``fn`` (or ``jax.grad(fn)``) under ``jax.jit`` when ``jit``; memoised on ``fn``, so that
    checking the same function again reuses its compiled code."""
    return memoised(_build_compiled, fn, jit, grad)


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


def _fd_check(
    loss_fn, ref, compared, auto_scale, fd_samples, seed, dtype, rtol, fd_rtol, fd_mode, k
):
    """Finite differences of every compared leaf (:mod:`jaxprop.fd`), element by element or, for
    a large model, along random directions; returns per leaf the comparison and the elements of
    the jax.grad comparison that a kink excuses, and a function that re-runs one element."""
    n_params = sum(h.size for h, _ in compared.values())
    directional = fd_mode == "directions" or (fd_mode == "auto" and n_params > fd.DIRECTIONS_ABOVE)
    with ref.context():
        offsets, start = {}, 0
        for path, leaf in paths(ref.params).items():
            offsets[path] = (start, int(np.size(leaf)))
            start += int(np.size(leaf))
        floor_rtol = rtol if fd_rtol is None else max(rtol, fd_rtol)
        if directional:
            return _fd_directions(loss_fn, ref, compared, seed, k, floor_rtol, dtype)
        flat, unravel = ravel_pytree(ref.params)
        flat_np = np.asarray(flat)
        rng = np.random.default_rng(seed)
        picks: dict[str, np.ndarray] = {}
        for path, (h, a) in compared.items():
            n = h.size
            diff = np.abs(h.ravel().astype(np.float64) - a.ravel().astype(np.float64))
            # The worst element, the elements jax.grad disagrees on (a kink may excuse them), and
            # a random sample.
            bad = np.flatnonzero(diff > rtol * auto_scale[path])
            bad = bad[np.argsort(-diff[bad])][: fd.MAX_DISAGREEING]
            if n <= fd_samples:
                chosen = np.arange(n)
            else:
                worst = int(np.argmax(diff))
                rest = np.setdiff1d(np.arange(n), np.concatenate([[worst], bad]))
                others = rng.choice(rest, min(fd_samples - 1, rest.size), replace=False)
                chosen = np.concatenate([[worst], others])
            picks[path] = np.unique(np.concatenate([chosen, bad]).astype(np.int64))
        index = np.concatenate([offsets[p][0] + picks[p] for p in picks]).astype(np.int64)
        elem_scale = np.concatenate(
            [
                fd.element_scale(
                    flat_np[offsets[p][0] + picks[p]],
                    flat_np[offsets[p][0] : offsets[p][0] + offsets[p][1]],
                )
                for p in picks
            ]
        )
        steps = fd.ladder(elem_scale, ref.dtype)
        est = _coordinate_estimates(loss_fn, flat, unravel, ref.args, index, steps, ref)

    out, k0 = {}, 0
    for path, (h, _a) in compared.items():
        m = len(picks[path])
        e = est.take_range(k0, k0 + m)
        k0 += m
        out[path] = _judge_fd(h, picks[path], e, floor_rtol, dtype, auto_scale[path])

    def replay(path: str, index: tuple[int, ...]) -> fd.Estimate:
        """Re-runs the finite differences of one element with the same ladder of steps."""
        if path not in picks:
            raise KeyError(f"no finite differences were taken for leaf {path!r}")
        h, _ = compared[path]
        flat_i = int(np.ravel_multi_index(index, h.shape)) if h.shape else 0
        where = np.flatnonzero(picks[path] == flat_i)
        if where.size == 0:
            raise KeyError(f"leaf {path!r} element {index} was not among the sampled elements")
        p = sum(len(picks[q]) for q in list(picks)[: list(picks).index(path)]) + int(where[0])
        with ref.context():
            probe = np.asarray([offsets[path][0] + flat_i])
            return _coordinate_estimates(
                loss_fn, flat, unravel, ref.args, probe, steps[p : p + 1], ref
            )

    return out, replay


def _coordinate_estimates(loss_fn, flat, unravel, args, index, steps, ref) -> fd.Estimate:
    """L(θ ± h_k e_i) for every probe i and step h_k, then :func:`jaxprop.fd.estimate`."""
    P, K = steps.shape

    def along(i, t):
        e = jnp.zeros_like(flat).at[i].set(t)
        return loss_fn(unravel(flat + e), *args), loss_fn(unravel(flat - e), *args)

    def all_along(i, t):
        return jax.lax.map(lambda a: along(*a), (i, t), batch_size=64)

    i = jnp.asarray(np.repeat(index, K))
    t = jnp.asarray(steps.ravel(), ref.dtype)
    try:
        # The reference's own evaluations are compiled even with jit=False (which keeps the
        # user's functions eager): 2 × 12 loss evaluations per element, eagerly, are slow.
        plus, minus = jax.jit(all_along)(i, t)
    except Exception:  # a loss that cannot be traced: evaluate it eagerly
        if ref.jit:
            raise
        plus, minus = all_along(i, t)
    f0 = np.asarray(loss_fn(unravel(flat), *args))
    plus, minus = np.asarray(plus).reshape(P, K), np.asarray(minus).reshape(P, K)
    return fd.estimate(f0, plus, minus, steps, ref.dtype, FD_ERROR_MULTIPLE)


def _judge_fd(h, picks, e, floor_rtol, dtype, scale):
    """The finite-difference comparison of one leaf at the scale of its jax.grad comparison, and
    the jax.grad disagreements it excuses."""
    h_flat = h.ravel().astype(np.float64)[picks]
    shape = h.shape

    def index_of(k: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(picks[k], shape)) if shape else ()

    comparison = compare_fd(
        "finite differences", h_flat, e.value, e.error, rtol=floor_rtol, scale=scale,
        dtype=dtype, left=e.left, right=e.right, kink=e.kink, index_of=index_of, steps=e.steps,
    )  # fmt: skip
    allowance, _ = fd_allowance(e.error, rtol=floor_rtol, scale=scale, dtype=dtype)
    # Elements where the hand value is a valid subgradient at a kink excuse jax.grad's choice.
    low, high = np.minimum(e.left, e.right), np.maximum(e.left, e.right)
    valid = e.kink & (h_flat >= low - allowance) & (h_flat <= high + allowance)
    excused = None
    if valid.any():
        excused = np.zeros(h.size, bool)
        excused[picks[valid]] = True
    return comparison, excused


def _directional_evaluator(loss_fn, treedef, i: int, jit: bool):
    """``(leaves, args, d, j, t) -> (L(θ + t d_j), L(θ − t d_j))`` with only leaf ``i`` moved,
    over arrays of (j, t); compiled once per loss, tree and leaf (:func:`jaxprop.core.memoised`)."""

    def evaluate(leaves, args, d, j, t):
        def one(jt):
            j, t = jt
            plus, minus = list(leaves), list(leaves)
            plus[i] = leaves[i] + t * d[j]
            minus[i] = leaves[i] - t * d[j]
            return (
                loss_fn(jax.tree.unflatten(treedef, plus), *args),
                loss_fn(jax.tree.unflatten(treedef, minus), *args),
            )

        return jax.lax.map(one, (j, t))

    return jax.jit(evaluate) if jit else evaluate


def _fd_directions(loss_fn, ref, compared, seed, k, floor_rtol, dtype):
    """Directional finite differences: ``k`` random directions per leaf, each leaf on its own.

    A leaf's directions come from a key folded with a hash of its path, so that adding a leaf
    changes no other leaf's directions; the hand value along a direction d is ``hand · d``. The
    cost is 2 k ``DIRECTION_LADDER`` loss evaluations per leaf, whatever its size."""
    leaves, treedef = jax.tree.flatten(ref.params)
    index_of_path = {p: i for i, p in enumerate(paths(ref.params))}
    f0 = np.asarray(
        ref.loss if ref.loss is not None else _compiled(loss_fn, ref.jit)(ref.params, *ref.args)
    )
    out = {}
    for path, (h, a) in compared.items():
        i = index_of_path[path]
        key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(path.encode()) & 0x7FFFFFFF)
        leaf = np.asarray(leaves[i])
        d = jax.random.normal(key, (k, *leaf.shape), ref.dtype) * fd.leaf_scale(leaf)
        steps = fd.ladder(np.ones(k), ref.dtype, fd.DIRECTION_LADDER)
        K = steps.shape[1]
        run = memoised(_directional_evaluator, loss_fn, treedef, i, ref.jit)
        plus, minus = run(
            leaves, ref.args, d, jnp.asarray(np.repeat(np.arange(k), K)),
            jnp.asarray(steps.ravel(), ref.dtype),
        )  # fmt: skip
        e = fd.estimate(
            f0, np.asarray(plus).reshape(k, K), np.asarray(minus).reshape(k, K), steps,
            ref.dtype, FD_ERROR_MULTIPLE,
        )  # fmt: skip
        dn = np.asarray(d, np.float64).reshape(k, -1)
        hand_dir = dn @ h.ravel().astype(np.float64)
        # The size of a directional derivative g · d with d ~ N(0, s²): ‖g‖ s.
        size = float(np.linalg.norm(a.ravel().astype(np.float64))) * fd.leaf_scale(leaf)
        scale = reference_scale(np.asarray([size]), dtype=ref.dtype)
        out[path] = (
            compare_fd(
                f"finite differences ({k} directions)", hand_dir, e.value, e.error,
                rtol=floor_rtol, scale=scale, dtype=dtype, left=e.left, right=e.right,
                kink=e.kink, steps=e.steps, index_of=lambda j: (int(j),),
            ),
            None,
        )  # fmt: skip
    return out, None


def check_jacobian(
    fn: Callable[..., jax.Array],
    jac_fn: Callable[..., jax.Array],
    primal: jax.Array,
    *args: Any,
    dtype: Any = "float64",
    rtol: float | None = None,
    fd: bool = True,
    fd_rtol: float | None = None,
    fd_samples: int = 32,
    jit: bool = True,
    seed: int = 0,
    label: str = "J",
    name: str | None = None,
    source: str | None = None,
    raise_on_failure: bool = False,
) -> GradReport:
    """Checks a hand-written Jacobian against ``jax.jacfwd``, ``jax.jacrev`` and finite differences.

    The Jacobian is in numerator layout (002_dadcaa6bdb722c5e.txt (5.58), (5.86)): for ``fn``
    mapping an array of shape ``I`` to one of shape ``O``, ``jac_fn`` returns shape ``O + I`` with
    ``J[o, i] = ∂f_o/∂x_i``; that is also the layout of ``jax.jacfwd`` and ``jax.jacrev``.

    The report has two leaves: ``label`` (against ``jax.jacfwd`` and against central finite
    differences, column by column on ``fd_samples`` sampled input elements, always including the
    input element of the worst column) and ``label@jacrev`` (against ``jax.jacrev``). Its
    ``loss`` field holds ‖fn(primal)‖, the Frobenius norm of the value, as there is no loss.

    Args:
      fn: ``(primal, *args) -> array``.
      jac_fn: ``(primal, *args) -> array`` of shape ``fn(...).shape + primal.shape``.
      primal: the point, one floating-point array.
      *args: further arguments of both (their floating-point leaves are cast to ``dtype``).
      dtype, rtol, fd, fd_rtol, fd_samples, jit, seed, name, source, raise_on_failure: as for
        :func:`check_grads`.
      label: the leaf name in the report.

    Returns:
      A :class:`GradReport`.

    >>> import jax.numpy as jnp
    >>> A = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> report = check_jacobian(lambda x, A: A @ x, lambda x, A: A, jnp.ones(2), A)
    >>> report.ok, [leaf.path for leaf in report.leaves]
    (True, ['J', 'J@jacrev'])
    """
    _require_functions("check_jacobian(fn, jac_fn, primal, *args)", fn=fn, jac_fn=jac_fn)
    dtype, rtol, fd_rtol = _resolve(dtype, rtol, fd_rtol, fd_samples, seed)
    with precision(dtype):
        try:
            primal = jnp.asarray(primal)
        except (TypeError, ValueError):
            raise ValueError(
                f"primal must be one floating-point array, got {type(primal).__name__}; "
                "for a pytree of parameters, use check_grads"
            ) from None
        if not jnp.issubdtype(primal.dtype, jnp.floating):
            raise ValueError(
                f"primal must be one floating-point array, got dtype {primal.dtype}: "
                f"cast it with primal.astype({dtype.name!r})"
            )
        primal, args = cast(primal, dtype), cast(args, dtype)
        if not np.all(np.isfinite(np.asarray(primal))):
            raise ValueError("primal is not finite (NaN or inf)")
        if jit:
            _require_traceable(args)
        maybe_jit = jax.jit if jit else (lambda f: f)
        value = np.asarray(maybe_jit(fn)(primal, *args))
        hand = maybe_jit(jac_fn)(primal, *args)
        refs = {
            label: ("jax.jacfwd", maybe_jit(jax.jacfwd(fn))(primal, *args)),
            f"{label}@jacrev": ("jax.jacrev", maybe_jit(jax.jacrev(fn))(primal, *args)),
        }
        peak = peak_of(ref for _, ref in refs.values())
        leaves = []
        for path, (reference, ref) in refs.items():
            ref = np.asarray(ref)
            vs_auto, problem = judge(
                hand, ref, what="hand Jacobian", missing="hand Jacobian is missing",
                reference=reference, rtol=rtol, dtype=dtype, peak=peak,
            )  # fmt: skip
            vs_fd = None
            if fd and path == label and vs_auto is not None:
                vs_fd = _jacobian_fd(
                    fn, primal, args, np.asarray(hand), ref, fd_samples, rtol, fd_rtol, seed,
                    dtype, jit,
                )  # fmt: skip
            diagnosis = None
            if (vs_auto is not None and not vs_auto.ok) or (
                hand is not None and np.shape(hand) != ref.shape
            ):
                diagnosis = diagnose(
                    path, hand, ref, dtype=dtype, rtol=rtol, problem=problem, noun="Jacobian"
                )
            leaves.append(
                LeafReport(
                    path=path,
                    shape=ref.shape,
                    dtype=str(ref.dtype),
                    vs_auto=vs_auto,
                    vs_fd=vs_fd,
                    problem=problem,
                    diagnosis=diagnosis,
                )
            )
    report = GradReport(
        leaves=tuple(leaves),
        dtype=dtype.name,
        loss=float(np.linalg.norm(value.ravel())),
        name=name,
        source=source,
    )
    if raise_on_failure:
        report.raise_if_failed()
    return report


def _jacobian_fd(fn, primal, args, hand, ref, fd_samples, rtol, fd_rtol, seed, dtype, jit):
    """Finite differences of ``fn`` along sampled input elements: columns of the Jacobian, each
    from :mod:`jaxprop.fd` (in float64 where ``fn`` runs in it)."""
    n_in = int(np.size(primal))
    out_shape = ref.shape[: ref.ndim - np.ndim(primal)]
    h_cols, r_cols = hand.reshape(-1, n_in), ref.reshape(-1, n_in)
    if n_in <= fd_samples:
        picks = np.arange(n_in)
    else:
        worst = int(np.argmax(np.max(np.abs(h_cols - r_cols), axis=0)))
        rng = np.random.default_rng(seed)
        others = rng.choice(np.delete(np.arange(n_in), worst), fd_samples - 1, replace=False)
        picks = np.sort(np.concatenate([[worst], others]))
    ref_dtype = jnp.dtype(jnp.float64)
    try:
        with jax.enable_x64(True):
            x64, a64 = cast(primal, jnp.float64), cast(args, jnp.float64)
            if jnp.result_type(fn(x64, *a64)) != jnp.float64:
                raise TypeError("fn does not compute in float64")
    except Exception:  # a function that runs in its own dtype only
        ref_dtype = jnp.dtype(dtype)
    with precision(ref_dtype):
        x, xargs = cast(primal, ref_dtype), cast(args, ref_dtype)
        flat = jnp.ravel(x)
        x_np = np.abs(np.asarray(flat, np.float64))
        steps = fd.ladder(fd.element_scale(x_np[picks], x_np), ref_dtype)
        P, K = steps.shape

        def column(i, t):
            # f(x ± t e_i): the limit (5.55), taken symmetrically and one-sidedly.
            e = jnp.zeros_like(flat).at[i].set(t)
            plus = fn(jnp.reshape(flat + e, jnp.shape(x)), *xargs)
            minus = fn(jnp.reshape(flat - e, jnp.shape(x)), *xargs)
            return jnp.ravel(plus), jnp.ravel(minus)

        def all_columns(index, t):
            return jax.lax.map(lambda it: column(*it), (index, t))

        index, t = jnp.asarray(np.repeat(picks, K)), jnp.asarray(steps.ravel(), ref_dtype)
        try:
            # Compiled even with jit=False, as for check_grads (the reference's own evaluations).
            plus, minus = jax.jit(all_columns)(index, t)
        except Exception:  # a function that cannot be traced: evaluate it eagerly
            if jit:
                raise
            plus, minus = all_columns(index, t)
        f0 = np.ravel(np.asarray(fn(x, *xargs)))
        m = f0.size
        e = fd.estimate(
            f0, np.asarray(plus).reshape(P, K, m), np.asarray(minus).reshape(P, K, m), steps,
            ref_dtype, FD_ERROR_MULTIPLE,
        )  # fmt: skip
    floor_rtol = rtol if fd_rtol is None else max(rtol, fd_rtol)
    scale = reference_scale(ref, dtype=dtype)

    def index_of(k):
        o, j = divmod(k, len(picks))
        out_index = np.unravel_index(o, out_shape) if out_shape else ()
        in_index = np.unravel_index(picks[j], np.shape(primal)) if np.ndim(primal) else ()
        return tuple(int(i) for i in (*out_index, *in_index))

    return compare_fd(
        "finite differences", h_cols[:, picks], e.value.T, e.error.T, rtol=floor_rtol,
        scale=scale, dtype=dtype, left=e.left.T, right=e.right.T, kink=e.kink.T,
        index_of=index_of, steps=np.repeat(steps[None], m, axis=0).reshape(m * P, K),
    )  # fmt: skip

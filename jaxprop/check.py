"""The verification engine: a hand-written gradient against ``jax.grad`` and finite differences.

:func:`check_grads` works on any pair of functions ``loss_fn(params, *args) -> scalar`` and
``grad_fn(params, *args) -> pytree like params``; it knows nothing of the built-in models.

Each leaf of the hand gradient is compared twice:

- against ``jax.grad(loss_fn)``, on every element;
- against central finite differences, (L(θ + h e_i) − L(θ − h e_i)) / 2h, the limit definition of
  the partial derivative (002_dadcaa6bdb722c5e.txt eq (5.39)) taken symmetrically, on every element
  of a small leaf and on ``fd_samples`` elements of a large one (always including the element where
  the hand gradient departs most from ``jax.grad``).

The error of a leaf is ``max |hand − ref|`` divided by the leaf's scale ``max |ref|`` (floored, so
that an all-zero leaf is compared absolutely). Default tolerances, by dtype:

============  ==================  ==================
dtype         rtol vs jax.grad    rtol vs finite diff
============  ==================  ==================
float64       1e-10               1e-6
float32       1e-4                1e-2
============  ==================  ==================

A correct hand gradient agrees with ``jax.grad`` to rounding: about 1e-15 relative in float64. The
finite-difference tolerance reflects the method's own error, O(h²) truncation plus O(ε/h) rounding
with h = ε^(1/3).

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

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxprop.core import (
    NOISE_ULPS,
    Comparison,
    GradientCheckError,
    Record,
    Report,
    cast,
    compare,
    default_tolerances,
    fd_noise,
    finite_leaves_check,
    format_rows,
    json_float,
    judge,
    leaf_path,
    paths,
    peak_of,
    precision,
    sensitivity,
    tolerances,
)

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
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    vs_auto: Comparison | None = None
    vs_fd: Comparison | None = None
    problem: str | None = None


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

    def _header(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "ok": self.ok,
            "dtype": self.dtype,
            "loss": json_float(self.loss),
        }

    def __str__(self) -> str:
        title = self.name or "gradient check"
        head = f"{title}  [{self.dtype}]" + (f"  source: {self.source}" if self.source else "")
        return head + "\n" + format_table(self.leaves)


def format_table(leaves: Sequence[LeafReport]) -> str:
    """The per-leaf table of a report, one line per leaf."""
    rows = [("leaf", "shape", "rel err vs jax.grad", "worst at", "rel err vs FD", "n FD", "")]
    for leaf in leaves:
        a, f = leaf.vs_auto, leaf.vs_fd
        status = "ok" if leaf.ok else ("FAIL: " + leaf.problem if leaf.problem else "FAIL")
        rows.append(
            (
                leaf.path,
                "x".join(map(str, leaf.shape)) or "scalar",
                f"{a.max_rel:.2e}" if a else "-",
                str(list(a.worst_index)) if a else "-",
                f"{f.max_rel:.2e}" if f else "-",
                str(f.n_compared) if f else "-",
                status,
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
      fd_rtol: tolerance against finite differences; defaults by dtype.
      fd_samples: the most elements per leaf compared by finite differences.
      jit: run both gradients (and the finite differences) under ``jax.jit``.
      seed: chooses the elements sampled for finite differences (a non-negative integer).
      name: a name for the report (e.g. the model's).
      source: a citation for the report.
      raise_on_failure: raise :class:`GradientCheckError` instead of returning a failing report.

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
    with precision(dtype):
        report = _check(
            loss_fn, grad_fn, params, args, dtype, rtol, fd, fd_rtol, fd_samples, jit, seed
        )
    report = dataclasses.replace(report, name=name, source=source)
    if raise_on_failure:
        report.raise_if_failed()
    return report


def _check(loss_fn, grad_fn, params, args, dtype, rtol, fd, fd_rtol, fd_samples, jit, seed):
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
    maybe_jit = jax.jit if jit else (lambda f: f)
    loss = maybe_jit(loss_fn)(params, *args)
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
    auto_fn = maybe_jit(jax.grad(loss_fn))
    auto = auto_fn(params, *args)
    hand = maybe_jit(grad_fn)(params, *args)

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
    # jax.grad's own uncertainty: the rounding of its inputs, propagated (the core's scale rule,
    # item 3); it keeps the scale from vanishing at a minimum, where every true gradient is ~0.
    eps = float(np.finfo(dtype).eps)
    noise = {
        p: NOISE_ULPS * eps * float(np.max(s, initial=0.0))
        for p, s in paths(sensitivity(auto_fn, (params, *args), seed=seed)).items()
    }
    # A loss that is not finite beside the point (a kink of its domain) gives no noise estimate.
    noise = {p: v if math.isfinite(v) else 0.0 for p, v in noise.items()}

    leaves: list[LeafReport] = []
    compared: list[tuple[str, np.ndarray, np.ndarray]] = []
    for path, a in auto_leaves.items():
        a = np.asarray(a)
        vs_auto, problem = judge(
            hand_leaves.get(path, None) if path in hand_leaves else None,
            a,
            what="hand gradient",
            missing="missing from the hand gradient",
            rtol=rtol,
            dtype=dtype,
            peak=peak,
            noise=noise[path],
        )
        leaves.append(
            LeafReport(
                path=path, shape=a.shape, dtype=str(a.dtype), vs_auto=vs_auto, problem=problem
            )
        )
        if vs_auto is not None:
            compared.append((path, np.asarray(hand_leaves[path]), a))
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

    if fd and compared:
        fd_by_leaf = _finite_differences(
            loss_fn, params, args, compared, fd_samples, seed, dtype, loss, jit
        )
        leaves = [
            dataclasses.replace(leaf, vs_fd=_fd_comparison(fd_by_leaf[leaf.path], fd_rtol, dtype))
            if leaf.path in fd_by_leaf
            else leaf
            for leaf in leaves
        ]
    return GradReport(leaves=tuple(leaves), dtype=dtype.name, loss=loss)


def _finite_differences(loss_fn, params, args, compared, fd_samples, seed, dtype, loss, jit):
    """Central differences at a sample of elements of every compared leaf."""
    flat, unravel = ravel_pytree(params)
    offsets, start = {}, 0
    for path, leaf in paths(params).items():
        offsets[path] = start
        start += int(np.size(leaf))
    rng = np.random.default_rng(seed)
    picks: dict[str, np.ndarray] = {}
    for path, h, a in compared:
        n = h.size
        if n <= fd_samples:
            picks[path] = np.arange(n)
        else:
            worst = int(np.argmax(np.abs(h - a)))
            others = rng.choice(np.delete(np.arange(n), worst), fd_samples - 1, replace=False)
            picks[path] = np.sort(np.concatenate([[worst], others]))
    index = np.concatenate([offsets[p] + picks[p] for p in picks]).astype(np.int64)

    eps = float(np.finfo(dtype).eps)
    theta = np.asarray(flat)[index]
    steps = eps ** (1 / 3) * np.maximum(1.0, np.abs(theta))

    def central(i, step):
        # (L(θ + h e_i) − L(θ − h e_i)) / 2h: the limit of (5.39), taken symmetrically.
        e = jnp.zeros_like(flat).at[i].set(step)
        plus = loss_fn(unravel(flat + e), *args)
        minus = loss_fn(unravel(flat - e), *args)
        return (plus - minus) / (2 * step)

    def all_central(index, steps):
        return jax.lax.map(lambda a: central(*a), (index, steps), batch_size=64)

    run = jax.jit(all_central) if jit else all_central
    values = np.asarray(run(jnp.asarray(index), jnp.asarray(steps, dtype)))
    noise = fd_noise(dtype, abs(loss))
    out, k = {}, 0
    for path, h, _ in compared:
        m = len(picks[path])
        out[path] = (h.ravel()[picks[path]], values[k : k + m], picks[path], h.shape, noise)
        k += m
    return out


def _fd_comparison(entry, fd_rtol, dtype) -> Comparison:
    hand, ref, picks, shape, noise = entry
    # The method's own noise floors the scale (the core's rule, item 3): a leaf of tiny gradients
    # is compared absolutely, at the precision finite differences can reach.

    def index_of(k: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(picks[k], shape)) if shape else ()

    return compare(
        "finite differences", hand, ref, rtol=fd_rtol, dtype=dtype, noise=noise, index_of=index_of
    )


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
                    fn, primal, args, np.asarray(hand), ref, fd_samples, fd_rtol, seed, dtype, jit
                )
            leaves.append(
                LeafReport(
                    path=path,
                    shape=ref.shape,
                    dtype=str(ref.dtype),
                    vs_auto=vs_auto,
                    vs_fd=vs_fd,
                    problem=problem,
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


def _jacobian_fd(fn, primal, args, hand, ref, fd_samples, fd_rtol, seed, dtype, jit) -> Comparison:
    """Central differences of ``fn`` along sampled input elements: columns of the Jacobian."""
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
    eps = float(np.finfo(dtype).eps)
    flat = jnp.ravel(primal)
    steps = eps ** (1 / 3) * np.maximum(1.0, np.abs(np.asarray(flat)[picks]))

    def column(i, step):
        # (f(x + h e_i) − f(x − h e_i)) / 2h: the limit (5.55), taken symmetrically.
        e = jnp.zeros_like(flat).at[i].set(step)
        plus = fn(jnp.reshape(flat + e, jnp.shape(primal)), *args)
        minus = fn(jnp.reshape(flat - e, jnp.shape(primal)), *args)
        return jnp.ravel(plus - minus) / (2 * step)

    def all_columns(index, steps):
        return jax.lax.map(lambda a: column(*a), (index, steps))

    run = jax.jit(all_columns) if jit else all_columns
    fd_cols = np.asarray(run(jnp.asarray(picks), jnp.asarray(steps, dtype))).T  # (n_out, picks)
    values = np.asarray(fn(primal, *args))
    noise = fd_noise(dtype, float(np.max(np.abs(values), initial=0.0)))
    hand_cols = h_cols[:, picks]

    def index_of(k):
        o, j = divmod(k, len(picks))
        out_index = np.unravel_index(o, out_shape) if out_shape else ()
        in_index = np.unravel_index(picks[j], np.shape(primal)) if np.ndim(primal) else ()
        return tuple(int(i) for i in (*out_index, *in_index))

    return compare(
        "finite differences", hand_cols, fd_cols, rtol=fd_rtol, dtype=dtype, noise=noise,
        index_of=index_of,
    )  # fmt: skip

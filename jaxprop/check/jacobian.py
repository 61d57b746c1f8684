"""``check_jacobian``: a hand Jacobian against ``jax.jacfwd``, ``jax.jacrev`` and finite
differences, element by element.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check import fd
from jaxprop.check.compare import compare_fd, judge, peak_of
from jaxprop.check.diagnosis import diagnose
from jaxprop.check.grad_report import GradReport, LeafReport
from jaxprop.check.grads import _require_functions, _require_traceable, _resolve
from jaxprop.check.tolerance import (
    FD_ERROR_MULTIPLE,
    precision,
    reference_scale,
)
from jaxprop.check.trees import (
    cast,
)
from jaxprop.check.user_code import user_error

__all__ = ["check_jacobian"]


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
      dtype: ``"float64"`` (the default) or ``"float32"``, as for :func:`check_grads`.
      rtol: tolerance on the relative error against ``jax.jacfwd`` and ``jax.jacrev``; defaults
        by dtype.
      fd: whether to compare with central finite differences too.
      fd_rtol: an extra relative allowance against finite differences, as for
        :func:`check_grads`.
      fd_samples: the most input elements (columns of the Jacobian) compared by finite
        differences.
      jit: run the functions (and the finite differences) under ``jax.jit``.
      seed: chooses the input elements sampled for finite differences (a non-negative integer).
      label: the leaf name in the report.
      name: a name for the report.
      source: a citation for the report.
      raise_on_failure: raise :class:`GradientCheckError` instead of returning a failing report.

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
        try:
            hand = maybe_jit(jac_fn)(primal, *args)
        except Exception as e:  # the user's jac_fn: a FAIL row (jaxprop's own error raises)
            problem = user_error(e, "jac_fn")
            if problem is None:
                raise
            shape = (*value.shape, *primal.shape)
            failed = tuple(
                LeafReport(path=p, shape=shape, dtype=dtype.name, problem=problem)
                for p in (label, f"{label}@jacrev")
            )
            report = GradReport(leaves=failed, dtype=dtype.name, loss=float("nan"))
            report = dataclasses.replace(report, name=name, source=source)
            if raise_on_failure:
                report.raise_if_failed()
            return report
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
    from :mod:`jaxprop.check.fd` (in float64 where ``fn`` runs in it)."""
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

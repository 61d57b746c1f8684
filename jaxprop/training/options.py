"""The checks of a training run's options, shared by ``train`` and ``train_sweep``: steps, chunk
size, batch size, seed, data and test data, the callback and the gradient function's output, each
a one-line ``ValueError`` naming the option before anything is compiled.
"""

from __future__ import annotations

import numbers
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.user_code import user_error

__all__ = ["check_seed"]


def _test_examples(test_data, x, Y) -> tuple:
    """``test_data`` as a pair of arrays shaped like ``x`` and ``Y``, or a ValueError."""
    if not (isinstance(test_data, tuple | list) and len(test_data) == 2):
        raise ValueError(
            f"test_data must be a pair (x_test, Y_test), got {type(test_data).__name__}"
            + (f" of length {len(test_data)}" if isinstance(test_data, tuple | list) else "")
        )
    xt, Yt = _examples("test_data's x", test_data[0]), _examples("test_data's Y", test_data[1])
    if xt.shape[0] != Yt.shape[0] or xt.shape[0] == 0:
        raise ValueError(
            f"test_data has x of shape {xt.shape} and Y of shape {Yt.shape}: expected the same "
            f"number of rows, at least one"
        )
    for name, t, a in (("x", xt, x), ("Y", Yt, Y)):
        if t.shape[1:] != a.shape[1:] or t.dtype != a.dtype:
            raise ValueError(
                f"test_data's {name} is {t.dtype}{list(t.shape)}: expected {name}'s dtype "
                f"and shape per row, {a.dtype}{list(a.shape[1:])} (N rows)"
            )
    return xt, Yt


class CallbackError(RuntimeError):
    """A ``callback`` given to :func:`train` raised; the original exception is the cause
    (``__cause__``) and the message names the callback and the step."""


class GradientError(RuntimeError):
    """The user's gradient (a model's forward or backward pass, a ``grad_fn``) raised: one line
    naming the step, the exception and the user's ``file:line``; the original exception is the
    cause (``__cause__``). Nothing was trained, and nothing written so far is changed."""


def _callable_name(fn) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    module = getattr(fn, "__module__", None)
    if name is None:
        return repr(fn)
    return f"{module}.{name}" if module and module != "builtins" else name


def _run_callback(callback, step: int, metrics: dict[str, float]) -> None:
    try:
        callback(step, metrics)
    except Exception as e:
        raise CallbackError(
            f"the callback {_callable_name(callback)} raised {type(e).__name__} at step {step} "
            f"(metrics {metrics}): {e}"
        ) from e


def _run_options(steps, chunk_size, x, Y, callback, test_data, batch_size):
    """The options of one training run (or of every run of a sweep), checked:
    ``(steps, chunk_size, x, Y, test_data, batch, full_batch)``, or a ValueError naming the
    first that is wrong."""
    steps = _integer("steps", steps, 1)
    chunk_size = _integer("chunk_size", chunk_size, 1)
    x, Y = _examples("x", x), _examples("Y", Y)
    n = x.shape[0]
    if Y.shape[0] != n:
        raise ValueError(
            f"x has shape {x.shape} and Y has shape {Y.shape}: expected the same "
            f"number of rows (examples)"
        )
    if n == 0:
        raise ValueError(f"x has shape {x.shape}: expected at least one example")
    if callback is not None and not callable(callback):
        raise ValueError(
            f"callback must be callable as callback(step, metrics), got {type(callback).__name__}"
        )
    if test_data is not None:
        test_data = _test_examples(test_data, x, Y)
    if batch_size is not None:
        batch_size = _integer("batch_size", batch_size, 1)
        if batch_size > n:
            raise ValueError(f"batch_size must be between 1 and N = {n}, got {batch_size}")
    full_batch = batch_size is None or batch_size == n
    batch = n if full_batch else batch_size
    assert batch is not None  # full_batch when batch_size is None
    return steps, chunk_size, x, Y, test_data, batch, full_batch


def _check_gradient_output(value_and_grad, params, batch: int, x, Y) -> None:
    """Traces one step's ``(loss, grads)`` (shapes only, nothing is computed) and raises a
    ValueError unless the loss is a real scalar and the gradient has the structure, shapes and
    dtypes of the parameters, before anything is compiled; otherwise a wrong gradient could fail
    deep inside the optimizer or, with a float32 gradient of float64 parameters, train silently
    in mixed precision."""
    xb = jax.ShapeDtypeStruct((batch, *x.shape[1:]), x.dtype)
    Yb = jax.ShapeDtypeStruct((batch, *Y.shape[1:]), Y.dtype)
    try:
        out = jax.eval_shape(value_and_grad, params, xb, Yb)
    except Exception as e:  # the user's code raised as the first step traces it
        problem = user_error(e, "the gradient")
        if problem is None:
            raise  # jaxprop's own: not hidden
        raise GradientError(f"step 0: {problem}") from e
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise ValueError(
            f"the gradient source must return (loss, grads); it returned {_describe(out)}"
        )
    loss, grads = out
    if not (isinstance(loss, jax.ShapeDtypeStruct) and loss.shape == ()) or not jnp.issubdtype(
        loss.dtype, jnp.floating
    ):
        raise ValueError(f"the loss must be a real scalar, got {_describe(loss)}")
    expected, got = jax.tree.structure(params), jax.tree.structure(grads)
    # jax annotates tree.structure with ``PyTreeDef = pytree.PyTreeDef``, a variable mypy cannot
    # resolve as a type (it reveals ``PyTreeDef?``), so it finds no ``!=`` on it.
    if expected != got:  # type: ignore[operator]
        raise ValueError(
            f"the gradient has the structure {got}; expected that of the parameters, {expected}"
        )
    leaves = jax.tree_util.tree_leaves_with_path(params)
    for (path, p), g in zip(leaves, jax.tree.leaves(grads), strict=True):
        if jnp.shape(p) != g.shape or jnp.result_type(p) != g.dtype:
            raise ValueError(
                f"the gradient of {jax.tree_util.keystr(path)} is {_describe(g)}; expected the "
                f"parameter's shape and dtype, {jnp.result_type(p)}{list(jnp.shape(p))}"
            )


def _describe(tree) -> str:
    return str(jax.tree.map(lambda a: f"{a.dtype}{list(a.shape)}", tree))


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _integer(name: str, value, low: int) -> int:
    """``value`` as an int, or a ValueError naming ``name`` for a bool, a float or a value < low."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_seed(seed) -> int:
    """``seed`` as an int in 0..2**32 − 1, the range in which ``jax.random.key`` gives every seed
    its own key under both float32 and float64 settings (beyond it seeds wrap around silently).

    Raises:
      ValueError: for anything else (a negative, too large or non-integer seed).
    """
    # typeshed's numbers.Integral declares __lt__ and __le__ but not the reflected __ge__ that
    # ``0 <= seed`` needs; every concrete Integral (int, np.int64) compares with an int.
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:  # type: ignore[operator]
        raise ValueError(f"seed must be an integer between 0 and 2**32 - 1, got {seed!r}")
    return int(seed)


def _examples(name: str, a) -> jax.Array | np.ndarray:
    """``a`` as an array with one example per row, or a ValueError naming it."""
    if not isinstance(a, jax.Array | np.ndarray):
        raise ValueError(
            f"{name} must be a JAX or NumPy array (one example per row), got {type(a).__name__}"
        )
    if a.ndim == 0:
        raise ValueError(f"{name} is a scalar: expected an array with one example per row")
    if jnp.issubdtype(a.dtype, jnp.inexact) and a.size:
        # Reduced to scalars before reading: a global array of several processes can be read
        # only where it is replicated.
        finite = jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
        bad = int(jnp.sum(~finite))
        if bad:
            raise ValueError(
                f"{name} has NaN or infinite entries (in {bad} of its {a.shape[0]} "
                f"rows, the first row {int(jnp.argmin(finite))})"
            )
    return a

"""A training loop over any gradient source and any optax optimizer, in jitted scanned chunks.

One optimizer step is ``(loss, g) = value_and_grad(params, x_batch, Y_batch)`` followed by
``optax`` ``update``/``apply_updates``; :func:`train` (``jaxprop.train``) runs ``chunk_size`` such
steps inside one jitted :func:`jax.lax.scan`, so Python is entered once per chunk (for the
progress bar, the test loss and a user's ``callback``), not once per step. The gradient comes
from any of:

- ``model`` with ``grad_source="manual"``: the hand-derived ``model.value_and_grad`` (one forward
  pass, then the hand backward pass);
- ``model`` with ``grad_source="auto"``: ``jax.value_and_grad(model.loss)``;
- ``loss_fn`` and ``grad_fn``: any scalar loss ``(params, x, Y) -> L`` and any gradient
  ``(params, x, Y) -> grads`` (for instance ``model.loss`` with ``model.grad`` or with
  ``jax.grad(model.loss)``), or one ``value_and_grad_fn``.

Batches: ``batch_size=None`` trains full-batch; otherwise each epoch draws a permutation of the
examples from ``jax.random.fold_in(key(seed), epoch)`` and step ``t`` takes the
``t mod (N // batch_size)``-th slice of it (the last ``N mod batch_size`` examples of each
permutation are left out of that epoch). The loss recorded at step ``t`` is the loss of the batch
of step ``t`` at the parameters before its update. The same seed gives the same run, bit for bit.

Data parallel: with ``mesh`` (or ``devices``), the examples are sharded along the mesh's batch
axis and the parameters and optimizer state are replicated; XLA's SPMD partitioner turns the
batch-mean of the loss and the sums over examples in the gradient into all-reduces. The same code
runs on one device or many; the batch size must be a multiple of the number of devices.

Logging: every ``chunk_size`` steps and after the last, ``callback(step, metrics)`` gets the
number of steps taken and plain floats, ``{"loss": ..., "test_loss": ...}`` (the test loss when
``test_data`` is given); an exception in it stops training as a :class:`CallbackError` that names
the callback and the step, with the original exception as its cause.

>>> import jax, optax
>>> import jaxprop
>>> model = jaxprop.get_model("tanh-softmax")
>>> params = model.init(jax.random.key(0), n_in=2, n_hidden=8, n_out=2)
>>> x, Y = model.sample(jax.random.key(1), params, batch=32)
>>> log = []
>>> result = jaxprop.train(params, x, Y, optax.adam(1e-2), model=model, steps=50, chunk_size=20,
...                        callback=lambda step, m: log.append((step, m["loss"])), progress=False)
>>> result.losses.shape, bool(result.losses[-1] < result.losses[0])
((50,), True)
>>> [step for step, _ in log], log[-1][1] == float(result.losses[-1])
([20, 40, 50], True)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxprop.core import memoised

__all__ = [
    "ALL_GRAD_SOURCES",
    "GRAD_SOURCES",
    "CallbackError",
    "SweepResult",
    "TrainResult",
    "check_seed",
    "data_mesh",
    "make_value_and_grad",
    "max_relative_difference",
    "train",
    "train_sweep",
]

GRAD_SOURCES = ("manual", "auto")
# Every source train() takes by name: also "bridge", jax.value_and_grad of the model's loss as a
# jax.custom_vjp whose derivative is the hand backward pass (jaxprop.custom_vjp).
ALL_GRAD_SOURCES = (*GRAD_SOURCES, "bridge")
BATCH_AXIS = "batch"

Params = Any


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      params: the final parameters (same structure as the initial ones).
      opt_state: the final optimizer state.
      losses: the loss at every step, shape (steps,), a NumPy array.
      wall_time_s: seconds spent in :func:`train`, compilation included.
      log_steps: the steps after which the callback ran and the test loss was taken (the ends
        of the chunks: ``chunk_size``, ``2 chunk_size``, ..., ``steps``), an int array.
      test_losses: the loss on ``test_data`` after each of ``log_steps`` (the last one at the
        final parameters), or ``None`` without test data.
    """

    params: Params
    opt_state: Any
    losses: np.ndarray
    wall_time_s: float
    log_steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    test_losses: np.ndarray | None = None


class CallbackError(RuntimeError):
    """A ``callback`` given to :func:`train` raised; the original exception is the cause
    (``__cause__``) and the message names the callback and the step."""


def make_value_and_grad(model, grad_source: str = "manual") -> Callable:
    """``(params, x, Y) -> (loss, grads)`` from a model's hand backward pass or from ``jax.grad``.

    Args:
      model: a :class:`~jaxprop.Model`.
      grad_source: ``"manual"`` (``model.value_and_grad``, the hand-derived backward pass),
        ``"auto"`` (``jax.value_and_grad(model.loss)``) or ``"bridge"``
        (``jax.value_and_grad(jaxprop.custom_vjp(model))``: autodiff through the hand rule).

    Raises:
      ValueError: for any other ``grad_source``.
    """
    if grad_source not in ALL_GRAD_SOURCES:
        raise ValueError(f"grad_source must be one of {ALL_GRAD_SOURCES}, got {grad_source!r}")
    return memoised(_make_value_and_grad, model, grad_source)


def _make_value_and_grad(model, grad_source):
    if grad_source == "manual":
        return model.value_and_grad
    if grad_source == "bridge":
        from jaxprop.bridge import custom_vjp

        return jax.value_and_grad(custom_vjp(model))
    return jax.value_and_grad(model.loss)


def data_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"batch"`` over the given devices (an int: the first that many).

    Raises:
      ValueError: when more devices are asked for than there are.
    """
    available = jax.devices()
    if devices is None:
        devices = available
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices}: expected between 1 and {len(available)} (the devices "
                f"available: {available})"
            )
        devices = available[:devices]
    return Mesh(np.asarray(list(devices)), (BATCH_AXIS,))


def _resolve_value_and_grad(model, grad_source, loss_fn, grad_fn, value_and_grad_fn) -> Callable:
    given = [value_and_grad_fn is not None, grad_fn is not None, model is not None]
    if sum(given) != 1:
        raise ValueError(
            "give exactly one gradient source: model (with grad_source), loss_fn with grad_fn, "
            "or value_and_grad_fn"
        )
    if value_and_grad_fn is not None:
        return value_and_grad_fn
    if grad_fn is not None:
        if loss_fn is None:
            raise ValueError("grad_fn needs loss_fn, the loss to record at each step")

        return memoised(_pair, loss_fn, grad_fn)
    return make_value_and_grad(model, grad_source)


def _loss_only(model, loss_fn, value_and_grad) -> Callable:
    """The jitted ``(params, x, Y) -> loss`` of the gradient source, for the test loss."""
    if loss_fn is not None:
        return memoised(jax.jit, loss_fn)
    if model is not None:
        return memoised(jax.jit, model.loss)
    return memoised(_first_of, value_and_grad)


def _first_of(value_and_grad):
    # Under jit the gradient, unused, is dead code that XLA removes.
    return jax.jit(lambda params, x, Y: value_and_grad(params, x, Y)[0])


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
    out = jax.eval_shape(value_and_grad, params, xb, Yb)
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


def _pair(loss_fn, grad_fn):
    def value_and_grad(params, x, Y):
        return loss_fn(params, x, Y), grad_fn(params, x, Y)

    return value_and_grad


def _optimizer_promotion():
    """Standard dtype promotion for optax's own arithmetic (e.g. Adam's ``b1 ** count`` mixes a
    float with an int32 counter), so that a strict promotion setting still checks the model's
    forward and backward passes, which are traced outside this context."""
    return jax.numpy_dtype_promotion("standard")


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


def train(
    params: Params,
    x: jax.Array | np.ndarray,
    Y: jax.Array | np.ndarray,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    model=None,
    grad_source: str = "manual",
    loss_fn: Callable | None = None,
    grad_fn: Callable | None = None,
    value_and_grad_fn: Callable | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    chunk_size: int = 500,
    mesh: Mesh | None = None,
    progress: bool | None = None,
    description: str = "train",
    test_data: tuple[jax.Array | np.ndarray, jax.Array | np.ndarray] | None = None,
    callback: Callable[[int, dict[str, float]], Any] | None = None,
) -> TrainResult:
    """Trains ``params`` on ``(x, Y)`` for ``steps`` optimizer steps.

    Args:
      params: the initial parameters (a pytree of arrays).
      x: inputs, shape (N, ...), one example per row.
      Y: labels, shape (N, ...).
      optimizer: any ``optax.GradientTransformation``.
      steps: the number of optimizer steps, >= 1.
      model: a :class:`~jaxprop.Model`, with ``grad_source`` ``"manual"`` or ``"auto"``.
      grad_source: see :func:`make_value_and_grad`.
      loss_fn: ``(params, x, Y) -> scalar``; with ``grad_fn``, instead of ``model``.
      grad_fn: ``(params, x, Y) -> grads``.
      value_and_grad_fn: ``(params, x, Y) -> (loss, grads)``, instead of both.
      batch_size: examples per step; ``None`` for the full batch (N).
      seed: the seed of the minibatch order.
      chunk_size: steps per jitted scan: the progress bar, the test loss and the callback are
        updated after each chunk (and after the last step).
      mesh: a mesh with a ``"batch"`` axis (see :func:`data_mesh`) to run data-parallel on;
        ``None`` runs on the default device.
      progress: a tqdm bar; ``None`` shows it when stderr is a terminal.
      description: the progress bar's label.
      test_data: ``(x_test, Y_test)``, held-out examples shaped like ``x`` and ``Y``: their
        loss (the ``loss_fn``, the model's loss or the loss of ``value_and_grad_fn``) is taken
        after every chunk, at the parameters of that moment.
      callback: ``callback(step, metrics)`` after every chunk, for a user's own logging:
        ``step`` (an int) is the number of optimizer steps taken so far and ``metrics`` a dict
        of plain floats: ``"loss"``, ``losses[step - 1]`` (the loss of the last step's batch,
        before its update) and, with ``test_data``, ``"test_loss"`` (after ``step`` updates).
        Its return value is ignored.

    Returns:
      A :class:`TrainResult`; ``losses[t]`` is the loss of step t's batch before its update.

    Raises:
      CallbackError: when the callback raises (the message names it and the step; the
        original exception is the cause). Training stops there.
      ValueError: for an optimizer that is not a GradientTransformation, steps or chunk_size
        not an integer >= 1, a seed outside 0..2**32 − 1, x or Y not an array with a row per
        example (or without any, or with NaN or infinite entries), x and Y with different
        numbers of rows, a batch size outside 1..N or not a multiple of the number of devices, a
        mesh without a "batch" axis, an unclear gradient source, or one whose loss is not a real
        scalar or whose gradient does not match the parameters' structure, shapes and dtypes, a
        callback that is not callable, or test data that is not a pair of arrays shaped like
        ``x`` and ``Y`` (the same number of rows, the same trailing shapes and dtypes).
    """
    value_and_grad = _resolve_value_and_grad(
        model, grad_source, loss_fn, grad_fn, value_and_grad_fn
    )
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{optimizer!r}"
        )
    seed = check_seed(seed)
    steps, chunk_size, x, Y, test_data, batch, full_batch = _run_options(
        steps, chunk_size, x, Y, callback, test_data, batch_size
    )
    if mesh is not None and BATCH_AXIS not in mesh.axis_names:
        raise ValueError(
            f"mesh has axes {mesh.axis_names}: expected one named {BATCH_AXIS!r} (see data_mesh)"
        )
    n_devices = 1 if mesh is None else mesh.devices.size
    if batch % n_devices:
        raise ValueError(
            f"batch size {batch} is not a multiple of the {n_devices} devices of the mesh"
        )

    _check_gradient_output(value_and_grad, params, batch, x, Y)

    start = time.perf_counter()
    rows = None
    if mesh is not None:
        # Examples split along the batch axis, parameters and optimizer state on every device.
        rows = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
        replicated = NamedSharding(mesh, PartitionSpec())
        x, Y = jax.device_put(x, rows), jax.device_put(Y, rows)
        params = jax.device_put(params, replicated)
    with _optimizer_promotion():
        try:
            opt_state = optimizer.init(params)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"the optimizer does not fit the parameters: optimizer.init(params) raised "
                f"{type(e).__name__}: {e}"
            ) from e
    if mesh is not None:
        opt_state = jax.device_put(opt_state, replicated)
        if test_data is not None:
            test_data = jax.device_put(test_data, replicated)
    test_loss = None
    if test_data is not None:
        test_loss = _loss_only(model, loss_fn, value_and_grad)

    key = jax.random.key(seed)
    run_chunk = memoised(_chunk_runner, value_and_grad, optimizer, batch, full_batch, rows)

    # Every chunk but the last has the same length, so at most two compilations.
    chunk = min(chunk_size, steps)
    chunks = [chunk] * (steps // chunk) + ([steps % chunk] if steps % chunk else [])
    bar = None
    if _show_progress(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=description, unit="step", file=sys.stderr)
    losses, log_steps, test_losses = [], [], []
    done = 0
    try:
        for length in chunks:
            params, opt_state, chunk_losses = run_chunk(
                params, opt_state, x, Y, key, jnp.asarray(done), length=length
            )
            chunk_losses = np.asarray(chunk_losses)
            losses.append(chunk_losses)
            done += length
            log_steps.append(done)
            metrics = {"loss": float(chunk_losses[-1])}
            if test_loss is not None:
                assert test_data is not None  # test_loss is set with it
                metrics["test_loss"] = float(test_loss(params, *test_data))
                test_losses.append(metrics["test_loss"])
            if bar is not None:
                bar.update(length)
                bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
            if callback is not None:
                _run_callback(callback, done, metrics)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(
        params=params,
        opt_state=opt_state,
        losses=np.concatenate(losses),
        wall_time_s=time.perf_counter() - start,
        log_steps=np.asarray(log_steps, np.int64),
        test_losses=None if test_loss is None else np.asarray(test_losses, np.float64),
    )


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What :func:`train_sweep` returns: every run's figures, run by run along the first axis.

    Attributes:
      params: the final parameters, each leaf with a leading axis of runs.
      losses: the loss of every run at every step, shape (runs, steps).
      seeds: the batch-order seed of each run.
      learning_rates: the learning rate of each run (``None`` where the optimizer was given).
      log_steps: the steps after which the test loss was taken and the callback ran.
      test_losses: shape (runs, len(log_steps)), or ``None`` without test data.
      snapshots: with ``keep_params``, the parameters of every run after each of
        ``log_steps`` (a list of trees with a leading axis of runs), else ``None``.
      diverged: run index -> the first step whose loss is NaN or infinite (the other runs go
        on; a run's numbers are its own).
      wall_time_s: seconds spent in :func:`train_sweep`, compilation included.
    """

    params: Params
    losses: np.ndarray
    seeds: tuple[int, ...]
    learning_rates: tuple[float | None, ...]
    log_steps: np.ndarray
    test_losses: np.ndarray | None
    snapshots: list | None
    diverged: dict[int, int]
    wall_time_s: float

    def run(self, i: int) -> TrainResult:
        """Run ``i`` as a :class:`TrainResult` (its optimizer state is not kept)."""
        return TrainResult(
            params=jax.tree.map(lambda a: a[i], self.params),
            opt_state=None,
            losses=self.losses[i],
            wall_time_s=self.wall_time_s,
            log_steps=self.log_steps,
            test_losses=None if self.test_losses is None else self.test_losses[i],
        )


def train_sweep(
    params: Params,
    x: jax.Array | np.ndarray,
    Y: jax.Array | np.ndarray,
    optimizer: optax.GradientTransformation | Callable[..., optax.GradientTransformation],
    *,
    steps: int,
    seeds: Sequence[int],
    learning_rates: Sequence[float] | None = None,
    model=None,
    grad_source: str = "manual",
    loss_fn: Callable | None = None,
    grad_fn: Callable | None = None,
    value_and_grad_fn: Callable | None = None,
    batch_size: int | None = None,
    chunk_size: int = 500,
    progress: bool | None = None,
    description: str = "sweep",
    test_data: tuple[jax.Array | np.ndarray, jax.Array | np.ndarray] | None = None,
    callback: Callable[[int, dict[str, Any]], Any] | None = None,
    keep_params: bool = False,
) -> SweepResult:
    """Trains many runs at once, in one compiled program: ``jax.vmap`` over the runs inside the
    scanned loop of :func:`train`.

    Run ``i`` starts from ``params`` indexed ``i`` along the leading axis, draws its batches in
    the order of ``seeds[i]`` and, with ``learning_rates``, steps at ``learning_rates[i]``; it is
    the run ``train(params[i], ..., seed=seeds[i])`` would make (to rounding: a batched matrix
    product may sum in another order). A run whose loss becomes NaN or infinite is reported in
    ``diverged`` and does not stop the others.

    >>> import jax, jax.numpy as jnp, optax, jaxprop
    >>> model = jaxprop.get_model("tanh-softmax")
    >>> inits = [model.init(jax.random.key(s), n_in=2, n_hidden=8, n_out=2) for s in range(4)]
    >>> params = jax.tree.map(lambda *p: jnp.stack(p), *inits)
    >>> x, Y = model.sample(jax.random.key(9), inits[0], batch=32)
    >>> sweep = jaxprop.train_sweep(params, x, Y, optax.sgd, learning_rates=[0.1, 0.1, 0.5, 0.5],
    ...                             seeds=[0, 1, 2, 3], model=model, steps=20, progress=False)
    >>> sweep.losses.shape, sweep.diverged
    ((4, 20), {})

    Args:
      params: the initial parameters of every run: each leaf with a leading axis of runs.
      x, Y: the training examples, shared by the runs (see :func:`train`).
      optimizer: an ``optax.GradientTransformation`` for every run, or, with
        ``learning_rates``, a function of ``learning_rate`` returning one (``optax.adam``):
        it is wrapped in ``optax.inject_hyperparams`` so that each run has its own rate.
      steps: optimizer steps per run.
      seeds: the batch-order seed of each run (one per run).
      learning_rates: one per run, or ``None``.
      model, grad_source, loss_fn, grad_fn, value_and_grad_fn, batch_size, chunk_size, progress,
        description, test_data: as for :func:`train`.
      callback: ``callback(step, metrics)`` after every chunk; ``metrics`` holds ``"loss"``
        (a list of floats, one per run) and, with test data, ``"test_loss"`` (likewise).
      keep_params: keep every run's parameters after each chunk (``snapshots``), to follow how
        two sweeps drift apart.

    Raises:
      ValueError: for a leaf of ``params`` without a leading axis of ``len(seeds)`` runs,
        learning rates of another number or not positive, an optimizer that is not a function
        of the learning rate when ``learning_rates`` are given, and everything :func:`train`
        rejects.
      CallbackError: when the callback raises.
    """
    value_and_grad = _resolve_value_and_grad(
        model, grad_source, loss_fn, grad_fn, value_and_grad_fn
    )
    seeds = tuple(check_seed(s) for s in seeds)
    runs = len(seeds)
    if runs == 0:
        raise ValueError("seeds is empty: give one batch-order seed per run, e.g. range(8)")
    leading = {jnp.shape(leaf)[:1] for leaf in jax.tree.leaves(params)}
    if leading != {(runs,)}:
        raise ValueError(
            f"every leaf of params must have a leading axis of {runs} runs (one per seed), got "
            f"leading sizes {sorted(leading)}; stack the runs' parameters with "
            "jax.tree.map(lambda *p: jnp.stack(p), *inits)"
        )
    rates: tuple[float | None, ...] = (None,) * runs
    if learning_rates is not None:
        given = tuple(float(r) for r in learning_rates)
        rates = given
        if len(given) != runs or not all(r > 0 and math.isfinite(r) for r in given):
            raise ValueError(
                f"learning_rates must be {runs} positive numbers (one per run), got "
                f"{list(learning_rates)}"
            )
        if isinstance(optimizer, optax.GradientTransformation) or not callable(optimizer):
            raise ValueError(
                "with learning_rates, optimizer must be a function of learning_rate (e.g. "
                "optax.adam or lambda learning_rate: optax.sgd(learning_rate, momentum=0.9)), "
                f"got {optimizer!r}"
            )
        optimizer = optax.inject_hyperparams(optimizer)(learning_rate=rates[0])
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{optimizer!r}"
        )
    steps, chunk_size, x, Y, test_data, batch, full_batch = _run_options(
        steps, chunk_size, x, Y, callback, test_data, batch_size
    )
    _check_gradient_output(value_and_grad, jax.tree.map(lambda a: a[0], params), batch, x, Y)

    start = time.perf_counter()
    with _optimizer_promotion():
        try:
            opt_state = jax.vmap(optimizer.init)(params)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"the optimizer does not fit the parameters: optimizer.init(params) raised "
                f"{type(e).__name__}: {e}"
            ) from e
    if learning_rates is not None:
        # Each run's own rate, in the injected hyperparameters of its state.
        lr = opt_state.hyperparams["learning_rate"]
        opt_state.hyperparams["learning_rate"] = jnp.asarray(rates, lr.dtype)
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    run_chunks = memoised(_sweep_runner, value_and_grad, optimizer, batch, full_batch)
    test_loss = None
    if test_data is not None:
        test_loss = memoised(_sweep_loss, _loss_only(model, loss_fn, value_and_grad))

    chunk = min(chunk_size, steps)
    chunks = [chunk] * (steps // chunk) + ([steps % chunk] if steps % chunk else [])
    bar = None
    if _show_progress(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=description, unit="step", file=sys.stderr)
    losses, log_steps, test_losses, snapshots = [], [], [], []
    done = 0
    try:
        for length in chunks:
            params, opt_state, chunk_losses = run_chunks(
                params, opt_state, x, Y, keys, jnp.asarray(done), length=length
            )
            chunk_losses = _host(chunk_losses)
            losses.append(chunk_losses)
            done += length
            log_steps.append(done)
            if keep_params:
                snapshots.append(jax.tree.map(_host, params))
            metrics: dict[str, Any] = {"loss": [float(v) for v in chunk_losses[:, -1]]}
            if test_loss is not None:
                assert test_data is not None
                t = _host(test_loss(params, *test_data))
                test_losses.append(t)
                metrics["test_loss"] = [float(v) for v in t]
            if bar is not None:
                bar.update(length)
                bar.set_postfix({"median loss": f"{np.nanmedian(chunk_losses[:, -1]):.4g}"})
            if callback is not None:
                _run_callback(callback, done, metrics)
    finally:
        if bar is not None:
            bar.close()
    all_losses = np.concatenate(losses, axis=1)
    bad = ~np.isfinite(all_losses)
    diverged = {int(i): int(np.argmax(bad[i])) for i in np.flatnonzero(bad.any(axis=1))}
    return SweepResult(
        params=params,
        losses=all_losses,
        seeds=seeds,
        learning_rates=rates,
        log_steps=np.asarray(log_steps, np.int64),
        test_losses=None if test_loss is None else np.stack(test_losses, axis=1),
        snapshots=snapshots if keep_params else None,
        diverged=diverged,
        wall_time_s=time.perf_counter() - start,
    )


def _host(a) -> np.ndarray:
    """``a`` as a NumPy array on this process; a global array sharded over other processes'
    devices (a sweep's runs sharded over a multi-process mesh) is gathered first (every process
    calls it)."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
        from jax.experimental import multihost_utils

        a = multihost_utils.process_allgather(a, tiled=True)
    return np.asarray(a)


def _sweep_loss(loss):
    """Every run's loss on the same examples, in one program."""
    return jax.jit(jax.vmap(loss, in_axes=(0, None, None)))


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


def _chunk_runner(value_and_grad, optimizer, batch: int, full_batch: bool, rows):
    """The jitted ``run_chunk(params, opt_state, x, Y, key, first_step, length)``: ``length``
    optimizer steps in one :func:`jax.lax.scan`. The data are arguments, not constants baked into
    the program, and the runner is memoised (:func:`jaxprop.core.memoised`), so a second run with
    the same gradient source, optimizer and batching reuses the compiled program."""
    chunk = _chunk_fn(value_and_grad, optimizer, batch, full_batch, rows)
    return jax.jit(chunk, static_argnames="length")


def _sweep_runner(value_and_grad, optimizer, batch: int, full_batch: bool):
    """:func:`_chunk_runner` for many runs at once: ``jax.vmap`` over the runs' parameters,
    optimizer states and batch-order keys (the data shared), in one compiled program."""
    chunk = _chunk_fn(value_and_grad, optimizer, batch, full_batch, None)

    def run_chunks(params, opt_state, x, Y, keys, first_step, length):
        def one_run(p, s, k):
            return chunk(p, s, x, Y, k, first_step, length)

        return jax.vmap(one_run)(params, opt_state, keys)

    return jax.jit(run_chunks, static_argnames="length")


def _chunk_fn(value_and_grad, optimizer, batch: int, full_batch: bool, rows):
    """``run_chunk(params, opt_state, x, Y, key, first_step, length)``, not yet compiled."""

    def select(x, Y, key, step):
        if full_batch:
            return x, Y
        n = x.shape[0]
        epoch, slot = step // (n // batch), step % (n // batch)
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        idx = jax.lax.dynamic_slice_in_dim(order, slot * batch, batch)
        xb, Yb = jnp.take(x, idx, axis=0), jnp.take(Y, idx, axis=0)
        if rows is not None:
            xb = jax.lax.with_sharding_constraint(xb, rows)
            Yb = jax.lax.with_sharding_constraint(Yb, rows)
        return xb, Yb

    def run_chunk(params, opt_state, x, Y, key, first_step, length):
        def one_step(carry, step):
            params, opt_state = carry
            xb, Yb = select(x, Y, key, step)
            loss, grads = value_and_grad(params, xb, Yb)
            with _optimizer_promotion():
                updates, opt_state = optimizer.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
            return (params, opt_state), loss

        step_ids = first_step + jnp.arange(length)
        (params, opt_state), losses = jax.lax.scan(one_step, (params, opt_state), step_ids)
        return params, opt_state, losses

    return run_chunk


def max_relative_difference(a, b) -> float:
    """The largest ``max|a − b| / max|b|`` over the leaves of two pytrees (0 for equal trees; NaN
    when a leaf holds NaN or the trees share an infinity, whose difference is undefined).

    Each leaf is scaled by its own largest element, as in the checker's comparisons.

    >>> import numpy as np
    >>> max_relative_difference({"w": np.array([1.0, 2.0])}, {"w": np.array([1.0, 2.5])})
    0.2
    """
    worst = 0.0
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        la, lb = np.asarray(la, np.float64), np.asarray(lb, np.float64)
        scale = float(np.max(np.abs(lb), initial=0.0))
        with np.errstate(invalid="ignore"):  # inf − inf: NaN, reported below
            diff = float(np.max(np.abs(la - lb), initial=0.0))
        if math.isnan(diff) or math.isnan(scale):
            return math.nan  # a NaN or infinities in both trees: no agreement can be claimed
        if diff > 0.0:
            worst = max(worst, diff / scale if scale > 0.0 else math.inf)
    return worst

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
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxprop.check.trees import memoised
from jaxprop.training.options import (
    _check_gradient_output,
    _run_callback,
    _run_options,
    _show_progress,
    check_seed,
)

__all__ = [
    "ALL_GRAD_SOURCES",
    "GRAD_SOURCES",
    "TrainResult",
    "data_mesh",
    "make_value_and_grad",
    "max_relative_difference",
    "train",
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
        from jaxprop.check.bridge import custom_vjp

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


def _pair(loss_fn, grad_fn):
    def value_and_grad(params, x, Y):
        return loss_fn(params, x, Y), grad_fn(params, x, Y)

    return value_and_grad


def _optimizer_promotion():
    """Standard dtype promotion for optax's own arithmetic (e.g. Adam's ``b1 ** count`` mixes a
    float with an int32 counter), so that a strict promotion setting still checks the model's
    forward and backward passes, which are traced outside this context."""
    return jax.numpy_dtype_promotion("standard")


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


def _host(a) -> np.ndarray:
    """``a`` as a NumPy array on this process; a global array sharded over other processes'
    devices (a sweep's runs sharded over a multi-process mesh) is gathered first (every process
    calls it)."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
        from jax.experimental import multihost_utils

        a = multihost_utils.process_allgather(a, tiled=True)
    return np.asarray(a)


def _chunk_runner(value_and_grad, optimizer, batch: int, full_batch: bool, rows):
    """The jitted ``run_chunk(params, opt_state, x, Y, key, first_step, length)``: ``length``
    optimizer steps in one :func:`jax.lax.scan`. The data are arguments, not constants baked into
    the program, and the runner is memoised (:func:`jaxprop.check.memoised`), so a second run with
    the same gradient source, optimizer and batching reuses the compiled program."""
    chunk = _chunk_fn(value_and_grad, optimizer, batch, full_batch, rows)
    return jax.jit(chunk, static_argnames="length")


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

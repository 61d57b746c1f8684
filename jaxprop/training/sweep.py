"""``train_sweep``: many training runs (seeds, learning rates) in one compiled program,
``jax.vmap`` over the runs inside the scanned loop of :mod:`jaxprop.training.loop`.
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

from jaxprop.check.trees import memoised
from jaxprop.training.loop import (
    Params,
    TrainResult,
    _chunk_fn,
    _host,
    _loss_only,
    _optimizer_promotion,
    _resolve_value_and_grad,
)
from jaxprop.training.options import (
    _check_gradient_output,
    _run_callback,
    _run_options,
    _show_progress,
    check_seed,
)

__all__ = ["SweepResult", "train_sweep"]


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
      x: the training inputs, shared by the runs (see :func:`train`).
      Y: the training labels, shared by the runs.
      optimizer: an ``optax.GradientTransformation`` for every run, or, with
        ``learning_rates``, a function of ``learning_rate`` returning one (``optax.adam``):
        it is wrapped in ``optax.inject_hyperparams`` so that each run has its own rate.
      steps: optimizer steps per run.
      seeds: the batch-order seed of each run (one per run).
      learning_rates: one per run, or ``None``.
      model: as for :func:`train`.
      grad_source: as for :func:`train`.
      loss_fn: as for :func:`train`.
      grad_fn: as for :func:`train`.
      value_and_grad_fn: as for :func:`train`.
      batch_size: as for :func:`train`.
      chunk_size: as for :func:`train`.
      progress: as for :func:`train`.
      description: as for :func:`train`.
      test_data: as for :func:`train`.
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


def _sweep_loss(loss):
    """Every run's loss on the same examples, in one program."""
    return jax.jit(jax.vmap(loss, in_axes=(0, None, None)))


def _sweep_runner(value_and_grad, optimizer, batch: int, full_batch: bool):
    """:func:`_chunk_runner` for many runs at once: ``jax.vmap`` over the runs' parameters,
    optimizer states and batch-order keys (the data shared), in one compiled program."""
    chunk = _chunk_fn(value_and_grad, optimizer, batch, full_batch, None)

    def run_chunks(params, opt_state, x, Y, keys, first_step, length):
        def one_run(p, s, k):
            return chunk(p, s, x, Y, k, first_step, length)

        return jax.vmap(one_run)(params, opt_state, keys)

    return jax.jit(run_chunks, static_argnames="length")

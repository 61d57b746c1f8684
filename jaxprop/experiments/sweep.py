"""Research sweeps: an experiment trained over several seeds and learning rates in one program.

:func:`run_sweep` trains every (seed, learning rate) run of a grid with :func:`jaxprop.train_sweep`
(``jax.vmap`` over the runs inside the scanned loop), for each gradient source, and writes
``metrics.json`` (each run's final figures, and per step the mean, std, min and max over the
seeds), ``loss_bands.png`` (the median and the min–max band per gradient source and rate) and,
with ``grad="both"``, ``drift.png``: per parameter leaf, how far the hand-gradient run and the
automatic one drift apart over the steps. ``jaxprop train NAME --seeds N [--lr a,b,c]`` is its
command line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprop.check.compare import json_float
from jaxprop.check.tolerance import precision
from jaxprop.check.trees import paths
from jaxprop.experiments.data import Dataset
from jaxprop.experiments.driver import _output_dir, batch_of, library_versions
from jaxprop.experiments.plots import _ignore_nan_warnings
from jaxprop.experiments.table import OPTIMIZERS, Experiment, get_experiment
from jaxprop.training.loop import ALL_GRAD_SOURCES, GRAD_SOURCES
from jaxprop.training.options import check_seed
from jaxprop.training.sweep import SweepResult, train_sweep
from jaxprop.util.files import atomic_write_json

__all__ = ["optimizer_of_rate", "run_sweep"]

#: Points of the drift curve: the parameters are compared after every ``steps // DRIFT_POINTS``.
DRIFT_POINTS = 50


def optimizer_of_rate(name: str):
    """``learning_rate -> optax.GradientTransformation`` for an optimizer of
    :data:`~jaxprop.experiments.OPTIMIZERS` (the learning rate may be traced: each run of a sweep
    has its own, through ``optax.inject_hyperparams``)."""
    if name == "sgd":
        return optax.sgd
    if name == "momentum":
        return lambda learning_rate: optax.sgd(learning_rate, momentum=0.9)
    if name == "adam":
        return optax.adam
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def _stats(curves: np.ndarray) -> dict[str, list]:
    """Per step, over the runs (rows): mean, std, min, max (NaN-aware: a diverged run's NaNs
    are left out of that step's figures, and say so by their count)."""
    with np.errstate(all="ignore"), _ignore_nan_warnings():
        finite = np.where(np.isfinite(curves), curves, np.nan)
        out = {
            "mean": np.nanmean(finite, axis=0),
            "std": np.nanstd(finite, axis=0),
            "min": np.nanmin(finite, axis=0),
            "max": np.nanmax(finite, axis=0),
        }
    return {k: [json_float(float(v)) for v in a] for k, a in out.items()}


def _leaf_drift(a: Any, b: Any) -> dict[str, np.ndarray]:
    """Per leaf, per run: max |a − b| over max |b| (each leaf of each run on its own scale)."""
    out = {}
    for path, la in paths(a).items():
        lb = np.asarray(paths(b)[path], np.float64)
        la = np.asarray(la, np.float64)
        axes = tuple(range(1, la.ndim))
        with np.errstate(all="ignore"):
            diff = np.max(np.abs(la - lb), axis=axes)
            scale = np.max(np.abs(lb), axis=axes)
            out[path] = np.where(scale > 0, diff / scale, np.where(diff > 0, np.inf, 0.0))
    return out


def run_sweep(
    experiment: str | Experiment,
    *,
    seeds: int = 8,
    lrs: Sequence[float] | None = None,
    grad: str = "both",
    optimizer: str | None = None,
    steps: int | None = None,
    batch_size: int | str | None = "default",
    seed: int = 0,
    dtype: str = "float64",
    out: str | os.PathLike | None = None,
    plots: bool = True,
    data: Dataset | None = None,
    progress: bool | None = None,
) -> dict:
    """Trains ``seeds`` runs per learning rate, for each gradient source, and returns the metrics.

    Run ``(i, lr)`` starts from the experiment's initial parameters for seed ``seed + i`` and
    draws its batches in that seed's order: the run ``jaxprop train NAME --seed (seed + i) --lr
    lr`` makes, all of them in one compiled program per gradient source.

    Args:
      experiment: a name in :data:`~jaxprop.experiments.EXPERIMENTS` or an :class:`Experiment`.
      seeds: runs per learning rate (seeds ``seed``, ``seed + 1``, …).
      lrs: the learning rates (default: the experiment's one).
      grad: ``"manual"``, ``"auto"``, ``"bridge"`` or ``"both"`` (manual and auto, and the drift
        between them).
      optimizer: as for :func:`~jaxprop.experiments.run_experiment`.
      steps: as for :func:`~jaxprop.experiments.run_experiment`.
      batch_size: as for :func:`~jaxprop.experiments.run_experiment`.
      seed: the first seed.
      dtype: as for :func:`~jaxprop.experiments.run_experiment`.
      out: as for :func:`~jaxprop.experiments.run_experiment`.
      plots: as for :func:`~jaxprop.experiments.run_experiment`.
      data: as for :func:`~jaxprop.experiments.run_experiment`.
      progress: as for :func:`~jaxprop.experiments.run_experiment`.

    Returns:
      The metrics: ``runs`` (per source, per run: seed, lr, final loss, test loss and accuracy,
      the step a run diverged at), ``per_step`` (per source and lr: mean, std, min and max of the
      loss over the seeds at every step), ``summary`` (per source and lr: mean ± std over the
      seeds of the final figures), with ``grad="both"`` ``drift`` (per leaf: the median and
      the largest relative difference hand vs auto over the runs, after every
      ``steps // 50`` steps), and ``versions``, ``platform``, ``wall_time_s``.

    Raises:
      ValueError: for seeds not an integer >= 1, a learning rate that is not a positive finite
        number, and everything :func:`~jaxprop.experiments.run_experiment` rejects.
    """
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1 (runs per learning rate), got {seeds!r}")
    sources = GRAD_SOURCES if grad == "both" else (grad,)
    if grad != "both" and grad not in ALL_GRAD_SOURCES:
        raise ValueError(f"grad must be one of {(*ALL_GRAD_SOURCES, 'both')}, got {grad!r}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    lrs = [exp.lr] if lrs is None or len(lrs) == 0 else [float(r) for r in lrs]
    bad = [r for r in lrs if not (np.isfinite(r) and r > 0)]
    if bad:
        raise ValueError(f"learning rates must be positive finite numbers, got {bad}")
    optimizer = optimizer or exp.optimizer
    make = optimizer_of_rate(optimizer)
    steps = exp.steps if steps is None else steps
    default_batch = isinstance(batch_size, str) and batch_size == "default"
    batch_size = exp.batch_size if default_batch else batch_size
    seed = check_seed(seed)
    run_seeds = [check_seed(seed + i) for i in range(seeds)]
    grid = [(s, lr) for lr in lrs for s in run_seeds]
    if out is not None:
        out = _output_dir(out)

    with precision(dtype):
        dt = jnp.dtype(dtype)
        ds = data if data is not None else exp.data()
        n_train = ds.x_train.shape[0]
        batch_size = batch_of(exp, batch_size, default_batch, n_train)
        model = exp.model()
        x, Y = jnp.asarray(ds.x_train, dt), jnp.asarray(ds.Y_train, dt)
        test = None
        if ds.x_test is not None:
            test = (jnp.asarray(ds.x_test, dt), jnp.asarray(ds.Y_test, dt))
        inits = [exp.init_params(model, jax.random.key(s), dt) for s, _ in grid]
        params0 = jax.tree.map(lambda *p: jnp.stack(p), *inits)
        model_forward = model.forward
        assert model_forward is not None
        forward = jax.jit(jax.vmap(lambda p, x: model_forward(p, x)[0], in_axes=(0, None)))
        full_loss = jax.jit(jax.vmap(model.loss, in_axes=(0, None, None)))
        chunk = max(1, steps // DRIFT_POINTS) if grad == "both" else 500
        start = time.perf_counter()
        results: dict[str, SweepResult] = {}
        runs: dict[str, list[dict]] = {}
        for source in sources:
            result = train_sweep(
                params0, x, Y, make, learning_rates=[lr for _, lr in grid],
                seeds=[s for s, _ in grid], model=model, grad_source=source, steps=steps,
                batch_size=batch_size, chunk_size=chunk, progress=progress,
                description=f"{exp.name} ({source}, {len(grid)} runs)", test_data=test,
                keep_params=grad == "both",
            )  # fmt: skip
            results[source] = result
            finals = np.asarray(full_loss(result.params, x, Y))
            out_train = (
                np.asarray(forward(result.params, x)) if exp.task == "classification" else None
            )
            out_test = (
                np.asarray(forward(result.params, test[0]))
                if test is not None and exp.task == "classification"
                else None
            )
            rows = []
            for i, (s, lr) in enumerate(grid):
                row: dict[str, Any] = {
                    "seed": s,
                    "lr": lr,
                    "final_loss": json_float(float(finals[i])),
                    "nonfinite_loss_step": result.diverged.get(i),
                }
                if result.test_losses is not None:
                    row["test_loss"] = json_float(float(result.test_losses[i, -1]))
                if out_train is not None:
                    row["final_train_accuracy"] = _accuracy(out_train[i], ds.Y_train)
                if out_test is not None:
                    row["test_accuracy"] = _accuracy(out_test[i], ds.Y_test)
                rows.append(row)
            runs[source] = rows
        wall = time.perf_counter() - start

    per_step = {
        source: {
            f"{lr:g}": _stats(results[source].losses[[i for i, g in enumerate(grid) if g[1] == lr]])
            for lr in lrs
        }
        for source in sources
    }
    summary = {source: {f"{lr:g}": _summary([r for r in runs[source] if r["lr"] == lr])
                        for lr in lrs} for source in sources}  # fmt: skip
    metrics: dict[str, Any] = {
        "experiment": exp.name,
        "model": model.name,
        "source": model.source,
        "task": exp.task,
        "grad": grad,
        "optimizer": optimizer,
        "lrs": lrs,
        "seeds": run_seeds,
        "runs_per_source": len(grid),
        "steps": steps,
        "batch_size": batch_size if batch_size is not None else n_train,
        "dtype": dtype,
        "n_train": n_train,
        "n_test": 0 if ds.x_test is None else int(ds.x_test.shape[0]),
        "wall_time_s": wall,
        "versions": library_versions(),
        "platform": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "diverged": {
            s: [
                {"seed": grid[i][0], "lr": grid[i][1], "step": t}
                for i, t in results[s].diverged.items()
            ]
            for s in sources
        },
        "summary": summary,
        "runs": runs,
        "per_step": per_step,
    }
    drift = None
    if grad == "both":
        manual, auto = results["manual"], results["auto"]
        assert manual.snapshots is not None and auto.snapshots is not None
        per_leaf = [
            _leaf_drift(m, a) for m, a in zip(manual.snapshots, auto.snapshots, strict=True)
        ]
        drift = {
            "steps": [int(t) for t in manual.log_steps],
            "leaves": {
                leaf: {
                    "median": [json_float(float(np.median(d[leaf]))) for d in per_leaf],
                    "max": [json_float(float(np.max(d[leaf]))) for d in per_leaf],
                }
                for leaf in per_leaf[0]
            },
        }
        metrics["drift"] = drift
    if out is not None:
        if plots:
            from jaxprop.experiments.plots import plot_drift, plot_loss_bands

            title = f"{exp.name}: {optimizer}, {len(run_seeds)} seeds, {dtype}"
            bands = {f"{s}, lr={lr:g}": results[s].losses[[i for i, g in enumerate(grid)
                                                             if g[1] == lr]]
                     for s in sources for lr in lrs}  # fmt: skip
            plot_loss_bands(out / "loss_bands.png", bands, title)
            if drift is not None:
                plot_drift(out / "drift.png", drift, f"{exp.name}: hand vs jax.grad, {dtype}")
        atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _accuracy(out, Y) -> float:
    return float(np.mean(np.argmax(np.asarray(out), -1) == np.argmax(np.asarray(Y), -1)))


def _summary(rows: list[dict]) -> dict[str, Any]:
    """Mean ± std over the seeds of each final figure (the diverged runs' NaNs left out)."""
    out: dict[str, Any] = {}
    for key in ("final_loss", "test_loss", "final_train_accuracy", "test_accuracy"):
        values = [r[key] for r in rows if key in r and isinstance(r[key], float)]
        if values:
            out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                        "n": len(values)}  # fmt: skip
    return out

"""The experiment driver: :func:`run_experiment` trains an experiment of the table and writes its
``metrics.json`` and figures.

With ``grad="both"`` the hand-derived and the automatic gradient train from the same initial
parameters, with the same optimizer and batch order, and the metrics say how far the two runs
drift apart. ``jaxprop train NAME`` is its command line.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import relative_difference
from jaxprop.experiments.data import Dataset
from jaxprop.experiments.plots import write_plots
from jaxprop.experiments.table import Experiment, get_experiment, make_optimizer
from jaxprop.training.loop import (
    ALL_GRAD_SOURCES,
    GRAD_SOURCES,
    data_mesh,
    max_relative_difference,
    train,
)
from jaxprop.training.options import check_seed
from jaxprop.util.files import atomic_write_json

__all__ = ["library_versions", "loss_curve_max_rel_diff", "run_experiment"]


def _accuracy(out, Y) -> float:
    return float(np.mean(np.argmax(np.asarray(out), -1) == np.argmax(np.asarray(Y), -1)))


def loss_curve_max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max_t |a_t − b_t| / |b_t|``: the largest relative difference between two loss curves."""
    # A diverged run's inf − inf is NaN, the honest answer.
    return float(np.max(relative_difference(a, b)))


def run_experiment(
    experiment: str | Experiment,
    *,
    grad: str = "both",
    optimizer: str | None = None,
    lr: float | None = None,
    steps: int | None = None,
    batch_size: int | str | None = "default",
    seed: int = 0,
    dtype: str = "float64",
    devices: int | None = None,
    out: str | os.PathLike | None = None,
    plots: bool = True,
    data: Dataset | None = None,
    progress: bool | None = None,
) -> dict:
    """Trains an experiment and returns its metrics (written to ``out/metrics.json`` if given).

    With ``grad="both"`` the hand-derived and the automatic gradient train from the same initial
    parameters with the same optimizer and batch order, and the metrics hold the largest relative
    difference between their loss curves (``loss_curve_max_rel_diff``, step by step) and between
    their final parameters (``param_max_rel_diff``, each leaf relative to its largest element).

    Args:
      experiment: a name in :data:`EXPERIMENTS` or an :class:`Experiment`.
      grad: ``"manual"``, ``"auto"``, ``"bridge"`` (jax.grad through the hand rule,
        :func:`jaxprop.custom_vjp`) or ``"both"`` (manual and auto).
      optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"``, overriding the experiment's default.
      lr: the learning rate, overriding the experiment's default.
      steps: optimizer steps, overriding the experiment's default.
      batch_size: examples per step, at most the number of training examples; ``None`` for the
        full batch; ``"default"``: the experiment's (the full batch if that is larger than
        ``data``).
      seed: the seed of the initial parameters and the batch order (the data are fixed), in
        0..2**32 − 1.
      dtype: ``"float64"`` or ``"float32"``.
      devices: run data-parallel over this many devices (``None``: the default device only).
      out: a directory for ``metrics.json``, ``loss_curve.png`` and the experiment's plot,
        created (and checked to be writable) before training.
      plots: write the PNGs (needs matplotlib).
      data: a data set to use instead of the experiment's (e.g. a small one in tests).
      progress: the progress bar (``None``: when stderr is a terminal).

    Returns:
      The metrics: ``losses`` (every step, of the first gradient source), ``final_loss`` (the
      training-set loss at the final parameters), with a test split ``test_loss`` (the test-set
      loss at the final parameters) and ``test_losses`` at the steps ``test_loss_steps`` (after
      every chunk of training), ``final_train_accuracy`` and ``test_accuracy`` for
      classification, ``wall_time_s``, per-source ``runs``, with ``grad="both"`` the two
      agreement figures, and for reproducing the run ``versions`` (Python, jaxprop, jax, jaxlib,
      optax, NumPy, scikit-learn: :func:`library_versions`), ``platform`` and ``device_kind``.
    """
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    sources = GRAD_SOURCES if grad == "both" else (grad,)
    if grad != "both" and grad not in ALL_GRAD_SOURCES:
        raise ValueError(f"grad must be one of {(*ALL_GRAD_SOURCES, 'both')}, got {grad!r}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    optimizer = optimizer or exp.optimizer
    lr = exp.lr if lr is None else lr
    steps = exp.steps if steps is None else steps
    default_batch = isinstance(batch_size, str) and batch_size == "default"
    batch_size = exp.batch_size if default_batch else batch_size
    opt = make_optimizer(optimizer, lr)
    seed = check_seed(seed)
    mesh = None if devices is None else data_mesh(devices)
    if out is not None:
        out = _output_dir(out)

    x64 = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
    with x64:
        dt = jnp.dtype(dtype)
        ds = data if data is not None else exp.data()
        n_train = ds.x_train.shape[0]
        batch_size = batch_of(exp, batch_size, default_batch, n_train)
        model = exp.model()
        x, Y = jnp.asarray(ds.x_train, dt), jnp.asarray(ds.Y_train, dt)
        params0 = exp.init_params(model, jax.random.key(seed), dt)
        model_forward = model.forward
        assert model_forward is not None  # a Model always has a forward pass
        forward = jax.jit(lambda p, x: model_forward(p, x)[0])
        full_loss = jax.jit(model.loss)
        test = None
        if ds.x_test is not None:
            test = (jnp.asarray(ds.x_test, dt), jnp.asarray(ds.Y_test, dt))
        start = time.perf_counter()
        runs, results = {}, {}
        for source in sources:
            result = train(params0, x, Y, opt, model=model, grad_source=source, steps=steps,
                           batch_size=batch_size, seed=seed, mesh=mesh, progress=progress,
                           description=f"{exp.name} ({source})", test_data=test)  # fmt: skip
            results[source] = result
            nonfinite = np.flatnonzero(~np.isfinite(result.losses))
            run = {
                "losses": [float(v) for v in result.losses],
                # The first step whose loss is NaN or infinite (the run diverged), else None.
                "nonfinite_loss_step": int(nonfinite[0]) if nonfinite.size else None,
                "final_loss": float(full_loss(result.params, x, Y)),
                "wall_time_s": result.wall_time_s,
            }
            if test is not None:
                assert result.test_losses is not None  # train took the test data
                # The model's loss on the held-out examples at the final parameters, and after
                # every chunk of training (the steps in test_loss_steps).
                run["test_loss"] = float(result.test_losses[-1])
                run["test_loss_steps"] = [int(t) for t in result.log_steps]
                run["test_losses"] = [float(v) for v in result.test_losses]
            if exp.task == "classification":
                run["final_train_accuracy"] = _accuracy(forward(result.params, x), Y)
                if test is not None:
                    run["test_accuracy"] = _accuracy(forward(result.params, test[0]), ds.Y_test)
            if exp.evaluate is not None:
                run.update(exp.evaluate(model, result.params, ds))
            runs[source] = run
        wall = time.perf_counter() - start

        primary = runs[sources[0]]
        metrics = {
            "experiment": exp.name,
            "description": exp.description,
            "model": model.name,
            "source": model.source,
            "task": exp.task,
            "grad": grad,
            "optimizer": optimizer,
            "lr": lr,
            "steps": steps,
            "batch_size": batch_size if batch_size is not None else n_train,
            "seed": seed,
            "dtype": dtype,
            "devices": 1 if mesh is None else int(mesh.devices.size),
            "n_train": n_train,
            "n_test": 0 if ds.x_test is None else int(ds.x_test.shape[0]),
            "wall_time_s": wall,
            # What a rerun needs besides the options above: the library versions and the device.
            "versions": library_versions(),
            "platform": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind,
        }
        metrics.update({k: v for k, v in primary.items() if k != "wall_time_s"})
        if grad == "both":
            metrics["loss_curve_max_rel_diff"] = loss_curve_max_rel_diff(
                results["manual"].losses, results["auto"].losses
            )
            metrics["param_max_rel_diff"] = max_relative_difference(
                results["manual"].params, results["auto"].params
            )
        metrics["runs"] = runs

        if out is not None:
            if plots:
                write_plots(exp, ds, results, out, forward, dt, metrics)
            atomic_write_json(out / "metrics.json", metrics)
    return metrics


def batch_of(exp: Experiment, batch_size, default_batch: bool, n_train: int) -> int | None:
    """The batch size a run takes: ``batch_size`` checked against the ``n_train`` training
    examples (the experiment's default on a smaller data set becomes the full batch)."""
    if batch_size is not None and batch_size > n_train:
        if not default_batch:
            raise ValueError(
                f"batch size {batch_size} is larger than the {n_train} training examples of "
                f"{exp.name}"
            )
        batch_size = n_train
    # "default" is resolved by the caller, and any other string fails the comparison above.
    assert not isinstance(batch_size, str)
    return batch_size


def library_versions() -> dict[str, str | None]:
    """The versions of Python, jaxprop and the libraries a run's numbers depend on (``None`` for
    one that is not installed): what ``metrics.json`` records under ``versions``."""
    import platform
    from importlib import metadata

    import jaxlib
    import optax

    try:
        sklearn: str | None = metadata.version("scikit-learn")  # the digits data
    except metadata.PackageNotFoundError:
        sklearn = None
    return {
        "python": platform.python_version(),
        "jaxprop": metadata.version("jaxprop"),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn,
    }


def _output_dir(out: str | os.PathLike) -> pathlib.Path:
    """``out`` as a directory that exists and is writable (created if need be), checked before
    training so that a bad path fails at once, not after the run."""
    if os.fspath(out) == "":
        raise ValueError("out is empty: expected a directory")
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the output directory {str(out)!r}: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"the output directory {str(out)!r} is not writable")
    return out

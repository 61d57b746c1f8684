"""Training experiments: each built-in model trained by optax on a data set, hand vs jax.grad.

An :class:`Experiment` is a small declarative record: a model factory and its sizes, a data set,
the task (classification or regression) and default optimizer, learning rate, steps and batch
size. :func:`run_experiment` trains it with the hand-derived gradient, with ``jax.grad``, or with
both from the same initial parameters and the same optimizer, and (given ``out``) writes
``metrics.json`` and the plots there. ``jaxprop train NAME`` is its command line.

The models of seeds 002 and 003 are imported inside their factories, so this package imports
without them.

>>> from jaxprop.experiments import experiment_names
>>> "moons" in experiment_names()
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprop.experiments import data as datasets
from jaxprop.experiments.data import Dataset
from jaxprop.model import Model
from jaxprop.models import seed000, seed001, seed002, seed002_calculus, seed003
from jaxprop.train import GRAD_SOURCES, check_seed, data_mesh, max_relative_difference, train

__all__ = [
    "EXPERIMENTS",
    "OPTIMIZERS",
    "Experiment",
    "experiment_names",
    "get_experiment",
    "make_optimizer",
    "run_experiment",
]

OPTIMIZERS = ("sgd", "momentum", "adam")
TASKS = ("classification", "regression")


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """``sgd``: plain gradient descent; ``momentum``: heavy-ball momentum 0.9; ``adam``: Adam.

    Raises:
      ValueError: for an unknown name or a learning rate that is not a positive finite number.
    """
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if name == "sgd":
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=0.9)
    if name == "adam":
        return optax.adam(lr)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One training experiment.

    Attributes:
      name: the name ``jaxprop train`` takes.
      description: one line for the docs.
      model: ``() -> Model``, the model factory.
      data: ``() -> Dataset``.
      task: ``"classification"`` (accuracy from the argmax of the output) or ``"regression"``.
      sizes: keyword arguments of ``model.init`` (besides the key and dtype).
      optimizer, lr, steps, batch_size: the defaults (``batch_size=None``: full batch).
      init: ``(model, key, dtype) -> params`` when ``model.init(key, **sizes, dtype=dtype)`` does
        not fit.
      plot: an extra figure: ``"decision_boundary"`` (2-D inputs, 2 classes) or ``"fit"`` (1-D
        regression).
      evaluate: ``(model, params, data) -> dict`` of extra metrics.
    """

    name: str
    description: str
    model: Callable[[], Model]
    data: Callable[[], Dataset]
    task: str
    sizes: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-2
    steps: int = 1000
    batch_size: int | None = None
    init: Callable | None = None
    plot: str | None = None
    evaluate: Callable | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")

    def init_params(self, model: Model, key, dtype):
        if self.init is not None:
            return self.init(model, key, dtype)
        return model.init(key, **self.sizes, dtype=dtype)


# --- the models ---------------------------------------------------------------------------------


def _tanh_softmax() -> Model:
    return seed001.tanh_softmax()


def _two_layer_mse() -> Model:
    return seed000.two_layer_mse(f="tanh", g="sigmoid")


def _k_layer() -> Model:
    return seed002.k_layer(activations=["tanh", "sigmoid"])


def _neuron_net() -> Model:
    return seed003.neuron_net(activations="sigmoid", backward="per-layer")


def _least_squares() -> Model:
    return seed002_calculus.least_squares()


def _zero_theta(model: Model, key, dtype):
    del model, key  # θ = 0: the run is the same for every seed with full-batch steps
    return {"theta": jnp.zeros((datasets.linear_regression().x_train.shape[1],), dtype)}


def _least_squares_report(model: Model, params, data: Dataset) -> dict:
    theta_star = jnp.asarray(data.extra["theta_star"], params["theta"].dtype)
    x, y = jnp.asarray(data.x_train, theta_star.dtype), jnp.asarray(data.Y_train, theta_star.dtype)
    theta = params["theta"]
    return {
        "theta_rel_error_vs_closed_form": float(
            jnp.linalg.norm(theta - theta_star) / jnp.linalg.norm(theta_star)
        ),
        "closed_form_loss": float(model.loss({"theta": theta_star}, x, y)),
    }


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            name="moons",
            description="seed 001's 2-500-2 tanh-softmax network on two noisy half-moons",
            model=_tanh_softmax,
            data=datasets.two_moons,
            task="classification",
            sizes={"n_in": 2, "n_hidden": 500, "n_out": 2},
            optimizer="adam",
            lr=1e-2,
            steps=2000,
            plot="decision_boundary",
        ),
        Experiment(
            name="regression",
            description="seed 000's two-layer network (tanh, sigmoid) fitting ½ + 0.4 sin x",
            model=_two_layer_mse,
            data=datasets.sine_regression,
            task="regression",
            sizes={"n_in": 1, "n_hidden": 32, "n_out": 1},
            optimizer="adam",
            # At lr 1e-2 Adam's loss spikes near the noise floor (from step ~1700) and amplify
            # the two sources' last-bit differences to ~1e-2; at 3e-3 it trains smoothly.
            lr=3e-3,
            steps=3000,
            plot="fit",
        ),
        Experiment(
            name="digits-softmax",
            description="seed 001's tanh-softmax network, 64-128-10, on the 8×8 digits",
            model=_tanh_softmax,
            data=datasets.digits,
            task="classification",
            sizes={"n_in": 64, "n_hidden": 128, "n_out": 10},
            optimizer="adam",
            lr=1e-3,
            steps=2000,
            batch_size=128,
        ),
        Experiment(
            name="digits-k-layer",
            description="seed 002's K-layer network, 64-64-10 (tanh, sigmoid), squared error",
            model=_k_layer,
            data=datasets.digits,
            task="classification",
            sizes={"sizes": (64, 64, 10)},
            optimizer="adam",
            lr=3e-3,
            steps=3000,
            batch_size=128,
        ),
        Experiment(
            name="digits-neuron",
            description="seed 003's neuron network, 64-32-10 sigmoid, no biases, batch MSE",
            model=_neuron_net,
            data=datasets.digits,
            task="classification",
            sizes={"sizes": (64, 32, 10)},
            optimizer="adam",
            lr=1e-2,
            steps=3000,
            batch_size=128,
        ),
        Experiment(
            name="least-squares",
            description="seed 002's least squares trained by optax vs the closed-form solution",
            model=_least_squares,
            data=datasets.linear_regression,
            task="regression",
            init=_zero_theta,
            optimizer="sgd",
            lr=0.1,
            steps=500,
            evaluate=_least_squares_report,
        ),
    ]
}


def experiment_names() -> list[str]:
    """The names of the built-in experiments."""
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
      ValueError: for an unknown name; the message lists the known ones.
    """
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(
            f"unknown experiment {name!r}; expected one of {experiment_names()}"
        ) from None


def _accuracy(out, Y) -> float:
    return float(np.mean(np.argmax(np.asarray(out), -1) == np.argmax(np.asarray(Y), -1)))


def loss_curve_max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max_t |a_t − b_t| / |b_t|``: the largest relative difference between two loss curves."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):  # a diverged run's inf − inf: NaN, the honest answer
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)))


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
      grad: ``"manual"``, ``"auto"`` or ``"both"``.
      optimizer, lr, steps: override the experiment's defaults.
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
      training-set loss at the final parameters), ``final_train_accuracy`` and
      ``test_accuracy`` for classification, ``wall_time_s``, per-source ``runs`` and, with
      ``grad="both"``, the two agreement figures.
    """
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    sources = GRAD_SOURCES if grad == "both" else (grad,)
    if grad != "both" and grad not in GRAD_SOURCES:
        raise ValueError(f"grad must be one of {(*GRAD_SOURCES, 'both')}, got {grad!r}")
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
        if batch_size is not None and batch_size > n_train:
            if not default_batch:
                raise ValueError(
                    f"batch size {batch_size} is larger than the {n_train} training examples of "
                    f"{exp.name}"
                )
            batch_size = n_train  # the experiment's default on a smaller data set: full batch
        model = exp.model()
        x, Y = jnp.asarray(ds.x_train, dt), jnp.asarray(ds.Y_train, dt)
        params0 = exp.init_params(model, jax.random.key(seed), dt)
        forward = jax.jit(lambda p, x: model.forward(p, x)[0])
        full_loss = jax.jit(model.loss)
        start = time.perf_counter()
        runs, results = {}, {}
        for source in sources:
            result = train(params0, x, Y, opt, model=model, grad_source=source, steps=steps,
                           batch_size=batch_size, seed=seed, mesh=mesh, progress=progress,
                           description=f"{exp.name} ({source})")  # fmt: skip
            results[source] = result
            nonfinite = np.flatnonzero(~np.isfinite(result.losses))
            run = {
                "losses": [float(v) for v in result.losses],
                # The first step whose loss is NaN or infinite (the run diverged), else None.
                "nonfinite_loss_step": int(nonfinite[0]) if nonfinite.size else None,
                "final_loss": float(full_loss(result.params, x, Y)),
                "wall_time_s": result.wall_time_s,
            }
            if exp.task == "classification":
                run["final_train_accuracy"] = _accuracy(forward(result.params, x), Y)
                if ds.x_test is not None:
                    out_test = forward(result.params, jnp.asarray(ds.x_test, dt))
                    run["test_accuracy"] = _accuracy(out_test, ds.Y_test)
            elif ds.x_test is not None:
                run["test_loss"] = float(
                    full_loss(result.params, jnp.asarray(ds.x_test, dt), jnp.asarray(ds.Y_test, dt))
                )
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
                _write_plots(exp, model, ds, results, out, forward, dt, metrics)
            from jaxprop.experiments.output import atomic_write_json

            atomic_write_json(out / "metrics.json", metrics)
    return metrics


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


def _write_plots(exp, model, ds, results, out, forward, dt, metrics) -> None:
    from jaxprop.experiments import output

    title = f"{exp.name}: {metrics['optimizer']} lr={metrics['lr']:g}, {metrics['dtype']}"
    output.plot_loss_curves(
        out / "loss_curve.png", {s: r.losses for s, r in results.items()}, title
    )
    params = next(iter(results.values())).params
    if exp.plot == "decision_boundary":

        def proba(points):
            logits = forward(params, jnp.asarray(points, dt))
            return jax.nn.softmax(logits, axis=-1)[:, 1]

        title = f"{exp.name}: training accuracy {metrics.get('final_train_accuracy', 0.0):.1%}"
        if "test_accuracy" in metrics:
            title += f", test accuracy {metrics['test_accuracy']:.1%}"
        output.plot_decision_boundary(
            out / "decision_boundary.png", proba, ds.x_train, np.argmax(ds.Y_train, -1), title
        )
    elif exp.plot == "fit":
        grid = jnp.asarray(ds.x_test, dt)
        preds = {s: np.asarray(forward(r.params, grid)) for s, r in results.items()}
        output.plot_fit(out / "fit.png", ds.x_train, ds.Y_train, ds.x_test, ds.Y_test, preds,
                        f"{exp.name}: final loss {metrics['final_loss']:.3g}")  # fmt: skip

"""The experiment table: :class:`Experiment`, the built-in :data:`EXPERIMENTS` and the optimizers.

An :class:`Experiment` is a small declarative record: a model factory and its sizes, a data set,
the task (classification or regression) and default optimizer, learning rate, steps and batch
size; :func:`jaxprop.experiments.run_experiment` trains one.

>>> from jaxprop.experiments.table import get_experiment
>>> exp = get_experiment("moons")
>>> exp.model().name, exp.sizes
('tanh-softmax', {'n_in': 2, 'n_hidden': 500, 'n_out': 2})
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import cast

import jax.numpy as jnp
import numpy as np
import optax

from jaxprop.experiments import data as datasets
from jaxprop.experiments.data import Dataset
from jaxprop.model.contract import Model
from jaxprop.registry import get_model
from jaxprop.util.names import did_you_mean

__all__ = [
    "EXPERIMENTS",
    "OPTIMIZERS",
    "TASKS",
    "Experiment",
    "experiment_names",
    "get_experiment",
    "make_optimizer",
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
      model: ``() -> Model``, the model factory (for a registered model,
        ``functools.partial(get_model, name)``).
      data: ``() -> Dataset``.
      task: ``"classification"`` (accuracy from the argmax of the output) or ``"regression"``.
      sizes: keyword arguments of ``model.init`` (besides the key and dtype).
      optimizer: the default optimizer (``"sgd"``, ``"momentum"`` or ``"adam"``).
      lr: the default learning rate.
      steps: the default number of optimizer steps.
      batch_size: the default batch size (``None``: full batch).
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
        """The initial parameters: ``init(model, key, dtype)`` if given, else ``model.init``."""
        if self.init is not None:
            return self.init(model, key, dtype)
        assert model.init is not None  # every experiment's model has an init
        return model.init(key, **self.sizes, dtype=dtype)


# --- the models ---------------------------------------------------------------------------------
# Each experiment takes its model from the registry by name, looked up when the experiment runs;
# digits-k-layer's tanh-then-sigmoid network is the registered "k-layer" built for those
# activations.


def _registered(name: str) -> Callable[[], Model]:
    # Every name given here is a network (a Model), not a self-checking Example.
    return cast(Callable[[], Model], functools.partial(get_model, name))


def _k_layer_tanh_sigmoid() -> Model:
    model = get_model("k-layer", activations=["tanh", "sigmoid"])
    assert isinstance(model, Model)  # a factory builds a Model
    return model


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
            model=_registered("tanh-softmax"),
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
            model=_registered("two-layer-mse"),
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
            model=_registered("tanh-softmax"),
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
            model=_k_layer_tanh_sigmoid,
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
            model=_registered("neuron-delta-per-layer"),
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
            model=_registered("least-squares"),
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
            f"unknown experiment {name!r}{did_you_mean(name, EXPERIMENTS)}; expected one of "
            f"{experiment_names()}"
        ) from None

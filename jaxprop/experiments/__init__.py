"""Training experiments: each built-in model trained by optax on a data set, hand vs jax.grad.

The package is split by what each part does:

- :mod:`jaxprop.experiments.table`: :class:`Experiment` (a model from the registry, its sizes, a
  data set, the task and the default optimizer, learning rate, steps and batch size), the built-in
  :data:`EXPERIMENTS`, :func:`get_experiment`, :func:`experiment_names` and
  :func:`make_optimizer`;
- :mod:`jaxprop.experiments.driver`: :func:`run_experiment`, which trains an experiment with the
  hand-derived gradient, with ``jax.grad``, or with both from the same initial parameters and the
  same optimizer, and (given ``out``) writes ``metrics.json`` and the plots there;
- :mod:`jaxprop.experiments.plots`: the figures;
- :mod:`jaxprop.experiments.data`: the data sets.

``jaxprop train NAME`` is the command line of :func:`run_experiment`. Every name below is
importable from this package.

>>> from jaxprop.experiments import experiment_names
>>> "moons" in experiment_names()
True

May import: ``training``, ``registry``, ``models``, ``check``, ``model``, ``nn``, ``util``.
"""

from __future__ import annotations

from jaxprop.experiments.data import Dataset
from jaxprop.experiments.driver import loss_curve_max_rel_diff, run_experiment
from jaxprop.experiments.table import (
    EXPERIMENTS,
    OPTIMIZERS,
    TASKS,
    Experiment,
    experiment_names,
    get_experiment,
    make_optimizer,
)

__all__ = [
    "EXPERIMENTS",
    "OPTIMIZERS",
    "TASKS",
    "Dataset",
    "Experiment",
    "experiment_names",
    "get_experiment",
    "loss_curve_max_rel_diff",
    "make_optimizer",
    "run_experiment",
]

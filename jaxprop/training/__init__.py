"""Training through optax with any gradient source: the loop (:mod:`.loop`: ``train``, jitted
``lax.scan`` chunks, data-parallel over a device mesh), many runs in one program (:mod:`.sweep`:
``train_sweep``) and training over several processes (:mod:`.distributed`, imported on demand).

May import: ``check``, ``model``, ``nn``, ``util``.
"""

from jaxprop.training.loop import (
    ALL_GRAD_SOURCES,
    BATCH_AXIS,
    GRAD_SOURCES,
    TrainResult,
    data_mesh,
    make_value_and_grad,
    max_relative_difference,
    train,
)
from jaxprop.training.options import CallbackError, GradientError, check_seed
from jaxprop.training.sweep import SweepResult, train_sweep

__all__ = [
    "ALL_GRAD_SOURCES",
    "BATCH_AXIS",
    "GRAD_SOURCES",
    "CallbackError",
    "GradientError",
    "SweepResult",
    "TrainResult",
    "check_seed",
    "data_mesh",
    "make_value_and_grad",
    "max_relative_difference",
    "train",
    "train_sweep",
]

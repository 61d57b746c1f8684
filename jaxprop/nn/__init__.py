"""The building blocks a network is written from, each beside its hand derivative, in the way
micrograd writes the local derivative beside the operation: the activations (:mod:`.activations`,
with the derivative mistakes the diagnosis recognises) and the losses (:mod:`.losses`).

May import: ``util``.
"""

from jaxprop.nn.activations import ACTIVATIONS, Activation, Mistake, get_activation
from jaxprop.nn.losses import LOSSES, Loss, log_softmax

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "Activation",
    "Loss",
    "Mistake",
    "get_activation",
    "log_softmax",
]

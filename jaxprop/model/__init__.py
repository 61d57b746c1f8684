"""The passive contract: what a model is, stated once as typed Protocols (:mod:`.contract`: the
:class:`~jaxprop.Model` of ``init``, ``forward``, ``objective``, ``backward``, ``sample`` and
``nodes``; ``tap``; ``random_point``), the :class:`~jaxprop.Example` a worked example that is not
a network fills in (:mod:`.example`), and the argument checks a model's functions run
(:mod:`.validate`). It knows nothing of the checker, which dispatches on :class:`Entry`.

May import: ``nn``, ``util``.
"""

from jaxprop.model.contract import (
    BackwardFn,
    CheckLabelsFn,
    Entry,
    ForwardFn,
    InitFn,
    Model,
    NodesFn,
    SampleFn,
    SelfChecking,
    random_point,
    tap,
)
from jaxprop.model.example import Example, RunFn
from jaxprop.model.validate import (
    check_batch_size,
    check_input,
    check_param_shapes,
    check_same_shape,
    check_sizes,
)

__all__ = [
    "BackwardFn",
    "CheckLabelsFn",
    "Entry",
    "Example",
    "ForwardFn",
    "InitFn",
    "Model",
    "NodesFn",
    "RunFn",
    "SampleFn",
    "SelfChecking",
    "check_batch_size",
    "check_input",
    "check_param_shapes",
    "check_same_shape",
    "check_sizes",
    "random_point",
    "tap",
]

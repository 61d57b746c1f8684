"""jaxprop: hand-derived backpropagation in JAX, verified against ``jax.grad``.

Every built-in model pairs a pure forward pass over a parameter pytree with a backward pass
derived by hand from a source document's chain-rule formulas; :func:`check_grads` verifies any
hand-written gradient, the built-in ones or a user's, leaf by leaf, and :func:`check_nodes` names
the step of a hand backward pass that goes wrong. :func:`train` trains parameters through optax
with any gradient source (``jaxprop.training``).
"""

from jaxprop.activations import ACTIVATIONS, Activation, get_activation
from jaxprop.bridge import custom_vjp
from jaxprop.check import GradReport, LeafReport, check_grads, check_jacobian
from jaxprop.core import (
    Comparison,
    GradientCheckError,
    Report,
    compare,
    default_tolerances,
    reference_scale,
)
from jaxprop.example import Example
from jaxprop.exercise import GradeReport, NodeGrade, exercise_source, grade, write_exercise
from jaxprop.losses import LOSSES, Loss
from jaxprop.model import Entry, Model, random_point, tap
from jaxprop.models import REGISTRY, get_model, model_names, register
from jaxprop.nodes import ModelReport, NodeReport, NodeResult, check_nodes, true_adjoints
from jaxprop.rules import RuleRecord, RuleReport, check_rule
from jaxprop.training import SweepResult, TrainResult, data_mesh, train, train_sweep
from jaxprop.verify import verify_entry, verify_model

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "REGISTRY",
    "Activation",
    "Comparison",
    "Entry",
    "Example",
    "GradReport",
    "GradeReport",
    "GradientCheckError",
    "LeafReport",
    "Loss",
    "Model",
    "ModelReport",
    "NodeGrade",
    "NodeReport",
    "NodeResult",
    "Report",
    "RuleRecord",
    "RuleReport",
    "SweepResult",
    "TrainResult",
    "__version__",
    "check_grads",
    "check_jacobian",
    "check_nodes",
    "check_rule",
    "compare",
    "custom_vjp",
    "data_mesh",
    "default_tolerances",
    "exercise_source",
    "get_activation",
    "get_model",
    "grade",
    "model_names",
    "random_point",
    "reference_scale",
    "register",
    "tap",
    "train",
    "train_sweep",
    "true_adjoints",
    "verify_entry",
    "verify_model",
    "write_exercise",
]

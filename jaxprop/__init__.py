"""jaxprop: hand-derived backpropagation in JAX, verified against ``jax.grad``.

Every built-in model pairs a pure forward pass over a parameter pytree with a backward pass
derived by hand from a source document's chain-rule formulas; :func:`check_grads` verifies any
hand-written gradient, the built-in ones or a user's, leaf by leaf, and :func:`check_nodes` names
the step of a hand backward pass that goes wrong. :func:`train` trains parameters through optax
with any gradient source (``jaxprop.training``).
"""

from jaxprop.check.bridge import custom_vjp
from jaxprop.check.compare import Comparison, compare
from jaxprop.check.grad_report import GradReport, LeafReport
from jaxprop.check.grads import check_grads
from jaxprop.check.jacobian import check_jacobian
from jaxprop.check.nodes import ModelReport, NodeReport, NodeResult, check_nodes, true_adjoints
from jaxprop.check.report import GradientCheckError, Report
from jaxprop.check.rule_report import RuleRecord, RuleReport
from jaxprop.check.rules import check_rule
from jaxprop.check.tolerance import default_tolerances, reference_scale
from jaxprop.check.verify import verify_entry, verify_model
from jaxprop.model.contract import Entry, Model, random_point, tap
from jaxprop.model.example import Example
from jaxprop.nn.activations import ACTIVATIONS, Activation, get_activation
from jaxprop.nn.losses import LOSSES, Loss
from jaxprop.registry import REGISTRY, get_model, model_names, register
from jaxprop.teach.exercise import exercise_source, write_exercise
from jaxprop.teach.report import GradeReport, NodeGrade
from jaxprop.teach.sandbox import grade
from jaxprop.training.loop import TrainResult, data_mesh, train
from jaxprop.training.sweep import SweepResult, train_sweep

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

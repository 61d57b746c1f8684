"""The checker: everything that compares a hand-derived derivative with a reference.

- The verification core, one policy in one place: the tolerances and the scale rule
  (:mod:`.tolerance`), the one comparison (:mod:`.compare`), the one report base
  (:mod:`.report`), the pytree helpers (:mod:`.trees`) and the finite-difference reference that
  knows its error (:mod:`.fd`).
- The checks built on it: gradients (:mod:`.grads`, its report :mod:`.grad_report`, its finite
  differences :mod:`.grad_fd`), Jacobians (:mod:`.jacobian`), the node-by-node check
  (:mod:`.nodes`, over the traced forward program of :mod:`.program`), ``custom_vjp`` /
  ``custom_jvp`` rules (:mod:`.rules`, its checks :mod:`.rule_checks`, :mod:`.rule_transforms`
  and :mod:`.rule_intended`, its options :mod:`.rule_options`, :mod:`.rule_report`), complex
  leaves (:mod:`.complex`), a user's exception told from jaxprop's (:mod:`.user_code`), the
  diagnosis of a mistake (:mod:`.diagnosis`), a model wrapped as a ``custom_vjp``
  (:mod:`.bridge`) and the dispatch on a registry entry (:mod:`.verify`).

The checker knows nothing of the built-in models. May import: ``model``, ``nn``, ``util``.
"""

from jaxprop.check import fd
from jaxprop.check.bridge import custom_vjp
from jaxprop.check.compare import Comparison, compare, judge
from jaxprop.check.diagnosis import KINDS, Diagnosis, diagnose
from jaxprop.check.grad_report import GradReport, LeafReport, format_table, leaf_status
from jaxprop.check.grads import check_grads
from jaxprop.check.jacobian import check_jacobian
from jaxprop.check.nodes import ModelReport, NodeReport, NodeResult, check_nodes, true_adjoints
from jaxprop.check.report import GradientCheckError, Record, Report, format_rows
from jaxprop.check.rule_report import RuleRecord, RuleReport
from jaxprop.check.rules import check_rule
from jaxprop.check.tolerance import default_tolerances, precision, reference_scale, sensitivity
from jaxprop.check.trees import leaf_path
from jaxprop.check.verify import verify_entry, verify_model

__all__ = [
    "KINDS",
    "Comparison",
    "Diagnosis",
    "GradReport",
    "GradientCheckError",
    "LeafReport",
    "ModelReport",
    "NodeReport",
    "NodeResult",
    "Record",
    "Report",
    "RuleRecord",
    "RuleReport",
    "check_grads",
    "check_jacobian",
    "check_nodes",
    "check_rule",
    "compare",
    "custom_vjp",
    "default_tolerances",
    "diagnose",
    "fd",
    "format_rows",
    "format_table",
    "judge",
    "leaf_path",
    "leaf_status",
    "precision",
    "reference_scale",
    "sensitivity",
    "true_adjoints",
    "verify_entry",
    "verify_model",
]

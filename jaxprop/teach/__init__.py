"""Teaching: exercises generated from the built-in models' source and their grading.

- Exercise generation (:mod:`.exercise`), from the plan of which statements become blanks
  (:mod:`.plan`, reading the source through :mod:`.source`); what an assignment is
  (:mod:`.assignment`: the models that have one, ``TODO``, the fixed point).
- Grading (:mod:`.grade`, in this process), in a sandboxed child process with a time limit
  (:mod:`.sandbox`), and the grade's report (:mod:`.report`).

May import: ``registry``, ``models``, ``check``, ``model``, ``nn``, ``util``.
"""

from jaxprop.teach.assignment import TODO, exercise_models
from jaxprop.teach.exercise import exercise_source, write_exercise
from jaxprop.teach.grade import grade_in_process
from jaxprop.teach.report import GradeReport, NodeGrade
from jaxprop.teach.sandbox import grade

__all__ = [
    "TODO",
    "GradeReport",
    "NodeGrade",
    "exercise_models",
    "exercise_source",
    "grade",
    "grade_in_process",
    "write_exercise",
]

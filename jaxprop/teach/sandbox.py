"""``grade``: a submission graded in a child process with a time limit, so that one that hangs,
raises or kills its interpreter is graded with a one-line reason.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from jaxprop.teach.assignment import _get_model, exercise_models
from jaxprop.teach.grade import _setup, _short, grade_in_process
from jaxprop.teach.report import GradeReport

__all__ = ["DEFAULT_TIMEOUT", "grade"]

#: The default time limit of a grading, in seconds.
DEFAULT_TIMEOUT = 60.0


def grade(
    path: str | os.PathLike,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    model: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> GradeReport:
    """Grades a submission: the exercise file of :func:`exercise_source`, filled in, or a file
    with ``MODEL = "..."`` and a plain ``forward(params, x)`` (no ``taps``) and ``backward`` of
    its own, written from scratch (graded with its forward pass, which must compute the built-in
    output; see the module's docstring).

    The grading runs in a subprocess (``python -c``, JAX on the CPU unless ``JAX_PLATFORMS`` is
    set) that is killed after ``timeout`` seconds, so a submission that loops forever or crashes
    the interpreter gets a report that says so. The subprocess is for robustness, not security:
    the submission's code runs with the grader's rights (sandbox untrusted code yourself).

    Args:
      path: the submission's file.
      timeout: the time limit in seconds; ``None`` grades in this process, without one
        (:func:`grade_in_process`).
      model: the model the assignment is for; the file's ``MODEL`` must name it and its
        ``CONFIG`` must be ``config`` (otherwise a submission could switch to an easier model).
        By default the file's ``MODEL`` and ``CONFIG`` decide.
      config: the assignment's configuration of ``model`` (default: none).

    Returns:
      A :class:`GradeReport`: score, a verdict per node, the diagnosis, or why nothing could be
      checked. Never raises for a bad submission.

    Raises:
      FileNotFoundError: if ``path`` is not a file.
      ValueError: for a ``model`` that has no exercise, or a ``timeout`` that is not positive.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no file {path}")
    if model is not None and model not in exercise_models():
        _get_model(model, {})  # raises, listing the exercises
    if config is not None and model is None:
        raise ValueError("config= pins the assignment's configuration; give model= too")
    if timeout is None:
        return grade_in_process(path, model=model, config=config)
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    with tempfile.TemporaryDirectory(prefix="jaxprop-grade-") as tmp:
        result = os.path.join(tmp, "report.json")
        stderr_path = os.path.join(tmp, "stderr")
        env = dict(os.environ)
        env.setdefault("JAX_PLATFORMS", "cpu")  # tiny problems; no GPU memory grabbed per grading
        # The child imports this very jaxprop, and not from the working directory: a file there
        # named like a module (json.py, a student's signal.py) would shadow it.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        command = [
            sys.executable, "-c",
            "import sys; sys.path[0] = sys.argv[1]; from jaxprop.teach.sandbox import _child; "
            "sys.exit(_child(sys.argv[2:]))",
            root, path, result, json.dumps({"model": model, "config": config}),
        ]  # fmt: skip
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=env, start_new_session=os.name == "posix",
            )  # fmt: skip
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                setup = _setup(path, model, config)
                if setup.error is not None:
                    return setup.report("error", setup.error, _short(setup.error))
                error = (
                    f"timed out after {timeout:g} s: the submission did not finish (an infinite "
                    "loop, or a step that never ends?)"
                )
                return setup.report("timeout", error, "timed out")
        if os.path.exists(result):
            with open(result, encoding="utf-8") as fh:
                return GradeReport.from_dict(json.load(fh))
        with open(stderr_path, encoding="utf-8", errors="replace") as fh:
            tail = [line for line in fh.read().splitlines() if line.strip()]
    code = proc.returncode
    how = (
        f"killed by signal {signal.Signals(-code).name}"
        if code < 0 and -code in signal.Signals._value2member_map_
        else f"exit status {code}"
    )
    setup = _setup(path, model, config)
    error = f"the grading process died ({how}) before it could report" + (
        f": {tail[-1][:300]}" if tail else ""
    )
    return setup.report("error", error, "the grading process died")


def _kill(proc: subprocess.Popen) -> None:
    """Kills the process and its process group (anything the submission started)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _child(argv: Sequence[str]) -> int:
    """The grading subprocess: grades ``argv[0]`` and writes the report's JSON to ``argv[1]``."""
    path, out, pinned = argv
    report = grade_in_process(path, **json.loads(pinned), jit=True)
    from jaxprop.util.files import atomic_write_json

    atomic_write_json(out, report.to_dict())
    return 0

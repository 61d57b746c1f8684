"""Telling a user's exception from jaxprop's own: a user's bug is a verdict, jaxprop's is raised.

A function a checker runs (a hand gradient, a hand backward pass, a model's forward pass) may
raise. Where the traceback passes through a frame of the user's own code (a file outside jaxprop,
JAX, NumPy and the standard library), the exception is the user's: the checker reports it as a
failed row naming its type, its first line and that frame (``file:line``). Where it does not,
the exception is jaxprop's own (or a library's, called by jaxprop) and is raised, not hidden.

>>> def grad_fn(w):
...     return 1 / 0
>>> try:
...     grad_fn(1.0)
... except ZeroDivisionError as e:
...     print(user_error(e, "grad_fn"))
grad_fn raised ZeroDivisionError: division by zero (<doctest jaxprop.check.user_code[0]>:2)
"""

from __future__ import annotations

import pathlib
import sysconfig
import traceback

__all__ = ["user_error", "user_frame"]

_PACKAGE = pathlib.Path(__file__).resolve().parent.parent
_LIBRARIES = tuple(
    str(pathlib.Path(p).resolve())
    for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<") and not filename.startswith("<frozen"):
        return True  # a doctest, a string compiled by the user, the interactive prompt
    try:
        path = pathlib.Path(filename).resolve()
    except (OSError, ValueError):
        return False
    if path.is_relative_to(_PACKAGE):
        return False
    return not str(path).startswith(_LIBRARIES)


def user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame of the user's own code in ``exc``'s traceback (the
    file relative to the working directory where it lies below it), or ``None`` where the
    traceback passes through none."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if _is_user_file(frame.filename):
            name = frame.filename
            try:
                name = str(pathlib.Path(name).resolve().relative_to(pathlib.Path.cwd()))
            except ValueError:
                pass
            return f"{name}:{frame.lineno}"
    return None


def user_error(exc: BaseException, what: str) -> str | None:
    """``"grad_fn raised ZeroDivisionError: division by zero (my_model.py:12)"`` for an
    exception of the user's own code, ``None`` for one that is not (to be raised)."""
    where = user_frame(exc)
    if where is None:
        return None
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{what} raised {type(exc).__name__}: {first} ({where})"[:400]

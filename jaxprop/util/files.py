"""Atomic file output and figure saving, shared by ``jaxprop bench`` and ``jaxprop train``.

Every file is written to a temporary file in the same directory and moved into place with
:func:`os.replace`, so an interrupted run leaves either the old file or the new one, never half
of one. matplotlib is an optional extra: :func:`pyplot` imports it only when called, with the Agg
backend.

>>> import json, pathlib, tempfile
>>> from jaxprop.util.files import atomic_write_json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.json"
>>> atomic_write_json(path, {"final_loss": 0.5, "diverged": float("nan")})
>>> json.loads(path.read_text())
{'final_loss': 0.5, 'diverged': None}
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import tempfile

__all__ = ["atomic_write_bytes", "atomic_write_json", "pyplot", "save_figure"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same directory.

    The parent directory is created if need be, and the new file gets the mode a plain new file
    would get (0666 less the umask).

    Args:
      path: the file to write (replaced if it exists).
      data: its new contents.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it a new file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, payload) -> None:
    """Writes ``payload`` as indented standard JSON, atomically.

    A NaN or infinite float (a diverged run) is written as ``null``, since JSON has no such
    numbers and most readers reject the ``NaN``/``Infinity`` that :func:`json.dumps` would write.

    Args:
      path: the file to write.
      payload: JSON-ready data (dicts, lists, tuples, strings, numbers, None).
    """
    text = json.dumps(_finite_or_none(payload), indent=1, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def _finite_or_none(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend, imported on first use.

    Raises:
      ImportError: when matplotlib (the ``experiments`` extra) is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> None:
    """Writes a matplotlib figure to ``path`` as a PNG (90 dpi), atomically, and closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())

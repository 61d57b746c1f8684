"""Atomic file output and the experiments' plots (matplotlib, imported lazily, Agg backend).

Every file is written to a temporary file in the same directory and moved into place with
:func:`os.replace`, so an interrupted run leaves either the old file or the new one, never half
of one.

>>> import json, pathlib, tempfile
>>> from jaxprop.experiments.output import atomic_write_json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.json"
>>> atomic_write_json(path, {"final_loss": 0.5})
>>> json.loads(path.read_text())
{'final_loss': 0.5}
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import tempfile

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "plot_decision_boundary",
    "plot_fit",
    "plot_loss_curves",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same directory."""
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
    """Writes ``payload`` as indented standard JSON, atomically; a NaN or infinite float (a
    diverged run) is written as ``null``, since JSON has no such numbers and most readers reject
    the ``NaN``/``Infinity`` that :func:`json.dumps` would write."""
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_loss_curves(path, curves: dict[str, np.ndarray], title: str) -> None:
    """Loss against step for every gradient source on one axes (log scale); with two curves, a
    second panel shows their relative difference at every step.

    Args:
      path: the PNG to write.
      curves: e.g. ``{"manual": losses, "auto": losses}``, each of shape (steps,).
      title: the figure title.
    """
    plt = pyplot()
    both = len(curves) == 2
    fig, axes = plt.subplots(
        2 if both else 1,
        1,
        figsize=(6.4, 5.2 if both else 3.8),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.3]} if both else None,
    )
    ax = axes[0, 0]
    styles = {"manual": {"lw": 2.2, "alpha": 0.6}, "auto": {"lw": 1.0, "ls": "--"}}
    for source, losses in curves.items():
        steps = np.arange(1, len(losses) + 1)
        ax.plot(steps, losses, label=f"{source} gradient", **styles.get(source, {}))
    ax.set_yscale("log")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    if both:
        (a, la), (b, lb) = curves.items()
        with np.errstate(invalid="ignore", over="ignore"):  # a diverged run's inf − inf
            rel = np.abs(np.asarray(la) - np.asarray(lb)) / np.maximum(np.abs(lb), 1e-300)
        ax2 = axes[1, 0]
        ax2.plot(np.arange(1, len(rel) + 1), np.maximum(rel, 1e-18), color="C3", lw=0.8)
        ax2.set_yscale("log")
        ax2.set_ylabel(f"|{a} − {b}| / |{b}|", fontsize=8)
        ax2.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    save_figure(fig, path)


def plot_decision_boundary(path, predict_proba, x: np.ndarray, labels: np.ndarray, title: str):
    """The probability of class 1 over the plane, the 0.5 contour and the training points.

    Args:
      path: the PNG to write.
      predict_proba: ``(points (M, 2)) -> probability of class 1, shape (M,)``.
      x: the points, shape (N, 2).
      labels: their classes, shape (N,).
      title: the figure title.
    """
    plt = pyplot()
    pad = 0.5
    lo, hi = x.min(axis=0) - pad, x.max(axis=0) + pad
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1)
    p = np.asarray(predict_proba(grid)).reshape(g0.shape)
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    filled = ax.contourf(g0, g1, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
    ax.contour(g0, g1, p, levels=[0.5], colors="k", linewidths=1.2)
    for c, marker in ((0, "o"), (1, "s")):
        pts = x[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=10, marker=marker, edgecolors="k", linewidths=0.3,
                   color="C0" if c == 0 else "C3", label=f"class {c}")  # fmt: skip
    fig.colorbar(filled, ax=ax, label="P(class 1)")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_fit(path, x_train, y_train, x_grid, y_grid, predictions: dict[str, np.ndarray], title):
    """A 1-D regression: training points, the noiseless target and each source's prediction."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.scatter(x_train[:, 0], y_train[:, 0], s=8, color="0.6", label="training data")
    ax.plot(x_grid[:, 0], y_grid[:, 0], color="k", lw=1.0, label="target")
    styles = {"manual": {"lw": 2.2, "alpha": 0.6}, "auto": {"lw": 1.0, "ls": "--"}}
    for source, pred in predictions.items():
        ax.plot(x_grid[:, 0], np.asarray(pred)[:, 0], label=f"fit, {source} gradient",
                **styles.get(source, {}))  # fmt: skip
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)

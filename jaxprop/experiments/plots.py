"""The experiments' figures: loss curves, a decision boundary, a 1-D fit (matplotlib, imported
lazily through :func:`jaxprop.util.files.pyplot`, Agg backend; every PNG is written atomically)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import relative_difference
from jaxprop.util.files import pyplot, save_figure

__all__ = [
    "plot_decision_boundary",
    "plot_drift",
    "plot_fit",
    "plot_loss_bands",
    "plot_loss_curves",
    "write_plots",
]


def plot_loss_curves(path, curves: dict[str, np.ndarray], title: str) -> None:
    """Loss against step for every gradient source on one axes (log scale); with two curves, a
    second panel shows their relative difference at every step.

    A diverging run stays in view: the y-axis spans every finite loss (7.3 to 1e304 alike), the
    last finite loss before the first NaN or infinite one is marked with an ×, and a dotted
    line stands at the step where the loss stops being finite. Step t is ``losses[t]``, as in
    ``metrics.json``.

    Args:
      path: the PNG to write.
      curves: e.g. ``{"manual": losses, "auto": losses}``, each of shape (steps,).
      title: the figure title.
    """
    # Log-scale limits and ticks near 1e308 overflow inside matplotlib, harmlessly.
    with np.errstate(over="ignore"):
        fig = _loss_figure(curves, title)
        save_figure(fig, path)


def _loss_figure(curves: dict[str, np.ndarray], title: str):
    plt = pyplot()
    from matplotlib.ticker import FixedLocator, NullLocator

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
    styles: dict[str, dict[str, Any]] = {
        "manual": {"lw": 2.2, "alpha": 0.6},
        "auto": {"lw": 1.0, "ls": "--"},
    }
    shown = []  # the finite, positive losses: the y-range
    breaks: dict[tuple[int, int], list[tuple[str, str]]] = {}  # (last finite, first not) -> runs
    for source, losses in curves.items():
        losses = np.asarray(losses, np.float64)
        steps = np.arange(len(losses))
        finite = np.isfinite(losses)
        (line,) = ax.plot(steps, np.where(finite, losses, np.nan), label=f"{source} gradient",
                          **styles.get(source, {}))  # fmt: skip
        shown.append(losses[finite & (losses > 0)])
        if not finite.all():
            first = int(np.argmin(finite))
            breaks.setdefault((first - 1, first), []).append((source, line.get_color()))
    for (last, first), runs in breaks.items():
        names = " and ".join(source for source, _ in runs)
        color = runs[0][1]
        ax.axvline(first, color=color, ls=":", lw=1.0)
        what = f"NaN or infinite from step {first}"
        if last >= 0:
            value = float(np.asarray(curves[runs[0][0]], np.float64)[last])
            ax.plot([last], [value], "X", color=color, ms=9, mec="k", mew=0.6,
                    label=f"last finite loss, {value:.3g} at step {last}")  # fmt: skip
            what = f"last finite loss {value:.3g} at step {last}, {what}"
        ax.annotate(f"{names}: {what}", xy=(0.02, 0.03 + 0.07 * len(ax.texts)),
                    xycoords="axes fraction", fontsize=8, color=color)  # fmt: skip
    ax.set_yscale("log")
    values = np.concatenate(shown)
    if values.size:
        # Set, not autoscaled: with infinite values in a curve matplotlib's autoscaling can leave
        # the axis at [1, 10] and the blow-up out of view. The top at most 1e308.
        lo, hi = np.log10(values.min()), np.log10(values.max())
        pad = max(0.05 * (hi - lo), 0.1)
        bottom, top = lo - pad, min(hi + pad, 308.0)
        ax.set_ylim(10.0**bottom, 10.0**top)
        if hi - lo >= 10 or top > 290:
            # Over many decades, decade ticks at a round stride; matplotlib's own log locator
            # would also place ticks a stride above the top, infinite beyond 1e308.
            stride = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100) if s * 6 >= top - bottom)
            ks = range(math.ceil(bottom / stride) * stride, math.floor(top) + 1, stride)
            ax.yaxis.set_major_locator(FixedLocator([10.0**k for k in ks]))
            ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if both:
        (a, la), (b, lb) = curves.items()
        rel = relative_difference(la, lb)  # a diverged run's inf − inf: NaN
        ax2 = axes[1, 0]
        ax2.plot(np.arange(len(rel)), np.maximum(rel, 1e-18), color="C3", lw=0.8)
        ax2.set_yscale("log")
        ax2.set_ylabel(f"|{a} − {b}| / |{b}|", fontsize=8)
        ax2.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    return fig


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
    styles: dict[str, dict[str, Any]] = {
        "manual": {"lw": 2.2, "alpha": 0.6},
        "auto": {"lw": 1.0, "ls": "--"},
    }
    for source, pred in predictions.items():
        ax.plot(x_grid[:, 0], np.asarray(pred)[:, 0], label=f"fit, {source} gradient",
                **styles.get(source, {}))  # fmt: skip
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write_plots(exp, ds, results, out, forward, dt, metrics) -> None:
    """Writes ``loss_curve.png`` and the experiment's own figure (``exp.plot``) to ``out``.

    Args:
      exp: the :class:`~jaxprop.experiments.table.Experiment`.
      ds: the data set it trained on.
      results: per gradient source, the :class:`~jaxprop.training.TrainResult`.
      out: the output directory (a :class:`pathlib.Path`).
      forward: ``(params, x) -> output``, jitted.
      dt: the dtype of the run.
      metrics: the run's metrics (optimizer, lr, dtype and the final figures go in the titles).
    """
    title = f"{exp.name}: {metrics['optimizer']} lr={metrics['lr']:g}, {metrics['dtype']}"
    plot_loss_curves(out / "loss_curve.png", {s: r.losses for s, r in results.items()}, title)
    params = next(iter(results.values())).params
    if exp.plot == "decision_boundary":

        def proba(points):
            logits = forward(params, jnp.asarray(points, dt))
            return jax.nn.softmax(logits, axis=-1)[:, 1]

        title = f"{exp.name}: training accuracy {metrics.get('final_train_accuracy', 0.0):.1%}"
        if "test_accuracy" in metrics:
            title += f", test accuracy {metrics['test_accuracy']:.1%}"
        plot_decision_boundary(
            out / "decision_boundary.png", proba, ds.x_train, np.argmax(ds.Y_train, -1), title
        )
    elif exp.plot == "fit":
        grid = jnp.asarray(ds.x_test, dt)
        preds = {s: np.asarray(forward(r.params, grid)) for s, r in results.items()}
        plot_fit(out / "fit.png", ds.x_train, ds.Y_train, ds.x_test, ds.Y_test, preds,
                 f"{exp.name}: final loss {metrics['final_loss']:.3g}")  # fmt: skip


def plot_loss_bands(path, bands: dict[str, np.ndarray], title: str) -> None:
    """Per group of runs (a gradient source at a learning rate), the median loss over the runs
    at every step and the band from the smallest to the largest (log scale; a diverged run's
    non-finite losses are left out of the band at those steps).

    Args:
      path: the PNG to write.
      bands: label -> losses of shape (runs, steps).
      title: the figure title.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, losses) in enumerate(bands.items()):
        losses = np.asarray(losses, np.float64)
        finite = np.where(np.isfinite(losses) & (losses > 0), losses, np.nan)
        steps = np.arange(losses.shape[1])
        with np.errstate(all="ignore"), _ignore_nan_warnings():
            median = np.nanmedian(finite, axis=0)
            lo, hi = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
        color = f"C{i}"
        ls = "--" if "auto" in label else "-"
        ax.plot(steps, median, color=color, ls=ls, lw=1.4,
                label=f"{label}: median of {losses.shape[0]}")  # fmt: skip
        ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (band: min to max over the runs)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_drift(path, drift: dict, title: str) -> None:
    """Per parameter leaf, the relative difference between the hand-gradient run and the
    automatic one over the steps: the median over the runs (line) and the largest (dotted).

    Args:
      path: the PNG to write.
      drift: ``{"steps": [...], "leaves": {leaf: {"median": [...], "max": [...]}}}`` (the
        ``drift`` of a sweep's metrics).
      title: the figure title.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    floor = np.finfo(np.float64).eps / 2  # an exact 0 (no drift yet) drawn at the round-off
    for i, (leaf, d) in enumerate(drift["leaves"].items()):
        med = np.maximum(np.asarray(d["median"], np.float64), floor)
        top = np.maximum(np.asarray(d["max"], np.float64), floor)
        ax.plot(drift["steps"], med, color=f"C{i}", lw=1.4, label=f"{leaf} (median)")
        ax.plot(drift["steps"], top, color=f"C{i}", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("max |hand − auto| / max |auto| per leaf")
    ax.set_title(title + "  (dotted: the largest over the runs)", fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()  # wide tick labels would push the y-label off the canvas
    save_figure(fig, path)


@contextlib.contextmanager
def _ignore_nan_warnings():
    """A context in which an all-NaN step's RuntimeWarning is silent (its NaN is the answer)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield

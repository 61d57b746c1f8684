"""The side-by-side benchmark behind ``jaxprop bench``.

For each case, in one process: the hand-derived gradient under ``jax.jit``, ``jax.grad`` under
``jax.jit`` and a NumPy implementation written by hand the way the documents' readers would
(float32), each the median of many round-robin repeats after warm-up and compile; the compile time
of each jitted function; FLOPs of the gradient over FLOPs of the forward pass from XLA's own cost
analysis; and the achieved GFLOP/s against this machine's matrix-product peak (a large jitted
``A @ A`` timed in the same run).
"""

from __future__ import annotations

import dataclasses
import math
import platform
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.timing import compile_time, time_side_by_side

__all__ = ["matmul_peak_gflops", "run_bench", "xla_flops"]


def xla_flops(fn: Callable, *args) -> float:
    """FLOPs of ``jax.jit(fn)`` at these arguments, from XLA's cost analysis of the compiled code."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older JAX returns one dict per device
        analysis = analysis[0]
    return float(analysis.get("flops", math.nan))


def matmul_peak_gflops(n: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of a jitted float32 ``A @ A`` of size n × n: the machine's practical peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    t = time_side_by_side({"mm": lambda: mm(a)}, repeats=repeats)["mm"]["median_s"]
    return 2 * n**3 / t / 1e9


# NumPy references, written by hand as a textbook would: float32 arrays, one example per row.


def numpy_grad_tanh_softmax(p, x, Y):
    """Seed 001's gradient in NumPy (001_90440b38c2c51fc3.txt eqs (1)–(4), (7), (14)–(17))."""
    z1 = x @ p["W1"] + p["b1"]
    a1 = np.tanh(z1)
    z2 = a1 @ p["W2"] + p["b2"]
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    y_hat = e / e.sum(axis=1, keepdims=True)
    dz2 = (y_hat - Y) / x.shape[0]
    da1 = dz2 @ p["W2"].T
    dz1 = da1 * (1 - a1 * a1)
    return {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": a1.T @ dz2, "b2": dz2.sum(0)}


_NP_ACT = {
    # activation: (σ(z), σ′ from the saved output a = σ(z) and z)
    "identity": (lambda z: z, lambda a, z: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0), lambda a, z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda a, z: 1 - a * a),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a, z: a * (1 - a)),
}


def numpy_mlp_grad(weights, biases, x, Y, activations, *, layout, loss_scale):
    """A K-layer network's gradient in NumPy, the loop of every textbook.

    Args:
      weights: per layer, (n_out, n_in) for ``layout="A"`` (seed 002's A f + b) or (n_in, n_out)
        for ``layout="w"`` (seed 003's w_jk).
      biases: per layer a (n_out,) array, or ``None`` for no biases.
      x, Y: (B, n_0) inputs and (B, n_K) targets.
      activations: per layer a name in ``_NP_ACT``.
      layout: ``"A"`` or ``"w"``.
      loss_scale: c in L = c Σ (f_K − Y)²: 1/B for seed 002's mean ‖y − f_K‖², 1/(B·n_K) for
        seed 003's batch MSE.

    Returns:
      (weight gradients, bias gradients or None).
    """
    fs, zs = [x], []
    for i, (w, act) in enumerate(zip(weights, activations)):
        z = fs[-1] @ (w.T if layout == "A" else w)
        if biases is not None:
            z = z + biases[i]
        zs.append(z)
        fs.append(_NP_ACT[act][0](z))
    df = 2 * loss_scale * (fs[-1] - Y)
    dws, dbs = [None] * len(weights), [None] * len(weights)
    for i in reversed(range(len(weights))):
        dz = df * _NP_ACT[activations[i]][1](fs[i + 1], zs[i])
        dws[i] = dz.T @ fs[i] if layout == "A" else fs[i].T @ dz
        dbs[i] = dz.sum(0)
        if i:
            df = dz @ (weights[i] if layout == "A" else weights[i].T)
    return dws, (dbs if biases is not None else None)


@dataclasses.dataclass(frozen=True)
class GradCase:
    """One gradient benchmark case: a model at a size, and its NumPy reference."""

    name: str
    model: object
    sizes: dict
    batch: int
    numpy_grad: Callable | None


def _to_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float32), tree)


def _grad_case(case: GradCase, repeats: int, peak: float) -> dict:
    from jaxprop.verify import random_point

    model = case.model
    params, x, Y = random_point(model, jax.random.key(0), case.batch, **case.sizes)
    params, x, Y = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x, Y))
    manual, auto = model.grad, jax.grad(model.loss)
    manual_jit, auto_jit = jax.jit(manual), jax.jit(auto)
    fns = {
        "manual_jit": lambda: manual_jit(params, x, Y),
        "auto_jit": lambda: auto_jit(params, x, Y),
    }
    if case.numpy_grad is not None:
        np_args = _to_numpy((params, x, Y))
        fns["numpy"] = lambda: case.numpy_grad(*np_args)
    times = time_side_by_side(fns, repeats=repeats, min_time_s=0.2)
    fwd = xla_flops(model.loss, params, x, Y)
    flops = {"manual_jit": xla_flops(manual, params, x, Y), "auto_jit": xla_flops(auto, params, x, Y)}
    return {
        "name": case.name,
        "kind": "gradient",
        "model": model.name,
        "sizes": case.sizes,
        "batch": case.batch,
        **{f"{k}": v for k, v in times.items()},
        "compile_s": {
            "manual_jit": compile_time(manual, params, x, Y),
            "auto_jit": compile_time(auto, params, x, Y),
        },
        "forward_flops": fwd,
        "grad_flops": flops,
        "flop_ratio": flops["manual_jit"] / fwd,
        "flop_ratio_auto": flops["auto_jit"] / fwd,
        "gflops": flops["manual_jit"] / times["manual_jit"]["median_s"] / 1e9,
        "peak_fraction": flops["manual_jit"] / times["manual_jit"]["median_s"] / 1e9 / peak,
        "manual_vs_auto": times["auto_jit"]["median_s"] / times["manual_jit"]["median_s"],
    }


def default_grad_cases() -> list[GradCase]:
    from jaxprop.models import seed001

    tanh_softmax = seed001.tanh_softmax()
    sizes = {"n_in": 2, "n_hidden": 500, "n_out": 2}
    return [
        GradCase("seed001 2-500-2 b200", tanh_softmax, sizes, 200, numpy_grad_tanh_softmax),
        GradCase("seed001 2-500-2 b4096", tanh_softmax, sizes, 4096, numpy_grad_tanh_softmax),
    ]


def run_bench(*, repeats: int = 30, cases: list[GradCase] | None = None, progress=None) -> dict:
    """Runs every case and returns the JSON-ready result (an object with a list ``cases``)."""
    peak = matmul_peak_gflops()
    results = []
    for case in cases if cases is not None else default_grad_cases():
        if progress:
            progress(case.name)
        results.append(_grad_case(case, repeats, peak))
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
        },
        "matmul_peak_gflops": peak,
        "cases": results,
    }


_IMPLS = ("manual_jit", "auto_jit", "numpy", "manual_scan", "auto_scan", "python_loop", "numpy_loop")


def _fmt_s(t: dict | None) -> str:
    if not t:
        return "-"
    m = t["median_s"]
    unit, scale = ("ms", 1e3) if m >= 1e-3 else ("µs", 1e6)
    return f"{m * scale:.3g} {unit} [{t['min_s'] * scale:.3g}–{t['max_s'] * scale:.3g}]"


def format_table(result: dict) -> str:
    """One table: per case, the median [min–max] of each implementation, and the ratios."""
    header = ["case", *[i for i in _IMPLS if any(i in c for c in result["cases"])]]
    header += ["auto/manual", "numpy/manual", "FLOP ratio", "GFLOP/s", "% peak"]
    rows = [header]
    for c in result["cases"]:
        manual = c.get("manual_jit") or c.get("manual_scan")
        auto = c.get("auto_jit") or c.get("auto_scan")
        ref = c.get("numpy") or c.get("numpy_loop")
        rows.append(
            [
                c["name"],
                *[_fmt_s(c.get(i)) for i in header[1 : len(header) - 5]],
                f"{auto['median_s'] / manual['median_s']:.2f}" if auto and manual else "-",
                f"{ref['median_s'] / manual['median_s']:.2f}" if ref and manual else "-",
                f"{c['flop_ratio']:.2f}" if "flop_ratio" in c else "-",
                f"{c['gflops']:.1f}" if "gflops" in c else "-",
                f"{100 * c['peak_fraction']:.0f}" if "peak_fraction" in c else "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"matrix-product peak: {result['matmul_peak_gflops']:.1f} GFLOP/s")
    return "\n".join(lines)

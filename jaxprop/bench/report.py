"""The benchmark's table, plot and report files."""

from __future__ import annotations

import pathlib

import numpy as np

from jaxprop.util.files import atomic_write_bytes, atomic_write_json, pyplot, save_figure

_IMPLS = (
    "manual_jit",
    "auto_jit",
    "numpy",
    "manual_scan",
    "auto_scan",
    "python_loop",
    "numpy_loop",
    "torch",
    "torch_loop",
)


def _fmt_s(t: dict | None) -> str:
    if not t:
        return "-"
    m = t["median_s"]
    unit, scale = ("ms", 1e3) if m >= 1e-3 else ("µs", 1e6)
    return f"{m * scale:.3g} {unit} [{t['min_s'] * scale:.3g}–{t['max_s'] * scale:.3g}]"


def format_table(result: dict) -> str:
    """One table: per case, the median [min–max] of each implementation, and the ratios."""
    table_cases = [c for c in result["cases"] if c.get("kind") != "sweep"]
    header = ["case", *[i for i in _IMPLS if any(i in c for c in table_cases)]]
    ratio_names = ["auto/manual", "numpy/manual", "torch/manual"]
    header += [*ratio_names, "FLOP ratio", "GFLOP/s", "% peak", "compile ms"]
    rows = [header]
    for c in table_cases:
        manual = c.get("manual_jit") or c.get("manual_scan")
        auto = c.get("auto_jit") or c.get("auto_scan")
        ref = c.get("numpy") or c.get("numpy_loop")
        peer = c.get("torch") or c.get("torch_loop")
        rows.append(
            [
                c["name"],
                *[_fmt_s(c.get(i)) for i in header[1 : len(header) - 7]],
                f"{auto['median_s'] / manual['median_s']:.2f}" if auto and manual else "-",
                f"{ref['median_s'] / manual['median_s']:.2f}" if ref and manual else "-",
                f"{peer['median_s'] / manual['median_s']:.2f}" if peer and manual else "-",
                f"{c['flop_ratio']:.2f}" if "flop_ratio" in c else "-",
                f"{c['gflops']:.1f}" if "gflops" in c else "-",
                f"{100 * c['peak_fraction']:.0f}" if "peak_fraction" in c else "-",
                "{:.0f} / {:.0f}".format(
                    *(1e3 * c["compile_s"][k] for k in ("manual_jit", "auto_jit"))
                )
                if "compile_s" in c
                else "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in rows
    ]
    lines.append(f"matrix-product peak: {result['matmul_peak_gflops']:.1f} GFLOP/s")
    lines.append(f"PyTorch: {result['machine'].get('torch', '-')}")
    for c in result["cases"]:
        if c.get("kind") == "sweep":
            r = c["per_run"]
            peers = ", ".join(
                f"{label} {_fmt_s(r[k])} ({c[k + '_over_sweep']:.2f}x)"
                for k, label in (("numpy_loop", "NumPy loop"), ("sequential_train", "train() x "
                                 f"{c['runs']}"), ("torch_loop", "PyTorch eager"))
                if k in r
            )  # fmt: skip
            lines.append(
                f"{c['name']}, per run: train_sweep {_fmt_s(r['sweep'])}; {peers} "
                f"(x: time per run over the sweep's); compile {c['compile_s']['sweep']:.2f} s "
                f"(sweep), {c['compile_s']['train']:.2f} s (train)"
            )
        if "check_over_grad" in c:
            lines.append(
                f"{c['name']}: {c['n_params']:,} parameters, the whole check takes "
                f"{c['check_over_grad']:.1f}x one gradient evaluation ({_fmt_s(c['fd_check'])} "
                f"vs {_fmt_s(c['manual_jit'])}; {c['fd_reference']})"
            )
    return "\n".join(lines)


def plot(result: dict, path) -> None:
    """Speed of each implementation relative to the hand-derived gradient (higher: slower than
    the hand gradient), one group of bars per case, log scale."""
    plt = pyplot()
    cases = result["cases"]
    cases = [c for c in cases if c.get("kind") != "sweep"]
    pairs = [("auto_jit", "auto_scan", "jax.grad"), ("numpy", "numpy_loop", "NumPy"),
             ("torch", "torch_loop", "PyTorch eager"),
             (None, "python_loop", "Python loop over jitted step")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(cases) + 1.8))
    height = 0.8 / len(pairs)
    for j, (grad_key, train_key, label) in enumerate(pairs):
        ratios = []
        for c in cases:
            manual = c.get("manual_jit") or c.get("manual_scan")
            other = c.get(grad_key) if grad_key else None
            other = other or c.get(train_key)
            ratios.append(other["median_s"] / manual["median_s"] if other else np.nan)
        ax.barh(np.arange(len(cases)) + j * height, ratios, height, label=label)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(np.arange(len(cases)) + height, [c["name"] for c in cases], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(
        "median time / median time of jaxprop's hand gradient (> 1: the hand gradient is faster)"
    )
    ax.set_title("each implementation against jaxprop's hand gradient (jit, or scan for training)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write_report(result: dict, out_dir) -> None:
    """Writes ``bench.json``, ``bench.txt`` (the table) and ``bench.png`` to ``out_dir``."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "bench.json", result)
    atomic_write_bytes(out / "bench.txt", (format_table(result) + "\n").encode())
    try:
        plot(result, out / "bench.png")
    except ImportError:  # matplotlib is an optional extra
        pass

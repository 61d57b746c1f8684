"""The side-by-side benchmark behind ``jaxprop bench``.

For each case, in one process: the hand-derived gradient under ``jax.jit``, ``jax.grad`` under
``jax.jit`` and a NumPy implementation written by hand the way the documents' readers would
(float32), each the median of many repeats after warm-up and compile (the JAX implementations
round-robin in shuffled blocks, NumPy in a phase of its own right after); the compile time
of each jitted function; FLOPs of the gradient over FLOPs of the forward pass from XLA's own cost
analysis; and the achieved GFLOP/s against this machine's matrix-product peak (a large jitted
``A @ A`` timed in the same run).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.bench.peers import (
    _numpy_k_layer,
    _numpy_neuron_net,
    _to_numpy,
    numpy_grad_tanh_softmax,
    torch_grad_fn,
    torch_k_layer,
    torch_neuron_net,
    torch_tanh_softmax,
    torch_train_fn,
    torch_version,
)
from jaxprop.bench.timing import compile_time, time_side_by_side
from jaxprop.check.verify import random_point
from jaxprop.model.contract import Model
from jaxprop.registry import get_model

__all__ = ["matmul_peak_gflops", "run_bench", "xla_flops"]


def xla_flops(fn: Callable, *args) -> float:
    """FLOPs of ``jax.jit(fn)`` at these arguments, from XLA's cost analysis (compiled)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older JAX returns one dict per device
        analysis = analysis[0]
    assert analysis is not None, "XLA gives no cost analysis on this backend"
    return float(analysis.get("flops", math.nan))


def matmul_peak_gflops(n: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of a jitted float32 ``A @ A`` of size n × n: the machine's practical peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    t = time_side_by_side({"mm": lambda: mm(a)}, repeats=repeats)["mm"]["median_s"]
    return 2 * n**3 / t / 1e9


@dataclasses.dataclass(frozen=True)
class GradCase:
    """One gradient benchmark case: a model at a size, and its NumPy reference."""

    name: str
    model: Model
    sizes: dict
    batch: int
    numpy_grad: Callable | None
    torch_loss: Callable | None = None


def _grad_case(case: GradCase, repeats: int, peak: float) -> dict:
    model = case.model
    params, x, Y = random_point(model, jax.random.key(0), case.batch, **case.sizes)
    params, x, Y = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x, Y))
    manual, auto = model.grad, jax.grad(model.loss)
    manual_jit, auto_jit = jax.jit(manual), jax.jit(auto)
    fns = {
        "manual_jit": lambda: manual_jit(params, x, Y),
        "auto_jit": lambda: auto_jit(params, x, Y),
    }
    times = time_side_by_side(fns, repeats=repeats, min_time_s=0.2)
    numpy_grad = case.numpy_grad
    if numpy_grad is not None:
        # NumPy in a phase of its own: its BLAS threads spin after each call and would slow
        # whichever JAX call came next.
        np_args = _to_numpy((params, x, Y))
        times |= time_side_by_side(
            {"numpy": lambda: numpy_grad(*np_args)}, repeats=repeats, min_time_s=0.2
        )
    if case.torch_loss is not None and torch_version() is not None:
        # PyTorch in a phase of its own too (its intra-op threads).
        times |= time_side_by_side(
            {"torch": torch_grad_fn(case.torch_loss, *_to_numpy((params, x, Y)))},
            repeats=repeats, min_time_s=0.2,
        )  # fmt: skip
    fwd = xla_flops(model.loss, params, x, Y)
    flops = {
        "manual_jit": xla_flops(manual, params, x, Y),
        "auto_jit": xla_flops(auto, params, x, Y),
    }
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


def _network(name: str, **config: Any) -> Model:
    """The registered network ``name`` (:func:`jaxprop.get_model`), typed as a :class:`Model`:
    every benchmarked entry is a network, not a self-checking example."""
    model = get_model(name, **config)
    assert isinstance(model, Model), name
    return model


def default_grad_cases() -> list[GradCase]:
    """The issue's cases: seed 001 at batch 200 and 4,096; a digits-size network 64-256-256-10 at
    batch 512 and a 1024-1024-1024-1024 network at batch 1,024 (seed 002's K-layer network, ReLU
    hidden layers, identity output); seed 003's per-neuron and per-layer forms at 64-256-256-10.

    The models are the registered ones (:func:`jaxprop.get_model`); the ReLU K-layer network is
    the registered ``k-layer`` built for other activations (``get_model("k-layer",
    activations=...)``)."""
    tanh_softmax = _network("tanh-softmax")
    s001 = {"n_in": 2, "n_hidden": 500, "n_out": 2}
    relu3 = ("relu", "relu", "identity")
    k_layer = _network("k-layer", activations=relu3)
    sig3 = ("sigmoid",) * 3  # the registered neuron nets' activation, at each of the 3 layers
    return [
        GradCase("seed001 2-500-2 b200", tanh_softmax, s001, 200, numpy_grad_tanh_softmax,
                 torch_tanh_softmax),
        GradCase("seed001 2-500-2 b4096", tanh_softmax, s001, 4096, numpy_grad_tanh_softmax,
                 torch_tanh_softmax),
        GradCase(
            "seed002 64-256-256-10 b512", k_layer, {"sizes": (64, 256, 256, 10)}, 512,
            _numpy_k_layer(relu3), torch_k_layer(relu3),
        ),
        GradCase(
            "seed002 1024x4 b1024", k_layer, {"sizes": (1024,) * 4}, 1024, _numpy_k_layer(relu3),
            torch_k_layer(relu3),
        ),
        GradCase(
            "seed003 per-layer 64-256-256-10 b512", _network("neuron-delta-per-layer"),
            {"sizes": (64, 256, 256, 10)}, 512, _numpy_neuron_net(sig3), torch_neuron_net(sig3),
        ),
        GradCase(
            "seed003 per-neuron 64-256-256-10 b512", _network("neuron-delta-per-neuron"),
            {"sizes": (64, 256, 256, 10)}, 512, _numpy_neuron_net(sig3), torch_neuron_net(sig3),
        ),
    ]  # fmt: skip


def _train_case(name, model, sizes, batch, numpy_grad, steps, lr, repeats, torch_loss=None) -> dict:
    """A whole training run of ``steps`` full-batch SGD steps, four ways."""
    import optax

    from jaxprop.training.loop import make_value_and_grad, train

    params, x, Y = random_point(model, jax.random.key(0), batch, **sizes)
    params, x, Y = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x, Y))
    opt = optax.sgd(lr)

    def scan(source):
        return lambda: train(
            params, x, Y, opt, model=model, grad_source=source, steps=steps, chunk_size=steps,
            progress=False,
        ).params  # fmt: skip

    value_and_grad = make_value_and_grad(model, "manual")

    @jax.jit
    def step(p, s):
        _, g = value_and_grad(p, x, Y)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    def python_loop():
        p, s = params, opt.init(params)
        for _ in range(steps):
            p, s = step(p, s)
        return p

    np_params, np_x, np_Y = _to_numpy((params, x, Y))

    def numpy_loop():
        p = jax.tree.map(np.copy, np_params)
        for _ in range(steps):
            g = numpy_grad(p, np_x, np_Y)
            p = jax.tree.map(lambda w, d: w - np.float32(lr) * d, p, g)
        return p

    fns = {"manual_scan": scan("manual"), "auto_scan": scan("auto"), "python_loop": python_loop}
    times = time_side_by_side(fns, repeats=repeats, warmup=1, block=1)
    times |= time_side_by_side({"numpy_loop": numpy_loop}, repeats=repeats, warmup=1, block=1)
    if torch_loss is not None and torch_version() is not None:
        torch_loop = torch_train_fn(torch_loss, np_params, np_x, np_Y, lr, steps)
        times |= time_side_by_side({"torch_loop": torch_loop}, repeats=repeats, warmup=1, block=1)
    return {
        "name": name,
        "kind": "training",
        "model": model.name,
        "sizes": sizes,
        "batch": batch,
        "steps": steps,
        **times,
        "numpy_vs_manual_scan": times["numpy_loop"]["median_s"] / times["manual_scan"]["median_s"],
        "auto_vs_manual_scan": times["auto_scan"]["median_s"] / times["manual_scan"]["median_s"],
    }


def _per_run(t: dict, runs: int) -> dict:
    return {k: (v / runs if k.endswith("_s") else v) for k, v in t.items()}


def _sweep_case(name, model, sizes, batch, numpy_grad, torch_loss, steps, lr, runs, repeats):
    """``runs`` training runs of ``steps`` full-batch SGD steps, each from its own initial
    parameters: one :func:`jaxprop.train_sweep` of all of them against ``runs`` sequential
    :func:`jaxprop.train` calls, the NumPy loop and (when installed) PyTorch eager, per run.

    The sweep and the sequential calls are timed round-robin after one untimed call of each (the
    compile); NumPy and PyTorch each in a phase of their own, on the first run's parameters."""
    import optax

    from jaxprop.training.loop import train
    from jaxprop.training.sweep import train_sweep

    inits = [
        jax.tree.map(lambda a: a.astype(jnp.float32),
                     model.init(jax.random.key(100 + r), **sizes))
        for r in range(runs)
    ]  # fmt: skip
    _, x, Y = random_point(model, jax.random.key(0), batch, **sizes)
    x, Y = x.astype(jnp.float32), Y.astype(jnp.float32)
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *inits)
    opt = optax.sgd(lr)
    seeds = list(range(runs))

    def sweep():
        return train_sweep(stacked, x, Y, opt, steps=steps, seeds=seeds, model=model,
                           chunk_size=steps, progress=False).params  # fmt: skip

    def sequential():
        return [
            train(p, x, Y, opt, model=model, steps=steps, chunk_size=steps, progress=False,
                  seed=s).params
            for p, s in zip(inits, seeds, strict=True)
        ]  # fmt: skip

    t0 = time.perf_counter()
    jax.block_until_ready(sweep())
    first_sweep = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(
        train(inits[0], x, Y, opt, model=model, steps=steps, chunk_size=steps, progress=False,
              seed=0).params
    )  # fmt: skip
    first_train = time.perf_counter() - t0
    times = time_side_by_side({"sweep": sweep, "sequential_train": sequential}, repeats=repeats,
                              warmup=0, block=1)  # fmt: skip
    per_run = {k: _per_run(v, runs) for k, v in times.items()}

    np_params, np_x, np_Y = _to_numpy((inits[0], x, Y))

    def numpy_loop():
        p = jax.tree.map(np.copy, np_params)
        for _ in range(steps):
            g = numpy_grad(p, np_x, np_Y)
            p = jax.tree.map(lambda w, d: w - np.float32(lr) * d, p, g)
        return p

    per_run |= time_side_by_side({"numpy_loop": numpy_loop}, repeats=repeats, warmup=1, block=1)
    if torch_loss is not None and torch_version() is not None:
        torch_loop = torch_train_fn(torch_loss, np_params, np_x, np_Y, lr, steps)
        per_run |= time_side_by_side({"torch_loop": torch_loop}, repeats=repeats, warmup=1,
                                     block=1)  # fmt: skip
    sweep_s = per_run["sweep"]["median_s"]
    ratios = {
        f"{k}_over_sweep": v["median_s"] / sweep_s for k, v in per_run.items() if k != "sweep"
    }
    return {
        "name": name,
        "kind": "sweep",
        "model": model.name,
        "sizes": sizes,
        "batch": batch,
        "steps": steps,
        "runs": runs,
        "per_run": per_run,
        # The first call's time less a warm call's: tracing and compiling (and checks).
        "compile_s": {
            "sweep": first_sweep - times["sweep"]["median_s"],
            "train": first_train - per_run["sequential_train"]["median_s"],
        },
        **ratios,
    }


def _fd_check_case(name, model, sizes, batch, repeats) -> dict:
    """A whole ``check_grads`` of a large model in directional finite-difference mode against one
    evaluation of its hand gradient, side by side in float64, warm (compiled once before)."""
    from jaxprop.check.grads import check_grads

    with jax.enable_x64(True):
        params, x, Y = random_point(model, jax.random.key(0), batch, **sizes)
        params, x, Y = jax.tree.map(lambda a: a.astype(jnp.float64), (params, x, Y))
        grad = jax.jit(model.grad)
        n_params = sum(int(np.size(a)) for a in jax.tree.leaves(params))

        # fd_mode="directions": what check_grads picks above 1e6 parameters.
        def check():
            return check_grads(model.loss, model.grad, params, x, Y, fd_mode="directions")

        report = check()  # compiles, and gives the verdict
        times = time_side_by_side(
            {"manual_jit": lambda: grad(params, x, Y), "fd_check": check},
            repeats=repeats,
        )
    fd = report.leaves[0].vs_fd
    return {
        "name": name,
        "model": model.name,
        "n_params": n_params,
        "ok": report.ok,
        "fd_reference": None if fd is None else fd.reference,
        **times,
        "check_over_grad": times["fd_check"]["median_s"] / times["manual_jit"]["median_s"],
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_bench(
    *,
    repeats: int = 30,
    cases: list[GradCase] | None = None,
    train_steps: int = 2000,
    peak_size: int = 2048,
    fd_sizes: tuple[int, ...] | None = (3072, 3072, 128),
    sweep_runs: int = 32,
    wide_sizes: tuple[int, ...] | None = (64, 256, 256, 10),
    wide_batch: int = 512,
    wide_steps: int = 100,
    torch: bool = True,
    progress=None,
) -> dict:
    """Runs every case and returns the JSON-ready result.

    Args:
      repeats: timed calls of each implementation per gradient case (training runs: a sixth).
      cases: the gradient cases (default: :func:`default_grad_cases`).
      train_steps: SGD steps of the training-run case on seed 001's network (0: no such case).
      peak_size: n of the n × n matrix product that measures the machine's peak.
      fd_sizes: the K-layer network whose whole gradient check (directional finite
        differences, :mod:`jaxprop.check.fd`) is timed against one gradient evaluation (``None``: no
        such case); the default has 9.8 million parameters.
      sweep_runs: runs of the sweep cases (0: none): one :func:`jaxprop.train_sweep` of
        ``sweep_runs`` runs against as many sequential :func:`jaxprop.train` calls, the NumPy
        loop and PyTorch, per run; on seed 001's network (``train_steps`` steps, batch 200) and
        on seed 002's K-layer network at ``wide_sizes`` (``wide_steps`` steps, ``wide_batch``).
      wide_sizes: the wider sweep case's layer sizes (``None``: no such case).
      wide_batch: the wider sweep case's batch.
      wide_steps: the wider sweep case's SGD steps.
      torch: time PyTorch eager autograd where ``import torch`` works (the ``bench`` extra).
      progress: called with each case's name as it starts.

    Returns:
      ``{"machine", "matmul_peak_gflops", "cases": [...]}``; each case has ``name`` and, per
      implementation, ``{"median_s", "min_s", "max_s", "repeats"}``, plus ``flop_ratio``,
      ``gflops`` and ``peak_fraction`` for gradient cases.
    """
    peak = matmul_peak_gflops(peak_size)
    results = []
    torch_ok = torch and torch_version() is not None
    for case in cases if cases is not None else default_grad_cases():
        if progress:
            progress(case.name)
        if not torch_ok:
            case = dataclasses.replace(case, torch_loss=None)
        results.append(_grad_case(case, repeats, peak))
    if train_steps:
        name = f"train seed001 2-500-2 b200, {train_steps} SGD steps"
        if progress:
            progress(name)
        sizes = {"n_in": 2, "n_hidden": 500, "n_out": 2}
        results.append(
            _train_case(name, get_model("tanh-softmax"), sizes, 200, numpy_grad_tanh_softmax,
                        train_steps, 0.1, max(3, repeats // 6),
                        torch_tanh_softmax if torch_ok else None)
        )  # fmt: skip
    sweeps: list[tuple[Any, ...]] = []
    if sweep_runs and train_steps:
        sweeps.append((f"sweep seed001 2-500-2 b200, {sweep_runs} runs x {train_steps} SGD steps",
                       _network("tanh-softmax"), {"n_in": 2, "n_hidden": 500, "n_out": 2}, 200,
                       numpy_grad_tanh_softmax, torch_tanh_softmax, train_steps, 0.1))  # fmt: skip
    if sweep_runs and wide_sizes and wide_steps:
        relu = ("relu",) * (len(wide_sizes) - 2) + ("identity",)
        sweeps.append((f"sweep seed002 {'-'.join(map(str, wide_sizes))} b{wide_batch}, "
                       f"{sweep_runs} runs x {wide_steps} SGD steps",
                       _network("k-layer", activations=relu), {"sizes": tuple(wide_sizes)},
                       wide_batch, _numpy_k_layer(relu), torch_k_layer(relu), wide_steps,
                       0.01))  # fmt: skip
    for name, net, sizes, batch, np_grad, t_loss, steps, lr in sweeps:
        if progress:
            progress(name)
        results.append(_sweep_case(name, net, sizes, batch, np_grad, t_loss if torch_ok else None,
                                   steps, lr, sweep_runs, max(3, repeats // 10)))  # fmt: skip
    if fd_sizes:
        model = get_model("k-layer", activations=("tanh",) * (len(fd_sizes) - 2) + ("identity",))
        name = f"check_grads k-layer {'-'.join(map(str, fd_sizes))} b64, directional FD"
        if progress:
            progress(name)
        results.append(_fd_check_case(name, model, {"sizes": fd_sizes}, 64, max(3, repeats // 6)))
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
            "torch": (torch_version() or "absent (pip install 'jaxprop[bench]')")
            if torch
            else "not timed (torch=False)",
        },
        "matmul_peak_gflops": peak,
        "cases": results,
    }

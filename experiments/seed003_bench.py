"""Seed 003 under jax.jit: the per-layer and per-neuron hand gradients against jax.grad.

For each net, the three jitted gradient functions (same params, x, y) are compiled and warmed up,
then timed in interleaved rounds (one call of each per round, the order rotated every round), so
that all three see the same machine load; the figure is the median over the rounds, and the
ratio is of medians. Run from the repository root:

    python experiments/seed003_bench.py [--rounds 200] [--dtype float32]
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import time

import jax
import jax.numpy as jnp

from jaxprop.models import seed003

NETS = [  # (sizes, batch, activations)
    ((4, 8, 3), 16, "sigmoid"),
    ((64, 256, 256, 10), 512, "sigmoid"),
    ((64, 256, 256, 10), 512, "tanh"),
    ((784, 512, 512, 10), 1024, "sigmoid"),
]


def _time(fn, args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def op_counts(fn, args) -> dict[str, int]:
    """How many dots, fusions, transposes/copies and tanh/exp the compiled program runs."""
    text = fn.lower(*args).compile().as_text()
    ops = collections.Counter(re.findall(r"= \S+ (\w[\w-]*)\(", text))
    kinds = ("dot", "fusion", "transpose", "copy", "tanh", "exponential", "gather")
    return {k: ops[k] for k in kinds if ops[k]}


def bench(sizes, batch, acts, rounds: int, dtype, neuron: bool) -> dict[str, float]:
    per_layer = seed003.neuron_net(acts, backward="per-layer")
    per_neuron = seed003.neuron_net(acts, backward="per-neuron")
    params = per_layer.init(jax.random.key(0), sizes=sizes, dtype=dtype)
    x, y = per_layer.sample(jax.random.key(1), params, batch)
    fns = {
        "jax.grad": jax.jit(jax.grad(per_layer.loss)),
        "per-layer": jax.jit(per_layer.grad),
    }
    if neuron:
        fns["per-neuron"] = jax.jit(per_neuron.grad)
    args = (params, x, y)
    for fn in fns.values():  # compile, then warm up
        for _ in range(5):
            _time(fn, args)
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            times[name].append(_time(fns[name], args))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return medians, {name: op_counts(fns[name], args) for name in ("jax.grad", "per-layer")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    print(f"device: {jax.devices()[0].device_kind}, {args.dtype}, median of {args.rounds} rounds")
    print(f"{'net':<24}{'batch':>6}  {'act':<8}{'jax.grad':>11}{'per-layer':>11}"
          f"{'per-neuron':>12}{'layer/grad':>12}{'neuron/grad':>12}")  # fmt: skip
    for sizes, batch, acts in NETS:
        t, ops = bench(sizes, batch, acts, args.rounds, dtype, neuron=True)
        net = "-".join(map(str, sizes))
        print(
            f"{net:<24}{batch:>6}  {acts:<8}{t['jax.grad'] * 1e6:>9.1f}us"
            f"{t['per-layer'] * 1e6:>9.1f}us{t['per-neuron'] * 1e6:>10.1f}us"
            f"{t['per-layer'] / t['jax.grad']:>12.3f}{t['per-neuron'] / t['jax.grad']:>12.3f}"
        )
        print(f"{'':<8}compiled ops: jax.grad {ops['jax.grad']}; per-layer {ops['per-layer']}")


if __name__ == "__main__":
    main()

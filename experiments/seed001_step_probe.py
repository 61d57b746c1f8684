"""Where a training step of seed 001's 2-500-2 network goes on XLA:CPU, and what layout buys.

The benchmark's training goal (a whole run of 2,000 full-batch SGD steps at batch 200, 3x faster
than the NumPy loop) is not met; this script measures why. It times, side by side in one process,
2,000 steps inside one jitted ``lax.scan`` of the same hand gradient (001_90440b38c2c51fc3.txt
eqs (1)-(4), (7), (14)-(17), float32) written three ways, and the NumPy loop:

- ``rows``: the document's layout (one example per row), as ``jaxprop.models.seed001`` does;
- ``rows, size-2 products as broadcasts``: the products with a dimension of size 2 (x W1, dz2 W2ᵀ)
  written as two broadcast multiply-adds, so XLA can fuse them with tanh;
- ``batch-minor``: the same equations transposed (hidden units × batch), so every batch sum is a
  contiguous row sum;

and then single operations on a 500 × 200 array in the same kind of scan, the floor under any
formulation: tanh, a batch sum, a (2 × 500) · (500 × 200) product. Run from the repository root:

    python experiments/seed001_step_probe.py [--steps 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.bench.peers import numpy_grad_tanh_softmax
from jaxprop.bench.timing import time_side_by_side

B, LR = 200, 0.1


def rows(p, x, Y):
    z1 = x @ p["W1"] + p["b1"][None, :]
    a1 = jnp.tanh(z1)
    z2 = a1 @ p["W2"] + p["b2"][None, :]
    dz2 = (jax.nn.softmax(z2) - Y) / B
    dz1 = (dz2 @ p["W2"].T) * (1 - a1 * a1)
    return {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": a1.T @ dz2, "b2": dz2.sum(0)}


def rows_broadcast(p, x, Y):
    W1, W2 = p["W1"], p["W2"]
    # x W1 with n_in = 2: two outer products, fusable with tanh.
    z1 = x[:, 0:1] * W1[0][None, :] + x[:, 1:2] * W1[1][None, :] + p["b1"][None, :]
    a1 = jnp.tanh(z1)
    z2 = a1 @ W2 + p["b2"][None, :]
    dz2 = (jax.nn.softmax(z2) - Y) / B
    da1 = dz2[:, 0:1] * W2[:, 0][None, :] + dz2[:, 1:2] * W2[:, 1][None, :]
    dz1 = da1 * (1 - a1 * a1)
    return {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": a1.T @ dz2, "b2": dz2.sum(0)}


def batch_minor(p, x, Y):
    # Columns are examples: z1ᵀ = W1ᵀ xᵀ + b1, the batch sums run along rows.
    z1 = p["W1"].T @ x.T + p["b1"][:, None]
    a1 = jnp.tanh(z1)
    z2 = p["W2"].T @ a1 + p["b2"][:, None]
    dz2 = (jax.nn.softmax(z2, axis=0) - Y.T) / B
    dz1 = (p["W2"] @ dz2) * (1 - a1 * a1)
    return {"W1": (dz1 @ x).T, "b1": dz1.sum(1), "W2": (dz2 @ a1.T).T, "b2": dz2.sum(1)}


def _scan(body, steps):
    @jax.jit
    def run(carry):
        return jax.lax.scan(lambda c, _: (body(c), None), carry, None, length=steps)[0]

    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    steps = args.steps

    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    p = {"W1": jax.random.normal(k1, (2, 500)) / np.sqrt(2), "b1": jnp.zeros(500),
         "W2": jax.random.normal(k2, (500, 2)) / np.sqrt(500), "b2": jnp.zeros(2)}  # fmt: skip
    x = jax.random.normal(k3, (B, 2))
    Y = jax.nn.one_hot(jax.random.randint(k4, (B,), 0, 2), 2)
    p, x, Y = jax.tree.map(lambda a: a.astype(jnp.float32), (p, x, Y))

    def sgd(grad):
        return _scan(lambda q: jax.tree.map(lambda w, d: w - LR * d, q, grad(q, x, Y)), steps)

    variants = {"rows (the document's layout)": rows,
                "rows, size-2 products as broadcasts": rows_broadcast,
                "batch-minor": batch_minor}  # fmt: skip
    runs = {name: sgd(g) for name, g in variants.items()}
    finals = {name: run(p) for name, run in runs.items()}
    ref = finals["rows (the document's layout)"]
    for name, out in finals.items():
        diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), out, ref)
        diff = max(jax.tree.leaves(diffs))
        print(f"{name}: final parameters within {diff:.1e} of the document's layout")

    np_p, np_x, np_Y = jax.tree.map(np.asarray, (p, x, Y))

    def numpy_loop():
        q = dict(np_p)
        for _ in range(steps):
            g = numpy_grad_tanh_softmax(q, np_x, np_Y)
            q = {k: q[k] - np.float32(LR) * g[k] for k in q}
        return q

    fns = {name: (lambda run=run: run(p)) for name, run in runs.items()}
    times = time_side_by_side(fns, repeats=args.repeats, warmup=1, block=1)
    times |= time_side_by_side({"NumPy loop": numpy_loop}, repeats=args.repeats, warmup=1, block=1)
    numpy_s = times["NumPy loop"]["median_s"]
    print(f"\n{steps} SGD steps, batch {B}, float32 (median of {args.repeats}):")
    print("| implementation | ms per run | µs per step | NumPy / it |\n| --- | --- | --- | --- |")
    for name, t in times.items():
        s = t["median_s"]
        print(f"| {name} | {1e3 * s:.0f} | {1e6 * s / steps:.0f} | {numpy_s / s:.2f} |")

    a = jnp.full((500, B), 0.3, jnp.float32)
    w = jnp.ones((2, 500), jnp.float32)
    ops = {
        "a + 1e-3 (a step's fixed cost)": lambda c: c + 1e-3,
        "tanh(a)": jnp.tanh,
        "batch sum of a": lambda c: c + 1e-6 * c.sum(1, keepdims=True),
        "(2 x 500) · a": lambda c: c + 1e-6 * (w @ c).sum(),
    }
    op_runs = {name: _scan(body, steps) for name, body in ops.items()}
    op_times = time_side_by_side({n: (lambda r=r: r(a)) for n, r in op_runs.items()},
                                 repeats=args.repeats, warmup=1, block=1)  # fmt: skip
    print("\nOne operation on a 500 x 200 float32 array, per scan step:")
    print("| operation | µs per step |\n| --- | --- |")
    for name, t in op_times.items():
        print(f"| {name} | {1e6 * t['median_s'] / steps:.0f} |")
    print(f"\n3x the NumPy loop needs {1e6 * numpy_s / steps / 3:.0f} µs per step.")


if __name__ == "__main__":
    main()

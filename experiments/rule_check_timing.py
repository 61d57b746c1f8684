"""Wall time of check_rule on a 1000 × 1000 dense custom_vjp layer, order 1 and order 2.

    python experiments/rule_check_timing.py [--repeats 3]

Each figure is one whole ``check_rule`` call (compilation included: a user's first call), in
float64 on this machine's CPU, the median of ``--repeats`` calls in fresh processes (so that no
compiled program is reused). The figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import time, jax, jax.numpy as jnp, jaxprop
jax.config.update("jax_enable_x64", True)

@jax.custom_vjp
def dense(W, x):
    return jnp.tanh(x @ W)

def dense_fwd(W, x):
    y = dense(W, x)
    return y, (W, x, y)

def dense_bwd(res, g):
    W, x, y = res
    dz = g * (1 - y**2)
    return x.T @ dz, dz @ W.T

dense.defvjp(dense_fwd, dense_bwd)
kW, kx = jax.random.split(jax.random.key(0))
W = jax.random.normal(kW, (1000, 1000)) / 30
x = jax.random.normal(kx, (8, 1000))
t0 = time.perf_counter()
report = jaxprop.check_rule(dense, W, x, order=ORDER)
print(time.perf_counter() - t0, report.ok)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = {}
    for order in (1, 2):
        runs = []
        for _ in range(args.repeats):
            code = CHILD.replace("ORDER", str(order))
            line = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout.split()
            assert line[1] == "True", "the dense layer's rule must pass"
            runs.append(float(line[0]))
        out[f"order {order}"] = {"median_s": statistics.median(runs), "runs_s": runs}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

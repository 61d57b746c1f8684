"""Seed 003 read as printed: the check_grads reports of the two literal readings and the right one.

The readings are in jaxprop/models/_seed003_printed.py (not registered). Run from the repository
root: ``python experiments/seed003_readings.py``; float64, sizes 4-8-3, batch 16, seed 0.
"""

from __future__ import annotations

import jax

from jaxprop import check_grads
from jaxprop.models import _seed003_printed, seed003

jax.config.update("jax_enable_x64", True)

CASES = ["sigmoid", "tanh", ["sigmoid", "identity"], ["tanh", "tanh", "sigmoid"]]


def main() -> None:
    for acts in CASES:
        right = seed003.neuron_net(acts, backward="per-layer")
        depth = 2 if isinstance(acts, str) else len(acts)
        sizes = (4,) + (8,) * (depth - 1) + (3,)
        params = right.init(jax.random.key(0), sizes=sizes, dtype="float64")
        x, y = right.sample(jax.random.key(1), params, 16)
        models = [right] + [_seed003_printed.as_printed(acts, r) for r in _seed003_printed.READINGS]
        for model in models:
            report = check_grads(model.loss, model.grad, params, x, y, name=model.name)
            print(f"activations {acts}, sizes {sizes}")
            print(report, end="\n\n")


if __name__ == "__main__":
    main()

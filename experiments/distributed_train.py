"""Trains a tanh-softmax network data-parallel over the devices of one process or several.

Every process runs this script with the same arguments but its own --process-id:

    python experiments/distributed_train.py --coordinator localhost:12345 --num-processes 2 \
        --process-id 0 --out runs/   &
    python experiments/distributed_train.py --coordinator localhost:12345 --num-processes 2 \
        --process-id 1 --out runs/

Alone (the default --num-processes 1) it needs no coordinator; under SLURM (one task per
process) --auto lets JAX read the coordinator, the process count and the ids from the
environment (docs/distributed.md). It trains float64 parameters with SGD on a fixed problem
drawn with NumPy (2 inputs, two classes split by a line), twice: once with every process
passing the whole data set ("whole") and once with each process making a global array from its
own rows only ("local"), and writes process-<id>.json to --out with the losses, the test losses
and the final parameters of both.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from jaxprop.training import distributed  # noqa: E402 - after the path above


def problem(n_hidden: int = 8, n: int = 32, n_test: int = 8):
    """The model, float64 initial parameters, training and test data, drawn with NumPy from
    fixed seeds: the same on every process, and nothing for JAX to compile (jax.random's float64
    samplers take about a second each to compile on a small machine). Labels: the side of the
    line x0 + x1 / 2 = 0."""
    import jax.numpy as jnp
    import numpy as np

    from jaxprop import get_model

    model = get_model("tanh-softmax")
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), n_in=2, n_hidden=n_hidden, n_out=2,
                           dtype=jnp.float64)
    )  # fmt: skip

    def draw(leaf):  # weights N(0, 1 / fan-in), biases zero
        if len(leaf.shape) < 2:
            return np.zeros(leaf.shape)
        return rng.normal(size=leaf.shape) / np.sqrt(leaf.shape[0])

    params = jax.tree.map(draw, shapes)
    x = rng.normal(size=(n + n_test, 2))
    Y = np.eye(2)[(x[:, 0] + x[:, 1] / 2 > 0).astype(int)]
    return model, params, (x[:n], Y[:n]), (x[n:], Y[n:])


@functools.cache
def _optimizer():
    """One optimizer object for every run, so that a second run reuses the compiled loop."""
    import optax

    return optax.sgd(0.5)


def run(steps: int, batch_size: int | None, mesh=None, data: str = "whole", **problem_args):
    """One training run of :func:`problem`; ``mesh=None`` runs plain ``jaxprop.train`` on the
    default device (the one-process reference), else :func:`jaxprop.training.distributed.train` over
    ``mesh`` with the data passed ``"whole"`` or as global arrays of each process's ``"local"``
    rows."""
    import numpy as np

    import jaxprop

    model, params, (x, Y), test = problem(**problem_args)
    args = {"model": model, "steps": steps, "batch_size": batch_size, "seed": 3,
            "chunk_size": 10, "progress": False, "test_data": test}  # fmt: skip
    optimizer = _optimizer()
    if mesh is None:
        return jaxprop.train(params, x, Y, optimizer, **args)
    if data == "local":
        rows = distributed.local_rows(x.shape[0], mesh)
        x = distributed.global_array(np.asarray(x)[rows], mesh)
        Y = distributed.global_array(np.asarray(Y)[rows], mesh)
    return distributed.train(params, x, Y, optimizer, mesh=mesh, **args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--auto", action="store_true",
                        help="read the coordinator, process count and id from the cluster "
                             "environment (SLURM, Open MPI)")  # fmt: skip
    parser.add_argument("--local-devices", type=int, default=None,
                        help="split each process's CPU into this many devices")  # fmt: skip
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="0: full batch")
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("distributed-run"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    jax.config.update("jax_enable_x64", True)
    if args.auto:
        distributed.initialize(local_devices=args.local_devices)
    else:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                               local_devices=args.local_devices)  # fmt: skip
    init_s = time.perf_counter() - start
    mesh = distributed.global_mesh()
    me = jax.process_index()
    print(f"process {me} of {jax.process_count()}: local devices {jax.local_devices()}, "
          f"mesh {dict(mesh.shape)}", flush=True)  # fmt: skip

    import numpy as np

    out = {"process_index": me, "process_count": jax.process_count(),
           "devices": len(jax.devices()), "local_devices": len(jax.local_devices()),
           "initialize_s": init_s, "runs": {}}  # fmt: skip
    for data in ("whole", "local"):
        r = run(args.steps, args.batch_size or None, mesh, data, n_hidden=args.hidden)
        leaf = jax.tree.leaves(r.params)[0]
        out["runs"][data] = {
            "losses": r.losses.tolist(),
            "test_losses": None if r.test_losses is None else r.test_losses.tolist(),
            "params": {k: np.asarray(v).tolist() for k, v in r.params.items()},
            "param_devices": len(leaf.sharding.device_set),
            "wall_time_s": r.wall_time_s,
        }
        print(f"process {me}, data {data}: loss {r.losses[0]:.6f} -> {r.losses[-1]:.6f} in "
              f"{r.wall_time_s:.2f} s", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"process-{me}.json").write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks jaxprop on whatever accelerator JAX finds: devices, `jaxprop verify`, the benchmark.

Usage: python experiments/accelerator_check.py [--out DIR] [--repeats N]

Prints jax.devices(), runs every registered model's verification (float64, jitted, on the default
device) and the side-by-side benchmark, and writes verify.json and bench.json to --out. Exit status
1 if any verification fails. On a machine without an accelerator it runs on the CPU and says so.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("accelerator-check"))
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    devices = jax.devices()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}: {devices}")
    if jax.default_backend() == "cpu":
        print("no accelerator found: the checks below run on the CPU")

    from jaxprop import REGISTRY, verify_entry
    from jaxprop.bench.cases import run_bench
    from jaxprop.bench.report import write_report
    from jaxprop.util.files import atomic_write_bytes

    reports = [verify_entry(e, seed=0, dtype="float64", jit=True) for e in REGISTRY.values()]
    for r in reports:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}  failing: {', '.join(r.failing) or '-'}")
    payload = {"devices": [str(d) for d in devices], "models": [r.to_dict() for r in reports]}
    atomic_write_bytes(args.out / "verify.json", json.dumps(payload).encode())
    result = run_bench(repeats=args.repeats, progress=lambda name: print(f"bench: {name}"))
    write_report(result, args.out)
    return 0 if all(reports) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``jaxprop`` command.

``jaxprop verify`` checks every registered model's hand gradient against ``jax.grad`` and finite
differences at random parameters (fixed seed, float64) and prints one table; exit status 0 when all
pass, 1 when any fails, 2 for bad options. ``--nodes`` adds, under each model's table, the node
table (hand adjoint of every named node against ``jax.grad``, in backward order), and the JSON
carries it under ``"nodes"`` per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _verify(args: argparse.Namespace) -> int:
    from jaxprop.check import format_table
    from jaxprop.models import get_model, model_names
    from jaxprop.nodes import format_node_table

    names = args.model or model_names()
    try:
        models = [get_model(n) for n in names]
    except ValueError as e:
        return _usage_error(str(e))
    from jaxprop.model import Model

    def run(m):
        kwargs = {"seed": args.seed, "dtype": args.dtype, "jit": args.jit, "batch": args.batch}
        # Only a Model names its nodes; other registry entries (worked examples with check()
        # alone) get no node table.
        if args.nodes and isinstance(m, Model):
            kwargs["nodes"] = True
        return m.check(**kwargs)

    reports = [run(m) for m in models]
    ok = all(reports)
    if args.json:
        payload = {
            "ok": ok,
            "dtype": args.dtype,
            "jit": args.jit,
            "seed": args.seed,
            "nodes": args.nodes,
            "models": [r.to_dict() for r in reports],
        }
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in reports:
            node_report = getattr(r, "nodes", None)
            status = "ok" if r.ok else "FAIL at " + ", ".join(r.failing)
            if node_report is not None and not node_report.ok:
                status = "FAIL at " + ", ".join(r.failing) + ";" if r.failing else "FAIL:"
                if node_report.first_failing is not None:
                    status += f" first failing node {node_report.first_failing}"
                else:
                    status += " adjoints of unknown nodes " + ", ".join(node_report.extra)
            print(f"{r.name}  ({r.source})  loss {r.loss:.6g}  {status}")
            print("  " + format_table(r.leaves).replace("\n", "\n  "))
            if node_report is not None:
                print("  nodes, in backward order:")
                print("  " + format_node_table(node_report).replace("\n", "\n  "))
            print()
        passed = sum(bool(r) for r in reports)
        print(
            f"{passed} of {len(reports)} models pass in {args.dtype}"
            f" ({'jit' if args.jit else 'no jit'}, seed {args.seed})"
        )
    return 0 if ok else 1


def _usage_error(message: str) -> int:
    print(f"jaxprop: error: {message}", file=sys.stderr)
    return 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxprop",
        description="Hand-derived backpropagation in JAX, verified against jax.grad.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = sub.add_parser(
        "verify",
        help="check every registered model's hand gradient",
        description="Check each registered model's hand-derived gradient against jax.grad and "
        "central finite differences at random parameters and data.",
    )
    verify.add_argument(
        "--model", action="append", metavar="NAME", help="a model to check (repeatable; "
        "default: all registered)"
    )  # fmt: skip
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument(
        "--nodes",
        action="store_true",
        help="also check the hand adjoint of every named node and name the first failing one "
        "(the faulty step of the backward pass)",
    )
    verify.add_argument(
        "--jit", action=argparse.BooleanOptionalAction, default=True, help="run under jax.jit"
    )
    verify.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    verify.add_argument("--seed", type=int, default=0, help="seed of parameters and data")
    verify.add_argument("--batch", type=_positive_int, default=16, help="batch size of the data")
    verify.set_defaults(run=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

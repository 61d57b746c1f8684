"""The command line's parser: its commands, options, defaults and help, and the argument types that
turn a bad value into a one-line usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import os
import textwrap
from collections.abc import Callable
from typing import Any

from jaxprop.cli.commands import (
    _bench,
    _errata,
    _exercise,
    _experiment_name,
    _grade,
    _train,
    _verify,
)


def _activation_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be names separated by commas, got {text!r}")
    return names


def _number(name: str, convert: Callable[[str], Any], what: str, ok: Callable[[Any], bool]):
    """An argument type: ``convert(text)``, kept where ``ok``; else "must be WHAT, got TEXT"."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = name
    return parse


_positive_int = _number("_positive_int", int, "a positive integer", lambda v: v >= 1)
_nonnegative_int = _number("_nonnegative_int", int, "a non-negative integer", lambda v: v >= 0)
_positive_float = _number(
    "_positive_float", float, "a positive number", lambda v: math.isfinite(v) and v > 0
)


def _document(text: str) -> str:
    """A source document's number as the seeds name it: ``1`` and ``001`` are both ``001``."""
    return text.zfill(3) if text.isdigit() and len(text) <= 3 else text


def _rates(text: str) -> list[float]:
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must be a positive number or a list a,b,c, got {text}")
    return [_positive_float(p.strip()) for p in parts]


def _directory(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must be a directory, got an empty path")
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return text


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default (``(default: float64)``) unless its text says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or any(action.default is v for v in (None, False, argparse.SUPPRESS))
        ):
            return text
        return f"{text} (default: %(default)s)"

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Never inside a name: "two-layer-sigmoid", not "two-" and "layer-sigmoid".
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
            break_on_hyphens=False,
        )  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), not usage plus error,
    and whose help shows the defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    from jaxprop.registry import model_names
    from jaxprop.teach.assignment import exercise_models

    verify.add_argument(
        "--model", action="append", metavar="MODEL",
        help="a built-in model (" + ", ".join(model_names()) + ") or your own: "
        "path/to/file.py:factory or package.module:factory, naming a Model, an Example, or a "
        "function of no arguments returning one or several (repeatable, names and files mixed; "
        "default: every built-in model)",
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
    verify.add_argument(
        "--dtype", choices=["float64", "float32", "bfloat16", "float16"], default="float64",
        help="the precision of parameters, data and gradients",
    )  # fmt: skip
    verify.add_argument("--seed", type=_nonnegative_int, default=0,
                        help="seed of parameters and data (>= 0)")  # fmt: skip
    verify.add_argument("--batch", type=_positive_int, default=16, help="batch size of the data")
    verify.set_defaults(run=_verify)

    from jaxprop.cli.load import training_experiment
    from jaxprop.experiments import EXPERIMENTS, OPTIMIZERS, Experiment, experiment_names

    # What a user's Model is trained with: the Experiment defaults, on training_experiment's data.
    own = {f.name: f.default for f in dataclasses.fields(Experiment)}
    n_own = inspect.signature(training_experiment).parameters["n_train"].default

    train = sub.add_parser(
        "train",
        help="train an experiment with hand-derived and/or automatic gradients",
        description="Train one of the built-in experiments, or a model of your own, through "
        "optax, with the hand-derived gradient (manual), jax.grad (auto), or both from the same "
        "initial parameters; write metrics.json and PNG plots to --out.",
        epilog="The experiments' defaults: " + "; ".join(
            f"{e.name}: {e.optimizer}, lr {e.lr:g}, {e.steps} steps, "
            + ("full batch" if e.batch_size is None else f"batch {e.batch_size}")
            for e in EXPERIMENTS.values()
        ) + f"; a model of your own: {own['optimizer']}, lr {own['lr']:g}, {own['steps']} "
        "steps, full batch.",
    )  # fmt: skip
    train.add_argument("name", type=_experiment_name, metavar="NAME",
                       help="the experiment (" + ", ".join(experiment_names()) + ") or your own "
                       "model or experiment: path/to/file.py:factory or package.module:factory, "
                       f"naming a Model with init and sample (trained as a regression on {n_own} "
                       "examples its sample draws) or a jaxprop.experiments.Experiment"
                       )  # fmt: skip
    train.add_argument("--grad", choices=["manual", "auto", "bridge", "both"], default="both",
                       help="the gradient: manual (the hand-derived backward pass), auto "
                       "(jax.grad), bridge (jax.grad through the hand rule), both (manual and "
                       "auto from the same start)")  # fmt: skip
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                       help="the optimizer (default: the experiment's)")  # fmt: skip
    train.add_argument("--lr", type=_rates, default=None,
                       help="learning rate (default: the experiment's); a comma-separated list "
                       "(0.01,0.1) trains a sweep over them")  # fmt: skip
    train.add_argument("--seeds", type=_positive_int, default=None,
                       help="train N runs (seeds SEED, SEED+1, ...) in one compiled program, a "
                       "sweep: metrics per run and per step (mean, std, min, max), band plots, "
                       "and with --grad both the drift of hand vs auto per leaf")  # fmt: skip
    train.add_argument("--steps", type=_positive_int, default=None,
                       help="optimizer steps (default: the experiment's)")  # fmt: skip
    train.add_argument("--batch-size", type=_positive_int, default=None,
                       help="examples per step, at most the training set's size (default: the "
                       "experiment's)")  # fmt: skip
    train.add_argument("--seed", type=_nonnegative_int, default=0,
                       help="seed of the initial parameters and the batch order, "
                       "0 to 2**32 - 1")  # fmt: skip
    train.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                       help="the precision of parameters and data")  # fmt: skip
    train.add_argument("--devices", type=_positive_int, default=None,
                       help="train data-parallel over this many devices (default: the "
                       "default device alone; on a CPU, XLA_FLAGS="
                       "--xla_force_host_platform_device_count=N makes N)")  # fmt: skip
    train.add_argument("--out", metavar="DIR", type=_directory, default=None,
                       help="output directory (default: runs/NAME)")  # fmt: skip
    train.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                       help="write the PNG plots (needs matplotlib)")  # fmt: skip
    train.set_defaults(run=_train)

    bench = sub.add_parser(
        "bench",
        help="time hand gradients against jax.grad and NumPy, side by side",
        description="Time the hand-derived gradients under jit, jax.grad under jit and NumPy "
        "written by hand, and whole training runs, side by side in this process (medians of "
        "round-robin repeats after warm-up); print one table, write bench.json/.txt/.png.",
    )
    bench.add_argument("--repeats", type=_positive_int, default=30, help="timed calls per case")
    bench.add_argument("--train-steps", type=int, default=2000,
                       help="SGD steps of the training-run case (0 to skip it)")  # fmt: skip
    bench.add_argument("--case", action="append", metavar="SUBSTRING",
                       help="only the gradient cases whose name has this (repeatable)")  # fmt: skip
    bench.add_argument("--out", metavar="DIR", type=_directory, default="bench",
                       help="where to write bench.json, bench.txt, bench.png")  # fmt: skip
    bench.set_defaults(run=_bench)

    errata = sub.add_parser(
        "errata",
        help="show each slip of the source documents failing at its node",
        description="Run each as-printed backward variant of the source documents' formulas and "
        "its correction through the node and gradient checks (float64): the as-printed variant "
        "must fail at the node (or leaf) the formula computes, the corrected one must pass.",
    )
    errata.add_argument(
        "--doc",
        action="append",
        type=_document,
        choices=["000", "001", "002", "003"],
        help="only this document's slips, 000-003 or 0-3 (repeatable; default: all)",
    )
    errata.add_argument("--json", action="store_true", help="print the result as JSON")
    errata.set_defaults(run=_errata)

    exercise = sub.add_parser(
        "exercise",
        help="write an exercise: a built-in model's backward pass to fill in",
        description="Write a Python file with a built-in model's forward pass and its backward "
        "pass with one TODO per node, each citing the document's equation; grade it with "
        "jaxprop grade.",
    )
    exercise.add_argument("name", metavar="NAME",
                          help="a built-in Model: " + ", ".join(exercise_models()))  # fmt: skip
    exercise.add_argument("--out", metavar="FILE", default=None,
                          help="the file to write (default: print it)")  # fmt: skip
    exercise.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    exercise.add_argument("--solution", action="store_true",
                          help="write the answer key (the built-in backward pass)")  # fmt: skip
    exercise.add_argument("--activations", type=_activation_list, default=None, metavar="A,B,..",
                          help="k-layer: one activation per layer, e.g. relu,identity")  # fmt: skip
    exercise.set_defaults(run=_exercise)

    grade = sub.add_parser(
        "grade",
        help="grade a filled-in exercise node by node",
        description="Grade a filled-in exercise: each node's adjoint against jax.grad (float64, "
        "fixed seed), the diagnosis of the first wrong node, and the score (nodes right / "
        "nodes), in a subprocess with a time limit.",
    )
    grade.add_argument("file", metavar="FILE", help="the submission")
    grade.add_argument("--json", action="store_true", help="print the grade as JSON")
    grade.add_argument("--timeout", type=_positive_float, default=60.0,
                       help="time limit in seconds (default 60)")  # fmt: skip
    grade.add_argument("--model", metavar="NAME", default=None,
                       help="the assignment's model (" + ", ".join(exercise_models()) + "): "
                       "the file's MODEL must name it (default: the file's MODEL)")  # fmt: skip
    grade.set_defaults(run=_grade)
    return parser

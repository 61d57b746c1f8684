"""The ``jaxprop`` command.

``jaxprop verify`` checks every registered model's hand gradient against ``jax.grad`` and finite
differences at random parameters (fixed seed, float64) and prints one table; exit status 0 when all
pass, 1 when any fails, 2 for bad options. ``--nodes`` adds, under each model's table, the node
table (hand adjoint of every named node against ``jax.grad``, in backward order), and the JSON
carries it under ``"nodes"`` per model.

``--model`` also takes a user's own model by reference, ``path/to/file.py:factory`` or
``package.module:factory`` (:mod:`jaxprop.load`), mixed freely with built-in names.

``jaxprop train NAME`` trains one of the experiments of :mod:`jaxprop.experiments` (or a user's
model or experiment by reference, as for ``verify --model``) with the hand-derived gradient,
``jax.grad``, or both from the same start, and writes ``metrics.json`` and the plots to ``--out``;
exit status 0, 1 when training diverged (a NaN or infinite loss; the outputs are still written,
with ``null`` for the non-finite numbers), or 2 for bad options (checked before anything is
written: a run that fails on its options leaves no directory behind).

``jaxprop errata`` shows each slip of the source documents failing at its node: for every formula
recorded in docs/errata.md it runs the as-printed backward variant and the corrected one of
:mod:`jaxprop.errata` through the node and gradient checks (float64) and prints one row per slip
(document, equation, as printed, corrected, the node or leaf where the as-printed variant fails,
its error, whether the corrected form passes); ``--json`` for the same as JSON, ``--doc`` to pick
documents. Exit status 0 when every slip behaves as recorded, 1 otherwise, 2 for bad options.

``jaxprop exercise NAME --out FILE`` writes an exercise: a built-in model's forward pass and its
backward pass with one TODO per node (``--solution`` for the answer key); ``jaxprop grade FILE``
grades a filled-in exercise node by node, in a subprocess with a time limit (``--timeout``), and
prints each node's verdict, the diagnosis and the score (``--json`` for a grading system). Exit
status 0 for full marks, 1 otherwise (a submission that does not import, raises or hangs
included), 2 for bad options.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import pathlib
import shlex
import sys
import textwrap
from collections.abc import Sequence

__all__ = ["main"]


def _verify(args: argparse.Namespace) -> int:
    from jaxprop.check import format_table
    from jaxprop.model import Model
    from jaxprop.models import model_names
    from jaxprop.nodes import format_node_table
    from jaxprop.verify import verify_entry

    names = list(dict.fromkeys(args.model)) if args.model else model_names()
    try:
        models = [m for n in names for m in _verify_entries(n)]
    except ValueError as e:
        return _usage_error(str(e))
    unsampled = [m.name for m in models if isinstance(m, Model) and None in (m.init, m.sample)]
    if unsampled:
        # Checked before any model runs: otherwise a traceback after the others' tables.
        return _usage_error(
            f"models {unsampled} have no init or no sample, which verify needs to draw a random "
            "point; give the Model init= and sample=, or check it with jaxprop.check_nodes"
        )

    def run(m):
        # Only a Model names its nodes; other registry entries (worked examples with a check of
        # their own) get no node table.
        return verify_entry(
            m, seed=args.seed, dtype=args.dtype, jit=args.jit, batch=args.batch, nodes=args.nodes
        )

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
            node_diagnosis = None if node_report is None else node_report.diagnosis
            if node_diagnosis is not None:
                d = node_diagnosis
                print(f"  diagnosis at node {d.node} ({d.kind}): {d.message}")
            else:
                for path, d in r.diagnoses.items():
                    print(f"  diagnosis at leaf {path} ({d.kind}): {d.message}")
            print()
        passed = sum(bool(r) for r in reports)
        print(
            f"{passed} of {len(reports)} models pass in {args.dtype}"
            f" ({'jit' if args.jit else 'no jit'}, seed {args.seed})"
        )
    return 0 if ok else 1


_OWN_MODEL = "for a model of your own, give path/to/file.py:factory or package.module:factory"


def _verify_entries(name: str) -> list:
    """What ``verify --model name`` checks: the built-in entry, or the Models and Examples a
    reference loads (an Experiment's model)."""
    from jaxprop.experiments import Experiment
    from jaxprop.load import is_reference, load_entries
    from jaxprop.models import REGISTRY, get_model

    if is_reference(name):
        return [e.model() if isinstance(e, Experiment) else e for e in load_entries(name)]
    try:
        return [get_model(name)]
    except ValueError as e:
        if name in REGISTRY:
            raise
        raise ValueError(f"{e}; {_OWN_MODEL}") from None


def _experiment_name(text: str) -> str:
    """``train``'s NAME: a built-in experiment, or a reference (loaded when the command runs)."""
    from jaxprop.experiments import get_experiment
    from jaxprop.load import is_reference

    if not is_reference(text):
        try:
            get_experiment(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{e}; {_OWN_MODEL}") from None
    return text


def _training_experiment(name: str):
    """The experiment ``train NAME`` runs. Raises ValueError for a reference training cannot use."""
    from jaxprop.experiments import get_experiment
    from jaxprop.load import is_reference, load_entries, training_experiment

    if not is_reference(name):
        return get_experiment(name)
    entries = load_entries(name)
    if len(entries) != 1:
        raise ValueError(
            f"{name} gives {len(entries)} models ({', '.join(e.name for e in entries)}); "
            "jaxprop train trains one: name a factory that returns one of them"
        )
    return training_experiment(entries[0])


def _command(argv: Sequence[str]) -> str:
    """The command line that was run, to be run again (under ``python -m jaxprop`` or not)."""
    prog = "jaxprop"
    if sys.argv and pathlib.Path(sys.argv[0]).parts[-2:] == ("jaxprop", "__main__.py"):
        prog = f"{shlex.quote(sys.executable)} -m jaxprop"
    return f"{prog} {shlex.join(argv)}"


def _devices_error(devices: int, argv: Sequence[str]) -> str | None:
    """Why ``--devices`` cannot be honoured, with the command that gives that many CPU devices."""
    import jax

    available = jax.devices()
    if devices <= len(available):
        return None
    flag = "--xla_force_host_platform_device_count"
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(flag)]
    env = "XLA_FLAGS=" + shlex.quote(" ".join([*flags, f"{flag}={devices}"]))
    if jax.default_backend() != "cpu":
        env = "JAX_PLATFORMS=cpu " + env  # only the CPU is split into that many devices
    return (
        f"devices={devices}: expected between 1 and {len(available)} (the devices available: "
        f"{available}); to train on {devices} CPU devices, set XLA_FLAGS before JAX starts: "
        f"{env} {_command(argv)}"
    )


def _missing_dirs(path: str) -> list[pathlib.Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    p, missing = pathlib.Path(path).absolute(), []
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def _train(args: argparse.Namespace) -> int:
    try:
        exp = _training_experiment(args.name)
    except ValueError as e:
        return _usage_error(str(e))
    if args.devices is not None:
        problem = _devices_error(args.devices, args.argv)
        if problem is not None:
            return _usage_error(problem)
    default_out = os.path.join("runs", exp.name.replace("/", "_").replace(os.sep, "_"))
    out = args.out if args.out is not None else default_out
    created, wrote = _missing_dirs(out), False
    try:
        status = _run_training(args, exp, out)
        wrote = status != 2
    finally:
        if not wrote:
            # A run that failed on its options (or was interrupted) leaves no empty directory:
            # those this run created, and only while empty (rmdir refuses any other).
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break
    return status


def _run_sweep(args: argparse.Namespace, exp, out: str) -> int:
    from jaxprop.experiments.sweep import run_sweep

    if args.devices is not None:
        return _usage_error("--devices with --seeds or several --lr: a sweep runs on one device")
    try:
        metrics = run_sweep(
            exp, seeds=args.seeds or 1, lrs=args.lr, grad=args.grad, optimizer=args.optimizer,
            steps=args.steps, batch_size="default" if args.batch_size is None else args.batch_size,
            seed=args.seed, dtype=args.dtype, out=out, plots=args.plots,
        )  # fmt: skip
    except ValueError as e:
        return _usage_error(str(e))
    print(
        f"{metrics['experiment']}: {metrics['model']}, {metrics['optimizer']}, "
        f"{len(metrics['seeds'])} seeds x lr {', '.join(f'{r:g}' for r in metrics['lrs'])}, "
        f"{metrics['steps']} steps of batch {metrics['batch_size']}, {metrics['dtype']} "
        f"({metrics['wall_time_s']:.2f} s)"
    )
    for source, by_lr in metrics["summary"].items():
        for lr, figures in by_lr.items():
            line = f"  {source:6s} lr={lr:8s}"
            for key in ("final_loss", "test_loss", "test_accuracy"):
                if key in figures:
                    f = figures[key]
                    line += f"  {key.replace('_', ' ')} {f['mean']:.4g} ± {f['std']:.2g}"
            print(line)
    if "drift" in metrics:
        worst = max(max(v for v in d["max"] if isinstance(v, float))
                    for d in metrics["drift"]["leaves"].values())  # fmt: skip
        print(f"  manual vs auto: parameters drift apart by at most {worst:.3g} (relative)")
    print(f"wrote {out}")
    diverged = [f"{s} seed {d['seed']} lr {d['lr']:g} from step {d['step']}"
                for s, runs in metrics["diverged"].items() for d in runs]  # fmt: skip
    if diverged:
        print(f"jaxprop: error: {len(diverged)} runs diverged (NaN or infinite loss): "
              f"{'; '.join(diverged)}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _run_training(args: argparse.Namespace, exp, out: str) -> int:
    from jaxprop.experiments import run_experiment

    if args.seeds is not None or (args.lr is not None and len(args.lr) > 1):
        return _run_sweep(args, exp, out)
    try:
        metrics = run_experiment(
            exp,
            grad=args.grad,
            optimizer=args.optimizer,
            lr=None if args.lr is None else args.lr[0],
            steps=args.steps,
            batch_size="default" if args.batch_size is None else args.batch_size,
            seed=args.seed,
            dtype=args.dtype,
            devices=args.devices,
            out=out,
            plots=args.plots,
        )
    except ValueError as e:
        return _usage_error(str(e))
    print(
        f"{metrics['experiment']}: {metrics['model']} ({metrics['source']}), "
        f"{metrics['optimizer']} lr={metrics['lr']:g}, {metrics['steps']} steps of batch "
        f"{metrics['batch_size']}, {metrics['dtype']}, seed {metrics['seed']}"
    )
    for source, run in metrics["runs"].items():
        line = f"  {source:6s}  final loss {run['final_loss']:.6g}"
        if "final_train_accuracy" in run:
            line += f"  train accuracy {run['final_train_accuracy']:.2%}"
        if "test_accuracy" in run:
            line += f"  test accuracy {run['test_accuracy']:.2%}"
        if "theta_rel_error_vs_closed_form" in run:
            line += f"  |θ − θ*|/|θ*| {run['theta_rel_error_vs_closed_form']:.3g}"
        print(line + f"  ({run['wall_time_s']:.2f} s)")
    if args.grad == "both":
        curve, param = metrics["loss_curve_max_rel_diff"], metrics["param_max_rel_diff"]
        print(
            f"  manual vs auto: loss curves differ by at most {curve:.3g} (relative, per step), "
            f"final params by {param:.3g}"
        )
    print(f"wrote {out}")
    diverged = {s: r["nonfinite_loss_step"] for s, r in metrics["runs"].items()
                if r["nonfinite_loss_step"] is not None}  # fmt: skip
    if diverged:
        steps = ", ".join(f"{s} run from step {t}" for s, t in diverged.items())
        print(f"jaxprop: error: training diverged: the loss is NaN or infinite ({steps}); "
              f"try a smaller --lr", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _exercise(args: argparse.Namespace) -> int:
    from jaxprop import exercise
    from jaxprop._io import atomic_write_bytes

    config = {} if args.activations is None else {"activations": tuple(args.activations)}
    if args.out is not None:
        try:
            exercise._check_out(args.out, args.force)
        except FileExistsError:
            return _usage_error(f"{args.out} exists; pass --force to overwrite it")
        except OSError as e:
            return _usage_error(str(e))
    try:
        text = exercise.exercise_source(args.name, solution=args.solution, **config)
    except ValueError as e:
        return _usage_error(str(e))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    atomic_write_bytes(args.out, text.encode("utf-8"))
    todos = text.count('TODO("')
    what = "the solution" if args.solution else f"{todos} TODOs"
    print(f"wrote {args.out}: the backward pass of {args.name}, {what}; grade it with "
          f"`jaxprop grade {args.out}`")  # fmt: skip
    return 0


def _grade(args: argparse.Namespace) -> int:
    from jaxprop import exercise

    if not os.path.isfile(args.file):
        return _usage_error(f"no file {args.file}")
    try:
        report = exercise.grade(args.file, timeout=args.timeout, model=args.model)
    except ValueError as e:
        return _usage_error(str(e))
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(report)
    return 0 if report.ok else 1


def _activation_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be names separated by commas, got {text!r}")
    return names


def _usage_error(message: str) -> int:
    print(f"jaxprop: error: {message}", file=sys.stderr)
    return 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _document(text: str) -> str:
    """A source document's number as the seeds name it: ``1`` and ``001`` are both ``001``."""
    return text.zfill(3) if text.isdigit() and len(text) <= 3 else text


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


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
    from jaxprop.exercise import exercise_models
    from jaxprop.models import model_names

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

    from jaxprop.experiments import EXPERIMENTS, OPTIMIZERS, Experiment, experiment_names
    from jaxprop.load import training_experiment

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


def _bench(args: argparse.Namespace) -> int:
    from jaxprop.bench import default_grad_cases, format_table, run_bench, write_report

    if args.train_steps < 0:
        return _usage_error(f"--train-steps must be >= 0, got {args.train_steps}")
    cases = default_grad_cases()
    if args.case:
        cases = [c for c in cases if any(sub in c.name for sub in args.case)]
        if not cases:
            names = [c.name for c in default_grad_cases()]
            return _usage_error(f"no case matches {args.case}; cases are {names}")
    result = run_bench(
        repeats=args.repeats,
        cases=cases,
        train_steps=args.train_steps,
        progress=lambda name: print(f"timing {name} ...", file=sys.stderr, flush=True),
    )
    write_report(result, args.out)
    print(format_table(result))
    print(f"wrote {args.out}/bench.json, bench.txt, bench.png")
    return 0


def _errata(args: argparse.Namespace) -> int:
    from jaxprop import errata  # imported here: ``import jaxprop`` stays free of it

    results = errata.run(docs=args.doc)
    ok = all(r.as_expected for r in results)
    if args.json:
        json.dump({"ok": ok, "slips": errata.entries(results)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(errata.format_table(results))
        behaving = sum(r.as_expected for r in results)
        print(f"{behaving} of {len(results)} slips behave as recorded in docs/errata.md (float64)")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (141, as a shell reports SIGPIPE, when the
    reader of the output goes away: ``jaxprop verify --json | head``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line, for advice that repeats it
    try:
        status = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader closed the pipe: no traceback; silence the interpreter's final flush too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return status


if __name__ == "__main__":
    sys.exit(main())

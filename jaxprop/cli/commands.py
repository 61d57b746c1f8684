"""What each command does: ``verify``, ``train``, ``exercise``, ``grade``, ``bench`` and ``errata``
(each ``(args) -> exit status``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys
from collections.abc import Sequence


def _usage_error(message: str) -> int:
    print(f"jaxprop: error: {message}", file=sys.stderr)
    return 2


def _run_error(message: str) -> int:
    """A run that failed on the user's code: one line, exit status 1."""
    print(f"jaxprop: error: {message}", file=sys.stderr)
    return 1


def _verify(args: argparse.Namespace) -> int:
    from jaxprop.check.grad_report import format_table
    from jaxprop.check.nodes import format_node_table
    from jaxprop.check.verify import verify_entry
    from jaxprop.model.contract import Model
    from jaxprop.registry import model_names

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
    from jaxprop.cli.load import is_reference, load_entries
    from jaxprop.experiments import Experiment
    from jaxprop.registry import REGISTRY, get_model

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
    from jaxprop.cli.load import is_reference
    from jaxprop.experiments import get_experiment

    if not is_reference(text):
        try:
            get_experiment(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{e}; {_OWN_MODEL}") from None
    return text


def _training_experiment(name: str):
    """The experiment ``train NAME`` runs. Raises ValueError for a reference training cannot use."""
    from jaxprop.cli.load import is_reference, load_entries, training_experiment
    from jaxprop.experiments import get_experiment

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
        wrote = status == 0
    finally:
        if not wrote:
            # A run that failed (on its options, on the user's code) or was interrupted leaves
            # no empty directory: those this run created, and only while empty (rmdir refuses
            # any other, so a diverged run's outputs stay).
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break
    return status


def _run_sweep(args: argparse.Namespace, exp, out: str) -> int:
    from jaxprop.experiments.sweep import run_sweep
    from jaxprop.training.options import GradientError

    if args.devices is not None:
        return _usage_error("--devices with --seeds or several --lr: a sweep runs on one device")
    try:
        metrics = run_sweep(
            exp, seeds=args.seeds or 1, lrs=args.lr, grad=args.grad, optimizer=args.optimizer,
            steps=args.steps, batch_size="default" if args.batch_size is None else args.batch_size,
            seed=args.seed, dtype=args.dtype, out=out, plots=args.plots,
        )  # fmt: skip
    except GradientError as e:
        return _run_error(str(e))
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
    from jaxprop.training.options import GradientError

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
    except GradientError as e:
        return _run_error(str(e))
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
    from jaxprop.teach.exercise import _check_out, exercise_source
    from jaxprop.util.files import atomic_write_bytes

    config = {} if args.activations is None else {"activations": tuple(args.activations)}
    if args.out is not None:
        try:
            _check_out(args.out, args.force)
        except FileExistsError:
            return _usage_error(f"{args.out} exists; pass --force to overwrite it")
        except OSError as e:
            return _usage_error(str(e))
    try:
        text = exercise_source(args.name, solution=args.solution, **config)
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
    from jaxprop.teach.sandbox import grade

    if not os.path.isfile(args.file):
        return _usage_error(f"no file {args.file}")
    try:
        report = grade(args.file, timeout=args.timeout, model=args.model)
    except ValueError as e:
        return _usage_error(str(e))
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(report)
    return 0 if report.ok else 1


def _bench(args: argparse.Namespace) -> int:
    from jaxprop.bench.cases import default_grad_cases, run_bench
    from jaxprop.bench.report import format_table, write_report

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
    import jaxprop.errata as errata  # imported here: ``import jaxprop`` stays free of it

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

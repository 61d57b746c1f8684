"""Regenerates docs/experiments.md and its figures from the package's experiments.

Every experiment is trained twice from the same initial parameters, with the hand-derived gradient
and with jax.grad (``--grad both``), in float64 and again in float32, with its default optimizer,
learning rate, steps and batch size; the figures are those of the float64 run. Each is then swept
over 32 seeds (``jaxprop.experiments.sweep.run_sweep``, ``--grad both``, float64): a second table
gives the mean ± std over the seeds of the test accuracy (classification) or of the test loss
(regression; the training loss where there is no held-out set), manual and auto, and the largest
hand-vs-auto drift over the runs, with moons' loss-band and drift figures.

    python experiments/run_experiments.py                      # the default set
    python experiments/run_experiments.py --only moons digits-softmax
    python experiments/run_experiments.py --seeds 32 --sweep-seeds digits-k-layer=16
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever else is installed

import jax  # noqa: E402

from jaxprop.experiments import get_experiment, run_experiment  # noqa: E402
from jaxprop.experiments.sweep import run_sweep  # noqa: E402
from jaxprop.util.files import atomic_write_bytes  # noqa: E402

ALL = ["moons", "regression", "digits-softmax", "digits-k-layer", "digits-neuron", "least-squares"]
DEFAULT = ALL
# A side run kept in the table: the same experiment with a larger Adam step (see the notes).
VARIANTS = {"regression": [{"lr": 1e-2}]}
# The experiments whose sweep figures (loss bands over the seeds, hand-vs-auto drift) are kept.
SWEEP_FIGURES = ["moons"]


def _fmt(value, spec=".3g"):
    return "–" if value is None else format(value, spec)


def _pct(value):
    return "–" if value is None else f"{value:.2%}"


def _mean_std(stat, pct: bool) -> str:
    if stat is None:
        return "–"
    if pct:
        return f"{stat['mean']:.2%} ± {stat['std']:.2%}"
    return f"{stat['mean']:#.4g} ± {stat['std']:.2g}"


def _largest_drift(drift: dict) -> tuple[float, str, int]:
    """The largest relative parameter difference hand vs auto over every run, leaf and logged
    step: (value, leaf, step)."""
    best = (0.0, "–", 0)
    for leaf, d in drift["leaves"].items():
        for step, value in zip(drift["steps"], d["max"], strict=True):
            if value is not None and value > best[0]:
                best = (value, leaf, step)
    return best


def _final_loss_drift(metrics: dict) -> dict[int, float]:
    """Per run (by seed), |L_manual − L_auto| / |L_auto| of the final training loss."""
    pairs = zip(metrics["runs"]["manual"], metrics["runs"]["auto"], strict=True)
    return {
        m["seed"]: abs(m["final_loss"] - a["final_loss"]) / abs(a["final_loss"])
        for m, a in pairs
        if isinstance(m["final_loss"], float) and isinstance(a["final_loss"], float)
        and a["final_loss"] != 0
    }  # fmt: skip


def _apart(diffs: dict[int, float], threshold: float = 1e-12) -> str:
    """The runs whose final losses differ by more than ``threshold``: their count and seeds."""
    seeds = [s for s, d in diffs.items() if d > threshold]
    return f"{len(seeds)}" + (f" (seeds {', '.join(map(str, seeds))})" if seeds else "")


def _cached(out: pathlib.Path, exp, seeds: int) -> dict | None:
    """A sweep's metrics.json in ``out`` if it is the sweep asked for (the experiment's defaults,
    seeds 0 … seeds − 1, both sources, float64, with its figures), else None."""
    path = out / "metrics.json"
    if not (
        path.is_file() and (out / "loss_bands.png").is_file() and (out / "drift.png").is_file()
    ):
        return None
    m = json.loads(path.read_text())
    same = (
        m.get("experiment") == exp.name and m.get("seeds") == list(range(seeds))
        and m.get("grad") == "both" and m.get("dtype") == "float64"
        and m.get("steps") == exp.steps and m.get("lrs") == [exp.lr]
        and m.get("optimizer") == exp.optimizer
    )  # fmt: skip
    if same:
        print(f"{exp.name} sweep: read back from {path}", file=sys.stderr)
    return m if same else None


def sweep_rows(
    names, seeds: dict[str, int], docs: pathlib.Path, cache: pathlib.Path | None = None
) -> tuple[list[str], list[str]]:
    """The seed-sweep table's rows, and the sweep figures' markdown lines; with ``cache``, each
    sweep's metrics and figures are kept in ``cache/NAME`` and read back from there by a later
    run that asks for the same sweep."""
    figures = docs / "figures"
    rows, pngs = [], []
    for name in names:
        exp = get_experiment(name)
        keep = name in SWEEP_FIGURES
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) if cache is None else cache / name
            m = _cached(out, exp, seeds[name])
            if m is None:
                m = run_sweep(name, seeds=seeds[name], grad="both", dtype="float64",
                              out=out, plots=True, progress=False)  # fmt: skip
            if keep:
                for stem in ("loss_bands", "drift"):
                    target = figures / f"{name}_sweep_{stem}.png"
                    atomic_write_bytes(target, (out / f"{stem}.png").read_bytes())
                    pngs.append(f"![{name} {stem}]({target.relative_to(docs).as_posix()})")
        lr = f"{m['lrs'][0]:g}"
        man, aut = m["summary"]["manual"][lr], m["summary"]["auto"][lr]
        if exp.task == "classification":
            key, label, pct = "test_accuracy", "test acc.", True
        elif "test_loss" in man:
            key, label, pct = "test_loss", "test loss", False
        else:
            key, label, pct = "final_loss", "final (training) loss", False
        n = {s["n"] for s in (man.get(key), aut.get(key)) if s is not None}
        diverged = sum(len(v) for v in m["diverged"].values())
        value, leaf, step = _largest_drift(m["drift"])
        print(f"{name} sweep ({len(m['seeds'])} seeds): {m['wall_time_s']:.0f} s", file=sys.stderr)
        drift = f"{value:.1e} ({leaf}, step {step})" if value > 0 else "0 (every leaf)"
        loss_drift = _final_loss_drift(m)
        rows.append(
            f"| {name} | {len(m['seeds'])} ({m['seeds'][0]}–{m['seeds'][-1]}) | "
            f"{m['optimizer']} {lr}, {m['steps']} × {m['batch_size']} | {label} | "
            f"{_mean_std(man.get(key), pct)} | {_mean_std(aut.get(key), pct)} | "
            f"{'/'.join(str(k) for k in sorted(n)) or '–'} | {drift} | "
            f"{_fmt(max(loss_drift.values(), default=None), '.1e')} | {_apart(loss_drift)} | "
            f"{diverged} | {m['wall_time_s']:.0f} |"
        )
    return rows, pngs


def run(
    names,
    docs: pathlib.Path,
    seeds: dict[str, int] | None = None,
    cache: pathlib.Path | None = None,
) -> str:
    figures = docs / "figures"
    rows, sections = [], []
    for name in names:
        exp = get_experiment(name)
        for overrides in [{}, *VARIANTS.get(name, [])]:
            with tempfile.TemporaryDirectory() as tmp:
                m64 = run_experiment(name, grad="both", dtype="float64", out=tmp, **overrides)
                label = name + "".join(f", {k} {v:g}" for k, v in overrides.items())
                pngs = []
                if not overrides:
                    for png in sorted(pathlib.Path(tmp).glob("*.png")):
                        target = figures / f"{name}_{png.name}"
                        atomic_write_bytes(target, png.read_bytes())
                        pngs.append(target.relative_to(docs).as_posix())
            m32 = run_experiment(name, grad="both", dtype="float32", plots=False, **overrides)
            print(f"{label}: done", file=sys.stderr)
            rows.append(
                f"| {label} | {m64['model']} | {m64['optimizer']} {m64['lr']:g} | "
                f"{m64['steps']} × {m64['batch_size']} | {_fmt(m64['final_loss'], '.4g')} | "
                f"{_pct(m64.get('final_train_accuracy'))} | {_pct(m64.get('test_accuracy'))} | "
                f"{_fmt(m64['loss_curve_max_rel_diff'], '.1e')} | "
                f"{_fmt(m64['param_max_rel_diff'], '.1e')} | "
                f"{_fmt(m32['loss_curve_max_rel_diff'], '.1e')} | "
                f"{_fmt(m32['param_max_rel_diff'], '.1e')} | "
                f"{m64['runs']['manual']['wall_time_s']:.2f} / "
                f"{m64['runs']['auto']['wall_time_s']:.2f} |"
            )
            if pngs:
                extra = ""
                if "theta_rel_error_vs_closed_form" in m64:
                    extra = (
                        f" ‖θ − θ*‖/‖θ*‖ = {m64['theta_rel_error_vs_closed_form']:.2e} against "
                        f"the closed-form solution."
                    )
                sections.append(
                    f"### {name}\n\n{exp.description} ({m64['source']}); {m64['n_train']} "
                    f"training examples"
                    + (f", {m64['n_test']} held out" if m64["n_test"] else "")
                    + f".{extra}\n\n"
                    + "\n".join(f"![{name} {p}]({p})" for p in pngs)
                    + "\n"
                )
    head = (
        "| experiment | model | optimizer, lr | steps × batch | final loss | train acc. | "
        "test acc. | loss curves Δ f64 | params Δ f64 | loss curves Δ f32 | params Δ f32 | "
        "wall s manual / auto |\n" + "|---" * 12 + "|"
    )
    seeds = seeds if seeds is not None else {name: 32 for name in names}
    srows, spngs = sweep_rows(names, seeds, docs, cache)
    shead = (
        "| experiment | seeds | optimizer lr, steps × batch | figure | manual mean ± std | "
        "auto mean ± std | n | largest params Δ (leaf, step) | largest final-loss Δ | "
        "runs with final-loss Δ > 1e-12 | diverged runs | wall s (both) |\n" + "|---" * 12 + "|"
    )
    today = datetime.date.today().isoformat()
    return TEMPLATE.format(
        command=" ".join(["python experiments/run_experiments.py", *sys.argv[1:]]),
        date=today,
        machine=f"{platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}",
        table="\n".join([head, *rows]),
        sweep_table="\n".join([shead, *srows]),
        n_seeds=max(seeds.values()),
        fewer=_fewer_seeds(seeds),
        sweep_figures="\n".join(spngs) if spngs else "(none in this run)",
        sections="\n".join(sections),
    )


def _fewer_seeds(seeds: dict[str, int]) -> str:
    full = max(seeds.values())
    fewer = {name: n for name, n in seeds.items() if n < full}
    if not fewer:
        return ""
    listed = ", ".join(f"{name} {n}" for name, n in fewer.items())
    return f" To keep the run short, fewer seeds for: {listed} (the seeds column says so)."


TEMPLATE = """# Experiments: hand-derived vs automatic gradients in training

Generated by `{command}` on {date} ({machine}). Do not edit by hand: rerun the command.

Each experiment (`jaxprop train NAME`, defined in `jaxprop/experiments/`) is trained twice from the
same initial parameters (seed 0), with the same optax optimizer and the same batch order: once with
the model's hand-derived backward pass (`manual`) and once with `jax.grad` of its loss (`auto`).
"Δ" is the largest relative difference between the two runs: for the loss curves, over every step,
|L_manual − L_auto| / |L_auto|; for the final parameters, over every leaf, max|θ_manual − θ_auto|
divided by the leaf's largest element. "final loss" is the training-set loss at the final
parameters (float64 run); accuracies are the argmax of the network's output against the label.

{table}

## Over {n_seeds} seeds

Each experiment swept over seeds 0, 1, … (`jaxprop train NAME --seeds {n_seeds} --grad both`,
`jaxprop.experiments.sweep.run_sweep`): run i starts from seed i's initial parameters and draws its
batches in seed i's order, manual and auto from the same start, all runs of a source in one
compiled program, float64, the experiment's default optimizer, learning rate, steps and batch.
"figure" is the test accuracy for the classifiers and the held-out loss for the regressions (the
training loss where there is no held-out set); "manual/auto mean ± std" is over the seeds (std
with ddof 0) and "n" the number of runs in it (the diverged ones left out). "largest params Δ" is
the largest over every run, leaf and logged step (every steps/50) of max|θ_manual − θ_auto| /
max|θ_auto| of that leaf; "largest final-loss Δ" the largest over the runs of
|L_manual − L_auto| / |L_auto| of the final training loss, and the next column counts the runs
where that exceeds 1e-12; "wall s" the sweep's training time for both sources (from its
metrics.json). Wall times, in both tables, are as measured on the machine named above, which may
be shared: they vary several-fold with its load.{fewer}

{sweep_table}

{sweep_figures}

## What the figures say

- In float64 the two gradient sources train identically: the hand backward pass and `jax.grad`
  evaluate the same chain rule in a different order of floating-point operations, so each gradient
  differs in the last bits (~1e-16 relative), and over thousands of smooth optimizer steps that
  stays at ~1e-15 to 1e-13.
- In float32 the same last-bit differences are ~1e-7 per step; over these runs they accumulate to
  ~1e-6 to 1e-5 (the float32 columns), small against every figure of merit. Adam can amplify
  them: it divides each step by √v, so a gradient component that is itself near rounding level (a
  sum with cancellation) gets a step of size ~lr whose sign depends on the last bits. On moons
  with 40 points, 5 Adam steps in float32 give a parameter Δ of 6e-4 while plain SGD gives 2e-7
  (tests/test_train.py checks the SGD case to 1e-4).
- The side run "regression, lr 0.01" shows the same effect in float64: near the noise floor Adam's
  loss spikes (from about step 1,700), each spike amplifies the ~1e-16 differences, and the curves
  drift apart to ~1e-2 relative. That is the optimizer's sensitivity, not a gradient error: at the
  default lr 0.003 the seed-0 run is smooth and the curves agree to ~1e-15. (The float32 run
  with lr 0.01 follows another trajectory and stayed at ~1e-6 here.) The sweep shows it is not
  confined to lr 0.01: at lr 0.003 a few of the 32 seeds (listed in the sweep table) hit such
  spikes too and their hand and `jax.grad` runs end measurably apart, while the median run stays
  at round-off (the dotted vs solid lines of a drift plot).
- Over the seeds, the manual and auto mean ± std agree to every printed digit wherever no run
  drifts apart, and there the seed-to-seed spread (the std, about a tenth of a percent of test
  accuracy) is many orders of magnitude above the hand-vs-auto difference (the params Δ column).

## Figures

{sections}"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=ALL, default=DEFAULT, metavar="NAME",
                        help=f"experiments to run (default: {' '.join(DEFAULT)})")  # fmt: skip
    parser.add_argument("--docs", type=pathlib.Path, default=ROOT / "docs")
    parser.add_argument("--seeds", type=int, default=32, help="seeds per sweep (default: 32)")
    parser.add_argument("--sweep-seeds", nargs="+", default=[], metavar="NAME=N",
                        help="fewer (or more) seeds for these experiments' sweeps")  # fmt: skip
    parser.add_argument("--sweep-cache", type=pathlib.Path, default=None, metavar="DIR",
                        help="keep each sweep's metrics.json and figures in DIR/NAME and reuse "
                             "those of the same sweep")  # fmt: skip
    args = parser.parse_args(argv)
    seeds = {name: args.seeds for name in args.only}
    for item in args.sweep_seeds:
        name, _, n = item.partition("=")
        if name not in seeds or not n.isdigit() or int(n) < 1:
            parser.error(f"--sweep-seeds takes NAME=N for a NAME being run, got {item!r}")
        seeds[name] = int(n)
    text = run(args.only, args.docs, seeds, args.sweep_cache)
    atomic_write_bytes(args.docs / "experiments.md", text.encode())
    print(f"wrote {args.docs / 'experiments.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

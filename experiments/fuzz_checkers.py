"""Fuzzing the checkers (issue 26): false-FAIL and miss rates on random cases.

For each of check_grads, check_nodes and check_rule, ``--cases`` random cases
(``tests/fuzz_cases.py``, one integer seed each) are checked twice: the correct gradient (a FAIL
is a false FAIL) and one planted error (a pass is a miss). Prints, per checker and dtype, the
counts and rates, and writes ``docs/reliability.md`` with the table, how the cases are drawn and
every counterexample (its seed reproduces it: ``fuzz_cases.grads_case(seed).run(False)``).

    python experiments/fuzz_checkers.py --cases 2000          # the full run
    python experiments/fuzz_checkers.py --cases 2000 --budget 840   # stop after 14 minutes

With ``--budget`` the run stops when the time is spent, the three checkers taking turns case by
case, and the page says how many cases each got.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")  # as the test suite runs
jax.config.update("jax_numpy_dtype_promotion", "strict")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_cases  # noqa: E402
from tqdm import tqdm  # noqa: E402

CHECKERS = tuple(fuzz_cases.CASES)


def failing_rows(report) -> str:
    """The report's failing rows (its table lines that say FAIL), joined."""
    lines = [line.strip() for line in str(report).splitlines() if "FAIL" in line]
    return " | ".join(lines)[:400]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000, help="cases per checker")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--out", default="/tmp/fuzz_checkers.md", help="where the raw results go")
    opts = ap.parse_args(argv)

    stats = collections.defaultdict(lambda: collections.Counter())
    counterexamples = []
    done = collections.Counter()
    start = time.time()
    total = opts.cases * len(CHECKERS)
    bar = tqdm(total=total, desc="fuzz", unit="case")
    stopped = False
    for i in range(opts.cases):
        for checker in CHECKERS:
            if opts.budget is not None and time.time() - start > opts.budget:
                stopped = True
                break
            seed = opts.first_seed + i
            case = fuzz_cases.CASES[checker](seed)
            out = fuzz_cases.evaluate(case)
            s = stats[(checker, case.dtype)]
            s["cases"] += 1
            done[checker] += 1
            if out.invalid:
                s["invalid"] += 1
            else:
                s["false_fail"] += out.false_fail
                if out.miss is not None:
                    s["planted"] += 1
                    s["miss"] += out.miss
            if out.false_fail:
                counterexamples.append(("false FAIL", case, failing_rows(out.correct_report)))
            if out.miss:
                counterexamples.append(("miss", case, ""))
            bar.update(1)
            bar.set_postfix(ff=sum(v["false_fail"] for v in stats.values()),
                            miss=sum(v["miss"] for v in stats.values()))  # fmt: skip
        if stopped:
            break
    bar.close()
    elapsed = time.time() - start

    rows = []
    header = ("checker", "dtype", "cases", "refused", "false FAILs", "rate", "planted", "misses",
              "rate")  # fmt: skip
    for checker in CHECKERS:
        for dtype in fuzz_cases.DTYPES:
            s = stats.get((checker, dtype))
            if not s:
                continue
            judged = s["cases"] - s["invalid"]
            rows.append((
                checker, dtype, s["cases"], s["invalid"], s["false_fail"],
                f"{s['false_fail'] / max(judged, 1):.1%}", s["planted"], s["miss"],
                f"{s['miss'] / max(s['planted'], 1):.1%}",
            ))  # fmt: skip
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    print(f"{sum(done.values())} cases in {elapsed:.0f} s; per checker {dict(done)}")
    for what, case, rows_ in counterexamples:
        print(f"{what}: {case.label}\n    {rows_}")

    table = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    )
    found = "\n".join(
        f"- **{what}**, `{case.checker}` seed {case.seed}, {case.dtype}: {case.about}"
        + (f"; plant `{case.plant}`" if case.plant else "")
        + (
            f"; change {case.change['delta']:.2e}, leaf max {case.change['leaf_max']:.2e}, "
            f"peak {case.change['peak']:.2e}"
            if what == "miss"
            else ""
        )
        + (f"  \n  `{rows_}`" if rows_ else "")
        for what, case, rows_ in counterexamples
    )
    run = (
        f"{sum(done.values())} cases ({', '.join(f'{k}: {v}' for k, v in done.items())}), "
        f"seeds {opts.first_seed}–{opts.first_seed + max(done.values(), default=0) - 1}, "
        f"{elapsed:.0f} s"
    )
    pathlib.Path(opts.out).write_text(
        f"<!-- {run} -->\n\n{table}\n\n## Counterexamples (raw)\n\n{found or 'none'}\n"
    )
    print(f"wrote {opts.out} (its table and counterexamples go into docs/reliability.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

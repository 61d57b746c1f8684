"""The ``jaxprop`` command.

``jaxprop verify`` checks every registered model's hand gradient against ``jax.grad`` and finite
differences at random parameters (fixed seed, float64) and prints one table; exit status 0 when all
pass, 1 when any fails, 2 for bad options. ``--nodes`` adds, under each model's table, the node
table (hand adjoint of every named node against ``jax.grad``, in backward order), and the JSON
carries it under ``"nodes"`` per model.

``--model`` also takes a user's own model by reference, ``path/to/file.py:factory`` or
``package.module:factory`` (:mod:`jaxprop.cli.load`), mixed freely with built-in names.

``jaxprop train NAME`` trains one of the experiments of :mod:`jaxprop.experiments` (or a user's
model or experiment by reference, as for ``verify --model``) with the hand-derived gradient,
``jax.grad``, or both from the same start, and writes ``metrics.json`` and the plots to ``--out``;
exit status 0, 1 when training diverged (a NaN or infinite loss; the outputs are still written,
with ``null`` for the non-finite numbers), or 2 for bad options (checked before anything is
written: a run that fails on its options leaves no directory behind).

``jaxprop errata`` shows each slip of the source documents failing at its node: for every formula
recorded in docs/errata.md it runs the as-printed backward variant and the corrected one of
:mod:`jaxprop.errata` through the node and gradient checks (float64) and prints a table, one row
per slip (the verdict, the node or leaf where the as-printed variant fails, its error, whether the
corrected form passes and every case is as recorded), then each slip's details (document,
equation, as printed, corrected, diagnosis, every case), no line over 100 characters; ``--json``
for the same as JSON, ``--doc`` to pick documents. Exit status 0 when every slip behaves as
recorded, 1 otherwise, 2 for bad options.

``jaxprop exercise NAME --out FILE`` writes an exercise: a built-in model's forward pass and its
backward pass with one TODO per node (``--solution`` for the answer key); ``jaxprop grade FILE``
grades a filled-in exercise node by node, in a subprocess with a time limit (``--timeout``), and
prints each node's verdict, the diagnosis and the score (``--json`` for a grading system). Exit
status 0 for full marks, 1 otherwise (a submission that does not import, raises or hangs
included), 2 for bad options.

The command line is the top layer: its modules are the commands (:mod:`.commands`), the parser
(:mod:`.parser`) and the loading of a user's model by reference (:mod:`.load`).

May import: ``bench``, ``teach``, ``errata``, ``experiments``, ``training``, ``registry``,
``models``, ``check``, ``model``, ``nn``, ``util``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from jaxprop.cli.parser import build_parser

__all__ = ["main"]


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

"""The side-by-side benchmark; the same as `jaxprop bench` (see `jaxprop bench --help`).

Usage: python experiments/bench.py [--repeats N] [--train-steps N] [--case SUBSTRING] [--out DIR]

`python experiments/bench.py --out docs/bench` regenerates the figures of docs/performance.md.
"""

import sys

from jaxprop.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

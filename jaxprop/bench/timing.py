"""Timing side by side: medians of many repeats, after warm-up and compile, in one process.

Implementations are timed round-robin (one call of each in turn, repeated), so that a slow spell of
a shared machine falls on all of them alike and their ratios stay fair; the order within each round
is shuffled, and each turn is a block of a few consecutive calls, so that no implementation always
runs right after the same other one and a switch costs at most the first call of a block (a BLAS
thread pool that spins for a while after NumPy's call slows whatever runs next).

>>> import jax.numpy as jnp
>>> t = time_side_by_side({"sum": lambda: jnp.sum(jnp.ones(8))}, repeats=5)
>>> sorted(t["sum"])
['max_s', 'median_s', 'min_s', 'repeats']
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping

import jax

__all__ = ["compile_time", "time_side_by_side"]


def _block(out):
    return jax.block_until_ready(out)


def time_side_by_side(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 50,
    warmup: int = 3,
    min_time_s: float = 0.0,
    block: int = 5,
) -> dict[str, dict[str, float]]:
    """Times argument-free callables round-robin; each call's result is waited for.

    Args:
      fns: name → a callable of no arguments (close over the inputs).
      repeats: timed calls of each.
      warmup: untimed calls of each first (compilation happens here).
      min_time_s: keep repeating (round-robin) until each has run at least this long in all.
      block: consecutive calls of one implementation per turn.

    Returns:
      name → {"median_s", "min_s", "max_s", "repeats"}.
    """
    for fn in fns.values():
        for _ in range(warmup):
            _block(fn())
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    rng = random.Random(0)
    while True:
        for _ in range(-(-repeats // block)):
            rng.shuffle(order)
            for name in order:
                fn = fns[name]
                for _ in range(block):
                    t0 = time.perf_counter()
                    _block(fn())
                    samples[name].append(time.perf_counter() - t0)
        if all(sum(s) >= min_time_s for s in samples.values()) or len(samples) == 0:
            break
    return {
        name: {
            "median_s": statistics.median(s),
            "min_s": min(s),
            "max_s": max(s),
            "repeats": len(s),
        }
        for name, s in samples.items()
    }


def compile_time(fn: Callable, *args) -> float:
    """Seconds to trace, lower and compile ``jax.jit(fn)`` for these arguments.

    JAX's in-process caches are cleared first, so nothing compiled earlier is reused.
    """
    jax.clear_caches()
    t0 = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - t0

"""A registry entry that is not a network: a worked example verified like one.

A :class:`~jaxprop.Model` fits a loss over parameters and data. Some of what the documents derive
does not (a Jacobian tensor, a scalar function, an optimiser step); an :class:`Example` is the
smallest thing the registry and ``jaxprop verify`` accept instead: a name, a source and a
``run`` (:class:`RunFn`) that returns a report (a :class:`~jaxprop.GradReport`).

>>> import jax.numpy as jnp
>>> from jaxprop import check_grads
>>> def run(*, seed, dtype, jit, batch):
...     return check_grads(lambda w: jnp.sum(w**2), lambda w: 2 * w, jnp.ones(3), dtype=dtype)
>>> Example("square", "a doctest", run).check().ok
True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

# A report of the checker (a jaxprop.GradReport, a dataclass with ``name`` and ``source`` fields):
# the contract is passive and does not import the checker, not even for its types.
GradReport = Any

__all__ = ["Example"]


class RunFn(Protocol):
    """``run(*, seed, dtype, jit, batch) -> report``: an example's own check."""

    def __call__(self, *, seed: int, dtype: Any, jit: bool, batch: int) -> GradReport: ...


@dataclasses.dataclass(frozen=True)
class Example:
    """A named, cited check.

    Attributes:
      name: a short name, unique in the registry.
      source: the document and equations it implements.
      run: ``(*, seed, dtype, jit, batch) -> GradReport``; ``batch`` sizes the example where it
        has a batch, and may be ignored where it has none.
    """

    name: str
    source: str
    run: RunFn

    def check(
        self, *, seed: int = 0, dtype: Any = "float64", jit: bool = True, batch: int = 16
    ) -> GradReport:
        """Runs the example's check; the report carries the example's name and source."""
        report = self.run(seed=seed, dtype=dtype, jit=jit, batch=batch)
        return dataclasses.replace(report, name=self.name, source=self.source)

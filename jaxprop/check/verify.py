"""Verification of a registry entry: what ``jaxprop verify`` runs.

:func:`verify_entry` dispatches on the kind of entry (:class:`jaxprop.model.Entry`): a
:class:`~jaxprop.Model` is checked at random parameters and data by :func:`verify_model` (its
``extra_checks`` joining the report); an :class:`~jaxprop.Example` runs its own check.

>>> from jaxprop import get_model, verify_model
>>> report = verify_model(get_model("two-layer-mse"))
>>> report.ok, report.name
(True, 'two-layer-mse')
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxprop.check.grad_report import GradReport
from jaxprop.check.grads import check_grads
from jaxprop.check.nodes import ModelReport, check_nodes
from jaxprop.model.contract import Entry, Model, SelfChecking, random_point

__all__ = ["verify_entry", "verify_model"]


def verify_entry(
    entry: Entry,
    *,
    seed: int = 0,
    dtype: Any = "float64",
    jit: bool = True,
    batch: int = 16,
    nodes: bool = False,
) -> GradReport:
    """Verifies one registry entry, whatever its kind: what ``jaxprop verify`` calls per entry.

    Args:
      entry: a :class:`~jaxprop.Model`, or an :class:`~jaxprop.Example` or any other entry with a
        check of its own (:class:`jaxprop.model.SelfChecking`).
      seed: as for :func:`verify_model`.
      dtype: as for :func:`verify_model`.
      jit: as for :func:`verify_model`.
      batch: as for :func:`verify_model`.
      nodes: add the node table (a Model with nodes only; an Example has none).

    Returns:
      The entry's report, named after it and citing its source.

    Raises:
      TypeError: for anything that is not a registry entry.
    """
    if isinstance(entry, Model):
        report = verify_model(entry, seed=seed, dtype=dtype, jit=jit, batch=batch, nodes=nodes)
        for extra in entry.extra_checks:
            more = extra(seed=seed, dtype=dtype, jit=jit, batch=batch)
            report = dataclasses.replace(report, leaves=(*report.leaves, *more.leaves))
        return report
    if isinstance(entry, SelfChecking):
        # An Example, or any entry with a check of its own.
        result = entry.check(seed=seed, dtype=dtype, jit=jit, batch=batch)
        if not isinstance(result, GradReport):
            raise TypeError(
                f"{entry.name}: check() must return a jaxprop.GradReport, got "
                f"{type(result).__name__}"
            )
        return result
    raise TypeError(
        "verify_entry needs a jaxprop.Model, a jaxprop.Example or an entry with name, source and "
        f"check(*, seed, dtype, jit, batch), got {type(entry).__name__}{_name_hint(entry)}"
    )


def _name_hint(value: Any) -> str:
    """For a name passed where an entry was wanted: how to look the entry up."""
    return (
        "; look a registered one up with jaxprop.get_model(name)" if isinstance(value, str) else ""
    )


def verify_model(
    model: Model,
    *,
    seed: int = 0,
    dtype: Any = "float64",
    jit: bool = True,
    batch: int = 16,
    nodes: bool = False,
    **sizes: Any,
) -> GradReport:
    """Checks a model's hand gradient against ``jax.grad`` and finite differences.

    Args:
      model: the :class:`~jaxprop.Model`.
      seed: seeds the parameters, the data and the finite-difference sample.
      dtype: ``"float64"`` (default) or ``"float32"``.
      jit: run the gradients under ``jax.jit``.
      batch: the batch size of the random data.
      nodes: also check the hand adjoint of every node (:func:`jaxprop.check_nodes`) at the
        same point; the result is then a :class:`~jaxprop.check.nodes.ModelReport` whose ``nodes``
        is the node table, and which passes only when every leaf and every node passes.
      **sizes: passed to ``model.init`` (defaults: the model's own).

    Returns:
      The :class:`~jaxprop.GradReport`, named after the model and citing its source.

    Raises:
      TypeError: if ``model`` is not a :class:`~jaxprop.Model`.
      ValueError: if ``seed`` is not an integer >= 0 or ``batch`` not an integer >= 1 (a batch
        of 0 would make the mean loss NaN), or the model has no ``init`` or ``sample``.
    """
    if not isinstance(model, Model):
        raise TypeError(
            f"verify_model needs a jaxprop.Model, got {type(model).__name__}{_name_hint(model)}"
        )
    for name, value, least in (("seed", seed, 0), ("batch", batch, 1)):
        # Checked here: the key and the data are drawn before check_grads sees them.
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    params, x, Y = random_point(model, jax.random.key(seed), batch, **sizes)
    report = check_grads(
        model.loss,
        model.grad,
        params,
        x,
        Y,
        dtype=dtype,
        jit=jit,
        seed=seed,
        name=model.name,
        source=model.source,
    )
    if not nodes:
        return report
    node_report = check_nodes(model, params, x, Y, dtype=dtype, jit=jit)
    fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    return ModelReport(**fields, nodes=node_report)

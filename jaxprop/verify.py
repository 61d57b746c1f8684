"""Verification of a model at random parameters and data: what ``jaxprop verify`` runs.

>>> from jaxprop import get_model, verify_model
>>> report = verify_model(get_model("two-layer-mse"))
>>> report.ok, report.name
(True, 'two-layer-mse')
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxprop.check import GradReport, check_grads
from jaxprop.model import Model
from jaxprop.nodes import ModelReport, check_nodes

__all__ = ["verify_model"]


def random_point(model: Model, key: jax.Array, batch: int = 16, **sizes):
    """Random parameters (the model's init, every leaf then perturbed, so that zero biases do not
    hide a wrong term) and data that fits them: ``(params, x, Y)``.

    Raises:
      ValueError: if the model has no ``init`` or no ``sample``.
    """
    if model.init is None or model.sample is None:
        raise ValueError(
            f"{model.name}: a random point needs the model's init and sample; pass params, x and "
            "Y yourself (check_grads, check_nodes) or give the Model init= and sample="
        )
    k_init, k_noise, k_data = jax.random.split(key, 3)
    params = model.init(k_init, **sizes)
    leaves, treedef = jax.tree.flatten(params)
    noise = jax.random.split(k_noise, len(leaves))
    params = jax.tree.unflatten(
        treedef,
        [
            p + 0.1 * jax.random.normal(k, p.shape, p.dtype)
            for p, k in zip(leaves, noise, strict=False)
        ],
    )
    x, Y = model.sample(k_data, params, batch)
    return params, x, Y


def verify_model(
    model: Model,
    *,
    seed: int = 0,
    dtype="float64",
    jit: bool = True,
    batch: int = 16,
    nodes: bool = False,
    **sizes,
) -> GradReport:
    """Checks a model's hand gradient against ``jax.grad`` and finite differences.

    Args:
      model: the :class:`~jaxprop.Model`.
      seed: seeds the parameters, the data and the finite-difference sample.
      dtype: ``"float64"`` (default) or ``"float32"``.
      jit: run the gradients under ``jax.jit``.
      batch: the batch size of the random data.
      nodes: also check the hand adjoint of every node (:func:`jaxprop.check_nodes`) at the
        same point; the result is then a :class:`~jaxprop.nodes.ModelReport` whose ``nodes``
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
        hint = (
            "; look a registered one up with jaxprop.get_model(name)"
            if isinstance(model, str)
            else ""
        )
        raise TypeError(f"verify_model needs a jaxprop.Model, got {type(model).__name__}{hint}")
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
    return ModelReport(**{f.name: getattr(report, f.name) for f in dataclasses.fields(report)},
                       nodes=node_report)  # fmt: skip

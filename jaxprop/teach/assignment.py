"""What an assignment is: the models that have an exercise, the fixed point a submission is
graded at, and the ``TODO`` placeholder an exercise leaves for each node's adjoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["BATCH", "SEED", "TODO", "exercise_models"]

#: The graded point: seed of parameters and data, and the batch size (7: a prime, so that a
#: factor 1/B missing is told apart from a factor 2, and no node is square).
SEED, BATCH = 0, 7


def TODO(node: str, like: Any = None, *, shape: Sequence[int] | None = None) -> jax.Array:
    """The placeholder of an exercise's blank: zeros shaped like ``like`` (or of ``shape``, or a
    scalar), so that a partly filled-in backward pass still runs and the grader reports the blank's
    node as not filled in.

    Args:
      node: the node (or the pattern of nodes, ``"Z{i}"``) whose adjoint the blank computes.
      like: an array of the blank's shape.
      shape: the blank's shape, where no array in scope has it.

    >>> TODO("z2", like=jnp.ones((2, 3))).shape
    (2, 3)
    """
    del node  # read by the grader from the file's text
    if like is not None:
        return jnp.zeros_like(like)
    return jnp.zeros(() if shape is None else tuple(shape))


def exercise_models() -> list[str]:
    """The names of the registered :class:`~jaxprop.Model` entries: those with an exercise."""
    from jaxprop.model.contract import Model
    from jaxprop.registry import REGISTRY

    return [name for name, entry in REGISTRY.items() if isinstance(entry, Model)]


def _get_model(name: Any, config: Mapping[str, Any]):
    from jaxprop.model.contract import Model
    from jaxprop.registry import REGISTRY, get_model
    from jaxprop.util.names import did_you_mean

    if isinstance(name, str) and name in REGISTRY and not isinstance(REGISTRY[name], Model):
        raise ValueError(
            f"{name!r} is a worked example ({type(REGISTRY[name]).__name__}), not a Model with a "
            f"backward pass; exercises exist for {exercise_models()}"
        )
    if not isinstance(name, str) or name not in REGISTRY:
        models = exercise_models()
        raise ValueError(
            f"unknown model {name!r}{did_you_mean(name, models)}; exercises exist for {models}"
        )
    return get_model(name, **config)


def _point(model):
    """The graded point, float64: ``(params, x, Y)`` (memoised: drawing it compiles JAX's random
    number generators for each shape, the most of a grading's time)."""
    from jaxprop.check.trees import memoised

    return memoised(_draw_point, model)


def _draw_point(model):
    from jaxprop.check.tolerance import precision
    from jaxprop.check.trees import cast
    from jaxprop.model.contract import random_point

    with precision("float64"):
        point = random_point(model, jax.random.key(SEED), BATCH)
        return cast(point, jnp.float64)

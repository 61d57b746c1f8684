"""Argument checks for a model's functions: a parameter tree, an input or a size that does not fit
is a ``ValueError`` naming the argument, its shape and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Params = Any


def _describe(value) -> str:
    """What a function returned, for a message: ``a tuple of 3``, ``a dict``, ``an array of shape
    (5, 2)``."""
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}" + (
            f" whose second element is {_describe(value[1])}" if len(value) == 2 else ""
        )
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)}"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _dtype(x) -> jnp.dtype:
    # The dtype JAX computes in: a float64 NumPy array is float32 unless 64-bit mode is on.
    return jax.dtypes.canonicalize_dtype(jnp.result_type(x))


def check_same_shape(out: Array, Y: Array) -> None:
    """Raises ``ValueError`` unless the labels have the output's shape and dtype."""
    if jnp.shape(Y) != jnp.shape(out):
        raise ValueError(
            f"labels Y have shape {jnp.shape(Y)} but the network output has shape "
            f"{jnp.shape(out)}: expected Y of shape {jnp.shape(out)}"
        )
    if _dtype(Y) != _dtype(out):
        raise ValueError(
            f"labels Y have dtype {_dtype(Y)} but the network output is {_dtype(out)}: "
            f"cast Y with Y.astype({_dtype(out).name!r})"
        )


def check_param_shapes(
    params: Params, spec: Mapping[str, tuple[str, ...]], model: str
) -> dict[str, int]:
    """Checks a dict of parameters against named dimensions and returns the sizes.

    Args:
      params: the parameter dict.
      spec: for each key, the names of its dimensions, e.g. ``{"W": ("n_hidden", "n_in"),
        "b": ("n_hidden",)}``; a name takes its size from the first leaf that has it.
      model: the model's name, for the message.

    Returns:
      The size of every named dimension.

    Raises:
      ValueError: naming the leaf, its shape and the shape expected, when a key is missing or
        extra or two leaves disagree on a dimension.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"{model}: params must be a dict, got {type(params).__name__}")
    missing = sorted(set(spec) - set(params))
    extra = sorted(set(params) - set(spec))
    if missing or extra:
        raise ValueError(
            f"{model}: params have keys {sorted(params)}; expected {sorted(spec)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    sizes: dict[str, int] = {}
    origin: dict[str, str] = {}
    for key, dims in spec.items():
        shape = jnp.shape(params[key])
        if len(shape) != len(dims):
            raise ValueError(
                f"{model}: params[{key!r}] has shape {shape}; expected {len(dims)} dimensions "
                f"({', '.join(dims)})"
            )
        for dim, size in zip(dims, shape, strict=False):
            if dim not in sizes:
                sizes[dim], origin[dim] = size, key
            elif sizes[dim] != size:
                expected = tuple(sizes.get(d, "?") for d in dims)
                raise ValueError(
                    f"{model}: params[{key!r}] has shape {shape}, expected {expected} = "
                    f"({', '.join(dims)}): {dim} = {sizes[dim]} from params[{origin[dim]!r}]"
                )
    return sizes


def check_input(
    x: Array, width: int, model: str, dtype=None, what: str = "x", allow_empty: bool = False
) -> None:
    """Raises unless ``x`` is an array holding a batch of rows of the given width.

    Args:
      x: the input, shape (batch, width).
      width: the width each row must have.
      model: the model's name, for the message.
      dtype: when given, the dtype ``x`` must have (the parameters').
      what: the input's name, for the message.
      allow_empty: accept a batch of no rows (a loss that sums over the batch); a batch MEAN
        over no rows is NaN, so by default an empty batch is an error.

    Raises:
      TypeError: ``x`` is not a JAX or NumPy array (a list, say).
      ValueError: naming the shape (or dtype) ``x`` has and the one expected.
    """
    if not isinstance(x, (jax.Array, np.ndarray)):
        raise TypeError(
            f"{model}: input {what} is a {type(x).__name__}; expected an array of shape "
            f"(batch, {width}) (convert it with jnp.asarray)"
        )
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(
            f"{model}: input {what} has shape {x.shape}; expected (batch, {width}), "
            f"one row of width {width} per example"
        )
    if not allow_empty and x.shape[0] == 0:
        raise ValueError(
            f"{model}: input {what} has shape {x.shape}, no examples; the loss is a mean "
            "over the batch and needs at least one row"
        )
    if dtype is not None and _dtype(x) != _dtype(dtype):
        raise ValueError(
            f"{model}: input {what} has dtype {_dtype(x)} but the parameters are "
            f"{_dtype(dtype)}: cast {what} with {what}.astype({_dtype(dtype).name!r})"
        )


def check_batch_size(model: str, batch) -> None:
    """Raises ``ValueError`` unless ``batch`` (a number of examples to draw) is a positive int."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"{model}: batch must be a positive integer, got {batch!r}")


def check_sizes(model: str, what: str, sizes, dtype) -> tuple[int, ...]:
    """The sizes as Python ints after checking each is a positive integer and dtype is floating.

    Raises:
      ValueError: naming the model, the sizes and the bad entry (a float such as 2.5 would
        otherwise be truncated to 2), or the dtype.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ValueError(f"{model}: {what} must be a sequence of sizes, got {sizes!r}")
    sizes = tuple(sizes)
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(
                f"{model}: {what} {sizes}: every size must be a positive integer, got {n!r}"
            )
    if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
        raise ValueError(
            f"{model}: dtype {jnp.dtype(dtype).name} is not floating-point; the parameters are "
            "differentiated (e.g. dtype=jnp.float32)"
        )
    return tuple(int(n) for n in sizes)

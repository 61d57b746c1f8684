"""Losses over a batch, each written beside its hand-derived gradient.

Every loss is a :class:`Loss`: ``fn(out, Y)`` is a scalar, the MEAN over the leading batch axis of a
per-example loss, and ``grad(out, Y)`` is ``∂L/∂out``, the same shape as ``out``. The mean keeps the
gradient's scale independent of the batch size; a single example is a batch of one.

>>> import jax.numpy as jnp
>>> from jaxprop import LOSSES
>>> y, Y = jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]])
>>> float(LOSSES["half_squared_error"].fn(y, Y))
2.5
>>> LOSSES["half_squared_error"].grad(y, Y).tolist()
[[1.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxprop.nn.activations import ACTIVATIONS

__all__ = ["LOSSES", "Loss", "log_softmax"]

Array = jax.Array


class Loss(NamedTuple):
    """A batch loss and its gradient with respect to the network output.

    Attributes:
      name: the name it is registered under.
      fn: ``(out, Y) -> L``, out and Y of shape (B, m); a scalar, the mean over the B examples.
      grad: ``(out, Y) -> ∂L/∂out`` of shape (B, m).
    """

    name: str
    fn: Callable[[Array, Array], Array]
    grad: Callable[[Array, Array], Array]


def _batch(out):
    return out.shape[0]


def log_softmax(z: Array) -> Array:
    """log softmax(z) along the last axis, by log-sum-exp: finite for |z| up to 1e4 and beyond."""
    m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    return z - m - jnp.log(jnp.sum(jnp.exp(z - m), axis=-1, keepdims=True))


def _half_squared_error(y, Y):
    # L = ½ (y − Y)², summed over outputs (000_5eab1a4fa2460359.txt, the MSE definition).
    return jnp.sum(0.5 * (y - Y) ** 2) / _batch(y)


def _half_squared_error_grad(y, Y):
    # dL = ∂L/∂y = y − Y (000_5eab1a4fa2460359.txt, definition of dL), per example of the mean.
    return (y - Y) / _batch(y)


def _softmax_cross_entropy(z, Y):
    # Loss = −Σ_k Y_k ln ŷ_k with ŷ = softmax(z) (001_90440b38c2c51fc3.txt eqs (4), (5); the
    # document prints the binary form without the minus sign, see docs/errata.md).
    return -jnp.sum(Y * log_softmax(z)) / _batch(z)


def _softmax_cross_entropy_grad(z, Y):
    # ∂Loss/∂z2 = ŷ − y for one-hot y (001_90440b38c2c51fc3.txt eq (7), sign corrected).
    return (ACTIVATIONS["softmax"].fn(z) - Y) / _batch(z)


def _mean_squared_error(out, y):
    # E = 1/(b·|out|) Σ (y − out)² (003_c347acbe1cb23503.txt, the batch-wise MSE).
    return jnp.sum((y - out) ** 2) / out.size


def _mean_squared_error_grad(out, y):
    # ∂E/∂out_j = 2/(b·|out|) (out_j − y_j) (003_c347acbe1cb23503.txt, output-layer base case).
    return 2.0 * (out - y) / out.size


def _squared_error(out, y):
    # L = ‖y − f_K‖² per example (002_dadcaa6bdb722c5e.txt (5.114); ‖e‖² of (5.76)), batch mean.
    return jnp.sum((y - out) ** 2) / _batch(out)


def _squared_error_grad(out, y):
    # ∂L/∂f_K = −2 (y − f_K)ᵀ = 2 (f_K − y)ᵀ (002_dadcaa6bdb722c5e.txt (5.81) with (5.77)),
    # per example of the mean.
    return 2.0 * (out - y) / _batch(out)


LOSSES: dict[str, Loss] = {
    "half_squared_error": Loss("half_squared_error", _half_squared_error, _half_squared_error_grad),
    "softmax_cross_entropy": Loss(
        "softmax_cross_entropy", _softmax_cross_entropy, _softmax_cross_entropy_grad
    ),
    "mean_squared_error": Loss("mean_squared_error", _mean_squared_error, _mean_squared_error_grad),
    "squared_error": Loss("squared_error", _squared_error, _squared_error_grad),
}

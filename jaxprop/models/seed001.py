"""Seed 001, "tanh–softmax 2-500-2": z1 = x W1 + b1, a1 = tanh z1, z2 = a1 W2 + b2, ŷ = softmax z2.

Source: 001_90440b38c2c51fc3.txt, eqs (1)–(17). The document writes x as a row vector, so a batch
is the matrix x of shape (B, n_in) with one example per row, and every equation holds for the batch
as written. The loss is the MEAN over the batch of the cross-entropy −Σ_k Y_k ln ŷ_k, with Y one-hot
(or any probability rows) of shape (B, n_out).

Shapes: W1 (n_in, n_hidden), b1 (n_hidden,), W2 (n_hidden, n_out), b2 (n_out,); the document's
sizes are n_in = 2, n_hidden = 500, n_out = 2.

Where the document slips, the code follows the mathematics (docs/errata.md): the loss is the
negative log-likelihood, so ∂Loss/∂z2 = ŷ − y (eq (7) prints y − ŷ); ∂z2/∂a1 = W2 (eq (10) prints
z2); the tanh′ factor multiplies elementwise, inside the transposed product (eq (16)).

>>> import jax
>>> from jaxprop.models import seed001
>>> model = seed001.tanh_softmax()
>>> params = model.init(jax.random.key(0))
>>> params["W1"].shape, params["W2"].shape
((2, 500), (500, 2))
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxprop.model.contract import Model, tap
from jaxprop.model.validate import check_batch_size, check_input, check_param_shapes
from jaxprop.nn.activations import ACTIVATIONS
from jaxprop.nn.losses import LOSSES

__all__ = ["NODES", "SOURCE", "models", "tanh_softmax"]

SOURCE = "001_90440b38c2c51fc3.txt eqs (1)-(4), (7)-(17)"
NODES = ("z1", "a1", "z2")
_NAME = "tanh-softmax"
_SHAPES = {"W1": ("n_in", "n_hidden"), "b1": ("n_hidden",), "W2": ("n_hidden", "n_out"),
           "b2": ("n_out",)}  # fmt: skip
_tanh, _softmax = ACTIVATIONS["tanh"], ACTIVATIONS["softmax"]
_loss = LOSSES["softmax_cross_entropy"]


def init(key, n_in: int = 2, n_hidden: int = 500, n_out: int = 2, dtype=jnp.float32):
    """Parameters {W1, b1, W2, b2}: weights scaled by 1/√fan_in, zero biases."""
    k1, k2 = jax.random.split(key)
    return {
        "W1": jax.random.normal(k1, (n_in, n_hidden), dtype) / math.sqrt(n_in),
        "b1": jnp.zeros((n_hidden,), dtype),
        "W2": jax.random.normal(k2, (n_hidden, n_out), dtype) / math.sqrt(n_hidden),
        "b2": jnp.zeros((n_out,), dtype),
    }


def forward(params, x, taps=None):
    """The forward pass, eqs (1)–(4).

    Args:
      params: {W1, b1, W2, b2}.
      x: inputs, shape (B, n_in).
      taps: optional perturbations of the nodes z1, a1, z2 (see :func:`jaxprop.tap`).

    Returns:
      ``(z2, saved)``: the logits z2 of shape (B, n_out) (the loss applies the softmax by
      log-sum-exp) and the saved values z1, a1, z2, y_hat.
    """
    sizes = check_param_shapes(params, _SHAPES, _NAME)
    check_input(x, sizes["n_in"], _NAME, params["W1"].dtype)
    z1 = tap(taps, "z1", x @ params["W1"] + params["b1"][None, :])  # eq (1)
    a1 = tap(taps, "a1", _tanh.fn(z1))  # eq (2)
    z2 = tap(taps, "z2", a1 @ params["W2"] + params["b2"][None, :])  # eq (3)
    y_hat = _softmax.fn(z2)  # eq (4)
    return z2, {"z1": z1, "a1": a1, "z2": z2, "y_hat": y_hat}


def backward(params, x, saved, Y):
    """The hand backward pass, eqs (7)–(17) corrected: returns (grads, adjoints)."""
    a1 = saved["a1"]
    # ∂Loss/∂z2 = ŷ − y, over B for the batch mean (eq (7), sign corrected).
    dz2 = _loss.grad(saved["z2"], Y)
    # ∂z2/∂W2 = a1: ∂Loss/∂W2 = a1ᵀ (ŷ − y) (eqs (8), (14)).
    dW2 = a1.T @ dz2
    # ∂z2/∂b2 = 1: summed over the batch's rows (eqs (9), (15)).
    db2 = jnp.sum(dz2, axis=0)
    # ∂z2/∂a1 = W2, applied transposed to the row adjoint (eq (10), corrected from z2).
    da1 = dz2 @ params["W2"].T
    # ∂tanh(z1)/∂z1 = 1 − tanh²(z1), elementwise, from the saved a1 (eq (11)).
    dz1 = _tanh.vjp(saved["z1"], a1, da1)
    # ∂z1/∂W1 = x: ∂Loss/∂W1 = xᵀ [(1 − tanh² z1) ⊙ (ŷ − y) W2ᵀ] (eqs (12), (16)).
    dW1 = x.T @ dz1
    # ∂z1/∂b1 = 1: summed over the batch's rows (eqs (13), (17)).
    db1 = jnp.sum(dz1, axis=0)
    grads = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
    return grads, {"z1": dz1, "a1": da1, "z2": dz2}


def sample(key, params, batch: int):
    """Random inputs x ~ N(0, 1) of shape (B, n_in) and one-hot labels Y of shape (B, n_out)."""
    sizes = check_param_shapes(params, _SHAPES, _NAME)
    check_batch_size(_NAME, batch)
    kx, ky = jax.random.split(key)
    dtype = params["W1"].dtype
    x = jax.random.normal(kx, (batch, sizes["n_in"]), dtype)
    Y = jax.nn.one_hot(jax.random.randint(ky, (batch,), 0, sizes["n_out"]), sizes["n_out"],
                       dtype=dtype)  # fmt: skip
    return x, Y


def tanh_softmax() -> Model:
    """Seed 001's network as a :class:`~jaxprop.Model` (sizes are chosen by ``init``)."""
    return Model(
        name=_NAME,
        source=SOURCE,
        init=init,
        forward=forward,
        objective=_loss,
        backward=backward,
        sample=sample,
        nodes=NODES,
    )


def models() -> tuple[Model, ...]:
    """The models this module registers (the registry builds them from here; so does the
    mutation test of the backward pass, from a fresh copy of this module)."""
    return (tanh_softmax(),)

"""Seed 000, "two-layer MSE": y = g(U h + c), h = f(W x + b), L = ½(y − Y)².

Source: 000_5eab1a4fa2460359.txt (section 2.3, the gradients db, dW, dc, dU). The document writes
one example as a column vector; the math below is written for that case and lifted to a batch with
``jax.vmap``. A batch is a matrix x of shape (B, n_in), one example per row, and the loss is the
MEAN over the batch of ½‖y − Y‖².

Shapes: W (n_hidden, n_in), b (n_hidden,), U (n_out, n_hidden), c (n_out,).

The document's db reads ``g′(ŷ) U f′(ĥ) dL``: as a product of matrices that does not type-check
for n_out > 1 or n_hidden ≠ n_out. The adjoint flows back through ŷ = U h + c as Uᵀ, and the
activation derivatives act elementwise: db = f′(ĥ) ⊙ Uᵀ (g′(ŷ) ⊙ dL). See docs/errata.md.

>>> import jax
>>> from jaxprop.models import seed000
>>> model = seed000.two_layer_mse(f="tanh", g="sigmoid")
>>> params = model.init(jax.random.key(0), n_in=3, n_hidden=4, n_out=2)
>>> x, Y = model.sample(jax.random.key(1), params, batch=5)
>>> grads, adjoints = model.backward_from(params, x, Y)
>>> grads["W"].shape, adjoints["h_hat"].shape
((4, 3), (5, 4))
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxprop.model.contract import Model, tap
from jaxprop.model.validate import check_batch_size, check_input, check_param_shapes
from jaxprop.nn.activations import Activation, get_activation
from jaxprop.nn.losses import LOSSES

__all__ = ["NODES", "SOURCE", "models", "two_layer_mse"]

SOURCE = "000_5eab1a4fa2460359.txt §2.3: dL, ∂y/∂ŷ … ∂ĥ/∂b, db, dW, dc, dU"
NODES = ("h_hat", "h", "y_hat", "y")
_NAME = "two-layer-mse"


def init(key, n_in: int = 3, n_hidden: int = 16, n_out: int = 2, dtype=jnp.float32):
    """Parameters {W, b, U, c}: weights scaled by 1/√fan_in, zero biases."""
    kW, kU = jax.random.split(key)
    return {
        "W": jax.random.normal(kW, (n_hidden, n_in), dtype) / math.sqrt(n_in),
        "b": jnp.zeros((n_hidden,), dtype),
        "U": jax.random.normal(kU, (n_out, n_hidden), dtype) / math.sqrt(n_hidden),
        "c": jnp.zeros((n_out,), dtype),
    }


_SHAPES = {
    "W": ("n_hidden", "n_in"),
    "b": ("n_hidden",),
    "U": ("n_out", "n_hidden"),
    "c": ("n_out",),
}


def _forward_one(params, x, f: Activation, g: Activation, taps):
    """One example, column vector x of shape (n_in,)."""
    h_hat = tap(taps, "h_hat", params["W"] @ x + params["b"])  # ĥ = W x + b
    h = tap(taps, "h", f.fn(h_hat))  # h = f(ĥ)
    y_hat = tap(taps, "y_hat", params["U"] @ h + params["c"])  # ŷ = U h + c
    y = tap(taps, "y", g.fn(y_hat))  # y = g(ŷ)
    return y, {"h_hat": h_hat, "h": h, "y_hat": y_hat, "y": y}


def _backward_one(params, x, saved, dL, f: Activation, g: Activation):
    """One example: dL = ∂L/∂y of shape (n_out,) to (grads, adjoints)."""
    h_hat, h, y_hat, y = saved["h_hat"], saved["h"], saved["y_hat"], saved["y"]
    # ∂y/∂ŷ = g′(ŷ): dc = g′(ŷ) dL (000, dc), elementwise.
    dc = g.vjp(y_hat, y, dL)
    # ∂ŷ/∂U = h: dU = dc hᵀ (000, dU).
    dU = jnp.outer(dc, h)
    # ∂ŷ/∂h = U, which carries the adjoint back transposed: ∂L/∂h = Uᵀ dc (000, db, corrected).
    dh = params["U"].T @ dc
    # ∂h/∂ĥ = f′(ĥ): db = f′(ĥ) ⊙ Uᵀ (g′(ŷ) dL) (000, db, corrected).
    db = f.vjp(h_hat, h, dh)
    # ∂ĥ/∂W = x: dW = db xᵀ (000, dW).
    dW = jnp.outer(db, x)
    grads = {"W": dW, "b": db, "U": dU, "c": dc}
    adjoints = {"h_hat": db, "h": dh, "y_hat": dc, "y": dL}
    return grads, adjoints


def two_layer_mse(f: str | Activation = "tanh", g: str | Activation = "sigmoid") -> Model:
    """Seed 000's network with hidden activation ``f`` and output activation ``g``.

    Args:
      f: the hidden activation, a name in :data:`jaxprop.ACTIVATIONS` or an Activation.
      g: the output activation, likewise.

    Returns:
      A :class:`~jaxprop.Model`. ``forward(params, x)`` takes x of shape (B, n_in) and returns y of
      shape (B, n_out); the loss is mean_B ½‖y − Y‖²; adjoints are returned per example, shape
      (B, size of the node).
    """
    f, g = get_activation(f), get_activation(g)
    loss = LOSSES["half_squared_error"]

    def forward(params, x, taps=None):
        sizes = check_param_shapes(params, _SHAPES, _NAME)
        check_input(x, sizes["n_in"], _NAME, params["W"].dtype)
        return jax.vmap(_forward_one, in_axes=(None, 0, None, None, 0))(params, x, f, g, taps)

    def backward(params, x, saved, Y):
        # dL = y − Y for each example, divided by B for the batch mean.
        dL = loss.grad(saved["y"], Y)
        per_example, adjoints = jax.vmap(_backward_one, in_axes=(None, 0, 0, 0, None, None))(
            params, x, saved, dL, f, g
        )
        # The batch loss is a sum over examples: so is its gradient.
        grads = jax.tree.map(lambda d: jnp.sum(d, axis=0), per_example)
        return grads, adjoints

    def sample(key, params, batch: int):
        sizes = check_param_shapes(params, _SHAPES, _NAME)
        check_batch_size(_NAME, batch)
        kx, ky = jax.random.split(key)
        dtype = params["W"].dtype
        x = jax.random.normal(kx, (batch, sizes["n_in"]), dtype)
        Y = jax.random.uniform(ky, (batch, sizes["n_out"]), dtype)
        return x, Y

    name = _NAME if (f.name, g.name) == ("tanh", "sigmoid") else f"{_NAME}[f={f.name},g={g.name}]"
    return Model(
        name=name,
        source=SOURCE,
        init=init,
        forward=forward,
        objective=loss,
        backward=backward,
        sample=sample,
        nodes=NODES,
    )


def models() -> tuple[Model, ...]:
    """The models this module registers (the registry builds them from here; so does the
    mutation test of the backward pass, from a fresh copy of this module)."""
    return (two_layer_mse(),)

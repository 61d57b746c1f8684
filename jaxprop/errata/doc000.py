"""Document 000 (000_5eab1a4fa2460359.txt §2.3) as printed: the slips in db and dU.

The network: y = g(U h + c), h = f(W x + b) with f = tanh, g = sigmoid, column vectors per example
(x of shape (n_in,), h of shape (n_hidden,), y of shape (n_out,)), L = ½(y − Y)², the public
``two-layer-mse`` model of :mod:`jaxprop.models.seed000` with its per-example backward pass
replaced and lifted over the batch by ``jax.vmap``. Nodes: ``h_hat`` = ĥ = W x + b, ``h``,
``y_hat`` = ŷ = U h + c, ``y``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

import jaxprop
from jaxprop.errata.slip import Slip
from jaxprop.models import seed000

__all__ = ["SLIPS", "model"]

_f, _g = jaxprop.ACTIVATIONS["tanh"], jaxprop.ACTIVATIONS["sigmoid"]
_SQUARE = {"n_in": 3, "n_hidden": 3, "n_out": 3}  # the printed products run
_DOCUMENT = {"n_in": 3, "n_hidden": 5, "n_out": 2}  # n_hidden ≠ n_out: they cannot be formed


def model(backward_one: Callable, name: str) -> jaxprop.Model:
    """Seed 000's network (f = tanh, g = sigmoid) with a replaced per-example backward pass.

    Args:
      backward_one: ``(params, x, saved, dL, f, g) -> (grads, adjoints)`` for ONE example: x of
        shape (n_in,), the saved nodes and dL = ∂L/∂y of one example.
      name: the model's name.

    Returns:
      The model; its backward maps ``backward_one`` over the batch and sums the gradients.
    """
    loss = jaxprop.LOSSES["half_squared_error"]

    def backward(params, x, saved, Y):
        dL = loss.grad(saved["y"], Y)  # dL = y − Y (000 §2.3, dL), over B for the batch mean
        per, adjoints = jax.vmap(backward_one, in_axes=(None, 0, 0, 0, None, None))(
            params, x, saved, dL, _f, _g
        )
        return jax.tree.map(lambda d: jnp.sum(d, axis=0), per), adjoints

    return dataclasses.replace(seed000.two_layer_mse(), name=name, backward=backward)


def _backward_one(dh_rule: Callable, db_rule: Callable, dU_rule: Callable | None = None):
    """A per-example backward pass of 000 with the rules for ∂L/∂h, db and dU plugged in."""

    def backward_one(params, x, saved, dL, f, g):
        h_hat, h, y_hat, y = saved["h_hat"], saved["h"], saved["y_hat"], saved["y"]
        dc = g.vjp(y_hat, y, dL)  # dc = g′(ŷ) dL (000 §2.3, dc), shape (n_out,)
        dU = jnp.outer(dc, h) if dU_rule is None else dU_rule(params, h, y_hat, y, dL, g)
        dh = dh_rule(params, dc)  # ∂L/∂h, shape (n_hidden,)
        db = db_rule(params, h_hat, h, y_hat, y, dL, dh, f, g)  # shape (n_hidden,)
        dW = jnp.outer(db, x)  # dW = db xᵀ (000 §2.3, dW), shape (n_hidden, n_in)
        grads = {"W": dW, "b": db, "U": dU, "c": dc}
        return grads, {"h_hat": db, "h": dh, "y_hat": dc, "y": dL}

    return backward_one


def _dh_correct(p, dc):
    """∂L/∂h = Uᵀ dc: the adjoint flows back through ŷ = U h + c as Uᵀ (shape (n_hidden,))."""
    return p["U"].T @ dc


def _dh_printed_U(p, dc):
    """As printed in db = g′(ŷ) U f′(ĥ) dL (000 §2.3, db): U where Uᵀ must stand."""
    return p["U"] @ dc


def _db_correct(p, h_hat, h, y_hat, y, dL, dh, f, g):
    """db = f′(ĥ) ⊙ ∂L/∂h (000 §2.3, db corrected), shape (n_hidden,)."""
    return f.vjp(h_hat, h, dh)


def _db_printed_order(p, h_hat, h, y_hat, y, dL, dh, f, g):
    """db = g′(ŷ) U f′(ĥ) dL (000 §2.3, db) read right to left: f′(ĥ) applied to dL first and
    g′(ŷ) last (with U transposed, so that only the order of the factors differs)."""
    return g.vjp(y_hat, y, p["U"].T @ f.vjp(h_hat, h, dL))


def _dU_printed(p, h, y_hat, y, dL, g):
    """dU = g′(ŷ) hᵀ dL as printed (000 §2.3, dU), the product (g′(ŷ) hᵀ) dL: a vector of shape
    (n_out,), not the (n_out, n_hidden) matrix dU."""
    return jnp.outer(g.deriv(y_hat), h) @ dL


def _corrected() -> jaxprop.Model:
    return model(_backward_one(_dh_correct, _db_correct), "000 corrected")


SLIPS = (
    Slip(
        "000-db-U",
        "000",
        "db (and dW = db xᵀ)",
        "db = g′(ŷ) U f′(ĥ) dL",
        "db = f′(ĥ) ⊙ Uᵀ (g′(ŷ) ⊙ dL): the adjoint flows back through ŷ = U h + c as Uᵀ",
        lambda: model(_backward_one(_dh_printed_U, _db_correct), "000 db with U (as printed)"),
        _corrected,
        node="h",
        sizes=dict(_SQUARE),
        wrong_sizes=dict(_DOCUMENT),
        note="U instead of Uᵀ in the step ∂ŷ/∂h. With n_hidden ≠ n_out the printed product "
        "cannot be formed; with n_hidden = n_out it runs and the adjoint of h is wrong.",
    ),
    Slip(
        "000-db-order",
        "000",
        "db",
        "db = g′(ŷ) U f′(ĥ) dL",
        "db = f′(ĥ) ⊙ Uᵀ (g′(ŷ) ⊙ dL): dL first meets g′(ŷ), then Uᵀ, then f′(ĥ)",
        lambda: model(_backward_one(_dh_correct, _db_printed_order), "000 db factor order"),
        _corrected,
        node="h_hat",
        sizes=dict(_SQUARE),
        wrong_sizes=dict(_DOCUMENT),
        note="The order of the factors: the chain ∂L/∂y ∂y/∂ŷ ∂ŷ/∂h ∂h/∂ĥ ∂ĥ/∂b of the first "
        "line is right (a row vector times Jacobians), but the printed result moves dL to the "
        "end, so f′(ĥ) multiplies dL and g′(ŷ) comes last. Here the variant keeps the correct "
        "adjoint of h and applies the printed order for db alone: the node check blames ĥ.",
    ),
    Slip(
        "000-dU",
        "000",
        "dU",
        "dU = g′(ŷ) hᵀ dL = dc hᵀ",
        "dU = (g′(ŷ) ⊙ dL) hᵀ = dc hᵀ (the final form is right)",
        lambda: model(_backward_one(_dh_correct, _db_correct, _dU_printed), "000 dU as printed"),
        _corrected,
        node=None,
        leaf="U",
        sizes=dict(_SQUARE),
        wrong_sizes=dict(_DOCUMENT),
        note="The middle form (g′(ŷ) hᵀ) dL is a vector, not a matrix (and needs n_hidden = "
        "n_out to be formed at all); it is a parameter gradient, so no node fails.",
    ),
)

"""Document 000 (000_5eab1a4fa2460359.txt §2.3) as printed: db, the middle form of dW, and dU.

The network: y = g(U h + c), h = f(W x + b) with f = tanh, g = sigmoid, column vectors per example
(x of shape (n_in,), h of shape (n_hidden,), y of shape (n_out,)), L = ½(y − Y)², the public
``two-layer-mse`` model of :mod:`jaxprop.models.seed000` with its per-example backward pass
replaced and lifted over the batch by ``jax.vmap``. Nodes: ``h_hat`` = ĥ = W x + b, ``h``,
``y_hat`` = ŷ = U h + c, ``y``.

The printed products are read literally (:func:`jaxprop.errata.slip.literal_product`), with the
factors the document defines: g′(ŷ) = ∂y/∂ŷ = diag g′(ŷ), U = ∂ŷ/∂h, f′(ĥ) = ∂h/∂ĥ = diag f′(ĥ),
dL = y − Y an n_out × 1 column, and a 1 × 1 factor (a single output's g′(ŷ) and dL) a scalar.
The document's case is one output: L = ½(y − Y)² squares a scalar, and its task is "a logistic
regression problem", binary classification (its footnote 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxprop.errata.slip import Case, Slip, entries_of, literal_product
from jaxprop.model.contract import Model
from jaxprop.models import seed000
from jaxprop.nn.activations import ACTIVATIONS
from jaxprop.nn.losses import LOSSES

__all__ = ["SLIPS", "model"]

_f, _g = ACTIVATIONS["tanh"], ACTIVATIONS["sigmoid"]
_DOCUMENT = {"n_in": 3, "n_hidden": 3, "n_out": 1}  # one output: the document's case
_SQUARE = {"n_in": 3, "n_hidden": 3, "n_out": 3}  # a vector output where the products form
_SCALARS = {"n_in": 3, "n_hidden": 1, "n_out": 1}  # one hidden unit, one output
_WIDE = {"n_in": 3, "n_hidden": 1, "n_out": 3}  # one hidden unit, a vector output (n_out = n_in)


def model(backward_one: Callable, name: str) -> Model:
    """Seed 000's network (f = tanh, g = sigmoid) with a replaced per-example backward pass.

    Args:
      backward_one: ``(params, x, saved, dL, f, g) -> (grads, adjoints)`` for ONE example: x of
        shape (n_in,), the saved nodes and dL = ∂L/∂y of one example.
      name: the model's name.

    Returns:
      The model; its backward maps ``backward_one`` over the batch and sums the gradients.
    """
    loss = LOSSES["half_squared_error"]

    def backward(params, x, saved, Y):
        dL = loss.grad(saved["y"], Y)  # dL = y − Y (000 §2.3, dL), over B for the batch mean
        per, adjoints = jax.vmap(backward_one, in_axes=(None, 0, 0, 0, None, None))(
            params, x, saved, dL, _f, _g
        )
        return jax.tree.map(lambda d: jnp.sum(d, axis=0), per), adjoints

    return dataclasses.replace(seed000.two_layer_mse(), name=name, backward=backward)


def _backward_one(db_rule=None, dW_rule=None, dU_rule=None):
    """A per-example backward pass of 000, corrected, with the rules for db, dW and dU plugged
    in where given."""

    def backward_one(params, x, saved, dL, f, g):
        h_hat, h, y_hat, y = saved["h_hat"], saved["h"], saved["y_hat"], saved["y"]
        dc = g.vjp(y_hat, y, dL)  # dc = g′(ŷ) dL (000 §2.3, dc), shape (n_out,)
        dU = jnp.outer(dc, h) if dU_rule is None else dU_rule(params, h, y_hat, dL, g)
        dh = params["U"].T @ dc  # ∂L/∂h = Uᵀ dc, shape (n_hidden,) (not printed)
        # db = f′(ĥ) ⊙ Uᵀ (g′(ŷ) ⊙ dL) (000 §2.3, db corrected), shape (n_hidden,)
        db = f.vjp(h_hat, h, dh) if db_rule is None else db_rule(params, h_hat, y_hat, dL, f, g)
        dW = jnp.outer(db, x) if dW_rule is None else dW_rule(params, x, h_hat, y_hat, dL, f, g)
        grads = {"W": dW, "b": db, "U": dU, "c": dc}
        return grads, {"h_hat": db, "h": dh, "y_hat": dc, "y": dL}

    return backward_one


def _db_printed(p, h_hat, y_hat, dL, f, g):
    """db = g′(ŷ) U f′(ĥ) dL as printed (000 §2.3, db): the literal product diag g′(ŷ) · U ·
    diag f′(ĥ) · dL. One output: a 1 × n_hidden row, ∂L/∂b in numerator layout, whose entries are
    db's; n_hidden = n_out: an n_out × 1 column; otherwise it cannot be formed."""
    prod = literal_product(jnp.diag(g.deriv(y_hat)), p["U"], jnp.diag(f.deriv(h_hat)), dL[:, None])
    return entries_of(prod, h_hat.shape)


def _dW_printed(p, x, h_hat, y_hat, dL, f, g):
    """dW = g′(ŷ) U f′(ĥ) xᵀ dL as printed (000 §2.3, dW, middle form): the literal product with
    xᵀ a 1 × n_in row, its entries taken as dW's where it has as many."""
    prod = literal_product(
        jnp.diag(g.deriv(y_hat)), p["U"], jnp.diag(f.deriv(h_hat)), x[None, :], dL[:, None]
    )
    return entries_of(prod, (h_hat.shape[0], x.shape[0]))


def _dU_printed(diagonal: bool):
    """dU = g′(ŷ) hᵀ dL as printed (000 §2.3, dU, middle form), the literal product with g′(ŷ)
    the n_out × 1 column of its values (``diagonal=False``) or the Jacobian diag g′(ŷ), as in
    db (``diagonal=True``)."""

    def dU(p, h, y_hat, dL, g):
        gp = jnp.diag(g.deriv(y_hat)) if diagonal else g.deriv(y_hat)[:, None]
        return literal_product(gp, h[None, :], dL[:, None])

    return dU


def _corrected() -> Model:
    return model(_backward_one(), "000 corrected")


_ONE_OUTPUT = "One output (n_out = 1): g′(ŷ) and dL are 1 × 1, scalars; numerator layout"
_DOC_CASE = (
    "One output: L = ½(y − Y)² squares a scalar, and the task is 'a logistic regression "
    "problem', binary classification (footnote 1); n_hidden > 1, here n_in = n_hidden = 3"
)

SLIPS = (
    Slip(
        "000-db",
        "000",
        "db",
        "db = g′(ŷ) U f′(ĥ) dL",
        "db = f′(ĥ) ⊙ Uᵀ (g′(ŷ) ⊙ dL), the column; in numerator layout the row "
        "dLᵀ diag g′(ŷ) U diag f′(ĥ)",
        lambda: model(_backward_one(db_rule=_db_printed), "000 db as printed"),
        _corrected,
        node="h_hat",
        cases=(
            Case(
                f"{_ONE_OUTPUT}: the product is the 1 × n_hidden row ∂L/∂b",
                "holds",
                _DOCUMENT,
                document=True,
            ),
            Case(
                "A vector output with n_hidden = n_out: the product diag g′(ŷ) U diag f′(ĥ) dL "
                "is an n_out × 1 column, read as db",
                "fails",
                _SQUARE,
            ),
            Case("A vector output with n_hidden ≠ n_out", "cannot-form", _WIDE),
        ),
        document=_DOC_CASE,
        holds_when="n_out = 1, any n_in and n_hidden: g′(ŷ) and dL are scalars, U is the row "
        "∂ŷ/∂h, and g′(ŷ) U f′(ĥ) dL is ∂L/∂b in numerator layout (a row holding db's entries)",
        fails_when="n_out > 1: with n_hidden = n_out the product runs and is wrong (U stands where "
        "the column form needs Uᵀ, and dL, which must meet g′(ŷ) first, is last); with n_hidden "
        "≠ n_out it cannot be formed",
        note="The chain ∂L/∂y ∂y/∂ŷ ∂ŷ/∂h ∂h/∂ĥ ∂ĥ/∂b of the first line is right in numerator "
        "layout; the printed product moves dL = ∂L/∂y from the front to the end, which only a "
        "1 × 1 dL survives. The variant keeps the (unprinted) adjoint of h right, so the node "
        "check blames ĥ.",
    ),
    Slip(
        "000-dW",
        "000",
        "dW, middle form",
        "dW = g′(ŷ) U f′(ĥ) xᵀ dL = db xᵀ",
        "dW = db xᵀ with db the column f′(ĥ) ⊙ Uᵀ (g′(ŷ) ⊙ dL) (the final form is right)",
        lambda: model(_backward_one(dW_rule=_dW_printed), "000 dW middle form"),
        _corrected,
        node=None,
        leaf="W",
        cases=(
            Case(
                f"{_ONE_OUTPUT}; n_hidden > 1: the row g′(ŷ) U f′(ĥ) meets the row xᵀ",
                "cannot-form",
                _DOCUMENT,
                document=True,
            ),
            Case(
                "n_hidden = n_out = 1: every factor but xᵀ is 1 × 1, the product is the "
                "1 × n_in row dW",
                "holds",
                _SCALARS,
            ),
            Case(
                "n_hidden = 1 with a vector output, n_out = n_in: the product forms, an n_out × 1 "
                "column read as dW's entries",
                "fails",
                _WIDE,
            ),
        ),
        document=_DOC_CASE,
        holds_when="n_hidden = n_out = 1 only (one hidden unit, one output)",
        fails_when="n_hidden > 1, the document's case among them: g′(ŷ) U f′(ĥ) is a 1 × "
        "n_hidden row and xᵀ another row, the product cannot be formed; with one hidden unit and "
        "n_out = n_in > 1 it forms and is wrong",
        note="In numerator layout ∂L/∂W is x times the row ∂L/∂b (an n_in × n_hidden matrix, "
        "Wᵀ's shape); the middle form writes xᵀ after the row instead. The final form db xᵀ is "
        "right with db a column (denominator layout), while db's middle form is a row: the page "
        "mixes the two layouts.",
    ),
    Slip(
        "000-dU",
        "000",
        "dU, middle form",
        "dU = g′(ŷ) hᵀ dL = dc hᵀ",
        "dU = (g′(ŷ) ⊙ dL) hᵀ = dc hᵀ (the final form is right)",
        lambda: model(_backward_one(dU_rule=_dU_printed(False)), "000 dU as printed"),
        _corrected,
        node=None,
        leaf="U",
        cases=(
            Case(
                f"{_ONE_OUTPUT}: the product is the 1 × n_hidden row, U's shape",
                "holds",
                _DOCUMENT,
                document=True,
            ),
            Case(
                "A vector output with n_hidden = n_out, g′(ŷ) the n_out × 1 column of its values: "
                "(g′(ŷ) hᵀ) dL is an n_out × 1 column where U is n_out × n_hidden",
                "fails",
                _SQUARE,
            ),
            Case(
                "A vector output, g′(ŷ) the Jacobian diag g′(ŷ) as in db: diag g′(ŷ) hᵀ",
                "cannot-form",
                _SQUARE,
                make=lambda: model(_backward_one(dU_rule=_dU_printed(True)), "000 dU, diag"),
            ),
            Case("A vector output with n_hidden ≠ n_out, g′(ŷ) a column", "cannot-form", _WIDE),
        ),
        document=_DOC_CASE,
        holds_when="n_out = 1, any n_in and n_hidden: g′(ŷ) and dL are scalars and g′(ŷ) hᵀ dL "
        "is the 1 × n_hidden matrix dU",
        fails_when="n_out > 1: read with g′(ŷ) = diag g′(ŷ) it cannot be formed at any sizes; "
        "read with g′(ŷ) a column it forms only where n_hidden = n_out, and is a vector, not "
        "the n_out × n_hidden matrix dU",
        note="A parameter gradient: no node fails.",
    ),
)

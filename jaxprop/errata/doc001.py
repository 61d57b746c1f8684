"""Document 001 (001_90440b38c2c51fc3.txt) as printed: eqs (6), (7), (10), (16), (17).

Two networks, batches of rows (x of shape (B, n_in), one example per row):

- the public ``tanh-softmax`` model of :mod:`jaxprop.models.seed001`, z1 = x W1 + b1 (eq (1)),
  a1 = tanh z1 (eq (2)), z2 = a1 W2 + b2 (eq (3)), ŷ = softmax z2 (eq (4)), the mean
  cross-entropy; nodes ``z1``, ``a1``, ``z2``; its backward pass rebuilt here so that one step at
  a time can follow the print;
- the network eqs (5)-(7) describe, a sigmoid σ(z2) per output with the binary cross-entropy
  (eq (5) with the minus sign a loss needs); nodes ``z1``, ``a1``, ``z2``, ``y_hat``.

Shapes: W1 (n_in, n_hidden), b1 (n_hidden,), W2 (n_hidden, n_out), b2 (n_out,); the document's
sizes are n_in = 2, n_hidden = 500, n_out = 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

import jaxprop
from jaxprop.errata.slip import DOCS, Slip
from jaxprop.models import seed001

__all__ = ["BCE", "SLIPS", "model", "sigmoid_model"]

_tanh, _sigmoid = jaxprop.ACTIVATIONS["tanh"], jaxprop.ACTIVATIONS["sigmoid"]
_SQUARE = {"n_in": 2, "n_hidden": 3, "n_out": 3}  # n_hidden = n_out: the printed products run
_DOCUMENT = {"n_in": 2, "n_hidden": 500, "n_out": 2}  # the document's sizes: they cannot


# ---------------------------------------------------------------------------------------------
# The tanh-softmax network of eqs (1)-(4).
# ---------------------------------------------------------------------------------------------


def _backward(dz2_rule=None, da1_rule=None, dz1_rule=None, db1_rule=None) -> Callable:
    """The backward pass of eqs (7)-(17), corrected, with the given steps replaced."""
    loss = jaxprop.LOSSES["softmax_cross_entropy"]

    def backward(params, x, saved, Y):
        a1, z2 = saved["a1"], saved["z2"]
        # ∂Loss/∂z2 = (ŷ − y)/B (001 eq (7), corrected), shape (B, n_out).
        dz2 = loss.grad(z2, Y) if dz2_rule is None else dz2_rule(saved, Y)
        dW2 = a1.T @ dz2  # 001 eq (14), shape (n_hidden, n_out)
        db2 = jnp.sum(dz2, axis=0)  # 001 eq (15), shape (n_out,)
        # ∂Loss/∂a1 = ∂Loss/∂z2 W2ᵀ (001 eq (10), corrected), shape (B, n_hidden).
        da1 = dz2 @ params["W2"].T if da1_rule is None else da1_rule(params, saved, dz2)
        # ∂Loss/∂z1 = (1 − tanh² z1) ⊙ ∂Loss/∂a1 (001 eq (11)), shape (B, n_hidden).
        dz1 = _tanh.vjp(saved["z1"], a1, da1) if dz1_rule is None else dz1_rule(params, saved, dz2)
        dW1 = x.T @ dz1  # 001 eq (16), shape (n_in, n_hidden)
        db1 = jnp.sum(dz1, axis=0) if db1_rule is None else db1_rule(x, dz1)  # 001 eq (17)
        grads = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
        return grads, {"z1": dz1, "a1": da1, "z2": dz2}

    return backward


def model(backward: Callable, name: str) -> jaxprop.Model:
    """Seed 001's ``tanh-softmax`` model with ``backward`` in place of its own, named ``name``."""
    return dataclasses.replace(seed001.tanh_softmax(), name=name, backward=backward)


def _dz2_printed(saved, Y):
    """001 eq (7) as printed: ∂Loss/∂z2 = y − ŷ (over B for the batch mean), shape (B, n_out)."""
    return (Y - saved["y_hat"]) / Y.shape[0]


def _da1_printed(params, saved, dz2):
    """001 eq (10) as printed: ∂z2/∂tanh(z1) = z2, so ∂Loss/∂a1 = ∂Loss/∂z2 · z2 (elementwise,
    shape (B, n_out): it runs only where n_hidden = n_out)."""
    return dz2 * saved["z2"]


def _dz1_printed_order(params, saved, dz2):
    """001 eqs (16)-(17) as printed: (1 − tanh² z1)(y − ŷ) W2ᵀ, the tanh′ factor applied to the
    adjoint of z2 BEFORE the product with W2ᵀ (sign corrected, so that only the order differs)."""
    assert _tanh.deriv is not None  # tanh is elementwise
    return (_tanh.deriv(saved["z1"]) * dz2) @ params["W2"].T


def _db1_printed(x, dz1):
    """001 eq (17), first line, as printed: ... · ∂z1/∂W1 (= x, eq (12)) in place of ∂z1/∂b1: the
    (n_in, n_hidden) matrix of eq (16) where b1 has n_hidden entries."""
    return x.T @ dz1


# ---------------------------------------------------------------------------------------------
# The sigmoid network of eqs (5)-(7): one sigmoid output per class, the binary cross-entropy.
# ---------------------------------------------------------------------------------------------


def _bce(out, Y):
    """−(1/B) Σ [y ln σ + (1 − y) ln(1 − σ)]: 001 eq (5) negated, the mean over the batch; out and
    Y of shape (B, n_out)."""
    return -jnp.sum(Y * jnp.log(out) + (1 - Y) * jnp.log1p(-out)) / out.shape[0]


def _bce_grad(out, Y):
    """∂/∂out of :func:`_bce`, shape (B, n_out)."""
    return -(Y / out - (1 - Y) / (1 - out)) / out.shape[0]


#: The binary cross-entropy of eq (5), with its minus sign, as a :class:`jaxprop.Loss`.
BCE = jaxprop.Loss("binary_cross_entropy", _bce, _bce_grad)


def _forward_sigmoid(params, x, taps=None):
    z1 = jaxprop.tap(taps, "z1", x @ params["W1"] + params["b1"][None, :])  # 001 eq (1)
    a1 = jaxprop.tap(taps, "a1", jnp.tanh(z1))  # 001 eq (2)
    z2 = jaxprop.tap(taps, "z2", a1 @ params["W2"] + params["b2"][None, :])  # 001 eq (3)
    y_hat = jaxprop.tap(taps, "y_hat", _sigmoid.fn(z2))  # σ(z2), as 001 eqs (5)-(7) write it
    return y_hat, {"z1": z1, "a1": a1, "z2": z2, "y_hat": y_hat}


def _backward_sigmoid(sigma_prime: Callable) -> Callable:
    """The sigmoid network's backward pass with σ′ computed by ``sigma_prime(σ)``."""

    def backward(params, x, saved, Y):
        a1, y_hat = saved["a1"], saved["y_hat"]
        dy_hat = _bce_grad(y_hat, Y)  # shape (B, n_out)
        dz2 = dy_hat * sigma_prime(y_hat)  # 001 eq (6): dσ/dz
        da1 = dz2 @ params["W2"].T  # 001 eq (10), corrected
        dz1 = _tanh.vjp(saved["z1"], a1, da1)  # 001 eq (11)
        # 001 eqs (14)-(17): xᵀ ∂Loss/∂z1, Σ_rows ∂Loss/∂z1, a1ᵀ ∂Loss/∂z2, Σ_rows ∂Loss/∂z2.
        grads = {"W1": x.T @ dz1, "b1": jnp.sum(dz1, axis=0), "W2": a1.T @ dz2,
                 "b2": jnp.sum(dz2, axis=0)}  # fmt: skip
        return grads, {"z1": dz1, "a1": da1, "z2": dz2, "y_hat": dy_hat}

    return backward


def sigmoid_model(backward: Callable, name: str) -> jaxprop.Model:
    """The network of 001 eqs (5)-(7) (sigmoid outputs, binary cross-entropy) with ``backward``.

    It shares ``init`` with seed 001's ``tanh-softmax`` model; its labels are independent
    Bernoulli(½) bits of shape (B, n_out).
    """
    base = seed001.tanh_softmax()
    base_sample = base.sample
    assert base_sample is not None  # seed 001's model has a sample

    def sample(key, params, batch):
        x, _ = base_sample(key, params, batch)
        k = jax.random.fold_in(key, 1)
        Y = jax.random.bernoulli(k, 0.5, (batch, params["b2"].shape[0])).astype(x.dtype)
        return x, Y

    return jaxprop.Model(name=name, source=DOCS["001"], init=base.init, forward=_forward_sigmoid,
                         objective=BCE, backward=backward, sample=sample,
                         nodes=("z1", "a1", "z2", "y_hat"))  # fmt: skip


def _sigma_prime_correct(s):
    """σ′ = σ(1 − σ), from σ."""
    return s * (1 - s)


def _sigma_prime_printed(s):
    """001 eq (6) as printed: dσ(z2)/dz = ln(σ(z2)) · ln(1 − σ(z2))."""
    return jnp.log(s) * jnp.log(1 - s)


def _corrected() -> jaxprop.Model:
    return model(_backward(), "001 corrected")


SLIPS = (
    Slip(
        "001-eq7",
        "001",
        "eq (7) (and the signs of (14)-(17))",
        "∂Loss/∂z2 = y − σ(z2) = y − ŷ",
        "∂Loss/∂z2 = ŷ − y for the loss to be minimised (the cross-entropy, eq (5) negated)",
        lambda: model(_backward(dz2_rule=_dz2_printed), "001 eq (7) as printed"),
        _corrected,
        node="z2",
        sizes=dict(_SQUARE),
        note="y − ŷ is the derivative of the log-likelihood (eq (5) as printed, without its "
        "minus sign); (14)-(17) inherit the sign.",
    ),
    Slip(
        "001-eq10",
        "001",
        "eq (10)",
        "∂z2/∂tanh(z1) = z2",
        "∂z2/∂a1 = W2, applied as ∂Loss/∂a1 = ∂Loss/∂z2 W2ᵀ",
        lambda: model(_backward(da1_rule=_da1_printed), "001 eq (10) as printed"),
        _corrected,
        node="a1",
        sizes=dict(_SQUARE),
        wrong_sizes=dict(_DOCUMENT),
        note="With the document's sizes (500 hidden, 2 out) the printed factor has the wrong "
        "shape; with n_hidden = n_out it runs and the adjoint of a1 is wrong.",
    ),
    Slip(
        "001-eq16-order",
        "001",
        "eqs (16), (17)",
        "… = x^T (1 − tanh² Z1) (y − ŷ) W2^T;  ∂Loss/∂b1 = (1 − tanh² Z1)(y − ŷ) W2^T",
        "∂Loss/∂z1 = (1 − tanh² z1) ⊙ [(ŷ − y) W2ᵀ]; ∂Loss/∂W1 = xᵀ ∂Loss/∂z1, "
        "∂Loss/∂b1 = Σ_rows ∂Loss/∂z1",
        lambda: model(_backward(dz1_rule=_dz1_printed_order), "001 eqs (16)-(17) order"),
        _corrected,
        node="z1",
        sizes=dict(_SQUARE),
        wrong_sizes=dict(_DOCUMENT),
        note="The tanh′ factor (1 × 500) is written before (y − ŷ) W2ᵀ and multiplies the "
        "2-wide adjoint of z2; it must multiply the 500-wide product elementwise. Z1 is also "
        "written capitalised.",
    ),
    Slip(
        "001-eq17-W1",
        "001",
        "eq (17), first line",
        "∂Loss/∂b1 = ∂Loss/∂z2 · ∂z2/∂z1 · ∂z1/∂W1",
        "∂Loss/∂b1 = ∂Loss/∂z2 · ∂z2/∂z1 · ∂z1/∂b1 (= 1, eq (13))",
        lambda: model(_backward(db1_rule=_db1_printed), "001 eq (17) ∂z1/∂W1"),
        _corrected,
        node=None,
        leaf="b1",
        sizes=dict(_SQUARE),
        note="Taken as printed, the first line is ∂Loss/∂W1 again (eq (16)): a 2 × 500 matrix "
        "where b1 has 500 entries; the second line of (17) uses ∂z1/∂b1.",
    ),
    Slip(
        "001-eq6",
        "001",
        "eq (6)",
        "dσ(z2)/dz = ln(σ(z2)) · ln(1 − σ(z2))",
        "dσ/dz = σ(z)(1 − σ(z))",
        lambda: sigmoid_model(
            _backward_sigmoid(_sigma_prime_printed), "001 sigmoid, eq (6) as printed"
        ),
        lambda: sigmoid_model(_backward_sigmoid(_sigma_prime_correct), "001 sigmoid, corrected"),
        node="z2",
        sizes=dict(_SQUARE),
        note="Shown on the network eqs (5)-(7) describe: a sigmoid σ(z2) per output and the "
        "binary cross-entropy (eq (5) with its minus sign).",
    ),
)

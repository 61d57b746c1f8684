"""Document 001 (001_90440b38c2c51fc3.txt) as printed: eqs (5)-(7), (10), (16), (17).

Two networks, batches of rows (x of shape (B, n_in), one example per row):

- the public ``tanh-softmax`` model of :mod:`jaxprop.models.seed001`, z1 = x W1 + b1 (eq (1)),
  a1 = tanh z1 (eq (2)), z2 = a1 W2 + b2 (eq (3)), ŷ = softmax z2 (eq (4)), the mean
  cross-entropy; nodes ``z1``, ``a1``, ``z2``; its backward pass rebuilt here so that one step at
  a time can follow the print;
- the network eqs (5)-(7) describe, a sigmoid σ(z2) per output, with the binary cross-entropy
  (eq (5) with the minus sign a loss needs) or with eq (5) as printed, the log-likelihood; nodes
  ``z1``, ``a1``, ``z2``, ``y_hat`` (``z1``, ``a1``, ``z2`` where eq (7) goes from the loss to z2
  in one step).

Shapes: W1 (n_in, n_hidden), b1 (n_hidden,), W2 (n_hidden, n_out), b2 (n_out,); the document's
sizes are n_in = 2, n_hidden = 500, n_out = 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxprop.errata import evidence
from jaxprop.errata.slip import DOCS, Case, Slip, literal_product
from jaxprop.model.contract import Model, tap
from jaxprop.models import seed001
from jaxprop.nn.activations import ACTIVATIONS
from jaxprop.nn.losses import LOSSES, Loss

__all__ = ["BCE", "LOG_LIKELIHOOD", "SLIPS", "model", "sigmoid_model"]

_tanh, _sigmoid = ACTIVATIONS["tanh"], ACTIVATIONS["sigmoid"]
_SQUARE = {"n_in": 2, "n_hidden": 3, "n_out": 3}  # n_hidden = n_out: the printed products run
_DOCUMENT = {"n_in": 2, "n_hidden": 500, "n_out": 2}  # the document's sizes
_ONE_HIDDEN = {"n_in": 2, "n_hidden": 1, "n_out": 2}  # one hidden unit


# ---------------------------------------------------------------------------------------------
# The tanh-softmax network of eqs (1)-(4).
# ---------------------------------------------------------------------------------------------


def _backward(dz2_rule=None, da1_rule=None, dz1_rule=None, db1_rule=None) -> Callable:
    """The backward pass of eqs (7)-(17), corrected, with the given steps replaced."""
    loss = LOSSES["softmax_cross_entropy"]

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


def model(backward: Callable, name: str) -> Model:
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
BCE = Loss("binary_cross_entropy", _bce, _bce_grad)


def _log_likelihood(out, Y):
    """(1/B) Σ [y ln σ + (1 − y) ln(1 − σ)]: 001 eq (5) as printed (the log-likelihood), the mean
    over the batch; out and Y of shape (B, n_out)."""
    return -_bce(out, Y)


def _log_likelihood_grad(out, Y):
    """∂/∂out of :func:`_log_likelihood`, shape (B, n_out)."""
    return -_bce_grad(out, Y)


#: 001 eq (5) as printed, without a minus sign: the log-likelihood, as a :class:`jaxprop.Loss`.
LOG_LIKELIHOOD = Loss("log_likelihood_eq5", _log_likelihood, _log_likelihood_grad)


def _forward_sigmoid(tap_output: bool) -> Callable:
    """The forward pass of eqs (1)-(3) with ŷ = σ(z2), as eqs (5)-(7) write it; ŷ tapped (a node)
    where ``tap_output``."""

    def forward(params, x, taps=None):
        z1 = tap(taps, "z1", x @ params["W1"] + params["b1"][None, :])  # 001 eq (1)
        a1 = tap(taps, "a1", jnp.tanh(z1))  # 001 eq (2)
        z2 = tap(taps, "z2", a1 @ params["W2"] + params["b2"][None, :])  # 001 eq (3)
        y_hat = _sigmoid.fn(z2)  # σ(z2), as 001 eqs (5)-(7) write it
        if tap_output:
            y_hat = tap(taps, "y_hat", y_hat)
        return y_hat, {"z1": z1, "a1": a1, "z2": z2, "y_hat": y_hat}

    return forward


def _rest(params, x, saved, dz2):
    """From ∂Loss/∂z2 on, corrected: eqs (10), (11), (14)-(17) with W2ᵀ and the batch sums."""
    a1 = saved["a1"]
    da1 = dz2 @ params["W2"].T  # 001 eq (10), corrected
    dz1 = _tanh.vjp(saved["z1"], a1, da1)  # 001 eq (11)
    # 001 eqs (14)-(17): xᵀ ∂Loss/∂z1, Σ_rows ∂Loss/∂z1, a1ᵀ ∂Loss/∂z2, Σ_rows ∂Loss/∂z2.
    grads = {
        "W1": x.T @ dz1,
        "b1": jnp.sum(dz1, axis=0),
        "W2": a1.T @ dz2,
        "b2": jnp.sum(dz2, axis=0),
    }
    return grads, {"z1": dz1, "a1": da1, "z2": dz2}


def _backward_sigmoid(sigma_prime: Callable) -> Callable:
    """The sigmoid network's backward pass (binary cross-entropy) with σ′ computed by
    ``sigma_prime(σ)``."""

    def backward(params, x, saved, Y):
        dy_hat = _bce_grad(saved["y_hat"], Y)  # shape (B, n_out)
        dz2 = dy_hat * sigma_prime(saved["y_hat"])  # 001 eq (6): dσ/dz
        grads, adjoints = _rest(params, x, saved, dz2)
        return grads, {**adjoints, "y_hat": dy_hat}

    return backward


def _backward_eq7(printed: bool) -> Callable:
    """The sigmoid network's backward pass from eq (7): ∂Loss/∂z2 = y − ŷ as printed, or ŷ − y,
    over B for the batch mean, shape (B, n_out)."""

    def backward(params, x, saved, Y):
        dz2 = (Y - saved["y_hat"] if printed else saved["y_hat"] - Y) / Y.shape[0]
        return _rest(params, x, saved, dz2)

    return backward


def sigmoid_model(
    backward: Callable, name: str, objective: Loss = BCE, tap_output: bool = True
) -> Model:
    """The network of 001 eqs (5)-(7) (sigmoid outputs) with ``backward``.

    It shares ``init`` with seed 001's ``tanh-softmax`` model; its labels are independent
    Bernoulli(½) bits of shape (B, n_out).

    Args:
      backward: the backward pass.
      name: the model's name.
      objective: the binary cross-entropy (:data:`BCE`, the loss minimised) or eq (5) as printed
        (:data:`LOG_LIKELIHOOD`).
      tap_output: ŷ is a node (``False`` where the backward goes from the loss to z2 at once).
    """
    base = seed001.tanh_softmax()
    base_sample = base.sample
    assert base_sample is not None  # seed 001's model has a sample

    def sample(key, params, batch):
        x, _ = base_sample(key, params, batch)
        k = jax.random.fold_in(key, 1)
        Y = jax.random.bernoulli(k, 0.5, (batch, params["b2"].shape[0])).astype(x.dtype)
        return x, Y

    nodes = ("z1", "a1", "z2", "y_hat") if tap_output else ("z1", "a1", "z2")
    return Model(
        name=name,
        source=DOCS["001"],
        init=base.init,
        forward=_forward_sigmoid(tap_output),
        objective=objective,
        backward=backward,
        sample=sample,
        nodes=nodes,
    )


def _sigma_prime_correct(s):
    """σ′ = σ(1 − σ), from σ."""
    return s * (1 - s)


def _sigma_prime_printed(s):
    """001 eq (6) as printed: dσ(z2)/dz = ln(σ(z2)) · ln(1 − σ(z2))."""
    return jnp.log(s) * jnp.log(1 - s)


def _dz1_printed_diag(params, saved, dz2):
    """001 eqs (16)-(17) as printed, read as a matrix product per example: diag(1 − tanh² z1) ·
    (ŷ − y) · W2ᵀ (sign corrected); it forms only where diag(1 − tanh² z1) is 1 × 1."""

    def one(z1, d):
        assert _tanh.deriv is not None  # tanh is elementwise
        return literal_product(jnp.diag(_tanh.deriv(z1)), d[None, :], params["W2"].T)[0]

    return jax.vmap(one)(saved["z1"], dz2)


def _corrected() -> Model:
    return model(_backward(), "001 corrected")


def _eq7(objective: Loss, name: str) -> Callable[[], Model]:
    return lambda: sigmoid_model(_backward_eq7(True), name, objective, tap_output=False)


_SIGN_CORRECTED = "with the sign of (7) corrected (001-eq5), so that only the order differs"

SLIPS = (
    Slip(
        "001-eq5",
        "001",
        "eq (5), the sign of the loss (eq (7) and (14)-(17) follow it)",
        "Loss = y ln σ(z2) + (1 − y) ln(1 − σ(z2)) (5), the loss 'which we actually have to "
        "minimize'; ∂Loss/∂z2 = y − σ(z2) = y − ŷ (7)",
        "Loss = −[y ln σ(z2) + (1 − y) ln(1 − σ(z2))], the cross-entropy; ∂Loss/∂z2 = ŷ − y",
        _eq7(BCE, "001 eq (7) against the cross-entropy"),
        lambda: sigmoid_model(
            _backward_eq7(False), "001 sigmoid, eq (7) corrected", tap_output=False
        ),
        node="z2",
        cases=(
            Case(
                "Eq (7) against the loss the text minimises, the cross-entropy (eq (5) negated), "
                "on the sigmoid network of (5)-(7)",
                "fails",
                _SQUARE,
                document=True,
            ),
            Case(
                "Eq (7) against jax.grad of eq (5) as printed, the log-likelihood (a quantity to "
                "maximise), same network and point",
                "holds",
                _SQUARE,
                make=_eq7(LOG_LIKELIHOOD, "001 eq (7) against eq (5) as printed"),
            ),
            Case(
                "Eq (7) on the network of eq (4), softmax output and its cross-entropy",
                "fails",
                _SQUARE,
                make=lambda: model(_backward(dz2_rule=_dz2_printed), "001 eq (7), softmax"),
            ),
        ),
        document="The loss to be minimised: 'the loss function (which we actually have to "
        "minimize)', just before (5)",
        holds_when="Eq (5) is read as what it is, the log-likelihood, to be maximised: (7) is its "
        "exact derivative, and (14)-(17) carry its sign consistently",
        fails_when="Eq (5) is minimised, as the text says: y − ŷ is the negative of the "
        "gradient (every adjoint off by the factor −1, relative error 2), and a descent step on "
        "(5) raises the cross-entropy",
        note="The slip is the sign of (5): (7) is the correct derivative of (5) as printed. "
        "(14)-(17) inherit the sign.",
        figures=evidence.loss_sign,
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
        cases=(
            Case(
                "n_hidden = n_out: the elementwise product ∂Loss/∂z2 · z2 forms", "fails", _SQUARE
            ),
            Case(
                "The document's sizes, 500 hidden and 2 outputs",
                "cannot-form",
                _DOCUMENT,
                document=True,
            ),
        ),
        document="n_in = 2, n_hidden = 500, n_out = 2 ('x ∈ R², W1 ∈ R^{2*500}, W2 ∈ R^{500*2}')",
        fails_when="Always: z2 is the layer's output, not its weight W2. Where the product can "
        "be formed (n_hidden = n_out) it is wrong; at the document's sizes it cannot be formed",
        note="The middle line, ∂(tanh(z1) W2 + b2)/∂tanh(z1), is right (it is W2); the last "
        "writes z2 for it.",
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
        cases=(
            Case(
                "n_hidden = n_out, (1 − tanh² z1) multiplying the row (ŷ − y) entry by entry "
                f"before W2ᵀ, {_SIGN_CORRECTED}",
                "fails",
                _SQUARE,
            ),
            Case(
                "n_hidden = 1: (1 − tanh² z1) is one number per example, a scalar, and its place "
                f"in the product does not matter ({_SIGN_CORRECTED[5:]})",
                "holds",
                _ONE_HIDDEN,
            ),
            Case(
                "n_hidden = n_out, read as a matrix product diag(1 − tanh² z1) (ŷ − y) W2ᵀ",
                "cannot-form",
                _SQUARE,
                make=lambda: model(_backward(dz1_rule=_dz1_printed_diag), "001 (16), diag"),
            ),
            Case(
                "The document's sizes: a 500-wide tanh′ against the 2-wide (y − ŷ)",
                "cannot-form",
                _DOCUMENT,
                document=True,
            ),
        ),
        document="n_in = 2, n_hidden = 500, n_out = 2",
        holds_when="n_hidden = 1 only: the tanh′ factor is then a scalar",
        fails_when="n_hidden > 1: at the document's sizes the product cannot be formed; where "
        "n_hidden = n_out it forms entry by entry and is wrong",
        note="The tanh′ factor (1 × 500) is written before (y − ŷ) W2ᵀ and meets the 2-wide "
        "adjoint of z2; it must multiply the 500-wide product entry by entry. Z1 is also "
        "written capitalised (a remark below).",
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
        cases=(
            Case("∂z1/∂W1 = x (eq (12)) in the chain: xᵀ ∂Loss/∂z1", "fails", _SQUARE),
            Case("The same at the document's sizes", "fails", _DOCUMENT, document=True),
        ),
        document="n_in = 2, n_hidden = 500, n_out = 2",
        fails_when="At every size: with ∂z1/∂W1 = x the line is ∂Loss/∂W1 again (eq (16)), an "
        "n_in × n_hidden matrix where b1 has n_hidden entries",
        note="A copy of (16)'s first line; the second line of (17) has ∂z1/∂b1, and the final "
        "form does not inherit the slip. A parameter gradient: no node fails.",
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
        cases=(
            Case(
                "The sigmoid network of (5)-(7) with the cross-entropy",
                "fails",
                _SQUARE,
                document=True,
            ),
        ),
        document="The sigmoid output σ(z2) of eqs (5)-(7), at any sizes (the printed σ′ is wrong "
        "at every z)",
        fails_when="At every z: ln σ · ln(1 − σ) > σ(1 − σ) everywhere (−ln s > 1 − s for s in "
        "(0, 1)); the measured ratio is at least the figure below",
        note="Not used by (7), which is the derivative of (5) as printed (001-eq5).",
        figures=evidence.sigmoid_derivative,
    ),
)

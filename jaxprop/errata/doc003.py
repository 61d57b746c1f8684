"""Document 003 (003_c347acbe1cb23503.txt) as printed: the δ recursion and its definitions.

A network of its own, self-contained here (two weight layers, no biases, as the document's):
in_k = Σ_j w_jk out_j (out_j = x_j at the input), out_k = f(in_k) with f = sigmoid (at the output
layer also the identity, a linear output), and the batch MSE E = 1/(b|out|) Σ (y − out)².
Shapes: W1 (n_in, n_hidden), W2 (n_hidden, n_out), x of shape (B, n_in), labels of shape
(B, n_out). Nodes: ``in1``, ``out1``, ``in2``, ``out2``.

The formulas are cited [1]–[12] as :mod:`jaxprop.models.seed003` numbers them; seed 003's two
literal readings on its registered, any-depth network are in ``jaxprop.models._seed003_printed``
(docs/seed003.md).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxprop.errata.slip import DOCS, Case, Slip
from jaxprop.model.contract import Model, tap
from jaxprop.nn.activations import ACTIVATIONS
from jaxprop.nn.losses import LOSSES

__all__ = ["SLIPS", "model"]

_sigmoid, _identity = ACTIVATIONS["sigmoid"], ACTIVATIONS["identity"]
_MSE = LOSSES["mean_squared_error"]
_SIZES = {"n_in": 3, "n_hidden": 5, "n_out": 2}


def _init(key, n_in=3, n_hidden=4, n_out=2, dtype=jnp.float64):
    k1, k2 = jax.random.split(key)
    return {
        "W1": jax.random.normal(k1, (n_in, n_hidden), dtype),
        "W2": jax.random.normal(k2, (n_hidden, n_out), dtype),
    }


def _forward(out_f) -> Callable:
    """The forward pass, f = sigmoid at the hidden layer and ``out_f`` at the output."""

    def forward(params, x, taps=None):
        in1 = tap(taps, "in1", x @ params["W1"])  # in_k = Σ_j w_jk out_j (003 [2])
        out1 = tap(taps, "out1", _sigmoid.fn(in1))  # out_k = f(in_k) (003 [3])
        in2 = tap(taps, "in2", out1 @ params["W2"])  # 003 [2]
        out2 = tap(taps, "out2", out_f.fn(in2))  # 003 [3]
        return out2, {"in1": in1, "out1": out1, "in2": in2, "out2": out2}

    return forward


def _sample(key, params, batch):
    kx, ky = jax.random.split(key)
    dtype = params["W1"].dtype
    return (
        jax.random.normal(kx, (batch, params["W1"].shape[0]), dtype),
        jax.random.uniform(ky, (batch, params["W2"].shape[1]), dtype),
    )


def _backward(variant: str | None = None, out_f=_sigmoid) -> Callable:
    """The backward pass of 003, corrected (``variant=None``) or with one step as printed:
    ``"fprime_outside"`` ([8] line 3, f′ outside the sum), ``"fprime_inside"`` ([8] line 3 with
    the sum over the whole term), ``"delta_is_dout"`` ([9]'s "where"), ``"delta_is_dw"`` ([10],
    [11]: δ in the weight gradient's place), ``"delta_is_dw_each"`` (the same, δ_l for every
    connection j → l)."""

    def backward(params, x, saved, Y):
        in1, out1, in2, out2 = saved["in1"], saved["out1"], saved["in2"], saved["out2"]
        dout2 = _MSE.grad(out2, Y)  # ∂E/∂out_j = 2/(b|out|) (out_j − y_j) (003 [7]), (B, n_out)
        if variant == "delta_is_dout":
            # δ_i = ∂E/∂out_i as printed (003 [9]), then d_ij = δ_j out_i (003 [12]): δ stands
            # where ∂E/∂in must.
            din2 = dout2
        else:
            din2 = out_f.vjp(in2, out2, dout2)  # δ_k = ∂E/∂in_k = ∂E/∂out_k f′(in_k) (003 [5])
        if variant == "fprime_outside":
            # As printed (003 [8] line 3): Σ_j (∂E/∂out_j · w_kj) · f′(in_j), f′ taken out of the
            # sum over j; the only index left for it is k's own layer: f′(in_k).
            dout1 = _sigmoid.vjp(in1, out1, dout2 @ params["W2"].T)
        elif variant == "fprime_inside":
            # As printed (003 [8] line 3) with the sum binding the whole term:
            # Σ_j (∂E/∂out_j · w_kj) · f′(in_j), f′(in_j) inside.
            assert out_f.deriv is not None  # an elementwise output activation
            dout1 = jnp.einsum("bj,kj,bj->bk", dout2, params["W2"], out_f.deriv(in2))
        else:
            dout1 = din2 @ params["W2"].T  # ∂E/∂out_k = Σ_j ∂E/∂out_j f′(in_j) w_kj (003 [8])
        din1 = _sigmoid.vjp(in1, out1, dout1)  # δ_k = f′(in_k) Σ_i δ_i w_ki (003 [9], corrected)
        # d_ij = δ_j out_i (003 [12]); as printed in 003 [10], δ_jl = ∂E/∂w_jl: δ itself.
        if variant == "delta_is_dw":
            dW2 = din2
        elif variant == "delta_is_dw_each":
            dW2 = jnp.broadcast_to(jnp.sum(din2, axis=0), params["W2"].shape)
        else:
            dW2 = out1.T @ din2
        dW1 = x.T @ din1  # d_ij = δ_j out_i, out_i = x_i (003 [12])
        return {"W1": dW1, "W2": dW2}, {"in1": din1, "out1": dout1, "in2": din2, "out2": dout2}

    return backward


def model(variant: str | None, name: str, output: str = "sigmoid") -> Model:
    """003's two-layer network with :func:`_backward` ``(variant)``, named ``name``; the output
    layer's activation is ``output``, ``"sigmoid"`` or ``"identity"``."""
    out_f = ACTIVATIONS[output]
    return Model(
        name=name,
        source=DOCS["003"],
        init=_init,
        forward=_forward(out_f),
        objective=_MSE,
        backward=_backward(variant, out_f),
        sample=_sample,
        nodes=("in1", "out1", "in2", "out2"),
    )


def _corrected() -> Model:
    return model(None, "003 corrected")


_SIGMOID_CASE = "f a sigmoid at every layer, the output included"

SLIPS = (
    Slip(
        "003-fprime-outside",
        "003",
        "∂E/∂out_k for a hidden layer, last line",
        "∂E/∂out_k = Σ_j (∂E/∂out_j · w_kj) · f′(in_j)",
        "∂E/∂out_k = Σ_j ∂E/∂out_j · f′(in_j) · w_kj (f′(in_j) depends on j: inside the sum)",
        lambda: model("fprime_outside", "003 f′ outside the sum"),
        _corrected,
        node="out1",
        cases=(
            Case(
                "f′ outside the sum, where the parentheses close; the only index left for it is "
                "k's: f′(in_k), as the δ recursion that follows, δ_k = Σ_i (δ_i · w_ki) · "
                "f′(in_k), takes it",
                "fails",
                _SIZES,
                document=True,
            ),
            Case(
                "The sum binding the whole term, f′(in_j) inside it (j is bound by the sum: the "
                "only reading in which f′(in_j) has a meaning)",
                "holds",
                _SIZES,
                make=lambda: model("fprime_inside", "003 f′ inside the sum"),
            ),
        ),
        document="The next step, the δ recursion, uses the line with f′ outside the sum and "
        "index k",
        holds_when="The sum is read as binding f′(in_j): the line is then the previous one",
        fails_when="f′ is taken out of the sum as f′(in_k), the reading the δ recursion that "
        "follows uses",
        note="The parentheses close before f′(in_j) although j is the summation index.",
    ),
    Slip(
        "003-delta-def",
        "003",
        "δ recursion, 'where δ_i = ∂E/∂out_i'",
        "δ_k = Σ_i (δ_i · w_ki) · f′(in_k), where δ_i = ∂E/∂out_i; d_ij = δ_j · out_i",
        "δ_i = ∂E/∂in_i (the recursion and d_ij = δ_j out_i hold for this δ)",
        lambda: model("delta_is_dout", "003 δ = ∂E/∂out"),
        _corrected,
        node="in2",
        cases=(
            Case(f"δ = ∂E/∂out as defined, {_SIGMOID_CASE}", "fails", _SIZES, document=True),
            Case(
                "δ = ∂E/∂out as defined, a linear output layer (f the identity there, f′ = 1): "
                "∂E/∂out = ∂E/∂in at the output; the recursion then gives ∂E/∂in, not the "
                "defined ∂E/∂out, at the hidden layer",
                "holds",
                _SIZES,
                make=lambda: model(
                    "delta_is_dout", "003 δ = ∂E/∂out, linear output", output="identity"
                ),
            ),
        ),
        document="f the neuron's activation function at every layer; 'for output layers: "
        "∂E/∂out · f′(in_j)'",
        holds_when="The output layer is linear (f′ = 1 there): the weight gradients d_ij are then "
        "right, though δ is ∂E/∂in, not the defined ∂E/∂out, at every hidden layer",
        fails_when="The output activation is nonlinear: d_ij = δ_j out_i drops f′(in_j) at the "
        "output layer, and the error propagates back",
        note="With δ_i = ∂E/∂in_i the recursion and d_ij = δ_j out_i are right.",
    ),
    Slip(
        "003-delta-is-dw",
        "003",
        "'In conclusion': δ_jl = ∂E/∂w_jl (output and other layers)",
        "δ_jl = ∂E/∂w_jl = ∂E/∂out · f′(in_j)",
        "δ_j = ∂E/∂in_j = ∂E/∂out_j · f′(in_j); ∂E/∂w_ij = δ_j · out_i",
        lambda: model("delta_is_dw", "003 δ = ∂E/∂w"),
        _corrected,
        node=None,
        leaf="W2",
        cases=(
            Case(
                f"δ (one per neuron and example) in the weight gradient's place, {_SIGMOID_CASE}",
                "fails",
                _SIZES,
                document=True,
            ),
            Case(
                "Per connection: ∂E/∂w_jl = δ_l for every j (the factor out_j dropped)",
                "fails",
                _SIZES,
                make=lambda: model("delta_is_dw_each", "003 δ_l for every w_jl"),
            ),
        ),
        document=f"{_SIGMOID_CASE}: the hidden outputs out_j lie in (0, 1)",
        fails_when="Always: δ has one entry per neuron, ∂E/∂w one per connection; read per "
        "connection it drops the factor out_j of d_ij = δ_j · out_i",
        note="The index l of 'other layers' (Σ_i δ_i w_li f′(in_l)) is also garbled for j. A "
        "parameter gradient: no node fails.",
    ),
)

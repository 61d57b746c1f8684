"""Document 003 (003_c347acbe1cb23503.txt) as printed: the δ recursion and its definitions.

A network of its own, self-contained here (two weight layers, no biases, as the document's):
in_k = Σ_j w_jk out_j (out_j = x_j at the input), out_k = f(in_k) with f = sigmoid, and the batch
MSE E = 1/(b|out|) Σ (y − out)². Shapes: W1 (n_in, n_hidden), W2 (n_hidden, n_out), x of shape
(B, n_in), labels of shape (B, n_out). Nodes: ``in1``, ``out1``, ``in2``, ``out2``.

The formulas are cited [1]–[12] as :mod:`jaxprop.models.seed003` numbers them; seed 003's two
literal readings on its registered, any-depth network are in ``jaxprop.models._seed003_printed``
(docs/seed003.md).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import jaxprop
from jaxprop.errata.slip import DOCS, Slip

__all__ = ["SLIPS", "model"]

_sigmoid = jaxprop.ACTIVATIONS["sigmoid"]
_MSE = jaxprop.LOSSES["mean_squared_error"]
_SIZES = {"n_in": 3, "n_hidden": 5, "n_out": 2}


def _init(key, n_in=3, n_hidden=4, n_out=2, dtype=jnp.float64):
    k1, k2 = jax.random.split(key)
    return {"W1": jax.random.normal(k1, (n_in, n_hidden), dtype),
            "W2": jax.random.normal(k2, (n_hidden, n_out), dtype)}  # fmt: skip


def _forward(params, x, taps=None):
    in1 = jaxprop.tap(taps, "in1", x @ params["W1"])  # in_k = Σ_j w_jk out_j (003 [2]), out_j = x_j
    out1 = jaxprop.tap(taps, "out1", _sigmoid.fn(in1))  # out_k = f(in_k) (003 [3])
    in2 = jaxprop.tap(taps, "in2", out1 @ params["W2"])  # 003 [2]
    out2 = jaxprop.tap(taps, "out2", _sigmoid.fn(in2))  # 003 [3]
    return out2, {"in1": in1, "out1": out1, "in2": in2, "out2": out2}


def _sample(key, params, batch):
    kx, ky = jax.random.split(key)
    dtype = params["W1"].dtype
    return (jax.random.normal(kx, (batch, params["W1"].shape[0]), dtype),
            jax.random.uniform(ky, (batch, params["W2"].shape[1]), dtype))  # fmt: skip


def _backward(variant: str | None = None) -> Callable:
    """The backward pass of 003, corrected (``variant=None``) or with one step as printed:
    ``"fprime_outside"`` ([8] line 3), ``"delta_is_dout"`` ([9]'s "where"), ``"delta_is_dw"``
    ([10], [11])."""

    def backward(params, x, saved, Y):
        in1, out1, in2, out2 = saved["in1"], saved["out1"], saved["in2"], saved["out2"]
        dout2 = _MSE.grad(out2, Y)  # ∂E/∂out_j = 2/(b|out|) (out_j − y_j) (003 [7]), (B, n_out)
        if variant == "delta_is_dout":
            # δ_i = ∂E/∂out_i as printed (003 [9]), then d_ij = δ_j out_i (003 [12]): δ stands
            # where ∂E/∂in must.
            din2 = dout2
        else:
            din2 = _sigmoid.vjp(in2, out2, dout2)  # δ_k = ∂E/∂in_k = ∂E/∂out_k f′(in_k) (003 [5])
        if variant == "fprime_outside":
            # As printed (003 [8] line 3): Σ_j (∂E/∂out_j · w_kj) · f′(in_j), f′ taken out of the
            # sum over j; the only index left for it is k's own layer: f′(in_k).
            dout1 = _sigmoid.vjp(in1, out1, dout2 @ params["W2"].T)
        else:
            dout1 = din2 @ params["W2"].T  # ∂E/∂out_k = Σ_j ∂E/∂out_j f′(in_j) w_kj (003 [8])
        din1 = _sigmoid.vjp(in1, out1, dout1)  # δ_k = f′(in_k) Σ_i δ_i w_ki (003 [9], corrected)
        # d_ij = δ_j out_i (003 [12]); as printed in 003 [10], δ_jl = ∂E/∂w_jl: δ itself.
        dW2 = din2 if variant == "delta_is_dw" else out1.T @ din2
        dW1 = x.T @ din1  # d_ij = δ_j out_i, out_i = x_i (003 [12])
        return {"W1": dW1, "W2": dW2}, {"in1": din1, "out1": dout1, "in2": din2, "out2": dout2}

    return backward


def model(variant: str | None, name: str) -> jaxprop.Model:
    """003's two-layer network with :func:`_backward` ``(variant)``, named ``name``."""
    return jaxprop.Model(name=name, source=DOCS["003"], init=_init, forward=_forward,
                         objective=_MSE, backward=_backward(variant), sample=_sample,
                         nodes=("in1", "out1", "in2", "out2"))  # fmt: skip


def _corrected() -> jaxprop.Model:
    return model(None, "003 corrected")


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
        sizes=dict(_SIZES),
        note="With f′ outside the sum the only index left for it is k's own, f′(in_k): the "
        "previous line (with f′(in_j) inside) is right.",
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
        sizes=dict(_SIZES),
        note="With δ = ∂E/∂out as defined, d_ij = δ_j out_i drops the factor f′(in_j) at the "
        "output layer: the variant uses δ where ∂E/∂in_j is needed, and the node check "
        "blames in2.",
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
        sizes=dict(_SIZES),
        note="δ has one entry per neuron (per example), ∂E/∂w one per connection: taking δ "
        "for the weight gradient gives the wrong shape. The index l of 'other layers' "
        "(Σ_i δ_i w_li f′(in_l)) is also garbled for j.",
    ),
)

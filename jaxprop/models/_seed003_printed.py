"""Seed 003's δ recursion read AS PRINTED: two wrong backward passes, kept out of the registry.

Source: 003_c347acbe1cb23503.txt, formulas cited [1]–[12] as numbered in
:mod:`jaxprop.models.seed003`. The correct reading (δ_k = ∂E/∂in_k = f′(in_k) Σ_i w_ki δ_i,
d_jk = δ_k out_j) is what the registered models implement; this module exists so that a test can
show that the two literal readings below FAIL the gradient check (docs/seed003.md):

- ``"f-outside-sum"``, formula [8] line 3: ∂E/∂out_k = (Σ_{j∈l+1} ∂E/∂out_j · w_kj) · f′(in_j),
  f′ outside the sum over j. Outside the sum the index j is no longer bound; the only neuron in
  scope is k, and that is how the document itself continues in [9] (f′(in_k)). So this reading
  computes ∂E/∂out^l = f′(in^l) ⊙ ∂E/∂out^{l+1} (W^{l+1})ᵀ, with the next layer's f′(in^{l+1})
  lost, and the weight gradient from the chain rule [1], d_jk = ∂E/∂out_k · f′(in_k) · out_j.
  The output layer's d is right; every hidden layer's is wrong (f′(in^l) counted twice,
  f′(in^{l+1}) missing), unless the activations are the identity.
- ``"delta-is-dE-dout"``, formula [9] with its "where δ_i = ∂E/∂out_i" and [12]: δ^L = ∂E/∂out^L
  ([6], [7]), δ_k = Σ_i (δ_i · w_ki) · f′(in_k), d_jk = δ_k · out_j. The output layer's f′(in^L)
  is lost everywhere, so every layer's d is wrong unless the output activation is the identity
  (then this reading coincides with the correct one).

These are NOT exported by :mod:`jaxprop.models` and not registered.

>>> import jax
>>> from jaxprop.models import _seed003_printed as printed
>>> model = printed.as_printed("sigmoid", reading="delta-is-dE-dout")
>>> model.name
'neuron-delta-as-printed-delta-is-dE-dout'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp

from jaxprop.models.seed003 import _activations, _check_labels, _layers, neuron_net, node_names
from jaxprop.nn.losses import LOSSES

__all__ = ["READINGS", "as_printed"]

_loss = LOSSES["mean_squared_error"]


def _fprime(f, in_, out):
    """f′(in) elementwise, from the saved in and out (003 [5])."""
    return f.vjp(in_, out, jnp.ones_like(in_))


def _backward_f_outside_sum(acts, params, x, saved, y):
    """[8] line 3 as printed (f′ outside the sum over j, bound to k as in [9]), d by [1]."""
    depth = len(params)
    outs, ins = _layers(saved, x, depth)
    _check_labels(outs[depth], y)
    grads, adjoints = [None] * depth, {}
    dE_dout = _loss.grad(outs[depth], y)  # ∂E/∂out at the output (003 [6], [7])
    for l in range(depth, 0, -1):
        fprime = _fprime(acts[l - 1], ins[l], outs[l])  # f′(in_k) (003 [5])
        # d_jk = ∂E/∂out_k · ∂out_k/∂in_k · ∂in_k/∂w_jk = ∂E/∂out_k · f′(in_k) · out_j (003 [1]).
        grads[l - 1] = outs[l - 1].T @ (dE_dout * fprime)
        adjoints[f"out{l}"], adjoints[f"in{l}"] = dE_dout, dE_dout * fprime
        if l > 1:
            # AS PRINTED, WRONG: ∂E/∂out_k = Σ_j (∂E/∂out_j · w_kj) · f′(in_k): the sum takes
            # ∂E/∂out_j of the next layer without its f′(in_j) (003 [8] line 3).
            fprime_k = _fprime(acts[l - 2], ins[l - 1], outs[l - 1])
            dE_dout = (dE_dout @ params[l - 1].T) * fprime_k
    return grads, {name: adjoints[name] for name in node_names(depth)}


def _backward_delta_is_dE_dout(acts, params, x, saved, y):
    """[9] as printed with δ_i = ∂E/∂out_i, then d_ij = δ_j · out_i ([12])."""
    depth = len(params)
    outs, ins = _layers(saved, x, depth)
    _check_labels(outs[depth], y)
    grads, adjoints = [None] * depth, {}
    # AS PRINTED, WRONG: δ_i = ∂E/∂out_i at the output, no f′(in_i) (003 [9] "where", [6], [7]).
    delta = _loss.grad(outs[depth], y)
    for l in range(depth, 0, -1):
        adjoints[f"out{l}"], adjoints[f"in{l}"] = delta, delta
        # d_ij = δ_j · out_i (003 [12]).
        grads[l - 1] = outs[l - 1].T @ delta
        if l > 1:
            # δ_k = Σ_i (δ_i · w_ki) · f′(in_k) (003 [9]).
            delta = (delta @ params[l - 1].T) * _fprime(acts[l - 2], ins[l - 1], outs[l - 1])
    return grads, {name: adjoints[name] for name in node_names(depth)}


READINGS = {
    "f-outside-sum": _backward_f_outside_sum,
    "delta-is-dE-dout": _backward_delta_is_dE_dout,
}


def as_printed(activations: str | Sequence[str] = "sigmoid", reading: str = "f-outside-sum"):
    """Seed 003's net (forward, loss, init, sample of :func:`neuron_net`) with a backward pass
    that follows the document as printed; its gradient is WRONG (see the module docstring).

    Raises:
      ValueError: for an unknown ``reading``; the message lists the valid ones.
    """
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; expected one of {list(READINGS)}")
    base = neuron_net(activations, backward="per-layer")

    def backward(params, x, saved, y):
        acts = _activations(activations, len(params), base.name)
        return READINGS[reading](acts, params, x, saved, y)

    return dataclasses.replace(base, name=f"neuron-delta-as-printed-{reading}", backward=backward)

"""Seed 003, "neuron δ recursion": in_k = Σ_j w_jk out_j, out_k = f(in_k), batch MSE, no biases.

Source: 003_c347acbe1cb23503.txt. The document numbers none of its formulas; this module cites the
displayed ones as [1]–[12], in the order printed:

====  ==========================================================================================
[1]   d_jk = ∂E/∂w_jk = ∂E/∂out_k · ∂out_k/∂in_k · ∂in_k/∂w_jk (the chain rule)
[2]   in_k = Σ_{j∈l−1} w_jk · out_j
[3]   out_i = f_i(in_i)
[4]   ∂in_k/∂w_jk = out_j
[5]   ∂out_k/∂in_k = f′(in_k)
[6]   output layer: ∂E/∂out_l = ∂E/∂out
[7]   E = 1/(b·|out|) Σ (y_i − out_i)², ∂E/∂out_j = 2/(b·|out|) (out_j − y_j)
[8]   ∂E/∂out_k = Σ_{j∈l+1} ∂E/∂in_j · ∂in_j/∂out_k = Σ_j ∂E/∂out_j · f′(in_j) · w_kj (lines 1–2;
      line 3 prints f′(in_j) outside the sum over j)
[9]   δ_k = Σ_{i∈l+1} (δ_i · w_ki) · f′(in_k), "where δ_i = ∂E/∂out_i"
[10]  output layer: δ_jl = ∂E/∂w_jl = ∂E/∂out · f′(in_j) (δ_j is ∂E/∂in_j, not ∂E/∂w)
[11]  other layers: δ_jl = ∂E/∂w_jl = Σ_{i∈l+1} (δ_i · w_li) · f′(in_l) (read with j for the
      neuron index l: δ_j = Σ_i (δ_i · w_ji) · f′(in_j))
[12]  d_ij = δ_j · out_i
====  ==========================================================================================

**Which reading this module implements.** The document calls δ both ∂E/∂out ([9]) and the
quantity with f′ already applied ([10]), and puts f′ of the next layer outside its sum ([8] line 3)
and f′ of the own layer outside it ([9]). The mathematically right reading, which both backward
passes here implement, is the one of [1], [8] lines 1–2, [10] and [11]:

    δ_k = ∂E/∂in_k = f′(in_k) · Σ_{i∈l+1} w_ki δ_i        (δ_k = ∂E/∂out_k · f′(in_k) at the output)
    d_jk = δ_k · out_j

that is, δ is ∂E/∂IN (not ∂E/∂out, as [9]'s "where" clause says), f′(in_k) of the neuron's own
layer stands outside the sum, and the next layer's f′ is already inside its δ_i. The two readings
as printed ([8] line 3 with f′ outside the sum over j; [9] with δ_i = ∂E/∂out_i) are implemented
in :mod:`jaxprop.models._seed003_printed` (not registered) and fail the gradient check; see
docs/seed003.md.

Shapes: params is a list of L weight matrices, ``params[l − 1]`` of shape (n_{l−1}, n_l) with
entry [j, k] = w_jk from neuron j of layer l − 1 to neuron k of layer l ([2]); there are no biases.
A batch x has shape (B, n_0), one example per row, and the labels y shape (B, n_L). Layer l's
nodes are named ``in{l}`` and ``out{l}`` (l = 1 … L); the input x is out_0.

Both registered models share the forward pass and differ in the backward pass:

- ``neuron-delta-per-neuron``: δ of ONE neuron k as the document's sum over the next layer's
  neurons, a function of the index k mapped over the neurons (and the batch) with ``jax.vmap``,
  and d_jk = δ_k · out_j, a function of (j, k) mapped over both;
- ``neuron-delta-per-layer``: the same recursion as matrix products, δ^l = f′(in^l) ⊙ δ^{l+1}
  (W^{l+1})ᵀ and D^l = (out^{l−1})ᵀ δ^l.

>>> import jax
>>> from jaxprop.models import seed003
>>> model = seed003.neuron_net("tanh", backward="per-neuron")
>>> params = model.init(jax.random.key(0), sizes=(3, 5, 2))
>>> [w.shape for w in params]
[(3, 5), (5, 2)]
>>> x, y = model.sample(jax.random.key(1), params, batch=4)
>>> grads, adjoints = model.backward_from(params, x, y)
>>> [d.shape for d in grads], sorted(adjoints)
([(3, 5), (5, 2)], ['in1', 'in2', 'out1', 'out2'])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxprop.model.contract import Model, tap
from jaxprop.model.validate import check_batch_size, check_input, check_sizes
from jaxprop.nn.activations import Activation, get_activation
from jaxprop.nn.losses import LOSSES

__all__ = ["BACKWARDS", "SOURCE", "neuron_net", "node_names"]

SOURCE = "003_c347acbe1cb23503.txt [1]-[12] (in_k, out_k, batch MSE, δ recursion, d_jk)"
BACKWARDS = ("per-neuron", "per-layer")
_DEFAULT_SIZES = (4, 8, 3)
_loss = LOSSES["mean_squared_error"]  # [7]


def node_names(depth: int) -> tuple[str, ...]:
    """The named nodes of a net with ``depth`` weight layers, in forward order.

    >>> node_names(2)
    ('in1', 'out1', 'in2', 'out2')
    """
    return tuple(f"{kind}{l}" for l in range(1, depth + 1) for kind in ("in", "out"))


def _activations(activations, depth: int, name: str) -> tuple[Activation, ...]:
    """One elementwise activation per weight layer; ValueError when the count or kind is wrong."""
    if isinstance(activations, (str, Activation)):
        acts = (get_activation(activations),) * depth
    else:
        acts = tuple(get_activation(a) for a in activations)
        if len(acts) != depth:
            raise ValueError(
                f"{name}: {len(acts)} activations {[a.name for a in acts]} for {depth} weight "
                f"layers; expected one activation per weight layer ({depth})"
            )
    for a in acts:
        if a.deriv is None:
            raise ValueError(
                f"{name}: activation {a.name!r} is not elementwise; the document's f′(in_k) "
                "([5]) needs an elementwise activation (identity, sigmoid, tanh, relu)"
            )
    return acts


def _check_weights(params, name: str) -> tuple[int, ...]:
    """The layer widths (n_0, …, n_L) of a list of weight matrices that chain; else ValueError."""
    if not isinstance(params, (list, tuple)) or len(params) == 0:
        raise ValueError(
            f"{name}: params must be a non-empty list of weight matrices of shape "
            f"(n_(l-1), n_l), got {type(params).__name__}"
        )
    sizes = []
    for l, w in enumerate(params):
        shape = jnp.shape(w)
        if len(shape) != 2:
            raise ValueError(
                f"{name}: params[{l}] has shape {shape}; expected a weight matrix of shape "
                f"(n_{l}, n_{l + 1})"
            )
        if l == 0:
            sizes.append(shape[0])
        elif shape[0] != sizes[-1]:
            raise ValueError(
                f"{name}: weights do not chain: params[{l - 1}] has shape "
                f"{jnp.shape(params[l - 1])} but params[{l}] has shape {shape}; expected "
                f"params[{l}] of shape ({sizes[-1]}, n_{l + 1})"
            )
        sizes.append(shape[1])
    return tuple(sizes)


def _check_labels(out, y) -> None:
    if jnp.shape(y) != jnp.shape(out):
        raise ValueError(
            f"labels y have shape {jnp.shape(y)} but the network output out has shape "
            f"{jnp.shape(out)}: expected y of shape {jnp.shape(out)} (batch, n_L)"
        )


def _layers(saved, x, depth: int):
    """(out_0 = x, …, out_L) and (in_1, …, in_L) from the saved values."""
    outs = [x] + [saved[f"out{l}"] for l in range(1, depth + 1)]
    ins = [None] + [saved[f"in{l}"] for l in range(1, depth + 1)]
    return outs, ins


# -- per-neuron: one neuron k of one example, then jax.vmap over k and over the batch ------------


def _over_neurons(fn, n: int, *layer_args):
    """``fn(k, *args)`` for one example, mapped over the neurons k < n and the batch rows.

    ``layer_args`` are (array, batched) pairs: batched arrays have a leading batch axis and are
    mapped over it (one example each); the others (weights) are shared.
    """
    arrays = tuple(a for a, _ in layer_args)
    batch_axes = tuple(0 if batched else None for _, batched in layer_args)
    per_example = jax.vmap(fn, in_axes=(0,) + (None,) * len(arrays))  # over the neurons k
    per_batch = jax.vmap(per_example, in_axes=(None, *batch_axes))  # over the examples
    return per_batch(jnp.arange(n), *arrays)  # (B, n)


def _dE_dout_output(k, out, y, size):
    # ∂E/∂out_k = 2/(b·|out|) (out_k − y_k), b·|out| = size (003 [6], [7]).
    return 2.0 / size * (out[k] - y[k])


def _dE_dout_hidden(k, w_next, delta_next):
    # ∂E/∂out_k = Σ_{i∈l+1} ∂E/∂in_i · ∂in_i/∂out_k = Σ_i δ_i · w_ki, δ_i = ∂E/∂in_i (003 [8]
    # lines 1–2; [9] and [11] with δ read as ∂E/∂in, the next layer's f′ inside δ_i).
    return jnp.sum(delta_next * w_next[k, :])


def _delta(k, dE_dout, in_, f: Activation):
    # δ_k = ∂E/∂in_k = ∂E/∂out_k · f′(in_k), f′ at the saved input in_k (003 [5], [10], [11]).
    assert f.deriv is not None  # the activations are checked to be elementwise
    return dE_dout[k] * f.deriv(in_[k])


def _d(j, k, out_prev, delta):
    # d_jk = δ_k · out_j (003 [1], [4], [12]), summed over the batch's examples: E of [7] is the
    # batch's mean, so its derivative is the sum of the examples' terms.
    return jnp.sum(delta[:, k] * out_prev[:, j])


def _weight_grad_per_neuron(out_prev, delta):
    """d_jk for every (j, k): ``_d`` mapped over k, then over j."""
    over_k = jax.vmap(_d, in_axes=(None, 0, None, None))
    over_jk = jax.vmap(over_k, in_axes=(0, None, None, None))
    return over_jk(jnp.arange(out_prev.shape[1]), jnp.arange(delta.shape[1]), out_prev, delta)


def _backward_per_neuron(acts, params, x, saved, y):
    depth = len(params)
    outs, ins = _layers(saved, x, depth)
    _check_labels(outs[depth], y)
    grads, adjoints = [None] * depth, {}
    size = outs[depth].size  # b·|out| (003 [7])
    dE_dout = _over_neurons(
        lambda k, out, y_: _dE_dout_output(k, out, y_, size),
        outs[depth].shape[1],
        (outs[depth], True),
        (y, True),
    )  # (003 [6], [7])
    for l in range(depth, 0, -1):  # layer by layer, output to input; neurons by vmap
        n = outs[l].shape[1]
        delta = _over_neurons(
            lambda k, g, i_, f=acts[l - 1]: _delta(k, g, i_, f), n, (dE_dout, True), (ins[l], True)
        )  # (003 [10], [11])
        adjoints[f"out{l}"], adjoints[f"in{l}"] = dE_dout, delta
        grads[l - 1] = _weight_grad_per_neuron(outs[l - 1], delta)  # (003 [12])
        if l > 1:
            dE_dout = _over_neurons(
                _dE_dout_hidden, outs[l - 1].shape[1], (params[l - 1], False), (delta, True)
            )  # (003 [8])
    return grads, {name: adjoints[name] for name in node_names(depth)}


# -- per-layer: the same recursion as matrix products --------------------------------------------


def _backward_per_layer(acts, params, x, saved, y):
    depth = len(params)
    outs, ins = _layers(saved, x, depth)
    _check_labels(outs[depth], y)
    grads, adjoints = [None] * depth, {}
    # ∂E/∂out = 2/(b·|out|) (out − y), every output neuron and example at once (003 [6], [7]).
    dE_dout = _loss.grad(outs[depth], y)
    for l in range(depth, 0, -1):
        # δ^l = ∂E/∂out^l ⊙ f′(in^l), f′ from the saved in^l and out^l (003 [5], [10], [11]).
        delta = acts[l - 1].vjp(ins[l], outs[l], dE_dout)
        adjoints[f"out{l}"], adjoints[f"in{l}"] = dE_dout, delta
        # D^l[j, k] = Σ_b out^{l−1}_bj δ^l_bk: d_jk = δ_k · out_j over the batch (003 [12]).
        grads[l - 1] = outs[l - 1].T @ delta
        if l > 1:
            # ∂E/∂out^{l−1}_k = Σ_i w_ki δ^l_i: δ^l (W^l)ᵀ (003 [8] lines 1–2, [11]).
            dE_dout = delta @ params[l - 1].T
    return grads, {name: adjoints[name] for name in node_names(depth)}


_BACKWARD = {"per-neuron": _backward_per_neuron, "per-layer": _backward_per_layer}


def neuron_net(activations: str | Sequence[str] = "sigmoid", backward: str = "per-layer") -> Model:
    """Seed 003's fully connected net without biases, with a hand backward pass.

    Args:
      activations: one activation name for every layer, or a sequence of names, one per weight
        layer (its length fixes the depth). Elementwise activations only (f′(in_k), [5]).
      backward: ``"per-neuron"`` (δ_k and d_jk per neuron, mapped with ``jax.vmap``) or
        ``"per-layer"`` (matrix products).

    Returns:
      A :class:`~jaxprop.Model` named ``neuron-delta-<backward>``. ``init(key, sizes=(4, 8, 3),
      dtype=jnp.float32)`` returns the list of weight matrices, ``params[l − 1]`` of shape
      (n_{l−1}, n_l) (when ``activations`` is a sequence of length L and ``sizes`` is left at its
      default, the default is widened to L + 1 sizes 4, 8, …, 8, 3); ``forward(params, x)`` takes x
      of shape (B, n_0) and returns out_L of shape (B, n_L); the loss is E of [7]; ``backward``
      returns the weight gradients and the adjoints ∂E/∂in_l, ∂E/∂out_l of every layer, each of
      shape (B, n_l). ``model.node_names(params)`` names them (see :func:`node_names`).

    Raises:
      ValueError: for an unknown ``backward``, an unknown or non-elementwise activation, an empty
        sequence of activations (depth 0), ``activations`` neither a name nor a sequence, or a
        sequence of activations whose length differs from the number of weight layers.
    """
    if not isinstance(backward, str) or backward not in _BACKWARD:
        raise ValueError(f"unknown backward {backward!r}; expected one of {list(BACKWARDS)}")
    name = f"neuron-delta-{backward}"
    if not isinstance(activations, (str, Activation, Sequence)):
        raise ValueError(
            f"{name}: activations must be a name in jaxprop.ACTIVATIONS or a sequence of them, "
            f"one per weight layer, got {type(activations).__name__}"
        )
    if not isinstance(activations, (str, Activation)) and len(activations) == 0:
        raise ValueError(
            f"{name}: activations must name at least one weight layer (depth >= 1), got []"
        )
    fixed_depth = None if isinstance(activations, (str, Activation)) else len(activations)
    if fixed_depth is not None:
        _activations(activations, fixed_depth, name)  # unknown names fail here, not at first use
    else:
        _activations(activations, 1, name)

    def init(key, sizes: Sequence[int] = _DEFAULT_SIZES, dtype=jnp.float32):
        """Weights w_jk ~ N(0, 1/n_{l−1}), one (n_{l−1}, n_l) matrix per layer; no biases."""
        if sizes is _DEFAULT_SIZES and fixed_depth is not None:
            sizes = (4,) + (8,) * (fixed_depth - 1) + (3,)
        sizes = check_sizes(name, "sizes", sizes, dtype)
        if len(sizes) < 2:
            raise ValueError(f"{name}: sizes {sizes}; expected at least two positive widths")
        _activations(activations, len(sizes) - 1, name)
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            jax.random.normal(k, (n_prev, n), dtype) / math.sqrt(n_prev)
            for k, n_prev, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]

    def forward(params, x, taps=None):
        """in^l = out^{l−1} W^l and out^l = f_l(in^l) for l = 1 … L, out^0 = x ([2], [3])."""
        sizes = _check_weights(params, name)
        acts = _activations(activations, len(params), name)
        check_input(x, sizes[0], name)
        out, saved = x, {}
        for l, (w, f) in enumerate(zip(params, acts, strict=True), start=1):
            # in_k = Σ_j w_jk · out_j for every k and example (003 [2]).
            in_ = tap(taps, f"in{l}", out @ w)
            # out_k = f(in_k) (003 [3]).
            out = tap(taps, f"out{l}", f.fn(in_))
            saved[f"in{l}"], saved[f"out{l}"] = in_, out
        return out, saved

    backward_pass = _BACKWARD[backward]

    def backward_fn(params, x, saved, y):
        acts = _activations(activations, len(params), name)
        return backward_pass(acts, params, x, saved, y)

    def sample(key, params, batch: int):
        """x ~ N(0, 1) of shape (B, n_0) and labels y ~ U(0, 1) of shape (B, n_L)."""
        sizes = _check_weights(params, name)
        check_batch_size(name, batch)
        kx, ky = jax.random.split(key)
        dtype = params[0].dtype
        x = jax.random.normal(kx, (batch, sizes[0]), dtype)
        y = jax.random.uniform(ky, (batch, sizes[-1]), dtype)
        return x, y

    return Model(
        name=name,
        source=SOURCE,
        init=init,
        forward=forward,
        objective=_loss,
        backward=backward_fn,
        sample=sample,
        nodes=lambda params: node_names(len(params)),
        check_labels=_check_labels,
    )


def models() -> tuple[Model, ...]:
    """The models this module registers: both backward passes (the registry builds them from here;
    so does the mutation test of the backward pass, from a fresh copy of this module)."""
    return (neuron_net(backward="per-neuron"), neuron_net(backward="per-layer"))

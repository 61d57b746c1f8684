"""Seed 002, the K-layer network: f_i = σ_i(A_{i−1} f_{i−1} + b_{i−1}), L = ‖y − f_K‖².

Source: 002_dadcaa6bdb722c5e.txt, section 5.6.1, eqs (5.111)–(5.118). The document writes one
example as a column vector f_i ∈ R^{n_i}, with A_{i−1} ∈ R^{n_i × n_{i−1}} and b_{i−1} ∈ R^{n_i}. A
batch is a matrix x of shape (B, n_0) with one example per row, so row r of every batched equation
below is the transpose of the document's column equation for example r (Z = f Aᵀ + b for
Z = A f + b).
The loss is (5.114) per example, the MEAN over the batch.

Parameters are a list of K dicts ``[{"A": (n_1, n_0), "b": (n_1,)}, ..., {"A": (n_K, n_{K−1}),
"b": (n_K,)}]``: θ_{i} = {A_i, b_i} for i = 0, …, K − 1, as the document indexes them after (5.114).

The named nodes are Z_i = A_{i−1} f_{i−1} + b_{i−1} (the pre-activation) and f_i = σ_i(Z_i), for
i = 1, …, K; the backward pass returns the adjoint ∂L/∂node of each.

The hand backward is the recursion (5.115)–(5.118): the adjoint ∂L/∂f_{i+1}, the product of the
orange factors ∂L/∂f_K ∂f_K/∂f_{K−1} ⋯ ∂f_{i+2}/∂f_{i+1}, is kept from layer i + 1 and only the
boxed terms are new for layer i: one pass from the output back, nothing recomputed.

>>> import jax
>>> from jaxprop.models import seed002
>>> model = seed002.k_layer(["tanh", "relu", "sigmoid"])
>>> params = model.init(jax.random.key(0), sizes=(4, 8, 8, 3))
>>> [layer["A"].shape for layer in params]
[(8, 4), (8, 8), (3, 8)]
>>> x, Y = model.sample(jax.random.key(1), params, batch=5)
>>> grads, adjoints = model.backward_from(params, x, Y)
>>> model.node_names(params)
('Z1', 'f1', 'Z2', 'f2', 'Z3', 'f3')
>>> adjoints["Z2"].shape
(5, 8)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprop.model.contract import Model, tap
from jaxprop.model.validate import check_batch_size, check_input, check_sizes
from jaxprop.nn.activations import Activation, get_activation
from jaxprop.nn.losses import LOSSES

__all__ = ["DEFAULT_SIZES", "SOURCE", "k_layer", "layer_sizes", "node_names"]

SOURCE = "002_dadcaa6bdb722c5e.txt (5.112)-(5.118)"
DEFAULT_SIZES = (4, 8, 8, 3)
_NAME = "k-layer"
_loss = LOSSES["squared_error"]


def node_names(K: int) -> tuple[str, ...]:
    """The nodes of a K-layer network in forward order: ``("Z1", "f1", ..., "ZK", "fK")``."""
    return tuple(name for i in range(1, K + 1) for name in (f"Z{i}", f"f{i}"))


def layer_sizes(params: Sequence[Mapping[str, jax.Array]]) -> tuple[int, ...]:
    """The sizes (n_0, …, n_K) of a parameter list, after checking that the layers chain.

    Raises:
      ValueError: naming the layer, the shape it has and the shape expected, when params is not a
        non-empty list of {"A", "b"} dicts, a bias does not fit its matrix, or A_i does not take
        the output of A_{i−1} (naming both shapes).
    """
    if isinstance(params, Mapping) or not isinstance(params, Sequence) or len(params) == 0:
        raise ValueError(
            f"{_NAME}: params must be a non-empty list of {{'A', 'b'}} dicts, one per layer, "
            f"got {type(params).__name__}"
        )
    sizes: list[int] = []
    for i, layer in enumerate(params):
        if not isinstance(layer, Mapping) or set(layer) != {"A", "b"}:
            keys = sorted(layer) if isinstance(layer, Mapping) else type(layer).__name__
            raise ValueError(f"{_NAME}: params[{i}] has keys {keys}; expected ['A', 'b']")
        a_shape, b_shape = jnp.shape(layer["A"]), jnp.shape(layer["b"])
        if len(a_shape) != 2:
            raise ValueError(
                f"{_NAME}: params[{i}]['A'] has shape {a_shape}; expected 2 dimensions "
                f"(n_{i + 1}, n_{i})"
            )
        if b_shape != (a_shape[0],):
            raise ValueError(
                f"{_NAME}: params[{i}]['b'] has shape {b_shape} but params[{i}]['A'] has shape "
                f"{a_shape}: expected b of shape ({a_shape[0]},)"
            )
        if i == 0:
            sizes.append(a_shape[1])
        elif a_shape[1] != sizes[-1]:
            prev = jnp.shape(params[i - 1]["A"])
            raise ValueError(
                f"{_NAME}: layer sizes do not chain: params[{i}]['A'] has shape {a_shape} but "
                f"params[{i - 1}]['A'] has shape {prev}: expected params[{i}]['A'] of shape "
                f"({a_shape[0]}, {prev[0]})"
            )
        sizes.append(a_shape[0])
    return tuple(sizes)


def _activations(activations: str | Activation | Sequence[str | Activation], K: int | None):
    """One Activation per layer; a single name applies to every layer."""
    if isinstance(activations, (str, Activation)):
        return None if K is None else (get_activation(activations),) * K
    acts = tuple(get_activation(a) for a in activations)
    if K is not None and len(acts) != K:
        raise ValueError(
            f"{_NAME}: activations has {len(acts)} entries but the network has K = {K} layers: "
            f"expected one activation per layer (or a single name for all)"
        )
    return acts


def k_layer(activations: str | Sequence[str] = "sigmoid") -> Model:
    """The K-layer network of (5.112)–(5.114) with its hand backward (5.115)–(5.118).

    Args:
      activations: σ_i, a name in :data:`jaxprop.ACTIVATIONS` for every layer, or a sequence of K
        names, one per layer (then K is fixed to its length).

    Returns:
      A :class:`~jaxprop.Model`. ``init(key, sizes=(n_0, ..., n_K), dtype)`` gives the list of K
      {A, b} dicts; ``forward(params, x)`` takes x of shape (B, n_0) and returns f_K of shape
      (B, n_K); the loss is mean_B ‖y − f_K‖². ``model.node_names(params)`` names Z_i and f_i for
      i = 1..K, K the number of layers in ``params``.

    Raises:
      ValueError: for an empty sequence, an unknown activation name, or ``activations`` neither a
        name nor a sequence.
    """
    if not isinstance(activations, (str, Activation, Sequence)):
        raise ValueError(
            f"{_NAME}: activations must be a name in jaxprop.ACTIVATIONS or a sequence of them, "
            f"one per layer, got {type(activations).__name__}"
        )
    if not isinstance(activations, (str, Activation)) and len(activations) == 0:
        raise ValueError(f"{_NAME}: activations must name at least one layer, got []")
    fixed = _activations(activations, None)  # None for a single name: any depth

    def acts_for(K):
        return _activations(activations if fixed is None else fixed, K)

    def init(key, sizes: Sequence[int] | None = None, dtype=jnp.float32):
        """Parameters [{A, b}] for sizes (n_0, …, n_K): A_i ~ N(0, 1/n_i), zero biases.

        The default sizes are :data:`DEFAULT_SIZES`, or, for a network whose activations fix
        its depth K, the first K + 1 of n_0, 8, 8, …, 3 (n_0 = 4)."""
        if sizes is None:
            K = 3 if fixed is None else len(fixed)
            sizes = DEFAULT_SIZES if K == 3 else (4, *([8] * (K - 1)), 3)
        sizes = check_sizes(_NAME, "sizes", sizes, dtype)
        if len(sizes) < 2:
            raise ValueError(
                f"{_NAME}: sizes {sizes} must list n_0, ..., n_K (K >= 1), each at least 1"
            )
        if fixed is not None and len(fixed) != len(sizes) - 1:
            raise ValueError(
                f"{_NAME}: sizes {sizes} give K = {len(sizes) - 1} layers but activations has "
                f"{len(fixed)}: expected sizes of length {len(fixed) + 1}"
            )
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            {
                "A": jax.random.normal(k, (n_out, n_in), dtype) / math.sqrt(n_in),
                "b": jnp.zeros((n_out,), dtype),
            }
            for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]

    def forward(params, x, taps=None):
        sizes = layer_sizes(params)
        acts = acts_for(len(sizes) - 1)
        check_input(x, sizes[0], _NAME)
        f = x  # f_0 := x (5.112)
        saved = {}
        for i, (layer, act) in enumerate(zip(params, acts, strict=True), start=1):
            # Z_i = A_{i−1} f_{i−1} + b_{i−1}, one row per example (5.113).
            Z = tap(taps, f"Z{i}", f @ layer["A"].T + layer["b"][None, :])
            f = tap(taps, f"f{i}", act.fn(Z))  # f_i = σ_i(Z_i) (5.113)
            saved[f"Z{i}"], saved[f"f{i}"] = Z, f
        return f, saved

    def backward(params, x, saved, Y):
        K = len(layer_sizes(params)) - 1
        acts = acts_for(K)
        # ∂L/∂f_K = 2 (f_K − y)ᵀ, over B for the batch mean ((5.114) with (5.81)).
        df = _loss.grad(saved[f"f{K}"], Y)
        grads: list[dict[str, Any] | None]  # every entry is set, from the last layer down
        grads, adjoints = [None] * K, {}
        for i in range(K, 0, -1):
            layer, act = params[i - 1], acts[i - 1]
            f_prev = x if i == 1 else saved[f"f{i - 1}"]
            adjoints[f"f{i}"] = df  # ∂L/∂f_i, the product of the orange factors (5.118)
            # ∂f_i/∂Z_i = diag σ_i′(Z_i) from f_i = σ_i(Z_i) (5.113): ∂L/∂Z_i = ∂L/∂f_i ⊙ σ_i′,
            # inside ∂f_i/∂θ_{i−1} of (5.115)–(5.118) (softmax: its full Jacobian, by act.vjp).
            dZ = act.vjp(saved[f"Z{i}"], saved[f"f{i}"], df)
            adjoints[f"Z{i}"] = dZ
            # ∂Z_i/∂A_{i−1} = f_{i−1}: ∂L/∂A_{i−1} = Σ_rows ∂L/∂Z_iᵀ f_{i−1}ᵀ, the boxed (blue)
            # term ∂f_i/∂θ_{i−1} of (5.115)–(5.118) (the tensor of (5.88)–(5.92) contracted).
            dA = dZ.T @ f_prev
            # ∂Z_i/∂b_{i−1} = I: ∂L/∂b_{i−1} = Σ_rows ∂L/∂Z_i (5.115)–(5.118).
            db = jnp.sum(dZ, axis=0)
            grads[i - 1] = {"A": dA, "b": db}
            if i > 1:
                # ∂f_i/∂f_{i−1} = diag σ_i′ A_{i−1} (the orange term):
                # ∂L/∂f_{i−1} = ∂L/∂Z_i A_{i−1}, kept for layer i − 1 ((5.116)–(5.118): reused,
                # not recomputed).
                df = dZ @ layer["A"]
        return grads, {name: adjoints[name] for name in node_names(K)}

    def sample(key, params, batch: int):
        sizes = layer_sizes(params)
        check_batch_size(_NAME, batch)
        kx, ky = jax.random.split(key)
        dtype = params[0]["A"].dtype
        x = jax.random.normal(kx, (batch, sizes[0]), dtype)
        Y = jax.random.uniform(ky, (batch, sizes[-1]), dtype)
        return x, Y

    if fixed is None:
        assert isinstance(activations, (str, Activation))  # fixed is None for a single name
        act_name = get_activation(activations).name
        name = _NAME if act_name == "sigmoid" else f"{_NAME}[{act_name}]"
    else:
        name = f"{_NAME}[{','.join(a.name for a in fixed)}]"
    return Model(
        name=name,
        source=SOURCE,
        init=init,
        forward=forward,
        objective=_loss,
        backward=backward,
        sample=sample,
        nodes=lambda params: node_names(len(params)),
    )


def models() -> tuple:
    """The entries this module registers (the registry builds them from here; so does the
    mutation test of the backward pass, from a fresh copy of this module)."""
    return (k_layer(),)

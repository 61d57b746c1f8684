"""The peers the benchmark times jaxprop against: the same gradients written with NumPy by hand,
and PyTorch eager autograd where it is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def numpy_grad_tanh_softmax(p, x, Y):
    """Seed 001's gradient in NumPy (001_90440b38c2c51fc3.txt eqs (1)–(4), (7), (14)–(17))."""
    z1 = x @ p["W1"] + p["b1"]
    a1 = np.tanh(z1)
    z2 = a1 @ p["W2"] + p["b2"]
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    y_hat = e / e.sum(axis=1, keepdims=True)
    dz2 = (y_hat - Y) / x.shape[0]
    da1 = dz2 @ p["W2"].T
    dz1 = da1 * (1 - a1 * a1)
    return {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": a1.T @ dz2, "b2": dz2.sum(0)}


_NP_ACT: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    # activation: (σ(z), σ′ from the saved output a = σ(z) and z)
    "identity": (lambda z: z, lambda a, z: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0), lambda a, z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda a, z: 1 - a * a),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a, z: a * (1 - a)),
}


def numpy_mlp_grad(weights, biases, x, Y, activations, *, layout, loss_scale):
    """A K-layer network's gradient in NumPy, the loop of every textbook.

    Args:
      weights: per layer, (n_out, n_in) for ``layout="A"`` (seed 002's A f + b) or (n_in, n_out)
        for ``layout="w"`` (seed 003's w_jk).
      biases: per layer a (n_out,) array, or ``None`` for no biases.
      x: the (B, n_0) inputs.
      Y: the (B, n_K) targets.
      activations: per layer a name in ``_NP_ACT``.
      layout: ``"A"`` or ``"w"``.
      loss_scale: c in L = c Σ (f_K − Y)²: 1/B for seed 002's mean ‖y − f_K‖², 1/(B·n_K) for
        seed 003's batch MSE.

    Returns:
      (weight gradients, bias gradients or None).
    """
    fs, zs = [x], []
    for i, (w, act) in enumerate(zip(weights, activations, strict=False)):
        z = fs[-1] @ (w.T if layout == "A" else w)
        if biases is not None:
            z = z + biases[i]
        zs.append(z)
        fs.append(_NP_ACT[act][0](z))
    df = 2 * loss_scale * (fs[-1] - Y)
    dws, dbs = [None] * len(weights), [None] * len(weights)
    for i in reversed(range(len(weights))):
        dz = df * _NP_ACT[activations[i]][1](fs[i + 1], zs[i])
        dws[i] = dz.T @ fs[i] if layout == "A" else fs[i].T @ dz
        dbs[i] = dz.sum(0)
        if i:
            df = dz @ (weights[i] if layout == "A" else weights[i].T)
    return dws, (dbs if biases is not None else None)


def _to_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float32), tree)


def torch_version() -> str | None:
    """PyTorch's version, or ``None`` when ``import torch`` fails (the extra is absent)."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def torch_tanh_softmax(leaves, x, Y):
    """Seed 001's loss in PyTorch: mean cross-entropy of softmax(tanh(x W1 + b1) W2 + b2)."""
    import torch

    W1, W2, b1, b2 = leaves  # jax.tree.leaves sorts the dict's keys
    z2 = torch.tanh(x @ W1 + b1) @ W2 + b2
    return -(Y * torch.log_softmax(z2, dim=1)).sum() / x.shape[0]


def _torch_act(name):
    import torch

    return {"identity": lambda z: z, "relu": torch.relu, "tanh": torch.tanh,
            "sigmoid": torch.sigmoid}[name]  # fmt: skip


def torch_k_layer(activations):
    """Seed 002's K-layer loss in PyTorch: mean over the batch of ‖f_K − Y‖², f = σ(f A^T + b)."""

    def loss(leaves, x, Y):
        f = x
        for i, act in enumerate(activations):
            A, b = leaves[2 * i], leaves[2 * i + 1]
            f = _torch_act(act)(f @ A.T + b)
        return ((f - Y) ** 2).sum() / x.shape[0]

    return loss


def torch_neuron_net(activations):
    """Seed 003's loss in PyTorch: batch MSE of f = σ(f w), no biases."""

    def loss(leaves, x, Y):
        f = x
        for w, act in zip(leaves, activations, strict=True):
            f = _torch_act(act)(f @ w)
        return ((f - Y) ** 2).sum() / (x.shape[0] * Y.shape[1])

    return loss


def _torch_tensors(np_tree, requires_grad=False):
    import torch

    return [torch.tensor(np.asarray(a)).requires_grad_(requires_grad)
            for a in jax.tree.leaves(np_tree)]  # fmt: skip


def torch_grad_fn(torch_loss, params, x, Y):
    """An argument-free callable: one PyTorch eager forward and ``torch.autograd.grad``."""
    import torch

    leaves = _torch_tensors(params, requires_grad=True)
    (tx,), (tY,) = _torch_tensors([x]), _torch_tensors([Y])

    def grad():
        torch.autograd.grad(torch_loss(leaves, tx, tY), leaves)

    return grad


def torch_train_fn(torch_loss, params, x, Y, lr, steps):
    """An argument-free callable: ``steps`` full-batch ``torch.optim.SGD`` steps from ``params``."""
    import torch

    (tx,), (tY,) = _torch_tensors([x]), _torch_tensors([Y])

    def run():
        leaves = _torch_tensors(params, requires_grad=True)
        opt = torch.optim.SGD(leaves, lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            torch_loss(leaves, tx, tY).backward()
            opt.step()

    return run


def _numpy_neuron_net(activations):
    def grad(params, x, Y):
        dws, _ = numpy_mlp_grad(
            params, None, x, Y, activations, layout="w", loss_scale=1 / (x.shape[0] * Y.shape[1])
        )
        return dws

    return grad


def _numpy_k_layer(activations):
    def grad(params, x, Y):
        dAs, dbs = numpy_mlp_grad(
            [layer["A"] for layer in params],
            [layer["b"] for layer in params],
            x,
            Y,
            activations,
            layout="A",
            loss_scale=1 / x.shape[0],
        )
        return [{"A": dA, "b": db} for dA, db in zip(dAs, dbs, strict=False)]

    return grad

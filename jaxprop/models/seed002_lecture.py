"""Seed 002, the lecture: the two-layer sigmoid example and the total cost with gradient descent.

Source: 002_dadcaa6bdb722c5e.txt, the lecture part ("Specific Example", Forward Path and Backward
Paths (1)–(4); "Total Cost" and "Problem Formulation"). One example is a column vector:

    f0 = X,  Z1 = A0 f0 + b0,  f1 = σ(Z1),  Z2 = A1 f1 + b1,  f2 = σ(Z2),
    E = ½ (f2 − Y)ᵀ (f2 − Y),

with σ the logistic sigmoid. A batch x of shape (B, n0) holds one example per row; the models' loss
is the MEAN of E over the batch, and the per-example math is lifted with ``jax.vmap``.

Two hand backward passes of the same network, both :class:`~jaxprop.Model`:

- ``"two-layer-sigmoid[jacobians]"`` (:func:`two_layer_sigmoid_jacobians`): the backward paths
  (1)–(4) written literally as products of explicit Jacobian matrices: the row vector (f2 − Y)ᵀ,
  diag σ′(Z2), ∂Z2/∂f1 = A1, diag σ′(Z1), the identity ∂Z/∂b, and for the weights ∂Z/∂α =
  [∂A/∂α] f, collected over every α ∈ A into the tensor of (5.88)–(5.92). Cost grows as the cube of
  the width (the tensors ∂Z/∂A) and as its square for the biases (the n × n matrices).
- ``"two-layer-sigmoid"`` (:func:`two_layer_sigmoid`): the same products as vector–Jacobian
  products, never forming a matrix: diag σ′ becomes ⊙ σ′, the identity disappears, A1 acts as
  A1ᵀ on the adjoint and ∂E/∂A = (∂E/∂Z) fᵀ. Cost grows as the square of the width.

The total cost E(θ) = Σ_r E^r(θ) over a data set, its hand gradient and the gradient-descent
update θ(t+1) = θ(t) − η ∂E/∂θ are :func:`total_cost`, :func:`total_cost_grad` and
:func:`sgd_step`; the registry entry ``"total-cost-sgd"`` checks them against jax.grad and one
step of ``optax.sgd(η)``.

The lecture prints the labels of backward path (2) as "Identity Diagonal Diagonal Row Vector" for
the five factors (f2 − Y)ᵀ, ∂f2/∂Z2, ∂Z2/∂f1, ∂f1/∂Z1, ∂Z1/∂b0: read right to left they name
∂Z1/∂b0 = I, ∂f1/∂Z1 = diag σ′(Z1), then "Diagonal" for ∂Z2/∂f1, which is A1, a full n2 × n1 matrix
(and the diagonal ∂f2/∂Z2 is left unlabelled). The code uses ∂Z2/∂f1 = A1.

>>> import jax
>>> from jaxprop.models import seed002_lecture as lecture
>>> model = lecture.two_layer_sigmoid_jacobians()
>>> params = model.init(jax.random.key(0), n0=3, n1=4, n2=2)
>>> x, Y = model.sample(jax.random.key(1), params, batch=5)
>>> grads = model.grad(params, x, Y)
>>> grads["A0"].shape, grads["b1"].shape
((4, 3), (2,))
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.model.contract import Model, tap
from jaxprop.model.validate import check_batch_size, check_input, check_param_shapes, check_sizes
from jaxprop.models.seed002_calculus import df_dA
from jaxprop.nn.activations import ACTIVATIONS
from jaxprop.nn.losses import LOSSES

__all__ = [
    "NODES",
    "SOURCE",
    "SOURCE_TOTAL",
    "backward_paths_one",
    "backward_vjp",
    "dE_dalpha",
    "sgd_step",
    "total_cost",
    "total_cost_grad",
    "two_layer_sigmoid",
    "two_layer_sigmoid_jacobians",
]

SOURCE = "002_dadcaa6bdb722c5e.txt lecture: Forward Path, Backward Paths (1)-(4)"
SOURCE_TOTAL = "002_dadcaa6bdb722c5e.txt lecture: Total Cost, Problem Formulation"
NODES = ("Z1", "f1", "Z2", "f2")
_SHAPES = {"A0": ("n1", "n0"), "b0": ("n1",), "A1": ("n2", "n1"), "b1": ("n2",)}
_sigma = ACTIVATIONS["sigmoid"]
_loss = LOSSES["half_squared_error"]


def init(key, n0: int = 3, n1: int = 5, n2: int = 2, dtype=jnp.float32):
    """Parameters {A0 (n1, n0), b0 (n1,), A1 (n2, n1), b1 (n2,)}: A ~ N(0, 1/fan_in), b = 0.

    Raises:
      ValueError: for a size that is not a positive integer, or a dtype that is not floating.
    """
    n0, n1, n2 = check_sizes("two-layer-sigmoid", "sizes (n0, n1, n2)", (n0, n1, n2), dtype)
    k0, k1 = jax.random.split(key)
    return {
        "A0": jax.random.normal(k0, (n1, n0), dtype) / math.sqrt(n0),
        "b0": jnp.zeros((n1,), dtype),
        "A1": jax.random.normal(k1, (n2, n1), dtype) / math.sqrt(n1),
        "b1": jnp.zeros((n2,), dtype),
    }


def _forward_one(params, f0, taps):
    """The lecture's Forward Path for one example f0 = X of shape (n0,)."""
    Z1 = tap(taps, "Z1", params["A0"] @ f0 + params["b0"])  # Z1 = A0 f0 + b0
    f1 = tap(taps, "f1", _sigma.fn(Z1))  # f1 = σ(Z1)
    Z2 = tap(taps, "Z2", params["A1"] @ f1 + params["b1"])  # Z2 = A1 f1 + b1
    f2 = tap(taps, "f2", _sigma.fn(Z2))  # f2 = σ(Z2)
    return f2, {"Z1": Z1, "f1": f1, "Z2": Z2, "f2": f2}


def _make_forward(name, mean: bool = True):
    def forward(params, x, taps=None):
        # The models' loss is a batch mean, NaN over no rows; the total cost is a sum, 0 there.
        n0 = check_param_shapes(params, _SHAPES, name)["n0"]
        check_input(x, n0, name, allow_empty=not mean)
        return jax.vmap(_forward_one, in_axes=(None, 0, 0))(params, x, taps)

    return forward


def backward_paths_one(params, f0, saved, dE_df2):
    """Backward paths (1)–(4) for one example, as products of explicit Jacobian matrices.

    Args:
      params: {A0, b0, A1, b1}.
      f0: the input X, shape (n0,).
      saved: Z1, f1, Z2, f2 of this example.
      dE_df2: the row vector ∂E/∂f2 = (f2 − Y)ᵀ, shape (n2,).

    Returns:
      ``(grads, adjoints)`` of this example.
    """
    A1 = params["A1"]
    n1, n2 = A1.shape[1], A1.shape[0]
    row = dE_df2[None, :]  # (f2 − Y)ᵀ: a row vector, 1 × n2
    assert _sigma.deriv is not None  # the sigmoid is elementwise
    df2_dZ2 = jnp.diag(_sigma.deriv(saved["Z2"]))  # ∂f2/∂Z2 = diagonal matrix of σ′ (path (1))
    dZ2_db1 = jnp.eye(n2, dtype=A1.dtype)  # ∂Z2/∂b1 = identity matrix (path (1))
    dZ2_df1 = A1  # ∂Z2/∂f1 = A1, a full n2 × n1 matrix (path (2); printed "Diagonal")
    df1_dZ1 = jnp.diag(_sigma.deriv(saved["Z1"]))  # ∂f1/∂Z1 = diagonal matrix of σ′ (path (2))
    dZ1_db0 = jnp.eye(n1, dtype=A1.dtype)  # ∂Z1/∂b0 = identity matrix (path (2))
    # ∂Z2/∂α = [∂A1/∂α] f1 for every α ∈ A1, collected: the (n2, n2, n1) tensor of (5.92)
    # (path (3)).
    dZ2_dA1 = df_dA(A1, saved["f1"])
    # ∂Z1/∂β = [∂A0/∂β] f0 for every β ∈ A0: the tensor (n1, n1, n0) (path (4)).
    dZ1_dA0 = df_dA(params["A0"], f0)

    dE_dZ2 = row @ df2_dZ2  # (f2 − Y)ᵀ (∂f2/∂Z2), shared by paths (1) and (3)
    dE_db1 = dE_dZ2 @ dZ2_db1  # path (1)
    dE_df1 = dE_dZ2 @ dZ2_df1  # (f2 − Y)ᵀ (∂f2/∂Z2)(∂Z2/∂f1), shared by paths (2) and (4)
    dE_dZ1 = dE_df1 @ df1_dZ1  # … (∂f1/∂Z1)
    dE_db0 = dE_dZ1 @ dZ1_db0  # path (2)
    # ∂E/∂α = (f2 − Y)ᵀ (∂f2/∂Z2)(∂Z2/∂α), for all α ∈ A1 at once (path (3)).
    dE_dA1 = jnp.einsum("ok,kij->oij", dE_dZ2, dZ2_dA1)[0]
    # ∂E/∂β = (f2 − Y)ᵀ (∂f2/∂Z2)(∂Z2/∂f1)(∂f1/∂Z1)(∂Z1/∂β), for all β ∈ A0 (path (4)).
    dE_dA0 = jnp.einsum("ok,kij->oij", dE_dZ1, dZ1_dA0)[0]
    grads = {"A0": dE_dA0, "b0": dE_db0[0], "A1": dE_dA1, "b1": dE_db1[0]}
    adjoints = {"Z1": dE_dZ1[0], "f1": dE_df1[0], "Z2": dE_dZ2[0], "f2": dE_df2}
    return grads, adjoints


def dE_dalpha(params, f0, Y, layer: int, i: int, j: int):
    """∂E/∂α for the one weight α = A_layer[i, j] of one example, literally by path (3) or (4):
    ∂Z/∂α = [∂A/∂α] f with ∂A/∂α the matrix with a single 1 at (i, j).

    Args:
      params: {A0, b0, A1, b1}.
      f0: one input X, shape (n0,).
      Y: its target, shape (n2,).
      layer: 0 (α ∈ A0, path (4)) or 1 (α ∈ A1, path (3)).
      i: the row of α in A_layer, 0 ≤ i < its number of rows.
      j: the column of α in A_layer, 0 ≤ j < its number of columns.

    Raises:
      ValueError: for a layer other than 0 or 1, an index outside A_layer (naming its shape), or
        f0, Y not of shapes (n0,), (n2,) (naming both shapes).
    """
    sizes = check_param_shapes(params, _SHAPES, "dE_dalpha")
    if isinstance(layer, bool) or layer not in (0, 1):
        raise ValueError(f"dE_dalpha: layer must be 0 (A0) or 1 (A1), got {layer!r}")
    A = params[f"A{layer}"]
    for name, v, n in (("i", i, A.shape[0]), ("j", j, A.shape[1])):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
            raise ValueError(
                f"dE_dalpha: {name} = {v!r} is outside A{layer} of shape {A.shape}: expected an "
                f"integer 0 <= {name} < {n}"
            )
    if jnp.shape(f0) != (sizes["n0"],) or jnp.shape(Y) != (sizes["n2"],):
        raise ValueError(
            f"dE_dalpha: f0 has shape {jnp.shape(f0)} and Y has shape {jnp.shape(Y)} but A0 has "
            f"shape {params['A0'].shape} and A1 has shape {params['A1'].shape}: expected one "
            f"example, f0 of shape ({sizes['n0']},) and Y of shape ({sizes['n2']},)"
        )
    _, saved = _forward_one(params, f0, None)
    assert _sigma.deriv is not None  # the sigmoid is elementwise
    dA_dalpha = jnp.zeros_like(A).at[i, j].set(1.0)  # ∂A/∂α
    f_in = f0 if layer == 0 else saved["f1"]
    dZ_dalpha = dA_dalpha @ f_in  # ∂Z/∂α = [∂A/∂α] f (paths (3), (4))
    row = (saved["f2"] - Y)[None, :]  # (f2 − Y)ᵀ
    chain = row @ jnp.diag(_sigma.deriv(saved["Z2"]))  # (f2 − Y)ᵀ ∂f2/∂Z2
    if layer == 0:
        # … (∂Z2/∂f1)(∂f1/∂Z1) (path (4))
        chain = chain @ params["A1"] @ jnp.diag(_sigma.deriv(saved["Z1"]))
    return (chain @ dZ_dalpha)[0]


def backward_vjp(params, x, saved, dE_df2):
    """The same gradients by vector–Jacobian products, for a batch: no Jacobian is formed.

    Row r of every array is the transpose of the column-vector equation for example r, and the
    sum over examples Σ_r of each weight gradient is folded into one matrix product.

    Args:
      params: {A0, b0, A1, b1}.
      x: the inputs f0, shape (B, n0).
      saved: Z1, f1, Z2, f2, each (B, size).
      dE_df2: ∂E/∂f2 = (f2 − Y)ᵀ for each example (times the batch weight), shape (B, n2).

    Returns:
      ``(grads, adjoints)``: grads summed over the batch, adjoints per example.
    """
    dE_dZ2 = _sigma.vjp(saved["Z2"], saved["f2"], dE_df2)  # row · diag σ′ = row ⊙ σ′ (path (1))
    dE_db1 = jnp.sum(dE_dZ2, axis=0)  # · identity (path (1)), Σ_r
    dE_dA1 = dE_dZ2.T @ saved["f1"]  # Σ_r ∂E/∂Z2 f1ᵀ: Σ_k ∂E/∂Z2_k [∂A1/∂α]_k f1 (path (3))
    dE_df1 = dE_dZ2 @ params["A1"]  # row · ∂Z2/∂f1 = row · A1 (path (2))
    dE_dZ1 = _sigma.vjp(saved["Z1"], saved["f1"], dE_df1)  # · diag σ′(Z1) (path (2))
    dE_db0 = jnp.sum(dE_dZ1, axis=0)  # · identity (path (2)), Σ_r
    dE_dA0 = dE_dZ1.T @ x  # Σ_r ∂E/∂Z1 f0ᵀ (path (4))
    grads = {"A0": dE_dA0, "b0": dE_db0, "A1": dE_dA1, "b1": dE_db1}
    adjoints = {"Z1": dE_dZ1, "f1": dE_df1, "Z2": dE_dZ2, "f2": dE_df2}
    return grads, adjoints


def _backward_explicit(params, x, saved, dE_df2):
    """Backward paths (1)–(4) for every example (vmap), the gradients summed over the batch."""
    per_example, adjoints = jax.vmap(backward_paths_one, in_axes=(None, 0, 0, 0))(
        params, x, saved, dE_df2
    )
    return jax.tree.map(lambda d: jnp.sum(d, axis=0), per_example), adjoints


def _make_model(name, backward_batch):
    def backward(params, x, saved, Y):
        # ∂E/∂f2 = (f2 − Y)ᵀ per example, over B for the batch mean.
        dE_df2 = _loss.grad(saved["f2"], Y)
        return backward_batch(params, x, saved, dE_df2)

    def sample(key, params, batch: int):
        sizes = check_param_shapes(params, _SHAPES, name)
        check_batch_size(name, batch)
        kx, ky = jax.random.split(key)
        dtype = params["A0"].dtype
        x = jax.random.normal(kx, (batch, sizes["n0"]), dtype)
        Y = jax.random.uniform(ky, (batch, sizes["n2"]), dtype)
        return x, Y

    return Model(
        name=name,
        source=SOURCE,
        init=init,
        forward=_make_forward(name),
        objective=_loss,
        backward=backward,
        sample=sample,
        nodes=NODES,
    )


def two_layer_sigmoid_jacobians() -> Model:
    """The lecture's network, backward by explicit Jacobian matrices (paths (1)–(4))."""
    return _make_model("two-layer-sigmoid[jacobians]", _backward_explicit)


def two_layer_sigmoid() -> Model:
    """The lecture's network, backward by vector–Jacobian products."""
    return _make_model("two-layer-sigmoid", backward_vjp)


# ---------------------------------------------------------------------------------------------
# Total cost and gradient descent.


def _check_total_labels(f2, Y) -> None:
    """Y must have f2's shape (R, n2), one target row per input row: no broadcasting."""
    if jnp.shape(Y) != jnp.shape(f2):
        raise ValueError(
            f"total-cost: labels Y have shape {jnp.shape(Y)} but the network output f2 has shape "
            f"{jnp.shape(f2)} (one row per row of X): expected Y of shape {jnp.shape(f2)}"
        )


def total_cost(params, X, Y):
    """E(θ) = Σ_r E^r(θ), E^r = ½ (f2^r − Y^r)ᵀ (f2^r − Y^r), over the rows r of X (R, n0).

    (The lecture prints the sum as Σ_{r=1}^{K} over a data set of N examples; it runs over all N.)

    Raises:
      ValueError: naming both shapes when Y is not of the output's shape (R, n2).
    """
    f2, _ = _make_forward("total-cost", mean=False)(params, X)
    _check_total_labels(f2, Y)
    return jnp.sum(0.5 * (f2 - Y) ** 2)  # Σ_r ½ ‖f2^r − Y^r‖² (Total Cost)


def total_cost_grad(params, X, Y):
    """∂E/∂θ = Σ_r ∂E^r/∂θ, each term by the hand backward with ∂E^r/∂f2 = (f2^r − Y^r)ᵀ.

    Raises:
      ValueError: naming both shapes when Y is not of the output's shape (R, n2).
    """
    f2, saved = _make_forward("total-cost", mean=False)(params, X)
    _check_total_labels(f2, Y)
    # ∂E^r/∂θ = (Ŷ − Y)ᵀ ∂Ŷ/∂θ (Problem Formulation) for every example r, summed over r
    # (Total Cost) inside the VJPs' matrix products.
    return backward_vjp(params, X, saved, f2 - Y)[0]


def sgd_step(params, grads, eta: float):
    """θ(t+1) = θ(t) − η ∂E(θ(t))/∂θ, leaf by leaf (Problem Formulation)."""
    return jax.tree.map(lambda theta, g: theta - eta * g, params, grads)


def models() -> tuple:
    """The entries this module registers (the registry builds them from here; so does the
    mutation test of the backward pass, from a fresh copy of this module)."""
    return (two_layer_sigmoid_jacobians(), two_layer_sigmoid())

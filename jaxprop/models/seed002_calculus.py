"""Seed 002, the vector-calculus examples: a scalar function, least squares, gradients of matrices.

Source: 002_dadcaa6bdb722c5e.txt (the chapter's sections 5.2–5.4 and 5.6). Every Jacobian is in
numerator layout, as the chapter's (5.58): ∂(output)/∂(input) has the output's shape followed by
the input's, which is also the layout of ``jax.jacfwd``.

- (5.109)/(5.110): f(x) = √(x² + exp(x²)) + cos(x² + exp(x²)) and its hand derivative, elementwise
  over an array x (:func:`scalar_f`, :func:`scalar_df`; registry entry ``"scalar-f"``).
- (5.75)–(5.83): least squares L(θ) = ‖y − Φθ‖², its gradient in the row-vector layout of (5.83)
  (:func:`least_squares_grad`) and the :class:`~jaxprop.Model` ``"least-squares"`` (x = Φ, one
  row per observation, Y = y), whose check also holds the gradient to zero at the solution of the
  normal equations ΦᵀΦ θ = Φᵀ y.
- (5.85)–(5.92): f = A x and df/dA ∈ R^{M×(M×N)} collected from its partials (:func:`df_dA`;
  entry ``"df/dA"``); and the chapter's two approaches to the gradient of a matrix-valued function
  of a vector (:func:`dA_dx_collate`, :func:`dA_dx_flatten`; entry ``"dA/dx"``).

>>> import jax.numpy as jnp
>>> A, x = jnp.arange(6.0).reshape(2, 3), jnp.array([1.0, 2.0, 3.0])
>>> df_dA(A, x)[1].tolist()  # ∂f_2/∂A: x in row 2, zeros elsewhere (5.92)
[[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxprop.model.contract import Model, tap
from jaxprop.model.validate import check_batch_size, check_input, check_param_shapes, check_sizes
from jaxprop.nn.losses import LOSSES

__all__ = [
    "SOURCE_DA_DX",
    "SOURCE_DF_DA",
    "SOURCE_LEAST_SQUARES",
    "SOURCE_SCALAR",
    "dA_dx_collate",
    "dA_dx_flatten",
    "df_dA",
    "least_squares",
    "least_squares_grad",
    "least_squares_loss",
    "linear_map",
    "matrix_of_vector",
    "normal_equations",
    "scalar_df",
    "scalar_df_expanded",
    "scalar_f",
]

SOURCE_SCALAR = "002_dadcaa6bdb722c5e.txt (5.109)-(5.110)"
SOURCE_LEAST_SQUARES = "002_dadcaa6bdb722c5e.txt (5.75)-(5.84)"
SOURCE_DF_DA = "002_dadcaa6bdb722c5e.txt (5.85)-(5.92)"
SOURCE_DA_DX = "002_dadcaa6bdb722c5e.txt §5.4 approaches 1 and 2, (5.48), (5.68)"


# ---------------------------------------------------------------------------------------------
# (5.109)–(5.110): the scalar example.


def scalar_f(x: jax.Array) -> jax.Array:
    """f(x) = √(x² + exp(x²)) + cos(x² + exp(x²)) (5.109), elementwise over any shape.

    >>> float(scalar_f(jnp.array(0.0)))  # √1 + cos 1
    1.5403...
    """
    u = x**2 + jnp.exp(x**2)  # the shared inner term x² + exp(x²) (5.109)
    return jnp.sqrt(u) + jnp.cos(u)  # (5.109)


def scalar_df(x: jax.Array) -> jax.Array:
    """df/dx in the factored form of (5.110), elementwise: 2x (1/(2√u) − sin u)(1 + exp(x²)).

    >>> abs(float(scalar_df(jnp.array(0.0))))
    0.0
    """
    e = jnp.exp(x**2)
    u = x**2 + e
    return 2 * x * (1 / (2 * jnp.sqrt(u)) - jnp.sin(u)) * (1 + e)  # (5.110), second line


def scalar_df_expanded(x: jax.Array) -> jax.Array:
    """df/dx in the first, expanded form of (5.110), elementwise."""
    e = jnp.exp(x**2)
    u = x**2 + e
    du = 2 * x + 2 * x * e  # d(x² + exp(x²))/dx (5.110)
    return du / (2 * jnp.sqrt(u)) - jnp.sin(u) * du  # (5.110), first line


# ---------------------------------------------------------------------------------------------
# (5.75)–(5.84): least squares.


def _check_phi_theta(Phi, theta, y=None):
    if jnp.ndim(Phi) != 2 or jnp.shape(theta) != (jnp.shape(Phi)[1],):
        raise ValueError(
            f"least squares: Phi has shape {jnp.shape(Phi)} and theta has shape "
            f"{jnp.shape(theta)}: expected Phi of shape (N, D) and theta of shape (D,)"
        )
    if y is not None and jnp.shape(y) != (jnp.shape(Phi)[0],):
        raise ValueError(
            f"least squares: y has shape {jnp.shape(y)} but Phi has shape {jnp.shape(Phi)}: "
            f"expected y of shape ({jnp.shape(Phi)[0]},)"
        )


def least_squares_loss(theta: jax.Array, Phi: jax.Array, y: jax.Array) -> jax.Array:
    """L(θ) = ‖y − Φθ‖² (5.76), (5.77), (5.84): Φ (N, D), θ (D,), y (N,); a scalar (a sum).

    Raises:
      ValueError: naming both shapes when Φ, θ and y do not fit.
    """
    _check_phi_theta(Phi, theta, y)
    e = y - Phi @ theta  # e(θ) = y − Φθ (5.77)
    return e @ e  # ‖e‖² = eᵀe (5.76)


def least_squares_grad(theta: jax.Array, Phi: jax.Array, y: jax.Array) -> jax.Array:
    """∂L/∂θ = −2 eᵀ Φ = −2 (yᵀ − θᵀΦᵀ) Φ ∈ R^{1×D} (5.83), the row vector of (5.78).

    Args:
      theta: θ, shape (D,).
      Phi: Φ, shape (N, D).
      y: y, shape (N,).

    Returns:
      The gradient as a row vector, shape (1, D).

    >>> Phi, y = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]), jnp.array([1.0, 2.0, 2.0])
    >>> g = least_squares_grad(normal_equations(Phi, y), Phi, y)
    >>> g.shape, bool(jnp.max(jnp.abs(g)) < 1e-4)
    ((1, 2), True)

    Raises:
      ValueError: naming both shapes when Φ, θ and y do not fit.
    """
    _check_phi_theta(Phi, theta, y)
    # (yᵀ − θᵀΦᵀ): the transposed residual eᵀ ∈ R^{1×N}, row-vector layout (5.77), (5.83).
    e_row = y[None, :] - theta[None, :] @ Phi.T
    dL_de = 2 * e_row  # ∂L/∂e = 2eᵀ ∈ R^{1×N} (5.81)
    de_dtheta = -Phi  # ∂e/∂θ = −Φ ∈ R^{N×D} (5.82)
    return dL_de @ de_dtheta  # ∂L/∂θ = ∂L/∂e ∂e/∂θ ∈ R^{1×D} (5.79), (5.83)


def normal_equations(Phi: jax.Array, y: jax.Array) -> jax.Array:
    """A solution θ* of the normal equations ΦᵀΦ θ = Φᵀ y (the minimum-norm one when Φ has
    rank < D), where the gradient (5.83) vanishes: −2(yᵀ − θ*ᵀΦᵀ)Φ = −2(Φᵀy − ΦᵀΦθ*)ᵀ = 0."""
    _check_phi_theta(Phi, jnp.zeros(jnp.shape(Phi)[-1:], Phi.dtype), y)
    return jnp.linalg.lstsq(Phi, y)[0]


_LS_NAME = "least-squares"
_squared_error = LOSSES["squared_error"]


def _ls_init(key, D: int = 3, dtype=jnp.float32):
    """Parameters {"theta": (D,)}, standard normal; ValueError unless D is a positive integer and
    dtype floating."""
    (D,) = check_sizes(_LS_NAME, "D", (D,), dtype)
    return {"theta": jax.random.normal(key, (D,), dtype)}


def _ls_forward(params, x, taps=None):
    """ŷ = Φθ (5.75), x = Φ of shape (N, D): returns ŷ of shape (N,)."""
    D = check_param_shapes(params, {"theta": ("D",)}, _LS_NAME)["D"]
    check_input(x, D, _LS_NAME, what="Phi")
    y_hat = tap(taps, "y_hat", x @ params["theta"])  # Φθ (5.75), (5.77)
    return y_hat, {"y_hat": y_hat}


def _ls_backward(params, x, saved, Y):
    # The model's loss is the batch mean (1/N)‖y − Φθ‖² of squared_error, (1/N) times (5.84):
    # so ∂L/∂e = (2/N) eᵀ (5.81 over N), ∂e/∂θ = −Φ (5.82), ∂L/∂θ = −(2/N) eᵀΦ (5.83 over N).
    N = x.shape[0]
    e_row = Y[None, :] - saved["y_hat"][None, :]  # eᵀ = yᵀ − θᵀΦᵀ ∈ R^{1×N} (5.77), (5.83)
    dL_de = 2 * e_row / N  # (5.81), batch mean
    dtheta = dL_de @ (-x)  # (5.82), (5.83): a row vector (1, D)
    dy_hat = -dL_de[0]  # ∂L/∂ŷ = −∂L/∂e, since e = y − ŷ
    return {"theta": dtheta[0]}, {"y_hat": dy_hat}


def _ls_sample(key, params, batch: int):
    D = check_param_shapes(params, {"theta": ("D",)}, _LS_NAME)["D"]
    check_batch_size(_LS_NAME, batch)
    kx, ky = jax.random.split(key)
    dtype = params["theta"].dtype
    return (jax.random.normal(kx, (batch, D), dtype), jax.random.normal(ky, (batch,), dtype))


def least_squares() -> Model:
    """The least-squares :class:`~jaxprop.Model` ``"least-squares"``.

    params {"theta": (D,)}, x = Φ of shape (N, D) (one row per observation), Y = y of shape (N,);
    the loss is ``squared_error``, (1/N)‖y − Φθ‖², the batch mean of (5.84), and the hand gradient
    is (5.83) over N.
    """
    return Model(
        name=_LS_NAME,
        source=SOURCE_LEAST_SQUARES,
        init=_ls_init,
        forward=_ls_forward,
        objective=_squared_error,
        backward=_ls_backward,
        sample=_ls_sample,
        nodes=("y_hat",),
    )


# ---------------------------------------------------------------------------------------------
# (5.85)–(5.92): the gradient of f = A x with respect to A.


def _check_A_x(A, x):
    if jnp.ndim(A) != 2 or jnp.shape(x) != (jnp.shape(A)[1],):
        raise ValueError(
            f"f = A x: A has shape {jnp.shape(A)} and x has shape {jnp.shape(x)}: expected A of "
            f"shape (M, N) and x of shape (N,)"
        )


def linear_map(A: jax.Array, x: jax.Array) -> jax.Array:
    """f = A x ∈ R^M (5.85), A (M, N), x (N,).

    Raises:
      ValueError: naming both shapes when A and x do not fit.
    """
    _check_A_x(A, x)
    return A @ x  # f_i = Σ_j A_ij x_j (5.88)


def df_dA(A: jax.Array, x: jax.Array) -> jax.Array:
    """df/dA ∈ R^{M×(M×N)} (5.86), collected from the partial derivatives (5.87)–(5.92).

    ``J[i, k, q] = ∂f_i/∂A_kq``: x_q where k = i (5.89), (5.90), zero where k ≠ i (5.91).

    Args:
      A: shape (M, N).
      x: shape (N,).

    Returns:
      Shape (M, M, N).

    Raises:
      ValueError: naming both shapes when A and x do not fit.
    """
    _check_A_x(A, x)
    M = A.shape[0]

    def partial_fi(i):
        # ∂f_i/∂A: ∂f_i/∂A_{k≠i,:} = 0ᵀ (5.91) and ∂f_i/∂A_{i,:} = xᵀ (5.90), stacked (5.92).
        return jnp.zeros_like(A).at[i].set(x)

    # df/dA = [∂f_1/∂A; …; ∂f_M/∂A] (5.87).
    return jax.vmap(partial_fi)(jnp.arange(M))


# ---------------------------------------------------------------------------------------------
# §5.4: a matrix-valued function of a vector, its gradient by the chapter's two approaches.


def matrix_of_vector(x: jax.Array, C: jax.Array, D: jax.Array) -> jax.Array:
    """A(x) = tanh(C x + D) ∈ R^{m×n}, the example matrix-valued function of x ∈ R^p.

    ``A_ij(x) = tanh(Σ_k C_ijk x_k + D_ij)`` with C of shape (m, n, p) and D of shape (m, n); the
    chapter's figure uses m, n, p = 4, 2, 3.

    Raises:
      ValueError: naming the shapes when C, D and x do not fit.
    """
    if jnp.ndim(C) != 3 or jnp.shape(D) != jnp.shape(C)[:2] or jnp.shape(x) != jnp.shape(C)[2:]:
        raise ValueError(
            f"A(x): C has shape {jnp.shape(C)}, D has shape {jnp.shape(D)} and x has shape "
            f"{jnp.shape(x)}: expected C (m, n, p), D (m, n) and x (p,)"
        )
    return jnp.tanh(jnp.einsum("ijk,k->ij", C, x) + D)


def dA_dx_collate(x: jax.Array, C: jax.Array, D: jax.Array) -> jax.Array:
    """Approach 1: the partial derivatives ∂A/∂x_k, each an m × n matrix, collated along a third
    axis into the m × n × p tensor dA/dx."""
    A = matrix_of_vector(x, C, D)

    def partial_xk(k):
        # ∂A/∂x_k = (1 − A²) ⊙ C[:, :, k], an m × n matrix (elementwise chain rule (5.48)).
        return (1 - A**2) * C[:, :, k]

    # Collate ∂A/∂x_1, …, ∂A/∂x_p into an m × n × p tensor (approach 1).
    return jnp.stack([partial_xk(k) for k in range(C.shape[2])], axis=-1)


def dA_dx_flatten(x: jax.Array, C: jax.Array, D: jax.Array) -> jax.Array:
    """Approach 2: flatten A to Ã ∈ R^{mn}, take the Jacobian dÃ/dx ∈ R^{mn × p}, re-shape it to
    m × n × p.

    Raises:
      ValueError: naming the shapes when C, D and x do not fit (as :func:`matrix_of_vector`).
    """
    A = matrix_of_vector(x, C, D)  # checks the shapes of C, D and x first
    m, n, p = C.shape
    A_flat = jnp.reshape(A, (m * n,))  # Ã = vec A (approach 2)
    C_flat = jnp.reshape(C, (m * n, p))  # Ã = tanh(C̃ x + D̃): d(C̃ x)/dx = C̃ (5.68)
    # dÃ/dx = diag(1 − Ã²) C̃ ∈ R^{mn × p}, the chain rule (5.48) with (5.68).
    dA_flat = jnp.diag(1 - A_flat**2) @ C_flat
    return jnp.reshape(dA_flat, (m, n, p))  # re-shape the gradient (approach 2)


def models() -> tuple:
    """The entries this module registers (the registry builds them from here; so does the
    mutation test of the backward pass, from a fresh copy of this module)."""
    return (least_squares(),)

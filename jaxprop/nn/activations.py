"""Activation functions, each written beside its hand-derived derivative.

Every activation is an :class:`Activation`: the function ``fn(z)`` and the chain-rule step through
it, ``vjp(z, a, g) = (∂a/∂z)ᵀ g`` where ``a = fn(z)`` and ``g = ∂L/∂a``. For the elementwise
activations ∂a/∂z is the diagonal matrix diag(σ′(z)) (the "diagonal matrix of σ′" of
002_dadcaa6bdb722c5e.txt, backward path (1)), so the step is the product ``g * σ′``; softmax couples
its outputs and its step is the full Jacobian-transpose product.

>>> import jax.numpy as jnp
>>> from jaxprop import get_activation
>>> act = get_activation("tanh")
>>> z = jnp.array([0.0, 1.0])
>>> a = act.fn(z)
>>> [round(float(v), 4) for v in act.vjp(z, a, jnp.ones(2))]
[1.0, 0.42]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "Activation", "Mistake", "get_activation"]

Array = jax.Array


class Mistake(NamedTuple):
    """A known wrong local derivative of an activation, for the diagnosis of a hand adjoint.

    Attributes:
      says: what was written, in words; ``{z}`` and ``{a}`` stand for the names of the
        pre-activation and of the activation's output (``"1 − {a} (the square missing)"``).
      factor: ``(z, a) -> φ``, the wrong factor, elementwise: a hand adjoint ``g * φ`` instead of
        ``g * σ′(z)``.
    """

    says: str
    factor: Callable[[Array, Array], Array]


class Activation(NamedTuple):
    """An activation and its derivative.

    Attributes:
      name: the name it is registered under.
      fn: ``z -> a``, any shape (softmax acts along the last axis).
      vjp: ``(z, a, g) -> g_z``, the chain rule through the activation: given the
        pre-activation ``z``, the saved output ``a = fn(z)`` and the adjoint ``g = ∂L/∂a``
        (all the same shape), returns ``∂L/∂z``.
      deriv: ``z -> σ′(z)`` elementwise, or ``None`` where the Jacobian is not diagonal.
      mistakes: the known wrong derivatives of this activation (:class:`Mistake`), beyond the
        two every elementwise activation has (its value σ(z) instead of σ′(z), and σ′ taken at
        the output instead of the input), which :func:`jaxprop.check.diagnosis.diagnose` tries.
    """

    name: str
    fn: Callable[[Array], Array]
    vjp: Callable[[Array, Array, Array], Array]
    deriv: Callable[[Array], Array] | None
    mistakes: tuple[Mistake, ...] = ()


def _elementwise(name, fn, deriv_from_z_and_a, mistakes=()):
    """An elementwise activation: ∂a/∂z = diag(σ′), so the VJP is a product."""

    def vjp(z, a, g):
        return g * deriv_from_z_and_a(z, a)

    def deriv(z):
        return deriv_from_z_and_a(z, fn(z))

    return Activation(name, fn, vjp, deriv, tuple(Mistake(*m) for m in mistakes))


def _sigmoid(z):
    # σ(z) = 1 / (1 + e^{−z}) for z ≥ 0 and e^{z} / (1 + e^{z}) for z < 0, one exponential
    # e = e^{−|z|} ≤ 1 for both: no overflow, and accurate to a few ulps in relative terms over
    # the whole range (tests/test_activations_losses.py measures it against a 60-digit
    # reference). The lower tail is σ(z) ≈ e^{z}, kept to the smallest normal number; the form
    # 0.5 (tanh(z/2) + 1) cancels there and is exactly 0 below z ≈ −37 in float64.
    # Each branch is finite at every z, so jax.grad through the jnp.where gives no NaN.
    e = jnp.exp(jnp.where(z >= 0, -z, z))
    return jnp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_deriv(z, a):
    # σ′ = σ(1 − σ), from the saved output a = σ(z) (001_90440b38c2c51fc3.txt eq (6) prints
    # ln σ · ln(1 − σ); see docs/errata.md), with 1 − σ(z) written σ(−z): 1 − a cancels where
    # a → 1 (it is 0 from z ≈ 17 in float32, 37 in float64, where σ′ is still ~1e-8, 1e-16).
    return a * _sigmoid(-z)


def _tanh(z):
    # jnp.tanh (XLA's rational approximation) for |z| < 0.55; above, tanh z = sign(z) (1 − t) /
    # (1 + t) with t = e^{−2|z|} ≤ e^{−1.1}, where 1 − t ≥ 2/3 does not cancel: XLA's tanh is 6
    # ulps off near |z| = 19 in float64, this form 1 (tests/test_activations_losses.py).
    big = jnp.abs(z) >= 0.55
    t = jnp.exp(-2.0 * jnp.abs(z))
    return jnp.where(big, jnp.sign(z) * ((1.0 - t) / (1.0 + t)), jnp.tanh(z))


def _tanh_deriv(z, a):
    # tanh′ = 1 − tanh² (001_90440b38c2c51fc3.txt eq (11)), written 1 − a² = sech² z =
    # 4t / (1 + t)² with t = e^{−2|z|} ≤ 1: 1 − a² cancels where a → ±1 (it is exactly 0 from
    # |z| ≈ 9 in float32, 19 in float64, where tanh′ is still ~1e-7, 1e-16).
    del a
    t = jnp.exp(-2.0 * jnp.abs(z))
    return 4.0 * t / (1.0 + t) ** 2


def _softmax(z):
    # Subtract the max before exponentiating (log-sum-exp trick): no overflow for |z| up to 1e4.
    # The difference d = z − max is rounded, which would cost |d|/2 ulps of relative accuracy in
    # e^{d} (50 ulps at d = −100); its exact rounding error r (Knuth's TwoSum) restores it:
    # e^{d + r} = e^{d} (1 + r) to within r², far below an ulp.
    m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    d = z - m
    z_back = d + m
    r = (z - z_back) + (-m - (d - z_back))
    e = jnp.exp(d) * (1.0 + r)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _softmax_vjp(z, a, g):
    # ∂a_i/∂z_j = a_i (δ_ij − a_j), so (∂a/∂z)ᵀ g = a ⊙ (g − ⟨a, g⟩).
    return a * (g - jnp.sum(a * g, axis=-1, keepdims=True))


ACTIVATIONS: dict[str, Activation] = {
    "identity": _elementwise("identity", lambda z: z, lambda z, a: jnp.ones_like(z)),
    # σ′ = σ(1 − σ) (001_90440b38c2c51fc3.txt eq (6) prints ln σ · ln(1 − σ); see
    # docs/errata.md), written σ(z) σ(−z): see _sigmoid_deriv.
    "sigmoid": _elementwise(
        "sigmoid",
        _sigmoid,
        _sigmoid_deriv,
        mistakes=(
            (
                "ln σ · ln(1 − σ), the sigmoid derivative as 001_90440b38c2c51fc3.txt eq (6) "
                "prints it",
                lambda z, a: jnp.log(a) * jnp.log1p(-a),
            ),
            (
                "{z}(1 − {z}): σ(1 − σ) written with the input {z} in place of the output {a}",
                lambda z, a: z * (1.0 - z),
            ),
            ("1 − {a}: the factor {a} of σ′ = {a}(1 − {a}) missing", lambda z, a: 1.0 - a),
        ),
    ),
    # tanh′ = 1 − tanh² (001_90440b38c2c51fc3.txt eq (11)), written sech² z: see _tanh_deriv.
    "tanh": _elementwise(
        "tanh",
        _tanh,
        _tanh_deriv,
        mistakes=(
            ("1 − {a}: the square of tanh′ = 1 − {a}² missing", lambda z, a: 1.0 - a),
            (
                "1 − {z}²: tanh′ = 1 − tanh² written with the input {z} in place of the output {a}",
                lambda z, a: 1.0 - z * z,
            ),
            ("1 + {a}²: tanh′ with the sign of tanh² flipped", lambda z, a: 1.0 + a * a),
        ),
    ),
    # relu′ = 1 for z > 0 else 0 (the subgradient 0 at z = 0, as jax.grad takes it).
    "relu": _elementwise(
        "relu", lambda z: jnp.where(z > 0, z, 0.0), lambda z, a: (z > 0).astype(z.dtype)
    ),
    "softmax": Activation("softmax", _softmax, _softmax_vjp, None),
}


def get_activation(name: str | Activation) -> Activation:
    """Looks up an activation by name (an :class:`Activation` passes through).

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
    """
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None

"""Document 002 (002_dadcaa6bdb722c5e.txt) as printed: the chain rule of (5.53).

(5.53) differentiates f(x1, x2) with x1(s, t), x2(s, t). Here, as a model whose parameters are
(s, t) (``params["st"]``, shape (2,)): per example (u, v) of a batch x of shape (B, 2),
x1 = s t + u, x2 = sin s + t² v (or x2 = v, constant in (s, t)), f = x1² + x1 x2, and the loss
½(f − Y)² over Y of shape (B, 1). Node: ``x``, shape (B, 2).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxprop.errata.slip import DOCS, Case, Slip, literal_product
from jaxprop.model.contract import Model, tap
from jaxprop.nn.losses import LOSSES

__all__ = ["SLIPS", "model"]


def _forward(x2_depends: bool) -> Callable:
    """x(s, t) per example and f = x1² + x1 x2; x2 = sin s + t² v, or v where not
    ``x2_depends``."""

    def forward(params, x, taps=None):
        s, t = params["st"][0], params["st"][1]
        x2 = jnp.sin(s) + t**2 * x[:, 1] if x2_depends else x[:, 1]
        xs = tap(taps, "x", jnp.stack([s * t + x[:, 0], x2], axis=1))  # (B, 2)
        f = xs[:, :1] ** 2 + xs[:, :1] * xs[:, 1:]  # f = x1² + x1 x2, shape (B, 1)
        return f, {"x": xs, "f": f}

    return forward


def _backward(variant: str, x2_depends: bool = True) -> Callable:
    """The backward pass of (5.53): ``"printed"`` (x1's row of ∂x/∂(s, t) only), ``"literal"``
    (the printed product of two 1 × 2 rows) or ``"corrected"``."""
    loss = LOSSES["half_squared_error"]

    def backward(params, x, saved, Y):
        s, t = params["st"][0], params["st"][1]
        xs = saved["x"]
        df = loss.grad(saved["f"], Y)  # (B, 1)
        # ∂f/∂x = [2 x1 + x2, x1], a row vector per example (002 (5.53), first underbrace).
        dx = df * jnp.stack([2 * xs[:, 0] + xs[:, 1], xs[:, 0]], axis=1)  # (B, 2)
        ones = jnp.ones_like(xs[:, 0])
        dx1_dst = jnp.stack([t * ones, s * ones], axis=1)
        dx2_dst = (
            jnp.stack([jnp.cos(s) * ones, 2 * t * x[:, 1]], axis=1)
            if x2_depends
            else jnp.zeros_like(dx1_dst)
        )
        if variant == "printed":
            # 002 (5.53) as printed: the second factor is the single row [∂x1/∂s ∂x1/∂t]: only
            # x1's row of ∂x/∂(s, t) is used (the product of two 1×2 rows does not type-check).
            dst = dx[:, :1] * dx1_dst
        elif variant == "literal":
            # 002 (5.53) taken literally, per example: [∂f/∂x1 ∂f/∂x2] · [∂x1/∂s ∂x1/∂t].
            dst = jax.vmap(lambda a, b: literal_product(a[None, :], b[None, :])[0])(dx, dx1_dst)
        else:
            # Corrected: ∂x/∂(s, t) is the 2×2 Jacobian [[∂x1/∂s, ∂x1/∂t], [∂x2/∂s, ∂x2/∂t]].
            dst = dx[:, :1] * dx1_dst + dx[:, 1:] * dx2_dst
        return {"st": jnp.sum(dst, axis=0)}, {"x": dx}

    return backward


def model(variant: str, name: str, x2_depends: bool = True) -> Model:
    """The (5.53) example as a :class:`jaxprop.Model` with parameters ``{"st": (s, t)}``.

    Args:
      variant: ``"printed"``, ``"literal"`` or ``"corrected"`` (:func:`_backward`).
      name: the model's name.
      x2_depends: x2 = sin s + t² v (``True``) or x2 = v, constant in (s, t).
    """

    def init(key, dtype=jnp.float64):
        return {"st": jax.random.normal(key, (2,), dtype)}

    def sample(key, params, batch):
        kx, ky = jax.random.split(key)
        dt = params["st"].dtype
        return (jax.random.normal(kx, (batch, 2), dt), jax.random.normal(ky, (batch, 1), dt))

    return Model(
        name=name,
        source=DOCS["002"],
        init=init,
        forward=_forward(x2_depends),
        objective="half_squared_error",
        backward=_backward(variant, x2_depends),
        sample=sample,
        nodes=("x",),
    )


SLIPS = (
    Slip(
        "002-5.53",
        "002",
        "(5.53)",
        "df/d(s,t) = [∂f/∂x1 ∂f/∂x2] [∂x1/∂s ∂x1/∂t], the second factor labelled ∂x2/∂(s,t)",
        "df/d(s,t) = [∂f/∂x1 ∂f/∂x2] [[∂x1/∂s, ∂x1/∂t], [∂x2/∂s, ∂x2/∂t]], the 2×2 "
        "Jacobian ∂x/∂(s,t)",
        lambda: model("printed", "002 (5.53) as printed"),
        lambda: model("corrected", "002 (5.53) corrected"),
        node=None,
        leaf="st",
        cases=(
            Case(
                "x1's row [∂x1/∂s ∂x1/∂t] as the whole of ∂x/∂(s, t) (the printed content), "
                "x1 and x2 both functions of (s, t)",
                "fails",
                document=True,
            ),
            Case(
                "The printed product of the two 1 × 2 rows, literally",
                "cannot-form",
                make=lambda: model("literal", "002 (5.53) literally"),
            ),
            Case(
                "x1's row only, where x2 does not depend on (s, t) (x2 = v): f depends on (s, t) "
                "through x1 alone",
                "holds",
                make=lambda: model("printed", "002 (5.53), x2 constant", x2_depends=False),
            ),
        ),
        document="x1(s, t) and x2(s, t) 'are themselves functions of two variables s and t' "
        "(the text before (5.51)); here x1 = s t + u, x2 = sin s + t² v",
        holds_when="Only where x2 does not depend on (s, t), so that the x2 path of (5.51), "
        "(5.52) is zero; as a product of two 1 × 2 rows it cannot be formed at all",
        fails_when="Wherever x2 depends on (s, t), the case the text treats: the x2 path is lost",
        note="(5.51) and (5.52), printed just above, are right; (5.53) must stack their "
        "factors into the 2 × 2 Jacobian. The adjoint of x is right in the variant, ∂f/∂(s, t) "
        "is not.",
    ),
)

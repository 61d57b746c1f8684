"""Document 002 (002_dadcaa6bdb722c5e.txt) as printed: the chain rule of (5.53).

(5.53) differentiates f(x1, x2) with x1(s, t), x2(s, t). Here, as a model whose parameters are
(s, t) (``params["st"]``, shape (2,)): per example (u, v) of a batch x of shape (B, 2),
x1 = s t + u, x2 = sin s + t² v, f = x1² + x1 x2, and the loss ½(f − Y)² over Y of shape (B, 1).
Node: ``x``, shape (B, 2).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import jaxprop
from jaxprop.errata.slip import DOCS, Slip

__all__ = ["SLIPS", "model"]


def _forward(params, x, taps=None):
    s, t = params["st"][0], params["st"][1]
    # x1 = s t + u, x2 = sin(s) + t² v for data (u, v): x(s, t) per example, shape (B, 2).
    xs = jnp.stack([s * t + x[:, 0], jnp.sin(s) + t**2 * x[:, 1]], axis=1)
    xs = jaxprop.tap(taps, "x", xs)
    f = xs[:, :1] ** 2 + xs[:, :1] * xs[:, 1:]  # f = x1² + x1 x2, shape (B, 1)
    return f, {"x": xs, "f": f}


def _backward(printed: bool) -> Callable:
    """The backward pass of (5.53): as printed (x1's row of ∂x/∂(s, t) only) or corrected."""
    loss = jaxprop.LOSSES["half_squared_error"]

    def backward(params, x, saved, Y):
        s, t = params["st"][0], params["st"][1]
        xs = saved["x"]
        df = loss.grad(saved["f"], Y)  # (B, 1)
        # ∂f/∂x = [2 x1 + x2, x1], a row vector per example (002 (5.53), first underbrace).
        dx = df * jnp.stack([2 * xs[:, 0] + xs[:, 1], xs[:, 0]], axis=1)  # (B, 2)
        dx1_dst = jnp.stack([t * jnp.ones_like(xs[:, 0]), s * jnp.ones_like(xs[:, 0])], axis=1)
        dx2_dst = jnp.stack([jnp.cos(s) * jnp.ones_like(xs[:, 0]), 2 * t * x[:, 1]], axis=1)
        if printed:
            # 002 (5.53) as printed: the second factor is the single row [∂x1/∂s ∂x1/∂t]: only
            # x1's row of ∂x/∂(s, t) is used (the product of two 1×2 rows does not type-check).
            dst = dx[:, :1] * dx1_dst
        else:
            # Corrected: ∂x/∂(s, t) is the 2×2 Jacobian [[∂x1/∂s, ∂x1/∂t], [∂x2/∂s, ∂x2/∂t]].
            dst = dx[:, :1] * dx1_dst + dx[:, 1:] * dx2_dst
        return {"st": jnp.sum(dst, axis=0)}, {"x": dx}

    return backward


def model(printed: bool, name: str) -> jaxprop.Model:
    """The (5.53) example as a :class:`jaxprop.Model` with parameters ``{"st": (s, t)}``.

    Args:
      printed: follow (5.53) as printed (``True``) or its correction.
      name: the model's name.
    """

    def init(key, dtype=jnp.float64):
        return {"st": jax.random.normal(key, (2,), dtype)}

    def sample(key, params, batch):
        kx, ky = jax.random.split(key)
        dt = params["st"].dtype
        return (jax.random.normal(kx, (batch, 2), dt),
                jax.random.normal(ky, (batch, 1), dt))  # fmt: skip

    return jaxprop.Model(name=name, source=DOCS["002"], init=init, forward=_forward,
                         objective="half_squared_error", backward=_backward(printed),
                         sample=sample, nodes=("x",))  # fmt: skip


SLIPS = (
    Slip(
        "002-5.53",
        "002",
        "(5.53)",
        "df/d(s,t) = [∂f/∂x1 ∂f/∂x2] [∂x1/∂s ∂x1/∂t], the second factor labelled ∂x2/∂(s,t)",
        "df/d(s,t) = [∂f/∂x1 ∂f/∂x2] [[∂x1/∂s, ∂x1/∂t], [∂x2/∂s, ∂x2/∂t]], the 2×2 "
        "Jacobian ∂x/∂(s,t)",
        lambda: model(True, "002 (5.53) as printed"),
        lambda: model(False, "002 (5.53) corrected"),
        node=None,
        leaf="st",
        note="Two 1×2 rows cannot be multiplied; read as using x1's row only (the printed "
        "content), the x2 path is lost: the adjoint of x is right and ∂f/∂(s, t) is wrong. "
        "Evidence on f = x1² + x1 x2, x1 = s t + u, x2 = sin s + t² v.",
    ),
)

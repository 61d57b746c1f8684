"""The bridge from a hand backward pass to JAX's autodiff: a Model's loss as a ``jax.custom_vjp``.

:func:`custom_vjp` returns ``loss(params, x, Y)`` whose reverse-mode derivative with respect to the
parameters IS the model's hand backward pass, so a hand derivation composes with autodiff code:
``jax.grad`` of the hand loss plus an autodiff weight decay trains through optax, and the hand
part can sit inside a larger model. The inputs' and labels' cotangents, which the documents do not
derive, come from ``jax.vjp`` of the forward pass (under ``jax.jit`` XLA drops them when nothing
uses them).

>>> import jax, jax.numpy as jnp
>>> import jaxprop
>>> model = jaxprop.get_model("two-layer-mse")
>>> params, x, Y = jaxprop.random_point(model, jax.random.key(0), batch=4)
>>> loss = jaxprop.custom_vjp(model)
>>> g = jax.grad(lambda p: loss(p, x, Y) + 1e-3 * jnp.sum(p["W"] ** 2))(params)   # hand + autodiff
>>> bool(jnp.allclose(g["U"], model.grad(params, x, Y)["U"]))
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxprop.model.contract import Model
from jaxprop.nn.losses import Loss

__all__ = ["custom_vjp"]


def custom_vjp(model: Model) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """``model.loss`` as a ``jax.custom_vjp`` function of ``(params, x, Y)`` whose derivative with
    respect to ``params`` is the model's hand backward pass.

    Args:
      model: a :class:`~jaxprop.Model`.

    Returns:
      ``loss(params, x, Y) -> scalar``, differentiable by ``jax.grad`` / ``jax.vjp`` (reverse
      mode: a custom_vjp has no forward mode).

    Raises:
      TypeError: if ``model`` is not a Model.
    """
    if not isinstance(model, Model):
        raise TypeError(f"custom_vjp needs a jaxprop.Model, got {type(model).__name__}")
    objective, backward = model.objective, model.backward
    assert isinstance(objective, Loss) and backward is not None  # Model.__post_init__ sees to it

    @jax.custom_vjp
    def loss(params, x, Y):
        return model.loss(params, x, Y)

    def fwd(params, x, Y):
        out, saved = model.run_forward(params, x)
        model.check_labels(out, Y)
        return objective.fn(out, Y), (params, x, saved, Y)

    def bwd(res, g):
        params, x, saved, Y = res
        grads, _ = backward(params, x, saved, Y)  # the hand chain rule
        data = [v for v in (x, Y) if jnp.issubdtype(jnp.result_type(v), jnp.inexact)]
        if data:
            # Not derived by hand: the inputs' and labels' cotangents by autodiff of the forward.
            def of_data(*vs):
                it = iter(vs)
                xs = next(it) if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else x
                Ys = next(it) if jnp.issubdtype(jnp.result_type(Y), jnp.inexact) else Y
                return model.loss(params, xs, Ys)

            cots = iter(jax.vjp(of_data, *data)[1](g))
        dx = next(cots) if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else None
        dY = next(cots) if jnp.issubdtype(jnp.result_type(Y), jnp.inexact) else None
        return jax.tree.map(lambda a: g * a, grads), dx, dY

    loss.defvjp(fwd, bwd)
    return loss

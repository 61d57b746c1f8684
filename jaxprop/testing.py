"""pytest-friendly assertions: each runs a check and raises ``AssertionError`` with the report's
failing table, so a test of a rule, a hand gradient or a backward pass is one line.

>>> import jax, jax.numpy as jnp
>>> from jaxprop.testing import assert_rule
>>> @jax.custom_vjp
... def cube(x):
...     return x**3
>>> cube.defvjp(lambda x: (x**3, x), lambda x, g: (3 * x**2 * g,))
>>> assert_rule(cube, jnp.array([0.5, -1.0, 2.0]))
"""

from __future__ import annotations

from typing import Any

from jaxprop.check.report import GradientCheckError, Report

__all__ = ["assert_grads", "assert_nodes", "assert_rule"]


def _assert(report: Report) -> None:
    if not report.ok:
        # An AssertionError (GradientCheckError is one) whose message is the failing table.
        raise GradientCheckError(f"{report._failure_message()}\n{report}")


def assert_rule(f: Any, *args: Any, **kwargs: Any) -> None:
    """Asserts that :func:`jaxprop.check_rule` passes for ``f`` at ``args`` (keywords as there).

    Raises:
      AssertionError: naming each failing check and argument leaf, with the table.
    """
    from jaxprop.check.rules import check_rule

    _assert(check_rule(f, *args, **kwargs))


def assert_grads(loss_fn: Any, grad_fn: Any, params: Any, *args: Any, **kwargs: Any) -> None:
    """Asserts that :func:`jaxprop.check_grads` passes (keywords as there).

    Raises:
      AssertionError: naming each failing leaf and the reference that disagreed, with the table.
    """
    from jaxprop.check.grads import check_grads

    _assert(check_grads(loss_fn, grad_fn, params, *args, **kwargs))


def assert_nodes(model: Any, params: Any, x: Any, Y: Any, **kwargs: Any) -> None:
    """Asserts that :func:`jaxprop.check_nodes` passes (keywords as there).

    Raises:
      AssertionError: naming the failing nodes in backward order, with the node table.
    """
    from jaxprop.check.nodes import check_nodes

    _assert(check_nodes(model, params, x, Y, **kwargs))

"""Derivative rules of JAX's custom-derivatives tutorial, for the rule corpus.

Independent implementations of the derivative rules of the cited projects: the same
mathematics and behaviour, written for this corpus. They re-implement the examples of
jax-ml/jax docs/notebooks/Custom_derivative_rules_for_Python_code.md
@ ce92e479702b0642060c364b403675762eb22b1e ("Custom derivative rules for JAX-transformable
Python functions"; log1pexp and clip_gradient are also in docs/301/custom-jvp-vjp.md
@ 2e911da55c5b6be4d67f3edca5dfb8add7a7b0f1).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# The rule of "TL;DR: Custom VJPs with jax.custom_vjp" (docs/301/custom-jvp-vjp.md
# @ 2e911da55c5b6be4d67f3edca5dfb8add7a7b0f1), re-implemented: sin(x) y, named f_tldr here,
# its fwd and bwd f_tldr_fwd and f_tldr_bwd. The residuals are (cos x, sin x, y).


@jax.custom_vjp
def f_tldr(x, y):
    return y * jnp.sin(x)


def f_tldr_fwd(x, y):
    saved = (jnp.cos(x), jnp.sin(x), y)
    return f_tldr(x, y), saved


def f_tldr_bwd(saved, ct):
    cos_x, sin_x, y = saved
    # d/dx = y cos x, d/dy = sin x
    return ct * y * cos_x, ct * sin_x


f_tldr.defvjp(f_tldr_fwd, f_tldr_bwd)


# The rule of "Example: Numerical stability", re-implemented: log(1 + e^x), whose derivative
# is written 1 - 1 / (1 + e^x) so that it is 1, not inf / inf, where e^x overflows. The primal
# itself overflows to inf for large x, as in the tutorial.


@jax.custom_jvp
def log1pexp(x):
    return jnp.log(jnp.exp(x) + 1.0)


@log1pexp.defjvp
def log1pexp_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    slope = 1.0 - 1.0 / (jnp.exp(x) + 1.0)
    return log1pexp(x), dx * slope


# The rule of "Enforcing a differentiation convention", re-implemented: x / (1 + sqrt(x)) on
# R+, its derivative at 0 the one from the right (1), where autodiff gives nan.


@jax.custom_jvp
def f(x):
    return x / (jnp.sqrt(x) + 1)


@f.defjvp
def f_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    root = jnp.sqrt(x)
    # d/dx x / (1 + r) with r = sqrt(x), simplified: (r + 2) / (2 (r + 1)^2)
    slope = (root + 2) / ((root + 1) ** 2 * 2)
    return f(x), dx * slope


# The rule of "Gradient clipping", re-implemented: the identity in x whose cotangent is clipped
# to [lo, hi]; lo and hi get zero cotangents. Intentionally not the derivative.


@jax.custom_vjp
def clip_gradient(lo, hi, x):
    del lo, hi  # only the bwd uses the bounds
    return x


def clip_gradient_fwd(lo, hi, x):
    return x, (lo, hi)


def clip_gradient_bwd(bounds, ct):
    lower, upper = bounds
    return None, None, jnp.clip(ct, lower, upper)


clip_gradient.defvjp(clip_gradient_fwd, clip_gradient_bwd)


# The rule of "Implicit function differentiation of iterative implementations", re-implemented:
# a fixed point x* = f(a, x*) found by iteration, differentiated by the implicit function
# theorem: a_bar = (d f / d a)^T u, where u solves u = x_bar + (d f / d x)^T u, itself found by
# fixed-point iteration.


def _iterate(step, start):
    """Iterates x <- step(x) from start until two successive iterates differ by at most 1e-6."""

    def keep_going(pair):
        previous, current = pair
        return jnp.abs(current - previous) > 1e-6

    def advance(pair):
        current = pair[1]
        return current, step(current)

    return lax.while_loop(keep_going, advance, (start, step(start)))[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def fixed_point(f, a, x_guess):
    return _iterate(lambda x: f(a, x), x_guess)


def fixed_point_fwd(f, a, x_guess):
    x_star = fixed_point(f, a, x_guess)
    return x_star, (a, x_star)


def fixed_point_rev(f, saved, x_star_bar):
    a, x_star = saved
    _, pull_x = jax.vjp(lambda x: f(a, x), x_star)
    u = _iterate(lambda w: x_star_bar + pull_x(w)[0], x_star_bar)
    _, pull_a = jax.vjp(lambda p: f(p, x_star), a)
    (a_bar,) = pull_a(u)
    # The initial guess does not change the fixed point: its cotangent is 0.
    return a_bar, jnp.zeros_like(x_star)


fixed_point.defvjp(fixed_point_fwd, fixed_point_rev)


def newton_sqrt(a):
    """sqrt(a) as the fixed point of Newton's update x <- (x + a / x) / 2, started at a."""

    def newton_step(p, x):
        return (x + p / x) * 0.5

    return fixed_point(newton_step, a, a)

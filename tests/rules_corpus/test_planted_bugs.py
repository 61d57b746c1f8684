"""Planted bugs: rules of the corpus with one deliberate mistake each, and the check and argument
check_rule must name for it (the untouched arguments stay ok).

Each bug is the kind a hand-written rule really has: a sign, a factor, swapped cotangents, a
transpose, a missing term, a wrong residual, a bwd that ignores its cotangent, a stop_gradient
in what the rule linearizes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest
import rules_ecosystem as eco
import rules_jax
import rules_optimization as opt
import rules_tutorial as tutorial
from jax import lax

import jaxprop

F64 = jnp.float64


def _a(*values):
    return jnp.asarray(values, F64)


def _normal(seed, *shape):
    return jax.random.normal(jax.random.key(seed), shape, F64)


# 1. A sign: xlogy's y tangent negated (rules_jax.xlogy).
@jax.custom_jvp
def xlogy_sign(x, y):
    return rules_jax.xlogy(x, y)


@xlogy_sign.defjvp
def _xlogy_sign_jvp(primals, tangents):
    (x, y), (x_dot, y_dot) = primals, tangents
    result = xlogy_sign(x, y)
    return result, (x_dot * lax.log(y) - y_dot * x / y).astype(result.dtype)  # - for +


# 2. A factor: numpyro's log1mexp with the derivative halved (rules_ecosystem.log1mexp).
@jax.custom_jvp
def log1mexp_factor(x):
    return eco.log1mexp(x)


log1mexp_factor.defjvps(lambda t, ans, x: -0.5 * t / jnp.expm1(-x))  # -t / expm1(-x)


# 3. Swapped cotangents: the tutorial's TL;DR rule sin(x) y returning y's cotangent for x and
# x's for y (rules_tutorial.f_tldr).
def _f_tldr_swapped_bwd(res, g):
    cos_x, sin_x, y = res
    return (sin_x * g, cos_x * g * y)  # (cos_x * g * y, sin_x * g)


f_tldr_swapped = jax.custom_vjp(tutorial.f_tldr.fun)
f_tldr_swapped.defvjp(tutorial.f_tldr_fwd, _f_tldr_swapped_bwd)


# 4. A transpose: a matrix product's jvp (the rule of flax's dot_general_with_precision) with
# lhs's tangent transposed (square operands, so the shapes still fit).
@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def dot_general_transposed(lhs, rhs, dimension_numbers):
    return lax.dot_general(lhs, rhs, dimension_numbers)


@dot_general_transposed.defjvp
def _dot_general_transposed_jvp(dimension_numbers, primals, tangents):
    (a, b), (da, db) = primals, tangents
    product = functools.partial(lax.dot_general, dimension_numbers=dimension_numbers)
    return product(a, b), product(da.T, b) + product(a, db)  # the bug: da.T for da


# 5. A missing term: the jvp of w ⊙ log softmax(x) (optax's weighted_logsoftmax) without the
# term of w's tangent.
@jax.custom_jvp
def weighted_logsoftmax_missing(x, weights):
    return opt.weighted_logsoftmax(x, weights)


@weighted_logsoftmax_missing.defjvp
def _weighted_logsoftmax_missing_jvp(primals, tangents):
    (x, w), (dx, _dw) = primals, tangents
    p = jax.nn.softmax(x, axis=-1)
    # d(w log softmax x) = w (dx − ⟨p, dx⟩) + dw log softmax x; the bug: the dw term dropped.
    dlog = dx - jnp.sum(p * dx, axis=-1, keepdims=True)
    return weighted_logsoftmax_missing(x, w), w * dlog


# 6. A wrong residual: softmin -γ log Σ exp(-x/γ) (ott's) saving x for the bwd instead of -x/γ.
# 7. A bwd that ignores g: the same rule without the output cotangent.
def _softmin_with(residual, use_g):
    gamma = 0.5

    @jax.custom_vjp
    def softmin(x):
        return -gamma * jax.nn.logsumexp(-x / gamma)

    def fwd(x):
        return softmin(x), residual(x, gamma)

    def bwd(z, g):
        weights = jax.nn.softmax(z)  # ∂softmin/∂x = softmax(-x/γ)
        return (weights * g if use_g else weights,)

    softmin.defvjp(fwd, bwd)
    return softmin


softmin_wrong_residual = _softmin_with(lambda x, gamma: x, use_g=True)  # the bug: x for -x/γ
softmin_ignores_g = _softmin_with(lambda x, gamma: -x / gamma, use_g=False)  # the bug: no g


# 8. A stop_gradient in what the rule linearizes: a norm's jvp (the shape of ott's norm rule)
# taking the jvp of norm(stop_gradient(x)), so every tangent is 0.
@jax.custom_jvp
def norm_stopped(x):
    return jnp.sqrt(jnp.sum(x * x))


@norm_stopped.defjvp
def _norm_stopped_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    value, dvalue = jax.jvp(lambda v: jnp.sqrt(jnp.sum(lax.stop_gradient(v) ** 2)), (x,), (dx,))
    return value, dvalue


BUGS = {
    # name: (f, args, the failing (check, leaf), the records that stay ok)
    "sign (xlogy y tangent)": (
        xlogy_sign,
        (_a(0.0, 0.5, 2.0), _a(0.3, 1.0, 2.0)),
        {("reverse", "args[1]")},
        {"reverse args[0]"},
    ),
    "factor (log1mexp halved)": (
        log1mexp_factor,
        (_a(-1e-3, -0.6931472, -2.0),),
        {("reverse", "args[0]"), ("forward", "out")},
        set(),
    ),
    "swapped cotangents (sin(x) y)": (
        f_tldr_swapped,
        (_a(0.3, -1.2, 2.0), _a(1.5, 0.0, -0.7)),
        {("reverse", "args[0]"), ("reverse", "args[1]")},
        set(),
    ),
    "transpose (dot_general lhs tangent)": (
        dot_general_transposed,
        (_normal(3, 3, 3), _normal(4, 3, 3), (((1,), (0,)), ((), ()))),
        {("reverse", "args[0]")},
        {"reverse args[1]"},
    ),
    "missing term (weighted_logsoftmax weights)": (
        weighted_logsoftmax_missing,
        (_a(1.0, 1.0, -0.5, 2.0), _a(0.0, 0.5, 1.0, 0.25)),
        {("reverse", "args[1]")},
        {"reverse args[0]"},
    ),
    "wrong residual (softmin x for x / -gamma)": (
        softmin_wrong_residual,
        (_a(1.0, 1.0, 0.5),),
        {("reverse", "args[0]")},
        set(),
    ),
    "bwd ignores g (softmin)": (
        softmin_ignores_g,
        (_a(1.0, 1.0, 0.5),),
        {("reverse", "args[0]")},
        set(),
    ),
    "stop_gradient in the linearization (norm)": (
        norm_stopped,
        (_a(0.3, -1.0, 2.0),),
        {("reverse", "args[0]"), ("forward", "out")},
        set(),
    ),
}


@pytest.mark.parametrize("bug", BUGS)
def test_a_planted_bug_fails_at_its_check_and_argument(bug):
    f, args, failing, ok = BUGS[bug]
    report = jaxprop.check_rule(f, *args)
    assert not report.ok
    for check, leaf in failing:
        record = report[f"{check} {leaf}"]
        assert (record.check, record.leaf, record.ok) == (check, leaf, False), (bug, record)
    for name in ok:
        assert report[name].ok, f"{bug}: {name} should pass\n{report}"

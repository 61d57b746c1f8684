"""check_rule on rules of our own: correct ones pass; each bug class fails, named by its check and
(for the per-argument bugs) its argument leaf."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jaxprop

F64 = jnp.float64


def _x(*shape, seed=0):
    with jax.enable_x64(True):
        return jax.random.normal(jax.random.key(seed), shape, F64)


# --- correct rules --------------------------------------------------------------------------


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(x),))


@jax.custom_jvp
def x_sin_x(x):
    return x * jnp.sin(x)


@x_sin_x.defjvp
def _x_sin_x_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return x_sin_x(x), (jnp.sin(x) + x * jnp.cos(x)) * t


@jax.custom_vjp
def gather_square(x, idx):
    return x[idx] ** 2


gather_square.defvjp(
    lambda x, idx: (gather_square(x, idx), (x, idx)),
    lambda r, g: (jnp.zeros_like(r[0]).at[r[1]].add(2 * r[0][r[1]] * g), None),
)


@jax.custom_vjp
def affine(p, x):
    return jnp.tanh(x @ p["w"] + p["b"][None, :])


def _affine_fwd(p, x):
    y = affine(p, x)
    return y, (p, x, y)


def _affine_bwd(res, g):
    p, x, y = res
    dz = g * (1 - y**2)
    return {"w": x.T @ dz, "b": dz.sum(0)}, dz @ p["w"].T


affine.defvjp(_affine_fwd, _affine_bwd)


CORRECT = {
    "custom_vjp softplus": (softplus, (_x(5),)),
    "custom_jvp x sin x": (x_sin_x, (_x(4),)),
    "plain code": (lambda a, b: jnp.sum(a * jnp.exp(b)), (_x(3), _x(3, seed=1))),
    "integer index argument": (gather_square, (_x(6), jnp.array([0, 3, 3]))),
    "pytree argument": (affine, ({"w": _x(3, 2), "b": _x(2, seed=2)}, _x(4, 3, seed=3))),
}


@pytest.mark.parametrize("case", CORRECT)
def test_a_correct_rule_passes_every_check(case):
    f, args = CORRECT[case]
    report = jaxprop.check_rule(f, *args)
    assert report.ok, str(report)
    checks = {r.check for r in report.checks}
    assert {"primal", "reverse", "dot-product", "jit", "vmap (vjp)"} <= checks, checks


# --- one rule per bug class -----------------------------------------------------------------


def _vjp(primal, bwd, fwd_primal=None):
    f = jax.custom_vjp(primal)
    f.defvjp(lambda *a: ((fwd_primal or primal)(*a), a), bwd)
    return f


def _jit_breaking_bwd(res, g):
    (x,) = res
    if float(jnp.sum(g)) > -1e9:  # a Python branch on a traced value: fine eagerly only
        return (2 * x * g,)
    return (2 * x * g,)


def _pytree_bwd(res, g):
    p, x = res
    return {"w": g * x, "b": g * p["b"]}, g * p["w"]  # ∂/∂b of b² is 2b: the 2 is missing


@jax.custom_jvp
def _square_nonlinear(x):
    return x**2


@_square_nonlinear.defjvp
def _square_nonlinear_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return x**2, 2 * x * t**2  # the tangent enters squared: right for t = 1 only


def _softmax(z):
    return jax.nn.softmax(z)


BUGS = {
    # name: (f, args, the failing names the report must contain)
    "swapped cotangents": (
        _vjp(lambda a, b: a * b**2, lambda r, g: (2 * r[0] * r[1] * g, r[1] ** 2 * g)),
        (_x(3), _x(3, seed=1)),
        {"reverse args[0]", "reverse args[1]"},
    ),
    "a missing factor": (
        _vjp(lambda x: x**2, lambda r, g: (r[0] * g,)),
        (_x(4),),
        {"reverse args[0]"},
    ),
    "a broadcast argument not summed": (
        _vjp(lambda x, b: x + b, lambda r, g: (g, g)),
        (_x(3), jnp.asarray(0.5, F64)),
        {"reverse args[1]"},
    ),
    "a softmax Jacobian's diagonal only": (
        _vjp(_softmax, lambda r, g: (g * _softmax(r[0]) * (1 - _softmax(r[0])),)),
        (_x(4),),
        {"reverse args[0]"},
    ),
    "a float32 cotangent": (
        _vjp(lambda x: 3 * x, lambda r, g: ((3 * g).astype(jnp.float32),)),
        (_x(3),),
        {"types args[0]"},
    ),
    "a fwd with another primal": (
        _vjp(lambda x: 2 * x, lambda r, g: (2 * g,), fwd_primal=lambda x: 2 * x + 1),
        (_x(3),),
        {"primal out"},
    ),
    "a nonlinear tangent": (_square_nonlinear, (_x(3),), {"forward out", "linearity out"}),
    "a bwd that fails under jit": (
        _vjp(lambda x: x**2, _jit_breaking_bwd),
        (_x(3),),
        {"jit"},
    ),
    "an output's cotangent ignored": (
        _vjp(lambda x: (jnp.sin(x), jnp.cos(x)), lambda r, g: (g[0] * jnp.cos(r[0]),)),
        (_x(3),),
        {"reverse args[0]"},
    ),
    "an overflow at large inputs": (
        _vjp(
            lambda x: jnp.logaddexp(x, 0.0),
            lambda r, g: (g * jnp.exp(r[0]) / (1 + jnp.exp(r[0])),),  # inf / inf past x ≈ 710
        ),
        (jnp.abs(_x(3)) + 1.0,),
        {"probe x1000 args[0]"},
    ),
    "a pytree argument with one wrong leaf": (
        _vjp(lambda p, x: p["w"] * x + p["b"] ** 2, _pytree_bwd),
        ({"w": _x(3), "b": _x(3, seed=1)}, _x(3, seed=2)),
        {"reverse args[0]/b"},
    ),
    "an integer index argument given a cotangent": (
        _vjp(
            lambda x, idx: x[idx] * 2,
            lambda r, g: (jnp.zeros_like(r[0]).at[r[1]].add(2 * g), jnp.ones(3, F64)),
        ),
        (_x(5), jnp.array([0, 1, 4])),
        {"types args[1]"},
    ),
}


@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_class_fails_at_its_check_and_argument(bug):
    f, args, expected = BUGS[bug]
    report = jaxprop.check_rule(f, *args)
    assert not report.ok
    assert expected <= set(report.failing), f"{bug}: failing {report.failing}\n{report}"
    if bug == "a pytree argument with one wrong leaf":
        assert report["reverse args[0]/w"].ok and report["reverse args[1]"].ok


def test_misuse_of_check_rule_raises_and_user_errors_are_verdicts():
    with pytest.raises(TypeError, match="check_rule needs a function f, got int"):
        jaxprop.check_rule(3, _x(2))
    with pytest.raises(ValueError, match="no floating-point argument"):
        jaxprop.check_rule(lambda i: i * 2, jnp.arange(3))

    def broken(x):
        raise RuntimeError("the user's own bug\nsecond line")

    report = jaxprop.check_rule(broken, _x(2))
    assert report.failing == ("primal",)
    assert report["primal"].problem == "RuntimeError: the user's own bug"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_rule_in_low_precision_is_held_to_float64(dtype):
    good = jaxprop.check_rule(softplus, _x(5), dtype=dtype)
    assert good.ok and good.reference_dtype == "float64", str(good)
    bad = jaxprop.check_rule(BUGS["a missing factor"][0], _x(4), dtype=dtype)
    assert "reverse args[0]" in bad.failing


def test_a_rule_finite_differences_cannot_judge_is_unverified_not_passed():
    # A loss of 1e15: its differences are noise, and a rule has no other reference.
    big = _vjp(lambda x: 1e15 + x**2, lambda r, g: (1.3 * 2 * r[0] * g,))  # 30% wrong
    report = jaxprop.check_rule(big, _x(3))
    assert not report.ok and {"reverse args[0]", "dot-product"} <= set(report.failing)
    assert report["reverse args[0]"].unverified and "unverified" in str(report)


def test_nondiff_arguments_are_held_and_empty_leaves_are_an_error():
    import functools

    @functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
    def power(x, k):
        return x**k

    power.defvjp(lambda x, k: (x**k, x), lambda k, x, g: (k * x ** (k - 1) * g,))
    assert jaxprop.check_rule(power, jnp.abs(_x(3)) + 0.5, 3.0).ok
    with pytest.raises(ValueError, match=r"argument leaf args\[0\] has no elements"):
        jaxprop.check_rule(jnp.sin, jnp.zeros((0,), F64))

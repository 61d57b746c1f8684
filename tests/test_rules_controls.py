"""check_rule on what real rules need: intended rules declared, arguments held, tolerances per
argument, tangent spaces, chosen cotangents; verdicts for rules that raise or overflow; the
diagnosis of a failing cotangent; second order; complex arguments."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_rules import softplus, x_sin_x

import jaxprop
from jaxprop.testing import assert_rule

F64 = jnp.float64
# The value checks only: the structural ones (jit, vmap, probes) are tested in test_rules.py.
FAST = {"jit": False, "vmap": False, "probes": ()}


def _x(*shape, seed=0):
    with jax.enable_x64(True):
        return jax.random.normal(jax.random.key(seed), shape, F64)


def _vjp(primal, bwd):
    f = jax.custom_vjp(primal)
    f.defvjp(lambda *a: (primal(*a), a), bwd)
    return f


# --- rules that are deliberately not the derivative ------------------------------------------

# A straight-through estimator (quantisation), gradient reversal (domain adaptation) and
# gradient clipping: each rule's bwd is what it is meant to be, and not the derivative.
ste = _vjp(lambda x: jnp.round(x), lambda r, g: (g,))
reversal = _vjp(lambda x: x, lambda r, g: (-g,))
clip = _vjp(lambda x: x, lambda r, g: (jnp.clip(g, -0.75, 0.75),))

INTENDED = {
    "straight-through": (ste, lambda g, x: g, {}),
    "gradient reversal": (reversal, lambda g, x: -g, {}),
    # Cotangents of scale 3 reach beyond the threshold 0.75: the clipping is exercised.
    "clipping": (clip, lambda g, x: jnp.clip(g, -0.75, 0.75), {"cotangent_scale": 3.0}),
}


@pytest.mark.parametrize("case", INTENDED)
def test_an_intended_rule_passes_declared_and_fails_at_reverse_when_not(case):
    f, intended, kw = INTENDED[case]
    x = jnp.array([0.3, -1.4, 2.6, 0.9])
    undeclared = jaxprop.check_rule(f, x, **kw, **FAST)
    assert "reverse args[0]" in undeclared.failing, str(undeclared)
    declared = jaxprop.check_rule(f, x, intended=intended, **kw, **FAST)
    assert declared.ok, str(declared)
    assert {r.check for r in declared.checks} >= {"primal", "intended"}
    assert not {"reverse", "dot-product"} & {r.check for r in declared.checks}
    assert_rule(f, x, intended=intended, **kw, **FAST)


def test_an_intended_rule_is_held_to_its_reference():
    # Clipping at 0.5 where 0.75 was intended fails at the intended check.
    clip_half = _vjp(lambda x: x, lambda r, g: (jnp.clip(g, -0.5, 0.5),))
    report = jaxprop.check_rule(
        clip_half, _x(5), intended=lambda g, x: jnp.clip(g, -0.75, 0.75), cotangent_scale=3.0,
        **FAST,
    )  # fmt: skip
    assert report.failing == ("intended args[0]",)
    with pytest.raises(AssertionError, match="intended args"):
        assert_rule(clip_half, _x(5), intended=lambda g, x: g, **FAST)


# --- controls -----------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp)
def softmin(x, gamma):
    # ott-jax's softmin, -γ log Σ exp(-x/γ), with a rule for x only (γ is a temperature).
    return -gamma * jax.nn.logsumexp(-x / gamma)


def _softmin_fwd(x, gamma):
    return softmin(x, gamma), (x, gamma)


def _softmin_bwd(res, g):
    x, gamma = res
    return g * jax.nn.softmax(-x / gamma), None  # no cotangent for the temperature


softmin.defvjp(_softmin_fwd, _softmin_bwd)


def test_a_float_argument_is_held_with_hold():
    x = _x(4)
    # Differentiated, γ's missing cotangent is zero: the check says the rule is wrong there.
    assert "reverse args[1]" in jaxprop.check_rule(softmin, x, 0.5, **FAST).failing
    held = jaxprop.check_rule(softmin, x, 0.5, hold=(1,), **FAST)
    assert held.ok, str(held)
    assert not [r for r in held.checks if r.leaf == "args[1]"]
    with pytest.raises(ValueError, match=r"hold must list argument positions 0\.\.1, got 2"):
        jaxprop.check_rule(softmin, x, 0.5, hold=(2,))


def test_a_rule_accurate_to_its_design_says_so_per_argument():
    # A normalisation whose bwd adds 1e-8 to the divisor, as jaxopt's isotonic regression does
    # for stability: its cotangent is right to about 1e-8 relative, by design, not to 1e-10.
    def normalise(x):
        return x / jnp.sum(x)

    def bwd(r, g):
        (x,) = r
        s = jnp.sum(x) + 1e-8  # the designed 1e-8
        return ((g - jnp.sum(g * x) / s) / s,)

    f = _vjp(normalise, bwd)
    x = jnp.abs(_x(4)) + 0.5
    assert "reverse args[0]" in jaxprop.check_rule(f, x, **FAST).failing
    # Held to 1e-6 where the design gives about 1e-8: the tolerance says so, for args[0] only.
    report = jaxprop.check_rule(f, x, rtol={"args[0]": 1e-6}, **FAST)
    assert report.ok, str(report)
    with pytest.raises(ValueError, match=r"rtol key 'args\[3\]' names no argument leaf"):
        jaxprop.check_rule(f, x, rtol={"args[3]": 1e-6})


def _unit_quaternion_rule():
    # The rotation of a fixed vector by a unit quaternion q, whose bwd projects the cotangent
    # onto the tangent space of |q| = 1 (dq − (q·dq) q): the rule of jax-md/jax-md
    # jax_md/rigid_body.py (_quaternion_rotate) @ 0049558f085da1170c5b1a090a9bf9b6d1b770f8,
    # re-implemented; valid only tangent to the sphere.
    v = jnp.array([0.3, -0.2, 0.9])

    def rotate(q):
        w, xyz = q[0], q[1:]
        t = 2 * jnp.cross(xyz, v)
        return v + w * t + jnp.cross(xyz, t)

    def bwd(r, g):
        (q,) = r
        full = jax.vjp(rotate, q)[1](g)[0]
        return (full - jnp.dot(full, q) * q,)  # projected onto the tangent space of |q| = 1

    return _vjp(rotate, bwd)


def test_a_rule_valid_on_a_tangent_space_is_checked_along_it():
    f = _unit_quaternion_rule()
    q = _x(4)
    q = q / jnp.linalg.norm(q)
    assert "reverse args[0]" in jaxprop.check_rule(f, q, **FAST).failing

    def tangent(args, tangents):
        (q,), (t,) = args, tangents
        return (t - jnp.dot(t, q) * q,)

    report = jaxprop.check_rule(f, q, project=tangent, **FAST)
    assert report.ok, str(report)
    assert "reverse (tangent space)" in [r.name for r in report.checks]


def test_explicit_cotangents_replace_the_random_ones():
    f = _vjp(lambda x: x, lambda r, g: (jnp.where(g > 0, g, 0.0),))  # wrong for g < 0 only
    x = _x(3)
    assert jaxprop.check_rule(f, x, cotangents=jnp.ones(3), **FAST).ok
    assert not jaxprop.check_rule(f, x, cotangents=-jnp.ones(3), **FAST).ok
    with pytest.raises(ValueError, match=r"a cotangent of shape \(2,\) for an output of shape"):
        jaxprop.check_rule(f, x, cotangents=jnp.ones(2))


# --- a user's exception or a NaN is a verdict ---------------------------------------------------


def test_an_overflowing_rule_is_a_failed_verdict_with_its_reason():
    # softplus written log(1 + exp(x)): its cotangent overflows to NaN at x = 800.
    naive = jax.custom_vjp(lambda x: jnp.log1p(jnp.exp(x)))
    naive.defvjp(
        lambda x: (jnp.log1p(jnp.exp(x)), x), lambda r, g: (g * jnp.exp(r) / (1 + jnp.exp(r)),)
    )
    report = jaxprop.check_rule(naive, jnp.array([1.0, 800.0]))
    assert not report.ok
    assert report["reverse args[0]"].problem == "cotangent not finite at 1 of 2 elements of args[0]"


def test_nan_cotangents_fail_every_value_check_without_a_traceback():
    f = _vjp(lambda x: x**2, lambda r, g: (g * jnp.nan * r[0],))
    report = jaxprop.check_rule(f, _x(3))
    assert {"reverse args[0]", "dot-product", "probe x10 args[0]"} <= set(report.failing)
    assert "not finite" in report["reverse args[0]"].problem


def test_a_bwd_that_raises_under_vmap_only_fails_its_vmap_check():
    def host_double(g):  # a host callback with no batching rule
        return jax.pure_callback(
            lambda a: 2 * np.asarray(a), jax.ShapeDtypeStruct(g.shape, g.dtype), g
        )

    f = _vjp(lambda x: 2 * x, lambda r, g: (host_double(g),))
    report = jaxprop.check_rule(f, _x(3), probes=())
    assert report.failing == ("vmap (vjp)",), str(report)
    assert report["vmap (vjp)"].problem.split(":")[0].endswith("Error")


# --- what the mistake is ------------------------------------------------------------------------


def _two_args(bwd):
    return _vjp(lambda x, y: x * jnp.sin(y), bwd)


def _right(r, g):
    x, y = r
    return g * jnp.sin(y), g * x * jnp.cos(y)


DIAGNOSED = {
    "swapped": (_two_args(lambda r, g: _right(r, g)[::-1]), "args[0]", "swapped"),
    "sign": (_two_args(lambda r, g: (-_right(r, g)[0], _right(r, g)[1])), "args[0]", "sign"),
    "factor": (_two_args(lambda r, g: (_right(r, g)[0], 2 * _right(r, g)[1])), "args[1]", "scale"),
    "zero": (_two_args(lambda r, g: (jnp.zeros_like(r[0]), _right(r, g)[1])), "args[0]", "zero"),
}


@pytest.mark.parametrize("case", DIAGNOSED)
def test_a_failing_cotangent_is_diagnosed_by_kind(case):
    f, leaf, kind = DIAGNOSED[case]
    report = jaxprop.check_rule(f, _x(3), _x(3, seed=1), **FAST)
    record = report[f"reverse {leaf}"]
    assert not record.ok and record.diagnosis.kind == kind, str(report)
    assert f"[{kind}:" in str(report)


def test_a_transposed_cotangent_is_diagnosed():
    @jax.custom_vjp
    def matvec(A, x):
        return A @ x

    matvec.defvjp(lambda A, x: (A @ x, (A, x)), lambda r, g: (jnp.outer(r[1], g), r[0].T @ g))
    report = jaxprop.check_rule(matvec, _x(3, 3), _x(3, seed=1), **FAST)
    assert report["reverse args[0]"].diagnosis.kind == "transpose", str(report)


def test_the_table_shows_the_values_at_the_worst_element_and_an_absolute_error_at_zero():
    f = _vjp(lambda x: x**2, lambda r, g: (g * r[0],))  # drops the factor 2
    report = jaxprop.check_rule(f, jnp.array([1.0, 2.0, 3.0]), **FAST)
    rec = report["reverse args[0]"]
    assert rec.comparison.ref == pytest.approx(2 * rec.comparison.hand, rel=1e-6)
    assert "rule" in str(report).splitlines()[1] and "reference" in str(report).splitlines()[1]

    # A tangent where the true one is exactly 0: the error is absolute, not 1e307 relative.
    @jax.custom_jvp
    def const(x):
        return 0.0 * x + 1.0

    const.defjvp(lambda p, t: (const(p[0]), 1e-3 * t[0]))
    table = str(jaxprop.check_rule(const, jnp.array([1.0, 2.0]), **FAST))
    forward = next(line for line in table.splitlines() if line.startswith("forward"))
    assert "abs 1" in forward and "e+30" not in forward, table


# --- second order -------------------------------------------------------------------------------


# The correct rules are test_rules.py's softplus (custom_vjp) and x sin x (custom_jvp).

# The bwd stops the gradient through its residual: right to first order, its derivative is 0.
softplus_stopped = jax.custom_vjp(lambda x: jnp.logaddexp(x, 0.0))
softplus_stopped.defvjp(
    lambda x: (jnp.logaddexp(x, 0.0), x),
    lambda r, g: (g * jax.lax.stop_gradient(jax.nn.sigmoid(r)),),
)


@jax.custom_jvp
def x_sin_x_stopped(x):
    return x * jnp.sin(x)


@x_sin_x_stopped.defjvp
def _x_sin_x_stopped_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    xs = jax.lax.stop_gradient(x)  # a non-differentiable residual
    return x_sin_x_stopped(x), (jnp.sin(xs) + xs * jnp.cos(xs)) * t


@jax.custom_vjp
def layer(W, x):
    return jnp.tanh(x @ W)


def _layer_fwd(W, x):
    y = layer(W, x)
    return y, (W, x, y)


def _layer_bwd(res, g):
    W, x, y = res
    dz = g * (1 - y**2)
    return x.T @ dz, dz @ W.T


layer.defvjp(_layer_fwd, _layer_bwd)

# The same layer saving y as a residual computed off the graph: tanh′ = 1 − y² is constant in
# the second derivative.
layer_detached = jax.custom_vjp(lambda W, x: jnp.tanh(x @ W))
layer_detached.defvjp(
    lambda W, x: (jnp.tanh(x @ W), (W, x, jax.lax.stop_gradient(jnp.tanh(x @ W)))), _layer_bwd
)

SECOND = {
    "softplus (custom_vjp)": (softplus, (_x(4),), None),
    "x sin x (custom_jvp)": (x_sin_x, (_x(4),), None),
    "tanh layer (custom_vjp)": (layer, (_x(3, 2), _x(4, 3, seed=1)), None),
    "softplus, residual stopped": (softplus_stopped, (_x(4),), "order 2 reverse args[0]"),
    "x sin x, residual stopped": (x_sin_x_stopped, (_x(4),), "order 2 reverse args[0]"),
    "tanh layer, y detached": (
        layer_detached,
        (_x(3, 2), _x(4, 3, seed=1)),
        "order 2 reverse args[0]",
    ),
}


@pytest.mark.parametrize("case", SECOND)
def test_second_order_checks_the_derivative_of_the_rule(case):
    f, args, failing = SECOND[case]
    report = jaxprop.check_rule(f, *args, order=2, **FAST)
    first = [r for r in report.checks if not r.check.startswith("order 2")]
    assert all(r.ok for r in first), str(report)  # right to first order in every case
    assert any(r.check.startswith("order 2") for r in report.checks)
    if failing is None:
        assert report.ok, str(report)
    else:
        assert failing in report.failing, str(report)


# --- complex ------------------------------------------------------------------------------------

Z = jnp.array([1.0 + 2.0j, -0.5 + 0.3j, 0.7 - 1.1j])

square = _vjp(lambda z: z**2, lambda r, g: (g * 2 * r[0],))  # holomorphic: c · f′(z)
abs2 = _vjp(
    lambda z: jnp.real(z * jnp.conj(z)), lambda r, g: (2 * g.astype(Z.dtype) * jnp.conj(r[0]),)
)
phase = _vjp(
    lambda x: jnp.exp(1j * x.astype(Z.dtype)),
    lambda r, g: (jnp.real(g * 1j * jnp.exp(1j * r[0].astype(Z.dtype))),),
)


@jax.custom_jvp
def cexp(z):
    return jnp.exp(z)


@cexp.defjvp
def _cexp_jvp(primals, tangents):
    return cexp(primals[0]), cexp(primals[0]) * tangents[0]


COMPLEX = {
    "z² holomorphic (custom_vjp)": (square, Z, None),
    "|z|² non-holomorphic, real output": (abs2, Z, None),
    "exp(z) holomorphic (custom_jvp)": (cexp, Z, None),
    "exp(ix), real input, complex output": (phase, jnp.array([0.3, -1.0]), None),
    "z²: conj(z) in the bwd": (
        _vjp(lambda z: z**2, lambda r, g: (g * 2 * jnp.conj(r[0]),)),
        Z,
        "reverse args[0]",
    ),
    "|z|²: z for conj(z)": (
        _vjp(lambda z: jnp.real(z * jnp.conj(z)), lambda r, g: (2 * g.astype(Z.dtype) * r[0],)),
        Z,
        "reverse args[0]",
    ),
}


@pytest.mark.parametrize("case", COMPLEX)
def test_complex_rules_by_jaxs_convention(case):
    f, z, failing = COMPLEX[case]
    report = jaxprop.check_rule(f, z, **FAST)
    assert any("complex" in n for n in report.notes)
    if failing is None:
        assert report.ok, str(report)
    else:
        assert failing in report.failing, str(report)


def test_check_grads_takes_complex_parameters():
    p = {"z": Z, "w": jnp.array([0.3, 0.4])}

    def loss(p):
        return jnp.sum(jnp.abs(p["z"]) ** 2 * p["w"][0]) + jnp.sum(p["w"] ** 2)

    def grad(p):  # JAX's convention: ∂L/∂x − i ∂L/∂y = 2 w₀ conj(z)
        w = jnp.array([jnp.sum(jnp.abs(p["z"]) ** 2) + 2 * p["w"][0], 2 * p["w"][1]])
        return {"z": 2 * jnp.conj(p["z"]) * p["w"][0].astype(Z.dtype), "w": w}

    assert jaxprop.check_grads(loss, grad, p).ok
    wrong = jaxprop.check_grads(
        loss, lambda p: {**grad(p), "z": 2 * p["z"] * p["w"][0].astype(Z.dtype)}, p
    )
    assert wrong.failing == ("z",)


# --- the shapes rules come in -------------------------------------------------------------------


@jax.custom_vjp
def sin_cos(x):
    return jnp.sin(x), jnp.cos(x)


def _sin_cos_fwd(x):
    x = x.value  # symbolic_zeros=True: the primal comes wrapped, with whether it is perturbed
    return sin_cos(x), x


def _sin_cos_bwd(x, g):
    gs, gc = g
    out = jnp.zeros_like(x)
    if not isinstance(gs, jax.custom_derivatives.SymbolicZero):
        out = out + gs * jnp.cos(x)
    if not isinstance(gc, jax.custom_derivatives.SymbolicZero):
        out = out - gc * jnp.sin(x)
    return (out,)


sin_cos.defvjp(_sin_cos_fwd, _sin_cos_bwd, symbolic_zeros=True)


def test_a_symbolic_zeros_rule_with_and_without_a_zero_cotangent():
    x = _x(3)
    assert jaxprop.check_rule(sin_cos, x, **FAST).ok
    # Only the sine is used: the cosine's cotangent arrives as a symbolic zero.
    assert jaxprop.check_rule(lambda x: sin_cos(x)[0], x, **FAST).ok


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 2))
def apply(fn, x, mode):
    return fn(x) if mode == "plain" else 2 * fn(x)


def _apply_fwd(fn, x, mode):
    return apply(fn, x, mode), x


def _apply_bwd(fn, mode, x, g):
    d = jax.vjp(fn, x)[1](g)[0]
    return (d if mode == "plain" else 2 * d,)


apply.defvjp(_apply_fwd, _apply_bwd)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Dense:
    """A module-like pytree: an array field, and a function and a string as static fields."""

    w: jax.Array
    act: Any = dataclasses.field(default=jnp.tanh, metadata={"static": True})
    name: str = dataclasses.field(default="dense", metadata={"static": True})


@jax.custom_vjp
def dense(layer, x):
    return layer.act(layer.w * x)


def _dense_fwd(layer, x):
    y = dense(layer, x)
    return y, (layer, x, y)


def _dense_bwd(res, g):
    layer, x, y = res
    dz = g * (1 - y**2)
    return Dense(dz * x, layer.act, layer.name), dz * layer.w


dense.defvjp(_dense_fwd, _dense_bwd)


def test_nondiff_functions_and_strings_and_a_module_with_static_fields():
    x = _x(3)
    assert jaxprop.check_rule(apply, jnp.sin, x, "double", **FAST).ok
    report = jaxprop.check_rule(dense, Dense(_x(3, seed=1)), x, **FAST)
    assert report.ok and {r.leaf for r in report.checks} >= {"args[0]/w", "args[1]"}, str(report)

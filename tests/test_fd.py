"""The finite-difference reference (jaxprop/check/fd.py): right at the hard points (large inputs,
large
parameters, kinks, mixed scales, low precision), inconclusive rather than wrong, reproducible."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
from jaxprop.check import leaf_status

F64 = jnp.float64


@pytest.fixture(scope="module")
def seed001():
    model = jaxprop.get_model("tanh-softmax")
    with jax.enable_x64(True):
        # The document's 2-500-2 network, as the reported false failures used.
        params, x, Y = jaxprop.random_point(model, jax.random.key(0), 16)
        params, x, Y = jax.tree.map(lambda a: a.astype(F64), (params, x, Y))
    return model, params, x, Y


SCALED = {
    "inputs x 1e4": lambda p, x: (p, x * 1e4),
    "params x 1e4": lambda p, x: (jax.tree.map(lambda a: a * 1e4, p), x),
}


@pytest.mark.parametrize("case", SCALED)
def test_scaled_seed001_passes_when_correct_and_fails_one_element_off_by_1e_6(seed001, case):
    model, params, x, Y = seed001
    p, xs = SCALED[case](params, x)
    good = jaxprop.check_grads(model.loss, model.grad, p, xs, Y)
    assert good.ok, str(good)
    # The old fixed step failed W1 against FD here; the ladder's estimate converges instead.
    assert good["W1"].vs_fd.ok and not good["W1"].vs_fd.inconclusive, str(good)
    with jax.enable_x64(True):
        g = np.asarray(model.grad(p, xs, Y)["W1"])
    i = np.unravel_index(np.argmax(np.abs(g)), g.shape)
    assert abs(g[i]) > 1e-3  # a real gradient to put off, not a saturated zero

    def off(p, x, Y):
        grads = model.grad(p, x, Y)
        return {**grads, "W1": grads["W1"].at[i].multiply(1 + 1e-6)}

    bad = jaxprop.check_grads(model.loss, off, p, xs, Y)
    assert bad.failing == ("W1",)
    assert not bad["W1"].vs_auto.ok and not bad["W1"].vs_fd.ok  # both references see it
    assert bad["W1"].vs_fd.worst_index == tuple(int(k) for k in i)
    assert leaf_status(bad["W1"]) == "FAIL vs jax.grad and finite differences"


KINKS = {
    # loss, point, valid hand gradient, invalid hand gradient (at the kinked element 0)
    "relu at 0": (
        lambda p: jnp.sum(jax.nn.relu(p["w"]) * jnp.array([1.0, 2.0, 3.0])),
        jnp.array([0.0, 1.0, -2.0]),
        jnp.array([0.5, 2.0, 0.0]),  # 0.5 ∈ [0, 1]
        jnp.array([1.5, 2.0, 0.0]),
    ),
    "abs at 0": (
        lambda p: jnp.sum(jnp.abs(p["w"])),
        jnp.array([0.0, 1.0, -2.0]),
        jnp.array([-0.3, 1.0, -1.0]),  # −0.3 ∈ [−1, 1]
        jnp.array([1.5, 1.0, -1.0]),
    ),
    "max with a tie": (
        lambda p: 3.0 * jnp.max(p["w"]),
        jnp.array([1.0, 1.0, -2.0]),
        jnp.array([3.0, 0.0, 0.0]),  # each in [0, 3]; jax.grad splits the tie
        jnp.array([4.0, 0.0, 0.0]),
    ),
}


@pytest.mark.parametrize("kink", KINKS)
def test_a_valid_subgradient_passes_as_a_kink_and_an_invalid_one_fails(kink):
    loss, w, valid, invalid = KINKS[kink]
    with jax.enable_x64(True):
        w, valid, invalid = w.astype(F64), valid.astype(F64), invalid.astype(F64)
    good = jaxprop.check_grads(loss, lambda p: {"w": valid}, {"w": w})
    assert good.ok, str(good)
    assert (0,) in good["w"].vs_fd.kinks and "kink" in leaf_status(good["w"])
    bad = jaxprop.check_grads(loss, lambda p: {"w": invalid}, {"w": w})
    assert bad.failing == ("w",) and bad["w"].vs_fd.worst_index == (0,)


def _mixed_scales():
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(3))
        p = {"small": 1e-6 * jax.random.normal(k1, (6,), F64),
             "big": 1e6 * jax.random.normal(k2, (6,), F64)}  # fmt: skip
        x = jnp.linspace(0.5, 1.5, 6, dtype=F64)

    def loss(p, x):
        return jnp.sum(jnp.tanh(1e6 * p["small"] * x)) + jnp.sum((1e-6 * p["big"] * x) ** 3)

    return loss, p, x


def test_a_1e_6_leaf_beside_a_1e6_leaf_passes_correct_and_fails_off_by_1e_5():
    loss, p, x = _mixed_scales()
    good = jaxprop.check_grads(loss, jax.grad(loss), p, x)
    assert good.ok and all(not leaf.vs_fd.inconclusive for leaf in good.leaves), str(good)

    def off(p, x):
        g = jax.grad(loss)(p, x)
        return {**g, "small": g["small"].at[2].multiply(1 + 1e-5)}

    bad = jaxprop.check_grads(loss, off, p, x)
    assert bad.failing == ("small",)
    assert not bad["small"].vs_fd.ok and bad["small"].vs_fd.worst_index == (2,)


@jax.custom_vjp
def _softplus(t):
    return jnp.logaddexp(t, 0.0)


def _softplus_fwd(t):
    return _softplus(t), t


def _softplus_bwd(t, g):
    return (g * jax.nn.sigmoid(t),)  # d softplus / dt = σ(t)


_softplus.defvjp(_softplus_fwd, _softplus_bwd)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_rules_are_held_to_a_float64_reference(dtype):
    def loss(p, x):
        return jnp.mean(jnp.logaddexp(x @ p["w"], 0.0))

    def rule_loss(p, x):
        return jnp.mean(_softplus(x @ p["w"]))

    with jax.enable_x64(True):
        p = {"w": jax.random.normal(jax.random.key(0), (3, 4), F64)}
        x = jax.random.normal(jax.random.key(1), (8, 3), F64)
    good = jaxprop.check_grads(loss, jax.grad(rule_loss), p, x, dtype=dtype)
    assert good.ok and good.reference_dtype == "float64" and good.dtype == dtype, str(good)
    wrong = jaxprop.check_grads(loss, lambda p, x: jax.tree.map(lambda g: 2 * g, good_grad(p, x)),
                                p, x, dtype=dtype)  # fmt: skip
    assert wrong.failing == ("w",), str(wrong)


def good_grad(p, x):
    return jax.grad(lambda p, x: jnp.mean(_softplus(x @ p["w"])))(p, x)


def test_an_element_the_differences_cannot_resolve_is_inconclusive_not_failed():
    def offset(p):  # a loss of 1e15: one ulp of it is 0.125, its differences are noise
        return 1e15 + jnp.sum(p["w"] ** 2)

    with jax.enable_x64(True):
        w = {"w": jnp.array([0.5, -1.0, 2.0], F64)}
    good = jaxprop.check_grads(offset, lambda p: {"w": 2 * p["w"]}, w)
    assert good.ok and good["w"].vs_fd.inconclusive == ((0,), (1,), (2,)), str(good)
    wrong = jaxprop.check_grads(offset, lambda p: {"w": p["w"]}, w)
    assert not wrong.ok and wrong["w"].vs_fd.ok  # the verdict rests on jax.grad
    assert leaf_status(wrong["w"]) == "FAIL vs jax.grad (FD inconclusive at 3)"


def test_a_failing_element_is_reproduced_by_rerun():
    loss, p, x = _mixed_scales()

    def off(p, x):
        g = jax.grad(loss)(p, x)
        return {**g, "big": g["big"] * 1.01}

    report = jaxprop.check_grads(loss, off, p, x, seed=4)
    c = report["big"].vs_fd
    assert report.seed == 4 and len(c.steps) == jaxprop.check.fd.LADDER
    again = report.rerun("big", c.worst_index)
    assert float(again.value[0]) == c.ref and tuple(again.steps[0]) == c.steps
    with pytest.raises(KeyError, match="no finite differences were taken for leaf 'nope'"):
        report.rerun("nope", (0,))


def test_directional_mode_checks_each_leaf_on_its_own_with_directions_of_its_path():
    loss, p, x = _mixed_scales()

    def off(p, x):
        g = jax.grad(loss)(p, x)
        return {**g, "small": g["small"] * (1 + 1e-3)}

    kw = {"fd_mode": "directions", "fd_directions": 3}
    good = jaxprop.check_grads(loss, jax.grad(loss), p, x, **kw)
    assert good.ok and good["small"].vs_fd.n_compared == 3, str(good)
    bad = jaxprop.check_grads(loss, off, p, x, **kw)
    assert not bad["small"].vs_fd.ok and bad["big"].vs_fd.ok  # not masked by the 1e6 leaf
    # Another leaf added: the existing leaves' directions, so their figures, do not change.
    p2 = {**p, "extra": jnp.ones(2, F64)}
    more = jaxprop.check_grads(lambda q, x: loss(q, x) + jnp.sum(q["extra"] ** 2),
                               lambda q, x: {**jax.grad(loss)(q, x), "extra": 2 * q["extra"]},
                               p2, x, **kw)  # fmt: skip
    assert more["small"].vs_fd.ref == good["small"].vs_fd.ref
    with pytest.raises(ValueError, match="fd_mode must be 'auto', 'elements' or 'directions'"):
        jaxprop.check_grads(loss, jax.grad(loss), p, x, fd_mode="random")


def test_a_kink_is_seen_only_where_the_element_is_at_it():
    # relu at 1e-7 beside ±100 is differentiable (slope 1): steps of the element's own size
    # never cross 0, so a wrong 0.5 is not excused as a subgradient.
    def loss(p):
        return jnp.sum(jax.nn.relu(p["w"]))

    with jax.enable_x64(True):
        near = {"w": jnp.array([1e-7, 100.0, -100.0], F64)}
        at = {"w": jnp.array([0.0, 100.0, -100.0], F64)}
        half = jnp.array([0.5, 1.0, 0.0], F64)
    assert jaxprop.check_grads(loss, lambda p: {"w": half}, near).failing == ("w",)
    assert jaxprop.check_grads(loss, lambda p: {"w": half}, at).ok

"""The bridge: every registered Model's loss as a jax.custom_vjp whose derivative is the hand
backward pass passes check_rule, composes with autodiff, and trains like jax.grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop
from jaxprop.testing import assert_grads, assert_nodes, assert_rule

MODELS = [n for n in jaxprop.model_names() if isinstance(jaxprop.get_model(n), jaxprop.Model)]


def _point(model, batch=3):
    with jax.enable_x64(True):
        p, x, Y = jaxprop.random_point(model, jax.random.key(0), batch)
        return jax.tree.map(lambda a: a.astype(jnp.float64), (p, x, Y))


@pytest.mark.parametrize("name", MODELS)
def test_every_model_wrapped_as_a_custom_vjp_passes_check_rule(name):
    model = jaxprop.get_model(name)
    # A few finite-difference samples and one probe scale keep 8 models within the suite's budget;
    # the rule's exact comparisons (reverse vs jax.vjp, jit, vmap) run in full.
    report = jaxprop.check_rule(jaxprop.custom_vjp(model), *_point(model), fd_samples=4,
                                probes=(10.0,))  # fmt: skip
    assert report.ok, str(report)


def test_the_hand_rule_composes_with_autodiff():
    model = jaxprop.get_model("two-layer-mse")
    p, x, Y = _point(model, 4)
    loss = jaxprop.custom_vjp(model)
    with jax.enable_x64(True):
        g = jax.jit(jax.grad(lambda q: loss(q, x, Y) + 1e-3 * jnp.sum(q["W"] ** 2)))(p)
        want = jax.grad(lambda q: model.loss(q, x, Y) + 1e-3 * jnp.sum(q["W"] ** 2))(p)
    for k in p:
        np.testing.assert_allclose(g[k], want[k], rtol=1e-12, atol=1e-15)


def test_the_bridge_trains_like_jax_grad():
    from jaxprop.experiments import get_experiment, run_experiment

    exp = get_experiment("moons")
    metrics = {
        source: run_experiment(exp, grad=source, steps=60, dtype="float64", out=None, plots=False)
        for source in ("bridge", "auto")
    }
    a = np.asarray(metrics["bridge"]["runs"]["bridge"]["losses"])
    b = np.asarray(metrics["auto"]["runs"]["auto"]["losses"])
    assert np.max(np.abs(a - b) / np.abs(b)) < 1e-10


def test_the_assertions_raise_with_the_failing_table():
    @jax.custom_vjp
    def double(x):
        return 2 * x

    double.defvjp(lambda x: (2 * x, None), lambda r, g: (g,))  # the 2 is missing
    with jax.enable_x64(True):
        x = jnp.array([1.0, 2.0])
    with pytest.raises(AssertionError, match=r"reverse args\[0\]"):
        assert_rule(double, x)
    with pytest.raises(AssertionError, match="hand gradient is wrong at w"):
        assert_grads(lambda p: jnp.sum(p["w"] ** 2), lambda p: {"w": p["w"]}, {"w": x})
    model = jaxprop.get_model("tanh-softmax")
    assert_nodes(model, *_point(model))

"""Intentional derivative rules (deliberately not the derivative) of research code, and two
surrogate-gradient rules with bugs of their own, for the rule corpus.

Independent implementations of the derivative rules of the cited projects: the same
mathematics and behaviour, written for this corpus. Each citation names the rule that the
function below re-implements.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# --- gradient reversal ----------------------------------------------------------------------
# The rule of jiyuuchc/lacss lacss/ops/uda.py @ 5d6c58e1cb7937f8ee66afefa639ce90c7d79f8e,
# re-implemented: Ganin & Lempitsky's gradient reversal layer, the identity whose cotangent
# is negated.


@jax.custom_vjp
def gradient_reversal(x):
    return x


def _reversal_fwd(x):
    return x, None


def _reversal_bwd(_, ct):
    return (jax.tree_util.tree_map(jnp.negative, ct),)


gradient_reversal.defvjp(_reversal_fwd, _reversal_bwd)


# --- straight-through estimator -------------------------------------------------------------
# The rule of google/aqt aqt/jax_legacy/jax/primitives.py
# @ f8eeb795ed70c5ca632dfeea5dc6e9ebc086acdb, re-implemented.


def add_straight_through_estimator(jax_function) -> None:
    """Gives the custom_jvp function jax_function the identity's tangent."""

    def pass_through(primals, tangents):
        (x,), (dx,) = primals, tangents
        return jax_function(x), dx

    jax_function.defjvp(pass_through)


@jax.custom_jvp
def round_with_gradient(x: jax.Array) -> jax.Array:
    """x rounded half up, differentiated as the identity (straight through)."""
    return jnp.floor(x + 0.5)


add_straight_through_estimator(round_with_gradient)


# --- surrogate spike gradients --------------------------------------------------------------
# The rule of electronicvisions/jaxsnn src/pyjaxsnn/jaxsnn/discrete/threshold.py
# @ ba050398bcaa3046c1b66149bffbcecb67d01e1d, re-implemented: SuperSpike (Zenke & Ganguli
# 2018), a Heaviside step forward and the derivative of a fast sigmoid, 1 / (alpha |x| + 1)^2,
# backward; alpha gets no cotangent.


def heaviside(x):
    """0 below 0, 1 above, 1/2 at 0."""
    return (jnp.sign(x) + 1.0) * 0.5


@jax.custom_vjp
def superspike(x, alpha=80):
    del alpha  # only the bwd uses it
    return heaviside(x)


def superspike_fwd(x, alpha):
    return heaviside(x), (x, alpha)


def superspike_bwd(saved, ct):
    x, alpha = saved
    return ct / jnp.square(alpha * jnp.abs(x) + 1.0), None


superspike.defvjp(superspike_fwd, superspike_bwd)


# The rule of cameron-git/keras-snn keras_snn/backend/jax/activations.py
# @ 126e3e56de48949c55b514f0621957c746509a81, re-implemented: a Heaviside step with the
# derivative of the logistic sigmoid as its surrogate. Reproduced on purpose, as in the cited
# rule: the fwd saves the bare array x, which the bwd unpacks as if it were a 1-tuple (so the
# bwd fails for any x of more than one element).


def spike_fn(surrogate="sigmoid"):
    """The spiking activation (a Heaviside step, 0 at 0) with the named surrogate gradient."""
    if surrogate != "sigmoid":
        raise ValueError(f"Unknown surrogate: {surrogate}")

    @jax.custom_vjp
    def spike(x):
        return jnp.heaviside(x, 0)

    def spike_fwd(x):
        return spike(x), x  # the bare array, not (x,)

    def spike_bwd(saved, ct):
        [potential] = saved  # unpacks the array itself: the bug
        s = jax.nn.sigmoid(potential)
        return ct * s * (1 - s)

    spike.defvjp(spike_fwd, spike_bwd)
    return spike


# The rule of YigitDemirag/meta-analog utils.py @ 536a9967518112f69086b2e784c023c909742e52,
# re-implemented: a threshold x > thr with the derivative of a fast sigmoid as its surrogate.
# Reproduced on purpose, as in the cited rule: the primal is cast to float32 whatever x's
# dtype, while the tangent keeps x's dtype (JAX refuses the rule for 64-bit inputs).

BETA = 1


@jax.custom_jvp
def gr_than(x, thr=1.0):
    """1.0 where x > thr, else 0.0, as float32."""
    return jnp.where(x > thr, 1.0, 0.0).astype(jnp.float32)


@gr_than.defjvp
def _gr_than_jvp(primals, tangents):
    x, thr = primals
    dx = tangents[0]  # thr's tangent is ignored
    spikes = gr_than(x, thr)
    return spikes, dx / jnp.square(1 + BETA * jnp.abs(x - thr))

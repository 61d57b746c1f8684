"""Derivative rules of JAX itself, for the rule corpus.

Independent implementations of the derivative rules of the cited projects: the same
mathematics and behaviour, written for this corpus. Each citation names the rule that the
function below re-implements.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _like(x, value):
    """A NumPy constant with the dtype of x (no dtype promotion where it is used)."""
    return np.asarray(value, dtype=jnp.result_type(x))


# --- rectified linear unit ------------------------------------------------------------------
# The rule of jax-ml/jax jax/_src/nn/functions.py @ f936613b06de89e9941d3cae52bb56c971ddb4d1,
# re-implemented (a version in which relu has a custom_jvp).


@jax.custom_jvp
@jax.jit
def relu(x):
    """max(x, 0); its derivative at the kink 0 is taken to be 0."""
    return jnp.maximum(x, 0)


@relu.defjvp
def _relu_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    # Only strictly positive inputs let the tangent through.
    return relu(z), jnp.where(z > 0, dz, jnp.zeros_like(dz))


# --- softmax ----------------------------------------------------------------------------------
# The rule of jax-ml/jax jax/_src/nn/functions.py @ f936613b06de89e9941d3cae52bb56c971ddb4d1,
# re-implemented.


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _softmax(x, axis=-1, where=None, initial=None):
    """exp(x) / sum(exp(x)) along axis, shifted by the maximum for stability; 0 outside where."""
    peak = jnp.max(x, axis, keepdims=True, where=where, initial=initial)
    weights = jnp.exp(x - peak)
    total = jnp.sum(weights, axis, keepdims=True, where=where)
    probs = weights / total
    return probs if where is None else jnp.where(where, probs, 0)


@_softmax.defjvp
def _softmax_jvp(axis, primals, tangents):
    x, where, initial = primals
    dx = tangents[0]
    probs = _softmax(x, axis, where, initial)
    # d softmax = p * (dx - <p, dx>), the inner product taken along axis.
    mean_dx = jnp.sum(probs * dx, axis, keepdims=True, where=where)
    return probs, probs * (dx - mean_dx)


# --- sinc -------------------------------------------------------------------------------------
# The rule of jax-ml/jax jax/_src/numpy/ufuncs.py @ 97c8d5d7064649e76175a7a94eeca65f14e28b00,
# re-implemented: at 0 the value is a Taylor coefficient whose custom_jvp yields the next one,
# so that derivatives of every order at 0 are finite.


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _sin_over_x_derivative_at_0(order, t):
    """The order-th derivative of t -> sin(t) / t at t = 0, broadcast like t (which is 0 where
    this is used)."""
    if order % 2 == 1:
        value = 0.0
    else:
        value = (-1.0) ** (order // 2) / (order + 1)
    return t * _like(t, 0) + _like(t, value)


@_sin_over_x_derivative_at_0.defjvp
def _sin_over_x_derivative_at_0_jvp(order, primals, tangents):
    (t,), (dt,) = primals, tangents
    value = _sin_over_x_derivative_at_0(order, t)
    return value, _sin_over_x_derivative_at_0(order + 1, t) * dt


@jax.jit
def sinc(x):
    """sin(pi x) / (pi x), 1 at x = 0."""
    x = jnp.asarray(x)
    t = x * _like(x, np.pi)
    at_zero = x == _like(x, 0)
    t_safe = jnp.where(at_zero, _like(x, 1), t)
    away = jnp.sin(t_safe) / t_safe
    return jnp.where(at_zero, _sin_over_x_derivative_at_0(0, t), away)


# --- xlogy ------------------------------------------------------------------------------------
# The rule of jax-ml/jax jax/_src/scipy/special.py @ 3d2f8267a5d85c7cc0970313914ab280d2b60003,
# re-implemented.


@jax.custom_jvp
def xlogy(x, y):
    """x * log(y), with 0 wherever x is 0 (y = 0 included)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    nonzero = x != 0.0
    product = jnp.where(nonzero, x, 1.0) * jnp.log(jnp.where(nonzero, y, 1.0))
    return jnp.where(nonzero, product, jnp.zeros_like(x))


@xlogy.defjvp
def _xlogy_jvp(primals, tangents):
    (x, y), (dx, dy) = primals, tangents
    value = xlogy(x, y)
    # d(x log y) = log(y) dx + (x / y) dy
    slope = dx * jnp.log(y) + dy * (x / y)
    return value, slope.astype(value.dtype)


# --- reference multi-head attention -----------------------------------------------------------
# The rule of jax-ml/jax jax/experimental/pallas/ops/tpu/flash_attention.py
# @ f3c407dc86d41f66052f3dbb2bce82b323587c87, re-implemented: the pure-JAX reference attention
# with a custom_vjp whose bwd computes in float32 and casts its cotangents back.

DEFAULT_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.dtype("float32")).max)


class SegmentIds(NamedTuple):
    """Segment ids of the queries and of the keys/values, each [batch, sequence length]."""

    q: jax.Array
    kv: jax.Array


def _attention_logits(q, k, ab, segment_ids, causal, mask_value, sm_scale=1.0):
    """q k^T (+ ab) (* sm_scale), with mask_value added where attention is masked."""
    scores = jnp.einsum("bhid,bhjd->bhij", q, k)
    if ab is not None:
        scores = scores + ab
    if sm_scale != 1.0:
        scores = scores * sm_scale
    allowed = None
    if segment_ids is not None:
        allowed = segment_ids.q[:, None, :, None] == segment_ids.kv[:, None, None, :]
    if causal:
        shape = (q.shape[2], k.shape[2])
        below = lax.broadcasted_iota(jnp.int32, shape, 1) <= lax.broadcasted_iota(
            jnp.int32, shape, 0
        )
        below = below[None, None]
        allowed = below if allowed is None else jnp.logical_and(allowed, below)
    if allowed is None:
        return scores
    return scores + jnp.where(allowed, 0.0, mask_value)


def _attention_with_stats(q, k, v, ab, segment_ids, causal, mask_value, sm_scale):
    """The attention output with the row maxima m and row sums l of its softmax."""
    scores = _attention_logits(q, k, ab, segment_ids, causal, mask_value, sm_scale)
    row_max = jnp.max(scores, axis=-1)
    shifted = jnp.exp(scores - row_max[..., None])
    row_sum = jnp.sum(shifted, axis=-1)
    out = jnp.einsum("bhij,bhjd->bhid", shifted / row_sum[..., None], v)
    return out, row_sum, row_max


def mha_reference_no_custom_vjp(
    q,
    k,
    v,
    ab: jax.Array | None = None,
    segment_ids: SegmentIds | None = None,
    *,
    causal: bool = False,
    mask_value: float = DEFAULT_MASK_VALUE,
    sm_scale: float = 1.0,
    save_residuals: bool = False,
):
    """softmax(q k^T + ab, masked) v, differentiated by JAX itself."""
    out, row_sum, row_max = _attention_with_stats(
        q, k, v, ab, segment_ids, causal, mask_value, sm_scale
    )
    return (out, row_sum, row_max) if save_residuals else out


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _attention(q, k, v, ab, segment_ids, causal, mask_value, sm_scale):
    return _attention_with_stats(q, k, v, ab, segment_ids, causal, mask_value, sm_scale)[0]


def _attention_fwd(q, k, v, ab, segment_ids, causal, mask_value, sm_scale):
    out, row_sum, row_max = _attention_with_stats(
        q, k, v, ab, segment_ids, causal, mask_value, sm_scale
    )
    return out, (q, k, v, ab, segment_ids, out, row_sum, row_max)


@functools.partial(jax.jit, static_argnames=("causal", "mask_value", "sm_scale"))
def mha_reference_bwd(
    q,
    k,
    v,
    ab,
    segment_ids: SegmentIds | None,
    o,
    l,
    m,
    do,
    causal: bool = False,
    mask_value: float = DEFAULT_MASK_VALUE,
    sm_scale: float = 1.0,
):
    """The cotangents of q, k, v and ab, computed in float32 and cast to the inputs' dtypes."""
    if sm_scale != 1.0:
        raise NotImplementedError
    q32, k32, v32 = (a.astype(jnp.float32) for a in (q, k, v))
    g32, o32 = do.astype(jnp.float32), o.astype(jnp.float32)
    scores = _attention_logits(q32, k32, ab, segment_ids, causal, mask_value)
    # The float32 scores minus the saved row maxima, divided by the saved row sums, both in the
    # forward's dtype: a mixed-dtype expression (standard promotion).
    probs = jnp.exp(scores - m[..., None]) / l[..., None]
    dv = jnp.einsum("bhij,bhid->bhjd", probs, g32)
    dprobs = jnp.einsum("bhid,bhjd->bhij", g32, v32)
    row_dot = jnp.sum(g32 * o32, axis=-1, keepdims=True)
    dscores = probs * (dprobs - row_dot)
    dq = jnp.einsum("bhij,bhjd->bhid", dscores, k32)
    dk = jnp.einsum("bhij,bhid->bhjd", dscores, q32)
    dab = None if ab is None else dscores
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), dab


def _attention_bwd(causal, mask_value, sm_scale, saved, do):
    q, k, v, ab, segment_ids, o, l, m = saved
    grads = mha_reference_bwd(
        q,
        k,
        v,
        ab,
        segment_ids,
        o,
        l,
        m,
        do,
        causal=causal,
        mask_value=mask_value,
        sm_scale=sm_scale,
    )
    return (*grads, None)


_attention.defvjp(_attention_fwd, _attention_bwd)


@functools.partial(jax.jit, static_argnames=["causal", "mask_value", "sm_scale"])
@jax.default_matmul_precision("bfloat16")
def mha_reference(
    q,
    k,
    v,
    ab,
    segment_ids: SegmentIds | None = None,
    causal: bool = False,
    mask_value: float = DEFAULT_MASK_VALUE,
    sm_scale=1.0,
):
    """Multi-head attention softmax(q k^T + ab) v with the float32 custom_vjp above."""
    return _attention(q, k, v, ab, segment_ids, causal, mask_value, sm_scale)

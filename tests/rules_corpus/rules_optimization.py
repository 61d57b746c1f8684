"""Derivative rules of optax, jaxopt and ott-jax, for the rule corpus.

Independent implementations of the derivative rules of the cited projects: the same
mathematics and behaviour, written for this corpus. Each citation names the rule that the
function below re-implements.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

# --- optax ----------------------------------------------------------------------------------
# The rule of google-deepmind/optax optax/_src/utils.py
# @ 2edbcbe2390da13983b92cbef94ac0460ecde1c5, re-implemented: the identity in inputs whose
# cotangent is multiplied by scale (scale gets none). Intentionally not the derivative.


@jax.custom_vjp
def _scale_gradient(inputs, scale):
    del scale  # only the bwd uses it
    return inputs


def _scale_gradient_fwd(inputs, scale):
    return inputs, scale


def _scale_gradient_bwd(scale, ct):
    scaled = jax.tree.map(lambda leaf: scale * leaf, ct)
    return scaled, None


_scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


# The rule of google-deepmind/optax optax/losses/_classification.py
# @ 2edbcbe2390da13983b92cbef94ac0460ecde1c5, re-implemented.


def _weighted(weights, log_probs):
    # 0 where the weight is 0, whatever log_probs is there (0 log 0 = 0).
    return jnp.where(weights == 0.0, jnp.zeros_like(log_probs), weights * log_probs)


@jax.custom_jvp
def weighted_logsoftmax(x, weights):
    """weights * log_softmax(x) along the last axis, 0 where a weight is 0."""
    return _weighted(weights, jax.nn.log_softmax(x, axis=-1))


@weighted_logsoftmax.defjvp
def _weighted_logsoftmax_jvp(primals, tangents):
    (x, weights), (dx, dweights) = primals, tangents
    log_probs = jax.nn.log_softmax(x, axis=-1)
    probs = jnp.exp(log_probs)
    # d log_softmax(x) = dx - <softmax(x), dx>; the product rule adds dweights * log_softmax.
    d_log_probs = dx - jnp.sum(probs * dx, axis=-1, keepdims=True)
    return _weighted(weights, log_probs), weights * d_log_probs + dweights * log_probs


# The rule of google-deepmind/optax optax/projections/_projections.py
# @ 2edbcbe2390da13983b92cbef94ac0460ecde1c5, re-implemented: the Euclidean projection onto
# {p >= 0, sum p = 1} by sorting. The count of the support divides float arrays as an int32
# (standard dtype promotion, as in the cited rule).


@jax.custom_jvp
def _projection_unit_simplex(values):
    """argmin over the unit simplex of |p - values|^2."""
    size = values.shape[0]
    descending = -jnp.sort(-values)
    partial_sums = jnp.cumsum(descending)
    ranks = jnp.arange(1, size + 1)
    in_support = descending + (1 - partial_sums) / ranks > 0
    rho = jnp.sum(in_support.astype(jnp.int32))
    shift = (partial_sums[rho - 1] - 1) / rho
    return jax.nn.relu(values - shift)


@_projection_unit_simplex.defjvp
def _projection_unit_simplex_jvp(primals, tangents):
    (values,), (dvalues,) = primals, tangents
    projected = _projection_unit_simplex(values)
    # On the support S the projection moves as dvalues minus its mean over S; 0 off S.
    on_support = (projected > 0).astype(dvalues.dtype)
    mean_on_support = jnp.sum(on_support * dvalues) / jnp.sum(on_support)
    return projected, on_support * (dvalues - mean_on_support)


# --- jaxopt ---------------------------------------------------------------------------------
# The rule of google/jaxopt jaxopt/_src/isotonic.py @ 2de13bf01fd29e22862236a0d869f2b14e1629d4,
# re-implemented: the pool-adjacent-violators solution of isotonic regression (the
# nonincreasing fit minimizing the squared error, as the cited function computes it; its
# callers negate for a nondecreasing one), computed on the host, and its jvp (Blondel
# et al., ICML 2020, section 5), which averages the tangent over each pooled block.


def _pav_host(y):
    """Pool adjacent violators on a 1-d NumPy array: the nonincreasing least-squares fit."""
    means, counts = [], []
    for value in np.asarray(y, dtype=np.float64):
        mean, count = float(value), 1
        # Merge with the previous blocks while the fit would not decrease.
        while means and means[-1] <= mean:
            total = means[-1] * counts[-1] + mean * count
            count += counts[-1]
            mean = total / count
            means.pop()
            counts.pop()
        means.append(mean)
        counts.append(count)
    return np.repeat(means, counts).astype(y.dtype)


@jax.custom_jvp
def _isotonic_l2_pav(y):
    spec = jax.ShapeDtypeStruct(y.shape, y.dtype)
    return jax.pure_callback(_pav_host, spec, y, vmap_method="sequential")


def _block_average(solution, tangent, eps=1e-8):
    """The tangent averaged over the blocks of solution (runs of values within eps of their
    neighbour), each block's sum divided by its size + 1e-8."""
    size = solution.shape[0]
    starts = jnp.concatenate([jnp.ones(1, bool), jnp.abs(jnp.diff(solution)) > eps])
    block = jnp.cumsum(starts.astype(jnp.int32)) - 1
    member = (block[:, None] == jnp.arange(size)[None, :]).astype(tangent.dtype)
    block_sums = member.T @ tangent
    block_sizes = jnp.sum(member, axis=0)
    return member @ (block_sums / (block_sizes + 1e-8))


@_isotonic_l2_pav.defjvp
def _isotonic_l2_pav_jvp(primals, tangents):
    (y,), (dy,) = primals, tangents
    fit = _isotonic_l2_pav(y)
    return fit, _block_average(fit, dy)


# --- ott-jax --------------------------------------------------------------------------------
# The rule of ott-jax/ott src/ott/math/utils.py @ 6aace50f673b877cc3394d0b53a24da0bbf11308,
# re-implemented.


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
@functools.partial(jax.jit, static_argnames=("ord", "axis", "keepdims"))
def norm(x, ord=None, axis=None, keepdims=False):
    """jnp.linalg.norm, with a jvp that is 0 at x = 0 instead of nan."""
    return jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)


@norm.defjvp
def _norm_jvp(ord, axis, keepdims, primals, tangents):
    (x,), (dx,) = primals, tangents
    origin = jnp.logical_not(jnp.any(x != 0))
    # At the origin, differentiate at ones instead (a finite derivative), then zero the tangent.
    # Reproduced on purpose: the primal returned is that of the substituted point, so at x = 0
    # the jvp gives norm(ones) instead of 0, as the cited rule does.
    moved = jnp.where(origin, jnp.ones_like(x), x)
    value, slope = jax.jvp(
        lambda z: jnp.linalg.norm(z, ord=ord, axis=axis, keepdims=keepdims), (moved,), (dx,)
    )
    return value, jnp.where(origin, 0.0, slope)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def softmin(x, gamma, axis=None):
    """-gamma logsumexp(-x / gamma) along axis. Its bwd gives gamma no cotangent: the cited
    rule treats the smoothing parameter as a constant, though softmin depends on it."""
    return -gamma * logsumexp(x / -gamma, axis=axis)


def _softmin_fwd(x, gamma, axis):
    return softmin(x, gamma, axis), (x / -gamma, axis)


def _softmin_bwd(axis, saved, ct):
    scaled = saved[0]
    ct = ct if axis is None else jnp.expand_dims(ct, axis)
    # The cotangent of x is softmax(-x / gamma) ct; 0 at infinite entries.
    dx = jnp.where(jnp.isinf(scaled), 0.0, ct * jax.nn.softmax(scaled, axis=axis))
    return dx, None


softmin.defvjp(_softmin_fwd, _softmin_bwd)

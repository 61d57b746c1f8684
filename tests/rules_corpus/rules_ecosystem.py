"""Derivative rules of numpyro, equinox, flax and jax-md, for the rule corpus.

Independent implementations of the derivative rules of the cited projects: the same
mathematics and behaviour, written for this corpus. Each citation names the rule that the
function below re-implements.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
from jax import lax

# --- numpyro --------------------------------------------------------------------------------
# The rule of pyro-ppl/numpyro numpyro/distributions/util.py
# @ 0b935d488056ae1775b4ab05cbe2812f51f21a4f, re-implemented.

_MINUS_LOG_2 = -0.6931472  # where the two formulas of log(1 - e^x) trade accuracy


@jax.custom_jvp
def log1mexp(x):
    """log(1 - e^x) for x <= 0, accurate near 0 and far from it (Maechler 2012); -inf at 0, nan
    for x > 0."""
    near_zero = jnp.log(-jnp.expm1(x))
    far = jnp.log1p(-jnp.exp(x))
    return jnp.where(x > _MINUS_LOG_2, near_zero, far)


# d/dx log(1 - e^x) = -e^x / (1 - e^x) = -1 / (e^-x - 1), finite down to x near 0.
log1mexp.defjvps(lambda dx, value, x: dx / -jnp.expm1(-x))


# The rule of pyro-ppl/numpyro numpyro/distributions/truncated.py
# @ 0b935d488056ae1775b4ab05cbe2812f51f21a4f, re-implemented: the log density of the power law
# x^alpha on [low, high], defined (with its jvp) inside DoublyTruncatedPowerLaw.log_prob; the
# factory returns that function.
#
# Reproduced on purpose, as in the cited rule: the tangents of low and high are not those of
# the log density. For alpha != -1 they are (1 + alpha)^2 x^alpha b^alpha / (high^(1 + alpha)
# - low^(1 + alpha))^2 with b = low or high (high's of the wrong sign, too); for alpha = -1
# they are +-x^alpha' / (b (log high - log low)^2), alpha' being alpha (or -1 where alpha is
# 0). The tangent of alpha at alpha = -1 is a central difference of step 1e-3.


def doubly_truncated_power_law_log_prob():
    def log_norm_derivative(a, low, high):
        # d/da of -log((high^(1+a) - low^(1+a)) / (1 + a)), for a != -1
        b = a + 1.0
        lo_pow, hi_pow = jnp.power(low, b), jnp.power(high, b)
        return 1.0 / b - (hi_pow * jnp.log(high) - lo_pow * jnp.log(low)) / (hi_pow - lo_pow)

    @jax.custom_jvp
    def f(x, alpha, low, high):
        generic = alpha != -1.0
        a = jnp.where(generic, alpha, 0.0)
        b = a + 1.0
        log_generic = jnp.log(b * jnp.power(x, a) / (jnp.power(high, b) - jnp.power(low, b)))
        log_special = -(jnp.log(x) + jnp.log(jnp.log(high) - jnp.log(low)))
        return jnp.where(generic, log_generic, log_special)

    @f.defjvp
    def f_jvp(primals, tangents):
        x, alpha, low, high = primals
        dx, dalpha, dlow, dhigh = tangents
        value = f(x, alpha, low, high)

        generic = alpha != -1.0
        a = jnp.where(generic, alpha, 0.0)
        b = a + 1.0
        log_x = jnp.log(x)
        step = 1e-3

        # The tangent of alpha: log x plus the derivative of the log normalization, averaged
        # over alpha -+ step at alpha = -1.
        at_minus_1 = 0.5 * (
            log_norm_derivative(alpha - step, low, high)
            + log_norm_derivative(alpha + step, low, high)
        )
        slope_alpha = log_x + jnp.where(generic, log_norm_derivative(a, low, high), at_minus_1)

        # The (density's, see above) tangents of low and high.
        gap = jnp.power(high, b) - jnp.power(low, b)
        scale = b * b * jnp.power(x, a) / (gap * gap)
        log_ratio = jnp.log(high) - jnp.log(low)
        exponent = jnp.where(alpha != 0.0, alpha, -1.0)
        scale_special = jnp.power(x, exponent) / (log_ratio * log_ratio)
        slope_low = jnp.where(generic, scale * jnp.power(low, a), scale_special / low)
        slope_high = jnp.where(generic, scale * jnp.power(high, a), -scale_special / high)

        slope_x = alpha / x
        tangent = slope_x * dx + slope_alpha * dalpha + slope_low * dlow + slope_high * dhigh
        return value, tangent

    return f


# --- equinox --------------------------------------------------------------------------------
# The rule of patrick-kidger/equinox equinox/internal/_nextafter.py
# @ 9336d820b2ef66b360fc6cb3611b3da5cefbb14d, re-implemented.


@jax.custom_jvp
def nextafter(x):
    """The next float above x; at 0 the smallest normal float (denormals may be flushed)."""
    above = jnp.nextafter(x, jnp.inf)
    return jnp.where(x == 0, jnp.finfo(x.dtype).tiny, above)


@nextafter.defjvp
def _nextafter_jvp(primals, tangents):
    # The step is invisible to differentiation: the identity's tangent.
    return nextafter(primals[0]), tangents[0]


# --- flax -----------------------------------------------------------------------------------
# The rule of google/flax flax/linen/fp8_ops.py @ 18f8f311c275d57f46d95e41b15aa97b454754c0,
# re-implemented: a dot_general at default precision whose jvp products run at the highest.


def _contract(lhs, rhs, dimension_numbers, precision):
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def dot_general_with_precision(
    lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None
):
    if not (precision is None and preferred_element_type is None):
        warnings.warn(  # noqa: B028
            "dot_general_with_precision ignores the precision and preferred_element_type "
            "given: it sets its own."
        )
    return _contract(lhs, rhs, dimension_numbers, lax.Precision.DEFAULT)


@dot_general_with_precision.defjvp
def _dot_general_with_precision_jvp(
    dimension_numbers, precision, preferred_element_type, primals, tangents
):
    (lhs, rhs), (dlhs, drhs) = primals, tangents
    out = _contract(lhs, rhs, dimension_numbers, lax.Precision.DEFAULT)
    high = lax.Precision.HIGHEST
    # Bilinear: d(lhs . rhs) = dlhs . rhs + lhs . drhs
    dout = _contract(dlhs, rhs, dimension_numbers, high) + _contract(
        lhs, drhs, dimension_numbers, high
    )
    return out, dout


# --- jax-md ---------------------------------------------------------------------------------
# The rule of jax-md/jax-md jax_md/space.py @ a41c7d19f6468f4e5263c32c12c9ed6cba26ebff,
# re-implemented: an affine map of positions whose jvp passes dR through unchanged (not
# multiplied by box), so that jax.grad of an energy in fractional coordinates gives real-space
# forces. Intentionally not the derivative with respect to R.


def raw_transform(box, R):
    """box applied to the last axis of R: a scalar scales, a vector scales each coordinate, a
    matrix multiplies each position (box @ r)."""
    if jnp.isscalar(box) or jnp.size(box) == 1:
        return R * jnp.reshape(box, ())
    if jnp.ndim(box) == 1:
        return jnp.einsum("...i,i->...i", R, box)
    if jnp.ndim(box) == 2:
        return jnp.einsum("...j,ij->...i", R, box)
    raise ValueError(f"box must be a scalar, a vector or a matrix, not {box}")


@jax.custom_jvp
def transform(box, R):
    return raw_transform(box, R)


@transform.defjvp
def _transform_jvp(primals, tangents):
    (box, R), (dbox, dR) = primals, tangents
    return transform(box, R), raw_transform(dbox, R) + dR


# The rule of jax-md/jax-md jax_md/mm_forcefields/reaxff/reaxff_helper.py
# @ a41c7d19f6468f4e5263c32c12c9ed6cba26ebff, re-implemented: sqrt whose derivative at 0 is 0
# by convention (not inf / nan).


@jax.custom_jvp
def safe_sqrt(x):
    return jnp.sqrt(x)


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    root = safe_sqrt(x)
    denominator = jnp.where(x > 0, 2.0 * root, jnp.inf)
    return root, dx / denominator

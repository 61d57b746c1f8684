"""Each activation's and loss's hand derivative equals JAX's, and stays finite at |z| = 1e4; every
activation and its derivative is accurate to a few ulps, relative, over its whole range."""

import decimal
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxprop

ACTS = sorted(jaxprop.ACTIVATIONS)
LOSSES = sorted(jaxprop.LOSSES)


def _z(seed, shape=(3, 5), scale=3.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float64)


@pytest.mark.parametrize("name", ACTS)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_activation_vjp_equals_jax_vjp(name, seed):
    act = jaxprop.get_activation(name)
    z, g = _z(seed), _z(seed + 1)
    a, vjp = jax.vjp(act.fn, z)
    assert_trees_close(act.vjp(z, a, g), vjp(g)[0])
    if act.deriv is not None:
        assert_trees_close(act.deriv(z), jax.vmap(jax.vmap(jax.grad(act.fn)))(z))


@pytest.mark.parametrize("name", ACTS)
def test_activation_is_finite_at_huge_inputs(name):
    act = jaxprop.get_activation(name)
    z = jnp.array([[-1e4, -30.0, 0.5, 30.0, 1e4]], jnp.float32)
    a = act.fn(z)
    g = act.vjp(z, a, jnp.ones_like(z))
    assert bool(jnp.all(jnp.isfinite(a))) and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("name", LOSSES)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), width=st.integers(1, 4))
def test_loss_grad_equals_jax_grad(name, seed, batch, width):
    loss = jaxprop.LOSSES[name]
    out = _z(seed, (batch, width))
    Y = jax.nn.softmax(_z(seed + 1, (batch, width)))  # probability rows suit every loss
    assert_trees_close(loss.grad(out, Y), jax.grad(loss.fn)(out, Y))


def test_softmax_cross_entropy_is_finite_at_huge_logits():
    loss = jaxprop.LOSSES["softmax_cross_entropy"]
    z = jnp.array([[1e4, -1e4], [-1e4, 1e4]], jnp.float32)
    Y = jnp.array([[0.0, 1.0], [0.0, 1.0]], jnp.float32)
    value = float(loss.fn(z, Y))
    assert np.isfinite(value) and value == pytest.approx(1e4, rel=1e-6)
    assert bool(jnp.all(jnp.isfinite(loss.grad(z, Y))))


def test_sigmoid_derivative_is_sigma_times_one_minus_sigma():
    # 001_90440b38c2c51fc3.txt eq (6) prints ln σ · ln(1 − σ); the derivative is σ(1 − σ).
    act = jaxprop.get_activation("sigmoid")
    z = jnp.linspace(-4, 4, 9, dtype=jnp.float64)
    s = 1 / (1 + jnp.exp(-z))
    assert_trees_close(act.deriv(z), s * (1 - s))
    assert not np.allclose(act.deriv(z), jnp.log(s) * jnp.log(1 - s))


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*'relu'.*'tanh'"):
        jaxprop.get_activation("swish")


# --- Accuracy: a 60-digit reference over the whole range --------------------------------------
# Every activation and its derivative is within ULPS units in the last place of the exact value
# (of the float32 or float64 input), relative, wherever that value is a normal number of the
# dtype; below the smallest normal number the result may be flushed to 0 or be subnormal (XLA
# flushes subnormals on CPU), so there it must be within the smallest normal number.
ULPS = 4.0


def _context(digits: int = 60) -> decimal.Context:
    return decimal.Context(prec=digits, Emin=-(10**7), Emax=10**7)


def _exact(name: str, z: float) -> tuple[decimal.Decimal, decimal.Decimal]:
    """(f(z), f′(z)) for an elementwise activation, to 60 significant digits."""
    c, x = _context(), decimal.Decimal(z)
    if name == "identity":
        return x, decimal.Decimal(1)
    if name == "relu":
        return (x if z > 0 else decimal.Decimal(0)), decimal.Decimal(int(z > 0))
    if name == "sigmoid":
        e = c.exp(-x)
        return c.divide(1, 1 + e), c.divide(e, c.power(1 + e, 2))
    assert name == "tanh"
    e = c.exp(2 * x)
    d = c.divide(4 * e, c.power(e + 1, 2))
    if z == 0:
        return decimal.Decimal(0), d
    # e^{2z} − 1 cancels for small |z|: carry as many more digits as |z| has leading zeros.
    c = _context(60 + max(0, -math.floor(math.log10(abs(z)))))
    e = c.exp(2 * x)
    return c.divide(e - 1, e + 1), d


def _exact_softmax(row) -> list[decimal.Decimal]:
    c = _context()
    row = [decimal.Decimal(float(v)) for v in row]
    e = [c.exp(v - max(row)) for v in row]
    return [c.divide(v, sum(e, decimal.Decimal(0))) for v in e]


def _ulps(computed, exact, dtype) -> np.ndarray:
    """|computed − exact| in units in the last place of ``dtype`` at ``exact``; 0 or inf where
    the exact value is below the smallest normal number (within it or not)."""
    info = np.finfo(dtype)
    tiny = decimal.Decimal(float(info.tiny))
    out = []
    for c, r in zip(np.asarray(computed, np.float64).ravel(), exact, strict=True):
        err = abs(decimal.Decimal(float(c)) - r)
        if abs(r) < tiny:
            out.append(0.0 if err <= tiny else math.inf)
        else:
            out.append(float(err) / math.ldexp(1.0, math.frexp(float(abs(r)))[1] - info.nmant - 1))
    return np.asarray(out)


def _wide_grid(dtype) -> np.ndarray:
    """0, ±|z| log-spaced from the smallest normal number to beyond where every activation
    saturates, a dense stretch of [−20, 20] and random points in [−1, 1]. (A subnormal input is
    read as 0 on XLA's CPU, so relu′ of it is relu′(0) = 0: no activation can help that.)"""
    info = np.finfo(dtype)
    lo, hi = math.log10(float(info.tiny)) + 1e-3, 4.0
    mags = np.logspace(lo, hi, 500)
    dense = np.linspace(-20.0, 20.0, 321)
    near0 = np.random.default_rng(0).uniform(-1.0, 1.0, 200)
    return np.concatenate([-mags, [0.0], mags, dense, near0]).astype(dtype)


@pytest.fixture(scope="module")
def exact_values():
    cache = {}

    def get(name, dtype):
        if (name, dtype) not in cache:
            z = _wide_grid(dtype)
            cache[name, dtype] = z, [_exact(name, float(v)) for v in z]
        return cache[name, dtype]

    return get


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", [n for n in ACTS if jaxprop.ACTIVATIONS[n].deriv is not None])
def test_activation_and_derivative_are_accurate_to_a_few_ulps(name, dtype, exact_values):
    act = jaxprop.get_activation(name)
    z, exact = exact_values(name, dtype)

    @jax.jit
    def evaluate(z):
        a = act.fn(z)
        return a, act.deriv(z), act.vjp(z, a, jnp.ones_like(z))

    a, deriv, vjp = (np.asarray(v) for v in evaluate(jnp.asarray(z)))
    for what, got, ref in [
        ("fn", a, [f for f, _ in exact]),
        ("deriv", deriv, [d for _, d in exact]),
        ("vjp", vjp, [d for _, d in exact]),
    ]:
        assert got.dtype == dtype
        ulps = _ulps(got, ref, dtype)
        worst = int(np.argmax(ulps))
        assert ulps[worst] <= ULPS, (
            f"{name}.{what} is {ulps[worst]:.3g} ulps off at z = {z[worst]!r}: "
            f"{got[worst]!r}, exactly {float(ref[worst])!r}"
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_softmax_is_accurate_to_a_few_ulps(dtype):
    # Rows spread over [−s, s]: the smallest outputs are ~e^{−2s}, down to below the smallest
    # normal number; the rounding of z − max alone would cost up to s/2 ulps.
    rng = np.random.default_rng(1)
    rows = np.concatenate([rng.uniform(-s, s, (12, 5)) for s in (1, 10, 40, 100)]).astype(dtype)
    rows[0] = 0.0
    got = np.asarray(jaxprop.ACTIVATIONS["softmax"].fn(jnp.asarray(rows)))
    assert got.dtype == dtype
    for z, a in zip(rows, got, strict=True):
        ulps = _ulps(a, _exact_softmax(z), dtype)
        assert ulps.max() <= ULPS, f"softmax{z.tolist()} is {ulps.max():.3g} ulps off"

"""The evidence that is not a node check: the figures of the slips that have them, the remarks
(terminology, notation, labels, layout) with the passages they are about, and the formulas
checked and found correct (float64; arrays built under ``jax.enable_x64``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprop.check.compare import compare
from jaxprop.nn.activations import ACTIVATIONS

__all__ = [
    "REMARKS",
    "Remark",
    "correct_formulas",
    "loss_sign",
    "sigmoid_derivative",
    "sigmoid_ratio",
]

_sigmoid = ACTIVATIONS["sigmoid"]
_softmax = ACTIVATIONS["softmax"]


def loss_sign() -> dict[str, float]:
    """001 eq (5): the printed 'Loss' is the log-likelihood, minus the cross-entropy.

    On a batch of 6 with 2 outputs (z2 of shape (6, 2), Bernoulli(½) labels): the sum of eq (5)
    and the cross-entropy (0), eq (7) against the derivative of (5) (0: (7) is (5)'s derivative)
    and against that of the cross-entropy (its negative), and the cross-entropy before and after
    a descent step on (5) (it rises).
    """
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(0))
        z2 = jax.random.normal(k1, (6, 2), jnp.float64)
        y = jax.random.bernoulli(k2, 0.5, (6, 2)).astype(jnp.float64)

        def printed(z):  # 001 eq (5) as printed, summed over the batch and the outputs
            s = _sigmoid.fn(z)
            return jnp.sum(y * jnp.log(s) + (1 - y) * jnp.log(1 - s))

        def cross_entropy(z):  # the binary cross-entropy, written independently of (5)
            return -jnp.sum(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))

        grad_printed = jax.grad(printed)(z2)
        eq7 = y - _sigmoid.fn(z2)  # 001 eq (7) as printed
        step = z2 - 0.5 * grad_printed  # one gradient-descent step on eq (5) as printed
        return {
            "sum (5) + cross-entropy": float(printed(z2) + cross_entropy(z2)),
            "max |d(5)/dz2 − (7)|": float(jnp.max(jnp.abs(grad_printed - eq7))),
            "max |d(cross-entropy)/dz2 + (7)|": float(
                jnp.max(jnp.abs(jax.grad(cross_entropy)(z2) + eq7))
            ),
            "cross-entropy before a descent step on (5)": float(cross_entropy(z2)),
            "cross-entropy after": float(cross_entropy(step)),
        }


def sigmoid_derivative() -> dict[str, Any]:
    """001 eq (6) at z = −2, 0, 1, 3: jax.grad of σ, σ(1 − σ), and the printed ln σ · ln(1 − σ);
    then :func:`sigmoid_ratio`."""
    with jax.enable_x64(True):
        z = jnp.array([-2.0, 0.0, 1.0, 3.0], jnp.float64)
        s = _sigmoid.fn(z)
        true = jax.vmap(jax.grad(_sigmoid.fn))(z)
        return {
            "z": [float(v) for v in z],
            "jax.grad σ": [round(float(v), 6) for v in true],
            "σ(1 − σ)": [round(float(v), 6) for v in s * (1 - s)],
            # 001 eq (6) as printed: dσ(z2)/dz = ln(σ(z2)) · ln(1 − σ(z2)).
            "ln σ · ln(1 − σ) (printed)": [round(float(v), 6) for v in jnp.log(s) * jnp.log(1 - s)],
            **sigmoid_ratio(),
        }


def sigmoid_ratio() -> dict[str, float]:
    """001 eq (6): the smallest ratio of the printed ln σ · ln(1 − σ) to σ′ = σ(1 − σ) over 6001
    points of [−30, 30], and where it is."""
    with jax.enable_x64(True):
        grid = jnp.linspace(-30.0, 30.0, 6001, dtype=jnp.float64)
        s = _sigmoid.fn(grid)
        ratio = jnp.log(s) * jnp.log(1 - s) / (s * (1 - s))
        return {
            "min over z in [−30, 30] of printed / σ(1 − σ)": float(jnp.min(ratio)),
            "at z": float(grid[jnp.argmin(ratio)]),
        }


def output_function() -> dict[str, float]:
    """001 eqs (4)-(7): the softmax of eq (4) against the σ of (5)-(7) on a batch of 6 with 2
    outputs (one-hot labels), and (7)'s form y − ŷ as the derivative of the log-likelihood of
    either output function."""
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(1))
        z2 = jax.random.normal(k1, (6, 2), jnp.float64)
        y = jax.nn.one_hot(jax.random.bernoulli(k2, 0.5, (6,)).astype(int), 2, dtype=jnp.float64)
        sm = lambda z: jnp.sum(y * jax.nn.log_softmax(z))  # noqa: E731  softmax log-likelihood
        sg = lambda z: jnp.sum(  # noqa: E731  eq (5) as printed
            y * jnp.log(_sigmoid.fn(z)) + (1 - y) * jnp.log(1 - _sigmoid.fn(z))
        )
        return {
            "max |softmax(z2) − σ(z2)|": float(jnp.max(jnp.abs(_softmax.fn(z2) - _sigmoid.fn(z2)))),
            "max |∂/∂z2 Σ y ln softmax(z2) − (y − softmax(z2))|": float(
                jnp.max(jnp.abs(jax.grad(sm)(z2) - (y - _softmax.fn(z2))))
            ),
            "max |∂(5)/∂z2 − (y − σ(z2))|": float(
                jnp.max(jnp.abs(jax.grad(sg)(z2) - (y - _sigmoid.fn(z2))))
            ),
        }


def update_shape() -> dict[str, str]:
    """002, Problem Formulation: θ (a D × 1 column) minus η times the 1 × D row ∂E/∂θ, D = 3, as
    NumPy (and JAX) broadcasting evaluates it."""
    theta, row = np.ones((3, 1)), np.arange(3.0)[None, :]
    return {"shape of θ(t) − η ∂E/∂θ (3 × 1 minus 1 × 3)": str((theta - 0.1 * row).shape)}


def path2_jacobian() -> dict[str, Any]:
    """002 lecture, Backward Path (2): ∂Z2/∂f1 by ``jax.jacfwd`` for Z2 = A1 f1 + b1 with A1 of
    shape (2, 4): its shape, its distance from A1 and its largest entry off the diagonal."""
    with jax.enable_x64(True):
        A1 = jax.random.normal(jax.random.key(2), (2, 4), jnp.float64)
        f1 = jnp.linspace(0.1, 0.9, 4, dtype=jnp.float64)
        J = jax.jacfwd(lambda f: A1 @ f + 0.1)(f1)
        off = J * (1 - jnp.eye(2, 4))
        return {
            "shape of ∂Z2/∂f1": str(tuple(J.shape)),
            "max |∂Z2/∂f1 − A1|": float(jnp.max(jnp.abs(J - A1))),
            "max |entry off the diagonal|": float(jnp.max(jnp.abs(off))),
        }


def _rel(a, b) -> float:
    """max |a − b| over max |b|: the relative error of a against the reference b."""
    return compare("reference", np.asarray(a), np.asarray(b), rtol=1.0).max_rel


def correct_formulas() -> list[tuple[str, str, float]]:
    """Formulas of 002 and 003 checked numerically and found correct.

    Returns:
      ``(where, formula, max relative error against jax.grad / jax.jacobian)`` per formula.
    """
    out = []
    with jax.enable_x64(True):
        key = jax.random.key(3)

        def f109(x):  # 002 (5.109)
            return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))

        xs = jnp.linspace(-1.5, 1.5, 7, dtype=jnp.float64)
        e = jnp.exp(xs**2)
        printed = 2 * xs * (1 / (2 * jnp.sqrt(xs**2 + e)) - jnp.sin(xs**2 + e)) * (1 + e)  # (5.110)
        out.append(
            (
                "002 (5.110)",
                "df/dx = 2x(1/(2√(x²+e^{x²})) − sin(x²+e^{x²}))(1+e^{x²})",
                _rel(printed, jax.vmap(jax.grad(f109))(xs)),
            )
        )

        k1, k2, k3 = jax.random.split(key, 3)
        Phi = jax.random.normal(k1, (5, 3), jnp.float64)
        theta = jax.random.normal(k2, (3,), jnp.float64)
        y = jax.random.normal(k3, (5,), jnp.float64)
        L = lambda th: jnp.sum((y - Phi @ th) ** 2)  # noqa: E731  002 (5.84)
        printed = -2 * (y - theta @ Phi.T) @ Phi  # 002 (5.83)
        out.append(("002 (5.83)", "∂L/∂θ = −2(yᵀ − θᵀΦᵀ)Φ", _rel(printed, jax.grad(L)(theta))))

        A = jax.random.normal(k1, (4, 3), jnp.float64)
        x = jax.random.normal(k2, (3,), jnp.float64)
        out.append(("002 (5.68)", "d(Ax)/dx = A", _rel(A, jax.jacobian(lambda v: A @ v)(x))))
        J = jax.jacobian(lambda M: M @ x)(A)  # (M, M, N): ∂f_i/∂A_kq
        printed = jnp.einsum("ik,q->ikq", jnp.eye(4), x)  # 002 (5.89)-(5.92): x_q where k = i
        out.append(
            ("002 (5.89)-(5.92)", "∂f_i/∂A_{i,:} = xᵀ, ∂f_i/∂A_{k≠i,:} = 0ᵀ", _rel(printed, J))
        )

        # 002 backward paths (1), (2) with explicit Jacobians: diag σ′, identity, A1.
        A0 = jax.random.normal(k1, (4, 3), jnp.float64)
        A1 = jax.random.normal(k2, (2, 4), jnp.float64)
        b0, b1 = jnp.full((4,), 0.1), jnp.full((2,), -0.2)
        X, Yt = jax.random.normal(k3, (3,), jnp.float64), jnp.array([0.3, 0.7])
        sig = _sigmoid.fn

        def E(b0, b1):
            f2 = sig(A1 @ sig(A0 @ X + b0) + b1)
            return 0.5 * (f2 - Yt) @ (f2 - Yt)

        Z1 = A0 @ X + b0
        f1 = sig(Z1)
        Z2 = A1 @ f1 + b1
        f2 = sig(Z2)
        D2, D1 = jnp.diag(f2 * (1 - f2)), jnp.diag(f1 * (1 - f1))
        path1 = (f2 - Yt) @ D2 @ jnp.eye(2)  # 002 lecture, backward path (1)
        path2 = (f2 - Yt) @ D2 @ A1 @ D1 @ jnp.eye(4)  # 002 lecture, backward path (2)
        g0, g1 = jax.grad(E, argnums=(0, 1))(b0, b1)
        out.append(("002 backward path (1)", "∂E/∂b1 = (f2 − Y)ᵀ diag(σ′) I", _rel(path1, g1)))
        out.append(
            (
                "002 backward path (2)",
                "∂E/∂b0 = (f2 − Y)ᵀ diag σ′(Z2) A1 diag σ′(Z1) I",
                _rel(path2, g0),
            )
        )

        # 002 lecture: E = ½‖Ŷ(θ) − Y‖², ∂E/∂θ = (Ŷ(θ) − Y)ᵀ ∂Ŷ/∂θ, for Ŷ(θ) = tanh(A θ).
        Yl = jax.random.normal(k3, (4,), jnp.float64)
        Yhat = lambda th: jnp.tanh(A @ th)  # noqa: E731
        El = lambda th: 0.5 * jnp.sum((Yhat(th) - Yl) ** 2)  # noqa: E731
        printed = (Yhat(x) - Yl) @ jax.jacobian(Yhat)(x)
        out.append(("002 lecture", "∂E/∂θ = (Ŷ(θ) − Y)ᵀ ∂Ŷ(θ)/∂θ", _rel(printed, jax.grad(El)(x))))

        # 003 [7]: the batch MSE derivative 2/(b|out|)(out − y).
        out_, yy = jax.random.normal(k1, (4, 2), jnp.float64), jax.random.normal(k2, (4, 2))
        mse = lambda o: jnp.sum((yy - o) ** 2) / o.size  # noqa: E731
        out.append(
            (
                "003 output layer",
                "∂E/∂out_j = 2/(b|out|)(out_j − y_j)",
                _rel(2 * (out_ - yy) / out_.size, jax.grad(mse)(out_)),
            )
        )
    return out


@dataclasses.dataclass(frozen=True)
class Remark:
    """A remark on a passage: terminology, notation, a label, a layout or a repeat, not a slip
    of the mathematics (no as-printed variant).

    Attributes:
      doc: the document's number.
      where: the passage, as the document names it.
      kind: ``"terminology"``, ``"notation"``, ``"label"``, ``"layout"`` or ``"typesetting"``.
      quote: the passage, verbatim from the document (its LaTeX source where it has one).
      remark: what is off and what it should read.
      figures: measured evidence, ``() -> {quantity: value}``, or ``None``.
    """

    doc: str
    where: str
    kind: str
    quote: str
    remark: str
    figures: Callable[[], dict[str, Any]] | None = None


#: The remarks, in document order.
REMARKS = (
    Remark(
        "000",
        "§2.3, first paragraph",
        "terminology",
        "we will use the mean squared error (MSE) as our loss function because we solve this task "
        "as a logistic regression problem",
        "Logistic regression is fit by the log-loss (the cross-entropy of a sigmoid output); "
        "½(y − Y)² is a least-squares, regression loss. A name only: no formula depends on it. "
        "Its footnote ('binary classification') is what makes the document's case one output "
        "(000-db, 000-dU).",
    ),
    Remark(
        "001",
        "eq (6)",
        "notation",
        r"\frac{d\sigma(z_{2})}{dz}",
        "dσ(z2)/dz2 (besides the value, 001-eq6)",
    ),
    Remark(
        "001",
        "eq (8)",
        "notation",
        r"\frac{\partial z_{2}}{\partial w_{2}}",
        "∂z2/∂W2 (lower-case w2 for the matrix W2)",
    ),
    Remark("001", "eqs (16), (17)", "notation", "tanh^2Z_{1}", "tanh² z1 (capital Z1)"),
    Remark(
        "001",
        "eqs (4)-(7)",
        "notation",
        r"a_{2} = \hat{y} = softmax(z_{2})",
        "Eq (4) defines a softmax output, (5)-(7) write σ(z2): one output function throughout. "
        "The gradient form of (7) is the same for both, each against its own log-likelihood "
        "(one-hot labels for the softmax); the figures measure it.",
        output_function,
    ),
    Remark(
        "002",
        "Total cost",
        "notation",
        r"E(\mathbf{\theta}) = \sum_{r=1}^{K} E^{r}(\mathbf{\theta})",
        "Σ_{r=1}^{N}: the data set has N examples (Problem Formulation); K is the depth in §5.6.1",
    ),
    Remark(
        "002",
        "Problem Formulation",
        "layout",
        r"\mathbf{\theta}(t+1) = \mathbf{\theta}(t) - \eta \frac{\partial E(\mathbf{\theta}(t))}"
        r"{\partial \mathbf{\theta}}",
        "θ(t+1) = θ(t) − η (∂E/∂θ)ᵀ: ∂E/∂θ = (Ŷ − Y)ᵀ ∂Ŷ/∂θ is a 1 × D row (as (5.40)) and θ a "
        "D-vector column; taken literally the difference is a D × D matrix. sgd_step and "
        "optax.sgd apply the gradient in θ's shape",
        update_shape,
    ),
    Remark(
        "002",
        "§5.2.1, §5.2.2",
        "typesetting",
        "If $f(x_1, x_2)$ is a function of x_1 and x_2 , where $x_1(s, t)$ and $x_2(s, t)$ are "
        "themselves functions of two variables s and t, the chain rule yields the partial "
        "derivatives",
        "This passage with (5.51), (5.52), the sum rule (5.47) and 'the gradient is obtained by "
        "the matrix multiplication' are each printed twice",
    ),
    Remark(
        "002",
        "(5.92)",
        "label",
        "We stack the partial derivatives (5.91)",
        "(5.90) and (5.91): x^T is the row (5.90) stacks",
    ),
    Remark(
        "002",
        "§5.6.1",
        "notation",
        r"A_j, b_j for $j=1,\ldots,K$",
        "j = 0, …, K − 1 (θ = {A_0, b_0, …, A_{K−1}, b_{K−1}}, as (5.114) then says)",
    ),
    Remark(
        "002",
        "lecture, Backward Path (2)",
        "label",
        "Identity Diagonal Diagonal Row Vector",
        "Four labels under five factors; read right to left, ∂Z2/∂f1 is labelled Diagonal. It "
        "is A1, a full (here 2 × 4) matrix: Row vector · Diagonal (σ′(Z2)) · A1 · Diagonal "
        "(σ′(Z1)) · Identity",
        path2_jacobian,
    ),
    Remark(
        "003",
        "batch MSE",
        "notation",
        r"\sum_{i=0}^b (y_i - out_i)^2",
        "Σ_{i=1}^{b}: b + 1 terms as printed, for the mean over b examples and |out| outputs",
    ),
    Remark(
        "003",
        "hidden-layer recursion",
        "notation",
        r"depends on the $\frac{\delta E}{\delta out_k}$ of the next layer",
        "on the ∂E/∂out_j of the next layer",
    ),
    Remark(
        "003",
        "throughout",
        "notation",
        r"\frac{\delta E}{\delta w_{jk}}",
        "∂E/∂w: the Greek δ for the partial derivative, while δ is also the name of the error "
        "term, which 003-delta-def and 003-delta-is-dw then confuse",
    ),
)

"""Random cases for fuzzing the checkers (issue 26): a correct gradient and planted errors.

Imported by ``tests/test_fuzz.py`` (a short, fixed slice) and ``experiments/fuzz_checkers.py``
(the long run that writes ``docs/reliability.md``). Everything is drawn from one integer seed by
NumPy, so a case is reproduced by ``grads_case(seed)`` / ``nodes_case(seed)`` / ``rule_case(seed)``.

A case is a random small network or function (depth 1-3, widths 1-6, activations from
``jaxprop.ACTIVATIONS``, a loss from ``jaxprop.LOSSES`` where it fits the output, parameters
nested in dicts, lists and tuples), a dtype (float64, float32, bfloat16), parameter and input
scales log-uniform in [1e-4, 1e4], and a point that is sometimes at a relu kink (a zero input row
with zero biases: every first-layer pre-activation of that row is exactly 0) and sometimes near a
minimum (the labels are the network's own output, or its softmax, plus a little noise).

The planted errors (``PLANTS``), applied to the true gradient computed in the check's dtype:

- ``element``: one element moved by ``ELEMENT_REL[dtype]`` × the largest |value| of its leaf
  (the leaf's relative error is then exactly that);
- ``sign``: a leaf negated; ``factor2``: a leaf doubled;
- ``transpose``: a square matrix leaf transposed;
- ``swap``: two leaves of the same shape exchanged.

A plant that would not change the gradient (a leaf that is exactly 0, a symmetric leaf, two equal
leaves) is not applied: the case records ``plant=None`` and is not counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxprop

DTYPES = ("float64", "float32", "bfloat16")
PLANTS = ("element", "sign", "factor2", "transpose", "swap")

# One element off by this fraction of its leaf's largest |value|: 1e4 times the float64 tolerance
# (1e-10), 100 times the float32 one (1e-4). For bfloat16 (tolerance 5e-2, ε = 2^-8 ≈ 3.9e-3)
# 0.25 = 2^-2: 5 times the tolerance, so a correct bfloat16 gradient (a few ε of rounding per
# operation) is never mistaken for it, and exactly representable, so the cast to bfloat16 does
# not blur the planted error.
ELEMENT_REL = {"float64": 1e-6, "float32": 1e-2, "bfloat16": 0.25}

ACTIVATION_NAMES = tuple(sorted(jaxprop.ACTIVATIONS))
# Squared losses fit any output; softmax cross-entropy needs probability labels.
SQUARED_LOSSES = tuple(sorted(n for n in jaxprop.LOSSES if n != "softmax_cross_entropy"))


def log_uniform(rng: np.random.Generator, lo: float = 1e-4, hi: float = 1e4) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


# --- random parameter pytrees -------------------------------------------------------------------


def _nest(rng: np.random.Generator, layers: list[tuple[np.ndarray, np.ndarray]]):
    """The layers' (W, b) in a random container: a list of dicts, a tuple of tuples, a dict of
    lists, or a dict of dicts. Returns ``(params, get)`` with ``get(params, i) -> (W, b)``."""
    style = int(rng.integers(4))
    if style == 0:
        params = [{"W": W, "b": b} for W, b in layers]
        return params, lambda p, i: (p[i]["W"], p[i]["b"])
    if style == 1:
        params = tuple((W, b) for W, b in layers)
        return params, lambda p, i: (p[i][0], p[i][1])
    if style == 2:
        params = {"W": [W for W, _ in layers], "b": [b for _, b in layers]}
        return params, lambda p, i: (p["W"][i], p["b"][i])
    params = {f"layer{i}": {"b": b, "w": {"kernel": W}} for i, (W, b) in enumerate(layers)}
    return params, lambda p, i: (p[f"layer{i}"]["w"]["kernel"], p[f"layer{i}"]["b"])


@dataclasses.dataclass
class Net:
    """A random dense network: ``out = act_d(... act_1(x W_1 + b_1) ...)``, then a loss."""

    widths: tuple[int, ...]  # n_0 (inputs), n_1, ..., n_d
    activations: tuple[str, ...]
    loss: str
    get: Callable[[Any, int], tuple[Any, Any]]

    def layer(self, params, i: int, a):
        W, b = self.get(params, i)
        return jaxprop.ACTIVATIONS[self.activations[i]].fn(a @ W + b[None, :])

    def out(self, params, x, taps=None):
        a, saved = x, {}
        for i in range(len(self.activations)):
            W, b = self.get(params, i)
            z = jaxprop.tap(taps, f"z{i}", a @ W + b[None, :])
            a = jaxprop.tap(taps, f"a{i}", jaxprop.ACTIVATIONS[self.activations[i]].fn(z))
            saved[f"z{i}"], saved[f"a{i}"] = z, a
        return a, saved

    def objective(self, params, x, Y):
        return jaxprop.LOSSES[self.loss].fn(self.out(params, x)[0], Y)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(f"{k}{i}" for i in range(len(self.activations)) for k in ("z", "a"))


def random_net(rng: np.random.Generator, dtype: str):
    """A random network, its parameters, a point ``(x, Y)`` and a description of how it was
    drawn. Arrays are NumPy float64 (the checkers cast them to the dtype)."""
    depth = int(rng.integers(1, 4))
    widths = tuple(int(w) for w in rng.integers(1, 7, size=depth + 1))
    acts = tuple(str(rng.choice(ACTIVATION_NAMES)) for _ in range(depth))
    batch = int(rng.integers(1, 5))
    p_scale, x_scale = log_uniform(rng), log_uniform(rng)
    layers = [
        (
            rng.standard_normal((widths[i], widths[i + 1])) * p_scale,
            rng.standard_normal(widths[i + 1]) * p_scale,
        )
        for i in range(depth)
    ]
    x = rng.standard_normal((batch, widths[0])) * x_scale
    point = "random"
    u = rng.uniform()
    if u < 0.2 and "relu" in acts:
        # A relu kink: an input row of zeros and zero biases make every pre-activation of that
        # row exactly 0 in the first relu layer (and in every layer before it).
        point = "kink"
        x[0] = 0.0
        for i in range(depth):
            layers[i] = (layers[i][0], np.zeros_like(layers[i][1]))
    elif u < 0.4:
        point = "minimum"
    softmax_out = acts[-1] == "softmax"
    loss = (
        "softmax_cross_entropy"
        if (not softmax_out and widths[-1] > 1 and rng.uniform() < 0.3)
        else str(rng.choice(SQUARED_LOSSES))
    )
    params, get = _nest(rng, layers)
    net = Net(widths, acts, loss, get)
    with jax.enable_x64(True):
        out = np.asarray(net.out(params, jnp.asarray(x))[0])
    if point == "minimum":
        noise = 1e-6 * rng.standard_normal(out.shape) * (np.max(np.abs(out)) + 1e-30)
        if loss == "softmax_cross_entropy":
            e = np.exp(out - out.max(axis=-1, keepdims=True))
            Y = e / e.sum(axis=-1, keepdims=True)
        else:
            Y = out + noise
    elif loss == "softmax_cross_entropy":
        Y = np.eye(widths[-1])[rng.integers(widths[-1], size=batch)]
    else:
        Y = rng.standard_normal(out.shape) * max(float(np.std(out)), 1e-3)
    about = (
        f"net {'-'.join(map(str, widths))} [{','.join(acts)}] {loss} batch {batch} "
        f"param-scale {p_scale:.1e} input-scale {x_scale:.1e} point {point}"
    )
    return net, params, x, Y, about


# --- random functions (not networks) ------------------------------------------------------------

_UNARY = {
    "sin": jnp.sin,
    "tanh": jnp.tanh,
    "square": jnp.square,
    "cube": lambda t: t * t * t,
    "log1p_sq": lambda t: jnp.log1p(t * t),
    "softplus": jax.nn.softplus,
    "relu": jax.nn.relu,
    "abs_sq": lambda t: jnp.abs(t) * t,
}


def random_function(rng: np.random.Generator):
    """``f(params, x) = Σ_k c_k Σ u_k(params_k ⊙ x_k) + Σ (params_0 ⊙ params_1)`` over a random
    pytree of 2-4 leaves of random shapes (1-6 per axis, 0-2 axes; some shapes repeated so that
    swaps apply). Returns ``(f, params, x, about)``."""
    n = int(rng.integers(2, 5))
    shapes: list[tuple[int, ...]] = []
    for _ in range(n):
        if shapes and rng.uniform() < 0.4:
            shapes.append(shapes[int(rng.integers(len(shapes)))])
        else:
            nd = int(rng.integers(0, 3))
            side = int(rng.integers(1, 7))
            shapes.append((side, side) if nd == 2 and rng.uniform() < 0.5 else
                          tuple(int(s) for s in rng.integers(1, 7, size=nd)))  # fmt: skip
    ops = [str(rng.choice(sorted(_UNARY))) for _ in range(n)]
    p_scale, x_scale = log_uniform(rng), log_uniform(rng)
    values = [rng.standard_normal(s) * p_scale for s in shapes]
    xs = [rng.standard_normal(s) * x_scale for s in shapes]
    weights = [float(rng.standard_normal()) for _ in range(n)]
    style = int(rng.integers(3))
    keys = [f"p{k}" for k in range(n)]
    if style == 0:
        params = dict(zip(keys, values, strict=True))

        def leaves(p):
            return [p[k] for k in keys]
    elif style == 1:
        params = [values[0], (tuple(values[1:2]), {"rest": list(values[2:])})]

        def leaves(p):
            return [p[0], *p[1][0], *p[1][1]["rest"]]
    else:
        params = {"a": tuple(values[: n // 2]), "b": {"c": list(values[n // 2 :])}}

        def leaves(p):
            return [*p["a"], *p["b"]["c"]]

    same = shapes[0] == shapes[1]

    def f(p, x):
        ls = leaves(p)
        total = jnp.zeros((), ls[0].dtype)
        for k in range(n):
            total = total + weights[k] * jnp.sum(_UNARY[ops[k]](ls[k] * x[k]))
        if same:
            total = total + jnp.sum(ls[0] * ls[1])
        return total

    about = (
        f"function {'+'.join(ops)} shapes {shapes} param-scale {p_scale:.1e} "
        f"input-scale {x_scale:.1e}"
    )
    return f, params, xs, about


# --- planting errors ----------------------------------------------------------------------------


def choose_plant(rng: np.random.Generator, shapes: list[tuple[int, ...]], kind: str):
    """Where a plant of ``kind`` goes, given the leaves' shapes (in flattening order): a dict, or
    ``None`` where the kind does not apply (no square leaf, no two leaves of one shape)."""
    n = len(shapes)
    if kind == "element":
        k = int(rng.integers(n))
        size = int(np.prod(shapes[k], dtype=int))
        return {"kind": kind, "leaf": k, "index": int(rng.integers(size)), "sign": 1.0}
    if kind in ("sign", "factor2"):
        return {"kind": kind, "leaf": int(rng.integers(n))}
    if kind == "transpose":
        square = [k for k, s in enumerate(shapes) if len(s) == 2 and s[0] == s[1] and s[0] > 1]
        return {"kind": kind, "leaf": int(rng.choice(square))} if square else None
    if kind == "swap":
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if shapes[i] == shapes[j]]
        if not pairs:
            return None
        i, j = pairs[int(rng.integers(len(pairs)))]
        return {"kind": kind, "leaf": i, "other": j}
    raise ValueError(kind)


def plant_leaves(leaves: list, plant: dict | None, rel: float) -> list:
    """``leaves`` (JAX arrays) with the plant applied (``plant=None``: unchanged)."""
    if plant is None:
        return leaves
    out = list(leaves)
    k, kind = plant["leaf"], plant["kind"]
    g = leaves[k]
    if kind == "element":
        flat = jnp.ravel(g)
        big = jnp.max(jnp.abs(flat))
        flat = flat.at[plant["index"]].add(rel * big)
        out[k] = jnp.reshape(flat, jnp.shape(g))
    elif kind == "sign":
        out[k] = -g
    elif kind == "factor2":
        out[k] = 2 * g
    elif kind == "transpose":
        out[k] = g.T
    elif kind == "swap":
        j = plant["other"]
        out[k], out[j] = leaves[j], g
    return out


def plant_tree(tree, plant: dict | None, rel: float):
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, plant_leaves(leaves, plant, rel))


def plant_changes(leaves64: list[np.ndarray], plant: dict | None, rel: float) -> dict:
    """How much the plant changes the true (float64) gradient: ``delta`` (max |change|),
    ``leaf_max`` (max |true| of the planted leaf), ``peak`` (max |true| of all leaves)."""
    planted = [np.asarray(v) for v in plant_leaves([jnp.asarray(v) for v in leaves64], plant, rel)]
    delta = max(
        float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(planted, leaves64, strict=True)
    )
    peak = max(float(np.max(np.abs(v), initial=0.0)) for v in leaves64)
    leaf = leaves64[plant["leaf"]] if plant else np.zeros(())
    return {"delta": delta, "leaf_max": float(np.max(np.abs(leaf), initial=0.0)), "peak": peak}


# --- the cases ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One fuzz case: ``run(planted)`` runs the checker and returns its report; the verdict
    expected is ok for ``planted=False`` and not ok for ``planted=True`` (when ``plant``)."""

    checker: str
    seed: int
    dtype: str
    about: str
    plant: dict | None
    change: dict
    run: Callable[[bool], Any]

    @property
    def label(self) -> str:
        where = "" if self.plant is None else f" plant {self.plant}"
        return f"{self.checker} seed {self.seed} {self.dtype}: {self.about}{where}"


def _draw(seed: int, checker: str, dtype: str | None = None):
    rng = np.random.default_rng([seed, ["grads", "nodes", "rule"].index(checker)])
    drawn = str(rng.choice(DTYPES, p=[0.5, 0.3, 0.2]))
    dtype = drawn if dtype is None else dtype
    kind = str(rng.choice(PLANTS))
    return rng, dtype, kind


def _leaves64(fn, *args):
    with jax.enable_x64(True):
        return [np.asarray(v) for v in jax.tree.leaves(fn(*args))]


def _shapes(tree) -> list[tuple[int, ...]]:
    return [tuple(np.shape(v)) for v in jax.tree.leaves(tree)]


def _applies(change: dict) -> bool:
    return change["delta"] > 0.0


def grads_case(
    seed: int, *, dtype: str | None = None, jit: bool = False, fd_samples: int = 8
) -> Case:
    """A ``check_grads`` case: a random network (2/3) or function (1/3), the gradient
    ``jax.grad`` of the loss in the check's dtype, one plant."""
    rng, dtype, kind = _draw(seed, "grads", dtype)
    if rng.uniform() < 2 / 3:
        net, params, x, Y, about = random_net(rng, dtype)
        loss, args = net.objective, (x, Y)
    else:
        loss, params, xs, about = random_function(rng)
        args = (xs,)
    plant = choose_plant(rng, _shapes(params), kind)
    rel = ELEMENT_REL[dtype]
    change = plant_changes(_leaves64(jax.grad(loss), params, *args), plant, rel)
    if not _applies(change):
        plant = None

    def run(planted: bool):
        which = plant if planted else None

        def grad_fn(p, *a):
            return plant_tree(jax.grad(loss)(p, *a), which, rel)

        return jaxprop.check_grads(
            loss, grad_fn, params, *args, dtype=dtype, jit=jit, fd_samples=fd_samples, seed=seed
        )

    return Case("check_grads", seed, dtype, about, plant, change, run)


def _vjp_backward(net: Net, plant: dict | None, rel: float, node_names: tuple[str, ...]):
    """A correct hand backward pass written generically: the loss's gradient at the output, then
    layer by layer ``jax.vjp`` of the activation and of the affine map; ``plant`` (its ``leaf``
    indexes ``node_names``) is applied to that node's adjoint as it is returned, not propagated
    (only the returned adjoint is wrong, so the planted node is the first failing one)."""

    def backward(params, x, saved, Y):
        depth = len(net.activations)
        # ∂L/∂out: the loss's own jax.grad (the objective is a mean over the batch).
        d_a = jax.grad(lambda o: jaxprop.LOSSES[net.loss].fn(o, Y))(saved[f"a{depth - 1}"])
        adjoints, grads = {}, [None] * depth
        for i in reversed(range(depth)):
            act = jaxprop.ACTIVATIONS[net.activations[i]].fn
            adjoints[f"a{i}"] = d_a
            _, act_vjp = jax.vjp(act, saved[f"z{i}"])
            (d_z,) = act_vjp(d_a)
            adjoints[f"z{i}"] = d_z
            a_in = x if i == 0 else saved[f"a{i - 1}"]
            W, b = net.get(params, i)
            _, aff_vjp = jax.vjp(lambda W, b, a: a @ W + b[None, :], W, b, a_in)
            dW, db, d_a = aff_vjp(d_z)
            grads[i] = (dW, db)
        if plant is not None:
            names = list(node_names)
            leaves = plant_leaves([adjoints[n] for n in names], plant, rel)
            adjoints = dict(zip(names, leaves, strict=True))
        out = _restructure(net, params, dict(enumerate(grads)))
        return out, adjoints

    return backward


def _restructure(net: Net, params, grads: dict[int, tuple]):
    """The per-layer (dW, db) in the structure of ``params`` (by matching leaf identity)."""
    where = {}
    for i in range(len(net.activations)):
        W, b = net.get(params, i)
        where[id(W)], where[id(b)] = grads[i][0], grads[i][1]
    return jax.tree.map(lambda v: where[id(v)], params)


def nodes_case(seed: int, *, dtype: str | None = None, jit: bool = False) -> Case:
    """A ``check_nodes`` case: a random network as a :class:`jaxprop.Model` whose backward is
    correct (``jax.vjp`` layer by layer), one plant in the adjoints of its nodes."""
    rng, dtype, kind = _draw(seed, "nodes", dtype)
    net, params, x, Y, about = random_net(rng, dtype)
    names = net.nodes
    with jax.enable_x64(True):
        _, saved = net.out(params, jnp.asarray(x))
    plant = choose_plant(rng, [tuple(np.shape(saved[n])) for n in names], kind)
    rel = ELEMENT_REL[dtype]

    def model_with(p):
        return jaxprop.Model(
            name=f"fuzz-{seed}",
            forward=net.out,
            objective=net.loss,
            backward=_vjp_backward(net, p, rel, names),
            nodes=names,
        )

    with jax.enable_x64(True):
        true = jaxprop.true_adjoints(model_with(None), params, jnp.asarray(x), jnp.asarray(Y))
    change = plant_changes([np.asarray(true[n]) for n in names], plant, rel)
    if not _applies(change):
        plant = None
    about += f" node {names[plant['leaf']]}" if plant else ""

    def run(planted: bool):
        model = model_with(plant if planted else None)
        return jaxprop.check_nodes(model, params, x, Y, dtype=dtype, jit=jit)

    return Case("check_nodes", seed, dtype, about, plant, change, run)


def rule_case(
    seed: int,
    *,
    dtype: str | None = None,
    fd_samples: int = 8,
    jit: bool = False,
    vmap: bool = False,
) -> Case:
    """A ``check_rule`` case: a random function of 2-3 array arguments wrapped as
    ``jax.custom_vjp`` whose bwd is ``jax.vjp`` of the function itself; plants in the bwd's
    cotangents (its ``leaf`` indexes the arguments)."""
    rng, dtype, kind = _draw(seed, "rule", dtype)
    if rng.uniform() < 0.5:
        # A layer: act(x W + b), a vector output per example; arguments x, W, b.
        net, params, x, Y, about = random_net(rng, dtype)
        del Y

        def plain(x, W, b):
            return jaxprop.ACTIVATIONS[net.activations[0]].fn(x @ W + b[None, :])

        W, b = net.get(params, 0)
        args = [np.asarray(x), np.asarray(W), np.asarray(b)]
        about = "layer " + about.split(" loss")[0] + f" first layer only, act {net.activations[0]}"
    else:
        _, params, xs, about = random_function(rng)
        leaves = [np.asarray(v) for v in jax.tree.leaves(params)]
        n = len(leaves)
        # A function of the leaves themselves, elementwise outputs kept (a pytree output).
        x_leaves = [np.asarray(v) for v in xs]
        ops = [str(rng.choice(sorted(_UNARY))) for _ in range(n)]

        def plain(*a):
            return {
                f"o{k}": _UNARY[ops[k]](a[k] * x_leaves[k].astype(a[k].dtype)) for k in range(n)
            }

        args = leaves
        about = f"elementwise {'+'.join(ops)} shapes {[v.shape for v in leaves]}"
    plant = choose_plant(rng, [np.shape(a) for a in args], kind)
    rel = ELEMENT_REL[dtype]

    def wrapped(which):
        @jax.custom_vjp
        def g(*a):
            return plain(*a)

        def fwd(*a):
            return plain(*a), a

        def bwd(res, ct):
            _, vjp = jax.vjp(plain, *res)
            return tuple(plant_leaves(list(vjp(ct)), which, rel))

        g.defvjp(fwd, bwd)
        return g

    # The change a plant makes, on the cotangents of an all-ones output cotangent.
    with jax.enable_x64(True):
        a64 = [jnp.asarray(a) for a in args]
        out, vjp = jax.vjp(plain, *a64)
        cts = [np.asarray(c) for c in vjp(jax.tree.map(jnp.ones_like, out))]
    change = plant_changes(cts, plant, rel)
    if not _applies(change):
        plant = None

    def run(planted: bool):
        return jaxprop.check_rule(
            wrapped(plant if planted else None), *args, dtype=dtype, seed=seed,
            fd_samples=fd_samples, jit=jit, vmap=vmap,
        )  # fmt: skip

    return Case("check_rule", seed, dtype, about, plant, change, run)


CASES = {"check_grads": grads_case, "check_nodes": nodes_case, "check_rule": rule_case}


@dataclasses.dataclass
class Outcome:
    """A case's two verdicts: ``false_fail`` (the correct gradient failed), ``miss`` (the
    planted one passed; ``None`` where no plant applied), or ``invalid`` (the checker refused
    the point: a non-finite loss, say, with the message)."""

    case: Case
    false_fail: bool = False
    miss: bool | None = None
    invalid: str | None = None
    correct_report: Any = None
    planted_report: Any = None


def evaluate(case: Case) -> Outcome:
    try:
        good = case.run(False)
    except ValueError as e:  # the checker refuses the point (a loss that overflows)
        return Outcome(case, invalid=str(e).splitlines()[0][:160])
    outcome = Outcome(case, false_fail=not good.ok, correct_report=good)
    if case.plant is not None:
        bad = case.run(True)
        outcome.miss, outcome.planted_report = bool(bad.ok), bad
    return outcome

"""Seed 002: the K-layer recursion, the vector-calculus examples and the lecture's network."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import JIT, assert_trees_close, maybe_jit
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxprop
from jaxprop import check_jacobian
from jaxprop.models import seed002
from jaxprop.models import seed002_calculus as calc
from jaxprop.models import seed002_lecture as lecture

SETTINGS = settings(max_examples=3, deadline=None)
F64 = jnp.float64
activations = st.sampled_from(sorted(jaxprop.ACTIVATIONS))
seeds = st.integers(0, 2**16)


def _perturbed(params, key):
    """Nonzero biases, so that a dropped bias term cannot hide."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [
            p + 0.1 * jax.random.normal(k, p.shape, p.dtype)
            for p, k in zip(leaves, keys, strict=True)
        ],
    )


def _point(model, seed, batch, **init_kw):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = _perturbed(model.init(k1, dtype=F64, **init_kw), k2)
    x, Y = model.sample(k3, params, batch)
    return params, x, Y


def _assert_grads_and_adjoints(model, params, x, Y, jit):
    """The hand code runs jitted or not; the references (jax.grad) always run jitted."""
    grads, adjoints = maybe_jit(model.backward_from, jit)(params, x, Y)
    assert_trees_close(grads, jax.jit(jax.grad(model.loss))(params, x, Y))
    # Node by node: the gradient of the loss with respect to a zero tap is the node's adjoint.
    taps = jax.tree.map(jnp.zeros_like, adjoints)
    true = jax.jit(jax.grad(model.loss, argnums=3))(params, x, Y, taps)
    assert_trees_close(adjoints, true)


# --- the K-layer network (5.112)–(5.118) -------------------------------------------------------


@JIT
@SETTINGS
@given(data=st.data(), depth=st.integers(1, 5), batch=st.integers(1, 4), seed=seeds)
def test_k_layer_hand_recursion_equals_jax_grad(jit, data, depth, batch, seed):
    acts = data.draw(st.lists(activations, min_size=depth, max_size=depth))
    sizes = tuple(data.draw(st.lists(st.integers(1, 5), min_size=depth + 1, max_size=depth + 1)))
    model = seed002.k_layer(acts)
    params, x, Y = _point(model, seed, batch, sizes=sizes)
    assert [p["A"].shape for p in params] == list(zip(sizes[1:], sizes[:-1], strict=True))
    assert model.node_names(params) == seed002.node_names(depth)
    _assert_grads_and_adjoints(model, params, x, Y, jit)


@JIT
@SETTINGS
@given(act=activations, depth=st.integers(1, 5), seed=seeds)
def test_k_layer_one_activation_name_serves_any_depth(jit, act, depth, seed):
    model = seed002.k_layer(act)
    params, x, Y = _point(model, seed, 3, sizes=(3,) * (depth + 1))
    _, adjoints = model.backward_from(params, x, Y)
    assert tuple(adjoints) == seed002.node_names(depth)
    _assert_grads_and_adjoints(model, params, x, Y, jit)


def test_k_layer_loss_is_the_batch_mean_of_squared_error():
    model = seed002.k_layer("tanh")
    params, x, Y = _point(model, 0, 5)
    out, _ = model.forward(params, x)
    per_example = jnp.sum((Y - out) ** 2, axis=1)  # ‖y − f_K‖² (5.114)
    assert float(model.loss(params, x, Y)) == pytest.approx(float(jnp.mean(per_example)))


def test_k_layer_compiles_once_per_architecture():
    model = seed002.k_layer("sigmoid")
    grad = jax.jit(model.grad)
    for seed in range(3):
        grad(*_point(model, seed, 4))
    assert grad._cache_size() == 1
    grad(*_point(model, 0, 4, sizes=(4, 6, 3)))
    assert grad._cache_size() == 2


def test_k_layer_registered_with_the_defaults():
    model = jaxprop.get_model("k-layer")
    params = model.init(jax.random.key(0))
    assert [(p["A"].shape, p["b"].shape) for p in params] == [
        ((8, 4), (8,)), ((8, 8), (8,)), ((3, 8), (3,))
    ]  # fmt: skip
    assert model.objective is jaxprop.LOSSES["squared_error"]
    assert model.node_names(params) == ("Z1", "f1", "Z2", "f2", "Z3", "f3")


def test_k_layer_bad_input_names_both_shapes():
    model = seed002.k_layer("tanh")
    params = model.init(jax.random.key(0), sizes=(4, 8, 3), dtype=F64)
    x = jnp.ones((2, 4), F64)
    bad = [params[0], {"A": jnp.ones((3, 5)), "b": jnp.ones(3)}]
    with pytest.raises(ValueError, match=r"do not chain.*\(3, 5\).*\(8, 4\)"):
        model.forward(bad, x)
    with pytest.raises(ValueError, match=r"params\[1\]\['b'\] has shape \(2,\).*\(3, 8\)"):
        model.forward([params[0], {"A": params[1]["A"], "b": jnp.ones(2)}], x)
    with pytest.raises(ValueError, match=r"input x has shape \(2, 5\); expected \(batch, 4\)"):
        model.forward(params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="labels Y have shape"):
        model.loss(params, x, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="non-empty list"):
        model.forward([], x)
    with pytest.raises(ValueError, match="activations has 2 entries but the network has K = 3"):
        seed002.k_layer(["tanh", "relu"]).forward(model.init(jax.random.key(0), dtype=F64), x)
    with pytest.raises(ValueError, match=r"sizes .* give K = 3 layers but activations has 2"):
        seed002.k_layer(["tanh", "relu"]).init(jax.random.key(0), sizes=(4, 8, 8, 3))
    # The default sizes follow the activations' depth (get_model("k-layer", activations=...)).
    assert len(seed002.k_layer(["tanh", "relu"]).init(jax.random.key(0))) == 2
    with pytest.raises(ValueError, match="unknown activation"):
        seed002.k_layer(["tanh", "nope"])
    with pytest.raises(ValueError, match="at least one layer"):
        seed002.k_layer([])


def test_squared_error_loss_and_grad():
    loss = jaxprop.LOSSES["squared_error"]
    out, Y = jnp.array([[1.0, 2.0], [0.0, 1.0]]), jnp.array([[0.0, 0.0], [1.0, 1.0]])
    assert float(loss.fn(out, Y)) == pytest.approx((1 + 4 + 1) / 2)
    assert_trees_close(loss.grad(out, Y), jax.grad(loss.fn)(out, Y))


# --- (5.109)–(5.110) --------------------------------------------------------------------------


@JIT
@SETTINGS
@given(n=st.integers(1, 40), seed=seeds)
def test_scalar_derivative_both_forms_equal_jax_grad(jit, n, seed):
    x = jax.random.uniform(jax.random.key(seed), (n,), F64, -2.5, 2.5)
    auto = jax.jit(jax.vmap(jax.grad(calc.scalar_f)))(x)
    assert_trees_close(maybe_jit(calc.scalar_df, jit)(x), auto)
    assert_trees_close(maybe_jit(calc.scalar_df_expanded, jit)(x), auto)


# --- least squares (5.75)–(5.84) --------------------------------------------------------------


@JIT
@SETTINGS
@given(N=st.integers(1, 8), D=st.integers(1, 5), seed=seeds)
def test_least_squares_gradient_is_the_row_vector_of_5_83(jit, N, D, seed):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    Phi = jax.random.normal(k1, (N, D), F64)
    theta, y = jax.random.normal(k2, (D,), F64), jax.random.normal(k3, (N,), F64)
    hand = maybe_jit(calc.least_squares_grad, jit)(theta, Phi, y)
    assert hand.shape == (1, D)  # (5.78)
    assert_trees_close(hand[0], jax.jit(jax.grad(calc.least_squares_loss))(theta, Phi, y))
    # Zero at the normal equations' solution, relative to the size 2‖Φ‖‖y‖ of its terms.
    star = calc.normal_equations(Phi, y)
    at_star = maybe_jit(calc.least_squares_grad, jit)(star, Phi, y)
    assert float(jnp.max(jnp.abs(at_star))) <= 1e-12 * 2 * float(
        jnp.linalg.norm(Phi) * jnp.linalg.norm(y)
    )
    # The Model is (5.83) over N, the batch mean.
    model = calc.least_squares()
    _assert_grads_and_adjoints(model, {"theta": theta}, Phi, y, jit)
    assert_trees_close(model.grad({"theta": theta}, Phi, y)["theta"], hand[0] / N)


def test_least_squares_gradient_vanishing_is_not_trivial():
    """Away from θ* the gradient is far from zero: the vanishing test can fail."""
    Phi = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]], F64)
    y = jnp.array([1.0, 2.0, 2.0], F64)
    star = calc.normal_equations(Phi, y)
    assert float(jnp.max(jnp.abs(calc.least_squares_grad(star + 0.01, Phi, y)))) > 1e-2


def test_least_squares_bad_shapes_name_both():
    Phi, theta, y = jnp.ones((4, 3)), jnp.ones(2), jnp.ones(4)
    with pytest.raises(ValueError, match=r"Phi has shape \(4, 3\) and theta has shape \(2,\)"):
        calc.least_squares_grad(theta, Phi, y)
    with pytest.raises(ValueError, match=r"y has shape \(5,\) but Phi has shape \(4, 3\)"):
        calc.least_squares_loss(jnp.ones(3), Phi, jnp.ones(5))
    with pytest.raises(ValueError, match=r"input Phi has shape \(4, 3\); expected \(batch, 2\)"):
        calc.least_squares().forward({"theta": theta}, Phi)


# --- gradients of matrices (5.85)–(5.92), §5.4 -------------------------------------------------


@JIT
@SETTINGS
@given(M=st.integers(1, 5), N=st.integers(1, 5), seed=seeds)
def test_df_dA_equals_jacfwd_and_jacrev(jit, M, N, seed):
    kA, kx = jax.random.split(jax.random.key(seed))
    A, x = jax.random.normal(kA, (M, N), F64), jax.random.normal(kx, (N,), F64)
    hand = maybe_jit(calc.df_dA, jit)(A, x)
    assert hand.shape == (M, M, N)  # (5.86)
    for jac in (jax.jacfwd, jax.jacrev):
        assert_trees_close(hand, jax.jit(jac(calc.linear_map))(A, x))
    for i in range(M):
        assert_trees_close(hand[i, i], x)  # ∂f_i/∂A_{i,:} = xᵀ (5.90)
        assert float(jnp.max(jnp.abs(jnp.delete(hand[i], i, axis=0)), initial=0.0)) == 0.0


@JIT
@SETTINGS
@given(m=st.integers(1, 5), n=st.integers(1, 4), p=st.integers(1, 4), seed=seeds)
def test_matrix_of_vector_two_approaches_agree(jit, m, n, p, seed):
    kC, kD, kx = jax.random.split(jax.random.key(seed), 3)
    C = jax.random.normal(kC, (m, n, p), F64)
    D, x = jax.random.normal(kD, (m, n), F64), jax.random.normal(kx, (p,), F64)
    one = maybe_jit(calc.dA_dx_collate, jit)(x, C, D)
    two = maybe_jit(calc.dA_dx_flatten, jit)(x, C, D)
    assert one.shape == (m, n, p)
    assert_trees_close(one, two)
    for jac in (jax.jacfwd, jax.jacrev):
        assert_trees_close(one, jax.jit(jac(calc.matrix_of_vector))(x, C, D))


def test_matrix_bad_shapes_name_both():
    with pytest.raises(ValueError, match=r"A has shape \(3, 4\) and x has shape \(3,\)"):
        calc.df_dA(jnp.ones((3, 4)), jnp.ones(3))
    with pytest.raises(ValueError, match=r"A has shape \(3, 4\) and x has shape \(5,\)"):
        calc.linear_map(jnp.ones((3, 4)), jnp.ones(5))
    with pytest.raises(ValueError, match=r"C has shape \(4, 2, 3\).*x has shape \(2,\)"):
        calc.matrix_of_vector(jnp.ones(2), jnp.ones((4, 2, 3)), jnp.ones((4, 2)))


def test_check_jacobian_fails_a_wrong_jacobian():
    A, x = jnp.arange(6.0).reshape(2, 3) + 1, jnp.array([1.0, -2.0, 0.5])

    def no_zeros(A, x):  # xᵀ in every row of ∂f_i/∂A: (5.91)'s zeros forgotten
        return jnp.broadcast_to(x, (2, 2, 3))

    report = check_jacobian(calc.linear_map, no_zeros, A, x, label="df/dA")
    assert report.failing == ("df/dA", "df/dA@jacrev")
    assert not report["df/dA"].vs_fd.ok
    wrong_shape = check_jacobian(calc.linear_map, lambda A, x: A, A, x)
    assert "shape (2, 3), expected (2, 2, 3)" in wrong_shape["J"].problem


def test_chain_rule_5_53_needs_the_full_jacobian_of_x():
    """(5.53) prints ∂x/∂(s, t) as the single row [∂x1/∂s ∂x1/∂t]: the product with the 1 × 2
    row ∂f/∂x needs the 2 × 2 matrix [[∂x1/∂s, ∂x1/∂t], [∂x2/∂s, ∂x2/∂t]]."""
    f = lambda x: jnp.sin(x[0]) * x[1] ** 2  # noqa: E731
    x_of = lambda st_: jnp.array([st_[0] * st_[1], st_[0] + jnp.exp(st_[1])])  # noqa: E731
    st_ = jnp.array([0.7, -0.3], F64)
    df_dx = jax.grad(f)(x_of(st_))[None, :]  # 1 × 2
    dx_dst = jax.jacfwd(x_of)(st_)  # 2 × 2
    assert_trees_close((df_dx @ dx_dst)[0], jax.grad(lambda s: f(x_of(s)))(st_))
    with pytest.raises(TypeError):
        df_dx @ dx_dst[:1]  # the printed 1 × 2 row does not multiply


# --- the lecture's network and the total cost ----------------------------------------------------


@JIT
@SETTINGS
@given(n0=st.integers(1, 4), n1=st.integers(1, 5), n2=st.integers(1, 4), batch=st.integers(1, 4),
       seed=seeds)  # fmt: skip
def test_lecture_explicit_jacobians_equal_vjps_and_jax_grad(jit, n0, n1, n2, batch, seed):
    explicit, vjp = lecture.two_layer_sigmoid_jacobians(), lecture.two_layer_sigmoid()
    params, x, Y = _point(vjp, seed, batch, n0=n0, n1=n1, n2=n2)
    _assert_grads_and_adjoints(vjp, params, x, Y, jit)
    # The explicit-Jacobian products give the same gradients and adjoints as the VJPs.
    assert_trees_close(
        maybe_jit(explicit.backward_from, jit)(params, x, Y), vjp.backward_from(params, x, Y)
    )


def test_lecture_one_weight_at_a_time():
    """Paths (3) and (4) literally, for single weights: ∂Z/∂α = [∂A/∂α] f."""
    model = lecture.two_layer_sigmoid_jacobians()
    params, x, Y = _point(model, 3, 1, n0=3, n1=4, n2=2)
    g = model.grad(params, x, Y)
    for layer, (i, j) in ((1, (1, 0)), (1, (0, 3)), (0, (0, 2)), (0, (3, 1))):
        alpha = lecture.dE_dalpha(params, x[0], Y[0], layer, i, j)
        assert float(alpha) == pytest.approx(float(g[f"A{layer}"][i, j]), rel=1e-12)


def test_lecture_dZ2_df1_is_A1_not_diagonal():
    """Backward path (2) labels a factor "Diagonal" where ∂Z2/∂f1 = A1 is a full matrix."""
    model = lecture.two_layer_sigmoid()
    params, x, _ = _point(model, 0, 1, n0=3, n1=4, n2=4)
    f1 = model.forward(params, x)[1]["f1"][0]
    J = jax.jacfwd(lambda f1: params["A1"] @ f1 + params["b1"])(f1)
    assert_trees_close(J, params["A1"])
    assert float(jnp.max(jnp.abs(J - jnp.diag(jnp.diag(J))))) > 0.1


@JIT
def test_total_cost_and_sgd_step_equal_optax(jit):
    model = lecture.two_layer_sigmoid()
    params, X, Y = _point(model, 7, 6)
    grads = maybe_jit(lecture.total_cost_grad, jit)(params, X, Y)
    assert_trees_close(grads, maybe_jit(jax.grad(lecture.total_cost), jit)(params, X, Y))
    # Σ_r E^r is the sum, B times the models' batch mean.
    assert float(lecture.total_cost(params, X, Y)) == pytest.approx(6 * model.loss(params, X, Y))
    eta = 0.05
    opt = optax.sgd(eta)
    updates, _ = opt.update(grads, opt.init(params))
    assert_trees_close(lecture.sgd_step(params, grads, eta), optax.apply_updates(params, updates))
    assert not np.allclose(lecture.sgd_step(params, grads, eta)["A0"], params["A0"])


# --- every seed-002 entry is registered and passes its own check --------------------------------

SEED002 = [
    "k-layer", "scalar-f", "least-squares", "df/dA", "dA/dx",
    "two-layer-sigmoid[jacobians]", "two-layer-sigmoid", "total-cost-sgd",
]  # fmt: skip
# Entries with a check of their own (the Models among them run the generic verify_model, which
# test_models.py and the tests above already exercise).
OWN_CHECK = ["scalar-f", "least-squares", "df/dA", "dA/dx", "total-cost-sgd"]


def test_every_seed002_item_is_registered():
    assert set(SEED002) <= set(jaxprop.model_names())
    for name in SEED002:
        entry = jaxprop.get_model(name)
        assert entry.name == name and "002_dadcaa6bdb722c5e.txt" in entry.source


@pytest.mark.parametrize("name", OWN_CHECK)
def test_registered_entry_passes_its_check(name):
    """What ``jaxprop verify`` runs (jitted; the hand code runs unjitted in the tests above)."""
    report = jaxprop.verify_entry(jaxprop.get_model(name), seed=1, jit=True, batch=5)
    assert report.ok, str(report)
    assert report.name == name and "002_dadcaa6bdb722c5e.txt" in report.source


def test_total_cost_labels_of_another_shape_name_both_shapes():
    """Y of shape (n2,) or (R, 1) used to broadcast against f2 (R, n2): a silently wrong cost and
    gradient; a Y with another row count failed inside the subtraction."""
    model = lecture.two_layer_sigmoid()
    params, X, Y = _point(model, 7, 6)
    for bad in (Y[0], Y[:, :1], Y[:3]):
        for fn in (lecture.total_cost, lecture.total_cost_grad):
            with pytest.raises(ValueError, match=re.escape(str(bad.shape)) + r".*\(6, 2\)"):
                fn(params, X, bad)


def test_lecture_dE_dalpha_bad_arguments():
    """An index outside A was dropped by .at[i, j].set (∂E/∂α = 0, silently wrong), a Y of another
    width broadcast, a batch of f0 or layer 2 failed with a TypeError / KeyError."""
    model = lecture.two_layer_sigmoid()
    params, x, Y = _point(model, 3, 2, n0=3, n1=4, n2=2)
    with pytest.raises(ValueError, match=r"i = 4 is outside A1 of shape \(2, 4\)"):
        lecture.dE_dalpha(params, x[0], Y[0], 1, 4, 0)
    with pytest.raises(ValueError, match=r"j = 3 is outside A0 of shape \(4, 3\)"):
        lecture.dE_dalpha(params, x[0], Y[0], 0, 0, 3)
    with pytest.raises(ValueError, match="layer must be 0"):
        lecture.dE_dalpha(params, x[0], Y[0], 2, 0, 0)
    with pytest.raises(ValueError, match=r"f0 has shape \(3,\) and Y has shape \(1,\)"):
        lecture.dE_dalpha(params, x[0], Y[0, :1], 1, 0, 0)
    with pytest.raises(ValueError, match=r"f0 has shape \(2, 3\) and Y has shape \(2, 2\)"):
        lecture.dE_dalpha(params, x, Y, 1, 0, 0)


def test_k_layer_activations_neither_name_nor_sequence():
    """None or a number used to fail with "object of type ... has no len()"."""
    for bad in (None, 3):
        with pytest.raises(
            ValueError, match="activations must be a name .* got " + type(bad).__name__
        ):
            seed002.k_layer(bad)


def test_init_sizes_must_be_positive_integers_and_dtype_floating():
    """k_layer truncated sizes=(4, 2.5, 3) to a width of 2 and failed on sizes=5 with "'int'
    object is not iterable"; the lecture's init and least squares accepted a width of 0 and failed
    on 2.5 inside jax.random; an integer dtype failed inside jax.random."""
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"k-layer: sizes \(4, 2.5, 3\).*got 2.5"):
        seed002.k_layer().init(key, sizes=(4, 2.5, 3))
    with pytest.raises(ValueError, match="k-layer: sizes must be a sequence of sizes, got 5"):
        seed002.k_layer().init(key, sizes=5)
    with pytest.raises(ValueError, match="k-layer: dtype int32 is not floating-point"):
        seed002.k_layer().init(key, dtype=jnp.int32)
    for n1 in (0, 2.5):
        with pytest.raises(ValueError, match=rf"two-layer-sigmoid: sizes .*got {n1}"):
            lecture.init(key, n1=n1)
    with pytest.raises(ValueError, match=r"least-squares: D \(0,\).*got 0"):
        calc.least_squares().init(key, D=0)


@pytest.mark.parametrize(
    "model",
    [seed002.k_layer("tanh"), lecture.two_layer_sigmoid(), calc.least_squares()],
    ids=lambda m: m.name,
)
def test_empty_batch_and_negative_batch_are_refused(model):
    """A batch of zero rows gave a NaN loss (0/0) and zero gradients; sample(batch=-1) failed with
    an MLIRError."""
    params, x, Y = _point(model, 0, 2)
    with pytest.raises(ValueError, match=r"has shape \(0, \d+\), no examples"):
        model.loss(params, x[:0], Y[:0])
    with pytest.raises(ValueError, match=r"has shape \(0, \d+\), no examples"):
        model.grad(params, x[:0], Y[:0])
    for batch in (0, -1):
        with pytest.raises(ValueError, match=f"batch must be a positive integer, got {batch}"):
            model.sample(jax.random.key(0), params, batch)


def test_dA_dx_flatten_bad_C_names_the_shapes():
    """Approach 2 unpacked C.shape before checking it: "not enough values to unpack"."""
    x, D = jnp.ones(3), jnp.zeros((4, 2))
    for fn in (calc.dA_dx_collate, calc.dA_dx_flatten):
        with pytest.raises(ValueError, match=r"C has shape \(4, 2\), D has shape \(4, 2\)"):
            fn(x, jnp.ones((4, 2)), D)

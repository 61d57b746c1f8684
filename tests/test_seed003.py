"""Seed 003: both hand backward passes equal jax.grad and each other; as printed, they fail."""

import jax
import jax.numpy as jnp
import pytest
from helpers import JIT, assert_trees_close, maybe_jit
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxprop
from jaxprop import check_grads
from jaxprop.models import _seed003_printed, seed003

SETTINGS = settings(max_examples=3, deadline=None)
ELEMENTWISE = ("identity", "relu", "sigmoid", "tanh")


def _point(model, seed, sizes, batch, dtype="float64"):
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = model.init(k1, sizes=sizes, dtype=jnp.dtype(dtype))
    x, y = model.sample(k2, params, batch)
    return params, x, y


@st.composite
def nets(draw):
    depth = draw(st.integers(1, 5))
    sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=depth + 1, max_size=depth + 1)))
    acts = draw(
        st.one_of(
            st.sampled_from(ELEMENTWISE),
            st.lists(st.sampled_from(ELEMENTWISE), min_size=depth, max_size=depth),
        )
    )
    return sizes, acts, draw(st.integers(1, 5)), draw(st.integers(0, 2**16))


@JIT
@SETTINGS
@given(net=nets())
def test_both_backward_passes_equal_jax_grad_and_each_other(jit, net):
    sizes, acts, batch, seed = net
    per_neuron = seed003.neuron_net(acts, backward="per-neuron")
    per_layer = seed003.neuron_net(acts, backward="per-layer")
    params, x, y = _point(per_layer, seed, sizes, batch)
    auto = maybe_jit(jax.grad(per_layer.loss), jit)(params, x, y)
    by_neuron, adj_neuron = maybe_jit(per_neuron.backward_from, jit)(params, x, y)
    by_layer, adj_layer = maybe_jit(per_layer.backward_from, jit)(params, x, y)
    assert_trees_close(by_neuron, auto)
    assert_trees_close(by_layer, auto)
    assert_trees_close(by_neuron, by_layer)
    # Every node's adjoint is ∂E/∂node: jax.grad of the loss at zero taps on the nodes.
    _, saved = per_layer.forward(params, x)
    names = seed003.node_names(len(sizes) - 1)
    taps = {n: jnp.zeros_like(saved[n]) for n in names}
    true_adjoints = jax.grad(lambda t: per_layer.loss(params, x, y, t))(taps)
    assert_trees_close(adj_neuron, true_adjoints)
    assert_trees_close(adj_layer, true_adjoints)


@pytest.mark.parametrize("backward", seed003.BACKWARDS)
def test_registered_and_passing_check_grads(backward):
    model = jaxprop.get_model(f"neuron-delta-{backward}")
    assert jaxprop.verify_entry(model, seed=3).ok
    assert jaxprop.verify_entry(model, seed=3, dtype="float32").ok


def test_loss_is_the_documents_batch_mse():
    model = seed003.neuron_net("identity")
    params = [jnp.eye(2, 3, dtype=jnp.float64)]
    x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    y = jnp.zeros((2, 3))
    # E = 1/(b·|out|) Σ (y − out)² with b = 2, |out| = 3: (1 + 4 + 9 + 16) / 6.
    assert float(model.loss(params, x, y)) == pytest.approx(30.0 / 6.0, rel=1e-15)


# -- the document as printed fails the check; the correct reading passes ------------------------

# Which leaves each reading gets wrong, for sigmoid layers 4-8-3 (see _seed003_printed): the
# f′-outside-the-sum reading only below the output layer, the δ = ∂E/∂out reading everywhere.
PRINTED_FAILS = {"f-outside-sum": ("0",), "delta-is-dE-dout": ("0", "1")}


@pytest.mark.parametrize("reading", sorted(_seed003_printed.READINGS))
def test_as_printed_readings_fail_check_grads_and_the_correct_one_passes(reading):
    wrong = _seed003_printed.as_printed("sigmoid", reading=reading)
    right = seed003.neuron_net("sigmoid", backward="per-layer")
    params, x, y = _point(right, 0, (4, 8, 3), 16)
    bad = check_grads(wrong.loss, wrong.grad, params, x, y)
    good = check_grads(right.loss, right.grad, params, x, y)
    assert good.ok, str(good)
    assert not bad.ok
    assert bad.failing == PRINTED_FAILS[reading], str(bad)
    for leaf in bad.leaves:
        if leaf.path in bad.failing:
            assert leaf.vs_auto.max_rel > 1e-2 and leaf.vs_fd.max_rel > 1e-2, str(bad)


def test_delta_as_dE_dout_is_only_right_for_an_identity_output():
    # δ = ∂E/∂out drops f′(in^L) alone: with an identity output layer it is the true gradient,
    # which is why the slip needs a nonlinear output to show.
    wrong = _seed003_printed.as_printed(["tanh", "identity"], reading="delta-is-dE-dout")
    params, x, y = _point(wrong, 1, (3, 5, 2), 8)
    assert check_grads(wrong.loss, wrong.grad, params, x, y).ok


# -- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def model():
    return seed003.neuron_net("tanh")


def test_weights_that_do_not_chain(model):
    params = [jnp.ones((4, 8)), jnp.ones((7, 3))]
    with pytest.raises(ValueError, match=r"do not chain.*\(4, 8\).*\(7, 3\).*\(8, n_2\)"):
        model.forward(params, jnp.ones((2, 4)))


def test_weight_that_is_not_a_matrix(model):
    with pytest.raises(ValueError, match=r"params\[1\] has shape \(8,\)"):
        model.forward([jnp.ones((4, 8)), jnp.ones((8,))], jnp.ones((2, 4)))


def test_label_width_differs_from_output_width(model):
    params = model.init(jax.random.key(0))
    x = jnp.ones((5, 4), jnp.float32)
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(5, 3\)"):
        model.grad(params, x, jnp.ones((5, 2), jnp.float32))
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(5, 3\)"):
        model.loss(params, x, jnp.ones((5, 2), jnp.float32))


def test_input_width_differs_from_first_layer(model):
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"input x has shape \(5, 3\); expected \(batch, 4\)"):
        model.forward(params, jnp.ones((5, 3), jnp.float32))


def test_bad_options():
    with pytest.raises(ValueError, match=r"per-neuron.*per-layer"):
        seed003.neuron_net(backward="per-weight")
    with pytest.raises(ValueError, match="not elementwise"):
        seed003.neuron_net("softmax")
    with pytest.raises(ValueError, match="unknown activation"):
        seed003.neuron_net(["tanh", "swish"])
    with pytest.raises(ValueError, match=r"2 activations .* for 3 weight layers"):
        seed003.neuron_net(["tanh", "tanh"]).init(jax.random.key(0), sizes=(2, 3, 4, 5))
    with pytest.raises(ValueError, match="f-outside-sum"):
        _seed003_printed.as_printed(reading="other")


def test_default_sizes_follow_a_sequence_of_activations():
    params = seed003.neuron_net(["tanh", "relu", "sigmoid"]).init(jax.random.key(0))
    assert [w.shape for w in params] == [(4, 8), (8, 8), (8, 3)]


def test_activations_empty_or_neither_name_nor_sequence():
    """[] (depth 0) used to be accepted until init failed with "0 activations [] for 1 weight
    layers"; None, a number or a list as backward failed with a TypeError."""
    with pytest.raises(ValueError, match=r"at least one weight layer \(depth >= 1\), got \[\]"):
        seed003.neuron_net([])
    for bad in (None, 3):
        with pytest.raises(
            ValueError, match="activations must be a name .* got " + type(bad).__name__
        ):
            seed003.neuron_net(bad)
    with pytest.raises(ValueError, match="unknown backward"):
        seed003.neuron_net(backward=["per-layer"])


def test_init_sizes_must_be_positive_integers_and_dtype_floating(model):
    """sizes=(3, 2.7, 2) was truncated to a width of 2; sizes=3 failed with "'int' object is not
    iterable"; an integer dtype failed inside jax.random."""
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"sizes \(3, 2.7, 2\).*got 2.7"):
        model.init(key, sizes=(3, 2.7, 2))
    with pytest.raises(ValueError, match="sizes must be a sequence of sizes, got 3"):
        model.init(key, sizes=3)
    with pytest.raises(ValueError, match="dtype int32 is not floating-point"):
        model.init(key, dtype=jnp.int32)


def test_empty_batch_and_negative_batch_are_refused(model):
    """A batch of zero rows gave a NaN loss (0/0) and zero gradients; sample(batch=-1) failed with
    an MLIRError."""
    params, x, y = _point(model, 0, (3, 4, 2), 2)
    with pytest.raises(ValueError, match=r"has shape \(0, 3\), no examples"):
        model.loss(params, x[:0], y[:0])
    with pytest.raises(ValueError, match=r"has shape \(0, 3\), no examples"):
        model.grad(params, x[:0], y[:0])
    for batch in (0, -1):
        with pytest.raises(ValueError, match=f"batch must be a positive integer, got {batch}"):
            model.sample(jax.random.key(0), params, batch)

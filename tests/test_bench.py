"""The benchmark's machinery on tiny cases: its JSON has the documented keys, its NumPy references
compute the same gradients as the models. No timing is asserted: timings belong in the benchmark."""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

from jaxprop import bench, random_point
from jaxprop.bench import cases as bench_cases
from jaxprop.bench import peers as bench_peers
from jaxprop.cli import main
from jaxprop.models import seed001, seed002, seed003

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMPLS = {"manual_jit", "auto_jit", "numpy"}


@pytest.mark.parametrize(
    ("model", "sizes", "numpy_grad"),
    [
        (seed001.tanh_softmax(), {"n_in": 2, "n_hidden": 5, "n_out": 3},
         bench.numpy_grad_tanh_softmax),
        (seed002.k_layer(("relu", "tanh", "identity")), {"sizes": (3, 4, 5, 2)},
         bench_peers._numpy_k_layer(("relu", "tanh", "identity"))),
        (seed003.neuron_net(("sigmoid", "tanh"), "per-layer"), {"sizes": (3, 4, 2)},
         bench_peers._numpy_neuron_net(("sigmoid", "tanh"))),
    ],
    ids=["seed001", "seed002", "seed003"],
)  # fmt: skip
def test_numpy_references_equal_the_hand_gradients(model, sizes, numpy_grad):
    params, x, Y = random_point(model, jax.random.key(0), 6, **sizes)
    params, x, Y = jax.tree.map(lambda a: a.astype(jnp.float64), (params, x, Y))
    expected = model.grad(params, x, Y)
    got = numpy_grad(*jax.tree.map(np.asarray, (params, x, Y)))
    assert_trees_close(jax.tree.map(jnp.asarray, got), expected, rtol=1e-12)


def test_run_bench_reports_every_documented_key():
    case = bench_cases.GradCase(
        "tiny", seed001.tanh_softmax(), {"n_in": 2, "n_hidden": 4, "n_out": 2}, 8,
        bench.numpy_grad_tanh_softmax,
    )  # fmt: skip
    result = bench.run_bench(
        repeats=2, cases=[case], train_steps=3, peak_size=64, fd_sizes=(4, 8, 3), sweep_runs=0,
        torch=False,
    )  # fmt: skip
    json.dumps(result)
    assert result["matmul_peak_gflops"] > 0
    grad_case, train_case, fd_case = result["cases"]
    assert fd_case["ok"] and fd_case["check_over_grad"] > 1 and fd_case["n_params"] == 67
    assert grad_case["name"] == "tiny" and IMPLS <= set(grad_case)
    for impl in IMPLS:
        assert grad_case[impl]["min_s"] <= grad_case[impl]["median_s"] <= grad_case[impl]["max_s"]
    assert 1.0 < grad_case["flop_ratio"] < 4.0 and grad_case["gflops"] > 0
    assert {"manual_scan", "auto_scan", "python_loop", "numpy_loop"} <= set(train_case)
    table = bench.format_table(result)
    assert "tiny" in table and "matrix-product peak" in table
    assert "x one gradient evaluation" in table
    assert result["machine"]["torch"] == "not timed (torch=False)" and "torch" not in grad_case


def test_the_sweep_case_reports_per_run_times_against_its_peers():
    relu = ("relu", "identity")
    model, np_grad = seed002.k_layer(relu), bench_peers._numpy_k_layer(relu)
    torch_loss = bench_peers.torch_k_layer(relu) if bench_peers.torch_version() else None
    case = bench_cases._sweep_case("tiny sweep", model, {"sizes": (3, 4, 2)}, 8, np_grad,
                                   torch_loss, steps=2, lr=0.1, runs=2, repeats=1)  # fmt: skip
    json.dumps(case)
    assert case["kind"] == "sweep" and case["runs"] == 2
    peers = {"numpy_loop", "sequential_train"} | ({"torch_loop"} if torch_loss else set())
    assert set(case["per_run"]) == {"sweep"} | peers
    assert {f"{k}_over_sweep" for k in peers} <= set(case)
    assert set(case["compile_s"]) == {"sweep", "train"}
    line = bench.format_table({"matmul_peak_gflops": 1.0, "machine": {}, "cases": [case]})
    assert "tiny sweep, per run: train_sweep" in line and "NumPy loop" in line


def test_the_benchmark_says_when_pytorch_is_absent(monkeypatch):
    monkeypatch.setattr(bench_cases, "torch_version", lambda: None)  # as run_bench reads it
    result = bench.run_bench(
        repeats=1, cases=[], train_steps=0, peak_size=8, fd_sizes=None, sweep_runs=0
    )
    assert result["machine"]["torch"].startswith("absent (pip install 'jaxprop[bench]')")
    assert "PyTorch: absent" in bench.format_table(result)


@pytest.mark.parametrize(
    ("model", "sizes", "torch_loss"),
    [
        (seed001.tanh_softmax(), {"n_in": 2, "n_hidden": 5, "n_out": 3},
         bench_peers.torch_tanh_softmax),
        (seed002.k_layer(("relu", "tanh", "identity")), {"sizes": (3, 4, 5, 2)},
         bench_peers.torch_k_layer(("relu", "tanh", "identity"))),
        (seed003.neuron_net(("sigmoid", "tanh"), "per-layer"), {"sizes": (3, 4, 2)},
         bench_peers.torch_neuron_net(("sigmoid", "tanh"))),
    ],
    ids=["seed001", "seed002", "seed003"],
)  # fmt: skip
def test_pytorch_peers_compute_the_hand_gradients(model, sizes, torch_loss):
    torch = pytest.importorskip("torch")  # the optional bench extra
    params, x, Y = random_point(model, jax.random.key(0), 6, **sizes)
    params, x, Y = jax.tree.map(lambda a: np.asarray(a, np.float64), (params, x, Y))
    leaves = [torch.tensor(a, requires_grad=True) for a in jax.tree.leaves(params)]
    grads = torch.autograd.grad(torch_loss(leaves, torch.tensor(x), torch.tensor(Y)), leaves)
    expected = jax.tree.leaves(model.grad(*jax.tree.map(jnp.asarray, (params, x, Y))))
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g.numpy(), np.asarray(e), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--out", __file__], "argument --out: " + __file__ + " exists and is not a"),
        (["bench", "--repeats", "many"], "--repeats: must be a positive integer, got many"),
    ],
)
def test_bench_command_rejects_bad_options_before_timing(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_bench_command_rejects_an_unknown_case(capsys):
    assert main(["bench", "--case", "no-such-case"]) == 2
    assert "no case matches" in capsys.readouterr().err


@pytest.fixture(scope="module")
def step_probe():
    path = ROOT / "experiments" / "seed001_step_probe.py"
    spec = importlib.util.spec_from_file_location("seed001_step_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", ["rows", "rows_broadcast", "batch_minor"])
def test_step_probe_variants_are_seed001s_hand_gradient(step_probe, variant):
    model = seed001.tanh_softmax()
    params, x, Y = random_point(model, jax.random.key(1), step_probe.B)
    params, x, Y = jax.tree.map(lambda a: a.astype(jnp.float64), (params, x, Y))
    assert_trees_close(getattr(step_probe, variant)(params, x, Y), model.grad(params, x, Y),
                       rtol=1e-12)  # fmt: skip


def test_step_probe_prints_its_tables(step_probe, capsys):
    step_probe.main(["--steps", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "| batch-minor |" in out and "| NumPy loop |" in out and "| tanh(a) |" in out

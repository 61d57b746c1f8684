"""Training over two processes on localhost (JAX's distributed runtime, Gloo CPU collectives)
equals the one-process run."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from jaxprop.training import distributed, max_relative_difference

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "distributed_train.py"
STEPS, BATCH, LOCAL_DEVICES = 20, 8, 2


def _script():
    spec = importlib.util.spec_from_file_location("distributed_train", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(out: Path, port: int) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    args = ["--coordinator", f"localhost:{port}", "--num-processes", "2",
            "--local-devices", str(LOCAL_DEVICES), "--steps", str(STEPS),
            "--batch-size", str(BATCH), "--out", str(out)]  # fmt: skip
    return [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), *args, "--process-id", str(i)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int | None, str]]:
    """Each process's exit status and output; all are killed once ``timeout`` seconds have
    passed in all (a process waiting for a peer that failed would wait for minutes)."""
    deadline = time.monotonic() + timeout
    results = []
    for p in procs:
        try:
            output, _ = p.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            output = p.communicate()[0] + f"\n[killed after {timeout} s]"
        results.append((p.returncode, output))
    return results


def _has_gloo() -> bool:
    from jax._src.lib import _jax

    return hasattr(_jax, "make_gloo_tcp_collectives")


@pytest.mark.skipif(not _has_gloo(), reason="this jaxlib has no Gloo CPU collectives")
def test_two_processes_train_like_one(tmp_path):
    for attempt in range(2):  # a second port if another program took the first one meanwhile
        out = tmp_path / f"attempt-{attempt}"
        procs = _launch(out, _free_port())
        # The one-process reference, on this process's default device, while the two run.
        reference = _script().run(STEPS, BATCH)
        results = _wait(procs, timeout=90)
        if not any("Address already in use" in text for _, text in results):
            break
    for i, (rc, text) in enumerate(results):
        assert rc == 0, f"process {i} exited with {rc}:\n{text[-3000:]}"

    runs = [json.loads((out / f"process-{i}.json").read_text()) for i in range(2)]
    for i, r in enumerate(runs):
        assert (r["process_index"], r["process_count"]) == (i, 2)
        assert (r["local_devices"], r["devices"]) == (LOCAL_DEVICES, 2 * LOCAL_DEVICES)
        for data in ("whole", "local"):
            got = r["runs"][data]
            where = f"process {i}, data {data}"
            assert got["param_devices"] == 2 * LOCAL_DEVICES, where
            np.testing.assert_allclose(got["losses"], reference.losses, rtol=1e-12,
                                       atol=0, err_msg=where)  # fmt: skip
            np.testing.assert_allclose(got["test_losses"], reference.test_losses, rtol=1e-12,
                                       atol=0, err_msg=where)  # fmt: skip
            params = {k: np.asarray(v) for k, v in got["params"].items()}
            assert max_relative_difference(params, reference.params) <= 1e-12, where
    for data in ("whole", "local"):  # both read the same replicated values, bit for bit
        first, second = (r["runs"][data] for r in runs)
        for k in ("losses", "test_losses", "params"):
            assert first[k] == second[k], f"the two processes' {k} differ (data {data})"
    assert reference.losses[-1] < reference.losses[0]


def test_one_process_needs_no_runtime():
    distributed.initialize(num_processes=1)  # no coordinator: nothing to connect
    mesh = distributed.global_mesh()
    assert mesh.axis_names == ("batch",) and mesh.devices.size == len(jax.devices())
    assert distributed.local_rows(8, mesh) == slice(0, 8)
    x = np.arange(8.0).reshape(4, 2)
    g = distributed.global_array(x, mesh)
    assert not distributed.is_global(g) and np.array_equal(np.asarray(g), x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_processes": 0}, "num_processes must be >= 1"),
        ({"num_processes": 2, "process_id": 2}, r"process_id must be between 0 and 1, got 2"),
        ({"num_processes": 1, "local_devices": 0}, "local_devices must be >= 1"),
    ],
)
def test_initialize_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed.initialize(**kwargs)


def test_runs_must_divide_the_devices():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=f"runs={n + 1} must divide the {n} devices"):
        distributed.global_mesh(runs=n + 1)


def test_a_sweeps_runs_go_along_the_runs_axis():
    mesh = distributed.global_mesh(runs=1)
    assert mesh.axis_names == ("runs", "batch")
    params = {"w": np.ones((4, 2, 3)), "b": np.zeros((4, 3))}
    placed = distributed.shard_runs(params, mesh)
    assert placed["w"].sharding.spec == PartitionSpec("runs")
    assert np.array_equal(placed["w"], params["w"])
    with pytest.raises(ValueError, match="expected one named 'runs'"):
        distributed.shard_runs(params, distributed.global_mesh())
    with pytest.raises(ValueError, match="expected a leading axis of runs"):
        distributed.shard_runs({"w": np.float64(1.0)}, mesh)
